-- Landed survey answers (immutable, deduplicated on response_id by the pipeline).
-- grain: one row per response_id
with final as (
    select * from raw_survey_answers
)

select * from final
