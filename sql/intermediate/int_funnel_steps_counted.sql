-- The definition of a `funnel_steps` row: the customers of one funnel whose best attempt
-- started (step 1) in one ISO week (`{{ period }}` of `entered_at`, in `reporting.timezone`),
-- overall or by the channel, segment or product line of that step-1 event, counted at one step.
-- grain: one row per (period_start, funnel, step_index, breakdown, channel, segment, product_line)
-- A customer counts once per funnel, in one week and one value of each breakdown: every count
-- but the rates adds up over weeks and over the values of one breakdown.
-- * n_reached: best attempt at this step or further (excluded customers are in no count but
--   n_excluded); n_moved_on: further (the next step's n_reached);
-- * n_in_progress: stopped at this step so far, with a window still open at the finality point
--   (`parcours_finality`): they may still move on. n_not_converted: stopped here, every window
--   closed. At the last step both are 0: a customer who reached it has converted;
-- * n_settled: reached this step with every window closed (`windows_close_at` at or before the
--   finality point): the customers the rates and times are computed over, converted or not, so
--   that fast converters are not counted before the slow ones can be (GrowthBook's rule);
--   n_settled_previous / n_settled_start: the settled customers at the previous step / at step 1;
-- * median_time_to_convert_in_s: from the step-1 event to this step's, over settled customers.
-- The rates and their intervals are added by the refresher (the declaration's `intervals`).
with settings as (
    select funnels from parcours_settings
),

declared as (
    select unnest(
        from_json(funnels, '[{"name": "VARCHAR", "mode": "VARCHAR", "steps": [{"kind": "VARCHAR", "name": "VARCHAR"}]}]')
    ) as funnel
    from settings
),

steps as (
    select
        funnel.name as funnel,
        funnel.mode as mode,
        cast(len(funnel.steps) as INTEGER) as n_steps,
        cast(unnest(range(1, len(funnel.steps) + 1)) as INTEGER) as step_index,
        funnel.steps as declared_steps
    from declared
),

named_steps as (
    select
        funnel,
        mode,
        n_steps,
        step_index,
        -- in any order, step k is "k distinct steps", whichever they are
        case
            when mode = 'any_order' then 'any ' || step_index || ' of ' || n_steps
            else declared_steps[step_index].name
        end as step
    from steps
),

customers as (
    select
        attempts.*,
        coalesce(attempts.windows_close_at <= finality.finality_point, false) as is_settled
    from stg_parcours__customer_funnels as attempts
    cross join parcours_finality as finality
),

per_step as (
    select
        {{ period }} as period_start,
        named_steps.funnel,
        named_steps.mode,
        named_steps.step_index,
        named_steps.step,
        named_steps.n_steps,
        customers.channel,
        customers.segment,
        customers.product_line,
        customers.is_excluded,
        customers.is_settled,
        not customers.is_excluded and customers.best_step >= named_steps.step_index as is_reached,
        not customers.is_excluded and customers.best_step > named_steps.step_index as is_moved_on,
        not customers.is_excluded
        and customers.best_step = named_steps.step_index
        and named_steps.step_index < named_steps.n_steps as is_stopped,
        not customers.is_excluded and customers.best_step >= named_steps.step_index - 1 as is_previous,
        case
            when named_steps.step_index <= customers.best_step
                then epoch(customers.reached_at[named_steps.step_index]) - epoch(customers.entered_at)
        end as time_to_convert_in_s
    from customers
    inner join named_steps on customers.funnel = named_steps.funnel
),

final as (
    select
        {{ breakdown }},
        -- one value per (funnel, step_index)
        any_value(mode) as mode,
        any_value(step) as step,
        any_value(n_steps) as n_steps,
        count(*) filter (where is_reached) as n_reached,
        count(*) filter (where is_moved_on) as n_moved_on,
        count(*) filter (where is_stopped and not is_settled) as n_in_progress,
        count(*) filter (where is_stopped and is_settled) as n_not_converted,
        count(*) filter (where is_excluded) as n_excluded,
        count(*) filter (where is_reached and is_settled) as n_settled,
        case when step_index > 1 then count(*) filter (where is_previous and is_settled) end as n_settled_previous,
        count(*) filter (where not is_excluded and is_settled) as n_settled_start,
        case
            when step_index > 1 then median(time_to_convert_in_s) filter (where is_reached and is_settled)
        end as median_time_to_convert_in_s
    from per_step
    group by {{ grouping_sets }}
)

select * from final
