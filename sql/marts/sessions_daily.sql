-- view: sessions_daily
-- Sessions per day, channel, segment and product line: what a dashboard charts sessions
-- with, read from rows the marts refresh lands (no session is re-aggregated by a query).
-- grain: one row per (started_date, channel, segment, product_line)
-- A session on several channels counts under each: sum `n_sessions` over days, segments and
-- product lines, not over channels. `n_customers` is distinct within the row.
-- `is_complete`: the session's day (UTC) is over at the finality point (`parcours_finality`), so its
-- counts will not grow with events still allowed to arrive; false for the period in progress.
-- Materialised: the rows of `int_sessions_counted_daily` for each partition (day or week) a
-- refresh touched, one file per partition, replaced whole when a later refresh touches it again
-- (parcours/refresh/refresher.py).
with rolled_up as (
    select * from raw_sessions_daily
),

final as (
    select
        started_date,
        channel,
        segment,
        product_line,
        n_sessions,
        n_omnichannel_sessions,
        n_customers,
        n_events,
        total_duration_in_s,
        revenue,
        {{ is_complete }}
    from rolled_up
)

select * from final
