-- view: path_edges
-- The Sankey edges around each anchor of `paths.anchors` (a stage or a touchpoint, `from` it
-- forward or `to` it backward), over the ended journeys' cleaned, aliased paths: at step j, the
-- edge between the j-th and (j+1)-th names walked away from the anchor's first step, in time
-- order (source before target). Beyond each step's `top` names the rest read `(other)`; a
-- journey whose path ends goes to `(ended)` (from `(start)`, walking back), so a step's edges
-- add up to `n_journeys_at_step`. `as_of`: the finality point judged at.
-- grain: one row per (anchor, direction, step, source, target)
-- Materialised: the rows of `int_path_edges_counted`, recomputed whole with `paths`.
with edges as (
    select * from raw_path_edges
),

final as (
    select
        anchor,
        direction,
        step,
        source,
        target,
        n_journeys,
        n_journeys_at_step,
        as_of
    from edges
)

select * from final
