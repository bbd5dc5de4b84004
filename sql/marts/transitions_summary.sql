-- view: transitions_summary
-- The directly-follows graph of touchpoints over all time (the customer as the case), overall
-- (`breakdown` `overall`, segment `all`) and per segment of the from-event (`segment`), per pair
-- of touchpoints, self-loops and `(start)` / `(end)` included.
-- grain: one row per (breakdown, segment, from_touchpoint, to_touchpoint)
-- `n_transitions` adds up within one breakdown only (each breakdown holds every step once);
-- `n_customers` is distinct per row, never a sum; `median_gap_in_s` the exact median gap, null
-- from `(start)` and into `(end)`. Materialised: the rows of `int_transitions_summarised`.
with summarised as (
    select * from raw_transitions_summary
),

final as (
    select
        breakdown,
        segment,
        from_touchpoint,
        to_touchpoint,
        n_transitions,
        n_customers,
        median_gap_in_s,
        through_date
    from summarised
)

select * from final
