-- The current state of every customer: its latest event's session and journey cycle, which the
-- next events continue.
-- grain: one row per customer_id
-- Each batch lands one row per customer it touched; the row of the highest batch_seq is current.
with landed as (
    select * from raw_customer_state
),

final as (
    select *
    from landed
    qualify row_number() over (partition by customer_id order by batch_seq desc) = 1
)

select * from final
