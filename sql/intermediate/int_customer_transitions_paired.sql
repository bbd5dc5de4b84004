-- The definition of a `customer_transitions` row: one step of a customer's path, from one of
-- their current touchpoints to the next, ordered by (occurred_at, event_id), across sessions,
-- channels and journey cycles, self-loops included, before any path cleaning (the directly-
-- follows graph with the customer as the case). The customer's first touchpoint is entered
-- from `(start)`; their latest leads to `(end)` until a later one lands.
-- grain: one row per (customer_id, from_event_id, to_event_id)
-- A row belongs to the journey cycle of its from-event (the first event's for `(start)`): the
-- refresher recomputes a customer's rows from the journeys' recompute cycle on, which is the
-- cycle before the earliest new event's when that event opens its cycle, so the step into it
-- is recomputed too (parcours/refresh/refresher.py). Over the events of cycles c and later, the
-- first event's incoming step belongs to cycle c - 1 and is left as it is, unless c is 0.
-- As a view this model pairs every touchpoint on each query: for checks, not for dashboards.
with events as (
    select customer_id, event_id, occurred_at, touchpoint, segment, journey_cycle
    from stg_parcours__touchpoints
),

ordered as (
    select
        *,
        lag(event_id) over by_time as previous_event_id,
        lag(touchpoint) over by_time as previous_touchpoint,
        lag(occurred_at) over by_time as previous_at,
        lag(segment) over by_time as previous_segment,
        lag(journey_cycle) over by_time as previous_cycle,
        lead(event_id) over by_time is null as is_latest
    from events
    window by_time as (partition by customer_id order by occurred_at, event_id)
),

entered as (
    select
        customer_id,
        coalesce(previous_cycle, journey_cycle) as journey_cycle,
        previous_event_id as from_event_id,
        event_id as to_event_id,
        coalesce(previous_touchpoint, '(start)') as from_touchpoint,
        touchpoint as to_touchpoint,
        coalesce(previous_at, occurred_at) as from_at,
        date_diff('second', previous_at, occurred_at) as gap_in_s,
        case when previous_event_id is null then segment else previous_segment end as segment
    from ordered
    -- Without a previous event here, the step in is `(start)` only for the customer's very
    -- first event (cycle 0); otherwise its from-event lies before the recomputed cycles.
    where previous_event_id is not null or journey_cycle = 0
),

left_for_now as (
    select
        customer_id,
        journey_cycle,
        event_id as from_event_id,
        cast(null as VARCHAR) as to_event_id,
        touchpoint as from_touchpoint,
        '(end)' as to_touchpoint,
        occurred_at as from_at,
        cast(null as BIGINT) as gap_in_s,
        segment
    from ordered
    where is_latest
),

final as (
    select * from entered
    union all
    select * from left_for_now
)

select * from final
