-- The definition of a `touchpoints_daily` row: current touchpoint events counted per day (UTC,
-- the partition day of the event), stage, channel, touchpoint, segment and product line
-- (`unknown` when the producer sent none).
-- grain: one row per (event_date, stage, channel, touchpoint, segment, product_line)
-- `n_events` and `revenue` add up over every column; `n_customers` is distinct within the row.
-- The pipeline lands these rows for the days its batches touched (parcours/refresh/refresher.py); as a
-- view this model re-aggregates every touchpoint on each query: for checks, not for dashboards.
with events as (
    select * from stg_parcours__touchpoints
),

final as (
    select
        event_date,
        stage,
        channel,
        touchpoint,
        coalesce(segment, 'unknown') as segment,
        coalesce(product_line, 'unknown') as product_line,
        count(*) as n_events,
        count(distinct customer_id) as n_customers,
        sum(revenue) as revenue
    from events
    group by event_date, stage, channel, touchpoint, segment, product_line
)

select * from final
