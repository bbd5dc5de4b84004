"""Compaction on a schedule: the warehouse's small files rewritten as one per partition, nightly.

The story of one scheduled compaction:

    take the warehouse lock (busy: skip this tick) -> refresh_marts -> compact_partitions
    -> log and return what it did, as a plain dict

It is what `parcours compact` does, through the same functions: which rows are current and how
the new files are published live in `parcours/compact.py`, the marts refresh in
`parcours/refresh/refresher.py`, not here. What this module adds is what a schedule needs:

* a run that finds the warehouse locked (an ingestion pass landing, a manual `parcours run` or
  `parcours compact`) is skipped, like an ingestion tick (`flows/busy.py`): compaction is never
  urgent, the next night does it;
* the marts are caught up first: compaction drops the refresh markers, so it refuses to run
  while a batch is not in the marts yet (a run that stopped between its batches and its refresh
  leaves such batches), and catching up is exactly what the next ingestion pass would do;
* no retries: nothing here talks to the network, so a failure is a data or disk error (a full
  disk, a Parquet file that does not read) that must reach someone, not be tried again. A crash
  before the commit changes nothing anyone reads; the next compaction cleans up after it.

The grace period is compaction's default (`parcours.compact.DEFAULT_GRACE`, 24 h): files a
compaction takes out stay on disk for BI connections opened before it, and are deleted by the
first compaction after that. The schedule is declared in `prefect.yaml`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from parcours.compact import CompactionReport, compact
from parcours.flows.busy import skipped
from parcours.flows.refresh import refresh_marts
from parcours.refresh.refresher import RefreshReport
from parcours.warehouse import Warehouse, WarehouseBusy


@task(name="compact_partitions", cache_policy=NO_CACHE)
def compact_partitions(warehouse: Warehouse) -> CompactionReport:
    """One compaction with the default grace period; the caller holds the lock, marts are current."""
    return compact(warehouse)


def summary(root: str, refreshed: RefreshReport | None, report: CompactionReport) -> dict[str, Any]:
    """The run's result as plain JSON-able values: what the Prefect API stores and shows."""
    return {
        "warehouse": root,
        "skipped": None,
        "marts_refreshed": None
        if refreshed is None
        else {"seq": refreshed.seq, "batches": refreshed.batches, "customers": refreshed.customers},
        "seq": report.seq,  # the compaction's commit; None when there was nothing to compact
        "files_before": dict(report.files_before),  # live files per dataset
        "files_after": dict(report.files_after),
        "rows_dropped": dict(report.rows_dropped),  # superseded rows per dataset
        "files_removed": report.removed,  # taken out by this compaction, deleted after the grace period
        "files_deleted": len(report.deleted),  # removed by earlier compactions, deleted now
        "checkpoint": None if report.checkpoint is None else str(report.checkpoint),  # where new readers start
    }


def describe(result: dict[str, Any]) -> str:
    """One line for the run's log: the same numbers as `parcours compact` prints."""
    deleted = f"; {result['files_deleted']:,} files of earlier compactions deleted"
    if result["seq"] is None:
        return f"nothing to compact in {result['warehouse']}{deleted}"
    before, after = sum(result["files_before"].values()), sum(result["files_after"].values())
    return (
        f"compaction {result['seq']}: {before:,} live files -> {after:,}, "
        f"{sum(result['rows_dropped'].values()):,} superseded rows dropped, "
        f"{result['files_removed']:,} files removed (deleted after the grace period){deleted}"
    )


@flow(name="compact_warehouse")
def compact_warehouse(warehouse: str = "warehouse") -> dict[str, Any] | State:
    """Catch up the marts, then compact the warehouse; skip the tick if a run holds it.

    A folder where no batch was ever landed has nothing to compact: the run says so and
    completes, without creating the folder (a fresh installation whose first night comes
    before its first event is not an error).
    """
    logger = get_run_logger()
    wh = Warehouse(warehouse)
    if not wh.manifest_dir.is_dir():
        logger.warning("no batch has been landed in %s yet: nothing to compact", wh.root)
        return summary(str(wh.root), None, CompactionReport(seq=None))
    try:
        with wh.lock():
            refreshed = refresh_marts(wh, all_cadences=True)  # every dataset current, whatever its cadence
            if refreshed is not None:
                logger.info(
                    f"marts {refreshed.seq}: caught up first, for {refreshed.batches} batch(es) "
                    f"of {refreshed.customers:,} customers"
                )
            report = compact_partitions(wh)
    except WarehouseBusy as exc:
        return skipped(exc, {"warehouse": str(wh.root), "skipped": str(exc)})
    result = summary(str(wh.root), refreshed, report)
    logger.info(describe(result))
    return result


__all__ = ["compact_partitions", "compact_warehouse", "describe", "summary"]
