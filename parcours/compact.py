"""Compaction: rewrite each partition's many small files as one, keeping only current rows.

Every micro-batch adds a file per dataset and partition it touched, and superseded rows stay
behind: touchpoints recomputed after a late event (`rewrites`), mart rows recomputed by a later
batch (`refreshes`), `customer_state` rows of earlier batches. Queries pay for all of it. A
compaction, under the warehouse lock (so never during a `parcours run`):

1. deletes the files that earlier compactions removed, once older than the grace period, and
   the orphans of crashed writers;
2. for each dataset, rewrites every partition that has more than one file or any superseded
   row into one file holding its current rows. Which rows are current is said by the staging
   models (`sql/staging/stg_parcours__*.sql`), run here over the same files the views read:
   the views and the compaction cannot disagree on it. Rows keep their `batch_seq`;
   The id index (`id_index`, partitioned by hash bucket, not by date) is rewritten per bucket
   the same way, leaving out the ids ingested more than `ingest.id_retention` ago (read from
   the latest manifest's settings): the look-up ignores them already, so dropping them changes
   no decision;
3. removes the marker datasets (`rewrites`, `refreshes`) whole: every row they supersede is gone;
4. publishes all of it with one manifest that lists the new files and the removed ones;
5. writes a checkpoint of the warehouse as of that manifest (`Warehouse.write_checkpoint`):
   every process that opens the warehouse afterwards reads it and only the manifests committed
   after it, so the cost of opening it stops growing with the number of batches ever landed;
6. rebuilds the views, which from then on read only live files.

A crash before the commit leaves files that no manifest lists (orphans, removed by the next
run or compaction) and changes nothing anyone reads. A crash between the commit and the
checkpoint leaves the compaction committed: readers take the previous checkpoint and the
manifests after it, this one included, until a later compaction writes a newer checkpoint.
Removed files stay on disk until a later compaction after the grace period: a BI tool that
opened the views file before this commit keeps reading them until it reconnects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from parcours.warehouse import (
    COMPACTION,
    DATASETS,
    ID_INDEX,
    MARKER_DATASETS,
    MARTS_THROUGH,
    PATH_DATASETS,
    ROLLUPS,
    Manifest,
    PublishedFile,
    Warehouse,
    model_sql,
    raw_view_sql,
)
from parcours.warehouse.publish import publish

DEFAULT_GRACE = timedelta(hours=24)
DEFAULT_ID_RETENTION = timedelta(days=400)  # config.IngestRules.id_retention's default
CRASH_ENV = "PARCOURS_CRASH_AT"  # fault injection for the crash test, as in pipelines/run.py
PART = "compact"
BATCH_ROWS = 122_880  # rows per Arrow batch, so per row group of the new files (DuckDB's own size)

# Dataset -> the staging model that says which of its rows are current (None: every row is).
# Every dataset must be named here or in MARKER_DATASETS: a new dataset fails loudly, not silently.
CURRENT_ROWS: dict[str, str | None] = {
    "touchpoints": "stg_parcours__touchpoints",
    "survey_answers": None,
    "dead_letters": None,
    "customer_state": "stg_parcours__customer_state",
    "sessions": "stg_parcours__sessions",
    "journeys": "stg_parcours__journeys",
    "churns": "stg_parcours__churns",
    "survey_attachments": "stg_parcours__survey_attachments",
    "customer_transitions": "stg_parcours__customer_transitions",
    "customer_funnels": "stg_parcours__customer_funnels",
    # Recomputed whole by every refresh: every live row current.
    "funnel_steps": None,
    # One file per partition, every row current: a refresh replaces a partition's file whole.
    **{name: None for name in ROLLUPS},
    # Recomputed whole by every refresh that changes it: every live row is current.
    "transitions_summary": None,
    # Recomputed whole: a refresh replaces every file.
    **{name: None for name in PATH_DATASETS},
}
# Datasets compacted by a rule of their own (their partitions are not dates).
OWN_RULE = (ID_INDEX.name,)


@dataclass
class CompactionReport:
    seq: int | None  # the compaction's manifest, None when there was nothing to compact
    files_before: dict[str, int] = field(default_factory=dict)  # live files per dataset
    files_after: dict[str, int] = field(default_factory=dict)
    rows_dropped: dict[str, int] = field(default_factory=dict)  # superseded rows left out
    removed: int = 0  # files taken out of the warehouse by this compaction (still on disk)
    deleted: list[Path] = field(default_factory=list)  # files of earlier compactions deleted now
    checkpoint: Path | None = None  # written after the commit


class MartsNotRefreshed(RuntimeError):
    """Compaction drops the markers the marts refresh needs: the marts must be current first."""


def compact(
    warehouse: Warehouse, *, grace: timedelta = DEFAULT_GRACE, now: datetime | None = None, threads: int = 2
) -> CompactionReport:
    """Compact every dataset of `warehouse`; the caller holds the warehouse lock."""
    if not warehouse.locked:
        raise RuntimeError("compact() needs the warehouse lock: use `with warehouse.lock():`")
    if grace < timedelta(0):
        raise ValueError(f"grace period must not be negative, got {grace}")
    unknown = set(DATASETS) - set(CURRENT_ROWS) - set(MARKER_DATASETS) - set(OWN_RULE)
    if unknown:
        raise RuntimeError(f"compaction does not know which rows of {sorted(unknown)} are current")
    pending = warehouse.marts_pending()
    if pending:
        raise MartsNotRefreshed(
            f"batches {pending[0].seq}..{pending[-1].seq} are not in every derived dataset yet: "
            "refresh every cadence first (`catch_up(..., all_cadences=True)`: parcours compact does)"
        )
    now = now or datetime.now(UTC)
    report = CompactionReport(seq=None)
    report.deleted = warehouse.delete_removed(before=now - grace)
    warehouse.remove_orphans()
    manifests = warehouse.manifests()
    if not manifests:
        return report
    seq = manifests[-1].seq + 1
    live = {name: warehouse.live_files(name) for name in DATASETS}
    report.files_before = {name: len(files) for name, files in live.items()}

    new_files: list[PublishedFile] = []
    removed: list[str] = []
    con = duckdb.connect()
    try:
        con.execute(f"set threads = {int(threads)}")
        paths = {name: [str(warehouse.root / f.path) for f in files] for name, files in live.items()}
        for name in MARKER_DATASETS:
            con.execute(raw_view_sql(con, DATASETS[name], paths[name], temporary=True))
        for dataset, model in CURRENT_ROWS.items():
            written, taken_out, dropped = _compact_dataset(con, warehouse, dataset, model, live[dataset], seq)
            new_files += written
            removed += taken_out
            report.rows_dropped[dataset] = dropped
        retention = manifests[-1].settings.get("id_retention_in_s")
        cutoff = now - (DEFAULT_ID_RETENTION if retention is None else timedelta(seconds=retention))
        written, taken_out, dropped = _compact_id_index(con, warehouse, live[ID_INDEX.name], seq, cutoff)
        new_files += written
        removed += taken_out
        report.rows_dropped[ID_INDEX.name] = dropped
    finally:
        con.close()
    for name in MARKER_DATASETS:
        removed += [f.path for f in live[name]]
    if not removed:
        report.files_after = dict(report.files_before)
        return report

    if os.environ.get(CRASH_ENV) == "compact_before_manifest":
        os._exit(137)
    latest = manifests[-1]
    publish(
        warehouse,
        Manifest(
            seq=seq,
            created_at=now.isoformat(),
            config_version=latest.config_version,
            config_fingerprint=latest.config_fingerprint,
            files=tuple(new_files),
            offsets={},
            watermarks=latest.watermarks,  # carried forward: the latest manifest holds them
            delivery=latest.delivery,  # likewise
            counts={
                "compacted_files_in": len(removed),
                "compacted_files_out": len(new_files),
                MARTS_THROUGH: seq,  # the marts were current before; compaction keeps them so
                **{f"dropped_{name}": n for name, n in report.rows_dropped.items() if n},
            },
            settings=latest.settings,
            removed=tuple(removed),
            kind=COMPACTION,
        ),
        rebuild_views=False,  # after the checkpoint, below
    )
    if os.environ.get(CRASH_ENV) == "compact_before_checkpoint":
        os._exit(137)
    report.checkpoint = warehouse.write_checkpoint()
    warehouse.rebuild_views()
    report.seq = seq
    report.removed = len(removed)
    report.files_after = {name: len(warehouse.published_files(name)) for name in DATASETS}
    return report


def _compact_dataset(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    dataset: str,
    model: str | None,
    files: list[PublishedFile],
    seq: int,
) -> tuple[list[PublishedFile], list[str], int]:
    """(new files, removed paths, rows dropped) of one dataset."""
    if not files:
        return [], [], 0
    spec = DATASETS[dataset]
    column = spec.partition_column
    root = warehouse.root
    con.execute(raw_view_sql(con, spec, [str(root / f.path) for f in files], temporary=True))
    current = f"raw_{dataset}"
    if model is not None:
        con.execute(f"create or replace temp view {model} as {model_sql('staging', model)}")
        current = model
        if dataset == "customer_state":
            # Current means "latest of the customer", across partitions: decided once, over all rows.
            con.execute(f"create or replace temp table current_state as select * from {model}")
            current = "current_state"
    landed = dict(con.execute(f"select {column}, count(*) from raw_{dataset} group by all").fetchall())
    kept = dict(con.execute(f"select {column}, count(*) from {current} group by all").fetchall())

    by_partition: dict[str, list[PublishedFile]] = {}
    for published in files:
        by_partition.setdefault(published.partition, []).append(published)
    written: list[PublishedFile] = []
    removed: list[str] = []
    dropped = 0
    for partition, members in sorted(by_partition.items()):
        day = datetime.fromisoformat(partition).date()
        superseded = landed.get(day, 0) - kept.get(day, 0)
        if len(members) == 1 and superseded == 0:
            continue
        dropped += superseded
        if current != "current_state":
            # Re-point the raw view at this partition's files; markers stay global.
            con.execute(raw_view_sql(con, spec, [str(root / f.path) for f in members], temporary=True))
            if model is not None:
                con.execute(f"create or replace temp view {model} as {model_sql('staging', model)}")
            rows = con.sql(f"select * exclude ({column}) from {current}")
        else:
            rows = con.sql(f"select * exclude ({column}) from current_state where {column} = DATE '{day.isoformat()}'")
        new = warehouse.write_stream(dataset, partition, rows.to_arrow_reader(BATCH_ROWS), seq, PART)
        if new is not None:
            written.append(new)
        removed += [f.path for f in members]
    return written, removed, dropped


def _compact_id_index(
    con: duckdb.DuckDBPyConnection, warehouse: Warehouse, files: list[PublishedFile], seq: int, cutoff: datetime
) -> tuple[list[PublishedFile], list[str], int]:
    """(new files, removed paths, ids dropped): one file per bucket, without the ids ingested
    before `cutoff` (older than the retention)."""
    by_bucket: dict[str, list[PublishedFile]] = {}
    for published in files:
        by_bucket.setdefault(published.partition, []).append(published)
    written: list[PublishedFile] = []
    removed: list[str] = []
    dropped = 0
    for bucket, members in sorted(by_bucket.items()):
        con.execute(raw_view_sql(con, ID_INDEX, [str(warehouse.root / f.path) for f in members], temporary=True))
        expired = con.sql("select count(*) from raw_id_index where ingested_at < $cutoff", params={"cutoff": cutoff})
        expired = expired.fetchall()[0][0]
        if len(members) == 1 and expired == 0:
            continue
        dropped += expired
        rows = con.sql(
            f"select * exclude ({ID_INDEX.partition_column}) from raw_id_index where ingested_at >= $cutoff "
            "order by id_hash, kind, record_id",  # sorted by hash, as the look-ups read it
            params={"cutoff": cutoff},
        )
        new = warehouse.write_stream(ID_INDEX.name, bucket, rows.to_arrow_reader(BATCH_ROWS), seq, PART)
        if new is not None:
            written.append(new)
        removed += [f.path for f in members]
    return written, removed, dropped
