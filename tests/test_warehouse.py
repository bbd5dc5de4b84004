"""The warehouse storage layer against real files and a real DuckDB.

Fixture: two batches of touchpoints spanning three dates, computed by hand:

    batch 1: e1 (c1, 2026-01-05 09:00), e2 (c2, 2026-01-05 23:59:59), e3 (c1, 2026-01-06 00:00:01)
    batch 2: e4 (c3, 2026-01-06 10:00), e5 (c2, 2026-01-07 08:00)

so batch 1 writes 2026-01-05 (2 rows) and 2026-01-06 (1 row), batch 2 writes 2026-01-06 and
2026-01-07 (1 row each).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parcours.warehouse import (
    DATASETS,
    STORAGE_VERSION,
    Manifest,
    ManifestExists,
    PublishedFile,
    Warehouse,
    WarehouseBusy,
)

BATCH_1 = [
    ("e1", "c1", datetime(2026, 1, 5, 9, 0, tzinfo=UTC)),
    ("e2", "c2", datetime(2026, 1, 5, 23, 59, 59, tzinfo=UTC)),
    ("e3", "c1", datetime(2026, 1, 6, 0, 0, 1, tzinfo=UTC)),
]
BATCH_2 = [
    ("e4", "c3", datetime(2026, 1, 6, 10, 0, tzinfo=UTC)),
    ("e5", "c2", datetime(2026, 1, 7, 8, 0, tzinfo=UTC)),
]
NO_MODELS = Path("/nonexistent-parcours-sql")  # a sql_dir without layers: raw views only


def touchpoints(rows: list[tuple[str, str, datetime]], seq: int) -> pa.Table:
    spec = DATASETS["touchpoints"]
    schema = pa.schema([*spec.arrow_schema, pa.field("event_date", pa.date32())])
    records = []
    for offset, (event_id, customer_id, occurred_at) in enumerate(rows):
        record = dict.fromkeys(schema.names)
        record |= {
            "event_id": event_id,
            "customer_id": customer_id,
            "occurred_at": occurred_at,
            "channel": "web",
            "touchpoint": "home",
            "schema_version": 1,
            "payload_hash": 2**63 + offset,  # above int64: the uint64 must survive Parquet and DuckDB
            "source": "touchpoints",
            "source_partition": 0,
            "source_offset": offset,
            "batch_seq": seq,
            "ingested_at": datetime(2026, 1, 8, tzinfo=UTC),
            "event_date": occurred_at.date(),
        }
        records.append(record)
    return pa.Table.from_pylist(records, schema=schema)


def manifest(seq: int, files: list[PublishedFile], **overrides: object) -> Manifest:
    fields: dict = {
        "seq": seq,
        "created_at": "2026-01-08T00:00:00Z",
        "config_version": 1,
        "config_fingerprint": "abc123def456",
        "files": tuple(files),
        "offsets": {},
        "watermarks": {},
        "counts": {"landed": sum(f.rows for f in files)},
    }
    return Manifest(**(fields | overrides))


def land(warehouse: Warehouse, seq: int, rows: list[tuple[str, str, datetime]]) -> list[PublishedFile]:
    files = warehouse.write_parquet("touchpoints", touchpoints(rows, seq), seq, "p0")
    warehouse.commit(manifest(seq, files))
    return files


def query(db: Path, sql: str) -> list[tuple]:
    # A fresh connection each time: in one process, duckdb.connect(path) hands back the instance
    # already open on that path, which would keep showing the views it was opened with.
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def run_python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_python(code: str, *args: str) -> subprocess.Popen:
    """A child that talks over pipes, so the test waits on its lines, never on a clock."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "wh")


def test_views_return_exactly_the_committed_batches(warehouse: Warehouse) -> None:
    files_1 = land(warehouse, 1, BATCH_1)
    files_2 = land(warehouse, 2, BATCH_2)

    assert [(f.path, f.rows, f.partition) for f in files_1 + files_2] == [
        ("data/touchpoints/event_date=2026-01-05/b0000000001-p0.parquet", 2, "2026-01-05"),
        ("data/touchpoints/event_date=2026-01-06/b0000000001-p0.parquet", 1, "2026-01-06"),
        ("data/touchpoints/event_date=2026-01-06/b0000000002-p0.parquet", 1, "2026-01-06"),
        ("data/touchpoints/event_date=2026-01-07/b0000000002-p0.parquet", 1, "2026-01-07"),
    ]
    assert all(f.bytes == (warehouse.root / f.path).stat().st_size for f in files_1 + files_2)
    assert warehouse.published_files("touchpoints") == [f.path for f in files_1 + files_2]

    db = warehouse.rebuild_views(NO_MODELS)
    assert db == warehouse.root / "parcours.duckdb"
    columns = "select event_id, customer_id, event_date, batch_seq from raw_touchpoints order by event_id"
    assert query(db, columns) == [
        ("e1", "c1", date(2026, 1, 5), 1),
        ("e2", "c2", date(2026, 1, 5), 1),
        ("e3", "c1", date(2026, 1, 6), 1),
        ("e4", "c3", date(2026, 1, 6), 2),
        ("e5", "c2", date(2026, 1, 7), 2),
    ]
    # Every value round-trips, timestamps and the uint64 hash above 2**63 included.
    with duckdb.connect(str(db), read_only=True) as con:
        landed = con.sql("select * exclude (event_date) from raw_touchpoints order by event_id")
        landed = landed.to_arrow_table()
    written = pa.concat_tables([touchpoints(BATCH_1, 1), touchpoints(BATCH_2, 2)])
    expected = written.drop_columns(["event_date"])
    assert landed.column_names == expected.column_names
    assert landed.to_pylist() == expected.to_pylist()


def test_parquet_files_hold_no_partition_column_and_use_zstd(warehouse: Warehouse) -> None:
    files = warehouse.write_parquet("touchpoints", touchpoints(BATCH_1, 1), 1, "p0")
    metadata = pq.ParquetFile(warehouse.root / files[0].path).metadata
    assert "event_date" not in metadata.schema.names
    assert metadata.schema.names == DATASETS["touchpoints"].arrow_schema.names
    assert metadata.num_rows == 2
    assert metadata.row_group(0).column(0).compression == "ZSTD"
    assert [p.name for p in (warehouse.root / files[0].path).parent.iterdir()] == ["b0000000001-p0.parquet"]


def test_rows_are_split_by_date_whatever_their_order(warehouse: Warehouse) -> None:
    # Dates interleaved and spread over several chunks: each file gets its rows in input order.
    table = pa.concat_tables(
        [touchpoints([BATCH_2[1], BATCH_1[0]], 1), touchpoints([BATCH_1[2], BATCH_2[0], BATCH_1[1]], 1)]
    )
    files = warehouse.write_parquet("touchpoints", table, 1, "p0")
    assert [(f.partition, f.rows) for f in files] == [("2026-01-05", 2), ("2026-01-06", 2), ("2026-01-07", 1)]
    assert [pq.read_table(warehouse.root / f.path).column("event_id").to_pylist() for f in files] == [
        ["e1", "e2"],
        ["e3", "e4"],
        ["e5"],
    ]


def test_an_uncommitted_batch_is_invisible_and_a_retry_overwrites_it(warehouse: Warehouse) -> None:
    land(warehouse, 1, BATCH_1)
    crashed = warehouse.write_parquet("touchpoints", touchpoints(BATCH_2, 2), 2, "p0")  # no commit
    crashed_paths = sorted(warehouse.root / f.path for f in crashed)

    db = warehouse.rebuild_views(NO_MODELS)
    assert query(db, "select count(*) from raw_touchpoints") == [(3,)]
    assert warehouse.orphans() == crashed_paths
    assert warehouse.next_seq() == 2

    retried = warehouse.write_parquet("touchpoints", touchpoints(BATCH_2, 2), 2, "p0")
    assert sorted(warehouse.root / f.path for f in retried) == crashed_paths
    assert warehouse.orphans() == crashed_paths  # overwritten in place, no second copy
    warehouse.commit(manifest(2, retried))
    assert warehouse.orphans() == []

    db = warehouse.rebuild_views(NO_MODELS)
    assert query(db, "select count(*), count(distinct event_id) from raw_touchpoints") == [(5, 5)]


def test_remove_orphans_needs_the_lock_and_keeps_committed_files(warehouse: Warehouse) -> None:
    committed = land(warehouse, 1, BATCH_1)
    crashed = warehouse.write_parquet("touchpoints", touchpoints(BATCH_2, 2), 2, "p0")
    with pytest.raises(RuntimeError, match="needs the warehouse lock"):
        warehouse.remove_orphans()
    with warehouse.lock():
        removed = warehouse.remove_orphans()
    assert removed == sorted(warehouse.root / f.path for f in crashed)
    assert all((warehouse.root / f.path).exists() for f in committed)
    assert not any((warehouse.root / f.path).exists() for f in crashed)
    assert warehouse.orphans() == []


def test_committing_an_existing_seq_raises_and_keeps_the_first(warehouse: Warehouse) -> None:
    first = land(warehouse, 1, BATCH_1)
    other = warehouse.write_parquet("touchpoints", touchpoints(BATCH_2, 1), 1, "p1")
    with pytest.raises(ManifestExists, match=r"seq 1 is already committed .*; the next free seq is 2"):
        warehouse.commit(manifest(1, other))
    assert [m.files for m in Warehouse(warehouse.root).manifests()] == [tuple(first)]
    assert sorted(p.name for p in warehouse.manifest_dir.iterdir()) == ["0000000001.json"]


def test_commit_refuses_files_that_are_not_on_disk(warehouse: Warehouse) -> None:
    path = "data/touchpoints/event_date=2026-01-05/b0000000001-x.parquet"
    ghost = PublishedFile("touchpoints", path, 1, 10, "2026-01-05")
    with pytest.raises(ValueError, match=re.escape(f"{path}: missing")):
        warehouse.commit(manifest(1, [ghost]))
    assert warehouse.manifests() == []


def test_offsets_and_watermarks_from_manifests(warehouse: Warehouse) -> None:
    assert warehouse.offsets() == {}
    assert warehouse.watermarks() == {}
    assert warehouse.next_seq() == 1
    warehouse.commit(
        manifest(
            1,
            [],
            offsets={"touchpoints": {0: (0, 10), 1: (0, 5)}},
            watermarks={"touchpoints": {0: "2026-01-05T10:00:00Z", 1: "2026-01-05T09:00:00Z"}},
        )
    )
    warehouse.commit(
        manifest(
            2,
            [],
            offsets={"touchpoints": {0: (10, 25)}, "survey_answers": {2: (7, 9)}},
            watermarks={
                "touchpoints": {0: "2026-01-06T08:00:00Z", 1: "2026-01-05T09:00:00Z"},
                "survey_answers": {2: "2026-01-06T07:30:00+00:00"},
            },
        )
    )
    reopened = Warehouse(warehouse.root)  # from disk, not from the commit cache
    assert reopened.next_seq() == 3
    assert reopened.offsets() == {"touchpoints": {0: 25, 1: 5}, "survey_answers": {2: 9}}
    assert reopened.watermarks() == {
        "touchpoints": {0: datetime(2026, 1, 6, 8, tzinfo=UTC), 1: datetime(2026, 1, 5, 9, tzinfo=UTC)},
        "survey_answers": {2: datetime(2026, 1, 6, 7, 30, tzinfo=UTC)},
    }
    assert reopened.manifests()[0].offsets == {"touchpoints": {0: (0, 10), 1: (0, 5)}}


def test_manifest_json_round_trip_keeps_types() -> None:
    original = manifest(
        7,
        [PublishedFile("rewrites", "data/rewrites/batch_date=2026-01-08/b0000000007-p0.parquet", 3, 900, "2026-01-08")],
        offsets={"touchpoints": {3: (100, 250)}},
        watermarks={"touchpoints": {3: "2026-01-07T23:00:00Z"}},
        counts={"consumed": 150, "landed": 148, "dead_lettered": 2},
        sources=({"path": "backfill.jsonl", "sha256": "ab" * 32, "lines": [0, 150]},),
    )
    assert Manifest.from_json(original.to_json()) == original


def test_a_manifest_being_written_is_ignored(warehouse: Warehouse) -> None:
    land(warehouse, 1, BATCH_1)
    (warehouse.manifest_dir / "0000000002.json.4242.tmp").write_text("{half a manif")
    assert [m.seq for m in Warehouse(warehouse.root).manifests()] == [1]


def test_write_parquet_checks_the_table_against_the_dataset_schema(warehouse: Warehouse) -> None:
    table = touchpoints(BATCH_1, 1)
    revenue = table.schema.get_field_index("revenue")
    wrong_type = table.set_column(revenue, "revenue", pa.array([1, 2, 3], pa.int64()))
    with pytest.raises(ValueError, match="revenue is int64, expected double"):
        warehouse.write_parquet("touchpoints", wrong_type, 1, "p0")
    with pytest.raises(ValueError, match="no partition column 'event_date'"):
        warehouse.write_parquet("touchpoints", table.drop_columns(["event_date"]), 1, "p0")
    with pytest.raises(ValueError, match=r"missing columns \['session_id'\]"):
        warehouse.write_parquet("touchpoints", table.drop_columns(["session_id"]), 1, "p0")
    with pytest.raises(ValueError, match="unknown dataset 'clicks'"):
        warehouse.write_parquet("clicks", table, 1, "p0")
    assert warehouse.write_parquet("touchpoints", table.slice(0, 0), 1, "p0") == []
    assert not warehouse.data_dir.exists()


def test_second_lock_raises_at_once_naming_the_holder(warehouse: Warehouse) -> None:
    attempt = """
        import sys
        from parcours.warehouse import Warehouse, WarehouseBusy
        try:
            with Warehouse(sys.argv[1]).lock():
                print("acquired")
        except WarehouseBusy as busy:
            print(busy)
            sys.exit(3)
    """
    with warehouse.lock():
        busy = run_python(attempt, str(warehouse.root))  # times out, failing, if the lock blocked
    assert busy.returncode == 3, busy.stderr
    assert f"{warehouse.root / '.lock'} is held by pid {os.getpid()} since 20" in busy.stdout
    free = run_python(attempt, str(warehouse.root))
    assert (free.returncode, free.stdout) == (0, "acquired\n"), free.stderr


def test_lock_of_a_killed_holder_is_free(warehouse: Warehouse) -> None:
    hold = """
        import sys
        from parcours.warehouse import Warehouse
        with Warehouse(sys.argv[1]).lock():
            print("held", flush=True)
            sys.stdin.readline()
    """
    holder = start_python(hold, str(warehouse.root))
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(WarehouseBusy, match=f"held by pid {holder.pid} "), warehouse.lock():
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
        with warehouse.lock():
            assert warehouse.locked
        assert not warehouse.locked
    finally:
        holder.kill()
        holder.wait(timeout=60)


def test_a_reader_holding_the_old_file_keeps_working_during_a_rebuild(warehouse: Warehouse) -> None:
    land(warehouse, 1, BATCH_1)
    db = warehouse.rebuild_views(NO_MODELS)
    read_twice = """
        import sys, duckdb
        con = duckdb.connect(sys.argv[1], read_only=True)
        count = "select count(*) from raw_touchpoints"
        print(con.execute(count).fetchone()[0], flush=True)
        sys.stdin.readline()
        print(con.execute(count).fetchone()[0], flush=True)
    """
    reader = start_python(read_twice, str(db))
    try:
        assert reader.stdout.readline() == "3\n"
        land(warehouse, 2, BATCH_2)
        warehouse.rebuild_views(NO_MODELS)  # while the reader holds the file read-only
        assert query(db, "select count(*) from raw_touchpoints") == [(5,)]
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline() == "3\n"  # its snapshot: the old inode and old file list
        assert reader.wait(timeout=60) == 0
    finally:
        reader.kill()
        reader.wait(timeout=60)


def test_the_database_holds_views_only(warehouse: Warehouse) -> None:
    land(warehouse, 1, BATCH_1)
    db = warehouse.rebuild_views(NO_MODELS)
    assert query(db, "select count(*) from duckdb_tables() where database_name = 'parcours'") == [(0,)]
    assert query(db, "select view_name from duckdb_views() where database_name = 'parcours' order by 1") == [
        ("parcours_finality",),
        ("parcours_meta",),
        ("parcours_settings",),
        ("parcours_stages",),
        ("parcours_watermark",),
        ("raw_churns",),
        ("raw_customer_funnels",),
        ("raw_customer_state",),
        ("raw_customer_transitions",),
        ("raw_dead_letters",),
        ("raw_funnel_steps",),
        ("raw_id_index",),
        ("raw_journey_paths_weekly",),
        ("raw_journey_stages_weekly",),
        ("raw_journeys",),
        ("raw_path_edges",),
        ("raw_paths",),
        ("raw_refreshes",),
        ("raw_rewrites",),
        ("raw_sessions",),
        ("raw_sessions_daily",),
        ("raw_survey_answers",),
        ("raw_survey_attachments",),
        ("raw_touchpoints",),
        ("raw_touchpoints_daily",),
        ("raw_transitions",),
        ("raw_transitions_summary",),
    ]
    assert [p.name for p in warehouse.root.iterdir() if p.name.startswith(".parcours.duckdb")] == []
    assert query(db, "select root, n_manifests, last_seq from parcours_meta") == [(str(warehouse.root), 1, 1)]


def test_a_wal_left_beside_the_old_file_does_not_break_the_new_one(warehouse: Warehouse, tmp_path: Path) -> None:
    # Someone opened parcours.duckdb read-write, wrote, and was killed before a checkpoint.
    leave_wal = """
        import os, shutil, sys, duckdb
        con = duckdb.connect(sys.argv[1])
        con.execute("set checkpoint_threshold = '1GB'")
        con.execute("create table scratch as select 1 as x")
        shutil.copy(sys.argv[1] + ".wal", sys.argv[2])
        os._exit(0)
    """
    stale_wal = warehouse.root / "parcours.duckdb.wal"
    land(warehouse, 1, BATCH_1)
    warehouse.rebuild_views(NO_MODELS)
    left = run_python(leave_wal, str(tmp_path / "other.duckdb"), str(stale_wal))
    assert left.returncode == 0 and stale_wal.stat().st_size > 0, left.stderr
    db = warehouse.rebuild_views(NO_MODELS)
    assert not stale_wal.exists()
    assert query(db, "select count(*) from raw_touchpoints") == [(3,)]


def test_a_dataset_without_files_has_a_typed_empty_view(warehouse: Warehouse) -> None:
    db = warehouse.rebuild_views(NO_MODELS)
    empty = query(db, "select column_name, column_type from (describe raw_touchpoints)")
    assert query(db, "select count(*) from raw_touchpoints") == [(0,)]
    assert query(db, "select n_manifests, last_seq from parcours_meta") == [(0, None)]
    assert query(db, 'select "offset", "partition", ingested_date from raw_dead_letters') == []
    land(warehouse, 1, BATCH_1)
    db = warehouse.rebuild_views(NO_MODELS)
    landed = query(db, "select column_name, column_type from (describe raw_touchpoints)")
    assert empty == landed  # a BI tool sees the same columns and types before and after data lands
    assert landed[-1] == ("event_date", "DATE")
    assert ("payload_hash", "UBIGINT") in landed
    assert ("occurred_at", "TIMESTAMP WITH TIME ZONE") in landed


def test_models_become_views_in_layer_order(warehouse: Warehouse, tmp_path: Path) -> None:
    sql = tmp_path / "sql"
    for relative, text in {
        "staging/stg_events__touchpoints.sql": (
            "-- touchpoints as landed\n-- grain: one row per event_id\n-- view: touchpoints\n"
            "select event_id, customer_id, event_date from raw_touchpoints;\n\n"
        ),
        # int_a reads int_b, which sorts after it: built once int_b exists.
        "intermediate/int_a_customer_events.sql": (
            "select customer_id, count(*) as n_events\n"
            "from int_b_customers join touchpoints using (customer_id)\ngroup by customer_id"
        ),
        "intermediate/int_b_customers.sql": "select distinct customer_id from touchpoints",
        "marts/customers.sql": "-- grain: one row per customer_id\nselect * from int_a_customer_events;",
        "marts/README.md": "not a model",
    }.items():
        (sql / relative).parent.mkdir(parents=True, exist_ok=True)
        (sql / relative).write_text(text)
    land(warehouse, 1, BATCH_1)
    land(warehouse, 2, BATCH_2)
    db = warehouse.rebuild_views(sql)
    assert query(db, "select * from customers order by customer_id") == [("c1", 2), ("c2", 2), ("c3", 1)]
    assert query(db, "select count(*) from touchpoints") == [(5,)]
    assert query(db, "select count(*) from duckdb_views() where view_name like 'stg_%'") == [(0,)]


def test_model_order_is_read_from_what_each_model_reads(tmp_path: Path) -> None:
    from parcours.warehouse import _read_models, model_references

    # A CTE or an alias named like a model shadows it: no dependency, no false cycle.
    assert model_references(
        "with sessions as (select * from stg_s) select s.* from sessions s join b as touchpoints using (x)",
        ["sessions", "stg_s", "touchpoints", "b"],
    ) == {"stg_s", "b"}
    # Comments and string literals are not read.
    assert model_references("select 'from a' as x -- from b\n/* join c */ from d", ["a", "b", "c", "d"]) == {"d"}
    sql = tmp_path / "sql"
    for relative, text in {
        "intermediate/int_a.sql": "select * from int_c",
        "intermediate/int_b.sql": "select 1 as x",
        "intermediate/int_c.sql": "select * from int_b",
    }.items():
        (sql / relative).parent.mkdir(parents=True, exist_ok=True)
        (sql / relative).write_text(text)
    assert [m.name for m in _read_models(sql)] == ["int_b", "int_c", "int_a"]
    (sql / "intermediate" / "int_b.sql").write_text("select * from int_a")
    with pytest.raises(
        ValueError,
        match=r"cycle: intermediate/int_a\.sql -> intermediate/int_c\.sql -> "
        r"intermediate/int_b\.sql -> intermediate/int_a\.sql",
    ):
        _read_models(sql)
    (sql / "intermediate" / "int_b.sql").write_text("select * from customers")
    (sql / "marts").mkdir()
    (sql / "marts" / "customers.sql").write_text("select 1 as x")
    with pytest.raises(ValueError, match=r"intermediate/int_b\.sql reads marts/customers\.sql, of a later layer"):
        _read_models(sql)


def test_a_failed_build_leaves_the_old_file_in_place(warehouse: Warehouse, tmp_path: Path) -> None:
    land(warehouse, 1, BATCH_1)
    db = warehouse.rebuild_views(NO_MODELS)
    before = db.read_bytes()
    sql = tmp_path / "sql"
    (sql / "marts").mkdir(parents=True)
    (sql / "marts" / "broken.sql").write_text("select * from no_such_model")
    land(warehouse, 2, BATCH_2)
    with pytest.raises(duckdb.CatalogException) as failure:
        warehouse.rebuild_views(sql)
    assert "in SQL model marts/broken.sql" in failure.value.__notes__
    assert db.read_bytes() == before
    assert query(db, "select count(*) from raw_touchpoints") == [(3,)]
    assert [p.name for p in warehouse.root.iterdir() if p.name.startswith(".parcours.duckdb")] == []


def test_model_names_cannot_shadow_the_raw_views(warehouse: Warehouse, tmp_path: Path) -> None:
    sql = tmp_path / "sql"
    (sql / "staging").mkdir(parents=True)
    (sql / "staging" / "stg_x.sql").write_text("-- view: raw_touchpoints\nselect 1 as x")
    with pytest.raises(ValueError, match=r"staging/stg_x\.sql: view 'raw_touchpoints' is already defined"):
        warehouse.rebuild_views(sql)
    assert not warehouse.db_path.exists()


def test_opens_from_any_directory_and_is_rebuilt_after_a_move(warehouse: Warehouse, tmp_path: Path) -> None:
    land(warehouse, 1, BATCH_1)
    land(warehouse, 2, BATCH_2)
    assert warehouse.needs_relocation()  # never built
    warehouse.rebuild_views(NO_MODELS)
    assert not warehouse.needs_relocation()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    count = """
        import sys, duckdb
        print(duckdb.connect(sys.argv[1], read_only=True).sql(sys.argv[2]).fetchall())
    """
    opened = run_python(count, str(warehouse.db_path), "select count(*) from raw_touchpoints", cwd=elsewhere)
    assert (opened.returncode, opened.stdout) == (0, "[(5,)]\n"), opened.stderr

    moved = Warehouse(shutil.move(warehouse.root, tmp_path / "moved"))
    assert moved.needs_relocation()
    assert moved.views_outdated() == (
        f"{moved.db_path} has views over {warehouse.root}, but the warehouse is now at {moved.root}"
    )
    with pytest.raises(duckdb.IOException):  # the absolute paths inside point at the old place
        query(moved.db_path, "select count(*) from raw_touchpoints")
    moved.rebuild_views(NO_MODELS)
    assert not moved.needs_relocation()
    opened = run_python(count, str(moved.db_path), "select count(*) from raw_touchpoints", cwd=elsewhere)
    assert (opened.returncode, opened.stdout) == (0, "[(5,)]\n"), opened.stderr


def test_views_behind_the_latest_manifest_need_a_rebuild(warehouse: Warehouse) -> None:
    land(warehouse, 1, BATCH_1)
    warehouse.rebuild_views(NO_MODELS)
    land(warehouse, 2, BATCH_2)  # a run that crashed before rebuilding
    assert warehouse.views_outdated() == f"{warehouse.db_path} was built at manifest 1, the latest is 2"
    warehouse.rebuild_views(NO_MODELS)
    assert warehouse.views_outdated() is None


def test_a_root_under_a_key_value_folder_is_refused(tmp_path: Path) -> None:
    # DuckDB's hive partitioning would read `env=prod` as one more column of every view.
    with pytest.raises(ValueError, match="'env=prod'"):
        Warehouse(tmp_path / "env=prod" / "wh")


def test_duckdb_1x_clients_can_read_the_views(warehouse: Warehouse, tmp_path: Path) -> None:
    old_python = os.environ.get("PARCOURS_DUCKDB1_PYTHON")
    if not old_python:
        pytest.skip("set PARCOURS_DUCKDB1_PYTHON to a python with duckdb 1.x installed (infra/test.sh creates one)")
    sql = tmp_path / "sql"
    (sql / "marts").mkdir(parents=True)
    (sql / "marts" / "customers.sql").write_text("select distinct customer_id from raw_touchpoints")
    land(warehouse, 1, BATCH_1)
    land(warehouse, 2, BATCH_2)
    db = warehouse.rebuild_views(sql)
    storage = "select tags['storage_version'] from duckdb_databases() where database_name = 'parcours'"
    assert query(db, storage) == [(STORAGE_VERSION + "+",)]
    script = str(Path(__file__).with_name("duckdb1_check.py"))
    # The watermark views are SQL over literals (no watermark here: no partition, one null row).
    cases = (("raw_touchpoints", 5), ("customers", 3), ("raw_survey_answers", 0))
    for view, expected in (*cases, ("parcours_watermark", 0), ("parcours_finality", 1)):
        checked = subprocess.run(
            [old_python, script, str(db), view, str(expected)], capture_output=True, text=True, timeout=120
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith("duckdb 1."), checked.stdout


def test_a_commit_can_remove_live_files_and_only_those(warehouse: Warehouse) -> None:
    files_1 = land(warehouse, 1, BATCH_1)
    files_2 = land(warehouse, 2, BATCH_2)
    merged = warehouse.write_parquet("touchpoints", touchpoints(BATCH_1[2:] + BATCH_2[:1], 3), 3, "merged")
    assert [f.partition for f in merged] == ["2026-01-06"]
    replaced = [files_1[1].path, files_2[0].path]  # the two files of 2026-01-06
    warehouse.commit(manifest(3, merged, removed=tuple(replaced)))
    assert warehouse.published_files("touchpoints") == [files_1[0].path, files_2[1].path, merged[0].path]
    db = warehouse.rebuild_views(NO_MODELS)
    assert query(db, "select event_id from raw_touchpoints order by 1") == [("e1",), ("e2",), ("e3",), ("e4",), ("e5",)]
    assert warehouse.orphans() == []  # removed files are listed by a manifest: not orphans
    assert all((warehouse.root / path).exists() for path in replaced)  # kept for readers of older views

    again = warehouse.write_parquet("touchpoints", touchpoints(BATCH_1[:1], 4), 4, "p0")
    with pytest.raises(ValueError, match=re.escape(f"{replaced[0]}: removed, but not a live file")):
        warehouse.commit(manifest(4, again, removed=(replaced[0],)))
    assert warehouse.next_seq() == 4


def test_removed_files_are_deleted_only_under_the_lock_and_after_their_commit(warehouse: Warehouse) -> None:
    files = land(warehouse, 1, BATCH_1)
    merged = warehouse.write_parquet("touchpoints", touchpoints(BATCH_1, 2), 2, "merged")
    warehouse.commit(manifest(2, merged, created_at="2026-01-09T00:00:00Z", removed=tuple(f.path for f in files)))
    with pytest.raises(RuntimeError, match="needs the warehouse lock"):
        warehouse.delete_removed(datetime(2026, 1, 10, tzinfo=UTC))
    with warehouse.lock():
        assert warehouse.delete_removed(datetime(2026, 1, 9, tzinfo=UTC)) == []  # committed at that instant
        deleted = warehouse.delete_removed(datetime(2026, 1, 9, 0, 0, 1, tzinfo=UTC))
    assert deleted == sorted(warehouse.root / f.path for f in files)
    assert not any(path.exists() for path in deleted)
    assert query(warehouse.rebuild_views(NO_MODELS), "select count(*) from raw_touchpoints") == [(3,)]


def test_lists_of_low_cardinality_strings_are_dictionary_encoded(warehouse: Warehouse) -> None:
    from parcours.warehouse import JOURNEY_ARROW

    row = dict.fromkeys(JOURNEY_ARROW.names) | {"customer_id": "c1", "path": ["home", "cart"], "batch_seq": 1}
    table = pa.Table.from_pylist([row], schema=DATASETS["journeys"].arrow_schema)
    table = table.append_column("batch_date", pa.array([date(2026, 1, 5)], pa.date32()))
    (published,) = warehouse.write_parquet("journeys", table, 1, "p0")
    meta = pq.ParquetFile(warehouse.root / published.path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" in encodings["path.list.element"]
    assert "RLE_DICTIONARY" not in encodings["customer_id"]  # high cardinality: plain
