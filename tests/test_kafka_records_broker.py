"""Whole record batches on the real broker: the same messages as kafka-python's own consumer.

kafka-python's per-record path is the independent reference: for every codec, reads that
start inside a batch, keys and null values, and transactions (commit markers are control
batches that hold offsets but no message; aborted messages are skipped under read_committed).
"""

from __future__ import annotations

import uuid

import pytest
from kafka import TopicPartition

from parcours.kafka import KafkaSettings, make_admin, make_consumer, make_producer
from parcours.kafka.records import RecordChunk, enable_batch_unpacking

pytestmark = pytest.mark.kafka


@pytest.fixture
def topic(kafka_broker: KafkaSettings):
    name = f"records-{uuid.uuid4().hex[:8]}"
    admin = make_admin(kafka_broker)
    try:
        admin.create_topics({name: {"num_partitions": 2, "replication_factor": -1}})
        yield name
        admin.delete_topics([name])
    finally:
        admin.close()


def read_all(settings: KafkaSettings, topic: str, start: int, chunks: bool, **config) -> list[tuple]:
    """(partition, offset, key, value) of every message from `start` to the end, in order."""
    consumer = make_consumer(settings, **config)
    try:
        if chunks:
            assert enable_batch_unpacking(consumer)
        partitions = [TopicPartition(topic, p) for p in (0, 1)]
        end = consumer.end_offsets(partitions)
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, min(start, end[tp]))
        seen: list[tuple] = []
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for tp, items in consumer.poll(timeout_ms=1000).items():
                for item in items:
                    if isinstance(item, RecordChunk):
                        offsets = item.offsets.tolist()
                        seen += [
                            (tp.partition, o, k, v) for o, k, v in zip(offsets, item.keys, item.values, strict=True)
                        ]
                    else:
                        seen.append((tp.partition, item.offset, item.key, item.value))
        return sorted(seen)
    finally:
        consumer.close()


@pytest.mark.parametrize("codec", [None, "gzip", "zstd"])
def test_chunks_hold_the_messages_kafka_python_reads(kafka_broker, topic, codec):
    producer = make_producer(kafka_broker, compression_type=codec, batch_size=16 * 1024)
    for i in range(3000):
        value = None if i % 97 == 0 else f'{{"n": {i}, "pad": "{"é" * (i % 50)}"}}'.encode()
        key = None if i % 11 == 1 and value is not None else f"customer-{i % 7}".encode()
        producer.send(topic, key=key, value=value, partition=i % 2)
    producer.flush()
    producer.close()
    expected = read_all(kafka_broker, topic, 0, chunks=False)
    assert len(expected) == 3000
    assert read_all(kafka_broker, topic, 0, chunks=True) == expected
    # A read that starts inside a record batch keeps only the messages from that offset on.
    middle = read_all(kafka_broker, topic, 777, chunks=True)
    assert middle == [m for m in expected if m[1] >= 777]
    assert middle and min(m[1] for m in middle) == 777


def test_transaction_markers_and_aborted_messages(kafka_broker, topic):
    producer = make_producer(kafka_broker, transactional_id=f"records-{uuid.uuid4().hex[:6]}")
    producer.init_transactions()
    for round_ in range(4):
        producer.begin_transaction()
        for i in range(50):
            producer.send(topic, key=b"k", value=f"{round_}-{i}".encode(), partition=i % 2)
        producer.flush()
        if round_ == 2:
            producer.abort_transaction()
        else:
            producer.commit_transaction()
    producer.close()
    for isolation in ("read_uncommitted", "read_committed"):
        expected = read_all(kafka_broker, topic, 0, chunks=False, isolation_level=isolation)
        assert read_all(kafka_broker, topic, 0, chunks=True, isolation_level=isolation) == expected
        values = {m[3] for m in expected}
        assert len(values) == (200 if isolation == "read_uncommitted" else 150)
        assert (b"2-0" in values) is (isolation == "read_uncommitted")
    # Commit markers take offsets: the offsets have gaps, and the reader crossed them.
    offsets = [m[1] for m in expected if m[0] == 0]
    assert offsets[-1] - offsets[0] + 1 > len(offsets)
