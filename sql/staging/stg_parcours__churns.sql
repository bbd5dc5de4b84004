-- The current version of every churn row (pipelines/cycles.py `churn_rows`, landed by the refresher).
-- grain: one row per (customer_id, journey_cycle)
-- Like journeys: each refresh lands, for every customer it touched or found due, the churn rows
-- of the cycles it recomputed, and the `refreshes` marker of the journeys says from which cycle
-- on the customer's older rows are superseded.
with landed as (
    select * from raw_churns
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
