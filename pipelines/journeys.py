"""Journeys: a customer's ordered touchpoints across sessions and channels, cut into cycles.

Each event gets
* its `stage`: the event's own stage wins, else the configured touchpoint mapping, else
  `unmapped` (counted and kept, never dropped), with `stage_source` saying which;
* its `journey_cycle`, `cycle_type`, `step_index` and what the churn rules need: the rules of
  cycles and churn, explicit and silent, live in `cycles.py`.

Like sessions, cycles continue from the customer's latest landed event before the new ones
(`cycles.CONTEXT_COLUMNS`), so incremental runs give the same numbering as one run over
everything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from parcours.config import UNMAPPED_STAGE, JourneyConfig
from parcours.pipelines.cycles import CycleRules, assign_cycles
from parcours.pipelines.sessionize import ShardWork


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


def cycle_rules(config: JourneyConfig) -> CycleRules:
    """What the cycle and churn rules read of the configuration."""
    return CycleRules(tuple(config.churn.outcomes), config.churn.inactivity, config.not_activity)


class AssignJourneysFn(beam.DoFn):
    def __init__(self, config: JourneyConfig) -> None:
        self._config = config

    def process(self, work: ShardWork) -> Iterator[ShardWork]:
        events = resolve_stages(work.events, self._config)
        events = assign_cycles(events, work.context, cycle_rules(self._config))
        yield dataclasses.replace(work, events=events)


class AssignJourneys(beam.PTransform):
    """ShardWork -> ShardWork whose events carry stage, journey cycle and step index."""

    def __init__(self, config: JourneyConfig) -> None:
        super().__init__()
        self._fn = AssignJourneysFn(config)

    def expand(self, work):
        return work | "StagesAndCycles" >> beam.ParDo(self._fn).with_output_types(ShardWork)
