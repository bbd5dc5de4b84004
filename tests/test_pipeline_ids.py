"""An id is one row whatever customer or partition carries it, on the real broker.

The reproductions of issue 9, finding 3: an event_id and a response_id reused by another
customer on another partition in one micro-batch, then a changed re-send of them in a later run.
Every message is sent to a chosen partition, keyed by its customer (the topic contract), so which
copy is first by (topic, partition, offset) and which lane of `--workers 2` reads it are known.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import xxhash

from parcours.config import load_config
from parcours.kafka import KafkaSettings, make_producer
from parcours.pipelines.run import Ingestion
from parcours.warehouse import Warehouse
from tests.pipeline_helpers import query

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
CONFIG = load_config()
# Lanes of --workers 2 take partitions by parity: a and c in one lane, b and d in the other.
PARTITION = {"cust-a": 0, "cust-b": 1, "cust-c": 2, "cust-d": 3}


def event(event_id: str, customer: str, minute: int, touchpoint: str = "home_page") -> dict:
    return {
        "schema_version": 1,
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": f"2026-02-02T08:{minute:02d}:00+00:00",
        "channel": "web",
        "touchpoint": touchpoint,
    }


def answer(response_id: str, customer: str, minute: int, score: int) -> dict:
    return {
        "schema_version": 1,
        "response_id": response_id,
        "customer_id": customer,
        "answered_at": f"2026-02-02T08:{minute:02d}:30+00:00",
        "survey": "csat",
        "question_id": "q",
        "score": score,
    }


class Topics:
    """Sends records to the partition of their customer and remembers each one's offset."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.offsets: dict[tuple[str, str, int], tuple[int, int]] = {}  # (kind, id, nth) -> (partition, offset)

    def send(self, kind: str, records: list[dict]) -> None:
        producer = make_producer(self.settings)
        id_field = "event_id" if kind == "touchpoints" else "response_id"
        try:
            for record in records:
                customer = record["customer_id"]
                metadata = producer.send(
                    self.settings.topics[kind],
                    key=customer.encode(),
                    value=json.dumps(record).encode(),
                    partition=PARTITION[customer],
                ).get(timeout=30)
                nth = sum(1 for key in self.offsets if key[:2] == (kind, record[id_field]))
                self.offsets[(kind, record[id_field], nth)] = (metadata.partition, metadata.offset)
        finally:
            producer.close()


def run(settings: KafkaSettings, root: Path, workers: int) -> list:
    warehouse = Warehouse(root)
    with warehouse.lock():
        return Ingestion(warehouse, CONFIG, workers=workers).run_kafka(settings).batches


def totals(batches: list) -> tuple[int, int, int, int]:
    return tuple(
        sum(sum(getattr(b, name).values()) for b in batches)
        for name in ("consumed", "landed", "dead_lettered", "duplicates_skipped")
    )


def conflicts(root: Path) -> list[tuple]:
    return query(
        root / "parcours.duckdb",
        "select record_id, customer_id, source_partition, detail from dead_letters "
        "where reason = 'duplicate_id_conflict' order by record_id, customer_id, batch_seq",
    )


def names(topics: Topics, kind: str, record_id: str, customer: str, nth: int = 0) -> str:
    """How a conflict's detail names the landed copy."""
    partition, offset = topics.offsets[(kind, record_id, nth)]
    return f"source {topics.settings.topics[kind]} partition {partition} offset {offset}, customer {customer}"


@pytest.mark.parametrize("workers", [1, 2])
def test_an_id_reused_across_customers_partitions_and_runs_lands_once(kafka_settings, tmp_path, workers):
    topics = Topics(kafka_settings)
    root = tmp_path / "w"
    # Run 1, one micro-batch per lane. "e-shared" is sent first under cust-b (partition 1), then
    # under cust-a (partition 0): the lowest (topic, partition, offset) is cust-a's, and with two
    # workers cust-a's lane (partitions 0, 2) is published first, so cust-a's copy lands either
    # way. "e-same-lane" is reused by cust-c (partition 2), in cust-a's lane.
    own = [event(f"e-{c}-{i}", c, 10 * i + n) for n, c in enumerate(PARTITION) for i in range(3)]
    topics.send(
        "touchpoints",
        [
            *own,
            event("e-shared", "cust-b", 40, "checkout"),
            event("e-shared", "cust-a", 41),
            event("e-same-lane", "cust-c", 42),
            event("e-same-lane", "cust-a", 43),
            own[0],  # an identical re-send: a duplicate, skipped
        ],
    )
    topics.send("surveys", [answer("r-shared", "cust-b", 44, 2), answer("r-shared", "cust-a", 45, 5)])
    first = run(kafka_settings, root, workers)
    db = root / "parcours.duckdb"
    assert query(db, "select count(*), count(distinct event_id) from touchpoints") == [(14, 14)]
    assert query(db, "select customer_id from touchpoints where event_id in ('e-shared', 'e-same-lane')") == [
        ("cust-a",),
        ("cust-a",),
    ]
    assert query(db, "select count(*), count(distinct response_id) from survey_answers") == [(1, 1)]
    # cust-a's latest touchpoint before the answer is "e-same-lane": the answer attaches to it only.
    assert query(db, "select customer_id, score, event_id from survey_answers") == [("cust-a", 5, "e-same-lane")]
    # consumed 17 + 2 = landed 14 + 1, dead-lettered 3, duplicates skipped 1
    assert totals(first) == (19, 15, 3, 1)
    across = "landed" if workers == 2 else "lands in this batch"  # lanes: cust-a's was published first
    assert conflicts(root) == [
        (
            "e-same-lane",
            "cust-c",
            2,
            "event_id 'e-same-lane' already lands in this batch with a different payload: "
            + names(topics, "touchpoints", "e-same-lane", "cust-a", 1),
        ),
        (
            "e-shared",
            "cust-b",
            1,
            f"event_id 'e-shared' already {across} with a different payload: "
            + names(topics, "touchpoints", "e-shared", "cust-a", 1),
        ),
        (
            "r-shared",
            "cust-b",
            1,
            f"response_id 'r-shared' already {across} with a different payload: "
            + names(topics, "surveys", "r-shared", "cust-a", 1),
        ),
    ]

    # Run 2: a changed re-send of each shared id, by its landed customer and by another one,
    # and an identical re-send of the landed copy: one dead letter per changed record, one skip.
    landed_shared = event("e-shared", "cust-a", 41)
    topics.send(
        "touchpoints",
        [
            event("e-shared", "cust-a", 41, "product_page"),
            event("e-shared", "cust-d", 46),
            landed_shared,
            event("e-new-d", "cust-d", 47),
        ],
    )
    topics.send("surveys", [answer("r-shared", "cust-a", 45, 1), answer("r-shared", "cust-c", 48, 3)])
    second = run(kafka_settings, root, workers)
    assert totals(second) == (6, 1, 4, 1)
    assert query(db, "select count(*), count(distinct event_id) from touchpoints") == [(15, 15)]
    assert query(db, "select count(*), count(distinct response_id) from survey_answers") == [(1, 1)]
    later = [row for row in conflicts(root) if row[:2] in {("e-shared", "cust-a"), ("e-shared", "cust-d")}]
    later += [row for row in conflicts(root) if row[0] == "r-shared" and row[1] in ("cust-a", "cust-c")]
    landed_event = names(topics, "touchpoints", "e-shared", "cust-a", 1)
    landed_answer = names(topics, "surveys", "r-shared", "cust-a", 1)
    assert later == [
        ("e-shared", "cust-a", 0, f"event_id 'e-shared' already landed with a different payload: {landed_event}"),
        ("e-shared", "cust-d", 3, f"event_id 'e-shared' already landed with a different payload: {landed_event}"),
        ("r-shared", "cust-a", 0, f"response_id 'r-shared' already landed with a different payload: {landed_answer}"),
        ("r-shared", "cust-c", 2, f"response_id 'r-shared' already landed with a different payload: {landed_answer}"),
    ]

    # Run 3: ingestion goes on.
    topics.send("touchpoints", [event("e-new-b", "cust-b", 50)])
    third = run(kafka_settings, root, workers)
    assert totals(third) == (1, 1, 0, 0)
    assert query(db, "select count(*), count(distinct event_id) from touchpoints") == [(16, 16)]

    # What the look-ups read: each landed id once in the index, its hash XXH3-64 of the id.
    files = [root / f.path for f in Warehouse(root).live_files("id_index")]
    rows = [r for f in files for r in pq.read_table(f, columns=["kind", "record_id", "id_hash"]).to_pylist()]
    assert len(rows) == 16 + 1
    assert all(r["id_hash"] == xxhash.xxh3_64_intdigest(r["record_id"].encode()) for r in rows)
