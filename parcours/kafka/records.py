"""Whole Kafka record batches for kafka-python's consumer, unpacked with numpy instead of per record.

Why: kafka-python turns every fetched message into a `ConsumerRecord` in pure Python (varint
by varint, ~9 µs a message even with the C crc32c), which was ~40 % of a pipeline worker's time.
parcours needs only each message's offset and value, a whole record batch at a time. So a
consumer built by `make_batch_consumer` still does everything kafka-python does (connections,
fetch sessions, leader changes, offset checks, CRC checks of each batch, transaction markers),
but each fetched v2 record batch reaches `poll()` as one `RecordChunk` (its offsets and values),
unpacked by `unpack_records`: one short Python loop follows the records' length prefixes,
and the other fields of all records are read with vectorised numpy.

It hooks kafka-python where its fetcher turns a fetch response into records
(`Fetcher.PartitionRecords._unpack_records`), a private interface: kafka-python is pinned in
constraints.txt, `supports_batch_unpacking()` checks the interface, and tests compare the chunks
with kafka-python's own records for every codec, for keys and headers, transactions, and reads
that start inside a batch. Where the interface is not there, the consumer falls back to
kafka-python's records (slower, same result).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

# Record (message format v2), after the batch header, once decompressed:
#   length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
#   | keyLength varint | key | valueLength varint | value | headerCount varint | headers
# Varints are zigzag-encoded. See the Kafka protocol's "Record" definition.


class CorruptBatch(ValueError):
    """A record batch whose records do not parse as its header says."""


class RecordChunk(NamedTuple):
    """The data records of one record batch at or after the fetch position."""

    offset: int  # last offset in the chunk: kafka-python skips items whose offset precedes the fetch
    offsets: np.ndarray  # int64
    keys: list[bytes | None]
    values: list[bytes | None]


def _zigzag(raw: np.ndarray) -> np.ndarray:
    """Unsigned varint values -> the signed values they encode (two's complement wrap is intended)."""
    return ((raw >> np.uint64(1)) ^ (np.uint64(0) - (raw & np.uint64(1)))).view(np.int64)


def _varints_at(data: np.ndarray, positions: np.ndarray, max_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode one zigzag varint at each position: (values, positions just after them)."""
    values = np.zeros(len(positions), np.uint64)
    after = positions.copy()
    active = np.ones(len(positions), bool)
    last = len(data) - 1
    for i in range(max_bytes):
        byte = data[np.minimum(positions + i, last)].astype(np.uint64)
        values |= np.where(active, (byte & np.uint64(0x7F)) << np.uint64(7 * i), np.uint64(0))
        after += active
        active &= byte >= 0x80
        if not active.any():
            break
    else:
        raise CorruptBatch(f"a varint is longer than {max_bytes} bytes")
    if (after > len(data)).any():
        raise CorruptBatch("a varint runs past the end of the batch")
    return _zigzag(values), after


def unpack_records(
    buffer: bytes, count: int, base_offset: int
) -> tuple[np.ndarray, list[bytes | None], list[bytes | None]]:
    """(offsets, keys, values) of the `count` records in an uncompressed v2 records section."""
    if count == 0:
        if buffer:
            raise CorruptBatch(f"{len(buffer)} bytes after the last record")
        return np.zeros(0, np.int64), [], []
    # 1. The chain of length prefixes: each record's start depends on the previous length,
    #    so this is a loop; the common 1- and 2-byte prefixes are decoded inline.
    starts = [0] * count
    stops = [0] * count
    pos = 0
    size = len(buffer)
    try:
        for k in range(count):
            b0 = buffer[pos]
            if b0 < 0x80:
                raw = b0
                pos += 1
            else:
                b1 = buffer[pos + 1]
                if b1 < 0x80:
                    raw = (b0 & 0x7F) | (b1 << 7)
                    pos += 2
                else:
                    raw, shift = 0, 0
                    while True:
                        b = buffer[pos]
                        raw |= (b & 0x7F) << shift
                        pos += 1
                        shift += 7
                        if b < 0x80:
                            break
                        if shift > 28:
                            raise CorruptBatch("a record length is longer than 5 bytes")
            starts[k] = pos
            pos += (raw >> 1) ^ -(raw & 1)
            stops[k] = pos
    except IndexError:
        raise CorruptBatch(f"record {k} of {count} runs past the end of the batch") from None
    if pos != size:
        raise CorruptBatch(f"the records end at byte {pos}, the batch at byte {size}")
    body = np.asarray(starts, np.int64)
    ends = np.asarray(stops, np.int64)
    if (ends <= body).any():
        raise CorruptBatch("a record has a length below 1")
    # 2. The other fields of every record at once.
    data = np.frombuffer(buffer, np.uint8)
    _, after_ts = _varints_at(data, body + 1, 10)  # attributes (1 byte), timestamp delta
    offset_delta, after_od = _varints_at(data, after_ts, 5)
    key_len, after_kl = _varints_at(data, after_od, 5)
    value_pos = after_kl + np.maximum(key_len, 0)
    value_len, value_start = _varints_at(data, value_pos, 5)
    value_end = value_start + np.maximum(value_len, 0)
    headers, after_headers = _varints_at(data, value_end, 5)
    if (value_end > ends).any() or (headers < 0).any():
        raise CorruptBatch("a record's fields run past its length")
    if not headers.any() and not (after_headers == ends).all():
        raise CorruptBatch("a record's length does not match its fields")
    return base_offset + offset_delta, _slices(buffer, after_kl, key_len), _slices(buffer, value_start, value_len)


def _slices(buffer: bytes, starts: np.ndarray, lengths: np.ndarray) -> list[bytes | None]:
    """buffer[start:start + length] for each record; None where the length is -1 (null)."""
    spans = zip(starts.tolist(), (starts + np.maximum(lengths, 0)).tolist(), strict=True)
    out: list[bytes | None] = [buffer[s:e] for s, e in spans]
    nulls = np.flatnonzero(lengths < 0)
    for index in nulls.tolist():
        out[index] = None
    return out


def supports_batch_unpacking() -> bool:
    """Whether the installed kafka-python has the fetcher interface this module extends."""
    try:
        from kafka.consumer.fetcher import Fetcher
        from kafka.protocol.consumer import IsolationLevel  # noqa: F401
        from kafka.record.default_records import DefaultRecordBatch
    except ImportError:
        return False
    partition_records = getattr(Fetcher, "PartitionRecords", None)
    needed = ("_unpack_records", "_consume_aborted_transactions_up_to", "_contains_abort_marker", "_is_batch_aborted")
    return (
        partition_records is not None
        and all(hasattr(partition_records, name) for name in needed)
        and all(hasattr(DefaultRecordBatch, name) for name in ("_maybe_uncompress", "records_count", "next_offset"))
    )


def _chunked_partition_records() -> type:
    from kafka import errors
    from kafka.consumer.fetcher import Fetcher
    from kafka.protocol.consumer import IsolationLevel

    class ChunkedPartitionRecords(Fetcher.PartitionRecords):
        """kafka-python's fetched records for one partition, one `RecordChunk` per record batch."""

        def _unpack_records(self, tp, records, key_deserializer, value_deserializer):
            batch = records.next_batch()
            last_batch = None
            while batch is not None:
                last_batch = batch
                if self.check_crcs and not batch.validate_crc():
                    raise errors.CorruptRecordError(
                        f"record batch for {tp} at offset {batch.base_offset} failed crc check"
                    )
                if batch.magic != 2:  # legacy formats: kafka-python's own records
                    chunk = _chunk_of_records(list(batch), self.fetch_offset)
                    if chunk is not None:
                        self.next_fetch_offset = chunk.offset + 1
                        yield chunk
                    batch = records.next_batch()
                    continue
                self.leader_epoch = batch.leader_epoch
                if self.isolation_level == IsolationLevel.READ_COMMITTED and batch.has_producer_id():
                    self._consume_aborted_transactions_up_to(batch.last_offset)
                    if self._contains_abort_marker(batch):
                        self.aborted_producer_ids.discard(batch.producer_id)
                    elif self._is_batch_aborted(batch):
                        self.next_fetch_offset = batch.next_offset
                        batch = records.next_batch()
                        continue
                if batch.is_control_batch:
                    self.next_fetch_offset = batch.next_offset
                    batch = records.next_batch()
                    continue
                batch._maybe_uncompress()
                section = bytes(batch._buffer[batch._pos :])
                try:
                    offsets, keys, values = unpack_records(section, batch.records_count, batch.base_offset)
                except CorruptBatch as exc:
                    raise errors.CorruptRecordError(
                        f"record batch for {tp} at offset {batch.base_offset}: {exc}"
                    ) from None
                if len(offsets) and offsets[0] < self.fetch_offset:  # a read that starts inside the batch
                    first = int(np.searchsorted(offsets, self.fetch_offset))
                    offsets, keys, values = offsets[first:], keys[first:], values[first:]
                self.records_read += len(offsets)
                self.bytes_read += batch.size_in_bytes
                self.next_fetch_offset = batch.next_offset
                if len(offsets):
                    yield RecordChunk(int(offsets[-1]), offsets, keys, values)
                batch = records.next_batch()
            if last_batch is not None and last_batch.magic == 2:
                self.next_fetch_offset = last_batch.next_offset
            self.drain()

    return ChunkedPartitionRecords


def _chunk_of_records(records: list, fetch_offset: int) -> RecordChunk | None:
    kept = [r for r in records if r.offset >= fetch_offset]
    if not kept:
        return None
    offsets = np.asarray([r.offset for r in kept], np.int64)
    return RecordChunk(kept[-1].offset, offsets, [r.key for r in kept], [r.value for r in kept])


def enable_batch_unpacking(consumer: Any) -> bool:
    """Make `consumer.poll()` return `RecordChunk`s instead of records; False if it cannot."""
    fetcher = getattr(consumer, "_fetcher", None)
    config = getattr(fetcher, "config", {})
    if fetcher is None or not supports_batch_unpacking():
        log.warning("this kafka-python has no batch fetch interface parcours knows: records are unpacked one by one")
        return False
    if config.get("key_deserializer") or config.get("value_deserializer"):
        return False  # chunks carry raw bytes only
    fetcher.PartitionRecords = _chunked_partition_records()
    return True
