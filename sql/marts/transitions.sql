-- view: transitions
-- Steps from one touchpoint to the next (the directly-follows graph, the customer as the case),
-- by the ISO week of the from-event (`reporting.timezone`), segment and pair of touchpoints,
-- self-loops and `(start)` / `(end)` included: the edges of a process map.
-- grain: one row per (from_week, segment, from_touchpoint, to_touchpoint)
-- `n_transitions` adds up over every column. Materialised: the rows of
-- `int_transitions_counted_weekly` for each week a refresh touched, one file per week.
-- `is_complete`: the week is over at the finality point (`parcours_finality`); a step into
-- `(end)` of a week in progress may still become a step to a later touchpoint.
with counted as (
    select * from raw_transitions
),

final as (
    select
        from_week,
        segment,
        from_touchpoint,
        to_touchpoint,
        n_transitions,
        {{ is_complete }}
    from counted
)

select * from final
