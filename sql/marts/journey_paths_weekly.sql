-- view: journey_paths_weekly
-- Journeys by their first steps, the ISO week they started in (`reporting.timezone`), cycle type and how they
-- ended: the top paths of a dashboard, read from rows the marts refresh lands.
-- grain: one row per (started_week, first_steps, cycle_type, is_converted, is_churned)
-- Every measure adds up over every column. `first_steps` is the first
-- `path_cleaning.summary_steps` touchpoints of the journey's cleaned path.
-- `is_complete`: the journey's week is over at the finality point (`parcours_finality`), so its
-- counts will not grow with events still allowed to arrive; false for the period in progress.
-- Materialised: the rows of `int_journey_paths_counted_weekly` for each partition (day or week) a
-- refresh touched, one file per partition, replaced whole when a later refresh touches it again
-- (parcours/refresh/refresher.py).
with rolled_up as (
    select * from raw_journey_paths_weekly
),

final as (
    select
        started_week,
        first_steps,
        cycle_type,
        is_converted,
        is_churned,
        n_journeys,
        n_events,
        revenue,
        {{ is_complete }}
    from rolled_up
)

select * from final
