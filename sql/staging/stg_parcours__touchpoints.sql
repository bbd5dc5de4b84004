-- The current version of every landed touchpoint event.
-- grain: one row per event_id
-- Events are immutable, but the derived columns (session, cycle, step) of a customer's events
-- are recomputed when an event arrives late, out of order: the batch that recomputes them lands
-- a new version of every event from the late event onwards and a `rewrites` marker
-- (customer_id, from_at, batch_seq). A row is current unless a later batch rewrote its
-- customer from a time at or before it. Rewrites are rare (late events only), so this
-- anti-join stays cheap.
with landed as (
    select * from raw_touchpoints
),

rewrites as (
    select customer_id, from_at, batch_seq from raw_rewrites
),

final as (
    -- An anti join, not `not exists`: DuckDB plans it as one hash join on customer_id, without
    -- first buffering every landed row (4x faster on 2M rows, the same rows).
    select landed.*
    from landed
    anti join rewrites
        on rewrites.customer_id = landed.customer_id
        and rewrites.batch_seq > landed.batch_seq
        and landed.occurred_at >= rewrites.from_at
)

select * from final
