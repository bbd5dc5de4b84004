-- view: churns
-- Every churned journey cycle: `explicit` (an event with a churn outcome, dated by it) or
-- `silent` (a customer, after a purchase or renewal, with no activity for churn.inactivity,
-- dated last activity + that horizon). `churn_status` is `final` once the finality point
-- (parcours_watermark) has passed `churned_at`, `pending` before: shown apart, never counted as
-- churned. The rules are pipelines/cycles.py's; this view only reads their landed rows.
-- grain: one row per (customer_id, journey_cycle)
with churns as (
    select * from stg_parcours__churns
),

final as (
    select
        customer_id,
        journey_cycle,
        churn_kind,
        churned_at,
        churn_stage,
        last_activity_at,
        churn_status,
        batch_seq
    from churns
)

select * from final
