"""Sessions by the parcours rule, with expectations worked out by hand on small timelines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from parcours.pipelines.sessionize import Sessionize, assign_sessions, session_id_for
from parcours.pipelines.state import PublishedFiles
from parcours.schemas.contracts import UTC_MICROS

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GAP = timedelta(minutes=30)
DAY = timedelta(hours=24)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def events(rows: list[tuple[str, str, datetime]]) -> pa.Table:
    """(event_id, customer_id, occurred_at) rows."""
    return pa.table(
        {
            "event_id": [r[0] for r in rows],
            "customer_id": [r[1] for r in rows],
            "occurred_at": pa.array([r[2] for r in rows], UTC_MICROS),
        }
    )


def groups(table: pa.Table) -> dict[str, list[str]]:
    """session_id -> event ids in it, for comparing partitions of events into sessions."""
    result: dict[str, list[str]] = {}
    for row in table.to_pylist():
        result.setdefault(row["session_id"], []).append(row["event_id"])
    return result


def partition(table: pa.Table) -> list[list[str]]:
    return sorted(sorted(ids) for ids in groups(table).values())


def test_events_exactly_one_gap_apart_stay_together_and_one_microsecond_more_splits():
    table = events(
        [
            ("a", "c1", at(0)),
            ("b", "c1", at(30)),  # exactly the gap after a: same session
            ("c", "c1", at(60) + timedelta(microseconds=1)),  # gap + 1 µs after b: new session
        ]
    )
    result = assign_sessions(table, None, GAP, DAY)
    assert partition(result) == [["a", "b"], ["c"]]
    starts = {row["event_id"]: row["session_started_at"] for row in result.to_pylist()}
    assert starts == {"a": at(0), "b": at(0), "c": at(60) + timedelta(microseconds=1)}


def test_max_duration_splits_a_continuous_session_where_it_would_pass_the_limit():
    # Events every 20 minutes for 3 hours, with a 1 h maximum: a session may last 60 minutes
    # at most, so sessions are [0, 20, 40, 60], [80, 100, 120, 140], [160, 180].
    table = events([(f"e{m:03d}", "c1", at(m)) for m in range(0, 181, 20)])
    result = assign_sessions(table, None, GAP, timedelta(hours=1))
    assert partition(result) == [
        ["e000", "e020", "e040", "e060"],
        ["e080", "e100", "e120", "e140"],
        ["e160", "e180"],
    ]


def test_input_order_does_not_matter_and_customers_never_share_a_session():
    rows = [
        ("a", "c1", at(0)),
        ("b", "c1", at(10)),
        ("x", "c2", at(5)),
        ("c", "c1", at(50)),
        ("y", "c2", at(100)),
    ]
    in_order = assign_sessions(events(rows), None, GAP, DAY)
    shuffled = assign_sessions(events([rows[3], rows[4], rows[1], rows[0], rows[2]]), None, GAP, DAY)
    assert partition(in_order) == [["a", "b"], ["c"], ["x"], ["y"]]  # c is 40 min after b
    assert in_order.to_pylist() == shuffled.to_pylist()


def test_session_ids_are_deterministic_from_customer_and_start():
    result = assign_sessions(events([("a", "c1", at(0)), ("b", "c1", at(5))]), None, GAP, DAY)
    expected = session_id_for("c1", int(at(0).timestamp() * 1_000_000))
    assert set(result.column("session_id").to_pylist()) == {expected}


def test_new_events_continue_the_session_of_the_latest_landed_event():
    context = pa.table(
        {
            "customer_id": ["c1", "c2"],
            "occurred_at": pa.array([at(100), at(100)], UTC_MICROS),
            "session_id": ["s-landed-1", "s-landed-2"],
            "session_started_at": pa.array([at(90), at(-1340)], UTC_MICROS),
        }
    )
    table = events(
        [
            ("a", "c1", at(125)),  # 25 min after c1's last landed event: continues s-landed-1
            ("b", "c1", at(200)),  # 75 min later: new session
            ("x", "c2", at(110)),  # within the gap, but c2's session started 1450 min before: > 24 h
        ]
    )
    result = {r["event_id"]: r for r in assign_sessions(table, context, GAP, DAY).to_pylist()}
    assert result["a"]["session_id"] == "s-landed-1"
    assert result["a"]["session_started_at"] == at(90)
    assert result["b"]["session_id"] == session_id_for("c1", int(at(200).timestamp() * 1_000_000))
    assert result["x"]["session_id"] == session_id_for("c2", int(at(110).timestamp() * 1_000_000))


def test_a_continued_session_still_obeys_the_maximum_duration():
    context = pa.table(
        {
            "customer_id": ["c1"],
            "occurred_at": pa.array([at(40)], UTC_MICROS),
            "session_id": ["s-landed"],
            "session_started_at": pa.array([at(0)], UTC_MICROS),
        }
    )
    table = events([("a", "c1", at(55)), ("b", "c1", at(70))])  # b is 70 min after the start
    result = {
        r["event_id"]: r["session_id"] for r in assign_sessions(table, context, GAP, timedelta(hours=1)).to_pylist()
    }
    assert result["a"] == "s-landed"
    assert result["b"] == session_id_for("c1", int(at(70).timestamp() * 1_000_000))


def test_settings_are_checked_when_the_transform_is_built():
    with pytest.raises(ValueError, match="gap must be positive"):
        Sessionize(PublishedFiles(), timedelta(0), DAY)
    with pytest.raises(ValueError, match="at least the gap"):
        Sessionize(PublishedFiles(), timedelta(hours=2), timedelta(hours=1))


def _new_rows(rows: list[tuple[str, str, datetime]]) -> pa.Table:
    """Validated rows as Deduplicate hands them to Sessionize (contract columns + lineage)."""
    from parcours.schemas.contracts import TOUCHPOINT_ARROW

    base = events(rows)
    n = base.num_rows
    columns = {}
    for field in TOUCHPOINT_ARROW:
        if field.name in base.column_names:
            columns[field.name] = base.column(field.name)
        elif field.name == "schema_version":
            columns[field.name] = pa.array([1] * n, field.type)
        elif field.name == "payload_hash":
            columns[field.name] = pa.array(range(n), field.type)
        elif field.name in ("channel", "touchpoint"):
            columns[field.name] = pa.array(["web"] * n, field.type)
        else:
            columns[field.name] = pa.nulls(n, field.type)
    columns["source"] = pa.array(["test"] * n)
    columns["source_partition"] = pa.array([0] * n, pa.int32())
    columns["source_offset"] = pa.array(range(n), pa.int64())
    return pa.table(columns)


def test_sessionize_transform_in_a_test_pipeline():
    rows = [
        ("a", "c1", at(0)),
        ("b", "c1", at(30)),
        ("c", "c1", at(61)),
        ("x", "c2", at(0)),
        ("y", "c2", at(29)),
    ]
    expected = [
        ("a", session_id_for("c1", int(at(0).timestamp() * 1e6))),
        ("b", session_id_for("c1", int(at(0).timestamp() * 1e6))),
        ("c", session_id_for("c1", int(at(61).timestamp() * 1e6))),
        ("x", session_id_for("c2", int(at(0).timestamp() * 1e6))),
        ("y", session_id_for("c2", int(at(0).timestamp() * 1e6))),
    ]
    with BeamTestPipeline(runner="FnApiRunner") as p:
        out = (
            p
            | beam.Create([(("touchpoints", 0), _new_rows(rows[:3])), (("touchpoints", 1), _new_rows(rows[3:]))])
            | Sessionize(PublishedFiles(), GAP, DAY)
            | beam.FlatMap(
                lambda work: zip(
                    work.events["event_id"].to_pylist(), work.events["session_id"].to_pylist(), strict=True
                )
            )
        )
        assert_that(out, equal_to(expected))
