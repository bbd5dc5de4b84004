"""The pipeline against the real local broker: exactly once, in any number of runs, through crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import TopicPartition

from parcours.config import load_config
from parcours.kafka import KafkaSettings, make_admin, make_consumer
from parcours.kafka.produce import produce_dir
from parcours.pipelines.run import CONSUMER_GROUP, Ingestion
from parcours.pipelines.sources import OffsetOutOfRetention, plan_offset_ranges
from parcours.warehouse import Warehouse
from tests.pipeline_helpers import csat_answers, make_events, query, reference_sessions, view_sessions, write_jsonl

pytestmark = pytest.mark.kafka
CONFIG = load_config()
BAD_LINES = [
    "{oops",
    '{"schema_version": 1, "event_id": "bad-channel", "customer_id": "cust-0001", '
    '"occurred_at": "2026-02-02T09:00:00+01:00", "channel": "pigeon", "touchpoint": "home_page"}',
]


@pytest.fixture
def produced(kafka_settings: KafkaSettings, tmp_path: Path) -> tuple[KafkaSettings, list[dict]]:
    events = make_events(customers=60, per_customer=20, seed=3)
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", [*events, *BAD_LINES, events[7]])  # + a re-send
    write_jsonl(
        tmp_path / "data" / "surveys.jsonl",
        csat_answers(events[:100]),
    )
    summary = produce_dir(tmp_path / "data", kafka_settings)
    assert summary.total == 1200 + 3 + 100
    return kafka_settings, events


def run(settings: KafkaSettings, root: Path, **kwargs) -> list:
    warehouse = Warehouse(root)
    batch_size = kwargs.pop("batch_size", None)
    workers = kwargs.pop("workers", 1)
    with warehouse.lock():
        return (
            Ingestion(warehouse, CONFIG, batch_size=batch_size, workers=workers).run_kafka(settings, **kwargs).batches
        )


def cli_env(settings: KafkaSettings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PARCOURS_KAFKA_BOOTSTRAP": settings.bootstrap,
        "PARCOURS_TOPIC_PREFIX": settings.topic_prefix,
        **extra,
    }


def parcours_run(settings: KafkaSettings, root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parcours.cli", "run", "--warehouse", str(root), *args],
        capture_output=True,
        text=True,
        env=cli_env(settings, **env),
        timeout=600,
    )


def committed_offsets(settings: KafkaSettings) -> dict[tuple[str, int], int]:
    consumer = make_consumer(settings, group_id=CONSUMER_GROUP)
    try:
        partitions = [TopicPartition(settings.topics[k], p) for k in ("touchpoints", "surveys") for p in range(4)]
        return {(tp.topic, tp.partition): consumer.committed(tp) for tp in partitions}
    finally:
        consumer.close()


def manifest_offsets(root: Path) -> dict[tuple[str, int], int]:
    return {(t, p): o for t, parts in Warehouse(root).offsets().items() for p, o in parts.items()}


def test_two_runs_land_every_valid_event_exactly_once_with_the_sessions_of_one_run(produced, tmp_path):
    settings, events = produced
    first = run(settings, tmp_path / "w", batch_size=700, max_batches=1)
    second = run(settings, tmp_path / "w", batch_size=700)
    assert len(first) == 1 and len(second) == 1
    db = tmp_path / "w" / "parcours.duckdb"
    assert query(db, "select count(*), count(distinct event_id) from touchpoints") == [(1200, 1200)]
    assert query(db, "select count(*) from survey_answers") == [(100,)]
    assert view_sessions(db) == reference_sessions(events, CONFIG.sessions.inactivity_gap, CONFIG.sessions.max_duration)
    assert sorted(query(db, "select reason, record_id from dead_letters")) == [
        ("malformed_json", None),
        ("unknown_enum_value", "bad-channel"),
    ]
    batches = first + second
    assert sum(b.total_consumed for b in batches) == 1303
    assert sum(sum(b.duplicates_skipped.values()) for b in batches) == 1
    # Kafka's committed offsets mirror the manifest, and sit at the end of every partition.
    assert committed_offsets(settings) == manifest_offsets(tmp_path / "w")
    # A single run into another warehouse, with two worker processes over disjoint partitions,
    # gives the very same journeys.
    parallel = run(settings, tmp_path / "single", workers=2)
    assert len(parallel) == 2 and sorted(b.seq for b in parallel) == [1, 2]
    assert committed_offsets(settings) == manifest_offsets(tmp_path / "single")
    columns = "event_id, session_id, journey_cycle, step_index, stage"
    assert query(db, f"select {columns} from touchpoints order by 1") == query(
        tmp_path / "single" / "parcours.duckdb", f"select {columns} from touchpoints order by 1"
    )
    # The dead letters are also on their topic.
    consumer = make_consumer(settings)
    try:
        topic = settings.topics["dead_letters"]
        consumer.assign([TopicPartition(topic, p) for p in range(4)])
        messages = []
        for _ in range(20):
            for records in consumer.poll(timeout_ms=500).values():
                messages += [json.loads(r.value) for r in records]
            if len(messages) >= 4:
                break
    finally:
        consumer.close()
    # two warehouses read the same topics, so each dead letter was sent twice (at least once each)
    assert sorted(m["reason"] for m in messages) == ["malformed_json"] * 2 + ["unknown_enum_value"] * 2


def test_crash_before_the_manifest_commit_then_rerun(produced, tmp_path):
    settings, _ = produced
    root = tmp_path / "w"
    crashed = parcours_run(settings, root, PARCOURS_CRASH_AT="before_manifest")
    assert crashed.returncode == 137, crashed.stderr
    warehouse = Warehouse(root)
    assert warehouse.manifests() == [] and warehouse.orphans()  # files landed, nothing published
    assert all(v is None for v in committed_offsets(settings).values())
    again = parcours_run(settings, root)
    assert again.returncode == 0, again.stderr
    db = root / "parcours.duckdb"
    assert query(db, "select count(*), count(distinct event_id) from touchpoints") == [(1200, 1200)]
    assert query(db, "select count(*) from dead_letters") == [(2,)]
    assert Warehouse(root).orphans() == []
    assert committed_offsets(settings) == manifest_offsets(root)


def test_crash_after_the_manifest_commit_before_the_kafka_commit_then_rerun(produced, tmp_path):
    settings, _ = produced
    root = tmp_path / "w"
    crashed = parcours_run(settings, root, PARCOURS_CRASH_AT="before_kafka_commit")
    assert crashed.returncode == 137, crashed.stderr
    assert [m.seq for m in Warehouse(root).manifests()] == [1]
    assert all(v is None for v in committed_offsets(settings).values())  # Kafka lags the manifest
    again = parcours_run(settings, root)
    assert again.returncode == 0, again.stderr
    assert "nothing new to land" in again.stderr
    # The manifest, not Kafka, said where to resume; the marts refresh the crash skipped came now.
    manifests = Warehouse(root).manifests()
    assert [m.seq for m in manifests] == [1, 2] and manifests[1].counts["refreshed_batches"] == 1
    assert "marts 2: sessions and journeys of 60 customers refreshed for 1 batch" in again.stderr
    db = root / "parcours.duckdb"
    assert query(db, "select count(*), count(distinct event_id) from touchpoints") == [(1200, 1200)]


def test_a_second_run_while_one_holds_the_warehouse_exits_at_once(produced, tmp_path):
    settings, _ = produced
    warehouse = Warehouse(tmp_path / "w")
    with warehouse.lock():
        busy = parcours_run(settings, tmp_path / "w")
    assert busy.returncode == 2
    assert f"pid {os.getpid()}" in busy.stderr and "let that run finish" in busy.stderr


def test_offsets_lost_to_retention_are_an_error_not_a_skip(produced, tmp_path):
    settings, _ = produced
    run(settings, tmp_path / "w", batch_size=200, max_batches=1)
    stored = Warehouse(tmp_path / "w").offsets()[settings.topics["touchpoints"]]
    partition, offset = next(iter(sorted(stored.items())))
    admin = make_admin(settings)
    try:
        admin.delete_records({TopicPartition(settings.topics["touchpoints"], partition): offset + 5})
    finally:
        admin.close()
    with pytest.raises(OffsetOutOfRetention, match=rf"\[{partition}\]: offsets {offset}\.\.{offset + 4}"):
        run(settings, tmp_path / "w")
    result = parcours_run(settings, tmp_path / "w")
    assert result.returncode == 2 and "retention" in result.stderr


def test_plan_shares_the_batch_across_partitions_and_never_skips():
    end = {("t", 0): 100, ("t", 1): 10, ("t", 2): 50}
    beginning = {("t", 0): 0, ("t", 1): 0, ("t", 2): 0}
    ranges = plan_offset_ranges({"t": "touchpoints"}, {"t": {2: 50}}, beginning, end, batch_size=60)
    # 60 messages: partition 1 has 10, the rest goes to partition 0; partition 2 is caught up.
    assert [(r.partition, r.start, r.end) for r in ranges] == [(0, 0, 50), (1, 0, 10)]
    with pytest.raises(OffsetOutOfRetention):
        plan_offset_ranges({"t": "touchpoints"}, {"t": {0: 3}}, {**beginning, ("t", 0): 4}, end, batch_size=10)


def test_a_message_not_keyed_by_its_customer_is_a_dead_letter_unless_the_topic_says_so(kafka_settings, tmp_path):
    """Partitions are shards of whole customers only if every message is keyed by its customer."""
    from parcours.kafka import make_producer
    from parcours.pipelines.run import WorkersNeedKeyedTopics

    events = make_events(customers=4, per_customer=5, seed=9)
    wrong, unkeyed, keyed = events[-1], events[-2], events[:-2]
    topic = kafka_settings.topics["touchpoints"]
    producer = make_producer(kafka_settings)
    for event in keyed:
        producer.send(topic, key=event["customer_id"].encode(), value=json.dumps(event).encode())
    producer.send(topic, key=b"someone-else", value=json.dumps(wrong).encode())
    producer.send(topic, key=None, value=json.dumps(unkeyed).encode())
    producer.flush()
    producer.close()

    [batch] = run(kafka_settings, tmp_path / "keyed")
    assert batch.landed == {"touchpoints": 18} and batch.dead_lettered == {"touchpoints": 2}
    dead = query(
        tmp_path / "keyed" / "parcours.duckdb", "select record_id, reason from dead_letters order by record_id"
    )
    assert dead == sorted([(wrong["event_id"], "key_not_customer_id"), (unkeyed["event_id"], "key_not_customer_id")])

    # The same topic read as one not keyed by customer: rows are regrouped, every event lands.
    loose = CONFIG.model_copy(update={"ingest": CONFIG.ingest.model_copy(update={"keyed_by_customer": False})})
    warehouse = Warehouse(tmp_path / "loose")
    with warehouse.lock():
        with pytest.raises(WorkersNeedKeyedTopics):
            Ingestion(warehouse, loose, workers=2).run_kafka(kafka_settings)
        [batch] = Ingestion(warehouse, loose).run_kafka(kafka_settings).batches
    assert batch.landed == {"touchpoints": 20} and not batch.dead_lettered
    assert query(
        tmp_path / "loose" / "parcours.duckdb", "select count(*), count(distinct event_id) from touchpoints"
    ) == [(20, 20)]
