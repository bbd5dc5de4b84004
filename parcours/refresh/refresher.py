"""Refresh the materialised marts for what the micro-batches since the last refresh touched.

The `sessions` and `journeys` marts are Parquet datasets, not views that aggregate every
touchpoint on each query. A refresh lands, for every customer those batches touched:

* the rows of `int_sessions_aggregated` for the sessions it recomputed: the session its earliest
  landed event belongs to (the one its new events continue, or a new one) and every later one;
* the rows of `int_journeys_aggregated` for the journey cycles it recomputed: the cycle of its
  earliest landed event and every later one;
* one `refreshes` marker (customer_id, sessions_from_at, journeys_from_cycle, batch_seq), by
  which the staging models `stg_parcours__sessions` / `__journeys` supersede the customer's
  older rows from there on.

The batches' touchpoint rows say all of that: they are every current event of the customer from
its earliest new one on (recomputed with it), so their earliest session start and journey cycle
are where recomputation began. Sessions and cycles never interleave in time, so the events at
or after that session start (that cycle) are exactly the events of the groups to recompute,
older ones included: they are read from the published Parquet.

The rows come from the model SQL itself, run by DuckDB over those events only, so a session row
and a journey row keep one definition (`sql/intermediate/`).

The same commit replaces the rollups (`sessions_daily`, `touchpoints_daily`,
`journey_stages_weekly`, `journey_paths_weekly`: the marts at the grain dashboards chart them at)
for the days and weeks that changed: the partitions of the refreshed session and journey rows,
of the rows they supersede, and of the batches' touchpoints. Each such partition is recomputed
whole by its model (`int_*_counted_*`) over the warehouse as it reads after the commit, and its
old file is removed by the manifest; the other partitions keep theirs. So a dashboard query reads
a few thousand pre-counted rows instead of millions of sessions (BENCHMARKS.md), and a refresh
costs what the touched days and weeks hold, not the whole history. A rollup with no file yet
(a warehouse from before rollups existed) is computed whole once.

When: `catch_up`, once at the end of every `parcours run` (and before a compaction), as its own
manifest commit, for every batch committed since the last refresh (`Warehouse.marts_pending`),
so a run that crashed between its batches and its refresh is caught up by the next one. Why not
with each batch: the journeys model re-aggregates whole open cycles (weeks of events), ~1.7 s a
250,000-event batch at 1M events and more as history grows, which made a catch-up of a backlog
(several batches) a third slower; once per run it is paid once. The price: while a run lands
several micro-batches, `sessions` and `journeys` show the state before the run until it ends
(the touchpoints are current after each batch).
"""

from __future__ import annotations

import dataclasses
import gc
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa

from parcours.pipelines.state import file_date
from parcours.warehouse import (
    DATASETS,
    MARTS_THROUGH,
    REFRESH,
    Manifest,
    PublishedFile,
    Warehouse,
    model_sql,
    raw_view_sql,
    settings_views_sql,
)
from parcours.warehouse.publish import publish

SESSIONS_MODEL = "int_sessions_aggregated"
JOURNEYS_MODEL = "int_journeys_aggregated"
PART = "mart"
MEMORY_LIMIT = "1GB"
STREAM_ROWS = 122_880  # rows per Arrow batch, so per row group (DuckDB's own size)


# Rollup dataset -> (its model, what changes its partitions). Sessions and journeys are
# recomputed by the refresh itself; touchpoints by the batches it catches up.
ROLLUP_MODELS: dict[str, tuple[str, str]] = {
    "sessions_daily": ("int_sessions_counted_daily", "sessions"),
    "touchpoints_daily": ("int_touchpoints_counted_daily", "touchpoints"),
    "journey_stages_weekly": ("int_journey_stages_counted_weekly", "journeys"),
    "journey_paths_weekly": ("int_journey_paths_counted_weekly", "journeys"),
}
_WEEK = "cast(date_trunc('week', timezone('UTC', started_at)) as DATE)"  # the models' started_week


@dataclass(frozen=True)
class RefreshReport:
    customers: int
    sessions: int
    journeys: int
    files: list[PublishedFile]
    seq: int | None = None  # of the refresh's commit
    batches: int = 0  # batches it caught up
    seconds: float = 0.0
    rollup_partitions: int = 0  # rollup partitions recomputed
    removed: tuple[str, ...] = ()  # rollup files replaced by this refresh


def catch_up(warehouse: Warehouse, now: datetime | None = None) -> RefreshReport | None:
    """Refresh the marts for every batch committed since the last refresh, in one commit.

    The caller holds the warehouse lock. None when nothing is pending.
    """
    started = time.perf_counter()
    pending = warehouse.marts_pending()
    if not pending:
        return None
    latest = warehouse.manifests()[-1]
    now = now or datetime.now(UTC)
    # After a run's micro-batches, Arrow's allocator still holds their freed memory: hand it back
    # before DuckDB takes its own, so the run's peak is the larger of the two, not their sum.
    gc.collect()
    pa.default_memory_pool().release_unused()
    seq = warehouse.next_seq()
    changed = [f for manifest in pending for f in manifest.files]
    report = refresh_marts(warehouse, seq, changed, latest.settings, now.date())
    report = refresh_rollups(warehouse, seq, report, changed, latest.settings, now.date())
    publish(
        warehouse,
        Manifest(
            seq=seq,
            created_at=now.replace(microsecond=0).isoformat(),
            config_version=latest.config_version,
            config_fingerprint=latest.config_fingerprint,
            files=tuple(report.files),
            offsets={},
            watermarks=latest.watermarks,  # carried forward: the latest manifest holds them
            counts={
                "refreshed_customers": report.customers,
                "refreshed_sessions": report.sessions,
                "refreshed_journeys": report.journeys,
                "refreshed_batches": len(pending),
                "refreshed_rollup_partitions": report.rollup_partitions,
                MARTS_THROUGH: seq,
            },
            settings=latest.settings,
            removed=report.removed,
            kind=REFRESH,
        ),
    )
    return dataclasses.replace(report, seq=seq, batches=len(pending), seconds=time.perf_counter() - started)


def refresh_marts(
    warehouse: Warehouse,
    seq: int,
    batch_files: list[PublishedFile],
    settings: dict,
    batch_date: date,
    *,
    threads: int = 2,
) -> RefreshReport:
    """Write the mart rows and markers for what the files `batch_files` changed, under `seq`.

    `batch_files` may be committed already or not yet. Returns the new files, for the manifest.
    """
    root = warehouse.root
    new_touchpoints = sorted({str(root / f.path) for f in batch_files if f.dataset == "touchpoints"})
    if not new_touchpoints:
        return RefreshReport(0, 0, 0, [])
    touchpoints = sorted({str(root / p) for p in warehouse.published_files("touchpoints")} | set(new_touchpoints))
    rewrites = {str(root / p) for p in warehouse.published_files("rewrites")}
    rewrites = sorted(rewrites | {str(root / f.path) for f in batch_files if f.dataset == "rewrites"})

    spill = root / "_staging" / f"marts-{seq}"
    con = duckdb.connect()
    try:
        con.execute(f"set threads = {int(threads)}")
        # Bounded like the micro-batches: past this, DuckDB spills its aggregation state to disk
        # (a whole-history refresh, after a 10M-event backfill, took 3.3 GB without a limit).
        con.execute(f"set memory_limit = '{MEMORY_LIMIT}'")
        con.execute("set temp_directory = ?", [str(spill)])
        con.execute("set preserve_insertion_order = false")
        con.execute(raw_view_sql(con, DATASETS["touchpoints"], new_touchpoints, temporary=True, name="batch_events"))
        con.execute(
            "create temp table touched as select customer_id, "
            "min(session_started_at) as sessions_from_at, min(journey_cycle) as journeys_from_cycle "
            "from batch_events group by customer_id"
        )
        con.execute(raw_view_sql(con, DATASETS["rewrites"], rewrites, temporary=True))
        for statement in settings_views_sql(settings, temporary=True):
            con.execute(statement)

        # Sessions: the touched customers' events from their earliest recomputed session on.
        # Those sessions start at most a few days back, so older partitions are not even opened.
        (earliest,) = con.execute("select min(sessions_from_at) from touched").fetchone()
        horizon = earliest.astimezone(UTC).date() if earliest is not None else None  # partitions are UTC dates
        recent = [p for p in touchpoints if horizon is None or (file_date(p) or date.max) >= horizon]
        _point_events_at(con, recent, "r.occurred_at >= t.sessions_from_at")
        files = [_stream(warehouse, con, "sessions", model_sql("intermediate", SESSIONS_MODEL), seq, batch_date)]

        # Journeys: the touched customers' events of their recomputed cycles, which may go far back.
        _point_events_at(con, touchpoints, "r.journey_cycle >= t.journeys_from_cycle")
        files.append(_stream(warehouse, con, "journeys", model_sql("intermediate", JOURNEYS_MODEL), seq, batch_date))
        files.append(_stream(warehouse, con, "refreshes", "select * from touched", seq, batch_date))
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    sessions, journeys, markers = (f.rows if f is not None else 0 for f in files)
    return RefreshReport(markers, sessions, journeys, [f for f in files if f is not None])


def refresh_rollups(
    warehouse: Warehouse,
    seq: int,
    marts: RefreshReport,
    batch_files: list[PublishedFile],
    settings: dict,
    batch_date: date,
    *,
    threads: int = 2,
) -> RefreshReport:
    """Recompute the rollup partitions that the marts refresh `marts` and the batches' files
    `batch_files` changed; returns `marts` with the new rollup files and the replaced ones.

    Changed partitions: the days (weeks) of the refreshed session (journey) rows and of the
    rows they supersede, and the event dates of the batches' touchpoint files (a re-landed event
    keeps its date). Each is recomputed whole by the rollup's model, over the views as they will
    read once this refresh commits, so no count is ever patched by a difference.
    """
    new_files = {name: [f for f in marts.files if f.dataset == name] for name in ("sessions", "journeys", "refreshes")}
    spill = warehouse.root / "_staging" / f"rollups-{seq}"
    con = duckdb.connect()
    try:
        con.execute(f"set threads = {int(threads)}")
        con.execute(f"set memory_limit = '{MEMORY_LIMIT}'")
        con.execute("set temp_directory = ?", [str(spill)])
        warehouse.create_views(con, adding=marts.files, settings=settings)
        for name, files in new_files.items():
            paths = [str(warehouse.root / f.path) for f in files]
            con.execute(raw_view_sql(con, DATASETS[name], paths, temporary=True, name=f"new_{name}"))
        changed = {
            "touchpoints": {date.fromisoformat(f.partition) for f in batch_files if f.dataset == "touchpoints"},
            "sessions": _changed_partitions(con, "sessions", "started_date", "started_at >= r.sessions_from_at"),
            "journeys": _changed_partitions(con, "journeys", _WEEK, "journey_cycle >= r.journeys_from_cycle"),
        }
        files: list[PublishedFile] = []
        removed: list[str] = []
        recomputed = 0
        for dataset, (model, source) in ROLLUP_MODELS.items():
            spec = DATASETS[dataset]
            live = warehouse.live_files(dataset)
            query = f"select * from {model}"
            partitions = sorted(changed[source]) if live else []  # none yet: computed whole, once
            if live:
                if not partitions:
                    continue
                query += f" where {spec.partition_column} in ({', '.join('?' * len(partitions))})"
                live = [f for f in live if date.fromisoformat(f.partition) in changed[source]]
            table = con.sql(query, params=partitions).to_arrow_table()
            table = table.append_column("batch_seq", pa.repeat(pa.scalar(seq, pa.int64()), table.num_rows))
            written = warehouse.write_parquet(dataset, table, seq, PART)
            files += written
            removed += [f.path for f in live]
            recomputed += len({f.partition for f in (*live, *written)})
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    return dataclasses.replace(
        marts, files=[*marts.files, *files], rollup_partitions=recomputed, removed=(*marts.removed, *removed)
    )


def _changed_partitions(con: duckdb.DuckDBPyConnection, mart: str, partition: str, superseded: str) -> set[date]:
    """The partitions of `mart`'s new rows and of the landed rows their markers supersede (the
    customer's rows from the marker's session start or journey cycle on, `superseded`)."""
    rows = con.execute(
        f"select {partition} from new_{mart} "
        f"union select {partition} from raw_{mart} l "
        f"semi join new_refreshes r on l.customer_id = r.customer_id and l.batch_seq < r.batch_seq and l.{superseded}"
    ).fetchall()
    return {day for (day,) in rows}


def _stream(
    warehouse: Warehouse, con: duckdb.DuckDBPyConnection, dataset: str, query: str, seq: int, batch_date: date
) -> PublishedFile | None:
    """The rows of `query`, stamped with the refresh's seq, written as they come: one Arrow batch
    in memory at a time (a whole-history refresh after a large backfill holds millions of rows)."""
    stamped = con.sql(query).select("*", duckdb.ConstantExpression(seq).cast("BIGINT").alias("batch_seq"))
    reader = stamped.to_arrow_reader(STREAM_ROWS)
    return warehouse.write_stream(dataset, batch_date.isoformat(), reader, seq, PART)


def _point_events_at(con: duckdb.DuckDBPyConnection, paths: list[str], condition: str) -> None:
    """`raw_touchpoints`: the touched customers' landed rows in `paths` that meet `condition`,
    and the models over it (a view is bound when it is created, so they are created again).

    The filter is on single rows, so the staging model's current-version rule (an anti-join on
    each row against `rewrites`) gives the same rows as if it ran over every event first.
    """
    con.execute(raw_view_sql(con, DATASETS["touchpoints"], paths, temporary=True, name="landed_events"))
    con.execute(
        "create or replace temp view raw_touchpoints as select r.* from landed_events r "
        f"join touched t on r.customer_id = t.customer_id and {condition}"
    )
    for layer, model in (("staging", "stg_parcours__touchpoints"), ("intermediate", "int_journey_steps_cleaned")):
        con.execute(f"create or replace temp view {model} as {model_sql(layer, model)}")
