"""Evaluations over hand-made cohort tables: transitions, ids, no_data, silences, re-evaluation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from importlib import resources

import jsonschema
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy.stats import fisher_exact

from parcours.alerts import (
    ALERT_HISTORY_ARROW,
    AlertSettings,
    AlertStore,
    CohortTableError,
    run_evaluation,
)
from parcours.alerts.payload import iso
from parcours.alerts.settings import RECOMMENDED
from parcours.alerts.sinks import SendResult
from parcours.alerts.store import Pending
from tests.alerts_helpers import cohort_table, evaluation_time, final_at, window

SERIES = ("dropoff_rate", "purchase", "overall", "all")
# Four windows at 20 %, a spike of two windows at 28 %, then back to 20 %.
SPIKE = [(500, 100)] * 4 + [(500, 140), (500, 140)] + [(500, 100)] * 4


class RecordingSink:
    """Acknowledges everything and keeps what it got (the HTTP and Kafka sinks have their own tests)."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.calls: list[list[dict]] = []

    def send(self, items: Sequence[Pending], now: datetime) -> SendResult:
        self.calls.append([p.payload for p in items])
        return SendResult(acked={p.notification_id for p in items})

    @property
    def payloads(self) -> list[dict]:
        return [p for call in self.calls for p in call]


def _hash(*parts: object) -> str:
    """The documented id: SHA-256 of the compact JSON array, 32 hex digits."""
    return hashlib.sha256(json.dumps(list(parts), separators=(",", ":")).encode()).hexdigest()[:32]


def _run_weekly(counts, store, sink, upto: int, settings: AlertSettings | None = None, start: int = 0):
    """Evaluate after each window from `start` to `upto` became final; returns the reports."""
    settings = settings or AlertSettings()
    reports = []
    for i in range(start, upto + 1):
        table = cohort_table({SERIES: counts}, finality_point=evaluation_time(i))
        reports.append(run_evaluation(table, settings, store, [sink], evaluation_time(i)))
    return reports


def _schema() -> dict:
    return json.loads(resources.files("parcours.schemas").joinpath("alert.v1.json").read_text())


def test_a_two_window_spike_fires_on_its_second_window_and_resolves_after_two_clear_ones() -> None:
    store, sink = AlertStore(), RecordingSink()
    reports = _run_weekly(SPIKE, store, sink, upto=9)
    sent = [(p["state"], p["window_start"]) for p in sink.payloads]
    assert sent == [("firing", iso(window(5))), ("resolved", iso(window(7)))]
    # History: pending on the first spiked window, firing on the second, resolved on the second clear.
    history = pa.concat_tables([r.history for r in reports])
    assert history.schema == ALERT_HISTORY_ARROW
    assert list(zip(history["state"].to_pylist(), history["window_start"].to_pylist(), strict=True)) == [
        ("pending", window(4)),
        ("firing", window(5)),
        ("resolved", window(7)),
    ]
    firing = sink.payloads[0]
    alert = _hash("alert", "churn", *SERIES, iso(window(5)))
    assert firing["alert_id"] == alert == sink.payloads[1]["alert_id"]
    assert firing["notification_id"] == _hash("notification", alert, "firing", iso(window(5)))
    assert sink.payloads[1]["notification_id"] == _hash("notification", alert, "resolved", iso(window(7)))
    # Window 5 against windows 1-4: 140/500 vs (100 + 100 + 100 + 140)/2000.
    assert (firing["n_events"], firing["n_entrants"]) == (140, 500)
    assert firing["baseline"] == {"windows": 4, "n_entrants": 2000, "n_events": 440, "rate": pytest.approx(0.22)}
    assert firing["p_value"] == pytest.approx(fisher_exact([[140, 360], [440, 1560]], alternative="greater").pvalue)
    assert firing["q_value"] == pytest.approx(firing["p_value"])  # one series: BH leaves it
    assert firing["difference"] == pytest.approx(0.06)
    assert firing["finality_point"] == iso(evaluation_time(5))
    assert "purchase" in firing["runbook"] and alert in firing["runbook"]
    for payload in sink.payloads:
        jsonschema.Draft202012Validator(_schema()).validate(payload)


def test_re_evaluating_the_same_data_records_and_sends_nothing() -> None:
    store, sink = AlertStore(), RecordingSink()
    _run_weekly(SPIKE, store, sink, upto=6)
    assert len(sink.calls) == 1
    again = _run_weekly(SPIKE, store, sink, upto=6, start=4)
    assert len(sink.calls) == 1
    assert all(r.history.num_rows == 0 and r.enqueued == [] for r in again)


def test_the_store_survives_a_restart(tmp_path) -> None:
    path = tmp_path / "alerts-state.json"
    sink = RecordingSink()
    _run_weekly(SPIKE, AlertStore.load(path), sink, upto=5)
    restarted = AlertStore.load(path)
    _run_weekly(SPIKE, restarted, sink, upto=5, start=5)  # same data again after a restart
    _run_weekly(SPIKE, restarted, sink, upto=7, start=6)
    assert [p["state"] for p in sink.payloads] == ["firing", "resolved"]


def test_a_first_evaluation_over_history_sends_only_the_incidents_still_open() -> None:
    counts = SPIKE + [(500, 100)] * 4 + [(500, 160)] * 2  # an old spike, resolved; a new one, firing
    store, sink = AlertStore(), RecordingSink()
    report = _run_weekly(counts, store, sink, upto=15, start=15)[0]
    assert [(p["state"], p["window_start"]) for p in sink.payloads] == [("firing", iso(window(15)))]
    assert report.history["state"].to_pylist() == ["pending", "firing", "resolved", "pending", "firing"]
    assert report.history["notified"].to_pylist() == [False, False, False, False, True]


def test_a_stalled_watermark_raises_no_data_once_and_never_resolves_the_churn_alert() -> None:
    store, sink = AlertStore(), RecordingSink()
    _run_weekly(SPIKE[:6], store, sink, upto=5)  # firing at window 5
    stalled = cohort_table({SERIES: SPIKE[:6]}, finality_point=evaluation_time(5))
    settings = AlertSettings()
    # The finality point stops moving. 14 days after window 5 became final is not yet a stall.
    quiet = run_evaluation(stalled, settings, store, [sink], final_at(5) + timedelta(days=14))
    assert quiet.history.num_rows == 0
    later = [final_at(5) + timedelta(days=d) for d in (15, 16, 30)]
    reports = [run_evaluation(stalled, settings, store, [sink], at) for at in later]
    assert [r.history["kind"].to_pylist() for r in reports] == [["no_data"], [], []]
    no_data = sink.payloads[-1]
    assert (no_data["kind"], no_data["state"], no_data["window_start"]) == ("no_data", "firing", iso(window(5)))
    jsonschema.Draft202012Validator(_schema()).validate(no_data)
    assert [p["state"] for p in sink.payloads if p["kind"] == "churn"] == ["firing"]  # no false resolution
    # Data comes back (the pipeline catches up): no_data resolves, the churn alert follows its own rules.
    resumed = cohort_table({SERIES: SPIKE[:8]}, finality_point=evaluation_time(7))
    report = run_evaluation(resumed, settings, store, [sink], evaluation_time(7))
    assert sorted(zip(report.history["kind"].to_pylist(), report.history["state"].to_pylist(), strict=True)) == [
        ("churn", "resolved"),
        ("no_data", "resolved"),
    ]


def test_a_series_with_no_entrants_is_no_data_not_churn() -> None:
    counts = [(500, 100)] * 6 + [(0, 0)] * 3
    store, sink = AlertStore(), RecordingSink()
    _run_weekly(counts, store, sink, upto=8)
    assert [(p["kind"], p["window_start"]) for p in sink.payloads] == [("no_data", iso(window(5)))]


def test_a_silence_holds_the_alerts_notifications_until_it_ends() -> None:
    store, sink = AlertStore(), RecordingSink()
    _run_weekly(SPIKE, store, sink, upto=5)
    alert = sink.payloads[0]["alert_id"]
    store.silence(alert, until=evaluation_time(7) + timedelta(minutes=1))
    reports = _run_weekly(SPIKE, store, sink, upto=7, start=6)
    assert [p["state"] for p in sink.payloads] == ["firing"]  # the resolution was held
    resolved = reports[-1].history
    assert resolved["state"].to_pylist() == ["resolved"] and resolved["silenced"].to_pylist() == [True]
    assert json.loads(resolved["payload"][0].as_py())["alert_id"] == alert  # recorded, not lost
    # A new incident on the same series has another alert_id: the silence does not cover it.
    again = SPIKE + [(500, 160)] * 2
    _run_weekly(again, store, sink, upto=11, start=8)
    assert [p["state"] for p in sink.payloads] == ["firing", "firing"]
    assert sink.payloads[-1]["alert_id"] != alert


def test_contributors_from_the_caller_land_in_the_payload() -> None:
    def contributors(series, window_start):
        return [{"kind": "touchpoint", "name": "checkout", "share_of_rise": 0.6}] if series == SERIES else []

    store, sink = AlertStore(), RecordingSink()
    settings = AlertSettings()
    for i in range(6):
        table = cohort_table({SERIES: SPIKE}, finality_point=evaluation_time(i))
        run_evaluation(table, settings, store, [sink], evaluation_time(i), contributors=contributors)
    assert sink.payloads[0]["contributors"] == [{"kind": "touchpoint", "name": "checkout", "share_of_rise": 0.6}]
    jsonschema.Draft202012Validator(_schema()).validate(sink.payloads[0])


def test_the_schema_rejects_a_payload_without_its_evidence() -> None:
    store, sink = AlertStore(), RecordingSink()
    _run_weekly(SPIKE, store, sink, upto=5)
    validator = jsonschema.Draft202012Validator(_schema())
    broken = {k: v for k, v in sink.payloads[0].items() if k != "baseline"}
    assert not validator.is_valid(broken)
    assert not validator.is_valid({**sink.payloads[0], "rate": 1.5})
    assert not validator.is_valid({**sink.payloads[0], "notification_id": "not-a-hash"})


def _table(**changes) -> pa.Table:
    table = cohort_table({SERIES: SPIKE[:5]}, finality_point=evaluation_time(4))
    for name, value in changes.items():
        column = table[name].to_pylist()
        column[2] = value
        field = table.schema.field(name)
        table = table.set_column(table.schema.get_field_index(name), field, pa.array(column, field.type))
    return table


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_events": 501}, r"n_events: 1 row\(s\) exceed n_entrants"),
        ({"n_entrants": -1}, r"n_entrants: 1 row\(s\) are negative"),
        ({"breakdown_value": "pro"}, r"breakdown_value: 1 row\(s\) of breakdown overall are not 'all'"),
        ({"rule": "silent_churn_rate"}, r"rule: 1 row\(s\) are not one of"),
        ({"is_final": False}, r"is_final: 1 row\(s\) disagree"),
        ({"window_start": window(1)}, r"same cohort window twice"),
    ],
)
def test_a_cohort_table_that_breaks_its_contract_is_refused_with_the_reason(changes, message) -> None:
    with pytest.raises(CohortTableError, match=message):
        run_evaluation(_table(**changes), AlertSettings(), AlertStore(), [], evaluation_time(4))


def test_a_missing_column_is_named() -> None:
    table = _table().drop_columns(["final_at"])
    with pytest.raises(CohortTableError, match=r"missing column\(s\) \['final_at'\]"):
        run_evaluation(table, AlertSettings(), AlertStore(), [], evaluation_time(4))


def test_only_final_cohorts_are_tested() -> None:
    # Window 5 is in the table but not final yet at this finality point: it is in progress.
    table = cohort_table({SERIES: SPIKE[:6]}, finality_point=evaluation_time(4))
    assert pc.sum(table["is_final"]).as_py() == 5
    report = run_evaluation(table, AlertSettings(), AlertStore(), [], evaluation_time(4))
    assert report.evaluation.matrix.window_start.size == 5
    assert report.history["state"].to_pylist() == ["pending"]


def test_the_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(_schema())


def test_the_recommended_settings_pool_two_cohorts_and_spend_alpha_per_series() -> None:
    # Nine windows at 20 %, then two at 25.6 %: with RECOMMENDED (K = 8, c = 2, per-series
    # alpha 0.0075, fire_after 1) the second affected window fires on 256 of 1,000 vs 800 of 4,000.
    counts = [(500, 100)] * 9 + [(500, 128), (500, 128)]
    store, sink = AlertStore(), RecordingSink()
    _run_weekly(counts, store, sink, upto=10, settings=RECOMMENDED)
    p = fisher_exact([[256, 744], [800, 3200]], alternative="greater").pvalue
    assert p < 0.0075
    # The first affected window pools one clean cohort with it: 228 of 1,000, not enough.
    assert fisher_exact([[228, 772], [800, 3200]], alternative="greater").pvalue > 0.0075
    assert [(x["state"], x["window_start"]) for x in sink.payloads] == [("firing", iso(window(10)))]
    payload = sink.payloads[0]
    assert (payload["n_entrants"], payload["n_events"], payload["current_windows"]) == (1000, 256, 2)
    assert payload["baseline"] == {"windows": 8, "n_entrants": 4000, "n_events": 800, "rate": 0.2}
    assert payload["p_value"] == pytest.approx(p) and payload["control"] == "per_series"
    assert "the 2 cohorts up to" in payload["summary"]
    jsonschema.Draft202012Validator(_schema()).validate(payload)
