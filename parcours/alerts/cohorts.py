"""The detector's input: entry-cohort counts per series and window, and the checks they must pass.

One row per (rule, stage, breakdown, breakdown_value, window_start) entry cohort:

- ``n_entrants``: cycles whose first activity at ``stage`` falls in [window_start, window_end);
- ``n_events``: those of them that dropped off at the stage (``dropoff_rate``) or churned
  explicitly there (``explicit_churn_rate``) within the horizon of their entry;
- ``final_at``: window_end + horizon + the stage's drop-off timeout — from then on no entrant of
  the cohort can still change its outcome;
- ``is_final``: the evaluation's finality point has passed ``final_at``. A cohort that is not
  final is *in progress*: it is never tested and never counts as a failure;
- ``watermark`` and ``finality_point``: of the evaluation, the same on every row.

The drop-off datasets produce this table; the detector only reads it, so it can be fed by a
test, a simulation or the marts alike. Bad rows raise :class:`CohortTableError` naming the
column, the number of offending rows and the first of them: a count the detector cannot trust
is never dropped quietly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parcours.alerts.settings import BREAKDOWNS, RULES

_TS = pa.timestamp("us", tz="UTC")

COHORT_ARROW = pa.schema(
    [
        pa.field("rule", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("breakdown", pa.string(), nullable=False),
        pa.field("breakdown_value", pa.string(), nullable=False),
        pa.field("window_start", _TS, nullable=False),
        pa.field("window_end", _TS, nullable=False),
        pa.field("n_entrants", pa.int64(), nullable=False),
        pa.field("n_events", pa.int64(), nullable=False),
        pa.field("final_at", _TS, nullable=False),
        pa.field("is_final", pa.bool_(), nullable=False),
        pa.field("watermark", _TS, nullable=False),
        pa.field("finality_point", _TS, nullable=False),
    ]
)

SERIES_KEY = ("rule", "stage", "breakdown", "breakdown_value")


class CohortTableError(ValueError):
    """The cohort table breaks its contract; the message says which column and row."""


SeriesKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class CohortMatrix:
    """The final cohorts laid out as (series × window) arrays, windows in time order.

    A cell without a final cohort has ``present`` False and zero counts.
    """

    series: list[SeriesKey]
    window_start: np.ndarray  # datetime64[us], shape (W,)
    window_end: np.ndarray  # datetime64[us], shape (W,)
    n_entrants: np.ndarray  # int64, (S, W)
    n_events: np.ndarray  # int64, (S, W)
    present: np.ndarray  # bool, (S, W)
    final_at: np.ndarray  # datetime64[us], (S, W); NaT where absent
    watermark: np.datetime64
    finality_point: np.datetime64


def _fail(table: pa.Table, mask: pa.Array | np.ndarray, column: str, problem: str) -> None:
    mask = np.asarray(mask, dtype=bool)
    if mask.any():
        first = table.slice(int(np.flatnonzero(mask)[0]), 1).to_pylist()[0]
        raise CohortTableError(f"{column}: {int(mask.sum())} row(s) {problem}; first: {first}")


def validate_cohorts(table: pa.Table, breakdowns: tuple[str, ...] = BREAKDOWNS) -> pa.Table:
    """Cast ``table`` to COHORT_ARROW and check every row; returns the cast table."""
    missing = [name for name in COHORT_ARROW.names if name not in table.column_names]
    if missing:
        raise CohortTableError(f"missing column(s) {missing}; the cohort table has {table.column_names}")
    table = table.select(COHORT_ARROW.names)
    try:
        table = table.cast(COHORT_ARROW.with_metadata(None), safe=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise CohortTableError(f"cannot read the cohort table as COHORT_ARROW: {exc}") from exc
    for name in COHORT_ARROW.names:
        _fail(table, table[name].is_null(), name, "are null")
    _fail(table, pc.invert(pc.is_in(table["rule"], pa.array(RULES))), "rule", f"are not one of {list(RULES)}")
    _fail(
        table,
        pc.invert(pc.is_in(table["breakdown"], pa.array(breakdowns))),
        "breakdown",
        f"are not one of the configured breakdowns {list(breakdowns)}",
    )
    overall = pc.equal(table["breakdown"], "overall")
    _fail(
        table,
        pc.and_(overall, pc.not_equal(table["breakdown_value"], "all")),
        "breakdown_value",
        "of breakdown overall are not 'all'",
    )
    _fail(table, pc.less(table["n_entrants"], 0), "n_entrants", "are negative")
    _fail(table, pc.less(table["n_events"], 0), "n_events", "are negative")
    _fail(table, pc.greater(table["n_events"], table["n_entrants"]), "n_events", "exceed n_entrants")
    _fail(table, pc.less_equal(table["window_end"], table["window_start"]), "window_end", "are not after window_start")
    _fail(table, pc.less(table["final_at"], table["window_end"]), "final_at", "are before window_end")
    for name in ("watermark", "finality_point"):
        if len(table) and pc.count_distinct(table[name]).as_py() != 1:
            raise CohortTableError(f"{name}: one evaluation has one {name}, the table holds several")
    _fail(
        table,
        pc.not_equal(table["is_final"], pc.greater_equal(table["finality_point"], table["final_at"])),
        "is_final",
        "disagree with finality_point >= final_at",
    )
    keys = table.group_by([*SERIES_KEY, "window_start"]).aggregate([([], "count_all")])
    dup = pc.greater(keys["count_all"], 1)
    if pc.any(dup).as_py():
        first = keys.filter(dup).slice(0, 1).to_pylist()[0]
        raise CohortTableError(f"window_start: a series holds the same cohort window twice; first: {first}")
    return table


def cohort_matrix(table: pa.Table, breakdowns: tuple[str, ...] = BREAKDOWNS) -> CohortMatrix:
    """Validate the table and lay its final cohorts out per series and window.

    Every series seen in the table gets a row, even if none of its cohorts is final yet, so a
    series that stops receiving cohorts is still there to be reported as ``no_data``.
    """
    table = validate_cohorts(table, breakdowns)
    if len(table) == 0:
        raise CohortTableError("the cohort table is empty: nothing to evaluate (no watermark either)")
    keys = list(zip(*(table[name].to_pylist() for name in SERIES_KEY), strict=True))
    series = sorted(set(keys))
    index = {key: i for i, key in enumerate(series)}
    rows = np.fromiter((index[key] for key in keys), dtype=np.int64, count=len(keys))
    final = table["is_final"].to_numpy(zero_copy_only=False)
    start = table["window_start"].to_numpy().astype("datetime64[us]")
    end = table["window_end"].to_numpy().astype("datetime64[us]")
    windows, cols = np.unique(start[final], return_inverse=True)
    shape = (len(series), len(windows))
    entrants = np.zeros(shape, dtype=np.int64)
    events = np.zeros(shape, dtype=np.int64)
    present = np.zeros(shape, dtype=bool)
    final_at = np.full(shape, np.datetime64("NaT", "us"))
    window_end = np.full(len(windows), np.datetime64("NaT", "us"))
    r = rows[final]
    entrants[r, cols] = table["n_entrants"].to_numpy()[final]
    events[r, cols] = table["n_events"].to_numpy()[final]
    present[r, cols] = True
    final_at[r, cols] = table["final_at"].to_numpy().astype("datetime64[us]")[final]
    window_end[cols] = end[final]
    return CohortMatrix(
        series=series,
        window_start=windows,
        window_end=window_end,
        n_entrants=entrants,
        n_events=events,
        present=present,
        final_at=final_at,
        watermark=table["watermark"].to_numpy()[0].astype("datetime64[us]"),
        finality_point=table["finality_point"].to_numpy()[0].astype("datetime64[us]"),
    )
