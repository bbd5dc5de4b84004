"""Re-deriving the landed touchpoints' derived columns when the rules that computed them changed.

The session and cycle columns of a touchpoint (`session_id`, `session_started_at`,
`journey_cycle`, `cycle_type`, `step_index`, and whatever `AssignJourneys` adds) are computed once,
at ingestion, by the Beam transforms `Sessionize` and `AssignJourneys`, under the configuration
of that run. Change `sessions.inactivity_gap` or the churn rules and the landed rows keep the
old sessions and cycles, while the rows landed since follow the new ones.

**The fingerprint.** `touchpoints_fingerprint` hashes the values of the settings those
transforms read (`sessions.*`, `churn.*`, as the settings record carries them). The ledger keeps
it like a derived dataset's, as a `DerivedState` under the reserved name `touchpoints` (a
landed dataset's name, which no derived dataset can take): every ingest commit that writes
touchpoints records the fingerprint of the rules it ran under if the columns were current
under those (or nothing was recorded: a new warehouse, or one older than the record, taken as
current so that an upgrade does not make every warehouse stale at once), else `MIXED`: an
ingestion under other rules recomputes only its customers' new ranges, so the older rows keep
the old rules and the columns are current under no single set of rules any more, whatever the
configuration says later. `parcours refresh --full` compares it with the fingerprint of the
settings now.

**The re-derivation** (`rederive`): every customer's current touchpoints, from its first event,
through the same composites as ingestion (`Sessionize`, then `AssignJourneys`, then `Land`),
with no landed context (`Sessionize` is given no published file: each customer starts afresh),
on the runner named in the pipeline options, over Arrow batches. The rows land as a new version
through the existing supersession: a `rewrites` row per customer from its first event on
supersedes every older version, exactly as a late event's re-emission does, and the customer's
`customer_state` row is the one the next ingestion continues from. Each event keeps its stage
and `stage_source` (a stage mapping edited later applies to new events only: `resolve_stages`)
and its first ingestion time. The caller publishes the files in its own commit with every
derived dataset rebuilt over them: readers see the warehouse before or after, never a mix.

**Bounded memory.** The current rows are first spilled by DuckDB (under a memory limit, to
disk) into shards of whole customers (`hash(customer_id) % shards`), as many shards as it takes
for one to hold about `ingest.batch_size` rows, the size of an ingestion micro-batch; the Beam
pipeline then reads, re-derives and lands one shard per element, in one fused stage, so a
10M-event warehouse holds one shard (500,000 rows by default), never 10M, in memory at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from parcours.config import JourneyConfig
from parcours.pipelines.coders import TABLE_ELEMENT
from parcours.pipelines.cycles import RULES_VERSION
from parcours.pipelines.journeys import AssignJourneys
from parcours.pipelines.land import Land
from parcours.pipelines.sessionize import Sessionize, ShardWork
from parcours.pipelines.state import PublishedFiles
from parcours.schemas.contracts import TOUCHPOINT_ARROW
from parcours.warehouse import DATASETS, DerivedState, PublishedFile, Warehouse, model_sql, raw_view_sql

TOUCHPOINTS = "touchpoints"  # the reserved name of the touchpoints' state among the ledger's `derived`
MIXED = "mixed"  # the fingerprint of columns landed under more than one set of rules: stale under any
# The settings record's keys of the configuration the ingestion transforms read: `sessions.*`
# (Sessionize) and `churn.*` (AssignJourneys). The stage mapping is not one: landed rows keep
# their stage by design (`resolve_stages`).
TOUCHPOINT_SETTINGS = (
    "inactivity_gap_in_s",
    "max_duration_in_s",
    "churn_outcomes",
    "churn_inactivity_in_s",
    "churn_not_activity",
)
# What ingestion hands to Sessionize: the event's own fields and where it was read. Every other
# landed column is computed by the transforms or by Land, so it is computed again.
_EVENT_COLUMNS = (*TOUCHPOINT_ARROW.names, "source", "source_partition", "source_offset")
# Landed values kept as they were, carried through the transforms under names of their own.
_KEPT = {"stage_source": "landed_stage_source", "ingested_at": "landed_ingested_at"}
MEMORY_LIMIT = "1GB"


class NeedsConfiguration(ValueError):
    """The touchpoints' columns must be re-derived, and re-deriving runs the ingestion
    transforms, which need the configuration itself, not only the settings the ledger holds."""


def touchpoints_fingerprint(settings: Mapping[str, Any]) -> str:
    """The fingerprint of the rules the touchpoints' derived columns follow under `settings`
    (a settings record)."""
    values = {key: settings.get(key) for key in TOUCHPOINT_SETTINGS}
    values["rules_version"] = RULES_VERSION  # a change of the rules' code, not of their settings
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def recorded_fingerprint(warehouse: Warehouse) -> str | None:
    """The fingerprint the landed touchpoints' columns are current under; None: not recorded
    (no touchpoint yet, or a warehouse older than the record)."""
    state = warehouse.derived_state().get(TOUCHPOINTS)
    return state.fingerprint if state is not None else None


def after_ingest(
    warehouse: Warehouse, settings: Mapping[str, Any], files: Sequence[PublishedFile]
) -> dict[str, DerivedState]:
    """The touchpoints' entry of an ingest commit run under `settings` that writes `files`:
    the rules the columns are current under once it is committed."""
    recorded = recorded_fingerprint(warehouse)
    rows = sum(f.rows for f in files if f.dataset == TOUCHPOINTS)
    ran = touchpoints_fingerprint(settings)
    if rows and recorded is not None and recorded != ran:
        ran = MIXED  # rows of both rules now
    elif not rows and recorded is not None:
        ran = recorded  # no touchpoint written: as they were
    return {TOUCHPOINTS: DerivedState(ran, rows)}


def stale_because(warehouse: Warehouse, settings: Mapping[str, Any]) -> str | None:
    """Why the landed touchpoints' columns no longer follow `settings`, or None if they do."""
    recorded = recorded_fingerprint(warehouse)
    current = touchpoints_fingerprint(settings)
    if recorded is None or recorded == current or not warehouse.published_files(TOUCHPOINTS):
        return None
    changed = _changed_settings(warehouse, recorded, settings)
    under = "under several sets of rules" if recorded == MIXED else "under other rules"
    return (
        f"the touchpoints' sessions and cycles were derived {under} (fingerprint {recorded} -> "
        f"{current}: {changed or 'one of ' + ', '.join(TOUCHPOINT_SETTINGS)}): `parcours refresh --full` "
        "re-derives them, then rebuilds every derived dataset"
    )


def _changed_settings(warehouse: Warehouse, recorded: str, settings: Mapping[str, Any], look_back: int = 100) -> str:
    """Which settings changed since some rows were derived, read from the latest of the last
    `look_back` commits that ran under the recorded rules (any other than today's, if they were
    mixed); "" if none of them did."""
    current = touchpoints_fingerprint(settings)
    manifests = warehouse.manifests()
    for index in range(len(manifests) - 1, max(-1, len(manifests) - 1 - look_back), -1):
        before = manifests[index].settings
        ran = touchpoints_fingerprint(before) if before else None
        if ran is not None and ran != current and (recorded == MIXED or ran == recorded):
            return ", ".join(
                f"{key} {before.get(key)!r} -> {settings.get(key)!r}"
                for key in TOUCHPOINT_SETTINGS
                if before.get(key) != settings.get(key)
            )
    return ""


@dataclass(frozen=True)
class Rederived:
    """What a re-derivation wrote (nothing of it visible until the caller's commit)."""

    files: list[PublishedFile]
    rows: int  # touchpoint rows re-landed
    customers: int
    shards: int
    derived: dict[str, DerivedState]  # the touchpoints' ledger entry once committed


def rederive(
    warehouse: Warehouse,
    seq: int,
    config: JourneyConfig,
    now: datetime,
    *,
    beam_args: Sequence[str] = (),
    rows_per_shard: int | None = None,
) -> Rederived:
    """Re-derive every customer's current touchpoints under `config`, as files of commit `seq`.

    `rows_per_shard` (default: `config.ingest.batch_size`) bounds the rows one shard, so the
    pipeline, holds in memory.
    """
    from parcours.pipelines.run import pipeline_options  # run.py imports the refresher

    limit = rows_per_shard or config.ingest.batch_size
    if limit < 1:
        raise ValueError(f"rows_per_shard must be >= 1, got {limit}")
    staging = warehouse.root / "_staging" / f"rederive-{seq}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        rows, shard_dirs = _spill_shards(warehouse, staging / "shards", limit)
        receipts_path = staging / "receipts.json"
        pipeline = beam.Pipeline(options=pipeline_options(beam_args))
        _ = (
            pipeline
            | "ShardFolders" >> beam.Create(sorted(shard_dirs.items()))
            | "RederiveTouchpoints" >> RederiveTouchpoints(str(warehouse.root), seq, now, config)
            | "CollectReceipts" >> beam.combiners.ToList()
            | "WriteReceipts" >> beam.Map(_write_receipts, str(receipts_path))
        )
        pipeline.run().wait_until_finish()
        receipts = json.loads(receipts_path.read_text(encoding="utf-8")) if shard_dirs else []
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = sorted((PublishedFile(**f) for r in receipts for f in r["files"]), key=lambda f: f.path)
    relanded = sum(sum(r.get("relanded", {}).values()) for r in receipts)
    if relanded != rows:
        raise RuntimeError(f"re-derivation: {rows} current touchpoints read, {relanded} landed again")
    customers = sum(f.rows for f in files if f.dataset == "customer_state")
    fingerprint = touchpoints_fingerprint(config.settings_record())
    return Rederived(files, rows, customers, len(shard_dirs), {TOUCHPOINTS: DerivedState(fingerprint, rows)})


def _spill_shards(warehouse: Warehouse, folder: Path, limit: int) -> tuple[int, dict[int, str]]:
    """The current touchpoints, as Parquet folders of whole customers of about `limit` rows
    each: (rows, shard -> folder). DuckDB does it under a memory limit, spilling to disk."""
    root = warehouse.root
    con = duckdb.connect()
    try:
        con.execute("set threads = 2")
        con.execute(f"set memory_limit = '{MEMORY_LIMIT}'")
        con.execute("set temp_directory = ?", [str(folder.parent / "duckdb")])
        con.execute("set preserve_insertion_order = false")
        for name in ("touchpoints", "rewrites"):
            paths = [str(root / p) for p in warehouse.published_files(name)]
            con.execute(raw_view_sql(con, DATASETS[name], paths, temporary=True))
        con.execute("create temp view current_touchpoints as " + model_sql("staging", "stg_parcours__touchpoints"))
        (rows,) = con.execute("select count(*) from current_touchpoints").fetchone()
        if not rows:
            return 0, {}
        shards = max(1, math.ceil(rows / limit))
        columns = [*_EVENT_COLUMNS, *(f"{landed} as {name}" for landed, name in _KEPT.items())]
        con.execute(
            f"copy (select {', '.join(columns)}, hash(customer_id) % {shards} as shard from current_touchpoints) "
            "to ? (format parquet, partition_by (shard))",
            [str(folder)],
        )
    finally:
        con.close()
    found = {int(p.name.split("=", 1)[1]): str(p) for p in folder.iterdir() if p.name.startswith("shard=")}
    return rows, found


def _write_receipts(receipts: list[dict], path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(receipts, handle)
    os.replace(tmp, path)


def _event_schema() -> pa.Schema:
    landed = DATASETS["touchpoints"].arrow_schema
    return pa.schema(
        [landed.field(name) for name in _EVENT_COLUMNS]
        + [landed.field(column).with_name(name) for column, name in _KEPT.items()]
    )


class ReadShardFn(beam.DoFn):
    """(shard, folder) -> (("touchpoints", shard), its customers' events), as ingestion's
    validated rows (the event and its lineage), plus the landed values kept."""

    def process(self, element: tuple[int, str]) -> Iterator[tuple[tuple[str, int], pa.Table]]:
        shard, folder = element
        table = pq.read_table(folder, partitioning=None)
        schema = _event_schema()
        yield ("touchpoints", shard), table.select(schema.names).cast(schema)


class KeepLandedFn(beam.DoFn):
    """Between Sessionize and AssignJourneys: each event gets back its landed stage source and
    first ingestion time, and each customer is rewritten from its first event on."""

    def process(self, work: ShardWork) -> Iterator[ShardWork]:
        events = work.events
        for column, carried in _KEPT.items():
            events = events.set_column(events.schema.get_field_index(column), column, events.column(carried))
        events = events.drop_columns(list(_KEPT.values()))
        first = events.group_by("customer_id").aggregate([("occurred_at", "min")])
        rewrites = first.rename_columns(["customer_id", "from_at"]).cast(work.rewrites.schema)
        yield replace(work, events=events, rewrites=rewrites, n_new=0, n_relanded=events.num_rows)


class RederiveTouchpoints(beam.PTransform):
    """(shard, folder of its current touchpoints) -> Land's receipts, the story of a re-derivation:

        ReadShard -> Sessionize (no landed context) -> KeepLanded -> AssignJourneys -> Land

    The composites are ingestion's own, so a change to a rule reaches both.
    """

    def __init__(self, root: str, seq: int, now: datetime, config: JourneyConfig) -> None:
        super().__init__()
        self._root, self._seq, self._now, self._config = root, seq, now, config

    def expand(self, shards):
        sessions = self._config.sessions
        return (
            shards
            | "ReadShard" >> beam.ParDo(ReadShardFn()).with_output_types(TABLE_ELEMENT)
            | "Sessionize" >> Sessionize(PublishedFiles(), sessions.inactivity_gap, sessions.max_duration)
            | "KeepLanded" >> beam.ParDo(KeepLandedFn()).with_output_types(ShardWork)
            | "AssignJourneys" >> AssignJourneys(self._config)
            | "Land" >> Land(self._root, self._seq, self._now)
        )
