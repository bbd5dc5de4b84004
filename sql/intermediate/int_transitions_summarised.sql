-- The definition of a `transitions_summary` row: the steps from one touchpoint to the next over
-- all time (no period), overall and per segment of the from-event (`breakdown` `overall` with
-- segment `all`, or `segment`; `unknown` where the producer sent none), per pair of touchpoints,
-- `(start)` and `(end)` included.
-- grain: one row per (breakdown, segment, from_touchpoint, to_touchpoint)
-- `n_transitions` adds up within a breakdown and to the same total in both; `n_customers` is
-- counted distinct in each grouping set (a customer whose steps fall in two segments counts once
-- overall), never summed; `median_gap_in_s` is the exact median (the mean of the two middle
-- gaps for an even count) of the seconds between the two events, null for the steps from
-- `(start)` and into `(end)`, which have no gap. `through_date`: the UTC day of the latest
-- from-event summarised, the same on every row (the partition: one file, read whole).
-- Why recomputed whole, not incrementally: over all time, a distinct count
-- and an exact median depend on every row of their group, and a pass touches most groups (a
-- few hundred pairs, each with customers touched). Kept exact, they change only by differences
-- (the previous value, less the touched customers' steps before the pass, plus theirs after),
-- which the refresher does not patch; so every current step is read by every pass, 1.2 s at 1M
-- events, 7.8 s at 10M (BENCHMARKS.md; docs/analytics-core.md, Status).
with transitions as (
    select customer_id, segment, from_touchpoint, to_touchpoint, from_at, gap_in_s
    from stg_parcours__customer_transitions
),

summarised as (
    select
        {{ breakdown }},
        count(*) as n_transitions,
        count(distinct customer_id) as n_customers,
        median(gap_in_s) as median_gap_in_s,
        max(from_at) as last_from_at
    from transitions
    group by {{ grouping_sets }}
),

final as (
    select
        * exclude (last_from_at),
        cast(timezone('UTC', max(last_from_at) over ()) as DATE) as through_date
    from summarised
)

select * from final
