-- The definition of a survey attachment: each answer with the touchpoint it rates and the
-- customer's channel, segment and product line when it answered.
-- grain: one row per response_id
-- * An answer naming an `event_id` is attached to that event of its customer, whenever it
--   occurred; while the event has not landed it is `unattached` (no fallback by time), and the
--   batch that lands the event re-attaches it (the refresher touches the customer from there).
-- * An answer naming none is attached to its customer's nearest preceding touchpoint
--   (`occurred_at <= answered_at`) within `surveys.attachment_window`; among events of the same
--   instant, the greatest event_id.
-- * The answer's own touchpoint and stage win over the attached touchpoint's.
-- * Channel, segment and product line are those of the attached touchpoint, else of the
--   customer's latest touchpoint at or before `answered_at` (however old), else `unknown`; a
--   value the producer did not send reads `unknown`.
-- `answered_at` puts an answer in a period. The refresher runs this model over the answers of the
-- customers a batch touched and lands its rows in `survey_attachments`, which the `survey_answers`
-- mart reads. As a view it attaches every answer over every touchpoint on each query (what the
-- mart did before it was materialised): for checks, not for dashboards.
with answers as (
    select response_id, customer_id, answered_at, event_id, touchpoint, stage
    from stg_parcours__survey_answers
),

events as (
    select
        event_id, customer_id, occurred_at, touchpoint, stage, session_id, journey_cycle,
        channel, segment, product_line
    from stg_parcours__touchpoints
),

-- One event per customer and instant, so that "the latest at or before" names one event.
instants as (
    select customer_id, occurred_at, max(event_id) as event_id
    from events
    group by customer_id, occurred_at
),

latest_before as (
    select answers.response_id, instants.event_id, instants.occurred_at
    from answers
    asof join instants
        on answers.customer_id = instants.customer_id
        and answers.answered_at >= instants.occurred_at
),

chosen as (
    select
        answers.*,
        case
            when answers.event_id is not null then named.event_id
            when answers.answered_at - latest_before.occurred_at
                <= (select attachment_window from parcours_settings) then latest_before.event_id
        end as attached_event_id,
        latest_before.event_id as latest_event_id
    from answers
    left join events as named
        on named.event_id = answers.event_id and named.customer_id = answers.customer_id
    left join latest_before using (response_id)
),

final as (
    select
        chosen.response_id,
        chosen.customer_id,
        chosen.answered_at,
        attached.event_id,
        attached.occurred_at as event_occurred_at,
        coalesce(chosen.touchpoint, attached.touchpoint) as touchpoint,
        coalesce(chosen.stage, attached.stage) as stage,
        attached.session_id,
        attached.journey_cycle,
        coalesce(described.channel, 'unknown') as channel,
        coalesce(described.segment, 'unknown') as segment,
        coalesce(described.product_line, 'unknown') as product_line,
        case
            when attached.event_id is null then 'unattached'
            when chosen.event_id is not null then 'event_id'
            else 'nearest_preceding'
        end as attached_by
    from chosen
    left join events as attached
        on attached.event_id = chosen.attached_event_id and attached.customer_id = chosen.customer_id
    left join events as described
        on described.event_id = coalesce(chosen.attached_event_id, chosen.latest_event_id)
        and described.customer_id = chosen.customer_id
)

select * from final
