"""Land: write a micro-batch's rows as Parquet files, and say what was written.

Each DoFn writes its files under deterministic names (batch sequence + part), each under a
temporary name then renamed, and emits a receipt: files, row counts, and the latest event
time per source partition. Nothing here makes data visible: the driver publishes the whole
batch at once by committing a manifest built from the receipts. Re-running a batch after a
crash rewrites the same names, so it cannot duplicate rows.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parcours.config import UNMAPPED_STAGE
from parcours.pipelines.sessionize import ShardWork
from parcours.pipelines.validate import N_REDACTED
from parcours.schemas.contracts import UTC_MICROS, Reason
from parcours.warehouse.datasets import DATASETS


def _with_batch_columns(table: pa.Table, seq: int, now: datetime) -> pa.Table:
    if "ingested_at" in table.column_names:
        filled = pc.coalesce(table.column("ingested_at"), pa.scalar(now, UTC_MICROS))
        table = table.set_column(table.schema.get_field_index("ingested_at"), "ingested_at", filled)
    else:
        table = table.append_column("ingested_at", pa.array([now] * table.num_rows, UTC_MICROS))
    return table.append_column("batch_seq", pa.array([seq] * table.num_rows, pa.int64()))


def _utc_date(column) -> pa.ChunkedArray:
    return pc.cast(pc.cast(column, pa.timestamp("us")), pa.date32())


def latest_event_times(table: pa.Table, time_field: str) -> dict[str, dict[int, str]]:
    """source -> partition -> latest event time (ISO) of `table`'s rows: the watermark input."""
    if table.num_rows == 0:
        return {}
    grouped = table.group_by(["source", "source_partition"]).aggregate([(time_field, "max")])
    result: dict[str, dict[int, str]] = {}
    for row in grouped.to_pylist():
        partition = -1 if row["source_partition"] is None else row["source_partition"]
        result.setdefault(row["source"], {})[partition] = row[f"{time_field}_max"].isoformat()
    return result


def latest_per_customer(events: pa.Table, now: datetime) -> pa.Table:
    """Each customer's last event of a batch's recomputed events: its state for the next batch.

    `events` are sorted by customer, time, id (Sessionize's order) and hold every event of the
    customer from the earliest new one on, so the last row of each customer is its latest event.
    """
    customers = events.column("customer_id").to_numpy(zero_copy_only=False)
    last = np.ones(len(customers), dtype=bool)
    last[:-1] = customers[:-1] != customers[1:]
    names = [name for name in DATASETS["customer_state"].arrow_schema.names if name != "batch_date"]
    state = events.filter(pa.array(last)).select(names)
    return state.append_column("batch_date", pa.array([now.date()] * state.num_rows, pa.date32()))


class LandFn(beam.DoFn):
    """Writes touchpoints (ShardWork), survey answers or dead letters; yields receipts."""

    def __init__(self, root: str, seq: int, now: datetime) -> None:
        self._root = root
        self._seq = seq
        self._now = now
        self._warehouse = None

    def setup(self) -> None:
        from parcours.warehouse import Warehouse

        self._warehouse = Warehouse(self._root)

    def _write(self, dataset: str, table: pa.Table, part: str) -> list[dict]:
        from parcours.warehouse import DATASETS

        # Rows that went through DuckDB come back as tz "Etc/UTC": same instants, same type.
        spec = DATASETS[dataset]
        target = pa.schema([*spec.arrow_schema, pa.field(spec.partition_column, pa.date32())])
        table = table.select(target.names).cast(target)
        files = self._warehouse.write_parquet(dataset, table, self._seq, part)
        return [asdict(f) for f in files]

    def process(self, element) -> Iterator[dict]:
        if isinstance(element, ShardWork):
            yield from self._land_touchpoints(element)
        elif isinstance(element, tuple):
            (kind, shard), table = element
            table = _with_batch_columns(table, self._seq, self._now)
            new_times = latest_event_times(table, "answered_at")
            table = table.append_column("answered_date", _utc_date(table.column("answered_at")))
            table, redacted = _take_redacted(table)
            files = self._write("survey_answers", table, f"sv-s{shard:03d}")
            yield {
                "files": files,
                "redacted": redacted,
                "landed": {kind: sum(f["rows"] for f in files)},  # counted from what was written
                "watermarks": {kind: new_times},
            }
        else:
            yield from self._land_dead_letters(element)

    def _land_touchpoints(self, work: ShardWork) -> Iterator[dict]:
        # New rows have no ingestion time yet; re-landed ones keep their first one.
        is_new = pc.is_null(work.events.column("ingested_at"))
        new_rows = work.events.filter(is_new)
        events = _with_batch_columns(work.events, self._seq, self._now)
        events = events.append_column("event_date", _utc_date(events.column("occurred_at")))
        files = self._write("touchpoints", events, f"tp-s{work.shard:03d}")
        # Counted from what was written: the files' rows, less the rows that were there before.
        written = sum(f["rows"] for f in files)
        relanded = events.num_rows - new_rows.num_rows
        unmapped = pc.sum(pc.and_(is_new, pc.equal(events.column("stage_source"), UNMAPPED_STAGE))).as_py() or 0
        if work.rewrites.num_rows:
            rewrites = work.rewrites.append_column(
                "batch_seq", pa.array([self._seq] * work.rewrites.num_rows, pa.int64())
            )
            rewrites = rewrites.append_column(
                "batch_date", pa.array([self._now.date()] * rewrites.num_rows, pa.date32())
            )
            files += self._write("rewrites", rewrites, f"rw-s{work.shard:03d}")
        files += self._write("customer_state", latest_per_customer(events, self._now), f"cs-s{work.shard:03d}")
        yield {
            "files": files,
            "landed": {"touchpoints": written - relanded},
            "relanded": {"touchpoints": relanded},
            "unmapped": unmapped,
            "watermarks": {"touchpoints": latest_event_times(new_rows, "occurred_at")},
        }

    def _land_dead_letters(self, table: pa.Table) -> Iterator[dict]:
        first = table.slice(0, 1).to_pylist()[0]
        origin = repr((first["source"], first["partition"], first["offset"], first["reason"]))
        part = f"dl-{zlib.crc32(origin.encode()):08x}"
        table, redacted = _take_redacted(table)
        table = table.append_column("batch_seq", pa.array([self._seq] * table.num_rows, pa.int64()))
        table = table.append_column("ingested_at", pa.array([self._now] * table.num_rows, UTC_MICROS))
        table = table.append_column("ingested_date", pa.array([self._now.date()] * table.num_rows, pa.date32()))
        files = self._write("dead_letters", table, part)
        by_source: dict[str, int] = {}
        for source in table.column("source").to_pylist():
            by_source[source] = by_source.get(source, 0) + 1
        internal = table.filter(pc.equal(table.column("reason"), Reason.INTERNAL_ERROR))
        receipt = {
            "files": files,
            "dead_lettered": by_source,
            "internal_errors": internal.num_rows,
            "redacted": redacted,
        }
        if internal.num_rows:
            receipt["internal_error_example"] = internal.column("detail")[0].as_py()
        yield receipt


def _take_redacted(table: pa.Table) -> tuple[pa.Table, int]:
    """The table without Validate's count of redacted strings, and their total: counted here, from
    the rows that land (a conflicting duplicate's verbatim lands as its dead letter instead)."""
    if N_REDACTED not in table.column_names:
        return table, 0
    total = pc.sum(table.column(N_REDACTED)).as_py() or 0
    return table.drop_columns([N_REDACTED]), int(total)


class Land(beam.PTransform):
    """Touchpoint ShardWork, survey shards and dead-letter tables -> receipts (dicts)."""

    def __init__(self, root: str, seq: int, now: datetime) -> None:
        super().__init__()
        if seq < 1:
            raise ValueError(f"batch seq must be >= 1, got {seq}")
        self._fn = LandFn(root, seq, now)

    def expand(self, elements):
        return elements | "WriteParquet" >> beam.ParDo(self._fn)
