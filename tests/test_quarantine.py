"""The quarantine seam of the publish path, with a test gate that refuses a batch holding a marker.

Three backfill runs of one batch each (T = 2026-02-02 08:00 UTC):

    run 1: e1 (c1, T), e2 (c1, T+10m), e3 (c2, T)
    run 2: q1 (c3, T+1h, the marker), e4 (c1, T+20m)    -- refused by the gate: quarantined
    run 3: e5 (c2, T+3h)

While batch 2 is quarantined no view and no refresh sees e4 or q1, and run 3 lands. Released, its
rows are published once, with the sessions the refresh then computes; dropped, nothing of it is
published, the reason is recorded and its files go the way of a compaction's removals.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from parcours.config import load_config
from parcours.pipelines.run import Ingestion
from parcours.refresh.refresher import catch_up
from parcours.warehouse import DROP, QUARANTINE, RELEASE, Warehouse, kind_of
from parcours.warehouse.publish import ACCEPTED, NotQuarantined, Staged, Verdict, drop, release
from tests.pipeline_helpers import query, write_jsonl

CONFIG = load_config()
T = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)
MARKER = "quarantine-me"


def event(event_id: str, customer: str, minutes: int) -> dict:
    return {
        "schema_version": 1,
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": (T + timedelta(minutes=minutes)).isoformat(),
        "channel": "web",
        "touchpoint": "home_page",
    }


RUNS = [
    [event("e1", "c1", 0), event("e2", "c1", 10), event("e3", "c2", 0)],
    [event(MARKER, "c3", 60), event("e4", "c1", 20)],
    [event("e5", "c2", 180)],
]


def marker_gate(staged: Staged) -> Verdict:
    """Refuses an ingestion commit whose staged touchpoints hold the marker event."""
    paths = [str(staged.warehouse.root / f.path) for f in staged.manifest.files if f.dataset == "touchpoints"]
    if not paths:
        return ACCEPTED
    with duckdb.connect() as con:
        (marked,) = con.execute("select count(*) from read_parquet(?) where event_id = ?", [paths, MARKER]).fetchone()
    return Verdict(False, f"{marked} marked event") if marked else ACCEPTED


def run_all(tmp: Path) -> Warehouse:
    warehouse = Warehouse(tmp / "w")
    for index, rows in enumerate(RUNS, 1):
        write_jsonl(tmp / f"run{index}" / "touchpoints.jsonl", rows)
        with warehouse.lock():
            Ingestion(warehouse, CONFIG, gate=marker_gate).run_files(tmp / f"run{index}")
    return warehouse


def visible(warehouse: Warehouse) -> tuple[list, list, list]:
    db = warehouse.db_path
    return (
        [r[0] for r in query(db, "select event_id from touchpoints order by event_id")],
        query(db, "select customer_id, n_events from sessions order by customer_id, started_at"),
        query(db, "select customer_id, n_events from journeys order by customer_id"),
    )


@pytest.fixture
def quarantined(tmp_path: Path) -> Warehouse:
    warehouse = run_all(tmp_path)
    kinds = [kind_of(m) for m in warehouse.manifests()]
    # ingest, refresh, quarantine (its run has nothing to refresh), ingest, refresh
    assert kinds == ["ingest", "refresh", QUARANTINE, "ingest", "refresh"]
    return warehouse


def test_a_quarantined_batch_is_invisible_to_every_view_and_refresh(quarantined: Warehouse) -> None:
    touchpoints, sessions, journeys = visible(quarantined)
    assert touchpoints == ["e1", "e2", "e3", "e5"]
    assert sessions == [("c1", 2), ("c2", 1), ("c2", 1)]  # e4 would have joined c1's session
    assert journeys == [("c1", 2), ("c2", 2)]
    (open_,) = quarantined.quarantines()
    assert (open_.seq, open_.reason) == (3, "1 marked event")
    assert open_.counts["consumed"] == 2 and open_.counts["landed"] == 2
    assert {f.dataset for f in open_.files} >= {"touchpoints", "customer_state"}
    # Its files are kept: not orphans, so no run or compaction deletes them.
    assert all((quarantined.root / f.path).exists() for f in open_.files)
    assert quarantined.orphans() == []
    # Its backfill range is consumed: a rerun lands nothing again.
    with quarantined.lock():
        again = Ingestion(quarantined, CONFIG, gate=marker_gate).run_files(quarantined.root.parent / "run2")
    assert again.batches == []


def test_a_release_publishes_the_batch_exactly_once(quarantined: Warehouse) -> None:
    with quarantined.lock():
        released = release(quarantined, 3)
        with pytest.raises(NotQuarantined):
            release(quarantined, 3)
        refreshed = catch_up(quarantined)
    assert kind_of(released) == RELEASE and released.settles == 3
    assert refreshed is not None and refreshed.customers == 2  # c1 and c3, from the released rows
    touchpoints, sessions, journeys = visible(quarantined)
    assert touchpoints == ["e1", "e2", "e3", "e4", "e5", MARKER]
    assert query(quarantined.db_path, "select count(*) = count(distinct event_id) from touchpoints") == [(True,)]
    assert sessions == [("c1", 3), ("c2", 1), ("c2", 1), ("c3", 1)]
    assert journeys == [("c1", 3), ("c2", 2), ("c3", 1)]
    assert quarantined.quarantines() == []
    # The release's own commit also refuses a second settlement at the ledger.
    with quarantined.lock(), pytest.raises(NotQuarantined):
        drop(quarantined, 3, "too late")


def test_a_drop_records_why_and_publishes_nothing(quarantined: Warehouse) -> None:
    files = [quarantined.root / f.path for f in quarantined.quarantines()[0].files]
    with quarantined.lock():
        with pytest.raises(ValueError, match="needs a reason"):
            drop(quarantined, 3, "  ")
        dropped = drop(quarantined, 3, "a producer sent test data")
        deleted = quarantined.delete_removed(before=datetime.now(UTC) + timedelta(days=2))
    assert kind_of(dropped) == DROP and dropped.reason == "a producer sent test data"
    assert visible(quarantined)[0] == ["e1", "e2", "e3", "e5"]
    assert set(files) <= set(deleted) and not any(path.exists() for path in files)
    assert quarantined.quarantines() == []
    # Nothing lost: every record read is in an ingestion commit or in the quarantine's counts.
    manifests = list(quarantined.manifests())
    assert sum(m.counts.get("consumed", 0) for m in manifests if kind_of(m) in ("ingest", QUARANTINE)) == 6
    with quarantined.lock(), pytest.raises(NotQuarantined):
        release(quarantined, 3)
