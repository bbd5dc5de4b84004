-- The definition of a `transitions` row: steps from one touchpoint to the next, counted by the
-- ISO week of their from-event (`{{ period }}`: in `reporting.timezone`, UTC unless set; the
-- first event's week for a step from `(start)`), the customer's segment at the from-event
-- (`unknown` when the producer sent none), and the pair of touchpoints.
-- grain: one row per (from_week, segment, from_touchpoint, to_touchpoint)
-- `n_transitions` adds up over every column. No rolled-up rows.
-- The pipeline lands these rows for the weeks its refreshes touched (parcours/refresh/refresher.py);
-- as a view this model re-counts every transition on each query: for checks, not for dashboards.
with transitions as (
    select * from stg_parcours__customer_transitions
),

final as (
    select
        {{ period }} as from_week,
        coalesce(segment, 'unknown') as segment,
        from_touchpoint,
        to_touchpoint,
        count(*) as n_transitions
    from transitions
    group by all
)

select * from final
