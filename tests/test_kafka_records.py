"""Vectorised unpacking of record batches against kafka-python's own per-record reader.

The batches are built by kafka-python's `DefaultRecordBatchBuilder` (the producer's encoder);
the expected offsets and values come from kafka-python's `DefaultRecordBatch` iteration, an
independent implementation of the same format.
"""

from __future__ import annotations

import random

import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from parcours.kafka.records import CorruptBatch, supports_batch_unpacking, unpack_records

CODECS = {
    "none": DefaultRecordBatchBuilder.CODEC_NONE,
    "gzip": DefaultRecordBatchBuilder.CODEC_GZIP,
    "zstd": DefaultRecordBatchBuilder.CODEC_ZSTD,
}


def build_batch(records: list[tuple[int, bytes | None, bytes | None, list]], codec: int, base_offset: int = 0) -> bytes:
    """A v2 record batch of (offset delta, key, value, headers), as the producer writes it."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    for delta, key, value, headers in records:
        builder.append(delta, timestamp=1_700_000_000_000 + delta * 7, key=key, value=value, headers=headers)
    buffer = builder.build()
    buffer[0:8] = base_offset.to_bytes(8, "big", signed=True)
    return bytes(buffer)


def ours(batch_bytes: bytes, with_keys: bool = False) -> tuple:
    batch = DefaultRecordBatch(batch_bytes)
    batch._maybe_uncompress()
    offsets, keys, values = unpack_records(bytes(batch._buffer[batch._pos :]), batch.records_count, batch.base_offset)
    return (offsets.tolist(), keys, values) if with_keys else (offsets.tolist(), values)


def theirs(batch_bytes: bytes, with_keys: bool = False) -> tuple:
    records = list(DefaultRecordBatch(batch_bytes))
    offsets, values = [r.offset for r in records], [r.value for r in records]
    return (offsets, [r.key for r in records], values) if with_keys else (offsets, values)


def test_the_installed_kafka_python_has_the_interface():
    assert supports_batch_unpacking()


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_same_offsets_and_values_as_kafka_python(codec):
    rng = random.Random(7)
    records = []
    for delta in range(500):
        size = rng.choice([0, 1, 5, 12, 63, 64, 127, 128, 300, 8191, 8192, 70_000])
        value = bytes(rng.randrange(256) for _ in range(size)) if delta % 37 else None  # some null values
        key = None if delta % 3 else f"customer-{delta}".encode()
        headers = [("trace", b"\x80\xff" * (delta % 4))] if delta % 5 == 0 else []
        records.append((delta, key, value, headers))
    batch = build_batch(records, CODECS[codec], base_offset=1_234_567)
    assert ours(batch, with_keys=True) == theirs(batch, with_keys=True)
    offsets, values = ours(batch)
    assert offsets[0] == 1_234_567 and offsets[-1] == 1_234_567 + 499
    assert values[37] is None and values[1] is not None


def test_offset_gaps_inside_a_batch_are_kept():
    # Compaction removes records but keeps the others' offset deltas.
    batch = build_batch([(0, None, b"a", []), (3, None, b"bb", []), (4, None, b"", []), (90, b"k", b"d", [])], 0, 10)
    assert ours(batch) == ([10, 13, 14, 100], [b"a", b"bb", b"", b"d"])


def test_large_record_with_a_four_byte_length():
    value = b"x" * 3_000_000  # length prefix above 2^21 once zigzag-encoded
    batch = build_batch([(0, None, b"small", []), (1, None, value, []), (2, None, b"after", [])], 0)
    assert ours(batch) == ([0, 1, 2], [b"small", value, b"after"])


def test_truncated_records_are_an_error_not_a_short_read():
    batch = DefaultRecordBatch(build_batch([(0, None, b"hello", []), (1, None, b"world", [])], 0))
    section = bytes(batch._buffer[batch._pos :])
    with pytest.raises(CorruptBatch):
        unpack_records(section[:-3], 2, 0)
    with pytest.raises(CorruptBatch):
        unpack_records(section, 3, 0)  # the header claims one record more than there is
    with pytest.raises(CorruptBatch):
        unpack_records(section + b"\x00", 2, 0)  # trailing bytes


def test_a_length_that_disagrees_with_the_fields_is_an_error():
    batch = DefaultRecordBatch(build_batch([(0, None, b"hello", [])], 0))
    section = bytearray(batch._buffer[batch._pos :])
    # Record: length varint | attributes | ts delta | offset delta | key len (-1) | value len | value | headers.
    # Grow the value length by one (zigzag: +2) so the value would run over the headers count.
    value_length_at = 1 + 1 + 1 + 1 + 1
    assert section[value_length_at] == 10  # zigzag(5)
    section[value_length_at] = 12
    with pytest.raises(CorruptBatch):
        unpack_records(bytes(section), 1, 0)
