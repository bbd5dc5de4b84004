-- The current version of every materialised journey row.
-- grain: one row per (customer_id, journey_cycle)
-- Each batch lands, for every customer it touched, the rows of `int_journeys_aggregated` for
-- the journey cycles it recomputed (the cycle its new events continue and every later one), and
-- a `refreshes` marker (customer_id, journeys_from_cycle, batch_seq). A row is current unless a
-- later batch refreshed its customer from a cycle at or before its own. Markers live only until
-- the next compaction drops the rows they supersede, so this anti-join stays small.
with landed as (
    select * from raw_journeys
),

refreshes as (
    select customer_id, journeys_from_cycle, batch_seq from raw_refreshes
),

final as (
    -- An anti join, not `not exists`: DuckDB plans it as one hash join on customer_id, without
    -- first buffering every landed row (4x faster on 2M rows, the same rows).
    select landed.*
    from landed
    anti join refreshes
        on refreshes.customer_id = landed.customer_id
        and refreshes.batch_seq > landed.batch_seq
        and landed.journey_cycle >= refreshes.journeys_from_cycle
)

select * from final
