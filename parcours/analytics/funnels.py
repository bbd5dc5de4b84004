"""One funnel's steps over a range of entry weeks, re-aggregated from `funnel_steps`.

What `parcours funnel NAME` prints, and what a BI tool computes when it filters weeks: the
additive counts of the weekly rows summed, the rates recomputed from the summed settled counts
(never averaged), with their Wilson interval, null below the dataset's `min_n`; the median time to
convert, which does not add up, is taken over the customers themselves (`customer_funnels`, the
settled ones of those weeks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

import duckdb

from parcours.analytics.stats import rate, wilson_interval

BREAKDOWNS = ("channel", "segment", "product_line")
_COUNTS = (
    "n_reached",
    "n_in_progress",
    "n_not_converted",
    "n_excluded",
    "n_settled",
    "n_settled_previous",
    "n_settled_start",
)


class UnknownFunnel(LookupError):
    """No such funnel in the warehouse's configuration."""


@dataclass(frozen=True, slots=True)
class FunnelStep:
    value: str  # the breakdown's value (`all` without --by)
    step_index: int
    step: str
    n_reached: int
    n_in_progress: int
    n_not_converted: int
    n_excluded: int
    n_settled: int
    conversion_from_previous: float | None
    conversion_from_previous_low: float | None
    conversion_from_previous_high: float | None
    conversion_from_start: float | None
    conversion_from_start_low: float | None
    conversion_from_start_high: float | None
    median_time_to_convert_in_s: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def funnel_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        'select unnest(from_json(funnels, \'[{"name": "VARCHAR"}]\')).name from parcours_settings'
    ).fetchall()
    return [r[0] for r in rows]


def _min_n(con: duckdb.DuckDBPyConnection) -> int:
    rows = con.execute("select min_n from parcours_datasets where name = 'funnel_steps'").fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def funnel_steps(
    con: duckdb.DuckDBPyConnection,
    funnel: str,
    *,
    by: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> list[FunnelStep]:
    """The steps of `funnel` for the customers who entered it in the weeks starting from the week
    of `since` to `until` (all weeks when None), overall or per value of `by`."""
    if funnel not in funnel_names(con):
        raise UnknownFunnel(f"no funnel {funnel!r} (configured: {', '.join(funnel_names(con)) or 'none'})")
    if by is not None and by not in BREAKDOWNS:
        raise ValueError(f"--by must be one of {', '.join(BREAKDOWNS)}, not {by!r}")
    dimension = by or "breakdown"
    weeks = "period_start >= date_trunc('week', $since::DATE) and period_start <= $until::DATE"
    params = {"funnel": funnel, "since": since or date.min, "until": until or date.max}
    sums = ", ".join(f"sum({c})::BIGINT as {c}" for c in _COUNTS)
    rows = con.execute(
        f"select case when breakdown = 'overall' then 'all' else {dimension} end as value, step_index, "
        f"any_value(step) as step, {sums} from funnel_steps "
        f"where funnel = $funnel and breakdown = $breakdown and {weeks} group by all order by value, step_index",
        {**params, "breakdown": by or "overall"},
    ).fetchall()
    attribute = f"coalesce({by}, 'unknown')" if by else "'all'"
    medians = {
        (value, k): median
        for value, k, median in con.execute(
            f"""
            with settled as (
                select f.*, {attribute} as value
                from customer_funnels f, parcours_finality p
                where f.funnel = $funnel and not f.is_excluded and f.windows_close_at <= p.finality_point
            )
            select value, k, median(epoch(reached_at[k]) - epoch(entered_at))
            from settled, unnest(range(2, best_step + 1)) as s(k)
            where cast(date_trunc('week', timezone(
                (select reporting_timezone from parcours_settings), entered_at)) as DATE) between
                date_trunc('week', $since::DATE) and $until::DATE
            group by all
            """,
            params,
        ).fetchall()
    }
    minimum = _min_n(con)
    out = []
    for value, k, step, reached, in_progress, not_converted, excluded, settled, previous, start in rows:
        rates = []
        for trials in (previous, start):
            if trials is None or trials < max(minimum, 1):
                rates.append((None, None, None))
                continue
            interval = wilson_interval(settled, trials)
            rates.append((float(rate(settled, trials)), float(interval.low), float(interval.high)))
        out.append(
            FunnelStep(
                value,
                k,
                step,
                reached,
                in_progress,
                not_converted,
                excluded,
                settled,
                *rates[0],
                *rates[1],
                medians.get((value, k)),
            )
        )
    return out
