-- The definition of a `paths` row: the variants of the journeys' paths, per cycle type, over
-- the cycles that have ended at the finality point (`int_journey_paths_aliased`: converted,
-- churned for good, or dropped off by the stage timeouts), so a count never holds a journey
-- that may still move on. A variant is a cleaned, aliased path (`int_journey_paths_aliased`),
-- cut at `path_cleaning.max_path_length`: a cut variant reads `is_truncated`, apart from the
-- complete path of the same steps.
-- grain: one row per (cycle_type, variant, is_truncated)
-- `share` = n_journeys / n_ended, the ended cycles of the cycle type, with its 95 % Wilson
-- interval (added by the refresher's statistics step: the declaration's `intervals`); `n_open` counts the cycle type's open cycles (in no variant). `median_duration_in_s`
-- over the variant's journeys (first to last event). `as_of`: the finality point judged at.
-- Recomputed whole (invalidation `whole`) whenever `journeys` changed or the finality point
-- moved: its cost follows the number of cycles and their steps, not the events.
with journeys as (
    select * from int_journey_paths_aliased
),

as_of as (
    select
        any_value(as_of) as as_of,
        coalesce(cast(any_value(as_of) as DATE), cast(max(ended_at) as DATE)) as as_of_date
    from journeys
),

per_cycle_type as (
    select
        cycle_type,
        count(*) filter (where ended_by is not null) as n_ended,
        count(*) filter (where ended_by is null) as n_open
    from journeys
    group by cycle_type
),

variants as (
    select
        cycle_type,
        steps as variant,
        is_truncated,
        count(*) as n_journeys,
        count(*) filter (where ended_by = 'converted') as n_converted,
        count(*) filter (where ended_by = 'churned') as n_churned,
        count(*) filter (where ended_by = 'dropped_off') as n_dropped_off,
        cast(median(duration_in_s) as DOUBLE) as median_duration_in_s
    from journeys
    where ended_by is not null
    group by cycle_type, steps, is_truncated
),

shares as (
    select
        variants.*,
        per_cycle_type.n_ended,
        per_cycle_type.n_open
    from variants
    join per_cycle_type using (cycle_type)
),

final as (
    select
        shares.cycle_type,
        shares.variant,
        shares.is_truncated,
        len(shares.variant) as n_steps,
        shares.n_journeys,
        shares.n_converted,
        shares.n_churned,
        shares.n_dropped_off,
        shares.n_ended,
        shares.n_open,
        shares.median_duration_in_s,
        as_of.as_of,
        as_of.as_of_date
    from shares
    cross join as_of
)

select * from final
