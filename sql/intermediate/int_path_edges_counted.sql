-- The definition of a `path_edges` row: the Sankey edges around each anchor of `paths.anchors`,
-- over the ended journeys' cleaned, aliased paths (`int_journey_paths_aliased`; open cycles
-- could still move on, so none is drawn as ended). A journey is at an anchor from its first
-- step at the anchor's stage (a step's stage) or touchpoint (its aliased name). Walking away
-- from it, `from` forward in time, `to` backward: position 1 is the anchor's step, position k
-- the (k-1)-th step after (before) it. At each position the `top` most frequent names are kept
-- and the rest read `(other)` (ties by name); step j is the edge between positions j and j + 1,
-- in time order (`from`: source at j, target at j + 1; `to`: source at j + 1, target at j). A
-- journey with no position j + 1 ends its walk at step j into `(ended)` (`from`) or from
-- `(start)` (`to`: nothing came before), so each step's edges add up to the journeys at it,
-- `n_journeys_at_step`, and a node's journeys into step j leave it at step j + 1.
-- grain: one row per (anchor, direction, step, source, target)
-- Recomputed whole (invalidation `whole`) with `paths`: its cost follows the cycles' steps.
with journeys as (
    select * from int_journey_paths_aliased where ended_by is not null
),

anchors as (
    select
        unnest(path_anchor_names) as anchor,
        unnest(path_anchor_kinds) as kind,
        unnest(path_anchor_points) as point,
        unnest(path_anchor_directions) as direction,
        unnest(path_anchor_steps) as n_steps,
        unnest(path_anchor_tops) as top
    from parcours_settings
),

as_of as (
    select
        any_value(as_of) as as_of,
        coalesce(cast(any_value(as_of) as DATE), cast(max(ended_at) as DATE)) as as_of_date
    from int_journey_paths_aliased
),

at_anchor as (
    select
        anchors.*,
        journeys.customer_id,
        journeys.journey_cycle,
        journeys.steps,
        list_position(case when anchors.kind = 'stage' then journeys.step_stages else journeys.steps end, anchors.point)
            as anchor_position
    from anchors
    cross join journeys
),

-- The names walked away from the anchor: the anchor's step first, at most n_steps + 1 of them.
walks as (
    select
        anchor,
        direction,
        n_steps,
        top,
        customer_id,
        journey_cycle,
        case
            when direction = 'from' then list_slice(steps, anchor_position, anchor_position + n_steps)
            else list_reverse(list_slice(steps, greatest(anchor_position - n_steps, 1), anchor_position))
        end as walk
    from at_anchor
    where anchor_position is not null
),

positions as (
    select
        anchor,
        direction,
        n_steps,
        top,
        customer_id,
        journey_cycle,
        len(walk) as walk_length,
        unnest(walk) as name,
        unnest(range(1, len(walk) + 1)) as position
    from walks
),

ranked as (
    select
        anchor,
        position,
        name,
        row_number() over (partition by anchor, position order by count(*) desc, name) as name_rank
    from positions
    group by anchor, position, name
),

nodes as (
    select
        positions.*,
        case when ranked.name_rank <= positions.top then positions.name else '(other)' end as node
    from positions
    join ranked using (anchor, position, name)
),

linked as (
    select
        nodes.*,
        lead(node) over (partition by anchor, customer_id, journey_cycle order by position) as next_node
    from nodes
),

edges as (
    select
        anchor,
        direction,
        position as step,
        node as near,
        coalesce(next_node, case when direction = 'from' then '(ended)' else '(start)' end) as far
    from linked
    where position <= n_steps
),

-- The journeys at each step, counted from the walks themselves.
at_step as (
    select anchor, position as step, count(*) as n_journeys_at_step
    from positions
    where position <= n_steps
    group by anchor, position
),

final as (
    select
        edges.anchor,
        edges.direction,
        edges.step,
        case when edges.direction = 'from' then edges.near else edges.far end as source,
        case when edges.direction = 'from' then edges.far else edges.near end as target,
        count(*) as n_journeys,
        any_value(at_step.n_journeys_at_step) as n_journeys_at_step,
        any_value(as_of.as_of) as as_of,
        any_value(as_of.as_of_date) as as_of_date
    from edges
    join at_step using (anchor, step)
    cross join as_of
    group by edges.anchor, edges.direction, edges.step, source, target
)

select * from final
