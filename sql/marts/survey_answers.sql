-- view: survey_answers
-- Survey answers attached to the touchpoint they rate: the one named by event_id, else the
-- customer's nearest preceding touchpoint within the attachment window (an ASOF join, so the
-- attachment is right whatever order the answers and the events arrived in).
-- grain: one row per response_id
with answers as (
    select * from stg_parcours__survey_answers
),

events as (
    select event_id, customer_id, occurred_at, touchpoint, stage, session_id, journey_cycle, channel
    from stg_parcours__touchpoints
),

by_event_id as (
    select answers.response_id, events.event_id, events.touchpoint, events.stage, events.session_id,
           events.journey_cycle, events.channel, 'event_id' as attached_by
    from answers
    join events on answers.event_id = events.event_id and answers.customer_id = events.customer_id
),

by_time as (
    select answers.response_id, events.event_id, events.touchpoint, events.stage, events.session_id,
           events.journey_cycle, events.channel, events.occurred_at, answers.answered_at
    from answers
    asof join events
        on answers.customer_id = events.customer_id
        and answers.answered_at >= events.occurred_at
    where answers.event_id is null
),

attached as (
    select * from by_event_id
    union all
    select response_id, event_id, touchpoint, stage, session_id, journey_cycle, channel, 'nearest_preceding'
    from by_time
    where answered_at - occurred_at <= (select attachment_window from parcours_settings)
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
        coalesce(attached.event_id, answers.event_id) as event_id,
        coalesce(answers.touchpoint, attached.touchpoint) as touchpoint,
        coalesce(answers.stage, attached.stage) as stage,
        attached.session_id,
        attached.journey_cycle,
        attached.channel,
        attached.attached_by,
        answers.extra,
        answers.source,
        answers.source_partition,
        answers.source_offset,
        answers.batch_seq,
        answers.ingested_at
    from answers
    left join attached using (response_id)
)

select * from final
