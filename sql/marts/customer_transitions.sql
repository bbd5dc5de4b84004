-- view: customer_transitions
-- Every step of every customer's path: from a touchpoint to the next one, whatever the session,
-- channel or journey cycle, self-loops included (`(start)` before the first, `(end)` after the
-- latest, for now). The event-level directly-follows graph: `transitions` counts it by week.
-- grain: one row per (customer_id, from_event_id, to_event_id)
with transitions as (
    select * from stg_parcours__customer_transitions
),

final as (
    select
        customer_id,
        journey_cycle,
        from_event_id,
        to_event_id,
        from_touchpoint,
        to_touchpoint,
        from_at,
        gap_in_s,
        segment,
        batch_seq
    from transitions
)

select * from final
