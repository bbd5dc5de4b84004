-- view: journey_stages_weekly
-- Journeys that reached each lifecycle stage, by the ISO week they started in (`reporting.timezone`), cycle
-- type, segment and product line: the funnel by cohort week, read from rows the marts refresh
-- lands.
-- grain: one row per (started_week, stage, cycle_type, segment, product_line)
-- `n_journeys`, `n_converted`, `n_churned` add up over every column but `stage`; `n_customers`
-- is distinct within the row.
-- `is_complete`: the journey's week is over at the finality point (`parcours_finality`), so its
-- counts will not grow with events still allowed to arrive; false for the period in progress.
-- Materialised: the rows of `int_journey_stages_counted_weekly` for each partition (day or week) a
-- refresh touched, one file per partition, replaced whole when a later refresh touches it again
-- (parcours/refresh/refresher.py).
with rolled_up as (
    select * from raw_journey_stages_weekly
),

final as (
    select
        started_week,
        stage,
        cycle_type,
        segment,
        product_line,
        n_journeys,
        n_customers,
        n_converted,
        n_churned,
        {{ is_complete }}
    from rolled_up
)

select * from final
