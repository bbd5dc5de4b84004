-- view: journeys
-- A customer's path through one journey cycle: cycle 0 runs up to and including the first
-- purchase; each later cycle up to and including the next renewal, or to churn (a cycle after
-- churn is a win-back). `is_churned` when its churn is final (explicit, or silent once the
-- finality point has passed its date: see the `churns` view); `churn_status` says pending. Paths follow the path-cleaning rules and are cut at max_path_length;
-- the counts are over every event of the cycle. `n_loops`: steps of the cleaned path at a
-- touchpoint the cycle already visited; `n_back_and_forth`: returns to a stage already visited
-- after a later one was reached (int_journeys_aggregated.sql says exactly).
-- grain: one row per (customer_id, journey_cycle)
-- Materialised: the rows are `int_journeys_aggregated`'s, landed by the batches that touched
-- each cycle, so a query reads them instead of aggregating every touchpoint.
with current_journeys as (
    select * from stg_parcours__journeys
),

final as (
    select
        customer_id,
        journey_cycle,
        cycle_type,
        started_at,
        ended_at,
        duration_in_s,
        n_events,
        n_sessions,
        n_channels,
        channels,
        path,
        stage_path,
        channel_path,
        path_length,
        n_loops,
        n_back_and_forth,
        last_stage,
        last_touchpoint,
        last_outcome,
        last_activity_at,
        last_activity_stage,
        is_converted,
        is_churned,
        revenue,
        segment,
        product_line,
        churn_kind,
        churned_at,
        churn_stage,
        churn_status
    from current_journeys
)

select * from final
