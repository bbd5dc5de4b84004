"""Cohort tables for the alert tests: weekly windows, counts typed in per window."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from parcours.alerts.cohorts import COHORT_ARROW

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
WEEK = timedelta(days=7)
DELAY = timedelta(days=14)  # horizon 7 d + timeout 7 d (the purchase stage)


def window(i: int) -> datetime:
    return T0 + i * WEEK


def final_at(i: int) -> datetime:
    """When the cohort of window i is final: window end + horizon + timeout."""
    return window(i) + WEEK + DELAY


def cohort_table(
    series: dict[tuple[str, str, str, str], Sequence[tuple[int, int]]],
    finality_point: datetime,
    watermark: datetime | None = None,
) -> pa.Table:
    """One row per (series, window i) with (n_entrants, n_events); is_final from the finality point."""
    rows = []
    for (rule, stage, breakdown, value), counts in series.items():
        for i, (n, d) in enumerate(counts):
            rows.append(
                {
                    "rule": rule,
                    "stage": stage,
                    "breakdown": breakdown,
                    "breakdown_value": value,
                    "window_start": window(i),
                    "window_end": window(i) + WEEK,
                    "n_entrants": n,
                    "n_events": d,
                    "final_at": final_at(i),
                    "is_final": finality_point >= final_at(i),
                    "watermark": watermark or finality_point,
                    "finality_point": finality_point,
                }
            )
    return pa.Table.from_pylist(rows, schema=COHORT_ARROW)


def evaluation_time(i: int) -> datetime:
    """The evaluation right after the cohort of window i became final (daily flow at 06:00)."""
    return final_at(i) + timedelta(hours=6)
