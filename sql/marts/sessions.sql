-- view: sessions
-- A customer's visit: events no more than the inactivity gap apart, within the maximum duration.
-- grain: one row per session_id
-- Materialised: the rows are `int_sessions_aggregated`'s, landed by the batches that touched
-- each session, so a query reads them instead of aggregating every touchpoint.
with current_sessions as (
    select * from stg_parcours__sessions
),

final as (
    select
        session_id,
        customer_id,
        started_at,
        ended_at,
        started_date,
        duration_in_s,
        n_events,
        channels,
        n_channels,
        is_omnichannel,
        first_touchpoint,
        last_touchpoint,
        first_stage,
        last_stage,
        journey_cycle,
        revenue,
        segment,
        product_line
    from current_sessions
)

select * from final
