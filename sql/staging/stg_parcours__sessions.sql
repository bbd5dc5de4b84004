-- The current version of every materialised session row.
-- grain: one row per session_id
-- Each batch lands, for every customer it touched, the rows of `int_sessions_aggregated` for the
-- sessions it recomputed (those starting at or after the session its new events continue), and
-- a `refreshes` marker (customer_id, sessions_from_at, batch_seq). A row is current unless a
-- later batch refreshed its customer from a session start at or before its own. Markers live
-- only until the next compaction drops the rows they supersede, so this anti-join stays small.
with landed as (
    select * from raw_sessions
),

refreshes as (
    select customer_id, sessions_from_at, batch_seq from raw_refreshes
),

final as (
    -- An anti join, not `not exists`: DuckDB plans it as one hash join on customer_id, without
    -- first buffering every landed row (4x faster on 2M rows, the same rows).
    select landed.*
    from landed
    anti join refreshes
        on refreshes.customer_id = landed.customer_id
        and refreshes.batch_seq > landed.batch_seq
        and landed.started_at >= refreshes.sessions_from_at
)

select * from final
