-- view: journeys
-- A customer's path through one journey cycle: cycle 0 runs up to and including the first
-- purchase; each later cycle up to and including the next renewal, or to churn.
-- grain: one row per (customer_id, journey_cycle)
with events as (
    select * from stg_parcours__touchpoints
),

final as (
    select
        customer_id,
        journey_cycle,
        any_value(cycle_type) as cycle_type,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        date_diff('second', min(occurred_at), max(occurred_at)) as duration_in_s,
        count(*) as n_steps,
        count(distinct session_id) as n_sessions,
        count(distinct channel) as n_channels,
        list(touchpoint order by occurred_at, event_id) as path,
        list(stage order by occurred_at, event_id) as stage_path,
        list(channel order by occurred_at, event_id) as channel_path,
        arg_max(stage, occurred_at) as last_stage,
        arg_max(outcome, occurred_at) as last_outcome,
        bool_or(outcome in ('purchase', 'renewal')) as is_converted,
        sum(revenue) as revenue,
        any_value(segment) as segment,
        any_value(product_line) as product_line
    from events
    group by customer_id, journey_cycle
)

select * from final
