-- The definition of a journey row: a customer's path through one journey cycle. Cycle 0 runs up
-- to and including the first purchase; each later cycle up to and including the next renewal,
-- or to churn (a cycle after churn is a win-back). Its churn is the landed `churns` row of the
-- cycle (pipelines/cycles.py decides it; `is_churned` only once it is final). Paths follow the path-cleaning rules and are cut at max_path_length;
-- the counts are over every event of the cycle. Over the whole cleaned path (before the cut):
-- `n_loops`, the steps at a touchpoint the cycle already visited (with collapse_repeats, a
-- reload is no loop); `n_back_and_forth`, the returns to a lifecycle stage after a later stage
-- was reached since the stage's previous visit (consideration -> purchase -> consideration: 1;
-- purchase -> consideration -> purchase: 0, a step back then forward again; `unmapped` steps
-- are no stage). `last_activity_at` / `last_activity_stage`: the latest event that is activity
-- (not `churn.not_activity`), what the drop-off rule judges a cycle by (`paths`).
-- grain: one row per (customer_id, journey_cycle)
-- The pipeline runs this model over the (customer, journey cycle) groups each batch touched and
-- lands the rows in the `journeys` dataset (parcours/refresh/refresher.py); the `journeys` mart reads those
-- rows. As a view it aggregates every touchpoint on each query: for checks, not for dashboards.
with events as (
    select
        touchpoints.* replace (coalesce(
            touchpoints.is_activity, not list_contains(settings.churn_not_activity, touchpoints.touchpoint)
        ) as is_activity)
    from stg_parcours__touchpoints as touchpoints
    cross join parcours_settings as settings
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
        max(occurred_at) filter (where is_activity) as last_activity_at,
        arg_max(stage, occurred_at) filter (where is_activity) as last_activity_stage,
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
        list(channel order by occurred_at, event_id) as channel_path,
        count(distinct touchpoint) as n_distinct_touchpoints
    from int_journey_steps_cleaned
    group by customer_id, journey_cycle
),

-- A cycle's stage visits: its cleaned steps with `unmapped` left out, a visit starting at each
-- change of stage, numbered in order, with its stage's rank and its stage's previous visit.
mapped_steps as (
    select
        steps.customer_id,
        steps.journey_cycle,
        steps.stage,
        stages.stage_rank,
        steps.occurred_at,
        steps.event_id,
        lag(steps.stage) over (
            partition by steps.customer_id, steps.journey_cycle order by steps.occurred_at, steps.event_id
        ) as previous_stage
    from int_journey_steps_cleaned as steps
    join parcours_stages as stages using (stage)
),

visits as (
    select
        customer_id,
        journey_cycle,
        stage,
        stage_rank,
        row_number() over (partition by customer_id, journey_cycle order by occurred_at, event_id) as visit
    from mapped_steps
    where previous_stage is distinct from stage
),

revisits as (
    select
        visits.*,
        lag(visit) over (partition by customer_id, journey_cycle, stage order by visit) as previous_visit
    from visits
),

-- A visit goes back and forth when its stage was visited before and a later stage was visited
-- in between (the highest rank of the visits since the previous one is above its own).
back_and_forth as (
    select
        customer_id,
        journey_cycle,
        count(*) filter (where previous_visit is not null and highest_between > stage_rank) as n_back_and_forth
    from (
        select
            revisits.*,
            max(stage_rank) over (
                partition by customer_id, journey_cycle order by visit
                rows between coalesce(visit - previous_visit - 1, 0) preceding and 1 preceding
            ) as highest_between
        from revisits
    )
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
        len(paths.path) - paths.n_distinct_touchpoints as n_loops,
        coalesce(back_and_forth.n_back_and_forth, 0) as n_back_and_forth,
        cycles.last_stage,
        cycles.last_touchpoint,
        cycles.last_outcome,
        cycles.last_activity_at,
        cycles.last_activity_stage,
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
    left join back_and_forth using (customer_id, journey_cycle)
    left join churns using (customer_id, journey_cycle)
    cross join parcours_settings as settings
)

select * from final
