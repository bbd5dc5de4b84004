-- The current version of every materialised transition row.
-- grain: one row per (customer_id, from_event_id, to_event_id)
-- Like journeys: each refresh lands, for every customer it touched, the transitions of the
-- journey cycles it recomputed (by their from-event's cycle), and the `refreshes` marker of the
-- journeys says from which cycle on the customer's older rows are superseded.
with landed as (
    select * from raw_customer_transitions
),

refreshes as (
    select customer_id, journeys_from_cycle, batch_seq from raw_refreshes
),

final as (
    select landed.*
    from landed
    anti join refreshes
        on refreshes.customer_id = landed.customer_id
        and refreshes.batch_seq > landed.batch_seq
        and landed.journey_cycle >= refreshes.journeys_from_cycle
)

select * from final
