"""Compaction on a real warehouse landed by the pipeline, against hand-computed expectations.

The warehouse is the one of tests/test_marts.py (two backfill runs; see its docstring), plus a
survey answer per run. Landed rows, computed by hand:

* touchpoints: run 1 lands e1, e3, e4; run 2 lands e2, e5 and e3 again (recomputed after the
  late e2): 6 rows, 5 current; one `rewrites` marker (c1 from T+20m);
* sessions: run 1: c1 [e1], c1 [e3], c2 [e4]; run 2: c1 [e1 e2 e3], c2 [e5]: 5 rows, 3 current;
* journeys: run 1: c1 cycle 0, c2 cycle 0; run 2: c1 cycles 0 and 1, c2 cycle 0: 5 rows, 3 current;
* customer_state: one row per customer per run: 4 rows, 2 current; refreshes: 4 markers;
* survey_answers: one per run, same day: 2 rows in 2 files of one partition.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from parcours.compact import compact
from parcours.pipelines.run import Ingestion
from parcours.pipelines.sources import plan_file_ranges
from parcours.warehouse import DATASETS, MARKER_DATASETS, ROLLUPS, Manifest, Warehouse
from tests.pipeline_helpers import query, write_jsonl
from tests.test_marts import CONFIG, RUN_1, RUN_2, T, land
from tests.test_warehouse_checkpoints import answers, answers_of_every_manifest, garble_manifests

VIEWS = {
    "touchpoints": "event_id",
    "sessions": "session_id",
    "journeys": "customer_id, journey_cycle",
    "survey_answers": "response_id",
    "dead_letters": "source, source_offset",
    "stg_parcours__customer_state": "customer_id",
    "sessions_daily": "all",
    "touchpoints_daily": "all",
    "journey_stages_weekly": "all",
    "journey_paths_weekly": "all",
}
RAW = ("touchpoints", "sessions", "journeys", "customer_state", "rewrites", "refreshes", "survey_answers")
RAW_COUNTS = "select " + ", ".join(f"(select count(*) from raw_{name})" for name in RAW)


# What compacting the two runs' warehouse drops, counted by hand, all of it run 1's rows that run 2
# superseded: e3's first version, the state rows of c1 and c2, c1's two sessions (now one, with
# e2), c1's and c2's cycle-0 journeys, and their five steps.
ROWS_DROPPED = {
    "touchpoints": 1,
    "survey_answers": 0,
    "dead_letters": 0,
    "customer_state": 2,
    "sessions": 2,
    "journeys": 2,
    "churns": 0,  # nobody churns in these events
    # r1 (c1, T+5m) precedes c1's recompute point in run 2 (e2, T+20m): one row each, both current.
    "survey_attachments": 0,
    # Run 2 recomputes both customers from cycle 0: run 1's five steps of theirs, (start) -> e1,
    # e1 -> e3, e3 -> (end), (start) -> e4, e4 -> (end), are superseded.
    "customer_transitions": 5,
    # No event of the runs is at a discovery touchpoint: nobody enters a funnel (the funnels'
    # compaction: tests/test_funnels.py).
    "customer_funnels": 0,
    "funnel_steps": 0,
    **{name: 0 for name in ROLLUPS},  # one file a partition, every row current
    "transitions_summary": 0,  # recomputed whole: every live row current
    "paths": 0,  # recomputed whole: every row current
    "path_edges": 0,
    "id_index": 0,  # every id is within the retention
}


def answer(response_id: str, minutes: int) -> dict:
    return {
        "schema_version": 1,
        "response_id": response_id,
        "customer_id": "c1",
        "answered_at": (T + timedelta(minutes=minutes)).isoformat(),
        "survey": "csat",
        "question_id": "q",
        "score": 4,
    }


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("compact")
    write_jsonl(tmp / "run1" / "touchpoints.jsonl", RUN_1)
    write_jsonl(tmp / "run1" / "surveys.jsonl", [answer("r1", 5)])
    write_jsonl(tmp / "run2" / "touchpoints.jsonl", RUN_2)
    write_jsonl(tmp / "run2" / "surveys.jsonl", [answer("r2", 50)])
    land(tmp / "run1", tmp / "w")
    land(tmp / "run2", tmp / "w")
    return tmp / "w"


@pytest.fixture
def warehouse(landed: Path, tmp_path: Path) -> Warehouse:
    """A private copy of the landed warehouse, its views rebuilt for the new place."""
    wh = Warehouse(shutil.copytree(landed, tmp_path / "w"))
    wh.rebuild_views()
    return wh


def compaction_manifest(warehouse: Warehouse) -> Manifest:
    (manifest,) = [m for m in warehouse.manifests() if "compacted_files_in" in m.counts]
    return manifest


def view_rows(db: Path) -> dict[str, list[tuple]]:
    return {view: query(db, f"select * from {view} order by {key}") for view, key in VIEWS.items()}


def compact_crashing(root: Path, at: str) -> None:
    """Run a compaction in a child process that dies at the fault-injection point `at`."""
    crash = """
        import sys
        from parcours.compact import compact
        from parcours.warehouse import Warehouse
        warehouse = Warehouse(sys.argv[1])
        with warehouse.lock():
            compact(warehouse)
    """
    crashed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(crash), str(root)],
        env={**os.environ, "PARCOURS_CRASH_AT": at},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == 137, crashed.stderr


def land_late_event(root: Path, folder: Path, event_id: str, minutes: int) -> None:
    """One more backfill run: an event of c2 at T + `minutes` (its own batch, then a marts refresh)."""
    late = [{**RUN_2[1], "event_id": event_id, "occurred_at": (T + timedelta(minutes=minutes)).isoformat()}]
    write_jsonl(folder / "touchpoints.jsonl", late)
    assert len(land(folder, root)) == 1


def test_views_return_the_same_rows_from_fewer_files(warehouse: Warehouse) -> None:
    db = warehouse.db_path
    before = view_rows(db)
    assert query(db, RAW_COUNTS) == [(6, 5, 5, 4, 1, 4, 2)]
    assert [len(before[v]) for v in ("touchpoints", "sessions", "journeys", "stg_parcours__customer_state")] == [
        5,
        3,
        3,
        2,
    ]
    assert len(warehouse.published_files("survey_answers")) == 2

    with warehouse.lock():
        report = compact(warehouse, grace=timedelta(hours=1))

    assert view_rows(db) == before
    assert query(db, RAW_COUNTS) == [(5, 3, 3, 2, 0, 0, 2)]  # superseded rows and markers are gone
    assert report.rows_dropped == ROWS_DROPPED
    # One file per partition is left, and the marker datasets have none.
    for dataset in DATASETS:
        partitions = [f.partition for f in warehouse.live_files(dataset)]
        assert len(partitions) == len(set(partitions)), dataset
    assert all(warehouse.published_files(name) == [] for name in MARKER_DATASETS)
    assert len(warehouse.published_files("survey_answers")) == 1
    assert report.files_after == {name: len(warehouse.published_files(name)) for name in DATASETS}
    # The commit lists what it removed; those files stay on disk during the grace period.
    manifest = compaction_manifest(warehouse)
    assert manifest.seq == report.seq == 5 and len(manifest.removed) == report.removed
    assert all((warehouse.root / path).exists() for path in manifest.removed)
    assert warehouse.orphans() == []


def test_removed_files_are_not_read(warehouse: Warehouse) -> None:
    before = view_rows(warehouse.db_path)
    with warehouse.lock():
        compact(warehouse)
    manifest = compaction_manifest(warehouse)
    for path in manifest.removed:  # any read of them would now fail
        (warehouse.root / path).write_bytes(b"not parquet")
    assert view_rows(warehouse.db_path) == before
    live = {path for name in DATASETS for path in warehouse.published_files(name)}
    assert live.isdisjoint(manifest.removed)


def test_a_second_compaction_with_nothing_new_commits_nothing(warehouse: Warehouse) -> None:
    with warehouse.lock():
        first = compact(warehouse)
        second = compact(warehouse)
    assert first.seq == 5 and second.seq is None
    assert first.checkpoint == warehouse.checkpoint_dir / "0000000005.json" and second.checkpoint is None
    assert [m.seq for m in warehouse.manifests()] == [1, 2, 3, 4, 5]


def test_removed_files_are_deleted_by_a_later_compaction_after_the_grace_period(warehouse: Warehouse) -> None:
    now = datetime.now(UTC)
    with warehouse.lock():
        compact(warehouse, grace=timedelta(hours=24), now=now)
    manifest = compaction_manifest(warehouse)
    removed = [warehouse.root / path for path in manifest.removed]
    with warehouse.lock():
        early = compact(warehouse, grace=timedelta(hours=24), now=now + timedelta(hours=23))
    assert early.deleted == [] and all(path.exists() for path in removed)
    with warehouse.lock():
        late = compact(warehouse, grace=timedelta(hours=24), now=now + timedelta(hours=25))
    # With the rollup files the marts refresh of run 2 replaced, as old as the grace period too.
    replaced = [warehouse.root / path for m in warehouse.manifests() if m.seq < manifest.seq for path in m.removed]
    assert replaced and late.deleted == sorted(removed + replaced)
    assert not any(path.exists() for path in removed)
    assert query(warehouse.db_path, "select count(*) from sessions") == [(3,)]


def test_a_reader_holding_the_old_views_keeps_working_through_a_compaction(warehouse: Warehouse) -> None:
    read_twice = """
        import sys, duckdb
        con = duckdb.connect(sys.argv[1], read_only=True)
        counts = "select (select count(*) from raw_sessions), (select count(*) from sessions)"
        print(con.execute(counts).fetchone(), flush=True)
        sys.stdin.readline()
        print(con.execute(counts).fetchone(), flush=True)
    """
    reader = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(read_twice), str(warehouse.db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout.readline() == "(5, 3)\n"
        with warehouse.lock():
            compact(warehouse)
        assert query(warehouse.db_path, "select count(*) from raw_sessions") == [(3,)]
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline() == "(5, 3)\n"  # its old views, over the old files, still on disk
        assert reader.wait(timeout=60) == 0
    finally:
        reader.kill()
        reader.wait(timeout=60)


def test_a_crash_before_the_commit_changes_nothing(warehouse: Warehouse) -> None:
    before = view_rows(warehouse.db_path)
    files_before = {name: warehouse.published_files(name) for name in DATASETS}
    compact_crashing(warehouse.root, "compact_before_manifest")
    reopened = Warehouse(warehouse.root)
    assert [m.seq for m in reopened.manifests()] == [1, 2, 3, 4]
    assert {name: reopened.published_files(name) for name in DATASETS} == files_before
    assert view_rows(reopened.db_path) == before
    orphans = reopened.orphans()
    assert orphans and all("-compact.parquet" in path.name for path in orphans)
    with reopened.lock():  # the next compaction clears them and does the work
        report = compact(reopened)
    assert report.seq == 5 and reopened.orphans() == []
    assert view_rows(reopened.db_path) == before


def test_compaction_needs_the_lock_and_a_busy_warehouse_is_a_clear_error(warehouse: Warehouse) -> None:
    with pytest.raises(RuntimeError, match="needs the warehouse lock"):
        compact(warehouse)
    with pytest.raises(ValueError, match="grace period must not be negative"), warehouse.lock():
        compact(warehouse, grace=timedelta(seconds=-1))
    with warehouse.lock():
        result = subprocess.run(
            [sys.executable, "-m", "parcours.cli", "compact", "--warehouse", str(warehouse.root)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2, result.stderr
    assert f"error: warehouse {warehouse.root} is busy" in result.stderr
    assert [m.seq for m in warehouse.manifests()] == [1, 2, 3, 4]


def test_the_command_compacts_and_refuses_bad_input(warehouse: Warehouse, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "parcours.cli", "compact", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
            timeout=120,
        )

    bad = run("--warehouse", str(warehouse.root), "--grace", "soon")
    assert bad.returncode == 2 and "error: --grace: 'soon' is not a duration" in bad.stderr
    empty = run("--warehouse", str(tmp_path / "nothing"))
    assert empty.returncode == 2 and "is not a parcours warehouse" in empty.stderr
    done = run("--warehouse", str(warehouse.root), "--grace", "0s")
    assert done.returncode == 0, done.stderr
    assert "compaction 5:" in done.stderr and "12 superseded rows dropped" in done.stderr
    assert query(warehouse.db_path, RAW_COUNTS) == [(5, 3, 3, 2, 0, 0, 2)]


def test_compaction_drops_the_ids_older_than_the_retention(warehouse: Warehouse) -> None:
    db = warehouse.db_path
    ids = len({e["event_id"] for e in RUN_1 + RUN_2}) + 2  # and the answers r1, r2
    [(n, first, last)] = query(db, "select count(*), min(ingested_at), max(ingested_at) from raw_id_index")
    assert n == ids
    with warehouse.lock():
        kept = compact(warehouse, now=first + timedelta(days=400) - timedelta(seconds=1))
    assert kept.rows_dropped["id_index"] == 0
    buckets = query(db, "select count(distinct id_bucket) from raw_id_index")[0][0]
    assert len(warehouse.live_files("id_index")) == buckets
    assert query(db, "select count(*) from raw_id_index") == [(ids,)]
    for published in warehouse.live_files("id_index"):  # each bucket rewritten in hash order
        hashes = pq.read_table(warehouse.root / published.path, columns=["id_hash"]).column(0).to_pylist()
        assert hashes == sorted(hashes)
    with warehouse.lock():
        expired = compact(warehouse, now=last + timedelta(days=400, seconds=1))
    assert expired.rows_dropped["id_index"] == ids
    assert warehouse.live_files("id_index") == []
    assert query(db, "select count(*) from raw_id_index") == [(0,)]


def test_runs_continue_after_a_compaction(warehouse: Warehouse, landed: Path, tmp_path: Path) -> None:
    """Offsets, watermarks, settings and customer state survive a compaction: the same files land
    nothing again, and a late event landed after it gives the views of one run over everything."""
    with warehouse.lock():
        compact(warehouse)
    data = landed.parent
    assert land(data / "run1", warehouse.root) == []
    late = [{**RUN_2[1], "event_id": "e6", "occurred_at": (T + timedelta(minutes=60)).isoformat()}]  # c2
    write_jsonl(tmp_path / "run3" / "touchpoints.jsonl", late)
    (batch,) = land(tmp_path / "run3", warehouse.root)
    assert batch.relanded == 1  # e5, recomputed after e6
    write_jsonl(tmp_path / "all" / "touchpoints.jsonl", RUN_1 + RUN_2 + late)
    land(tmp_path / "all", tmp_path / "one")
    columns = "event_id, session_id, journey_cycle, step_index"
    for view, select in (("touchpoints", columns), ("sessions", "*"), ("journeys", "*")):
        sql = f"select {select} from {view} order by all"
        assert query(warehouse.db_path, sql) == query(tmp_path / "one" / "parcours.duckdb", sql), view
    assert query(warehouse.db_path, "select count(*) from sessions where customer_id = 'c2'") == [(3,)]


def land_without_refresh(tmp_path: Path) -> Warehouse:
    """A run that stopped between its batch and its refresh: RUN_1's batch committed, alone, in
    `tmp_path / "w"`; the marts do not hold it."""
    write_jsonl(tmp_path / "run1" / "touchpoints.jsonl", RUN_1)
    warehouse = Warehouse(tmp_path / "w")
    with warehouse.lock():
        Ingestion(warehouse, CONFIG).run_batch(
            plan_file_ranges("touchpoints", tmp_path / "run1" / "touchpoints.jsonl", 0),
            settings=None,
            source_of_kind={"touchpoints": {str(tmp_path / "run1" / "touchpoints.jsonl")}},
        )
    assert [m.seq for m in warehouse.marts_pending()] == [1]
    return warehouse


def test_compaction_refuses_batches_the_marts_do_not_hold_yet(tmp_path: Path) -> None:
    """Compaction drops the refresh markers: batches not refreshed yet would be lost to the marts."""
    from parcours.compact import MartsNotRefreshed
    from parcours.refresh.refresher import catch_up

    warehouse = land_without_refresh(tmp_path)
    with warehouse.lock():
        with pytest.raises(MartsNotRefreshed, match=r"batches 1\.\.1 "):
            compact(warehouse)
        refreshed = catch_up(warehouse)
        assert refreshed is not None and (refreshed.seq, refreshed.batches, refreshed.customers) == (2, 1, 2)
        assert warehouse.marts_pending() == [] and catch_up(warehouse) is None
        assert compact(warehouse).seq == 3
    assert query(warehouse.db_path, "select customer_id, n_events from sessions order by 1, started_at") == [
        ("c1", 1),
        ("c1", 1),
        ("c2", 1),
    ]


def test_compactions_write_checkpoints_that_later_readers_start_from(warehouse: Warehouse, landed: Path) -> None:
    """Batches, a compaction, a batch, a compaction past the grace period of the first, a batch:
    a new process answers as reading every manifest does, and reads none the checkpoint covers."""
    first = datetime.now(UTC)
    with warehouse.lock():
        assert compact(warehouse, now=first).checkpoint == warehouse.checkpoint_dir / "0000000005.json"
    land_late_event(warehouse.root, landed.parent / "late-1", "e6", 60)  # batch 6, marts 7
    with warehouse.lock():
        second = compact(warehouse, grace=timedelta(hours=24), now=first + timedelta(hours=25))
    assert second.seq == 8 and second.deleted and second.checkpoint == warehouse.checkpoint_dir / "0000000008.json"
    land_late_event(warehouse.root, landed.parent / "late-2", "e7", 61)  # batch 9, marts 10
    instants = [first, first + timedelta(seconds=1), first + timedelta(hours=25, seconds=1)]
    expected = answers_of_every_manifest(warehouse.root, instants)
    assert expected["removed_files"][-1]  # the second compaction's, in their grace period
    assert answers(Warehouse(warehouse.root), instants) == expected
    rows = view_rows(warehouse.db_path)

    garble_manifests(warehouse, through=8)
    reopened = Warehouse(warehouse.root)
    assert answers(reopened, instants) == expected
    reopened.rebuild_views()
    assert view_rows(warehouse.db_path) == rows
    assert land(landed.parent / "run1", warehouse.root) == []  # backfill progress came through the checkpoints
    with reopened.lock():
        assert compact(reopened).checkpoint == warehouse.checkpoint_dir / "0000000011.json"
    assert view_rows(warehouse.db_path) == rows


def test_a_crash_between_a_compaction_and_its_checkpoint_leaves_a_readable_warehouse(
    warehouse: Warehouse, landed: Path
) -> None:
    with warehouse.lock():
        compact(warehouse)  # checkpoint 5
    land_late_event(warehouse.root, landed.parent / "late-1", "e6", 60)  # batch 6, marts 7
    rows = view_rows(warehouse.db_path)
    compact_crashing(warehouse.root, "compact_before_checkpoint")
    reopened = Warehouse(warehouse.root)
    assert [m.seq for m in reopened.manifests()][-1] == 8 and reopened.manifests()[-1].removed
    assert sorted(p.name for p in reopened.checkpoint_dir.iterdir()) == ["0000000005.json"]
    instants = [datetime.now(UTC) + timedelta(seconds=1)]
    expected = answers_of_every_manifest(warehouse.root, instants)
    assert expected["removed_files"][0]
    garble_manifests(warehouse, through=5)
    assert answers(Warehouse(warehouse.root), instants) == expected  # checkpoint 5, then manifests 6..8
    assert reopened.views_outdated() == f"{warehouse.db_path} was built at manifest 7, the latest is 8"
    reopened.rebuild_views()
    assert view_rows(warehouse.db_path) == rows
