"""Personal data is redacted in Validate, before anything lands: valid answers' verbatims, every
survey dead letter (its payload, its text, its detail), and so the dead-letter topic too.

The end-to-end test plants personal data with the generator (`--pii-rate`), runs ingestion on
the real broker, and looks for every planted string in every file under the warehouse (Parquet
read back, other files as bytes), in every view, and in every dead-letter message.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from kafka import TopicPartition

from parcours.config import load_config
from parcours.kafka import KafkaSettings, make_consumer
from parcours.kafka.produce import produce_dir
from parcours.pipelines.run import Ingestion
from parcours.pipelines.validate import N_REDACTED, check_batch
from parcours.synthetic import generate_dataset
from parcours.warehouse import Warehouse

CONFIG = load_config()
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def raw(payloads: list[bytes]) -> pa.Table:
    n = len(payloads)
    return pa.table(
        {
            "source": ["surveys.jsonl"] * n,
            "source_partition": pa.array([-1] * n, pa.int32()),
            "source_offset": pa.array(range(n), pa.int64()),
            "source_key": pa.array([None] * n, pa.binary()),
            "payload": pa.array(payloads, pa.binary()),
        }
    )


def answer(response_id: str, verbatim: str | None, **changes) -> bytes:
    record = {
        "schema_version": 1,
        "response_id": response_id,
        "customer_id": "c1",
        "answered_at": "2026-02-02T10:00:00Z",
        "survey": "csat",
        "question_id": "q1",
        "score": 4,
        "verbatim": verbatim,
        **changes,
    }
    return json.dumps(record).encode()


def test_verbatims_and_survey_dead_letters_are_redacted_before_they_land():
    batch = raw(
        [
            answer("r1", "Rappelez-moi au 06 12 34 56 78 ou écrivez à marie.durand@orange.fr"),
            answer("r2", "Livraison le 12/03/2026, commande 4521, 49,90 € : parfait"),  # nothing to redact
            answer("r3", None),
            # Rejected (a score of the wrong type): its whole payload is redacted.
            answer("r4", "Remboursez la carte 4111 1111 1111 1111", score="five"),
            b'{"response_id": "r5", "verbatim": "IBAN FR76 3000 6000 0112 3456 7890 189 svp", ',  # not JSON
        ]
    )
    valid, dead = check_batch("surveys", batch, CONFIG.ingest, None, NOW)
    assert valid.column("verbatim").to_pylist() == [
        "Rappelez-moi au [phone] ou écrivez à [email]",
        "Livraison le 12/03/2026, commande 4521, 49,90 € : parfait",
        None,
    ]
    assert valid.column(N_REDACTED).to_pylist() == [2, 0, 0]
    assert set(dead.column("record_id").to_pylist()) == {"r4", None}
    by_id = {row["record_id"]: row for row in dead.to_pylist()}
    assert "Remboursez la carte [card]" in by_id["r4"]["payload_text"]
    assert b"Remboursez la carte [card]" in by_id["r4"]["payload"]
    assert "IBAN [iban] svp" in by_id[None]["payload_text"] and b"3000 6000" not in by_id[None]["payload"]
    assert dead.column(N_REDACTED).to_pylist() == [1, 1]  # one card, one IBAN
    # Nothing of the originals is left anywhere in the dead letters.
    text = str(dead.drop_columns([N_REDACTED]).to_pylist())
    for planted in ("06 12 34 56 78", "marie.durand", "4111 1111 1111 1111", "FR76"):
        assert planted not in text


def test_a_touchpoint_dead_letter_keeps_its_payload_whole():
    payload = b'{"event_id": "e1", "note": "call 06 12 34 56 78"'  # not JSON: a dead letter
    _, dead = check_batch("touchpoints", raw([payload]), CONFIG.ingest, None, NOW)
    assert dead.column("payload").to_pylist() == [payload] and dead.column(N_REDACTED).to_pylist() == [0]


def planted_strings(data: Path) -> list[str]:
    return pq.read_table(data / "truth" / "pii.parquet").column("text").to_pylist()


def found_in_warehouse(root: Path, planted: list[str]) -> list[str]:
    """Where any planted string is in the warehouse: Parquet files read back (they are
    compressed), every other file as bytes, and every view of the views file."""
    where = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            text = str(pq.read_table(path).to_pylist())
            where += [f"{path}: {s!r}" for s in planted if s in text]
        else:
            data = path.read_bytes()
            where += [f"{path}: {s!r}" for s in planted if s.encode() in data]
    with duckdb.connect(str(root / "parcours.duckdb"), read_only=True) as con:
        views = [name for (name,) in con.execute("select view_name from duckdb_views() where not internal").fetchall()]
        for view in views:
            text = str(con.execute(f'select * from "{view}"').fetchall())
            where += [f"view {view}: {s!r}" for s in planted if s in text]
    return where


def dead_letter_messages(settings: KafkaSettings) -> list[bytes]:
    consumer = make_consumer(settings)
    try:
        topic = settings.topics["dead_letters"]
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        values: list[bytes] = []
        while any(consumer.position(p) < end[p] for p in partitions):
            for batch in consumer.poll(timeout_ms=1000).values():
                values += [record.value for record in batch]
        return values
    finally:
        consumer.close()


def test_no_planted_personal_data_reaches_the_warehouse_or_the_dead_letter_topic(tmp_path, kafka_settings):
    data = tmp_path / "data"
    # Bad and conflicting records too, so that answers carrying personal data become dead letters.
    generate_dataset(data, 2000, 30, seed=7, config=CONFIG, pii_rate=0.05, invalid_rate=0.05, duplicate_rate=0.03)
    planted = planted_strings(data)
    assert len(planted) >= 10
    produce_dir(data, kafka_settings)
    root = tmp_path / "w"
    warehouse = Warehouse(root)
    with warehouse.lock():
        run = Ingestion(warehouse, CONFIG).run_kafka(kafka_settings)
    # The planted strings are redacted, and counted (a verbatim may hold other numbers too).
    assert sum(b.redacted for b in run.batches) >= len(planted)
    assert sum(m.counts.get("redacted", 0) for m in warehouse.manifests()) == sum(b.redacted for b in run.batches)
    dead = dead_letter_messages(kafka_settings)
    surveys = [m for m in map(json.loads, dead) if m["source"] == kafka_settings.topics["surveys"]]
    assert surveys, "some survey answers must be dead letters for the check to mean anything"
    assert found_in_warehouse(root, planted) == []
    # The search finds what is there: a Parquet file holding one of the strings is reported.
    pq.write_table(pa.table({"verbatim": [f"x {planted[0]} y"]}), root / "control.parquet", compression="zstd")
    assert found_in_warehouse(root, planted) == [f"{root / 'control.parquet'}: {planted[0]!r}"]
    (root / "control.parquet").unlink()
    assert [s for s in planted for message in dead if s.encode() in message] == []
    # And the redacted answers did land, with their placeholders.
    with duckdb.connect(str(root / "parcours.duckdb"), read_only=True) as con:
        ((n,),) = con.execute(
            "select count(*) from survey_answers where regexp_matches(verbatim, '\\[(email|phone|card|iban)\\]')"
        ).fetchall()
    assert n > 0
