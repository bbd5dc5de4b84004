-- view: paths
-- The variants of the journeys' paths per cycle type: each distinct cleaned, aliased path
-- (`paths.aliases` applied in order) of the cycles that have ended at the finality point
-- (converted, churned for good, or dropped off by the stage timeouts), with its count, its
-- share of the cycle type's ended cycles (95 % Wilson interval), how its journeys ended and
-- their median duration. Open cycles may still move on: they are in no variant, counted in
-- `n_open` (the cycle type's, on each of its rows). `as_of`: the finality point judged at.
-- grain: one row per (cycle_type, variant, is_truncated)
-- Materialised: the rows of `int_journey_variants_counted`, recomputed whole when the journeys
-- change or the finality point moves.
with variants as (
    select * from raw_paths
),

final as (
    select
        cycle_type,
        variant,
        is_truncated,
        n_steps,
        n_journeys,
        n_converted,
        n_churned,
        n_dropped_off,
        n_ended,
        n_open,
        share,
        share_low,
        share_high,
        median_duration_in_s,
        as_of
    from variants
)

select * from final
