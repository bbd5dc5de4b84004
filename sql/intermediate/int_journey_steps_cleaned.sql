-- Journey steps after the configured path cleaning: ignored touchpoints left out, and
-- consecutive repeats of one touchpoint within a cycle (reloads, double sends) collapsed when
-- `collapse_repeats` is on. The events themselves stay complete in `touchpoints`.
-- grain: one row per event_id kept in a journey path
with settings as (
    select ignore_touchpoints, collapse_repeats from parcours_settings
),

events as (
    select touchpoints.*
    from stg_parcours__touchpoints as touchpoints, settings
    where not list_contains(settings.ignore_touchpoints, touchpoints.touchpoint)
),

ordered as (
    select
        events.*,
        lag(touchpoint) over (
            partition by customer_id, journey_cycle order by occurred_at, event_id
        ) as previous_touchpoint
    from events
),

final as (
    select ordered.*
    from ordered, settings
    where not (settings.collapse_repeats and coalesce(ordered.touchpoint = ordered.previous_touchpoint, false))
)

select * from final
