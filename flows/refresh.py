"""The refresh on a schedule: every derived dataset brought up to date with what ingestion landed.

The story of one scheduled refresh:

    take the warehouse lock (busy: skip this tick) -> refresh_marts -> log what it did

`refresh_marts` is the step the ingestion flow runs right after landing (`flows/ingest.py`:
ingest -> refresh in one flow run, under one lock), and the one the nightly compaction runs
first. This flow, `refresh_warehouse`, runs it alone: after a `parcours run --from` backfill, or
on a warehouse whose ingestion runs elsewhere. What is refreshed, and how, lives in
`parcours/refresh/`, not here.

No retries: nothing here talks to the network, so a failure is a data or disk error that must
reach someone. A crash before the refresh's commit changes nothing anyone reads, and the next
pass refreshes everything pending since the last refresh that committed.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from parcours.flows.busy import skipped
from parcours.refresh.refresher import RefreshReport, catch_up
from parcours.warehouse import Warehouse, WarehouseBusy


@task(name="refresh_marts", cache_policy=NO_CACHE)  # a cached result would skip the refresh
def refresh_marts(warehouse: Warehouse, all_cadences: bool = False) -> RefreshReport | None:
    """The derived datasets due refreshed for every commit since their last refresh; None if none
    was. An hourly or daily dataset waits for the first pass of a later hour or day, unless
    `all_cadences` (what the compaction asks: it needs every dataset current).

    The caller holds the warehouse lock. The views are rebuilt first if they are stale (a moved
    folder, or a run that died between a commit and its rebuild), as every command does.
    """
    if warehouse.views_outdated():
        warehouse.rebuild_views()
    return catch_up(warehouse, all_cadences=all_cadences)


def refreshed(report: RefreshReport | None) -> dict[str, Any] | None:
    """What a refresh did, as plain JSON-able values (what the Prefect API stores and shows)."""
    if report is None:
        return None
    return {
        "seq": report.seq,
        "batches": report.batches,
        "customers": report.customers,
        "rows": dict(report.rows),
        "seconds": round(report.seconds, 3),
    }


def describe(report: RefreshReport | None, root: str) -> str:
    if report is None:
        return f"nothing to refresh in {root}: every derived dataset is current"
    written = ", ".join(f"{name} {rows:,}" for name, rows in sorted(report.rows.items()) if rows)
    return (
        f"refresh {report.seq}: {report.batches} commit(s) caught up, {report.customers:,} customers; "
        f"rows written: {written or 'none'} ({report.seconds:.1f} s)"
    )


@flow(name="refresh_warehouse")
def refresh_warehouse(warehouse: str = "warehouse") -> dict[str, Any] | State:
    """Refresh every derived dataset; skip the tick if a run holds the warehouse."""
    logger = get_run_logger()
    wh = Warehouse(warehouse)
    if not wh.manifest_dir.is_dir():
        logger.warning("no batch has been landed in %s yet: nothing to refresh", wh.root)
        return {"warehouse": str(wh.root), "skipped": None, "refreshed": None}
    try:
        with wh.lock():
            report = refresh_marts(wh)
    except WarehouseBusy as exc:
        return skipped(exc, {"warehouse": str(wh.root), "skipped": str(exc)})
    logger.info(describe(report, str(wh.root)))
    return {"warehouse": str(wh.root), "skipped": None, "refreshed": refreshed(report)}


__all__ = ["describe", "refresh_marts", "refresh_warehouse", "refreshed"]
