"""Journey cycles and churn: the rules, once, for the ingestion transforms and the refresher.

A customer's events, in time order, are cut into **cycles**. Cycle 0 (`first_purchase`) runs up
to and including the first purchase; each later cycle runs up to and including the next renewal
or repeat purchase (`renewal`), or to churn. A cycle that follows a churn is a `win_back`.

**Activity**: every touchpoint but those of `churn.not_activity` (what the company sends: an
invoice received in silence is still silence).

**Churn**, of the cycle it ends:

* *explicit*: an event with one of `churn.outcomes` (a cancellation). It closes its cycle; its
  stage is the stage the producer sent with it, else the stage of the customer's last activity
  before it (else its own mapped stage).
* *silent*: a **customer** (the cycle was opened by a purchase or renewal, or its last event is
  one: a prospect who goes quiet has dropped off, never churned) with no activity for
  `churn.inactivity`, dated last activity + horizon, at the stage of that last activity. The
  first event at or after that deadline, of any kind, opens a `win_back` cycle: the churn stands.
  An event inside the horizon (a late one included, whenever it lands) withdraws it: the customer's
  events from it on are recomputed (the supersession of the ingestion), and the silence is gone.
  A company-sent event inside the horizon changes nothing (not activity).

Per event the ingestion lands, besides the cycle, what the next events and the refresher need:
`is_activity`, `cycle_started_at`, `last_activity_at` / `last_activity_stage` (the latest activity
at or before the event, context included) and `churn_deadline` (when the customer, as of that
event, is silently churned if nothing else happens; null for a prospect or without a horizon).
The refresher's `churns` dataset (`churn_rows`) turns them into one row per churned cycle, final
once the finality point has passed `churned_at`, pending before: SQL reads those rows and never
re-derives a rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parcours.config import CYCLE_OUTCOMES
from parcours.warehouse.datasets import CHURN_ARROW as CHURN_SCHEMA

FIRST_CYCLE, RENEWAL_CYCLE, WIN_BACK_CYCLE = "first_purchase", "renewal", "win_back"
CYCLE_TYPES = (FIRST_CYCLE, RENEWAL_CYCLE, WIN_BACK_CYCLE)
_TYPE_CODE = {name: code for code, name in enumerate(CYCLE_TYPES)}
EXPLICIT, SILENT = "explicit", "silent"
FINAL, PENDING = "final", "pending"
UTC_MICROS = CHURN_SCHEMA.field("churned_at").type

# Bumped when a change to these rules (or to the sessions') changes what is landed for the same
# settings: the touchpoints' record (`parcours.refresh.rederive`) is then stale, `--full` re-derives.
RULES_VERSION = 2  # 2: silent churn opens win-back cycles; the activity and deadline columns

# What a customer's latest landed event carries for the next events to continue from.
CONTEXT_COLUMNS = (
    "customer_id",
    "occurred_at",
    "stage",
    "journey_cycle",
    "cycle_type",
    "step_index",
    "outcome",
    "cycle_started_at",
    "is_activity",
    "previous_activity_at",
    "previous_activity_stage",
)
# The columns `assign_cycles` adds, in order.
CYCLE_COLUMNS = (
    ("journey_cycle", pa.int32()),
    ("cycle_type", pa.string()),
    ("step_index", pa.int32()),
    ("cycle_started_at", UTC_MICROS),
    ("is_activity", pa.bool_()),
    ("previous_activity_at", UTC_MICROS),
    ("previous_activity_stage", pa.string()),
    ("churn_deadline", UTC_MICROS),
)
_NONE = np.iinfo(np.int64).min  # "no time" in the int64 microsecond arrays
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class CycleRules:
    """The configuration the cycle and churn rules read (`JourneyConfig.cycle_rules`)."""

    churn_outcomes: tuple[str, ...]
    inactivity: timedelta | None = None  # the silent-churn horizon; None: explicit churn only
    not_activity: tuple[str, ...] = ()

    @property
    def horizon_us(self) -> int | None:
        return None if self.inactivity is None else int(self.inactivity / timedelta(microseconds=1))


def churn_arguments(settings: Mapping[str, Any], clock: Any) -> tuple[CycleRules, datetime | None, datetime | None]:
    """What the refresher passes `churn_rows` after the events: the rules of the settings
    record, the watermark and the finality point (`clock`, a `parcours.warehouse.time.Finality`)."""
    inactivity = settings.get("churn_inactivity_in_s")
    rules = CycleRules(
        tuple(settings.get("churn_outcomes") or ()),
        None if inactivity is None else timedelta(seconds=inactivity),
        tuple(settings.get("churn_not_activity") or ()),
    )
    return rules, clock.watermark, clock.point


def _micros(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Timestamps as int64 microseconds, nulls as `_NONE`."""
    values = pc.cast(column, pa.int64())
    return pc.fill_null(values, _NONE).to_numpy(zero_copy_only=False).astype(np.int64)


def _to_micros(at: datetime | None) -> int:
    return _NONE if at is None else (at - _EPOCH) // timedelta(microseconds=1)


def _timestamps(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.int64(), mask=values == _NONE).cast(UTC_MICROS)


def _is_in(column: pa.ChunkedArray, values: tuple[str, ...]) -> np.ndarray:
    return pc.fill_null(pc.is_in(column, value_set=pa.array(list(values), pa.string())), False).to_numpy(
        zero_copy_only=False
    )


def _last_before(flags: np.ndarray, first_of_customer: np.ndarray, inclusive: bool) -> np.ndarray:
    """Per row, the index of the latest flagged row of its customer at (or strictly before) it, else -1."""
    n = len(flags)
    index = np.where(flags, np.arange(n), -1)
    latest = np.maximum.accumulate(index) if n else index
    if not inclusive:
        latest = np.concatenate([[-1], latest[:-1]]) if n else latest
    customer_start = np.maximum.accumulate(np.where(first_of_customer, np.arange(n), 0)) if n else latest
    return np.where(latest >= customer_start, latest, -1)


def assign_cycles(events: pa.Table, context: pa.Table | None, rules: CycleRules) -> pa.Table:
    """Add `CYCLE_COLUMNS` to `events` (sorted by customer, time, id: every event of each customer
    from its earliest recomputed one on); `context` holds at most one row per customer, its latest
    landed event before them (`CONTEXT_COLUMNS`), so incremental runs number as one run would."""
    n = events.num_rows
    if n == 0:
        for name, kind in CYCLE_COLUMNS:
            events = events.append_column(name, pa.array([], kind))
        return events
    customers = events.column("customer_id").to_numpy(zero_copy_only=False)
    occurred = _micros(events.column("occurred_at"))
    stage = events.column("stage")
    outcome = events.column("outcome")
    converts = _is_in(outcome, CYCLE_OUTCOMES)
    churns = _is_in(outcome, rules.churn_outcomes)
    closes = converts | churns  # the row closes its cycle
    activity = ~_is_in(events.column("touchpoint"), rules.not_activity)

    first_of_customer = np.ones(n, dtype=bool)
    first_of_customer[1:] = customers[1:] != customers[:-1]
    customer_index = np.cumsum(first_of_customer) - 1
    heads = np.flatnonzero(first_of_customer)
    k = len(heads)

    # Each customer's starting state, from its context row.
    ctx_cycle = np.full(k, -1, dtype=np.int64)  # -1: no landed event before
    ctx_step = np.zeros(k, dtype=np.int64)
    ctx_type = np.zeros(k, dtype=np.int8)  # an index into CYCLE_TYPES
    ctx_closes = np.zeros(k, dtype=bool)  # the context event closed its cycle
    ctx_churned = np.zeros(k, dtype=bool)  # ... by a churn
    ctx_customer = np.zeros(k, dtype=bool)  # a customer (not a prospect) after the context event
    ctx_started = np.full(k, _NONE, dtype=np.int64)
    ctx_activity = np.full(k, _NONE, dtype=np.int64)  # its latest activity at or before the context event
    ctx_activity_stage = np.array([None] * k, dtype=object)
    if context is not None and context.num_rows:
        # Rows landed before some of these columns existed lack them: they read as unknown.
        present = [name for name in CONTEXT_COLUMNS if name in context.column_names]
        rows = {row["customer_id"]: row for row in context.select(present).to_pylist()}
        churn_set = set(rules.churn_outcomes)
        for position, head in enumerate(heads):
            row = rows.get(customers[head])
            if row is None:
                continue
            ctx_cycle[position] = row["journey_cycle"]
            ctx_step[position] = row["step_index"]
            ctx_type[position] = _TYPE_CODE.get(row["cycle_type"], 0)
            ctx_closes[position] = row["outcome"] in CYCLE_OUTCOMES or row["outcome"] in churn_set
            ctx_churned[position] = row["outcome"] in churn_set
            ctx_customer[position] = row["outcome"] in CYCLE_OUTCOMES or (
                row["outcome"] not in churn_set and row["cycle_type"] == RENEWAL_CYCLE
            )
            ctx_started[position] = _to_micros(row.get("cycle_started_at"))
            # An event landed before `is_activity` existed counts as activity.
            if row.get("is_activity") is False:
                ctx_activity[position] = _to_micros(row.get("previous_activity_at"))
                ctx_activity_stage[position] = row.get("previous_activity_stage")
            else:
                ctx_activity[position] = _to_micros(row["occurred_at"])
                ctx_activity_stage[position] = row.get("stage")

    # The latest activity strictly before each row (context included), and at or before it.
    before = _last_before(activity, first_of_customer, inclusive=False)
    previous_activity = np.where(before >= 0, occurred[np.maximum(before, 0)], ctx_activity[customer_index])
    # In Arrow, not Python objects: a take of the batch's stages, else of the context's.
    previous_activity_stage = pc.if_else(
        pa.array(before >= 0),
        pc.take(stage, pa.array(np.maximum(before, 0))),
        pc.take(pa.array(ctx_activity_stage.tolist(), pa.string()), pa.array(customer_index)),
    )
    last_activity = np.where(activity, occurred, previous_activity)

    # A row opens a cycle when the event before it (in the batch, or the context) closed one ...
    opens_after_close = np.zeros(n, dtype=bool)
    opens_after_close[1:] = closes[:-1] & ~first_of_customer[1:]
    opens_after_close[heads] = ctx_closes
    # ... or when it comes at or after a customer's silent-churn deadline. Whether the customer
    # was a customer then depends on the cycles before, so the (rare) candidates are walked in order.
    opened_by_silence = np.zeros(n, dtype=bool)
    horizon = rules.horizon_us
    if horizon is not None:
        candidates = np.flatnonzero((previous_activity != _NONE) & (occurred - previous_activity >= horizon))
        last_close = _last_before(closes, first_of_customer, inclusive=False)
        last_silence: dict[int, int] = {}  # customer index -> latest row opened by silence
        for row in candidates:
            c = customer_index[row]
            closed, silenced = last_close[row], last_silence.get(c, -1)
            if silenced > closed:
                is_customer = False  # a win-back prospect until it buys again
            elif closed >= 0:
                is_customer = bool(converts[closed])
            else:
                is_customer = bool(ctx_customer[c])
            if is_customer:
                opened_by_silence[row] = True
                last_silence[c] = row
    opens = opens_after_close | opened_by_silence

    # Cycle numbers: the context's cycle (or 0), plus the openings up to each row.
    openings = np.cumsum(opens)
    before_customer = (openings - opens)[heads]
    local = openings - before_customer[customer_index]  # openings of the customer up to the row
    base = np.maximum(ctx_cycle, 0)[customer_index]
    cycle = base + local
    continues_context = local == 0

    new_group = first_of_customer | opens
    group_first = np.flatnonzero(new_group)
    group_of_row = np.cumsum(new_group) - 1
    opener = group_first[group_of_row]  # the first row of each row's cycle in the batch
    step = np.arange(n) - opener + 1 + np.where(continues_context, ctx_step[customer_index], 0)

    # Type: the context's cycle continued; else what opened it: a churn (explicit, or silence:
    # `win_back`), a purchase or renewal (`renewal`).
    opened_by_churn = np.zeros(n, dtype=bool)
    opened_by_churn[1:] = churns[:-1] & ~first_of_customer[1:]
    opened_by_churn[heads] = ctx_churned
    opened_by_churn |= opened_by_silence
    # As codes into CYCLE_TYPES, not a million Python strings.
    cycle_type = np.where(opened_by_churn[opener], _TYPE_CODE[WIN_BACK_CYCLE], _TYPE_CODE[RENEWAL_CYCLE])
    cycle_type = np.where(continues_context, ctx_type[customer_index], cycle_type)
    started = np.where(
        continues_context & (ctx_cycle[customer_index] >= 0), ctx_started[customer_index], occurred[opener]
    )

    # Silent-churn deadline as of each row: the state after it is "customer" when its cycle was
    # opened by a purchase/renewal (or the row is one), not after a churn.
    is_customer_after = (converts | ((cycle_type == _TYPE_CODE[RENEWAL_CYCLE]) & ~churns)) & ~churns
    deadline = np.full(n, _NONE, dtype=np.int64)
    if horizon is not None:
        has_activity = last_activity != _NONE
        deadline = np.where(is_customer_after & has_activity, last_activity + horizon, _NONE)

    columns = {
        "journey_cycle": pa.array(cycle, pa.int32()),
        "cycle_type": pc.take(pa.array(CYCLE_TYPES, pa.string()), pa.array(cycle_type)),
        "step_index": pa.array(step, pa.int32()),
        "cycle_started_at": _timestamps(started),
        "is_activity": pa.array(activity, pa.bool_()),
        "previous_activity_at": _timestamps(previous_activity),
        "previous_activity_stage": previous_activity_stage,
        "churn_deadline": _timestamps(deadline),
    }
    for name, _kind in CYCLE_COLUMNS:
        events = events.append_column(name, columns[name])
    return events


def churn_rows(events: pa.Table, rules: CycleRules, watermark: datetime | None, point: datetime | None) -> pa.Table:
    """One row per churned cycle of the customers in `events` (`CHURN_SCHEMA`).

    `events`: every current event of each customer from the first event of some cycle on, with
    the columns of `assign_cycles` and `stage_source`, sorted by customer, time, id. A churn dated
    at or before the finality `point` is `final`, after it `pending` (a cancellation is always
    final). A customer's last cycle is silently churned once the watermark has passed its
    deadline (pending until the finality point has); an earlier cycle, when the next one was
    opened by silence.
    """
    n = events.num_rows
    if n == 0:
        return CHURN_SCHEMA.empty_table()
    customers = events.column("customer_id").to_numpy(zero_copy_only=False)
    cycles = events.column("journey_cycle").to_numpy(zero_copy_only=False).astype(np.int64)
    occurred = _micros(events.column("occurred_at"))
    deadline = _micros(events.column("churn_deadline"))
    previous_activity = _micros(events.column("previous_activity_at"))
    stage = events.column("stage").to_numpy(zero_copy_only=False)
    previous_stage = events.column("previous_activity_stage").to_numpy(zero_copy_only=False)
    activity = pc.fill_null(events.column("is_activity"), True).to_numpy(zero_copy_only=False)
    producer_stage = pc.fill_null(pc.equal(events.column("stage_source"), "event"), False).to_numpy(
        zero_copy_only=False
    )
    churns = _is_in(events.column("outcome"), rules.churn_outcomes)
    opener = (events.column("step_index").to_numpy(zero_copy_only=False) == 1) & (
        events.column("cycle_type").to_numpy(zero_copy_only=False) == WIN_BACK_CYCLE
    )
    final_at = _to_micros(point)
    seen_at = _to_micros(watermark)

    last_of_customer = np.ones(n, dtype=bool)
    last_of_customer[:-1] = customers[:-1] != customers[1:]
    first_of_customer = np.ones(n, dtype=bool)
    first_of_customer[1:] = customers[1:] != customers[:-1]

    rows: list[tuple[int, str, int, str | None, int]] = []  # (row, kind, churned_at, stage, last activity)
    for row in np.flatnonzero(churns):
        churn_stage = stage[row] if producer_stage[row] or previous_stage[row] is None else previous_stage[row]
        rows.append((row, EXPLICIT, int(occurred[row]), churn_stage, int(previous_activity[row])))

    def silent(row: int) -> tuple[int, str, int, str | None, int]:
        """The silent churn ending the cycle whose last event is `row`."""
        at = occurred[row] if activity[row] else previous_activity[row]
        at_stage = stage[row] if activity[row] else previous_stage[row]
        return (row, SILENT, int(deadline[row]), at_stage, int(at))

    # A win-back opened by silence: its first row follows, in the same customer, a row that did not churn.
    for row in np.flatnonzero(opener & ~first_of_customer):
        if not churns[row - 1] and deadline[row - 1] != _NONE:
            rows.append(silent(row - 1))
    for row in np.flatnonzero(last_of_customer & (deadline != _NONE)):
        if seen_at != _NONE and deadline[row] <= seen_at:
            rows.append(silent(row))

    table = pa.table(
        {
            "customer_id": pa.array([customers[r] for r, *_ in rows], pa.string()),
            "journey_cycle": pa.array([int(cycles[r]) for r, *_ in rows], pa.int32()),
            "churn_kind": pa.array([kind for _, kind, *_ in rows], pa.string()),
            "churned_at": _timestamps(np.array([at for _, _, at, _, _ in rows], dtype=np.int64)),
            "churn_stage": pa.array([s for _, _, _, s, _ in rows], pa.string()),
            "last_activity_at": _timestamps(np.array([a for *_, a in rows], dtype=np.int64)),
            "churn_status": pa.array(
                [
                    FINAL if kind == EXPLICIT or (final_at != _NONE and at <= final_at) else PENDING
                    for _, kind, at, _, _ in rows
                ],
                pa.string(),
            ),
        },
        schema=CHURN_SCHEMA,
    )
    return table.sort_by([("customer_id", "ascending"), ("journey_cycle", "ascending")])
