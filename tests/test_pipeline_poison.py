"""No message can halt ingestion: the reproductions of the records that once stopped every run.

A record that parcours cannot use becomes a dead letter and the run goes on; the dead-letter
topic never blocks a batch; the counts say what happened (landed rows are the rows written).
Kafka findings run on the real broker (tests/conftest.py).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from parcours.config import load_config
from parcours.kafka import KafkaSettings, ensure_topics, make_admin, make_consumer, make_producer
from parcours.pipelines.run import CountsDoNotAddUp, Ingestion, TooManyInternalErrors
from parcours.warehouse import Manifest, Warehouse
from tests.pipeline_helpers import csat_answers, make_events, query, write_jsonl

CONFIG = load_config()
NESTED = b"[" * 10000 + b"]" * 10000  # the reproduction


def run_kafka(settings: KafkaSettings, root: Path, **kwargs) -> list:
    warehouse = Warehouse(root)
    with warehouse.lock():
        return Ingestion(warehouse, CONFIG, **kwargs).run_kafka(settings).batches


def run_files(data: Path, root: Path) -> list:
    warehouse = Warehouse(root)
    with warehouse.lock():
        return Ingestion(warehouse, CONFIG).run_files(data).batches


def send(settings: KafkaSettings, kind: str, messages: list[tuple[str | None, bytes]], **producer_config) -> None:
    producer = make_producer(settings, **producer_config)
    try:
        for key, value in messages:
            producer.send(settings.topics[kind], key=key.encode() if key else None, value=value).get(timeout=60)
    finally:
        producer.close()


def topic_messages(settings: KafkaSettings, expected: int) -> list:
    """The dead-letter topic's records, read until `expected` are in (or the reader gives up)."""
    consumer = make_consumer(settings)
    try:
        topic = settings.topics["dead_letters"]
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        records = []
        for _ in range(40):
            for batch in consumer.poll(timeout_ms=500).values():
                records += batch
            if len(records) >= expected:
                break
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def manifests(root: Path) -> list[Manifest]:
    return list(Warehouse(root).manifests())


def touchpoint_with(customer: str, event_id: str, **fields) -> dict:
    return {
        "schema_version": 1,
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": "2026-02-02T09:00:00+01:00",
        "channel": "web",
        "touchpoint": "home_page",
        **fields,
    }


# -- finding 1: JSON nested too deeply ------------------------------------------------------------


@pytest.mark.kafka
def test_json_nested_too_deeply_on_either_topic_is_a_dead_letter_and_runs_go_on(kafka_settings, tmp_path):
    events = make_events(customers=6, per_customer=5, seed=4)
    deep_900 = touchpoint_with("cust-0001", "deep-900")
    deep_900_payload = json.dumps(deep_900)[:-1].encode() + b', "properties": {"d": ' + b"[" * 900 + b"]" * 900 + b"}}"
    in_properties = json.dumps(touchpoint_with("cust-0002", "deep-10000"))[:-1].encode()
    in_properties += b', "properties": {"d": ' + NESTED + b"}}"
    send(
        kafka_settings,
        "touchpoints",
        [(e["customer_id"], json.dumps(e).encode()) for e in events]
        + [("cust-0003", NESTED), ("cust-0002", in_properties), ("cust-0001", deep_900_payload)],
    )
    send(kafka_settings, "surveys", [(a["customer_id"], json.dumps(a).encode()) for a in csat_answers(events[:4])])
    send(kafka_settings, "surveys", [("cust-0004", NESTED)])
    [batch] = run_kafka(kafka_settings, tmp_path / "w")
    assert batch.landed == {"touchpoints": 31, "surveys": 4}
    assert batch.dead_lettered == {"touchpoints": 2, "surveys": 1}
    db = tmp_path / "w" / "parcours.duckdb"
    assert sorted(query(db, "select source, reason, record_id from dead_letters")) == sorted(
        [
            (kafka_settings.topics["touchpoints"], "too_deeply_nested", None),
            (kafka_settings.topics["touchpoints"], "too_deeply_nested", None),
            (kafka_settings.topics["surveys"], "too_deeply_nested", None),
        ]
    )
    assert query(db, "select count(*) from touchpoints where event_id = 'deep-900'") == [(1,)]
    assert run_kafka(kafka_settings, tmp_path / "w") == []  # the next run starts after them


# -- finding 2: the dead-letter topic never blocks ingestion -----------------------------------


def big_touchpoint(customer: str, event_id: str, size: int) -> bytes:
    """A touchpoint of `size` bytes: valid JSON, too large for ingest.max_payload_bytes."""
    head = json.dumps(touchpoint_with(customer, event_id))[:-1].encode() + b', "properties": {"blob": "'
    blob = base64.b64encode(os.urandom(size)).decode()[: size - len(head) - 3].encode()
    return head + blob + b'"}}'


def check_bounded_mirror(settings: KafkaSettings, root: Path, sent: dict[str, bytes], limit: int) -> None:
    """Each dead letter on the topic is at most `limit` bytes, names its Parquet row, and that
    row holds the whole payload."""
    records = topic_messages(settings, len(sent))
    assert len(records) == len(sent)
    for record in records:
        assert len(record.value) + len(record.key or b"") <= limit
        message = json.loads(record.value)
        assert set(message) == {
            "reason", "detail", "source", "partition", "offset", "record_id", "customer_id",
            "batch_seq", "ingested_at", "payload", "payload_bytes", "payload_truncated", "parquet",
        }  # fmt: skip
        assert message["reason"] == "payload_too_large" and message["payload_truncated"] is True
        [whole] = [p for p in sent.values() if p.startswith(message["payload"].encode())]
        assert message["payload_bytes"] == len(whole) and record.key is None  # too large: read unparsed
        row = pq.read_table(root / message["parquet"]["path"]).slice(message["parquet"]["row"], 1).to_pylist()[0]
        assert row["payload"] == whole and (row["partition"], row["offset"]) == (
            message["partition"],
            message["offset"],
        )


@pytest.mark.kafka
def test_a_payload_of_600_kb_judged_too_large_is_a_bounded_dead_letter(kafka_settings, tmp_path):
    sent = {"cust-0001": big_touchpoint("cust-0001", "big", 600_000)}
    send(
        kafka_settings,
        "touchpoints",
        [*sent.items(), ("cust-0002", json.dumps(touchpoint_with("cust-0002", "ok")).encode())],
    )
    [batch] = run_kafka(kafka_settings, tmp_path / "w")
    assert (batch.landed, batch.dead_lettered) == ({"touchpoints": 1}, {"touchpoints": 1})
    check_bounded_mirror(kafka_settings, tmp_path / "w", sent, 64 * 1024)
    assert manifests(tmp_path / "w")[0].outbox == ()  # every dead letter was delivered


@pytest.mark.kafka
def test_a_5_mb_payload_on_a_topic_allowing_8_mb_is_a_bounded_dead_letter(kafka_settings_without_topics, tmp_path):
    settings = kafka_settings_without_topics
    admin = make_admin(settings)
    try:
        config = {"max.message.bytes": str(8 * 1024 * 1024)}
        admin.create_topics([NewTopic(settings.topics["touchpoints"], 4, 1, topic_configs=config)])
    finally:
        admin.close()
    ensure_topics(settings)
    sent = {"cust-0001": big_touchpoint("cust-0001", "huge", 5_000_000)}
    send(settings, "touchpoints", list(sent.items()), max_request_size=8 * 1024 * 1024)
    [batch] = run_kafka(settings, tmp_path / "w")
    assert batch.dead_lettered == {"touchpoints": 1}
    check_bounded_mirror(settings, tmp_path / "w", sent, 64 * 1024)


def records_partition(records: list, key: str) -> int:
    return next(r.partition for r in records if r.key.decode() == key)


def _set_max_message_bytes(settings: KafkaSettings, value: int) -> None:
    admin = make_admin(settings)
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC, settings.topics["dead_letters"], {"max.message.bytes": str(value)}
        )
        admin.alter_configs([resource])
    finally:
        admin.close()


@pytest.mark.kafka
def test_dead_letters_the_topic_refuses_wait_in_the_outbox_and_go_out_in_order_with_their_keys(
    kafka_settings, tmp_path
):
    """The broker refuses the records (the topic's `max.message.bytes` is below them): the batch
    is published all the same, and the next run sends them once the topic takes them."""
    _set_max_message_bytes(kafka_settings, 1024)
    blob = {"blob": base64.b64encode(os.urandom(3000)).decode()}  # incompressible: ~4 kB records
    bad = [
        (f"cust-000{i}", json.dumps(touchpoint_with(f"cust-000{i}", f"e{i}", channel="fax", properties=blob)).encode())
        for i in range(3)
    ]
    send(kafka_settings, "touchpoints", [*bad, ("cust-0009", json.dumps(touchpoint_with("cust-0009", "ok")).encode())])
    [batch] = run_kafka(kafka_settings, tmp_path / "w")
    assert (batch.landed, batch.dead_lettered) == ({"touchpoints": 1}, {"touchpoints": 3})
    first = manifests(tmp_path / "w")[0]  # then the marts refresh
    assert sorted(entry.key for entry in first.outbox) == ["cust-0000", "cust-0001", "cust-0002"]
    assert first.counts["dead_letters_unsent"] == 3
    assert query(tmp_path / "w" / "parcours.duckdb", "select count(*) from dead_letters") == [(3,)]

    _set_max_message_bytes(kafka_settings, 1024 * 1024)
    assert run_kafka(kafka_settings, tmp_path / "w") == []  # no new record: the outbox alone
    latest = manifests(tmp_path / "w")[-1]
    assert latest.outbox == () and latest.counts["dead_letters_resent"] == 3
    assert Warehouse(tmp_path / "w").outbox() == ()
    records = topic_messages(kafka_settings, 3)
    # the very records of the outbox, key and value, each partition's in the outbox's order
    assert [(r.key.decode(), r.value.decode()) for r in records] == sorted(
        [(e.key, e.value) for e in first.outbox], key=lambda kv: records_partition(records, kv[0])
    )
    assert [json.loads(r.value)["reason"] for r in records] == ["unknown_enum_value"] * 3
    run_kafka(kafka_settings, tmp_path / "w")
    assert len(topic_messages(kafka_settings, 4)) == 3  # sent once: the outbox was cleared


def test_a_manifest_without_an_outbox_still_reads_and_leaves_the_outbox_as_it_was(tmp_path):
    """Manifests written before the field existed decode; None means 'unchanged'."""
    old = json.dumps(
        {
            "seq": 1, "created_at": "2026-01-01T00:00:00+00:00", "config_version": 1, "config_fingerprint": "x",
            "files": [], "offsets": {}, "watermarks": {}, "counts": {},
        }
    ).encode()  # fmt: skip
    assert Manifest.from_json(old).outbox is None


# -- finding 1 (cap) and 5, 6: counts from what happened ----------------------------------------


def test_an_unexpected_error_on_one_record_is_a_dead_letter_and_many_stop_the_batch(tmp_path, monkeypatch):
    from parcours.schemas import contracts

    check = contracts._check_survey

    def breaks_on_boom(answer):
        if answer.question_id == "boom":
            raise LookupError("a bug")
        return check(answer)

    monkeypatch.setattr(contracts, "_check_survey", breaks_on_boom)
    events = make_events(customers=10, per_customer=20, seed=2)
    answers = csat_answers(events)
    answers[5]["question_id"] = "boom"
    write_jsonl(tmp_path / "one" / "surveys.jsonl", answers)
    [batch] = run_files(tmp_path / "one", tmp_path / "w1")
    assert (batch.landed, batch.dead_lettered, batch.internal_errors) == ({"surveys": 199}, {"surveys": 1}, 1)
    [(reason, detail)] = query(tmp_path / "w1" / "parcours.duckdb", "select reason, detail from dead_letters")
    assert reason == "internal_error" and detail.startswith("LookupError: a bug")

    for answer in answers[:100]:  # 100 of 200 records: a bug, not bad data
        answer["question_id"] = "boom"
    write_jsonl(tmp_path / "many" / "surveys.jsonl", answers)
    with pytest.raises(TooManyInternalErrors, match=r"100 of 200 records .* internal_error"):
        run_files(tmp_path / "many", tmp_path / "w2")
    assert manifests(tmp_path / "w2") == []  # nothing of the batch was published


def test_landed_is_counted_from_the_rows_written(tmp_path, monkeypatch):
    """A writer that lost rows makes the numbers not add up: the batch is not published."""
    from parcours.warehouse import Warehouse as WarehouseClass

    write = WarehouseClass.write_parquet

    def loses_a_row(self, dataset, table, seq, part):
        return write(self, dataset, table.slice(1) if dataset == "touchpoints" else table, seq, part)

    monkeypatch.setattr(WarehouseClass, "write_parquet", loses_a_row)
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", make_events(customers=3, per_customer=4, seed=1))
    with pytest.raises(CountsDoNotAddUp, match="consumed 12 != landed 11"):
        run_files(tmp_path / "data", tmp_path / "w")
    assert manifests(tmp_path / "w") == []


def test_a_segment_or_product_line_spelt_as_a_reserved_name_is_dead_lettered(tmp_path):
    rows = [
        touchpoint_with("c1", "seg-all", segment="all"),
        touchpoint_with("c1", "line-end", product_line="(end)"),
        touchpoint_with("c1", "both", segment="unknown", product_line="(other)"),  # one letter, the first field
        touchpoint_with("c2", "seg-All", segment="All"),  # exact comparison: a segment of its own
        touchpoint_with("c2", "seg-allx", segment="allx"),
        touchpoint_with("c2", "none"),
    ]
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", rows)
    [batch] = run_files(tmp_path / "data", tmp_path / "w")
    assert (batch.consumed, batch.landed, batch.dead_lettered) == (
        {"touchpoints": 6},
        {"touchpoints": 3},
        {"touchpoints": 3},
    )
    db = tmp_path / "w" / "parcours.duckdb"
    reserved = "all, unknown, unattached, (start), (end), (ended), (other)"
    assert sorted(query(db, "select record_id, reason, detail from dead_letters")) == [
        ("both", "reserved_value", f"segment 'unknown' is a name the views reserve ({reserved}) - at `$.segment`"),
        (
            "line-end",
            "reserved_value",
            f"product_line '(end)' is a name the views reserve ({reserved}) - at `$.product_line`",
        ),
        ("seg-all", "reserved_value", f"segment 'all' is a name the views reserve ({reserved}) - at `$.segment`"),
    ]
    assert sorted(query(db, "select event_id, segment from touchpoints")) == [
        ("none", None),
        ("seg-All", "All"),
        ("seg-allx", "allx"),
    ]


def test_unknown_stages_unmapped_touchpoints_and_blank_lines_are_counted(tmp_path):
    rows = [
        touchpoint_with("c1", "mapped"),  # home_page -> consideration
        touchpoint_with("c1", "own-stage", stage="purchase"),
        touchpoint_with("c1", "unmapped-1", touchpoint="kiosk"),
        touchpoint_with("c2", "unmapped-2", touchpoint="kiosk"),
        "",
        "   ",
        touchpoint_with("c2", "not-a-stage", stage="checkout_done"),
        touchpoint_with("c2", "sent-unmapped", stage="unmapped"),
        "",
    ]
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", rows)
    [batch] = run_files(tmp_path / "data", tmp_path / "w")
    assert (batch.consumed, batch.landed, batch.dead_lettered) == (
        {"touchpoints": 6},
        {"touchpoints": 4},
        {"touchpoints": 2},
    )
    assert (batch.unmapped, batch.blank_lines) == (2, 3)
    assert "2 unmapped touchpoints" in batch.describe() and "3 blank lines skipped" in batch.describe()
    db = tmp_path / "w" / "parcours.duckdb"
    listed = ", ".join(CONFIG.stages)
    assert sorted(query(db, "select record_id, reason, detail from dead_letters")) == [
        ("not-a-stage", "unknown_stage", f"stage 'checkout_done' is not a configured stage ({listed}) - at `$.stage`"),
        ("sent-unmapped", "unknown_stage", f"stage 'unmapped' is not a configured stage ({listed}) - at `$.stage`"),
    ]
    assert sorted(query(db, "select event_id, stage from touchpoints")) == [
        ("mapped", "consideration"),
        ("own-stage", "purchase"),
        ("unmapped-1", "unmapped"),
        ("unmapped-2", "unmapped"),
    ]
    counts = manifests(tmp_path / "w")[0].counts
    assert (counts["unmapped_touchpoints"], counts["blank_lines"], counts["consumed"]) == (2, 3, 6)
