"""The watermark and the finality point (`parcours.warehouse.time`): which partitions hold it
back at a wall clock, on hand-built manifests, on file backfills and on a real Kafka broker.

Every wall clock is passed explicitly (the ingestion's `clock`, the refresh's and finality's
`now`): nothing sleeps, and every expected time is worked out by hand in the comments.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from parcours.config import load_config
from parcours.pipelines.run import Ingestion
from parcours.refresh.declarations import declarations
from parcours.refresh.refresher import catch_up
from parcours.warehouse import Checkpoint, Delivery, Finality, Manifest, Warehouse, finality
from parcours.warehouse.ledger import merge_delivery
from parcours.warehouse.time import partition_times
from tests.pipeline_helpers import query, write_jsonl

CONFIG = load_config()
SETTINGS = CONFIG.settings_record()
LATENESS = CONFIG.ingest.allowed_lateness  # 3 days
HOUR = timedelta(hours=1)
C1 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # the wall clock of the first run


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def manifest(watermarks: dict, delivery: dict | None = None) -> Manifest:
    return Manifest(
        seq=1,
        created_at=iso(C1),
        config_version=1,
        config_fingerprint="f",
        files=(),
        offsets={},
        watermarks=watermarks,
        counts={},
        settings=SETTINGS,
        delivery=delivery or {},
    )


def tp(delivered_at: datetime | None, read_to_end: bool | None) -> Delivery:
    return Delivery("touchpoints", None if delivered_at is None else iso(delivered_at), read_to_end)


# -- the rule, on hand-built manifests -------------------------------------------------------------


def test_an_idle_partition_read_to_its_end_does_not_hold_the_watermark_back():
    m = manifest(
        {"tp": {0: "2026-03-01T10:00:00+00:00", 1: "2026-03-01T12:00:00+00:00"}},
        {"tp": {0: tp(C1 - 2 * HOUR, True), 1: tp(C1 - 10 * 60 * timedelta(seconds=1), True)}},
    )
    # Partition 0 delivered 2 h ago (> idle_after, 1 h) and was read to its end: released.
    # Partition 1 delivered 10 min ago: it holds the watermark at its latest, 12:00.
    assert finality(m, SETTINGS, C1) == Finality(at("2026-03-01T12:00:00Z"), at("2026-03-01T12:00:00Z") - LATENESS)
    # Before partition 0 went idle (at 07:00, one hour after it delivered at 06:00): both hold,
    # the minimum is partition 0's 10:00. Exactly idle_after after is not idle yet.
    assert finality(m, SETTINGS, C1 - HOUR).watermark == at("2026-03-01T10:00:00Z")
    assert finality(m, SETTINGS, C1 - HOUR + timedelta(seconds=1)).watermark == at("2026-03-01T12:00:00Z")


def test_a_lagging_partition_holds_the_watermark_back_even_when_idle():
    m = manifest(
        {"tp": {0: "2026-03-01T10:00:00+00:00", 1: "2026-03-01T12:00:00+00:00"}},
        {"tp": {0: tp(C1 - 2 * HOUR, False), 1: tp(C1, True)}},
    )
    # Partition 0 was not read to its end: what is left may be older than partition 1's 12:00.
    assert finality(m, SETTINGS, C1 + 30 * timedelta(minutes=1)).watermark == at("2026-03-01T10:00:00Z")
    assert finality(m, SETTINGS, C1 + 5 * HOUR).watermark == at("2026-03-01T10:00:00Z")


def test_surveys_never_hold_it_back_and_all_idle_gives_the_latest_touchpoint():
    m = manifest(
        {
            "tp": {0: "2026-03-01T10:00:00+00:00", 1: "2026-03-01T12:00:00+00:00"},
            "sv": {0: "2026-02-20T09:00:00+00:00"},
        },
        {"tp": {0: tp(C1, True), 1: tp(C1, True)}, "sv": {0: Delivery("surveys", iso(C1), False)}},
    )
    # A survey partition, even one still being read, is reported only: the minimum is 10:00.
    assert finality(m, SETTINGS, C1).watermark == at("2026-03-01T10:00:00Z")
    # Two hours later both touchpoint partitions are idle and read to their end: the newest, 12:00.
    assert finality(m, SETTINGS, C1 + 2 * HOUR).watermark == at("2026-03-01T12:00:00Z")
    rows = {(r.source, r.partition): r for r in partition_times(m, SETTINGS, C1 + 2 * HOUR)}
    assert (rows["sv", 0].kind, rows["sv", 0].idle, rows["sv", 0].holds_back) == ("surveys", True, False)
    # A longer idle_after in the settings record keeps them holding.
    slow = {**SETTINGS, "idle_after_in_s": 3 * 3600}
    assert finality(m, slow, C1 + 2 * HOUR).watermark == at("2026-03-01T10:00:00Z")
    # Surveys alone: no touchpoint time, no watermark.
    surveys_only = manifest({"sv": {0: "2026-02-20T09:00:00+00:00"}}, {"sv": {0: Delivery("surveys", iso(C1), True)}})
    assert finality(surveys_only, SETTINGS, C1) == Finality(None, None)


def test_a_manifest_older_than_delivery_gives_the_minimum_over_every_partition_as_before():
    m = manifest({"tp": {0: "2026-03-01T10:00:00+00:00"}, "sv": {0: "2026-02-20T09:00:00+00:00"}})
    rows = partition_times(m, SETTINGS, C1 + 100 * HOUR)
    assert [(r.kind, r.delivered_at, r.read_to_end, r.idle, r.holds_back) for r in rows] == [
        ("unknown", None, None, None, True),
        ("unknown", None, None, None, True),
    ]
    assert finality(m, SETTINGS, C1 + 100 * HOUR).watermark == at("2026-02-20T09:00:00Z")
    # Settings recorded before idle_after existed: the default, one hour.
    old_settings = {k: v for k, v in SETTINGS.items() if k != "idle_after_in_s"}
    recent = manifest({"tp": {0: "2026-03-01T10:00:00+00:00"}}, {"tp": {0: tp(C1, True)}})
    assert partition_times(recent, old_settings, C1 + HOUR)[0].idle is False
    assert partition_times(recent, old_settings, C1 + HOUR + timedelta(seconds=1))[0].idle is True
    with pytest.raises(ValueError, match="timezone-aware"):
        finality(recent, SETTINGS, datetime(2026, 3, 2))


def test_a_partition_landed_before_deliveries_were_recorded_can_go_idle():
    """Upgrading: the first batch that records deliveries finds partitions with a latest event
    time and no delivery. One it reads nothing from gets the previous commit's wall clock (it
    delivered by then at the latest); one it reads from, the batch's; an empty one stays never."""
    landed = {"tp": {0: "2026-03-01T10:00:00+00:00", 1: "2026-03-01T12:00:00+00:00"}}
    seen = {"tp": {0: tp(None, True), 1: tp(C1, False), 2: tp(None, True)}}
    merged = merge_delivery({}, seen, landed=landed, landed_by=iso(C1 - 3 * HOUR))
    assert merged == {"tp": {0: tp(C1 - 3 * HOUR, True), 1: tp(C1, False), 2: tp(None, True)}}
    # A delivery recorded before wins over that bound; a batch reading records replaces it.
    again = merge_delivery(
        merged, {"tp": {0: tp(None, True), 1: tp(C1 + HOUR, True)}}, landed=landed, landed_by=iso(C1)
    )
    assert again["tp"][0] == tp(C1 - 3 * HOUR, True) and again["tp"][1] == tp(C1 + HOUR, True)
    # Partition 0 idle since 05:00 and read to its end: released at C1; partition 1 holds at 12:00.
    m = manifest({"tp": {**landed["tp"]}}, again)
    assert finality(m, SETTINGS, C1 + HOUR).watermark == at("2026-03-01T12:00:00Z")


# -- readable both ways ---------------------------------------------------------------------------


def test_manifests_and_checkpoints_read_with_and_without_delivery(tmp_path: Path):
    old_manifest = json.loads(manifest({"tp": {0: "2026-03-01T10:00:00+00:00"}}).to_json())
    old_manifest.pop("delivery")
    assert Manifest.from_json(json.dumps(old_manifest)).delivery == {}

    warehouse = Warehouse(tmp_path / "w")
    data = tmp_path / "data"
    write_jsonl(data / "touchpoints.jsonl", [event("a", "2026-03-01T10:00:00Z")])
    with warehouse.lock():
        Ingestion(warehouse, CONFIG, clock=lambda: C1).run_files(data, refresh=False)
        warehouse.write_checkpoint()
    path = next((warehouse.root / "_checkpoints").glob("*.json"))
    envelope = json.loads(path.read_bytes())
    assert envelope["state"]["delivery"] == {
        str(data.resolve() / "touchpoints.jsonl"): {
            "-1": {"kind": "touchpoints", "delivered_at": iso(C1), "read_to_end": True}
        }
    }
    # A reader older than the field: the same format, the field ignored.
    hints = typing.get_type_hints(Checkpoint)
    older = dataclasses.make_dataclass(
        "OlderCheckpoint",
        [(f.name, hints[f.name], f) for f in dataclasses.fields(Checkpoint) if f.name != "delivery"],
    )
    read_by_older = msgspec.json.decode(json.dumps(envelope["state"]), type=older)
    assert read_by_older.watermarks == Checkpoint.from_json(path.read_bytes(), str(path)).watermarks
    # A checkpoint written before the field: read with no delivery.
    envelope["state"].pop("delivery")
    state = json.dumps(envelope["state"], separators=(",", ":")).encode()
    rewritten = {"format": envelope["format"], "sha256": hashlib.sha256(state).hexdigest(), "state": envelope["state"]}
    assert Checkpoint.from_json(json.dumps(rewritten, separators=(",", ":")).encode(), "older").delivery == {}


# -- file backfills ------------------------------------------------------------------------------------


def event(customer: str, occurred_at: str, n: int = 0) -> dict:
    return {
        "schema_version": 1,
        "event_id": f"{customer}-{occurred_at}-{n}",
        "customer_id": customer,
        "occurred_at": occurred_at,
        "channel": "web",
        "touchpoint": "home_page",
    }


def answer(customer: str, answered_at: str) -> dict:
    return {
        "schema_version": 1,
        "response_id": f"r-{customer}-{answered_at}",
        "customer_id": customer,
        "answered_at": answered_at,
        "survey": "csat",
        "question_id": "q",
        "score": 4,
    }


def test_file_backfills_an_idle_file_releases_a_lagging_one_holds_and_surveys_never(tmp_path: Path):
    first, second = tmp_path / "first", tmp_path / "second"
    write_jsonl(first / "touchpoints.jsonl", [event("a", f"2026-03-01T{h:02d}:00:00Z") for h in (8, 9, 10)])
    write_jsonl(first / "surveys.jsonl", [answer("a", "2026-02-20T09:00:00Z")])
    # Six events, 11:00..11:50; with batch_size 2 one batch reads the first two.
    write_jsonl(second / "touchpoints.jsonl", [event("b", f"2026-03-01T11:{m:02d}:00Z") for m in range(0, 60, 10)])
    warehouse = Warehouse(tmp_path / "w")
    c2, c3 = C1 + 2 * HOUR, C1 + 2 * HOUR + 10 * timedelta(minutes=1)
    with warehouse.lock():
        Ingestion(warehouse, CONFIG, clock=lambda: C1).run_files(first, refresh=False)
        Ingestion(warehouse, CONFIG, batch_size=2, clock=lambda: c2).run_files(second, max_batches=1, refresh=False)
    latest = warehouse.manifests()[-1]
    # Just after the first run: both first files delivered now; the survey's 02-20 is ignored
    # (the minimum over every partition, as before, would have been 2026-02-20 09:00).
    assert finality(warehouse.manifests()[0], SETTINGS, C1).watermark == at("2026-03-01T10:00:00Z")
    # 30 min after the second: the first file (read to its end, idle 2.5 h) is released; the
    # second delivered 30 min ago and is not read to its end: it holds at 11:10.
    assert finality(latest, latest.settings, c2 + 30 * timedelta(minutes=1)) == Finality(
        at("2026-03-01T11:10:00Z"), at("2026-03-01T11:10:00Z") - LATENESS
    )
    # Hours later it still holds: idle, but there is more of it to read.
    assert finality(latest, latest.settings, c2 + 5 * HOUR).watermark == at("2026-03-01T11:10:00Z")
    later = {r.source: r for r in partition_times(latest, latest.settings, c2 + 5 * HOUR)}
    lagging = later[str((second / "touchpoints.jsonl").resolve())]
    assert (lagging.delivered_at, lagging.read_to_end, lagging.idle, lagging.holds_back) == (c2, False, True, True)
    with warehouse.lock():
        Ingestion(warehouse, CONFIG, clock=lambda: c3).run_files(second, refresh=False)
    latest = warehouse.manifests()[-1]
    # Read to its end now, and delivering: it holds at its last event, 11:50.
    assert finality(latest, latest.settings, c3).watermark == at("2026-03-01T11:50:00Z")
    # Everything idle and read to its end: the latest touchpoint time, 11:50 (the first file's
    # 10:00 and the survey's 02-20 are older).
    assert finality(latest, latest.settings, c3 + 2 * HOUR).watermark == at("2026-03-01T11:50:00Z")

    # The refresh records the finality point at its wall clock, carries the delivery forward,
    # and the views say the same at that commit's wall clock.
    with warehouse.lock():
        catch_up(warehouse, now=c3 + 30 * timedelta(minutes=1))
    refresh = warehouse.manifests()[-1]
    assert refresh.delivery == latest.delivery
    point = at("2026-03-01T11:50:00Z") - LATENESS
    states = warehouse.derived_state()
    assert {states[d.name].as_of for d in declarations()} == {iso(point)}
    db = warehouse.db_path
    assert query(db, "select distinct as_of from parcours_datasets") == [(point,)]
    assert query(db, "select watermark, finality_point, evaluated_at from parcours_finality") == [
        (at("2026-03-01T11:50:00Z"), point, c3 + 30 * timedelta(minutes=1))
    ]
    rows = query(
        db,
        "select source_kind, source, source_partition, latest_event_at, last_delivered_at, is_read_to_end, "
        "is_idle, is_holding_back from parcours_watermark order by source_kind, source",
    )
    assert rows == [
        ("surveys", str((first / "surveys.jsonl").resolve()), -1, at("2026-02-20T09:00:00Z"), C1, True, True, False),
        (
            "touchpoints",
            str((first / "touchpoints.jsonl").resolve()),
            -1,
            at("2026-03-01T10:00:00Z"),
            C1,
            True,
            True,  # 2 h 40 min since it delivered
            False,
        ),
        (
            "touchpoints",
            str((second / "touchpoints.jsonl").resolve()),
            -1,
            at("2026-03-01T11:50:00Z"),
            c3,
            True,
            False,  # 30 min since it delivered
            True,
        ),
    ]
    old_python = os.environ.get("PARCOURS_DUCKDB1_PYTHON")  # BI tools embedding DuckDB 1.x read them too
    if old_python:
        script = str(Path(__file__).with_name("duckdb1_check.py"))
        for view, expected in (("parcours_watermark", 3), ("parcours_finality", 1)):
            checked = subprocess.run(
                [old_python, script, str(db), view, str(expected)], capture_output=True, text=True, timeout=120
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr


# -- a real broker ------------------------------------------------------------------------------------


@pytest.mark.kafka
def test_kafka_an_idle_partition_releases_a_lagging_one_holds_and_a_quiet_survey_topic_never(kafka_settings, tmp_path):
    from parcours.kafka import make_producer

    touchpoints, surveys = kafka_settings.topics["touchpoints"], kafka_settings.topics["surveys"]
    producer = make_producer(kafka_settings)

    def send(topic: str, partition: int, record: dict) -> None:
        producer.send(topic, key=record["customer_id"].encode(), value=json.dumps(record).encode(), partition=partition)

    # Partition 0: customer a, 08:00..10:00. Partition 1: customer b, 11:00 and 12:00. The survey
    # topic: one answer of 02-20, and nothing after (a quiet topic).
    for h in (8, 9, 10):
        send(touchpoints, 0, event("a", f"2026-03-01T{h:02d}:00:00Z"))
    for h in (11, 12):
        send(touchpoints, 1, event("b", f"2026-03-01T{h:02d}:00:00Z"))
    send(surveys, 0, answer("a", "2026-02-20T09:00:00Z"))
    producer.flush()
    warehouse = Warehouse(tmp_path / "w")
    c2 = C1 + 2 * HOUR
    with warehouse.lock():
        Ingestion(warehouse, CONFIG, clock=lambda: C1).run_kafka(kafka_settings, refresh=False)
    first = warehouse.manifests()[-1]
    assert first.delivery[touchpoints][0] == Delivery("touchpoints", iso(C1), True)
    assert first.delivery[touchpoints][2] == Delivery("touchpoints", None, True)  # empty: never delivered
    assert first.delivery[surveys][0] == Delivery("surveys", iso(C1), True)
    # Both touchpoint partitions delivered just now: the minimum of 10:00 and 12:00; the survey's
    # 02-20 (which the minimum over every partition would have given) is reported only.
    assert finality(first, first.settings, C1 + 30 * timedelta(minutes=1)).watermark == at("2026-03-01T10:00:00Z")

    # Partition 1 gets 30 more events, 12:01..12:30; the second run (2 h later) reads 10 of them.
    for m in range(1, 31):
        send(touchpoints, 1, event("b", f"2026-03-01T12:{m:02d}:00Z"))
    producer.flush()
    producer.close()
    with warehouse.lock():
        Ingestion(warehouse, CONFIG, batch_size=10, clock=lambda: c2).run_kafka(
            kafka_settings, max_batches=1, refresh=False
        )
    second = warehouse.manifests()[-1]
    assert second.delivery[touchpoints][0] == Delivery("touchpoints", iso(C1), True)  # kept: nothing new
    assert second.delivery[touchpoints][1] == Delivery("touchpoints", iso(c2), False)  # 20 left to read
    # 30 min after: partition 0 is idle (2.5 h) and read to its end, released; partition 1
    # delivered 30 min ago and lags: it holds at the 10th new event, 12:10; the quiet survey
    # topic (idle, 02-20) never holds.
    thirty = c2 + 30 * timedelta(minutes=1)
    assert finality(second, second.settings, thirty) == Finality(
        at("2026-03-01T12:10:00Z"), at("2026-03-01T12:10:00Z") - LATENESS
    )
    rows = {
        (r.kind, r.partition): (r.idle, r.read_to_end, r.holds_back) for r in partition_times(second, SETTINGS, thirty)
    }
    assert rows == {
        ("surveys", 0): (True, True, False),
        ("touchpoints", 0): (True, True, False),
        ("touchpoints", 1): (False, False, True),
        ("touchpoints", 2): (None, True, False),  # no event: nothing to hold back at
        ("touchpoints", 3): (None, True, False),
    } | {("surveys", p): (None, True, False) for p in (1, 2, 3)}

    # The refresh at that wall clock: as_of is the finality point, in the manifest and the views.
    with warehouse.lock():
        catch_up(warehouse, now=thirty)
    point = at("2026-03-01T12:10:00Z") - LATENESS
    assert {state.as_of for state in warehouse.manifests()[-1].derived.values()} == {iso(point)}
    assert query(
        warehouse.db_path,
        "select source_partition, latest_event_at, is_holding_back from parcours_watermark "
        "where source_kind = 'touchpoints' and latest_event_at is not null order by 1",
    ) == [(0, at("2026-03-01T10:00:00Z"), False), (1, at("2026-03-01T12:10:00Z"), True)]
    assert query(warehouse.db_path, "select watermark, finality_point, evaluated_at from parcours_finality") == [
        (at("2026-03-01T12:10:00Z"), point, thirty)
    ]
