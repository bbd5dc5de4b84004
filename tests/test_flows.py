"""The ingestion flow under Prefect: lands what Kafka holds, skips a busy warehouse, retries only I/O.

Flows run against a local Prefect API (`prefect_test_harness`: a real server process on
127.0.0.1 with a throwaway SQLite database; PREFECT_HOME is a temporary folder, see conftest).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from kafka import errors as kafka_errors

from parcours.config import ConfigError
from parcours.flows.serve import DEFAULT_PREFECT_YAML, ServeError, free_port, read_deployments
from parcours.kafka import BrokerUnavailable, KafkaSettings, KafkaSettingsError
from parcours.pipelines.run import CountsDoNotAddUp, Runner, RunReport
from parcours.pipelines.sources import OffsetOutOfRetention, SourceStalled
from parcours.produce import produce_dir
from parcours.warehouse import Warehouse
from tests.pipeline_helpers import csat_answers, make_events, query, write_jsonl

BAD_LINES = [
    "{oops",
    '{"schema_version": 1, "event_id": "bad-channel", "customer_id": "cust-0001", '
    '"occurred_at": "2026-02-02T09:00:00+01:00", "channel": "pigeon", "touchpoint": "home_page"}',
]
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: any Kafka call would fail (and be retried)


@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def use_kafka(monkeypatch: pytest.MonkeyPatch, settings: KafkaSettings) -> None:
    """The flow reads its Kafka settings from the environment, as `parcours run` does."""
    monkeypatch.setenv("PARCOURS_KAFKA_BOOTSTRAP", settings.bootstrap)
    monkeypatch.setenv("PARCOURS_TOPIC_PREFIX", settings.topic_prefix)


def produce_small_dataset(settings: KafkaSettings, folder: Path) -> list[dict]:
    """200 touchpoints of 20 customers, 2 bad lines, 1 re-sent event, 20 survey answers: 223 messages."""
    events = make_events(customers=20, per_customer=10, seed=5)
    write_jsonl(folder / "touchpoints.jsonl", [*events, *BAD_LINES, events[3]])
    write_jsonl(
        folder / "surveys.jsonl",
        csat_answers(events[:20]),
    )
    assert produce_dir(folder, settings).total == 223
    return events


# -- the flow on the real broker --------------------------------------------------------------


@pytest.mark.kafka
def test_flow_lands_every_event_and_the_counts_add_up(prefect_api, kafka_settings, tmp_path, monkeypatch):
    from parcours.flows.ingest import ingest_events

    events = produce_small_dataset(kafka_settings, tmp_path / "data")
    use_kafka(monkeypatch, kafka_settings)

    state = ingest_events(warehouse=str(tmp_path / "w"), return_state=True)

    assert state.is_completed() and state.name == "Completed"
    report = state.result()
    assert report.skipped is None and len(report.batches) == 1
    assert report.total("consumed") == 223
    assert (report.total("landed"), report.total("dead_lettered"), report.total("duplicates_skipped")) == (220, 2, 1)
    db = tmp_path / "w" / "parcours.duckdb"
    assert query(db, "select count(*), count(distinct event_id) from touchpoints") == [(200, 200)]
    assert {row[0] for row in query(db, "select event_id from touchpoints")} == {e["event_id"] for e in events}
    assert query(db, "select count(*) from survey_answers") == [(20,)]
    assert sorted(query(db, "select reason from dead_letters")) == [("malformed_json",), ("unknown_enum_value",)]

    # The next tick finds nothing new and lands nothing twice.
    again = ingest_events(warehouse=str(tmp_path / "w"), return_state=True)
    assert again.is_completed() and again.result().batches == ()
    assert query(db, "select count(*) from touchpoints") == [(200,)]


def test_a_run_that_finds_the_warehouse_locked_is_skipped_before_touching_kafka(prefect_api, tmp_path, monkeypatch):
    from parcours.flows.ingest import ingest_events

    monkeypatch.setenv("PARCOURS_KAFKA_BOOTSTRAP", UNREACHABLE)
    warehouse = Warehouse(tmp_path / "w")
    with warehouse.lock():  # as a running pass, or a manual `parcours run`, would hold it
        state = ingest_events(warehouse=str(tmp_path / "w"), return_state=True)

    assert state.is_completed() and state.name == "Skipped"
    assert "is busy" in state.message and f"pid {os.getpid()}" in state.message
    report = state.result()
    assert report.skipped == state.message and report.batches == ()
    assert warehouse.manifests() == []


def test_a_bad_kafka_setting_fails_the_run_at_once(prefect_api, tmp_path, monkeypatch):
    from parcours.flows.ingest import ingest_events

    monkeypatch.setenv("PARCOURS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")  # without mechanism or credentials
    state = ingest_events(warehouse=str(tmp_path / "w"), return_state=True)
    assert state.is_failed()
    with pytest.raises(KafkaSettingsError, match="PARCOURS_KAFKA_SASL_MECHANISM"):
        state.result()


# -- the retry policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        BrokerUnavailable(UNREACHABLE, 10_000),
        SourceStalled("no progress for 60 s: t.touchpoints[0] at 10"),
        kafka_errors.KafkaTimeoutError(),
        kafka_errors.NodeNotReadyError(),
        kafka_errors.KafkaConnectionError(),
        kafka_errors.RequestTimedOutError(),
    ],
    ids=type,
)
def test_broker_trouble_is_retried(exc):
    from parcours.flows.ingest import is_broker_unavailable

    assert is_broker_unavailable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        CountsDoNotAddUp("batch 3, touchpoints: consumed 10 != landed 9 + ..."),
        OffsetOutOfRetention("t.touchpoints[0]: offsets 0..5 were deleted"),
        KafkaSettingsError("PARCOURS_KAFKA_BOOTSTRAP: bad"),
        ConfigError("journey.yaml: sessions.inactivity_gap: must be positive"),
        kafka_errors.TopicAuthorizationFailedError(),
        ValueError("a bug"),
    ],
    ids=type,
)
def test_data_and_configuration_errors_are_not_retried(exc):
    from parcours.flows.ingest import is_broker_unavailable

    assert not is_broker_unavailable(exc)


def test_the_kafka_task_retries_with_exponential_backoff():
    from parcours.flows.ingest import land_from_kafka

    assert land_from_kafka.retries == 3
    assert land_from_kafka.retry_delay_seconds == [5.0, 10.0, 20.0]


@pytest.mark.parametrize(
    ("failures", "attempts", "outcome"),
    [
        ([BrokerUnavailable(UNREACHABLE)] * 2, 3, None),  # the broker comes back on the third attempt
        ([BrokerUnavailable(UNREACHABLE)] * 9, 4, BrokerUnavailable),  # 1 + 3 retries, then the run fails
        ([CountsDoNotAddUp("batch 1: consumed 3 != landed 2")], 1, CountsDoNotAddUp),
        ([OffsetOutOfRetention("t.touchpoints[0]: offsets 0..5 were deleted")], 1, OffsetOutOfRetention),
    ],
    ids=["recovers", "gives-up", "counts", "retention"],
)
def test_the_flow_retries_the_kafka_task_only_while_the_broker_is_unavailable(
    prefect_api, tmp_path, monkeypatch, failures, attempts, outcome
):
    """The task as configured, with its delays set to zero: the decision is tested, not the waiting."""
    from parcours.flows import ingest

    calls = []

    def run_kafka(self, settings, max_batches=None):
        calls.append(settings.bootstrap)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return RunReport(self.warehouse.root)

    monkeypatch.setenv("PARCOURS_KAFKA_BOOTSTRAP", UNREACHABLE)
    monkeypatch.setattr(Runner, "run_kafka", run_kafka)
    monkeypatch.setattr(ingest, "land_from_kafka", ingest.land_from_kafka.with_options(retry_delay_seconds=0))

    state = ingest.ingest_events(warehouse=str(tmp_path / "w"), return_state=True)

    assert len(calls) == attempts
    if outcome is None:
        assert state.is_completed() and state.result().batches == ()
    else:
        assert state.is_failed()
        with pytest.raises(outcome):
            state.result()
    with Warehouse(tmp_path / "w").lock():  # released whatever the outcome (WarehouseBusy otherwise)
        pass


# -- prefect.yaml and `parcours serve` ---------------------------------------------------------


def test_prefect_yaml_schedules_the_ingestion_every_60_seconds():
    from parcours.flows.serve import build_deployments

    (spec,) = read_deployments(DEFAULT_PREFECT_YAML)
    assert spec.name == "ingest-events" and spec.entrypoint == "flows/ingest.py:ingest_events"
    assert [s.interval for s in spec.schedules] == [timedelta(seconds=60)]

    (deployment,) = build_deployments([spec], DEFAULT_PREFECT_YAML.parent, parameters={"warehouse": "/srv/w"})
    assert deployment.flow_name == "ingest_events"
    assert deployment.parameters == {"warehouse": "/srv/w", "workers": 1}
    assert [s.schedule.interval for s in deployment.schedules] == [timedelta(seconds=60)]


@pytest.mark.parametrize(
    ("schedules", "problem"),
    [
        ("[{interval: 60, cron: '* * * * *'}]", "exactly one of interval, cron, rrule"),
        ("[{interval: 0}]", "interval must be positive"),
        ("[{every: 60}]", "deployments.0.schedules.0.every"),
    ],
)
def test_a_bad_schedule_in_prefect_yaml_is_named(tmp_path, schedules, problem):
    path = tmp_path / "prefect.yaml"
    path.write_text(
        f"deployments:\n  - name: x\n    entrypoint: flows/ingest.py:ingest_events\n    schedules: {schedules}\n"
    )
    with pytest.raises(ServeError, match=problem):
        read_deployments(path)


def test_parcours_imports_without_prefect():
    """Prefect takes seconds to import: the CLI and the package must not pay for it."""
    code = "import sys, parcours, parcours.cli, parcours.flows, parcours.flows.serve; print('prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


@pytest.mark.slow
@pytest.mark.kafka
def test_parcours_serve_runs_the_schedule_of_prefect_yaml_and_stops_its_server(kafka_settings, tmp_path):
    """The real thing: a local Prefect server, the runner, prefect.yaml's 60 s schedule, SIGTERM."""
    produce_small_dataset(kafka_settings, tmp_path / "data")
    env = {
        **os.environ,
        "PARCOURS_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "PARCOURS_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    serve = subprocess.Popen(
        [sys.executable, "-m", "parcours.cli", "serve", "--warehouse", str(tmp_path / "w"), "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    try:
        for line in serve.stdout:  # the first scheduled pass is due when the deployment is created
            output.append(line)
            if "Finished in state" in line and "Flow run" in line:
                break
    finally:
        serve.send_signal(signal.SIGTERM)
        rest, _ = serve.communicate(timeout=120)
        output.append(rest)
    text = "".join(output)
    assert "consumed 223 = landed 220 + dead-lettered 2 + duplicates skipped 1" in text, text[-3000:]
    assert query(tmp_path / "w" / "parcours.duckdb", "select count(*) from touchpoints") == [(200,)]
    (server_pid,) = re.findall(r"Prefect API at http://127\.0\.0\.1:\d+/api \(pid (\d+)", text)
    with pytest.raises(ProcessLookupError):  # stopped with serve
        os.kill(int(server_pid), 0)
