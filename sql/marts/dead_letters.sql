-- view: dead_letters
-- Every record the pipeline could not use, with why, where it came from and its raw payload.
-- grain: one row per rejected record
with rejected as (
    select * from raw_dead_letters
),

final as (
    select
        reason,
        detail,
        source,
        "partition" as source_partition,
        "offset" as source_offset,
        record_id,
        customer_id,
        payload_text as payload,
        payload as payload_bytes,
        batch_seq,
        ingested_at,
        ingested_date
    from rejected
)

select * from final
