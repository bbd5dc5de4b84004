"""The whole pipeline on files (backfill mode): one run versus many, late events, accounting."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

import pytest

from parcours.config import load_config
from parcours.pipelines.run import Ingestion
from parcours.warehouse import ROLLUPS, Warehouse
from tests.pipeline_helpers import make_events, query, reference_sessions, view_sessions, write_jsonl

CONFIG = load_config()
GAP = CONFIG.sessions.inactivity_gap
MAX = CONFIG.sessions.max_duration


def land(data: Path, root: Path, batch_size: int | None = None, beam_args: tuple[str, ...] = ()) -> list:
    warehouse = Warehouse(root)
    with warehouse.lock():
        return Ingestion(warehouse, CONFIG, batch_size=batch_size, beam_args=beam_args).run_files(data).batches


def journey_columns(db: Path) -> list[tuple]:
    return query(
        db,
        "select event_id, session_id, session_started_at, stage, journey_cycle, cycle_type, step_index "
        "from touchpoints order by event_id",
    )


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return make_events(customers=40, per_customer=25, seed=11)


def test_one_run_and_many_micro_batches_give_the_same_sessions_and_journeys(tmp_path, events):
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", events)
    single = land(tmp_path / "data", tmp_path / "one")
    many = land(tmp_path / "data", tmp_path / "many", batch_size=170)
    assert len(single) == 1 and len(many) == 6  # 1000 events in batches of at most 170
    one_db, many_db = tmp_path / "one" / "parcours.duckdb", tmp_path / "many" / "parcours.duckdb"
    assert query(one_db, "select count(*), count(distinct event_id) from touchpoints") == [(1000, 1000)]
    assert view_sessions(one_db) == reference_sessions(events, GAP, MAX)
    assert journey_columns(many_db) == journey_columns(one_db)


def test_events_arriving_out_of_order_within_the_lateness_give_the_same_result(tmp_path, events):
    """Deliver events shuffled within a 2-day window (lateness is 3 days), in several runs."""
    rng = random.Random(5)
    from datetime import datetime

    def jitter(e):
        return datetime.fromisoformat(e["occurred_at"]) + timedelta(hours=rng.uniform(0, 48))

    shuffled = sorted(events, key=jitter)
    assert shuffled != events
    write_jsonl(tmp_path / "ordered" / "touchpoints.jsonl", events)
    write_jsonl(tmp_path / "shuffled" / "touchpoints.jsonl", shuffled)
    land(tmp_path / "ordered", tmp_path / "a")
    batches = land(tmp_path / "shuffled", tmp_path / "b", batch_size=100)
    assert sum(b.relanded for b in batches) > 0  # late events did force recomputation
    a_db, b_db = tmp_path / "a" / "parcours.duckdb", tmp_path / "b" / "parcours.duckdb"
    assert query(b_db, "select count(*), count(distinct event_id) from touchpoints") == [(1000, 1000)]
    assert journey_columns(b_db) == journey_columns(a_db)
    assert query(b_db, "select count(*) from sessions") == query(a_db, "select count(*) from sessions")


def test_bad_records_duplicates_and_conflicts_are_accounted_for(tmp_path, events):
    good = events[:50]
    conflict = dict(good[3], touchpoint="checkout" if good[3]["touchpoint"] != "checkout" else "home_page")
    lines = [
        *good,
        good[0],  # exact re-send: duplicate, skipped
        conflict,  # same id, other payload: dead letter
        "{not json",
        "[1, 2]",
        dict(good[1], event_id="x-enum", channel="fax"),
        dict(good[1], event_id="x-missing", customer_id=None),
        dict(good[1], event_id="x-tz", occurred_at="2026-02-02T10:00:00"),
        dict(good[1], event_id="x-future", occurred_at="2099-01-01T00:00:00+00:00"),
        dict(good[1], event_id="x-early", occurred_at="2019-12-31T23:59:59+00:00"),
        dict(good[1], event_id="x-version", schema_version=2),
    ]
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", lines)

    def answer(response_id: str, survey: str, question_id: str, score: int) -> dict:
        return {
            "schema_version": 1,
            "response_id": response_id,
            "customer_id": good[0]["customer_id"],
            "answered_at": good[0]["occurred_at"],
            "survey": survey,
            "question_id": question_id,
            "score": score,
        }

    surveys = [
        answer("r-ok", "nps", "recommend", 9),
        answer("r-range", "nps", "recommend", 11),  # NPS is 0-10
        answer("r-kano", "kano", "fast_delivery", 1),  # a kano answer without its dysfunctional half
    ]
    write_jsonl(tmp_path / "data" / "surveys.jsonl", surveys)
    (batch,) = land(tmp_path / "data", tmp_path / "w")
    assert batch.consumed == {"touchpoints": 60, "surveys": 3}
    assert batch.landed == {"touchpoints": 50, "surveys": 1}
    assert batch.duplicates_skipped == {"touchpoints": 1}
    assert batch.dead_lettered == {"touchpoints": 9, "surveys": 2}
    db = tmp_path / "w" / "parcours.duckdb"
    reasons = dict(query(db, "select coalesce(record_id, payload), reason from dead_letters"))
    assert reasons == {
        good[3]["event_id"]: "duplicate_id_conflict",
        "{not json": "malformed_json",
        "[1, 2]": "not_an_object",
        "x-enum": "unknown_enum_value",
        "x-missing": "schema_violation",
        "x-tz": "schema_violation",
        "x-future": "timestamp_in_future",
        "x-early": "before_earliest_date",
        "x-version": "unsupported_schema_version",
        "r-range": "out_of_range",
        "r-kano": "schema_violation",
    }
    # Every dead letter keeps where it came from: file and byte offset of its line.
    raw = (tmp_path / "data" / "touchpoints.jsonl").read_bytes()
    for offset, payload in query(
        db, "select source_offset, payload from dead_letters where source like '%touchpoints%'"
    ):
        assert raw[offset:].split(b"\n", 1)[0].decode() == payload
    manifest = json.loads((tmp_path / "w" / "_manifests" / "0000000001.json").read_text())  # the batch
    assert (
        manifest["counts"]["consumed"]
        == manifest["counts"]["landed"] + manifest["counts"]["dead_lettered"] + manifest["counts"]["duplicates_skipped"]
    )


def test_a_second_backfill_of_the_same_files_lands_nothing_new(tmp_path, events):
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", events[:100])
    land(tmp_path / "data", tmp_path / "w")
    assert land(tmp_path / "data", tmp_path / "w") == []
    # The same events in another file are recognised as duplicates, not landed twice.
    write_jsonl(tmp_path / "copy" / "touchpoints.jsonl", events[:100])
    (batch,) = land(tmp_path / "copy", tmp_path / "w")
    assert batch.duplicates_skipped == {"touchpoints": 100} and batch.landed == {}
    assert query(tmp_path / "w" / "parcours.duckdb", "select count(*) from touchpoints") == [(100,)]


def test_multi_process_runner_gives_the_same_result(tmp_path, events):
    """FnApiRunner in multi-processing mode pickles every DoFn into worker processes, as Flink
    and Dataflow do: global state or unpicklable closures fail here."""
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", events)
    land(tmp_path / "data", tmp_path / "single")
    land(
        tmp_path / "data",
        tmp_path / "multi",
        batch_size=400,
        beam_args=("--direct_running_mode=multi_processing", "--direct_num_workers=2"),
    )
    assert journey_columns(tmp_path / "multi" / "parcours.duckdb") == journey_columns(
        tmp_path / "single" / "parcours.duckdb"
    )


def test_survey_answers_attach_to_the_rated_touchpoint(tmp_path):
    base = make_events(customers=1, per_customer=1, seed=1)[0]
    from datetime import datetime

    t = datetime.fromisoformat(base["occurred_at"])

    def event(event_id, minutes, touchpoint):
        return dict(
            base,
            event_id=event_id,
            occurred_at=(t + timedelta(minutes=minutes)).isoformat(),
            touchpoint=touchpoint,
        )

    touchpoints = [
        event("e1", 0, "checkout"),
        event("e2", 60, "delivery"),
        event("e3", 20000, "support_call"),
    ]
    customer = base["customer_id"]

    def answer(response_id, minutes, **extra):
        return {
            "schema_version": 1,
            "response_id": response_id,
            "customer_id": customer,
            "survey": "csat",
            "question_id": "q",
            "score": 4,
            "answered_at": (t + timedelta(minutes=minutes)).isoformat(),
            **extra,
        }

    surveys = [
        answer("by-id", 90, event_id="e1"),  # names e1 although e2 is nearer
        answer("nearest", 90),  # nearest preceding: e2 (30 min before)
        answer("too-far", 60 + 7 * 24 * 60 + 1),  # 7 days + 1 min after e2: beyond the 7-day window
        answer("before-any", -5),  # nothing precedes it
    ]
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", touchpoints)
    write_jsonl(tmp_path / "data" / "surveys.jsonl", surveys)
    land(tmp_path / "data", tmp_path / "w")
    rows = query(
        tmp_path / "w" / "parcours.duckdb",
        "select response_id, event_id, touchpoint, stage, attached_by from survey_answers order by response_id",
    )
    assert rows == [
        # An answer attached to nothing says so (a reserved name, docs/analytics-core.md §6).
        ("before-any", None, None, None, "unattached"),
        ("by-id", "e1", "checkout", "purchase", "event_id"),
        ("nearest", "e2", "delivery", "activation", "nearest_preceding"),
        ("too-far", None, None, None, "unattached"),
    ]


def test_the_real_views_open_in_duckdb_1x(tmp_path, events):
    """BI tools embedding DuckDB 1.x read the views file that DuckDB 2.0 wrote (storage v1.0.0)."""
    import os
    import subprocess

    old_python = os.environ.get("PARCOURS_DUCKDB1_PYTHON")
    if not old_python:
        pytest.skip("set PARCOURS_DUCKDB1_PYTHON to a python with duckdb 1.x installed (infra/test.sh creates one)")
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", events[:200])
    land(tmp_path / "data", tmp_path / "w")
    db = tmp_path / "w" / "parcours.duckdb"
    script = str(Path(__file__).with_name("duckdb1_check.py"))
    for view in (
        "touchpoints",
        "sessions",
        "journeys",
        "survey_answers",
        "dead_letters",
        *ROLLUPS,
    ):
        (expected,) = query(db, f"select count(*) from {view}")[0]
        result = subprocess.run([old_python, script, str(db), view, str(expected)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith("duckdb 1."), result.stdout


def test_a_parquet_backfill_lands_the_same_journeys_as_jsonl(tmp_path, events):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from parcours.schemas.contracts import UTC_MICROS

    sample = events[:300]
    write_jsonl(tmp_path / "jsonl" / "touchpoints.jsonl", sample)
    columns = {key: [e[key] for e in sample] for key in sample[0]}
    from datetime import datetime

    columns["occurred_at"] = pa.array([datetime.fromisoformat(t) for t in columns["occurred_at"]], UTC_MICROS)
    (tmp_path / "parquet").mkdir()
    # Small row groups: ranges cut across them.
    pq.write_table(pa.table(columns), tmp_path / "parquet" / "touchpoints.parquet", row_group_size=70)
    land(tmp_path / "jsonl", tmp_path / "a")
    batches = land(tmp_path / "parquet", tmp_path / "b", batch_size=100)
    assert len(batches) == 3 and sum(b.total_consumed for b in batches) == 300
    assert journey_columns(tmp_path / "b" / "parcours.duckdb") == journey_columns(tmp_path / "a" / "parcours.duckdb")
    assert land(tmp_path / "parquet", tmp_path / "b") == []  # resumes after what was landed


def test_a_naive_timestamp_in_parquet_is_dead_lettered_not_guessed(tmp_path, events):
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = events[0]
    from datetime import datetime

    naive = datetime.fromisoformat(row["occurred_at"]).replace(tzinfo=None)
    table = pa.table({**{k: [v] for k, v in row.items() if k != "occurred_at"}, "occurred_at": [naive]})
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "touchpoints.parquet")
    (batch,) = land(tmp_path / "data", tmp_path / "w")
    assert batch.dead_lettered == {"touchpoints": 1}
    assert query(tmp_path / "w" / "parcours.duckdb", "select reason, source_offset from dead_letters") == [
        ("schema_violation", 0)
    ]


def test_a_batch_where_every_record_is_bad_is_all_dead_letters():
    """A micro-batch with no valid record at all (a producer sending garbage) must not crash."""
    from datetime import UTC, datetime

    import pyarrow as pa

    from parcours.pipelines.sources import RAW_ARROW
    from parcours.pipelines.validate import check_batch

    raw = pa.table(
        {
            "source": ["t", "t"],
            "source_partition": [0, 0],
            "source_offset": [7, 8],
            "source_key": [None, None],
            "payload": [b"{nope", b"[]"],
        },
        schema=RAW_ARROW,
    )
    watermark = datetime(2026, 2, 1, tzinfo=UTC)
    valid, dead = check_batch("touchpoints", raw, CONFIG.ingest, watermark, datetime(2026, 2, 2, tzinfo=UTC))
    assert valid.num_rows == 0
    assert dead.select(["reason", "offset"]).to_pylist() == [
        {"reason": "malformed_json", "offset": 7},
        {"reason": "not_an_object", "offset": 8},
    ]


def current_state_matches_latest_events(db: Path) -> None:
    """The current customer_state row of every customer is its latest current event."""
    state = query(
        db,
        "select customer_id, event_id, session_id, journey_cycle, step_index from raw_customer_state "
        "qualify row_number() over (partition by customer_id order by batch_seq desc) = 1 order by 1",
    )
    latest = query(
        db,
        "select customer_id, event_id, session_id, journey_cycle, step_index from touchpoints "
        "qualify row_number() over (partition by customer_id order by occurred_at desc, event_id desc) = 1 "
        "order by 1",
    )
    assert state == latest


def test_customer_state_follows_late_events(tmp_path, events):
    rng = random.Random(9)
    from datetime import datetime

    shuffled = sorted(
        events, key=lambda e: datetime.fromisoformat(e["occurred_at"]) + timedelta(hours=rng.uniform(0, 48))
    )
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", shuffled)
    land(tmp_path / "data", tmp_path / "w", batch_size=150)
    current_state_matches_latest_events(tmp_path / "w" / "parcours.duckdb")


def test_a_late_event_whose_previous_event_is_weeks_old_continues_the_right_cycle(tmp_path):
    """The context of a late event is looked up beyond the recent partitions when needed."""
    from datetime import datetime

    base = make_events(customers=1, per_customer=1, seed=2)[0]
    t0 = datetime.fromisoformat(base["occurred_at"])

    def event(event_id, days, outcome=None):
        return dict(base, event_id=event_id, occurred_at=(t0 + timedelta(days=days)).isoformat(), outcome=outcome)

    first = [event("a", 0, "purchase"), event("b", 30)]  # b opens cycle 1, weeks after a
    late = [event("c", 29)]  # arrives after b, lands between a and b
    write_jsonl(tmp_path / "run1" / "touchpoints.jsonl", first)
    write_jsonl(tmp_path / "run2" / "touchpoints.jsonl", late)
    write_jsonl(tmp_path / "all" / "touchpoints.jsonl", first + late)
    land(tmp_path / "run1", tmp_path / "w")
    (batch,) = land(tmp_path / "run2", tmp_path / "w")
    assert batch.relanded == 1  # b was recomputed after c
    land(tmp_path / "all", tmp_path / "one")
    expected = [("a", 0, 1), ("b", 1, 2), ("c", 1, 1)]  # c and b share cycle 1; c is its first step
    for root in ("w", "one"):
        db = tmp_path / root / "parcours.duckdb"
        assert query(db, "select event_id, journey_cycle, step_index from touchpoints order by 1") == expected
    current_state_matches_latest_events(tmp_path / "w" / "parcours.duckdb")
