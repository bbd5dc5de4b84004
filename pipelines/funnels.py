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
from datetime import datetime
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


def _better(candidate: Attempt, best: Attempt, times: np.ndarray) -> bool:
    if candidate.level != best.level:
        return candidate.level > best.level
    if candidate.reached_at != best.reached_at:
        return candidate.reached_at < best.reached_at
    return times[candidate.events[0]] > times[best.events[0]]


def best_ordered(matches: Sequence[tuple[int, ...]], times: np.ndarray, window: int, n: int) -> Attempt:
    """`ordered`: per level, the chain reaching it with the latest start (what can go furthest)."""
    chains: list[list[int] | None] = [None] * n
    best = NOT_ENTERED
    for i, steps in enumerate(matches):
        for k in sorted(steps, reverse=True):  # one event fills one step
            if k == 0:
                chains[0] = [i]
            else:
                previous = chains[k - 1]
                if previous is None or times[i] - times[previous[0]] > window:
                    continue
                current = chains[k]
                if current is None or times[previous[0]] >= times[current[0]]:
                    chains[k] = [*previous, i]
            candidate = Attempt(k + 1, chains[k], int(times[i]))
            if _better(candidate, best, times):
                best = candidate
    return best


def best_strict(matches: Sequence[tuple[int, ...]], times: np.ndarray, window: int, n: int) -> Attempt:
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
            for k in sorted(here, reverse=True):
                if k == 0:
                    chains[0] = [i]
                elif chains[k - 1] is None:
                    stop = True  # a step whose previous step was not reached
                    break
                elif times[i] - times[chains[k - 1][0]] <= window:
                    chains[k] = [*chains[k - 1], i]
                else:
                    continue
                candidate = Attempt(k + 1, chains[k], int(times[i]))
                if _better(candidate, best, times):
                    best = candidate
            if stop:
                break
    return best


def best_furthest(ranks: np.ndarray, starts: np.ndarray, times: np.ndarray, window: int, n: int) -> Attempt:
    """`furthest`: `ranks[i]` is the furthest step event i reaches (0 before step 1's stage); an
    attempt starts at an event of step 1's stage (`starts`). An event past a skipped step fills
    every step up to its own (they share its time)."""
    best = NOT_ENTERED
    for start in np.flatnonzero(starts):
        end = int(np.searchsorted(times, times[start] + window, side="right"))
        events, level = [int(start)], 1
        for j in range(int(start) + 1, end):
            while level < n and ranks[j] > level:
                events.append(j)
                level += 1
            if level == n:
                break
        candidate = Attempt(level, events, int(times[events[-1]]))
        if _better(candidate, best, times):
            best = candidate
    return best


def best_any_order(matches: Sequence[tuple[int, ...]], times: np.ndarray, window: int, n: int) -> Attempt:
    """`any_order`: from each step event, the distinct steps with an event within the window."""
    best = NOT_ENTERED
    for start, steps in enumerate(matches):
        if not steps:
            continue
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
        candidate = Attempt(len(events), events, int(times[events[-1]]))
        if _better(candidate, best, times):
            best = candidate
    return best


def _excluded(rule: FunnelRule, attempt: Attempt, excluded_at: list[np.ndarray], times: np.ndarray) -> bool:
    for (_, _, after, before), hits in zip(rule.exclusions, excluded_at, strict=True):
        if attempt.level < after or not len(hits):
            continue
        low = attempt.events[after - 1]
        if attempt.level >= before:
            inside = (hits > low) & (hits < attempt.events[before - 1])
        else:
            inside = (hits > low) & (times[hits] <= times[attempt.events[0]] + rule.window_in_s)
        if inside.any():
            return True
    return False


def _matches(rule: FunnelRule, touchpoints: np.ndarray, stages: np.ndarray) -> list[tuple[int, ...]]:
    hits = [np.flatnonzero((stages if kind == "stage" else touchpoints) == name) for kind, name in rule.steps]
    per_event: list[list[int]] = [[] for _ in range(len(touchpoints))]
    for k, events in enumerate(hits):
        for i in events:
            per_event[i].append(k)
    return [tuple(steps) for steps in per_event]


def customer_attempt(
    rule: FunnelRule, touchpoints: np.ndarray, stages: np.ndarray, times: np.ndarray
) -> tuple[Attempt, int | None, bool]:
    """The best attempt of one customer's activity (in time order, `times` in micros), when their
    last window closes (micros; None when they opened none) and whether they are excluded."""
    n = len(rule.steps)
    window = rule.window_in_s * 1_000_000
    us_rule = FunnelRule(rule.name, rule.mode, window, rule.steps, rule.exclusions, rule.stages)
    if rule.mode == "furthest":
        rank_of = {stage: r for r, stage in enumerate(rule.stages)}
        step_ranks = np.array([rank_of[name] for _, name in rule.steps])
        event_ranks = np.array([rank_of.get(s, -1) for s in stages])
        # the furthest step an event reaches: the steps whose stage is at or before its own
        ranks = np.searchsorted(step_ranks, event_ranks, side="right")
        starts = event_ranks == step_ranks[0]
        attempt = best_furthest(ranks, starts, times, window, n)
        opened = times[starts]
    else:
        matches = _matches(rule, touchpoints, stages)
        best = {"ordered": best_ordered, "strict": best_strict, "any_order": best_any_order}[rule.mode]
        attempt = best(matches, times, window, n)
        opens = [i for i, m in enumerate(matches) if (0 in m if rule.mode != "any_order" else m)]
        opened = times[opens] if opens else times[:0]
    closes = int(opened.max()) + window if len(opened) else None
    excluded = False
    if attempt.level and rule.exclusions:
        excluded_at = [
            np.flatnonzero((stages if kind == "stage" else touchpoints) == name) for kind, name, _, _ in rule.exclusions
        ]
        excluded = _excluded(us_rule, attempt, excluded_at, times)
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
    touchpoints = events.column("touchpoint").to_numpy(zero_copy_only=False)
    stages = events.column("stage").to_numpy(zero_copy_only=False)
    attributes = {
        c: events.column(c).to_pylist() for c in ("event_id", "journey_cycle", "channel", "segment", "product_line")
    }
    bounds = np.flatnonzero(customers[1:] != customers[:-1]) + 1
    starts, ends = np.concatenate([[0], bounds]), np.concatenate([bounds, [len(customers)]])
    out: dict[str, list] = {name: [] for name in FUNNEL_SCHEMA.names}
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        for rule in rules:
            attempt, closes, excluded = customer_attempt(rule, touchpoints[lo:hi], stages[lo:hi], times[lo:hi])
            if not attempt.level:
                continue
            first = lo + attempt.events[0]
            out["customer_id"].append(customers[lo])
            out["funnel"].append(rule.name)
            out["n_steps"].append(len(rule.steps))
            out["best_step"].append(attempt.level)
            out["entered_at"].append(int(times[first]))
            out["reached_at"].append([int(times[lo + i]) for i in attempt.events])
            out["windows_close_at"].append(closes)
            out["is_excluded"].append(excluded)
            out["entry_event_id"].append(attributes["event_id"][first])
            out["journey_cycle"].append(attributes["journey_cycle"][first])
            for c in ("channel", "segment", "product_line"):
                out[c].append(attributes[c][first])
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


def at(micros: int | None) -> datetime | None:
    """A micros timestamp as a UTC datetime (for tests and messages)."""
    from datetime import UTC

    return None if micros is None else datetime.fromtimestamp(micros / 1_000_000, UTC)
