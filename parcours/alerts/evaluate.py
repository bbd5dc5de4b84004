"""One evaluation: cohort table in, state changes and the notifications they call for out.

Pure apart from its inputs: the cohort table, the settings, the wall-clock instant of the
evaluation and the ``no_data`` alerts left open by the previous one. The churn states are
replayed from every final cohort in the table (``detect.replay_states``), so an evaluation of
the same data produces the same changes with the same ids and the outbox, which remembers the
ids it has seen, sends nothing twice.

``no_data``: a series whose newest final cohort with entrants became final more than
``stall_after`` before the evaluation (the watermark stalled, the stage lost its traffic, or a
dataset stopped refreshing) raises a ``no_data`` alert. Its churn state is held as it was — no
window is evaluated, so a firing alert can never be resolved by missing data — and the
``no_data`` alert resolves when a new final cohort arrives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from parcours.alerts.cohorts import CohortMatrix, SeriesKey, cohort_matrix
from parcours.alerts.detect import (
    FIRING,
    TO_FIRING,
    TO_RESOLVED,
    TRANSITION_STATES,
    WindowTests,
    replay_states,
    score_windows,
)
from parcours.alerts.payload import (
    INTERVAL_METHOD,
    SCHEMA_VERSION,
    TEST_NAME,
    alert_id,
    change_id,
    iso,
    notification_id,
    summary,
)
from parcours.alerts.settings import AlertSettings

# (series, window_start) -> contributor entries for the payload, supplied by the caller.
Contributors = Callable[[SeriesKey, datetime], list[dict[str, Any]]]


@dataclass(frozen=True)
class Change:
    """One state change of one series; ``payload`` is set when it is worth sending."""

    change_id: str
    kind: str
    state: str
    series: SeriesKey
    window_start: datetime | None
    alert_id: str | None
    notification_id: str | None
    row: dict[str, Any]
    payload: dict[str, Any] | None


@dataclass
class Evaluation:
    changes: list[Change]
    open_no_data: dict[str, dict[str, Any]]
    firing: set[str] = field(default_factory=set)  # alert_ids open after this evaluation
    matrix: CohortMatrix | None = None
    tests: WindowTests | None = None


def _dt(value: np.datetime64) -> datetime | None:
    if np.isnat(value):
        return None
    return value.astype("datetime64[us]").astype(datetime).replace(tzinfo=UTC)


def _num(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _series_name(series: SeriesKey) -> str:
    return "|".join(series)


def evaluate(
    cohorts: pa.Table,
    settings: AlertSettings,
    evaluated_at: datetime,
    open_no_data: Mapping[str, dict[str, Any]] | None = None,
    contributors: Contributors | None = None,
) -> Evaluation:
    """Replay every series and list its state changes, with payloads for the ones to send."""
    if evaluated_at.tzinfo is None:
        raise ValueError("evaluated_at must be timezone-aware (UTC)")
    matrix = cohort_matrix(cohorts, settings.breakdowns)
    tests = score_windows(matrix.n_entrants, matrix.n_events, matrix.present, settings)
    replay = replay_states(tests.evaluated, tests.breach, settings)
    context = {
        "watermark": _dt(matrix.watermark),
        "finality_point": _dt(matrix.finality_point),
        "evaluated_at": evaluated_at.astimezone(UTC),
    }
    changes: list[Change] = []
    rows, cols = np.nonzero(replay.transition)
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        code = int(replay.transition[r, c])
        series = matrix.series[r]
        window = _dt(matrix.window_start[c])
        state = TRANSITION_STATES[code]
        alert = notify_id = None
        if code in (TO_FIRING, TO_RESOLVED):
            first = _dt(matrix.window_start[replay.incident[r, c]])
            alert = alert_id("churn", series, first)
            notify_id = notification_id(alert, state, window)
        cell = _cell(matrix, tests, r, c)
        row = _row("churn", state, series, cell, context, alert, notify_id)
        payload = None
        if notify_id is not None:
            payload = _payload("churn", state, series, cell, context, alert, notify_id, settings, first)
            if contributors is not None:
                payload["contributors"] = list(contributors(series, window))
        changes.append(Change(row["change_id"], "churn", state, series, window, alert, notify_id, row, payload))
    firing = (
        {
            alert_id("churn", matrix.series[r], _dt(matrix.window_start[replay.incident[r, -1]]))
            for r in np.flatnonzero(replay.state[:, -1] == FIRING).tolist()
        }
        if matrix.window_start.size
        else set()
    )
    new_open = _no_data(matrix, tests, settings, context, dict(open_no_data or {}), changes)
    firing |= {entry["alert_id"] for entry in new_open.values()}
    return Evaluation(changes=changes, open_no_data=new_open, firing=firing, matrix=matrix, tests=tests)


def _cell(matrix: CohortMatrix, tests: WindowTests, r: int, c: int | None) -> dict[str, Any]:
    if c is None:
        return {"window_start": None, "window_end": None}
    cell: dict[str, Any] = {
        "window_start": _dt(matrix.window_start[c]),
        "window_end": _dt(matrix.window_end[c]),
        "n_entrants": int(tests.n_entrants[r, c]),
        "n_events": int(tests.n_events[r, c]),
        "baseline_n_entrants": int(tests.baseline_entrants[r, c]),
        "baseline_n_events": int(tests.baseline_events[r, c]),
    }
    for name in (
        "rate",
        "baseline_rate",
        "difference",
        "difference_low",
        "difference_high",
        "relative_rise",
        "p_value",
        "q_value",
    ):
        cell[name] = _num(getattr(tests, name)[r, c])
    return cell


_CELL_NUMBERS = (
    "n_entrants",
    "n_events",
    "rate",
    "baseline_n_entrants",
    "baseline_n_events",
    "baseline_rate",
    "difference",
    "difference_low",
    "difference_high",
    "relative_rise",
    "p_value",
    "q_value",
)


def _row(
    kind: str,
    state: str,
    series: SeriesKey,
    cell: dict[str, Any],
    context: dict[str, Any],
    alert: str | None,
    notify_id: str | None,
) -> dict[str, Any]:
    rule, stage, breakdown, value = series
    row = {
        "change_id": change_id(kind, series, state, cell["window_start"]),
        "notification_id": notify_id,
        "alert_id": alert,
        "kind": kind,
        "state": state,
        "rule": rule,
        "stage": stage,
        "breakdown": breakdown,
        "breakdown_value": value,
        "window_start": cell["window_start"],
        "window_end": cell["window_end"],
        **{name: cell.get(name) for name in _CELL_NUMBERS},
        **context,
        "notified": False,
        "silenced": False,
        "payload": None,
    }
    return row


def _payload(
    kind: str,
    state: str,
    series: SeriesKey,
    cell: dict[str, Any],
    context: dict[str, Any],
    alert: str,
    notify_id: str,
    settings: AlertSettings,
    first: datetime | None,
) -> dict[str, Any]:
    rule, stage, breakdown, value = series
    churn = kind == "churn"
    payload: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "notification_id": notify_id,
        "alert_id": alert,
        "kind": kind,
        "state": state,
        "rule": rule,
        "stage": stage,
        "breakdown": breakdown,
        "breakdown_value": value,
        "window_start": iso(cell["window_start"]),
        "window_end": iso(cell["window_end"]),
        "first_firing_window_start": iso(first),
        "n_entrants": cell.get("n_entrants") if churn else None,
        "n_events": cell.get("n_events") if churn else None,
        "rate": cell.get("rate") if churn else None,
        "current_windows": settings.current_windows,
        "baseline": {
            "windows": settings.baseline_windows,
            "n_entrants": cell["baseline_n_entrants"],
            "n_events": cell["baseline_n_events"],
            "rate": cell["baseline_rate"],
        }
        if churn
        else None,
        "difference": cell.get("difference") if churn else None,
        "difference_ci": {
            "low": cell["difference_low"],
            "high": cell["difference_high"],
            "level": settings.ci_level,
            "method": INTERVAL_METHOD,
        }
        if churn and cell.get("difference_low") is not None
        else None,
        "relative_rise": cell.get("relative_rise") if churn else None,
        "p_value": cell.get("p_value") if churn else None,
        "q_value": cell.get("q_value") if churn else None,
        "test": TEST_NAME if churn else None,
        "alpha": settings.alpha,
        "control": settings.control,
        "contributors": [],
        "watermark": iso(context["watermark"]),
        "finality_point": iso(context["finality_point"]),
        "evaluated_at": iso(context["evaluated_at"]),
        "runbook": settings.runbook.format(
            stage=stage, window_start=iso(first or cell["window_start"]) or "the start", alert_id=alert
        ),
    }
    payload["summary"] = summary(payload)
    return payload


def _no_data(
    matrix: CohortMatrix,
    tests: WindowTests,
    settings: AlertSettings,
    context: dict[str, Any],
    open_no_data: dict[str, dict[str, Any]],
    changes: list[Change],
) -> dict[str, dict[str, Any]]:
    now = np.datetime64(context["evaluated_at"].replace(tzinfo=None), "us")
    with_data = matrix.present & (matrix.n_entrants > 0)
    final_at = np.where(with_data, matrix.final_at, np.datetime64("NaT", "us"))
    for r, series in enumerate(matrix.series):
        cols = np.flatnonzero(with_data[r])
        last = int(cols[-1]) if cols.size else None
        newest = final_at[r, last] if last is not None else np.datetime64("NaT", "us")
        stalled = np.isnat(newest) or (now - newest) > np.timedelta64(settings.stall_after)
        name = _series_name(series)
        cell = _cell(matrix, tests, r, last)
        if stalled and name not in open_no_data:
            alert = alert_id("no_data", series, cell["window_start"])
            notify_id = notification_id(alert, "firing", cell["window_start"])
            open_no_data[name] = {"alert_id": alert, "window_start": iso(cell["window_start"])}
        elif not stalled and name in open_no_data:
            alert = open_no_data.pop(name)["alert_id"]
            notify_id = notification_id(alert, "resolved", cell["window_start"])
        else:
            continue
        state = "firing" if stalled else "resolved"
        row = _row("no_data", state, series, cell, context, alert, notify_id)
        payload = _payload("no_data", state, series, cell, context, alert, notify_id, settings, None)
        changes.append(
            Change(row["change_id"], "no_data", state, series, cell["window_start"], alert, notify_id, row, payload)
        )
    return open_no_data
