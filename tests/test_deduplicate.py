"""The id rule alone: which copy of an id lands, which are skipped, which are dead letters."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import xxhash

from parcours.pipelines.deduplicate import NARROW_IDS, candidates, contains, decide_ids, id_buckets
from parcours.warehouse import ID_INDEX

T = datetime(2026, 2, 2, tzinfo=UTC)


def narrow(rows: list[tuple]) -> pa.Table:
    """(kind, id, hash, customer, partition, offset) -> narrow rows of topic "tp"."""
    return pa.table(
        {
            "kind": [r[0] for r in rows],
            "record_id": [r[1] for r in rows],
            "payload_hash": [r[2] for r in rows],
            "customer_id": [r[3] for r in rows],
            "source": ["tp"] * len(rows),
            "source_partition": [r[4] for r in rows],
            "source_offset": [r[5] for r in rows],
        }
    ).cast(NARROW_IDS)


def landed(rows: list[tuple]) -> pa.Table:
    table = narrow(rows)
    n = table.num_rows
    table = table.append_column("batch_seq", pa.array([1] * n, pa.int64()))
    return table.append_column("ingested_at", pa.array([T] * n, ID_INDEX.arrow_schema.field("ingested_at").type))


def test_the_lowest_position_lands_and_every_other_copy_has_one_outcome():
    batch = narrow(
        [
            ("touchpoints", "x", 1, "b", 1, 0),  # x under two customers: partition 0 is lower
            ("touchpoints", "x", 2, "a", 0, 5),
            ("touchpoints", "x", 2, "a", 0, 9),  # the winner re-sent: a duplicate
            ("touchpoints", "y", 3, "a", 0, 6),  # y landed before with the same bytes: a duplicate
            ("touchpoints", "z", 4, "c", 2, 0),  # z landed before under d: a conflict
            ("surveys", "x", 5, "c", 2, 1),  # the same id in the other kind is another id
        ]
    )
    before = landed([("touchpoints", "y", 3, "a", 0, 1), ("touchpoints", "z", 7, "d", 3, 4)])
    new, decisions = decide_ids(batch, before)
    assert sorted(new.select(["kind", "record_id", "customer_id", "source_offset"]).to_pylist(), key=str) == sorted(
        [
            {"kind": "touchpoints", "record_id": "x", "customer_id": "a", "source_offset": 5},
            {"kind": "surveys", "record_id": "x", "customer_id": "c", "source_offset": 1},
        ],
        key=str,
    )
    got = sorted(
        (
            d["source_partition"],
            d["source_offset"],
            d["is_duplicate"],
            d["is_landed"],
            d["ref_customer_id"],
            d["ref_partition"],
            d["ref_offset"],
        )
        for d in decisions.to_pylist()
    )
    assert got == [
        (0, 6, True, True, "a", 0, 1),
        (0, 9, True, False, "a", 0, 5),
        (1, 0, False, False, "a", 0, 5),
        (2, 0, False, True, "d", 3, 4),
    ]


def test_buckets_are_xxh3_of_the_id_modulo_the_bucket_count():
    ids = ["e-1", "e-2", "é-3", "r-42"]
    assert id_buckets(pa.array(ids), 8).tolist() == [xxhash.xxh3_64_intdigest(i.encode()) % 8 for i in ids]


def test_a_winner_held_by_another_shard_decides_every_copy_here_and_never_lands_here():
    # The driver found "x" landed by two shards; the other shard's copy (partition 0) wins.
    winners = narrow([("touchpoints", "x", 2, "a", 0, 5)])
    shard = narrow(
        [
            ("touchpoints", "x", 1, "b", 1, 0),  # other bytes: a conflict with the winner
            ("touchpoints", "x", 2, "b", 1, 3),  # the winner's bytes: a duplicate
            ("touchpoints", "w", 9, "b", 1, 4),  # untouched by the winners: lands
        ]
    )
    new, decisions = decide_ids(shard, landed([]), winners)
    assert new.select(["record_id", "source_offset"]).to_pylist() == [{"record_id": "w", "source_offset": 4}]
    got = sorted(
        (
            d["source_offset"],
            d["is_duplicate"],
            d["is_landed"],
            d["ref_customer_id"],
            d["ref_partition"],
            d["ref_offset"],
        )
        for d in decisions.to_pylist()
    )
    assert got == [(0, False, False, "a", 0, 5), (3, True, False, "a", 0, 5)]
    # In the winner's own shard the winner is its own row: it lands, once.
    new, decisions = decide_ids(narrow([("touchpoints", "x", 2, "a", 0, 5)]), landed([]), winners)
    assert new.select(["record_id", "source_offset"]).to_pylist() == [{"record_id": "x", "source_offset": 5}]
    assert decisions.num_rows == 0


def test_only_repeated_or_known_hashes_need_the_exact_check():
    hashes = np.array([5, 9, 5, 7, 11], dtype=np.uint64)  # 5 twice in the shard; 11 is in the index
    assert candidates(hashes, np.array([11, 99], dtype=np.uint64)).tolist() == [True, False, True, False, True]
    assert candidates(np.array([1, 2], dtype=np.uint64), np.empty(0, np.uint64)).tolist() == [False, False]


def test_contains_agrees_with_numpy_isin():
    rng = np.random.default_rng(7)
    pool = np.sort(rng.integers(0, 2**64 - 1, 5_000, dtype=np.uint64, endpoint=True))
    values = np.concatenate([pool[::7], rng.integers(0, 2**64 - 1, 3_000, dtype=np.uint64, endpoint=True)])
    values = np.concatenate([values, np.array([0, 2**64 - 1], dtype=np.uint64)])  # the extremes
    assert (contains(pool, values) == np.isin(values, pool)).all()
    assert contains(pool, values).sum() == len(pool[::7])
    assert not contains(np.empty(0, np.uint64), values).any()
    assert contains(pool, np.empty(0, np.uint64)).size == 0
