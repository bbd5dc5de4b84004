-- A journey's path as the path analytics read it, and whether the cycle has ended.
-- The path: the journey's cleaned path (`journeys.path`: ignored touchpoints left out, repeats
-- collapsed, cut at `path_cleaning.max_path_length`) with the `paths.aliases` rules applied in
-- order to every touchpoint name, each rule to the previous one's result (PostHog's
-- `replaceRegexpAll` chain: every match of the RE2 pattern replaced), then, with
-- `collapse_repeats`, the consecutive steps the aliases made equal collapsed again. `step_stages`
-- holds each step's stage (a collapsed run's first event's). `is_truncated`: the journey's path
-- was longer than `max_path_length`, so the steps are its first ones only.
-- Ended (`ended_by`), judged at the finality point (`parcours_finality`): `converted` (a cycle
-- outcome), else `churned` (its churn is final), else `dropped_off`: the stage drop-off rule of
-- `drop_off.timeouts`, which the drop-off datasets will state on their own: the cycle's latest
-- activity (`last_activity_at`, at `last_activity_stage`) and no activity within that stage's
-- timeout, the finality point past the deadline (an `unmapped` stage takes the longest timeout,
-- so it is never judged ended early). Any other cycle is open: it may still move on.
-- grain: one row per (customer_id, journey_cycle)
-- A plain view over `journeys` (its cost follows the number of cycles and their steps, not the
-- events): the `paths` and `path_edges` datasets read it whole.
with recursive journeys as (
    select * from stg_parcours__journeys
),

settings as (
    select
        path_alias_patterns as patterns,
        path_aliases as aliases,
        collapse_repeats,
        (select finality_point from parcours_finality) as finality_point
    from parcours_settings
),

-- Each distinct touchpoint name through the rules in order: rule k applied to rule k-1's result.
names as (
    select distinct unnest(path) as touchpoint from journeys
),

aliasing as (
    select touchpoint, touchpoint as name, 0 as rule from names
    union all
    select
        aliasing.touchpoint,
        regexp_replace(aliasing.name, settings.patterns[aliasing.rule + 1], settings.aliases[aliasing.rule + 1], 'g'),
        aliasing.rule + 1
    from aliasing, settings
    where aliasing.rule < len(settings.patterns)
),

aliased_names as (
    select aliasing.touchpoint, aliasing.name
    from aliasing, settings
    where aliasing.rule = len(settings.patterns)
),

steps as (
    select
        customer_id,
        journey_cycle,
        unnest(path) as touchpoint,
        unnest(stage_path) as stage,
        unnest(range(1, len(path) + 1)) as position
    from journeys
),

named_steps as (
    select
        steps.*,
        aliased_names.name,
        lag(aliased_names.name) over (
            partition by steps.customer_id, steps.journey_cycle order by steps.position
        ) as previous_name
    from steps
    join aliased_names using (touchpoint)
),

aliased_paths as (
    select
        named_steps.customer_id,
        named_steps.journey_cycle,
        list(named_steps.name order by named_steps.position) as steps,
        list(named_steps.stage order by named_steps.position) as step_stages
    from named_steps, settings
    where not (settings.collapse_repeats and coalesce(named_steps.name = named_steps.previous_name, false))
    group by all
),

timeouts as (
    select stage, drop_off_timeout from parcours_stages
    union all
    select 'unmapped', max(drop_off_timeout) from parcours_stages
),

judged as (
    select
        journeys.*,
        coalesce(journeys.last_activity_at, journeys.ended_at) + timeouts.drop_off_timeout as drop_off_deadline
    from journeys
    left join timeouts on timeouts.stage = coalesce(journeys.last_activity_stage, journeys.last_stage)
),

final as (
    select
        judged.customer_id,
        judged.journey_cycle,
        judged.cycle_type,
        judged.started_at,
        judged.ended_at,
        judged.duration_in_s,
        coalesce(aliased_paths.steps, cast([] as VARCHAR[])) as steps,
        coalesce(aliased_paths.step_stages, cast([] as VARCHAR[])) as step_stages,
        coalesce(judged.path_length > settings_row.max_path_length, false) as is_truncated,
        case
            when judged.is_converted then 'converted'
            when judged.is_churned then 'churned'
            when settings.finality_point > judged.drop_off_deadline then 'dropped_off'
        end as ended_by,
        judged.drop_off_deadline,
        settings.finality_point as as_of
    from judged
    left join aliased_paths using (customer_id, journey_cycle)
    cross join settings
    cross join parcours_settings as settings_row
)

select * from final
