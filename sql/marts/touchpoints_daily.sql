-- view: touchpoints_daily
-- Current touchpoint events per day, stage, channel, touchpoint, segment and product line,
-- read from rows the marts refresh lands.
-- grain: one row per (event_date, stage, channel, touchpoint, segment, product_line)
-- `n_events` and `revenue` add up over every column; `n_customers` is distinct within the row.
-- `is_complete`: the event's day (UTC) is over at the finality point (`parcours_finality`), so its
-- counts will not grow with events still allowed to arrive; false for the period in progress.
-- Materialised: the rows of `int_touchpoints_counted_daily` for each partition (day or week) a
-- refresh touched, one file per partition, replaced whole when a later refresh touches it again
-- (parcours/refresh/refresher.py).
with rolled_up as (
    select * from raw_touchpoints_daily
),

final as (
    select
        event_date,
        stage,
        channel,
        touchpoint,
        segment,
        product_line,
        n_events,
        n_customers,
        revenue,
        {{ is_complete }}
    from rolled_up
)

select * from final
