-- The definition of a `journey_stages_weekly` row: journeys that reached each lifecycle stage,
-- by the ISO week the journey started in (`{{ period }}`: in `reporting.timezone`, UTC unless
-- set), its cycle type, segment and product line (`unknown` when the producer sent none).
-- A journey reaches a stage when its path (cleaned, cut at max_path_length) holds a step of
-- that stage, whatever the order: journeys skip and loop.
-- grain: one row per (started_week, stage, cycle_type, segment, product_line)
-- `n_journeys`, `n_converted` and `n_churned` add up over every column but `stage`;
-- `n_customers` is distinct within the row.
-- The pipeline lands these rows for the weeks its refreshes touched (parcours/refresh/refresher.py); as a
-- view this model re-aggregates every journey on each query: for checks, not for dashboards.
with journeys as (
    select * from stg_parcours__journeys
),

reached as (
    select
        {{ period }} as started_week,
        unnest(list_distinct(stage_path)) as stage,
        cycle_type,
        coalesce(segment, 'unknown') as segment,
        coalesce(product_line, 'unknown') as product_line,
        customer_id,
        is_converted,
        is_churned
    from journeys
),

final as (
    select
        started_week,
        stage,
        cycle_type,
        segment,
        product_line,
        count(*) as n_journeys,
        count(distinct customer_id) as n_customers,
        count(*) filter (where is_converted) as n_converted,
        count(*) filter (where is_churned) as n_churned
    from reached
    group by started_week, stage, cycle_type, segment, product_line
)

select * from final
