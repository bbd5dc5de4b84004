-- The definition of a journey row: a customer's path through one journey cycle. Cycle 0 runs up
-- to and including the first purchase; each later cycle up to and including the next renewal,
-- or to churn (a cycle after churn is a win-back). Its churn is the landed `churns` row of the
-- cycle (pipelines/cycles.py decides it; `is_churned` only once it is final). Paths follow the path-cleaning rules and are cut at max_path_length;
-- the counts are over every event of the cycle. Over the whole cleaned path (before the cut):
-- `n_loops`, the steps at a touchpoint the cycle already visited (with collapse_repeats, a
-- reload is no loop); `n_back_and_forth`, the returns to a lifecycle stage already visited
-- after a later stage was reached (consideration -> purchase -> consideration: 1; purchase ->
-- consideration -> purchase: 0, a step back then forward again; `unmapped` steps are no
-- stage). `last_activity_at` / `last_activity_stage`: the latest event that is activity (not
-- `churn.not_activity`), what the drop-off rule judges a cycle by (`paths`).
-- grain: one row per (customer_id, journey_cycle)
-- The pipeline runs this model over the (customer, journey cycle) groups each batch touched and
-- lands the rows in the `journeys` dataset (parcours/refresh/refresher.py); the `journeys` mart reads those
-- rows. As a view it aggregates every touchpoint on each query: for checks, not for dashboards.
with events as (
    -- An event landed before `is_activity` existed counts as activity (pipelines/cycles.py).
    select * replace (coalesce(is_activity, true) as is_activity) from stg_parcours__touchpoints
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
        list(channel order by occurred_at, event_id) as channel_path
    from int_journey_steps_cleaned
    group by customer_id, journey_cycle
),

-- Back and forth, over each cycle's cleaned stage path (the `paths` list, not the steps again),
-- `unmapped` steps left out: a step starts a stage visit when its stage differs from the
-- previous step's; the visit goes back and forth when its stage was visited before (the
-- stages seen so far, as bits of their ranks) and a later stage was reached before it (the
-- highest rank so far).
stage_steps as (
    select
        customer_id,
        journey_cycle,
        unnest(stage_path) as stage,
        unnest(range(1, len(stage_path) + 1)) as step
    from paths
),

ranked_steps as (
    select
        steps.customer_id,
        steps.journey_cycle,
        steps.stage,
        stages.stage_rank,
        lag(steps.stage) over earlier_steps as previous_stage,
        max(stages.stage_rank) over before as highest_rank_before,
        bit_or(cast(1 as UBIGINT) << stages.stage_rank) over before as ranks_seen_before
    from stage_steps as steps
    join parcours_stages as stages using (stage)
    window
        earlier_steps as (partition by steps.customer_id, steps.journey_cycle order by steps.step),
        before as (earlier_steps rows between unbounded preceding and 1 preceding)
),

back_and_forth as (
    select
        customer_id,
        journey_cycle,
        count(*) filter (
            where previous_stage is distinct from stage
            and (ranks_seen_before >> stage_rank) & 1 = 1
            and highest_rank_before > stage_rank
        ) as n_back_and_forth
    from ranked_steps
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
        len(paths.path) - len(list_distinct(paths.path)) as n_loops,
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
