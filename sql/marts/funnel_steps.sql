-- view: funnel_steps
-- How many customers make it through each configured funnel (`funnels` in journey.yaml), step by
-- step, by ISO week of entry (`period_start`: the week of the best attempt's step-1 event),
-- overall and by the channel, segment or product line of that event (`breakdown`; `all` where a
-- dimension is rolled up, `unknown` where it was never sent).
-- grain: one row per (period_start, funnel, step_index, breakdown, channel, segment, product_line)
-- Counts add up over weeks and over the values of one breakdown (never across breakdowns):
--   n_reached = n_moved_on + n_in_progress + n_not_converted, at every step but the last;
--   n_in_progress: stopped at the step so far with a window still open at the finality point;
--   n_not_converted: stopped at the step, every window closed: they did not convert in this
--   funnel's window. Not a drop-off: a stage drop-off is no activity within the stage's timeout,
--   whatever funnel; a customer may be not converted here and active elsewhere;
--   n_excluded: removed by an exclusion step, in no other count.
-- The rates are over settled customers (every window closed, `n_settled*`), with their Wilson
-- 95 % interval, null below min_n (20) settled customers; to re-aggregate weeks or a BI filter,
-- sum the n_settled columns and divide. `is_complete`: the week of entry is over at the
-- finality point (its customers may still be in progress: see n_in_progress).
-- Materialised: the rows of `int_funnel_steps_counted`, recomputed whole by every refresh pass.
with counted as (
    select * from raw_funnel_steps
),

final as (
    select
        period_start,
        funnel,
        mode,
        step_index,
        step,
        n_steps,
        breakdown,
        channel,
        segment,
        product_line,
        n_reached,
        n_moved_on,
        n_in_progress,
        n_not_converted,
        n_excluded,
        n_settled,
        n_settled_previous,
        n_settled_start,
        {{ rates }},
        median_time_to_convert_in_s,
        {{ is_complete }},
        batch_seq
    from counted
)

select * from final
