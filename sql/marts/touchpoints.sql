-- view: touchpoints
-- Every valid touchpoint event, current version, with its session and journey position.
-- grain: one row per event_id
with events as (
    select * from stg_parcours__touchpoints
),

final as (
    select
        event_id,
        customer_id,
        occurred_at,
        event_date,
        channel,
        touchpoint,
        stage,
        stage_source,
        session_id,
        session_started_at,
        journey_cycle,
        cycle_type,
        step_index,
        outcome,
        revenue,
        product_line,
        segment,
        properties,
        extra,
        schema_version,
        source,
        source_partition,
        source_offset,
        batch_seq,
        ingested_at
    from events
)

select * from final
