-- view: path_step_matrix
-- The step matrix of each anchor: the share of the journeys at the anchor that are on each
-- touchpoint at step j (the name j steps away from the anchor's step: a `from` edge's target,
-- a `to` edge's source), `(other)` beyond the step's top names, and a row `(ended)` (`to`:
-- `(start)`) holding every journey whose walk ended at or before step j: each step's shares add
-- up to 1 over the journeys at the anchor (`n_at_anchor`, those at step 1). `share_low` /
-- `share_high`: its 95 % Wilson interval.
-- grain: one row per (anchor, step, touchpoint)
-- A plain view over `path_edges`.
with edges as (
    select * from path_edges
),

on_touchpoints as (
    select
        anchor,
        direction,
        step,
        case when direction = 'from' then target else source end as touchpoint,
        sum(n_journeys) as n_journeys
    from edges
    group by all
),

steps as (
    select
        anchor,
        direction,
        step,
        case when direction = 'from' then '(ended)' else '(start)' end as walk_end,
        coalesce(sum(n_journeys) filter (where touchpoint in ('(ended)', '(start)')), 0) as n_ending
    from on_touchpoints
    group by all
),

-- Journeys that ended by step j, whether at j or before: the matrix's `(ended)` row.
ended as (
    select
        anchor,
        direction,
        step,
        walk_end as touchpoint,
        sum(n_ending) over (partition by anchor order by step) as n_journeys
    from steps
),

at_anchor as (
    select anchor, any_value(n_journeys_at_step) as n_at_anchor
    from edges
    where step = 1
    group by anchor
),

cells as (
    select * from on_touchpoints where touchpoint not in ('(ended)', '(start)')
    union all
    select * from ended
),

shares as (
    select
        cells.*,
        at_anchor.n_at_anchor,
        cells.n_journeys / at_anchor.n_at_anchor as share,
        1.959963984540054 as z
    from cells
    join at_anchor using (anchor)
),

final as (
    select
        anchor,
        direction,
        step,
        touchpoint,
        cast(n_journeys as BIGINT) as n_journeys,
        n_at_anchor,
        share,
        (share + z ^ 2 / (2 * n_at_anchor) - z * sqrt(share * (1 - share) / n_at_anchor + z ^ 2 / (4 * n_at_anchor ^ 2)))
            / (1 + z ^ 2 / n_at_anchor) as share_low,
        (share + z ^ 2 / (2 * n_at_anchor) + z * sqrt(share * (1 - share) / n_at_anchor + z ^ 2 / (4 * n_at_anchor ^ 2)))
            / (1 + z ^ 2 / n_at_anchor) as share_high
    from shares
)

select * from final
