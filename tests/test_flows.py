"""The flows under Prefect: ingestion lands what Kafka holds and retries only I/O; compaction
catches up the marts and compacts; both skip a busy warehouse. And prefect.yaml, which serves both.

Flows run against a local Prefect API (`prefect_test_harness`: a real server process on
127.0.0.1 with a throwaway SQLite database; PREFECT_HOME is a temporary folder, see conftest).
The compaction tests use the hand-computed warehouse of tests/test_compact.py (two runs of
tests/test_marts.py's events), landed here through Kafka by the ingestion flow itself.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import errors as kafka_errors

from parcours.config import ConfigError
from parcours.flows.serve import DEFAULT_PREFECT_YAML, ServeError, free_port, read_deployments
from parcours.kafka import BrokerUnavailable, KafkaSettings, KafkaSettingsError
from parcours.kafka.produce import produce_dir
from parcours.pipelines.run import CountsDoNotAddUp, Ingestion, RunReport
from parcours.pipelines.sources import OffsetOutOfRetention, SourceStalled
from parcours.warehouse import DATASETS, Warehouse
from tests.pipeline_helpers import csat_answers, make_events, query, write_jsonl
from tests.test_compact import RAW_COUNTS, ROWS_DROPPED, answer, land_without_refresh, view_rows
from tests.test_marts import RUN_1, RUN_2, land

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

    def run_kafka(self, settings, max_batches=None, *, refresh=True):
        calls.append(settings.bootstrap)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return RunReport(self.warehouse.root)

    monkeypatch.setenv("PARCOURS_KAFKA_BOOTSTRAP", UNREACHABLE)
    monkeypatch.setattr(Ingestion, "run_kafka", run_kafka)
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


# -- the compaction flow -----------------------------------------------------------------------


def produce_run(settings: KafkaSettings, folder: Path, touchpoints: list[dict], surveys: list[dict]) -> None:
    write_jsonl(folder / "touchpoints.jsonl", touchpoints)
    write_jsonl(folder / "surveys.jsonl", surveys)
    assert produce_dir(folder, settings).total == len(touchpoints) + len(surveys)


def landed_by_hand(data: Path, root: Path) -> Warehouse:
    """tests/test_compact.py's warehouse, backfilled from files: for the tests that need no broker."""
    write_jsonl(data / "run1" / "touchpoints.jsonl", RUN_1)
    write_jsonl(data / "run2" / "touchpoints.jsonl", RUN_2)
    land(data / "run1", root)
    land(data / "run2", root)
    return Warehouse(root)


@pytest.mark.kafka
def test_the_compaction_flow_compacts_what_ingestion_passes_landed(prefect_api, kafka_settings, tmp_path, monkeypatch):
    """Two ingestion passes through Kafka (the second with a late event), then the nightly run:
    the rows test_compact.py counts by hand, from fewer files, the views unchanged."""
    from parcours.flows.compact import compact_warehouse
    from parcours.flows.ingest import ingest_events

    use_kafka(monkeypatch, kafka_settings)
    root = tmp_path / "w"
    produce_run(kafka_settings, tmp_path / "run1", RUN_1, [answer("r1", 5)])
    assert ingest_events(warehouse=str(root), return_state=True).result().total("landed") == 4
    produce_run(kafka_settings, tmp_path / "run2", RUN_2, [answer("r2", 50)])
    second = ingest_events(warehouse=str(root), return_state=True).result()
    assert (second.total("landed"), second.batches[0]["relanded"]) == (3, 1)  # e3 re-landed after the late e2
    # ingest -> refresh in one flow run: the refresh is the commit after the pass's batch
    assert (second.refreshed["seq"], second.refreshed["batches"]) == (4, 1)
    warehouse = Warehouse(root)
    before = view_rows(warehouse.db_path)
    assert query(warehouse.db_path, RAW_COUNTS) == [(6, 5, 5, 4, 1, 4, 2)]
    assert [m.seq for m in warehouse.manifests()] == [1, 2, 3, 4]  # batch, marts refresh, twice

    state = compact_warehouse(warehouse=str(root), return_state=True)

    assert state.is_completed() and state.name == "Completed"
    result = state.result()
    assert view_rows(warehouse.db_path) == before
    assert query(warehouse.db_path, RAW_COUNTS) == [(5, 3, 3, 2, 0, 0, 2)]  # superseded rows and markers gone
    assert result["warehouse"] == str(root) and result["skipped"] is None and result["marts_refreshed"] is None
    assert result["seq"] == 5 and [m.seq for m in Warehouse(root).manifests()] == [1, 2, 3, 4, 5]
    assert result["rows_dropped"] == ROWS_DROPPED
    assert result["files_after"] == {name: len(warehouse.published_files(name)) for name in DATASETS}
    assert sum(result["files_after"].values()) < sum(result["files_before"].values())
    assert result["files_before"]["survey_answers"] == 2 and result["files_after"]["survey_answers"] == 1
    assert result["files_removed"] > 0 and result["files_deleted"] == 0  # deleted by a compaction after 24 h
    assert result["checkpoint"] == str(warehouse.checkpoint_dir / "0000000005.json")

    # The next night finds nothing to do, and says so.
    again = compact_warehouse(warehouse=str(root), return_state=True)
    assert again.is_completed() and (again.result()["seq"], again.result()["checkpoint"]) == (None, None)
    assert view_rows(warehouse.db_path) == before


HOLD_THE_LOCK = textwrap.dedent(
    """
    import sys
    from parcours.warehouse import Warehouse
    with Warehouse(sys.argv[1]).lock():
        print("held", flush=True)
        sys.stdin.readline()
    """
)


def test_a_compaction_that_finds_the_warehouse_locked_is_skipped(prefect_api, tmp_path):
    warehouse = landed_by_hand(tmp_path / "data", tmp_path / "w")
    files = {name: warehouse.published_files(name) for name in DATASETS}
    # Another process holds the lock, as an ingestion pass or a manual `parcours run` would.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(warehouse.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        from parcours.flows.compact import compact_warehouse

        state = compact_warehouse(warehouse=str(warehouse.root), return_state=True)
    finally:
        holder.communicate("\n", timeout=60)

    assert state.is_completed() and state.name == "Skipped"
    assert "is busy" in state.message and f"pid {holder.pid}" in state.message
    assert state.result() == {"warehouse": str(warehouse.root), "skipped": state.message}
    assert [m.seq for m in warehouse.manifests()] == [1, 2, 3, 4]
    assert {name: warehouse.published_files(name) for name in DATASETS} == files


def test_the_compaction_flow_catches_up_the_marts_first(prefect_api, tmp_path):
    """A run that stopped between its batch and its refresh: the batch is committed, the marts
    do not hold it. The flow refreshes them (commit 2), then compacts (commit 3)."""
    from parcours.flows.compact import compact_warehouse

    warehouse = land_without_refresh(tmp_path)
    state = compact_warehouse(warehouse=str(warehouse.root), return_state=True)

    assert state.is_completed() and state.name == "Completed"
    result = state.result()
    assert result["marts_refreshed"] == {"seq": 2, "batches": 1, "customers": 2}
    assert result["seq"] == 3 and Warehouse(warehouse.root).marts_pending() == []
    assert query(warehouse.db_path, "select customer_id, n_events from sessions order by 1, started_at") == [
        ("c1", 1),  # e1; e3 comes 40 min later, past the 30 min gap
        ("c1", 1),
        ("c2", 1),  # e4
    ]


def test_a_folder_where_nothing_was_landed_has_nothing_to_compact(prefect_api, tmp_path):
    from parcours.flows.compact import compact_warehouse

    state = compact_warehouse(warehouse=str(tmp_path / "w"), return_state=True)
    assert state.is_completed() and state.name == "Completed"
    assert state.result()["seq"] is None
    assert not (tmp_path / "w").exists()  # not even created by taking the lock


# -- prefect.yaml and `parcours serve` ---------------------------------------------------------


def test_prefect_yaml_schedules_ingestion_every_minute_and_compaction_nightly():
    ingestion, refresh, compaction = read_deployments(DEFAULT_PREFECT_YAML)
    # The refresh alone runs on demand: each ingestion pass and each compaction refresh first.
    assert (refresh.name, refresh.entrypoint, refresh.schedules) == (
        "refresh-warehouse",
        "flows/refresh.py:refresh_warehouse",
        [],
    )
    assert (ingestion.name, ingestion.entrypoint) == ("ingest-events", "flows/ingest.py:ingest_events")
    assert [s.interval for s in ingestion.schedules] == [timedelta(seconds=60)]
    # The ticks at 30 s past the minute, the compaction on it: a pass never starts with it.
    assert [s.anchor_date for s in ingestion.schedules] == [datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)]
    assert (compaction.name, compaction.entrypoint) == ("compact-warehouse", "flows/compact.py:compact_warehouse")
    assert [(s.cron, s.timezone) for s in compaction.schedules] == [("0 3 * * *", "UTC")]
    assert compaction.parameters == {"warehouse": "warehouse"}  # the default grace period


@pytest.mark.parametrize("spec", read_deployments(DEFAULT_PREFECT_YAML), ids=lambda spec: spec.name)
def test_every_deployment_points_at_a_flow_of_the_package(spec):
    """The entry point (a file, for `prefect deploy` and `parcours serve`) is the package's flow."""
    from prefect import Flow

    from parcours.flows.serve import build_deployments

    path, function = spec.entrypoint.rsplit(":", 1)
    module = importlib.import_module("parcours." + path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, function)
    assert isinstance(flow, Flow) and flow.retries in (0, None)  # retries belong to I/O tasks only
    (deployment,) = build_deployments([spec], DEFAULT_PREFECT_YAML.parent)
    assert deployment.flow_name == flow.name == function
    assert deployment.entrypoint.endswith(f"{path}:{function}")


def test_serve_registers_every_deployment_with_the_parameters_each_flow_takes(prefect_api):
    """What `parcours serve` hands Prefect's runner, registered with a real API as the runner does
    (`RunnerDeployment.apply`), without starting the runner's polling loop."""
    from prefect.client.orchestration import get_client

    from parcours.flows.serve import build_deployments

    overrides = {"warehouse": "/srv/w", "workers": 2, "config": "/srv/journey.yaml"}  # as the CLI passes them
    built = build_deployments(read_deployments(DEFAULT_PREFECT_YAML), DEFAULT_PREFECT_YAML.parent, parameters=overrides)
    ids = [deployment.apply() for deployment in built]

    with get_client(sync_client=True) as client:
        ingestion, refresh, compaction = (client.read_deployment(deployment_id) for deployment_id in ids)
    assert (refresh.name, refresh.parameters, refresh.schedules) == ("refresh-warehouse", {"warehouse": "/srv/w"}, [])
    assert (ingestion.name, ingestion.parameters) == ("ingest-events", overrides)
    assert [s.schedule.interval for s in ingestion.schedules] == [timedelta(seconds=60)]
    # The compaction takes neither workers nor a journey configuration.
    assert (compaction.name, compaction.parameters) == ("compact-warehouse", {"warehouse": "/srv/w"})
    assert [(s.schedule.cron, s.schedule.timezone) for s in compaction.schedules] == [("0 3 * * *", "UTC")]


def test_serve_serves_only_the_deployments_named():
    from parcours.flows.serve import select_deployments

    specs = read_deployments(DEFAULT_PREFECT_YAML)
    assert select_deployments(specs, None, DEFAULT_PREFECT_YAML) == specs
    assert [s.name for s in select_deployments(specs, ["ingest-events"], DEFAULT_PREFECT_YAML)] == ["ingest-events"]
    with pytest.raises(
        ServeError,
        match=r"no deployment named 'compact' \(deployments: ingest-events, refresh-warehouse, compact-warehouse\)",
    ):
        select_deployments(specs, ["compact"], DEFAULT_PREFECT_YAML)


def test_a_parameter_no_served_flow_takes_is_named(tmp_path):
    from parcours.flows.serve import build_deployments

    (compaction,) = [s for s in read_deployments(DEFAULT_PREFECT_YAML) if s.name == "compact-warehouse"]
    with pytest.raises(ServeError, match=r"no deployment served \(compact-warehouse\) takes the parameter 'workers'"):
        build_deployments([compaction], DEFAULT_PREFECT_YAML.parent, parameters={"warehouse": "/w", "workers": 2})

    path = tmp_path / "prefect.yaml"
    path.write_text(
        "deployments:\n  - name: nightly\n    entrypoint: flows/compact.py:compact_warehouse\n"
        "    parameters: {warehouse: w, grace: 1h}\n"
    )
    with pytest.raises(
        ServeError, match=r"deployment nightly: flows/compact.py:compact_warehouse takes no parameter 'grace'"
    ):
        build_deployments(read_deployments(path), DEFAULT_PREFECT_YAML.parent)


def test_only_prefects_own_sigterm_warning_is_silenced():
    """Prefect 3.8.8's runner drops the coroutine `Runner.astop` on SIGTERM (see serve.py);
    any other unawaited coroutine, ours included, still warns."""
    from parcours.flows.serve import ignore_prefect_sigterm_warning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ignore_prefect_sigterm_warning()
        warnings.warn("coroutine 'Runner.astop' was never awaited", RuntimeWarning, stacklevel=1)
        warnings.warn("coroutine 'Runner.astart' was never awaited", RuntimeWarning, stacklevel=1)
        warnings.warn("coroutine 'land' was never awaited", RuntimeWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == [
        "coroutine 'Runner.astart' was never awaited",
        "coroutine 'land' was never awaited",
    ]


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
def test_parcours_serve_runs_the_schedules_of_prefect_yaml_and_stops_its_server(kafka_settings, tmp_path):
    """The real thing: a local Prefect server, the runner, prefect.yaml's schedules, SIGTERM.

    Both deployments are registered; the ingestion's first tick comes at the next 30 s past a
    minute, the compaction's at 03:00 UTC (not waited for: its flow is tested above)."""
    import httpx

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
        for line in serve.stdout:
            output.append(line)
            if "Finished in state" in line and "Flow run" in line:
                break
        (api,) = re.findall(r"Prefect API at (http://127\.0\.0\.1:\d+/api)", "".join(output))
        registered = httpx.post(f"{api}/deployments/filter", json={}, timeout=30).json()
    finally:
        serve.send_signal(signal.SIGTERM)
        rest, _ = serve.communicate(timeout=120)
        output.append(rest)
    text = "".join(output)
    assert "consumed 223 = landed 220 + dead-lettered 2 + duplicates skipped 1" in text, text[-3000:]
    assert query(tmp_path / "w" / "parcours.duckdb", "select count(*) from touchpoints") == [(200,)]
    assert sorted(d["name"] for d in registered) == ["compact-warehouse", "ingest-events", "refresh-warehouse"]
    assert "was never awaited" not in text  # Prefect's SIGTERM warning, silenced (flows/serve.py)
    (server_pid,) = re.findall(r"Prefect API at http://127\.0\.0\.1:\d+/api \(pid (\d+)", text)
    with pytest.raises(ProcessLookupError):  # stopped with serve
        os.kill(int(server_pid), 0)
