-- The definition of a `sessions_daily` row: sessions counted per day (UTC, the day of their
-- start), channel, segment and product line (`unknown` when the producer sent none), the grain
-- a dashboard charts sessions at.
-- grain: one row per (started_date, channel, segment, product_line)
-- A session with events on several channels counts once under each of them, so `n_sessions`,
-- `n_events` and `revenue` add up over days, segments and product lines, not over channels.
-- `n_customers` is distinct within the row: it adds up over nothing.
-- The pipeline lands these rows for the days its refreshes touched (parcours/refresh/refresher.py); as a
-- view this model re-aggregates every session on each query: for checks, not for dashboards.
with sessions as (
    select * from stg_parcours__sessions
),

per_channel as (
    select
        started_date,
        unnest(channels) as channel,
        coalesce(segment, 'unknown') as segment,
        coalesce(product_line, 'unknown') as product_line,
        customer_id,
        is_omnichannel,
        n_events,
        duration_in_s,
        revenue
    from sessions
),

final as (
    select
        started_date,
        channel,
        segment,
        product_line,
        count(*) as n_sessions,
        count(*) filter (where is_omnichannel) as n_omnichannel_sessions,
        count(distinct customer_id) as n_customers,
        cast(sum(n_events) as BIGINT) as n_events,
        cast(sum(duration_in_s) as BIGINT) as total_duration_in_s,
        sum(revenue) as revenue
    from per_channel
    group by started_date, channel, segment, product_line
)

select * from final
