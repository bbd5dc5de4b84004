-- The current version of every customer's funnel rows (pipelines/funnels.py `funnel_rows`,
-- landed by the refresher).
-- grain: one row per (customer_id, funnel)
-- Each refresh recomputes a touched customer's funnels over all their events and lands their
-- rows with a `refreshes` marker whose `funnels_from_at` is set: it supersedes every older row
-- of the customer, including a funnel the customer no longer enters (no new row: none current).
with landed as (
    select * from raw_customer_funnels
),

refreshes as (
    select customer_id, batch_seq from raw_refreshes where funnels_from_at is not null
),

final as (
    select landed.*
    from landed
    anti join refreshes
        on refreshes.customer_id = landed.customer_id
        and refreshes.batch_seq > landed.batch_seq
)

select * from final
