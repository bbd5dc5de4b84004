"""Sources: bounded ranges of Kafka offsets or of file bytes, read into Arrow record batches.

Beam Python's `ReadFromKafka` is a Java cross-language transform; parcours instead plans
bounded offset ranges in the driver (from the offsets published in the manifest to a snapshot
of the end offsets, at most `batch_size` messages per micro-batch) and reads each range with
kafka-python inside a DoFn. Ranges are small serialisable elements, so the same pipeline runs
on Flink or Dataflow: every worker opens its own consumer in `setup`.

Every raw record keeps where it came from (topic or file, partition, offset), so a dead letter
can be traced back and a batch can be replayed exactly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
import msgspec
import numpy as np
import pyarrow as pa

from parcours.kafka import KafkaSettings, make_consumer
from parcours.pipelines.coders import TABLE_ELEMENT
from parcours.pipelines.record_loops import paused_gc

RAW_ARROW = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_partition", pa.int32()),
        pa.field("source_offset", pa.int64(), nullable=False),
        pa.field("source_key", pa.binary()),  # the Kafka message key; null for files
        pa.field("payload", pa.binary(), nullable=False),
    ]
)
KINDS = ("touchpoints", "surveys")
# Rows per Arrow batch handed downstream: big enough for vectorised work, small enough
# to keep several batches in flight without memory spikes.
CHUNK_ROWS = 50_000
# Record batches per poll when they arrive whole (see parcours.kafka.records).
MAX_POLL_CHUNKS = 1_000


class OffsetOutOfRetention(RuntimeError):
    """Offsets the warehouse still needs were deleted by the topic's retention."""


class SourceStalled(RuntimeError):
    """A bounded range could not be read to its end within the time limit."""


@dataclass(frozen=True)
class OffsetRange:
    kind: str  # "touchpoints" or "surveys"
    topic: str
    partition: int
    start: int  # first offset to read
    end: int  # first offset NOT to read

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class FileRange:
    """Part of a backfill file: a byte range of whole lines (JSONL) or a row range (Parquet)."""

    kind: str
    path: str  # absolute
    start: int  # JSONL: byte offset of the first line; Parquet: first row
    end: int  # JSONL: byte offset after the last line; Parquet: row after the last
    lines: int

    @property
    def is_parquet(self) -> bool:
        return self.path.endswith(".parquet")


def plan_offset_ranges(
    kind_of_topic: dict[str, str],
    next_offsets: dict[str, dict[int, int]],
    beginning: dict[tuple[str, int], int],
    end: dict[tuple[str, int], int],
    batch_size: int,
) -> list[OffsetRange]:
    """The next micro-batch: at most `batch_size` messages, shared fairly across partitions.

    `next_offsets` come from the committed manifests. A partition never seen starts at its
    beginning. A stored offset below the partition's beginning means data was lost to
    retention: that is an error, never a silent skip.
    """
    pending: list[tuple[str, int, int, int]] = []
    for (topic, partition), end_offset in sorted(end.items()):
        first = beginning[(topic, partition)]
        stored = next_offsets.get(topic, {}).get(partition)
        start = first if stored is None else stored
        if stored is not None and stored < first:
            raise OffsetOutOfRetention(
                f"{topic}[{partition}]: offsets {stored}..{first - 1} were deleted by retention before "
                f"they were landed; restore them from a backup (parcours run --from DIR) and reset "
                f"the partition's offset, or accept the loss explicitly"
            )
        if stored is not None and stored > end_offset:
            raise OffsetOutOfRetention(
                f"{topic}[{partition}]: the warehouse has landed up to offset {stored} but the partition "
                f"ends at {end_offset}: the topic was deleted and recreated, or truncated; use a new "
                f"warehouse or topic prefix for the new topic"
            )
        if end_offset > start:
            pending.append((topic, partition, start, end_offset))
    # Fair share: every partition with a backlog gets an equal part of the budget; what a
    # short partition leaves goes to the others.
    take = {(topic, partition): 0 for topic, partition, _, _ in pending}
    budget = batch_size
    open_ = [(t, p, end_offset - start) for t, p, start, end_offset in pending]
    while open_ and budget > 0:
        share = max(1, budget // len(open_))
        still = []
        for topic, partition, left in open_:
            n = min(share, left, budget)
            take[(topic, partition)] += n
            budget -= n
            if left - n > 0:
                still.append((topic, partition, left - n))
        open_ = still
    ranges: list[OffsetRange] = []
    for topic, partition, start, _ in pending:
        if take[(topic, partition)]:
            ranges.append(OffsetRange(kind_of_topic[topic], topic, partition, start, start + take[(topic, partition)]))
    return sorted(ranges, key=lambda r: (r.topic, r.partition, r.start))


def plan_file_ranges(kind: str, path: Path, skip_before: int, chunk_rows: int = CHUNK_ROWS) -> list[FileRange]:
    """Split a backfill file into ranges of `chunk_rows` records, from where it was left.

    JSONL: line-aligned byte ranges, from a byte offset. Parquet: row ranges, from a row.
    """
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(path).metadata.num_rows
        return [
            FileRange(kind, str(path), start, min(start + chunk_rows, rows), min(start + chunk_rows, rows) - start)
            for start in range(skip_before, rows, chunk_rows)
        ]
    ranges: list[FileRange] = []
    with path.open("rb") as handle:
        handle.seek(skip_before)
        start = position = skip_before
        lines = 0
        for line in handle:
            position += len(line)
            lines += 1
            if lines == chunk_rows:
                ranges.append(FileRange(kind, str(path), start, position, lines))
                start, lines = position, 0
        if lines:
            ranges.append(FileRange(kind, str(path), start, position, lines))
    return ranges


def _raw_table(
    source: list[str] | str, partitions, offsets: list[int], payloads: list[bytes], keys: list | None = None
) -> pa.Table:
    n = len(payloads)
    return pa.table(
        {
            "source": pa.array([source] * n if isinstance(source, str) else source, pa.string()),
            "source_partition": pa.array(partitions if isinstance(partitions, list) else [partitions] * n, pa.int32()),
            "source_offset": pa.array(offsets, pa.int64()),
            "source_key": pa.array(keys, pa.binary()) if keys is not None else pa.nulls(n, pa.binary()),
            "payload": pa.array(payloads, pa.binary()),
        },
        schema=RAW_ARROW,
    )


@dataclass
class _PartitionBuffer:
    offsets: list[int]
    keys: list[bytes | None]
    payloads: list[bytes]


class ReadOffsetRangesFn(beam.DoFn):
    """Reads a group of bounded offset ranges with one kafka-python consumer.

    All the group's partitions are assigned at once, so the broker's fetches for them overlap
    (reading partitions one after another halves the rate, measured). Elements are
    (shard, ranges). Yields (kind, raw Arrow table) per partition every CHUNK_ROWS rows; or,
    with `whole_shards`, ((kind, shard), one raw table of the whole group) per kind: the
    topics are keyed by customer, so a group of whole partitions holds whole customers and
    needs no regrouping. Also yields a receipt of what was consumed.
    """

    def __init__(self, settings: KafkaSettings, whole_shards: bool = False, stall_timeout_s: float = 60.0) -> None:
        self._settings = settings
        self._whole_shards = whole_shards
        self._stall_timeout_s = stall_timeout_s
        self._consumer = None
        self._chunks = False

    def setup(self) -> None:
        from parcours.kafka import check_crc32c
        from parcours.kafka.records import enable_batch_unpacking

        check_crc32c()
        self._consumer = make_consumer(self._settings)
        self._chunks = enable_batch_unpacking(self._consumer)

    def process(self, element: tuple[int, tuple[OffsetRange, ...]]) -> Iterator:
        from kafka import TopicPartition

        shard, group = element
        consumer = self._consumer
        wanted = {TopicPartition(r.topic, r.partition): r for r in group}
        consumer.assign(list(wanted))
        for tp, r in wanted.items():
            consumer.seek(tp, r.start)
        buffers = {tp: _PartitionBuffer([], [], []) for tp in wanted}
        consumed: dict[str, int] = {}
        held: dict[str, list[pa.Table]] = {}  # whole_shards: the group's tables, yielded at the end
        remaining = {tp for tp, r in wanted.items() if r.end > r.start}
        last_progress = time.monotonic()

        def flush(tp) -> Iterator[tuple[str, pa.Table]]:
            buffer = buffers[tp]
            if buffer.offsets:
                r = wanted[tp]
                table = _raw_table(r.topic, r.partition, buffer.offsets, buffer.payloads, buffer.keys)
                buffers[tp] = _PartitionBuffer([], [], [])
                consumed[r.kind] = consumed.get(r.kind, 0) + table.num_rows
                if self._whole_shards:
                    held.setdefault(r.kind, []).append(table)
                else:
                    yield r.kind, table

        while remaining:
            with paused_gc():
                # With batch unpacking, an item is a whole record batch (RecordChunk), else a record.
                fetched = consumer.poll(timeout_ms=500, max_records=MAX_POLL_CHUNKS if self._chunks else CHUNK_ROWS)
            for tp, items in fetched.items():
                if tp not in remaining:
                    continue
                buffer = buffers[tp]
                (_take_chunks if self._chunks else _take_records)(items, wanted[tp].end, buffer)
                if len(buffer.offsets) >= CHUNK_ROWS:
                    yield from flush(tp)
            progressed = bool(fetched)
            for tp in list(remaining):
                # Offsets can have gaps (transaction markers, compaction): trust the position.
                if consumer.position(tp) >= wanted[tp].end:
                    remaining.discard(tp)
                    consumer.pause(tp)
                    yield from flush(tp)
            if progressed:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > self._stall_timeout_s:
                stuck = ", ".join(f"{tp.topic}[{tp.partition}] at {consumer.position(tp)}" for tp in remaining)
                raise SourceStalled(f"no progress for {self._stall_timeout_s:.0f} s: {stuck}")
        consumer.unsubscribe()
        for kind, tables in sorted(held.items()):
            yield (kind, shard), pa.concat_tables(tables)
        yield beam.pvalue.TaggedOutput("receipts", {"consumed": consumed})

    def teardown(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


def _take_records(records: list, end: int, into: _PartitionBuffer) -> None:
    for record in records:
        if record.offset >= end:
            break
        into.offsets.append(record.offset)
        into.keys.append(record.key)
        into.payloads.append(record.value if record.value is not None else b"")


def _take_chunks(chunks: list, end: int, into: _PartitionBuffer) -> None:
    for chunk in chunks:
        n = len(chunk.offsets) if chunk.offset < end else int(np.searchsorted(chunk.offsets, end))
        whole = n == len(chunk.offsets)
        into.offsets += chunk.offsets[:n].tolist()
        into.keys += chunk.keys if whole else chunk.keys[:n]
        values = chunk.values if whole else chunk.values[:n]
        into.payloads += [b"" if v is None else v for v in values] if None in values else values
        if not whole:
            break


def group_ranges(ranges: list[OffsetRange], groups: int) -> list[tuple[OffsetRange, ...]]:
    """Spread a micro-batch's ranges over `groups` readers, whole partitions to each."""
    by_partition: dict[tuple[str, int], list[OffsetRange]] = {}
    for r in ranges:
        by_partition.setdefault((r.topic, r.partition), []).append(r)
    buckets: list[list[OffsetRange]] = [[] for _ in range(max(1, groups))]
    for index, key in enumerate(sorted(by_partition)):
        buckets[index % len(buckets)] += by_partition[key]
    return [tuple(bucket) for bucket in buckets if bucket]


def parquet_payloads(path: str, start: int, end: int) -> list[bytes]:
    """Rows [start, end) of a Parquet file as JSON payloads, so they meet the same contract checks.

    Timestamps with a time zone become RFC 3339 with an offset; a timestamp without one is written
    without an offset, and the contract check rejects it (a naive time is ambiguous); structs and
    maps become JSON objects.
    """
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    pieces, first = [], 0
    for group in range(source.metadata.num_row_groups):
        rows = source.metadata.row_group(group).num_rows
        if first + rows > start and first < end:
            table = source.read_row_group(group)
            pieces.append(table.slice(max(0, start - first), min(end, first + rows) - max(start, first)))
        first += rows
    encode = msgspec.json.Encoder().encode
    with paused_gc():
        return [encode(row) for piece in pieces for row in piece.to_pylist()]


class ReadFileRangeFn(beam.DoFn):
    """Reads one range of a JSONL or Parquet backfill file; yields (kind, raw Arrow table)."""

    def process(self, element: FileRange) -> Iterator[tuple[str, pa.Table]]:
        if element.is_parquet:
            payloads = parquet_payloads(element.path, element.start, element.end)
            offsets = list(range(element.start, element.start + len(payloads)))
            yield element.kind, _raw_table(element.path, None, offsets, payloads)
            yield beam.pvalue.TaggedOutput("receipts", {"consumed": {element.kind: len(payloads)}})
            return
        offsets: list[int] = []
        payloads: list[bytes] = []
        with open(element.path, "rb") as handle:
            handle.seek(element.start)
            position = element.start
            while position < element.end:
                line = handle.readline()
                if not line:
                    break
                offsets.append(position)
                position += len(line)
                payloads.append(line.rstrip(b"\r\n"))
        # Blank lines carry nothing; they are neither records nor errors: counted apart, reported.
        kept = [(o, p) for o, p in zip(offsets, payloads, strict=True) if p.strip()]
        blank = len(payloads) - len(kept)
        offsets = [o for o, _ in kept]
        payloads = [p for _, p in kept]
        yield element.kind, _raw_table(element.path, None, offsets, payloads)
        receipt = {"consumed": {element.kind: len(payloads)}, "blank_lines": {element.kind: blank}}
        yield beam.pvalue.TaggedOutput("receipts", receipt)


class ReadRanges(beam.PTransform):
    """Bounded ranges (Kafka offsets or file bytes) -> (kind, raw Arrow table) + receipts.

    With `whole_shards` (Kafka topics keyed by customer), the partitions are split into
    `read_groups` shards and each yields ((kind, shard), raw table of whole customers).
    """

    def __init__(
        self,
        ranges: list[OffsetRange] | list[FileRange],
        settings: KafkaSettings | None = None,
        read_groups: int = 1,
        whole_shards: bool = False,
    ) -> None:
        super().__init__()
        if read_groups < 1:
            raise ValueError(f"read_groups must be >= 1, got {read_groups}")
        self._read_groups = read_groups
        self._whole_shards = whole_shards
        if not ranges:
            raise ValueError("ReadRanges needs at least one range")
        kinds = {r.kind for r in ranges}
        if not kinds <= set(KINDS):
            raise ValueError(f"unknown kinds {kinds - set(KINDS)}")
        self._ranges = ranges
        self._settings = settings

    def expand(self, pbegin):
        if isinstance(self._ranges[0], OffsetRange):
            if self._settings is None:
                raise ValueError("Kafka ranges need KafkaSettings")
            elements = list(enumerate(group_ranges(self._ranges, self._read_groups)))
            read = beam.ParDo(ReadOffsetRangesFn(self._settings, self._whole_shards)).with_output_types(
                TABLE_ELEMENT, receipts=dict
            )
        else:
            if self._whole_shards:
                raise ValueError("whole_shards needs Kafka ranges: files are not split by customer")
            elements = self._ranges
            read = beam.ParDo(ReadFileRangeFn()).with_output_types(TABLE_ELEMENT, receipts=dict)
        ranges = pbegin | "Ranges" >> beam.Create(elements)  # Create spreads its elements over workers itself
        return ranges | "Read" >> read.with_outputs("receipts", main="raw")
