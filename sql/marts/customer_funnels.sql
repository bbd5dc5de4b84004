-- view: customer_funnels
-- Each customer's best attempt at each funnel of the configuration (`funnels` in journey.yaml):
-- the furthest step it reached (`best_step` of `n_steps`), when (`reached_at[k]`: step k's
-- event time; `entered_at` = step 1's, the week it counts in), when the last window the
-- customer opened closes (`windows_close_at`: until the finality point passes it, the customer
-- may still go further), whether an exclusion event removed them (`is_excluded`), and the
-- channel, segment and product line of the attempt's step-1 event. The rules are
-- pipelines/funnels.py's; `funnel_steps` counts these rows.
-- grain: one row per (customer_id, funnel)
with funnels as (
    select * from stg_parcours__customer_funnels
),

final as (
    select
        customer_id,
        funnel,
        n_steps,
        best_step,
        best_step = n_steps as is_converted,
        entered_at,
        reached_at,
        windows_close_at,
        is_excluded,
        entry_event_id,
        journey_cycle,
        channel,
        segment,
        product_line,
        batch_seq
    from funnels
)

select * from final
