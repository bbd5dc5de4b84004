-- view: survey_answers
-- Survey answers with the touchpoint they rate (the one named by event_id, else the customer's
-- nearest preceding touchpoint within the attachment window) and the customer's channel,
-- segment and product line when it answered (`attached_by`: event_id | nearest_preceding |
-- unattached).
-- grain: one row per response_id
-- Materialised: the attachment is `int_survey_answers_attached`'s, landed in `survey_attachments`
-- by the refreshes that touched each customer (new answers, new or late touchpoints), so a query
-- joins on response_id instead of attaching over every touchpoint. An answer landed by a batch the
-- refresher has not run after yet has no attachment (`attached_by` null) until it does.
-- `answered_at` puts an answer in a period.
with answers as (
    select * from stg_parcours__survey_answers
),

attachments as (
    select * from stg_parcours__survey_attachments
),

final as (
    select
        answers.response_id,
        answers.customer_id,
        answers.answered_at,
        answers.answered_date,
        answers.survey,
        answers.question_id,
        answers.score,
        answers.scale,
        answers.dysfunctional_score,
        answers.verbatim,
        answers.language,
        coalesce(attachments.event_id, answers.event_id) as event_id,
        coalesce(answers.touchpoint, attachments.touchpoint) as touchpoint,
        coalesce(answers.stage, attachments.stage) as stage,
        attachments.session_id,
        attachments.journey_cycle,
        attachments.channel,
        attachments.attached_by,
        attachments.segment,
        attachments.product_line,
        attachments.event_occurred_at,
        answers.extra,
        answers.source,
        answers.source_partition,
        answers.source_offset,
        answers.batch_seq,
        answers.ingested_at
    from answers
    left join attachments using (response_id)
)

select * from final
