-- The current attachment of every survey answer.
-- grain: one row per response_id
-- Each refresh lands, for every customer it touched (new answers, new or late touchpoints), the
-- rows of `int_survey_answers_attached` for the customer's answers from its recompute point on,
-- and a `refreshes` marker (customer_id, survey_attachments_from_at, batch_seq). A row is current
-- unless a later refresh recomputed its customer from an answer time at or before its own
-- (answers are never withdrawn, so the later refresh landed a row for it). A marker whose
-- `survey_attachments_from_at` is null (a customer whose sessions only were refreshed)
-- supersedes nothing here.
with landed as (
    select * from raw_survey_attachments
),

refreshes as (
    select customer_id, survey_attachments_from_at, batch_seq from raw_refreshes
),

final as (
    -- An anti join, as for sessions: one hash join on customer_id.
    select landed.*
    from landed
    anti join refreshes
        on refreshes.customer_id = landed.customer_id
        and refreshes.batch_seq > landed.batch_seq
        and landed.answered_at >= refreshes.survey_attachments_from_at
)

select * from final
