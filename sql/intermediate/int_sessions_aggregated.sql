-- The definition of a session row: a customer's visit, events no more than the inactivity gap
-- apart, within the maximum duration, aggregated from its current touchpoints.
-- grain: one row per session_id
-- The pipeline runs this model over the sessions each batch touched and lands the rows in the
-- `sessions` dataset (parcours/refresh/refresher.py); the `sessions` mart reads those rows. As a view it
-- aggregates every touchpoint on each query: for checks, not for dashboards.
with events as (
    select * from stg_parcours__touchpoints
),

final as (
    select
        session_id,
        any_value(customer_id) as customer_id,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        cast(timezone('UTC', min(occurred_at)) as date) as started_date,
        date_diff('second', min(occurred_at), max(occurred_at)) as duration_in_s,
        count(*) as n_events,
        list_sort(list_distinct(list(channel))) as channels,
        count(distinct channel) as n_channels,
        count(distinct channel) > 1 as is_omnichannel,
        arg_min(touchpoint, occurred_at) as first_touchpoint,
        arg_max(touchpoint, occurred_at) as last_touchpoint,
        arg_min(stage, occurred_at) as first_stage,
        arg_max(stage, occurred_at) as last_stage,
        min(journey_cycle) as journey_cycle,
        sum(revenue) as revenue,
        any_value(segment) as segment,
        any_value(product_line) as product_line
    from events
    group by session_id
)

select * from final
