"""The statistics step of the refresher: what SQL should not compute, added to a model's rows.

A declaration's `intervals: {rate: [successes, trials]}` gives, per row, `rate` = successes /
trials and its Wilson interval (`rate_low`, `rate_high`: `parcours.analytics.stats`), null where
the trials are null or zero. The refresher applies it to the rows of a `partitions`, `family` or
`whole` model before they land, so every rate is a stored column and the views stay plain SQL
over Parquet (a BI tool reads the same numbers the CLI prints). Small-n suppression stays the
view's (`{{ rates }}`: the stored rate is kept, the view hides it below `min_n`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from parcours.analytics.stats import rate, wilson_interval


def _counts(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).cast(pa.float64()).to_numpy(zero_copy_only=False)


def _nullable(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.float64(), mask=np.isnan(values))


def add_intervals(table: pa.Table, intervals: Sequence[tuple[str, str, str]], confidence: float = 0.95) -> pa.Table:
    """`table` with each declared rate and its interval set (replacing columns of those names)."""
    for name, successes, trials in intervals:
        k, n = _counts(table, successes), _counts(table, trials)
        known = ~(np.isnan(k) | np.isnan(n))
        value, low, high = (np.full(len(k), np.nan) for _ in range(3))
        if known.any():
            value[known] = rate(k[known], n[known])
            interval = wilson_interval(k[known], n[known], confidence)
            low[known], high[known] = interval.low, interval.high
        for column, values in ((name, value), (f"{name}_low", low), (f"{name}_high", high)):
            if column in table.column_names:
                table = table.drop_columns([column])
            table = table.append_column(column, _nullable(values))
    return table
