-- The definition of a journey row: a customer's path through one journey cycle. Cycle 0 runs up
-- to and including the first purchase; each later cycle up to and including the next renewal,
-- or to churn (a cycle after churn is a win-back). Its churn is the landed `churns` row of the
-- cycle (pipelines/cycles.py decides it; `is_churned` only once it is final). Paths follow the path-cleaning rules and are cut at max_path_length;
-- the counts are over every event of the cycle.
-- grain: one row per (customer_id, journey_cycle)
-- The pipeline runs this model over the (customer, journey cycle) groups each batch touched and
-- lands the rows in the `journeys` dataset (parcours/refresh/refresher.py); the `journeys` mart reads those
-- rows. As a view it aggregates every touchpoint on each query: for checks, not for dashboards.
with events as (
    select * from stg_parcours__touchpoints
),

churns as (
    select customer_id, journey_cycle, churn_kind, churned_at, churn_stage, churn_status
    from stg_parcours__churns
),

cycles as (
    select
        customer_id,
        journey_cycle,
        any_value(cycle_type) as cycle_type,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        date_diff('second', min(occurred_at), max(occurred_at)) as duration_in_s,
        count(*) as n_events,
        count(distinct session_id) as n_sessions,
        count(distinct channel) as n_channels,
        list_sort(list_distinct(list(channel))) as channels,
        arg_max(stage, occurred_at) as last_stage,
        arg_max(touchpoint, occurred_at) as last_touchpoint,
        arg_max(outcome, occurred_at) as last_outcome,
        coalesce(bool_or(list_contains((select cycle_outcomes from parcours_settings), outcome)), false)
            as is_converted,
        sum(revenue) as revenue,
        any_value(segment) as segment,
        any_value(product_line) as product_line
    from events
    group by customer_id, journey_cycle
),

paths as (
    select
        customer_id,
        journey_cycle,
        list(touchpoint order by occurred_at, event_id) as path,
        list(stage order by occurred_at, event_id) as stage_path,
        list(channel order by occurred_at, event_id) as channel_path
    from int_journey_steps_cleaned
    group by customer_id, journey_cycle
),

final as (
    select
        cycles.customer_id,
        cycles.journey_cycle,
        cycles.cycle_type,
        cycles.started_at,
        cycles.ended_at,
        cycles.duration_in_s,
        cycles.n_events,
        cycles.n_sessions,
        cycles.n_channels,
        cycles.channels,
        list_slice(paths.path, 1, settings.max_path_length) as path,
        list_slice(paths.stage_path, 1, settings.max_path_length) as stage_path,
        list_slice(paths.channel_path, 1, settings.max_path_length) as channel_path,
        len(paths.path) as path_length,
        cycles.last_stage,
        cycles.last_touchpoint,
        cycles.last_outcome,
        cycles.is_converted,
        coalesce(churns.churn_status = 'final', false) as is_churned,
        cycles.revenue,
        cycles.segment,
        cycles.product_line,
        churns.churn_kind,
        churns.churned_at,
        churns.churn_stage,
        churns.churn_status
    from cycles
    left join paths using (customer_id, journey_cycle)
    left join churns using (customer_id, journey_cycle)
    cross join parcours_settings as settings
)

select * from final
