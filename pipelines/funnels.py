"""Funnel rules: each customer's best attempt at each configured funnel.

The refresher runs `funnel_rows` as a Python model (the `customer_funnels` dataset, declared in
`sql/intermediate/int_customer_funnels_derived.yml`) over every current event of the customers a
pass touched; `funnel_steps` counts its rows. One row per customer and funnel they entered.

What counts (the funnels' comment in `parcours/journey.yaml` says it for users):
* only activity (`is_activity`: the touchpoints of `churn.not_activity` are what the company
  sends) fills a step or an exclusion; events are read in (`occurred_at`, `event_id`) order, so
  ties in time are ordered by id;
* an **attempt** starts at an event of step 1 and may reach the other steps within `window` of
  that event (inclusive, as ClickHouse's `windowFunnel`: `t_k <= t_1 + window`);
* the **best attempt** reaches the furthest step; of those reaching it, the first to get there,
  and of those, the latest start (the shortest time to convert);
* `windows_close_at`: when the last window the customer opened closes. Until the finality point
  passes it, an attempt may still go further (the customer is *in progress* at their best step
  unless they reached the last) and the customer is left out of the rates and times to convert,
  converted or not (GrowthBook's rule: a unit counts once its whole window is over; counting the
  fast converters early would bias every rate up).

The modes:
* `ordered`: steps 1..k in order, other events between them allowed: ClickHouse's
  `windowFunnel(window)` (the latest start of each level kept, which is optimal), except that
  one event fills one step (its steps tried from the last, as PostHog does), where ClickHouse
  lets an event matching two conditions fill both;
* `strict`: ClickHouse's `windowFunnel(window, 'strict_order')` evaluated from each step-1
  event, the best counting: from a step-1 event, the chain stops at the first event that is not a
  step of the funnel, or is a step whose previous step it has not reached (repeats of steps it
  reached do not stop it, a repeat of step 1 starts a newer chain beside it). ClickHouse itself
  stops at the first such event of the whole history, so a later clean attempt would be lost;
* `furthest`: the steps are stages in lifecycle order; an attempt starts at an event of step 1's
  stage and reaches step k at the first event within the window whose stage is step k's or any
  later one: skipped stages do not lose a customer;
* `any_order`: an attempt starts at any step's event; it reaches k when k distinct steps have an
  event within the window (step k of the views then reads "any k of n").

Exclusions: an event of an exclusion's stage or touchpoint after the best attempt's `after_step`
event and before its `before_step` event (when the attempt did not reach `before_step`: within
its window) excludes the customer: `is_excluded`, counted apart, in no other count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parcours.warehouse.datasets import FUNNEL_ARROW

FUNNEL_SCHEMA = FUNNEL_ARROW


@dataclass(frozen=True, slots=True)
class FunnelRule:
    """One configured funnel, as `JourneyConfig.funnels_record()` gives it."""

    name: str
    mode: str
    window_in_s: int
    steps: tuple[tuple[str, str], ...]  # (kind, name): kind is stage | touchpoint
    exclusions: tuple[tuple[str, str, int, int], ...] = ()  # (kind, name, after_step, before_step)
    stages: tuple[str, ...] = ()  # the lifecycle, in order (a furthest funnel's)


def funnel_rules(record: str | Sequence[Mapping[str, Any]]) -> tuple[FunnelRule, ...]:
    """The funnels of a settings record (`parcours_settings.funnels`, JSON) as rules."""
    funnels = json.loads(record) if isinstance(record, str) else record
    return tuple(
        FunnelRule(
            f["name"],
            f["mode"],
            int(f["window_in_s"]),
            tuple((s["kind"], s["name"]) for s in f["steps"]),
            tuple((e["kind"], e["name"], int(e["after_step"]), int(e["before_step"])) for e in f["exclusions"]),
            tuple(f.get("stages") or ()),
        )
        for f in funnels
    )


def funnel_arguments(settings: Mapping[str, Any], clock: Any) -> tuple[Any, ...]:
    """What the refresher passes `funnel_rows` after the events: the funnels."""
    return (funnel_rules(settings.get("funnels") or "[]"),)


@dataclass(slots=True)
class Attempt:
    """The best attempt of one customer at one funnel (indices into its events)."""

    level: int  # steps reached, 0 when the customer never entered
    events: list[int]  # the event index of each step reached
    reached_at: int  # when it reached `level` (micros): ties between attempts go to the first


NOT_ENTERED = Attempt(0, [], 0)


def _better(level: int, at: int, start: int, best: Attempt, times: Sequence[int]) -> bool:
    """Whether an attempt reaching `level` at `at`, started at `start`, beats `best`."""
    if level != best.level:
        return level > best.level
    if at != best.reached_at:
        return at < best.reached_at
    return start > times[best.events[0]]


def best_ordered(matches: Sequence[tuple[int, ...]], times: Sequence[int], window: int, n: int) -> Attempt:
    """`ordered`: per level, the chain reaching it with the latest start (what can go furthest).
    `matches[i]`: the steps event i matches, the last first (one event fills one step)."""
    chains: list[list[int] | None] = [None] * n
    best = NOT_ENTERED
    for i, steps in enumerate(matches):
        if not steps:
            continue
        t = times[i]
        for k in steps:
            if k == 0:
                chains[0] = [i]
            else:
                previous = chains[k - 1]
                if previous is None or t - times[previous[0]] > window:
                    continue
                current = chains[k]
                if current is None or times[previous[0]] >= times[current[0]]:
                    chains[k] = [*previous, i]
            chain = chains[k]
            if _better(k + 1, t, times[chain[0]], best, times):
                best = Attempt(k + 1, chain, t)
    return best


def best_strict(matches: Sequence[tuple[int, ...]], times: Sequence[int], window: int, n: int) -> Attempt:
    """`strict`: ClickHouse's `strict_order` chain evaluated from each step-1 event."""
    best = NOT_ENTERED
    for start, steps in enumerate(matches):
        if 0 not in steps:
            continue
        chains: list[list[int] | None] = [None] * n
        for i in range(start, len(matches)):
            here = matches[i]
            if not here:
                break  # an event that is no step of the funnel ends the chain
            stop = False
            for k in here:
                if k == 0:
                    chains[0] = [i]
                elif chains[k - 1] is None:
                    stop = True  # a step whose previous step was not reached
                    break
                elif times[i] - times[chains[k - 1][0]] <= window:
                    chains[k] = [*chains[k - 1], i]
                else:
                    continue
                chain = chains[k]
                if _better(k + 1, times[i], times[chain[0]], best, times):
                    best = Attempt(k + 1, chain, times[i])
            if stop:
                break
    return best


def best_furthest(ranks: Sequence[int], times: Sequence[int], window: int, n: int) -> Attempt:
    """`furthest`: `ranks[i]` is the furthest step event i reaches (0 before step 1's stage, -1
    at step 1's stage itself: an attempt starts there). An event past a skipped step fills every
    step up to its own (they share its time)."""
    best = NOT_ENTERED
    size = len(ranks)
    for start in range(size):
        if ranks[start] != -1:
            continue
        if best.level == n and start > best.events[-1]:
            break  # a later attempt reaches the last step later: it cannot be the first to
        limit = times[start] + window
        events, level = [start], 1
        for j in range(start + 1, size):
            if times[j] > limit:
                break
            reach = ranks[j]  # at most n; -1 (a step-1 event) reaches no further than 1
            if reach > level:
                events.extend([j] * (reach - level))
                level = reach
                if level == n:
                    break
        if _better(level, times[events[-1]], times[start], best, times):
            best = Attempt(level, events, times[events[-1]])
    return best


def best_any_order(matches: Sequence[tuple[int, ...]], times: Sequence[int], window: int, n: int) -> Attempt:
    """`any_order`: from each step event, the distinct steps with an event within the window."""
    best = NOT_ENTERED
    for start, steps in enumerate(matches):
        if not steps:
            continue
        if best.level == n and start > best.events[-1]:
            break  # a later attempt reaches the last step later: it cannot be the first to
        seen: set[int] = set()
        events: list[int] = []
        for j in range(start, len(matches)):
            if times[j] - times[start] > window:
                break
            fresh = [k for k in matches[j] if k not in seen]
            if fresh:
                seen.add(fresh[0])
                events.append(j)
                if len(seen) == n:
                    break
        if _better(len(events), times[events[-1]], times[start], best, times):
            best = Attempt(len(events), events, times[events[-1]])
    return best


def _excluded(rule: FunnelRule, attempt: Attempt, hits: Sequence[np.ndarray], times: Sequence[int]) -> bool:
    """Whether an exclusion event (`hits`: per exclusion, the indices of its events) lies between
    the attempt's steps `after_step` and `before_step` (within its window when it did not get
    there). `rule.window_in_s` is in microseconds here."""
    for (_, _, after, before), found in zip(rule.exclusions, hits, strict=True):
        if attempt.level < after or not len(found):
            continue
        low = attempt.events[after - 1]
        if attempt.level >= before:
            inside = (found > low) & (found < attempt.events[before - 1])
        else:
            limit = times[attempt.events[0]] + rule.window_in_s
            inside = (found > low) & (np.asarray(times, dtype=np.int64)[found] <= limit)
        if inside.any():
            return True
    return False


def _column(kind: str, touchpoints: np.ndarray, stages: np.ndarray) -> np.ndarray:
    return stages if kind == "stage" else touchpoints


class _Prepared:
    """One funnel's view of a run of events (all customers at once, vectorised): per event what
    it matches, whether it opens a window, and the exclusions' events."""

    def __init__(self, rule: FunnelRule, touchpoints: np.ndarray, stages: np.ndarray) -> None:
        self.rule = rule
        if rule.mode == "furthest":
            rank_of = {stage: r for r, stage in enumerate(rule.stages)}
            step_ranks = np.array([rank_of[name] for _, name in rule.steps])
            names, inverse = np.unique(stages.astype(str), return_inverse=True)
            event_ranks = np.array([rank_of.get(str(s), -1) for s in names])[inverse]
            # the furthest step an event reaches: the steps whose stage is at or before its own
            ranks = np.searchsorted(step_ranks, event_ranks, side="right")
            opens = event_ranks == step_ranks[0]
            self.steps: list = np.where(opens, -1, ranks).tolist()
        else:
            codes = np.zeros(len(stages), dtype=np.int64)
            for k, (kind, name) in enumerate(rule.steps):
                codes |= (_column(kind, touchpoints, stages) == name).astype(np.int64) << k
            n = len(rule.steps)
            table = {int(c): tuple(k for k in reversed(range(n)) if c >> k & 1) for c in np.unique(codes)}
            self.steps = [table[c] for c in codes.tolist()]
            opens = codes != 0 if rule.mode == "any_order" else (codes & 1) == 1
        self.opens = opens
        self.exclusions = [_column(kind, touchpoints, stages) == name for kind, name, _, _ in rule.exclusions]


def customer_attempt(
    rule: FunnelRule, touchpoints: np.ndarray, stages: np.ndarray, times: np.ndarray
) -> tuple[Attempt, int | None, bool]:
    """The best attempt of one customer's activity (in time order, `times` in micros), when their
    last window closes (micros; None when they opened none) and whether they are excluded."""
    return _attempt(_Prepared(rule, touchpoints, stages), 0, len(times), times.tolist())


def _attempt(prepared: _Prepared, lo: int, hi: int, times: list[int]) -> tuple[Attempt, int | None, bool]:
    rule = prepared.rule
    window = rule.window_in_s * 1_000_000
    n = len(rule.steps)
    steps = prepared.steps[lo:hi]
    best = {"furthest": best_furthest, "ordered": best_ordered, "strict": best_strict, "any_order": best_any_order}
    attempt = best[rule.mode](steps, times, window, n)
    opened = np.flatnonzero(prepared.opens[lo:hi])
    closes = times[int(opened[-1])] + window if len(opened) else None
    excluded = False
    if attempt.level and rule.exclusions:
        hits = [np.flatnonzero(mask[lo:hi]) for mask in prepared.exclusions]
        in_micros = FunnelRule(rule.name, rule.mode, window, rule.steps, rule.exclusions, rule.stages)
        excluded = _excluded(in_micros, attempt, hits, times)
    return attempt, closes, excluded


def funnel_rows(events: pa.Table, rules: Sequence[FunnelRule]) -> pa.Table:
    """One row per customer of `events` and funnel they entered (`FUNNEL_SCHEMA`).

    `events`: every current event of each customer, sorted by customer, time and id."""
    if events.num_rows == 0 or not rules:
        return FUNNEL_SCHEMA.empty_table()
    activity = pc.fill_null(events.column("is_activity"), True)
    events = events.filter(activity)
    if events.num_rows == 0:
        return FUNNEL_SCHEMA.empty_table()
    customers = events.column("customer_id").to_numpy(zero_copy_only=False)
    times = events.column("occurred_at").cast(pa.int64()).to_numpy(zero_copy_only=False)
    every_time = times.tolist()
    touchpoints = events.column("touchpoint").to_numpy(zero_copy_only=False)
    stages = events.column("stage").to_numpy(zero_copy_only=False)
    prepared = [_Prepared(rule, touchpoints, stages) for rule in rules]
    bounds = np.flatnonzero(customers[1:] != customers[:-1]) + 1
    starts, ends = np.concatenate([[0], bounds]), np.concatenate([bounds, [len(customers)]])
    out: dict[str, list] = {name: [] for name in FUNNEL_SCHEMA.names}
    entries: list[int] = []  # the step-1 event of each row, for its attributes
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        window_times = every_time[lo:hi]
        for rule, ready in zip(rules, prepared, strict=True):
            attempt, closes, excluded = _attempt(ready, lo, hi, window_times)
            if not attempt.level:
                continue
            entries.append(lo + attempt.events[0])
            out["customer_id"].append(customers[lo])
            out["funnel"].append(rule.name)
            out["n_steps"].append(len(rule.steps))
            out["best_step"].append(attempt.level)
            out["entered_at"].append(window_times[attempt.events[0]])
            out["reached_at"].append([window_times[i] for i in attempt.events])
            out["windows_close_at"].append(closes)
            out["is_excluded"].append(excluded)
    taken = events.take(pa.array(entries, pa.int64())) if entries else events.slice(0, 0)
    for name, column in (("entry_event_id", "event_id"), ("journey_cycle", "journey_cycle")):
        out[name] = taken.column(column).to_pylist()
    for c in ("channel", "segment", "product_line"):
        out[c] = taken.column(c).to_pylist()
    micros = {"entered_at", "windows_close_at"}
    columns = []
    for field in FUNNEL_SCHEMA:
        values = out[field.name]
        if field.name in micros:
            columns.append(pa.array(values, pa.int64()).cast(field.type))
        elif field.name == "reached_at":
            columns.append(pa.array(values, pa.list_(pa.int64())).cast(field.type))
        else:
            columns.append(pa.array(values, field.type))
    return pa.Table.from_arrays(columns, schema=FUNNEL_SCHEMA)
