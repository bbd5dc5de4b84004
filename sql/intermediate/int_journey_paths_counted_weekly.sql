-- The definition of a `journey_paths_weekly` row: journeys counted by their first steps (the
-- first `path_summary_steps` touchpoints of the cleaned path), by the ISO week the journey
-- started in (`{{ period }}`: in `reporting.timezone`, UTC unless set), its cycle type and how
-- it ended: the "top paths" of a dashboard.
-- grain: one row per (started_week, first_steps, cycle_type, is_converted, is_churned)
-- `n_journeys`, `n_events` and `revenue` add up over every column.
-- The pipeline lands these rows for the weeks its refreshes touched (parcours/refresh/refresher.py); as a
-- view this model re-aggregates every journey on each query: for checks, not for dashboards.
with journeys as (
    select * from stg_parcours__journeys
),

final as (
    select
        {{ period }} as started_week,
        list_slice(journeys.path, 1, settings.path_summary_steps) as first_steps,
        journeys.cycle_type,
        journeys.is_converted,
        journeys.is_churned,
        count(*) as n_journeys,
        cast(sum(journeys.n_events) as BIGINT) as n_events,
        sum(journeys.revenue) as revenue
    from journeys
    cross join parcours_settings as settings
    group by all
)

select * from final
