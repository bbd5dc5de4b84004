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
import pyarrow as pa

from parcours.kafka import KafkaSettings, make_consumer

RAW_ARROW = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_partition", pa.int32()),
        pa.field("source_offset", pa.int64(), nullable=False),
        pa.field("payload", pa.binary(), nullable=False),
    ]
)
KINDS = ("touchpoints", "surveys")
# Rows per Arrow batch handed downstream: big enough for vectorised work, small enough
# to keep several batches in flight without memory spikes.
CHUNK_ROWS = 50_000


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
    kind: str
    path: str  # absolute
    start: int  # byte offset of the first line
    end: int  # byte offset after the last line
    lines: int


def plan_offset_ranges(
    kind_of_topic: dict[str, str],
    next_offsets: dict[str, dict[int, int]],
    beginning: dict[tuple[str, int], int],
    end: dict[tuple[str, int], int],
    batch_size: int,
    chunk_rows: int = CHUNK_ROWS,
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
        stop = start + take[(topic, partition)]
        for piece in range(start, stop, chunk_rows):
            ranges.append(OffsetRange(kind_of_topic[topic], topic, partition, piece, min(piece + chunk_rows, stop)))
    return sorted(ranges, key=lambda r: (r.topic, r.partition, r.start))


def plan_file_ranges(kind: str, path: Path, skip_before: int, chunk_rows: int = CHUNK_ROWS) -> list[FileRange]:
    """Split a JSONL file into line-aligned byte ranges of `chunk_rows` lines, from a byte offset."""
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


def _raw_table(source: list[str] | str, partitions, offsets: list[int], payloads: list[bytes]) -> pa.Table:
    n = len(payloads)
    return pa.table(
        {
            "source": pa.array([source] * n if isinstance(source, str) else source, pa.string()),
            "source_partition": pa.array(partitions if isinstance(partitions, list) else [partitions] * n, pa.int32()),
            "source_offset": pa.array(offsets, pa.int64()),
            "payload": pa.array(payloads, pa.binary()),
        },
        schema=RAW_ARROW,
    )


class ReadOffsetRangeFn(beam.DoFn):
    """Reads one bounded offset range with kafka-python; yields (kind, raw Arrow table)."""

    def __init__(self, settings: KafkaSettings, stall_timeout_s: float = 60.0) -> None:
        self._settings = settings
        self._stall_timeout_s = stall_timeout_s
        self._consumer = None

    def setup(self) -> None:
        from parcours.kafka import check_crc32c

        check_crc32c()
        self._consumer = make_consumer(self._settings)

    def process(self, element: OffsetRange) -> Iterator[tuple[str, pa.Table]]:
        from kafka import TopicPartition

        consumer = self._consumer
        partition = TopicPartition(element.topic, element.partition)
        consumer.assign([partition])
        consumer.seek(partition, element.start)
        offsets: list[int] = []
        payloads: list[bytes] = []
        position = element.start
        last_progress = time.monotonic()
        while position < element.end:
            records = consumer.poll(timeout_ms=500, max_records=min(element.end - position, 10_000))
            batch = records.get(partition, [])
            for record in batch:
                if record.offset >= element.end:
                    break
                offsets.append(record.offset)
                payloads.append(record.value if record.value is not None else b"")
            if batch:
                position = max(position, min(batch[-1].offset + 1, element.end))
                last_progress = time.monotonic()
            else:
                # Offsets can be gaps (transaction markers, compaction): trust the consumer's position.
                position = max(position, min(consumer.position(partition), element.end))
                if time.monotonic() - last_progress > self._stall_timeout_s:
                    raise SourceStalled(
                        f"{element.topic}[{element.partition}]: stuck at offset {position} of "
                        f"{element.start}..{element.end} for {self._stall_timeout_s:.0f} s"
                    )
        yield element.kind, _raw_table(element.topic, element.partition, offsets, payloads)
        yield beam.pvalue.TaggedOutput("receipts", {"consumed": {element.kind: len(payloads)}})

    def teardown(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


class ReadFileRangeFn(beam.DoFn):
    """Reads one line-aligned byte range of a JSONL file; yields (kind, raw Arrow table)."""

    def process(self, element: FileRange) -> Iterator[tuple[str, pa.Table]]:
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
        # Blank lines carry nothing; they are neither events nor errors.
        kept = [(o, p) for o, p in zip(offsets, payloads, strict=True) if p.strip()]
        offsets = [o for o, _ in kept]
        payloads = [p for _, p in kept]
        yield element.kind, _raw_table(element.path, None, offsets, payloads)
        yield beam.pvalue.TaggedOutput("receipts", {"consumed": {element.kind: len(payloads)}})


class ReadRanges(beam.PTransform):
    """Bounded ranges (Kafka offsets or file bytes) -> (kind, raw Arrow table) + receipts."""

    def __init__(self, ranges: list[OffsetRange] | list[FileRange], settings: KafkaSettings | None = None) -> None:
        super().__init__()
        if not ranges:
            raise ValueError("ReadRanges needs at least one range")
        kinds = {r.kind for r in ranges}
        if not kinds <= set(KINDS):
            raise ValueError(f"unknown kinds {kinds - set(KINDS)}")
        self._ranges = ranges
        self._settings = settings

    def expand(self, pbegin):
        ranges = pbegin | "Ranges" >> beam.Create(self._ranges) | "Spread" >> beam.Reshuffle()
        if isinstance(self._ranges[0], OffsetRange):
            if self._settings is None:
                raise ValueError("Kafka ranges need KafkaSettings")
            read = beam.ParDo(ReadOffsetRangeFn(self._settings))
        else:
            read = beam.ParDo(ReadFileRangeFn())
        return ranges | "Read" >> read.with_outputs("receipts", main="raw")
