"""Journeys: a customer's ordered touchpoints across sessions and channels, cut into cycles.

Each event gets
* its `stage`: the event's own stage wins, else the configured touchpoint mapping, else
  `unmapped` (counted and kept, never dropped), with `stage_source` saying which;
* its `journey_cycle`: cycle 0 is the first-purchase cycle and runs up to and including the
  first purchase; each later cycle runs from there up to and including the next renewal (or
  repeat purchase), or to churn. A cycle that follows a churn event is a win-back;
* its `step_index`: 1-based position within its cycle.

Like sessions, cycles continue from the customer's latest landed event before the new ones
(`journey_cycle`, `cycle_type`, `step_index`, `outcome` of that event), so incremental runs
give the same numbering as one run over everything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parcours.config import UNMAPPED_STAGE, JourneyConfig
from parcours.pipelines.sessionize import ShardWork

CONTEXT_COLUMNS = ("customer_id", "journey_cycle", "cycle_type", "step_index", "outcome")
CYCLE_OUTCOMES = ("purchase", "renewal")
FIRST_CYCLE, RENEWAL_CYCLE, WIN_BACK_CYCLE = "first_purchase", "renewal", "win_back"


def resolve_stages(events: pa.Table, config: JourneyConfig) -> pa.Table:
    """Resolve `stage` and set `stage_source` on rows where `stage_source` is still null.

    Rows already landed keep the stage they were given: a mapping edited later applies to new
    events (the manifest records the config version that produced each batch).
    """
    reported = events.column("stage")
    mapping_keys = pa.array(list(config.touchpoints), pa.string())
    mapping_values = pa.array(list(config.touchpoints.values()), pa.string())
    mapped = pc.take(mapping_values, pc.index_in(events.column("touchpoint"), value_set=mapping_keys))
    stage = pc.coalesce(reported, mapped, pa.scalar(UNMAPPED_STAGE))
    source = pc.if_else(pc.is_valid(reported), "event", pc.if_else(pc.is_valid(mapped), "mapping", UNMAPPED_STAGE))
    if "stage_source" in events.column_names:
        known = pc.is_valid(events.column("stage_source"))
        stage = pc.if_else(known, reported, stage)
        source = pc.if_else(known, events.column("stage_source"), source)
        events = events.drop_columns(["stage_source"])
    index = events.schema.get_field_index("stage")
    events = events.set_column(index, "stage", stage)
    return events.add_column(index + 1, "stage_source", source)


def assign_cycles(events: pa.Table, context: pa.Table | None, churn_outcomes: tuple[str, ...]) -> pa.Table:
    """Add `journey_cycle`, `cycle_type` and `step_index`; `events` sorted by customer then time."""
    n = events.num_rows
    if n == 0:
        return (
            events.append_column("journey_cycle", pa.array([], pa.int32()))
            .append_column("cycle_type", pa.array([], pa.string()))
            .append_column("step_index", pa.array([], pa.int32()))
        )
    customers = events.column("customer_id").to_numpy(zero_copy_only=False)
    outcome = events.column("outcome")
    ends_cycle = pc.fill_null(pc.is_in(outcome, value_set=pa.array(CYCLE_OUTCOMES)), False).to_numpy(
        zero_copy_only=False
    )
    churns = pc.fill_null(pc.is_in(outcome, value_set=pa.array(list(churn_outcomes), pa.string())), False)
    churns = churns.to_numpy(zero_copy_only=False)
    boundary = ends_cycle | churns

    first_of_customer = np.ones(n, dtype=bool)
    first_of_customer[1:] = customers[1:] != customers[:-1]
    customer_index = np.cumsum(first_of_customer) - 1
    customer_first_row = np.flatnonzero(first_of_customer)

    # Starting state of each customer from its context row.
    start_cycle = np.zeros(len(customer_first_row), dtype=np.int64)
    start_step = np.zeros(len(customer_first_row), dtype=np.int64)  # steps already in the open cycle
    start_type = np.array([FIRST_CYCLE] * len(customer_first_row), dtype=object)
    if context is not None and context.num_rows:
        by_customer = {row["customer_id"]: row for row in context.select(list(CONTEXT_COLUMNS)).to_pylist()}
        churn_set = set(churn_outcomes)
        for position, row in enumerate(customer_first_row):
            ctx = by_customer.get(customers[row])
            if ctx is None:
                continue
            if ctx["outcome"] in CYCLE_OUTCOMES or ctx["outcome"] in churn_set:
                start_cycle[position] = ctx["journey_cycle"] + 1
                start_type[position] = WIN_BACK_CYCLE if ctx["outcome"] in churn_set else RENEWAL_CYCLE
            else:
                start_cycle[position] = ctx["journey_cycle"]
                start_step[position] = ctx["step_index"]
                start_type[position] = ctx["cycle_type"]

    # Boundaries strictly before each row, within its customer.
    cumulative = np.cumsum(boundary)
    before_row = cumulative - boundary
    before_customer = before_row[customer_first_row][customer_index]
    local_cycle = before_row - before_customer
    cycle = start_cycle[customer_index] + local_cycle

    # Step index: position within (customer, cycle), offset by the open cycle's steps.
    new_group = first_of_customer.copy()
    new_group[1:] |= cycle[1:] != cycle[:-1]
    group_first = np.flatnonzero(new_group)
    group_of_row = np.cumsum(new_group) - 1
    step = np.arange(n) - group_first[group_of_row] + 1
    continues_open = local_cycle == 0
    step = step + np.where(continues_open, start_step[customer_index], 0)

    # Cycle type: the customer's starting type for local cycle 0; afterwards it follows the
    # outcome of the boundary that opened the cycle.
    previous_boundary_churn = np.zeros(n, dtype=bool)
    opened_by = np.flatnonzero(boundary)  # rows that close a cycle; the next row opens one
    for row in opened_by:
        nxt = row + 1
        if nxt < n and customers[nxt] == customers[row]:
            previous_boundary_churn[nxt] = churns[row]
    cycle_type = np.where(continues_open, start_type[customer_index], RENEWAL_CYCLE).astype(object)
    # propagate win-back to every row of a cycle opened by a churn event
    opened_win_back = new_group & previous_boundary_churn
    if opened_win_back.any():
        group_win_back = opened_win_back[group_first]
        cycle_type = np.where(group_win_back[group_of_row] & ~continues_open, WIN_BACK_CYCLE, cycle_type)
    return (
        events.append_column("journey_cycle", pa.array(cycle, pa.int32()))
        .append_column("cycle_type", pa.array(cycle_type.tolist(), pa.string()))
        .append_column("step_index", pa.array(step, pa.int32()))
    )


class AssignJourneysFn(beam.DoFn):
    def __init__(self, config: JourneyConfig) -> None:
        self._config = config

    def process(self, work: ShardWork) -> Iterator[ShardWork]:
        events = resolve_stages(work.events, self._config)
        events = assign_cycles(events, work.context, tuple(self._config.churn.outcomes))
        yield dataclasses.replace(work, events=events)


class AssignJourneys(beam.PTransform):
    """ShardWork -> ShardWork whose events carry stage, journey cycle and step index."""

    def __init__(self, config: JourneyConfig) -> None:
        super().__init__()
        self._fn = AssignJourneysFn(config)

    def expand(self, work):
        return work | "StagesAndCycles" >> beam.ParDo(self._fn).with_output_types(ShardWork)
