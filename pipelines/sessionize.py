"""Sessions: a customer's events grouped while they keep coming within the inactivity gap.

The rule, per customer, over events ordered by (occurred_at, event_id):
* a new session starts when the gap since the customer's previous event is MORE than the
  inactivity gap (two events exactly one gap apart stay together; Beam's own `Sessions`
  window would split them, which is why sessions are not built with Beam windows here);
* or when the event would make the session last MORE than the maximum duration.

The rule is greedy from left to right, so the sessions before the earliest new event of a
customer never change. That is what makes incremental runs exact: for each touched customer
we continue from the state of its latest landed event before the earliest new one (its
`session_id` and `session_started_at`), and recompute only from there. The result is the same
whether the data arrives in one run or in many, and in any order within the allowed lateness.

`session_id` is a hash of (customer_id, session start), so recomputing a session that did not
change gives it the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parcours.pipelines.coders import carries_tables
from parcours.pipelines.state import LandedState, PublishedFiles
from parcours.schemas.contracts import UTC_MICROS

# The state a customer's next events continue from: its latest landed event before them.
CONTEXT_COLUMNS = ("customer_id", "occurred_at", "session_id", "session_started_at")
# The one order of a customer's events, used by every step that walks them.
EVENT_ORDER = [("customer_id", "ascending"), ("occurred_at", "ascending"), ("event_id", "ascending")]


def session_id_for(customer_id: str, started_at_us: int) -> str:
    digest = hashlib.blake2b(f"{customer_id}|{started_at_us}".encode(), digest_size=8).hexdigest()
    return f"s_{digest}"


def _micros(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)


def assign_sessions(
    events: pa.Table,
    context: pa.Table | None,
    gap: timedelta,
    max_duration: timedelta,
) -> pa.Table:
    """Add `session_id` and `session_started_at` to `events`.

    `events` holds every event to (re)assign for the customers it covers; `context` holds at
    most one row per customer (see CONTEXT_COLUMNS): the latest landed event before them.
    Returns the events sorted by (customer_id, occurred_at, event_id).
    """
    if gap <= timedelta(0) or max_duration <= timedelta(0):
        raise ValueError("gap and max_duration must be positive")
    events = events.sort_by(EVENT_ORDER)
    n = events.num_rows
    if n == 0:
        return events.append_column("session_id", pa.array([], pa.string())).append_column(
            "session_started_at", pa.array([], UTC_MICROS)
        )
    customers = events.column("customer_id").to_numpy(zero_copy_only=False)
    times = _micros(events.column("occurred_at"))
    gap_us = gap // timedelta(microseconds=1)
    max_us = max_duration // timedelta(microseconds=1)

    # A head is the first row of a session in this table. Candidates: a customer's first row
    # and every row more than one gap after the previous one (vectorised).
    first_of_customer = np.ones(n, dtype=bool)
    first_of_customer[1:] = customers[1:] != customers[:-1]
    head = first_of_customer.copy()
    head[1:] |= (times[1:] - times[:-1]) > gap_us

    # A customer's first row may continue the session of its context (latest landed event).
    continued: dict[int, tuple[int, str]] = {}  # head row -> (context session start, id)
    if context is not None and context.num_rows:
        by_customer = {row["customer_id"]: row for row in context.select(list(CONTEXT_COLUMNS)).to_pylist()}
        for index in np.flatnonzero(first_of_customer):
            row = by_customer.get(customers[index])
            if row is None:
                continue
            start_us = _to_us(row["session_started_at"])
            if times[index] - _to_us(row["occurred_at"]) <= gap_us and times[index] - start_us <= max_us:
                continued[int(index)] = (start_us, row["session_id"])

    # Runs between gap heads; only those longer than the maximum duration (or continuing a
    # context session) need the sequential max-duration walk.
    run_heads = np.flatnonzero(head)
    run_ends = np.append(run_heads[1:], n)
    run_start = times[run_heads].copy()
    for position, row in enumerate(run_heads):
        if int(row) in continued:
            run_start[position] = continued[int(row)][0]
    long_runs = np.flatnonzero(times[run_ends - 1] - run_start > max_us)
    for position in long_runs:
        current = run_start[position]
        for k in range(int(run_heads[position]) + 1, int(run_ends[position])):
            if times[k] - current > max_us:
                head[k] = True
                current = times[k]

    heads = np.flatnonzero(head)
    head_start = times[heads].copy()
    head_ids = []
    for position, row in enumerate(heads):
        carried = continued.get(int(row))
        if carried is not None:
            head_start[position] = carried[0]
            head_ids.append(carried[1])
        else:
            head_ids.append(session_id_for(customers[row], int(head_start[position])))
    session_of_row = np.cumsum(head) - 1
    return events.append_column(
        "session_id", pa.array(head_ids, pa.string()).take(pa.array(session_of_row))
    ).append_column("session_started_at", pa.array(head_start[session_of_row], pa.int64()).cast(UTC_MICROS))


def _to_us(value) -> int:
    """Microseconds since the epoch of a timestamp read back from Arrow (datetime)."""
    return int(pa.scalar(value, UTC_MICROS).cast(pa.int64()).as_py())


# Columns recomputed for every event of a recomputed range; the rest is kept as landed.
DERIVED_COLUMNS = (
    "session_id",
    "session_started_at",
    "journey_cycle",
    "cycle_type",
    "step_index",
    "batch_seq",
)


@carries_tables
@dataclass(frozen=True)
class ShardWork:
    """One shard of one micro-batch on its way from Sessionize to Land."""

    shard: int
    events: pa.Table  # new events plus the landed events they force to recompute
    context: pa.Table  # per customer, the latest landed event before the recomputed range
    rewrites: pa.Table  # (customer_id, from_at): landed versions from there on are replaced
    n_new: int
    n_relanded: int


def combine_with_history(new: pa.Table, prior: pa.Table) -> pa.Table:
    """New validated rows plus landed rows to recompute, on the landed columns minus derived ones."""
    new = new.append_column("stage_source", pa.nulls(new.num_rows, pa.string()))
    new = new.append_column("ingested_at", pa.nulls(new.num_rows, UTC_MICROS))
    keep = [name for name in new.column_names]
    if prior.num_rows == 0:
        return new
    prior = prior.select(keep).cast(new.select(keep).schema)
    return pa.concat_tables([new.select(keep), prior])


class SessionizeFn(beam.DoFn):
    def __init__(self, files: PublishedFiles, gap: timedelta, max_duration: timedelta) -> None:
        self._files = files
        self._gap = gap
        self._max_duration = max_duration
        self._state: LandedState | None = None

    def setup(self) -> None:
        self._state = LandedState(self._files)

    def process(self, element: tuple[tuple[str, int], pa.Table]) -> Iterator[ShardWork]:
        (_kind, shard), new = element
        earliest = (
            new.group_by("customer_id").aggregate([("occurred_at", "min")]).rename_columns(["customer_id", "min_at"])
        )
        prior, context = self._state.customer_history(earliest)
        rewrites = (
            earliest.filter(
                pc.is_in(earliest.column("customer_id"), value_set=prior.column("customer_id"))
            ).rename_columns(["customer_id", "from_at"])
            if prior.num_rows
            else earliest.slice(0, 0).rename_columns(["customer_id", "from_at"])
        )
        events = assign_sessions(combine_with_history(new, prior), context, self._gap, self._max_duration)
        yield ShardWork(shard, events, context, rewrites, new.num_rows, prior.num_rows)

    def teardown(self) -> None:
        if self._state is not None:
            self._state.close()


class Sessionize(beam.PTransform):
    """((kind, shard), new touchpoints) -> ShardWork with session_id / session_started_at set."""

    def __init__(self, files: PublishedFiles, gap: timedelta, max_duration: timedelta) -> None:
        super().__init__()
        if gap <= timedelta(0):
            raise ValueError(f"gap must be positive, got {gap}")
        if max_duration < gap:
            raise ValueError(f"max_duration ({max_duration}) must be at least the gap ({gap})")
        self._fn = SessionizeFn(files, gap, max_duration)

    def expand(self, shards):
        return shards | "AssignSessions" >> beam.ParDo(self._fn).with_output_types(ShardWork)
