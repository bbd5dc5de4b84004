"""Files: durable Parquet writes, orphans of crashed writers, and removals after a grace period.

Each file is written under a temporary name, fsynced, then renamed, so a final name never holds a
half-written file; nothing written is visible until a manifest listing it is committed (the
ledger). Files a commit removes stay on disk for readers of older views until they are deleted
after a grace period.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from parcours.warehouse.datasets import DatasetSpec, _spec

_SEQ_DIGITS = 10  # file names and manifests name a batch by its seq, zero-padded
_PART = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class PublishedFile:
    dataset: str
    path: str  # relative to the warehouse root, posix: manifests stay valid when the folder moves
    rows: int
    bytes: int
    partition: str  # ISO date, e.g. "2026-01-05"; the bucket number for the id index, e.g. "7"


class Files:
    """The Parquet files of a `Warehouse`: where they go, how they are written, what is left over."""

    def removed_files(self, before: datetime) -> list[Path]:
        """Files taken out by manifests committed before `before` that are still on disk."""
        state = self._state()
        found = []
        for removal in state.removals:
            if datetime.fromisoformat(removal.created_at) >= before:
                continue
            for path in removal.paths:
                if path not in state.live and (self.root / path).exists():
                    found.append(self.root / path)
        return sorted(set(found))

    def delete_removed(self, before: datetime) -> list[Path]:
        """Delete the files that manifests committed before `before` took out of the warehouse.

        Not at once: a BI tool that opened the views file before that commit still reads the old
        file list until it reconnects (DuckDB keeps the catalog it opened). The caller chooses
        `before` as now minus a grace period longer than its readers keep a connection. Needs
        the writer lock, like `remove_orphans`.
        """
        if not self.locked:
            raise RuntimeError("delete_removed() needs the warehouse lock: use `with warehouse.lock():`")
        deleted = self.removed_files(before)
        for path in deleted:
            path.unlink(missing_ok=True)
        for folder in sorted({path.parent for path in deleted}):
            _fsync_dir(folder)
        return deleted

    # -- Parquet files ---------------------------------------------------------------------

    def new_file_path(self, dataset: str, partition: str, seq: int, part: str) -> Path:
        """Where a batch's file goes. Deterministic, so a retried batch overwrites its own files
        instead of adding a second copy next to them."""
        spec = _spec(dataset)
        if spec.by_date:
            date.fromisoformat(partition)  # raises on anything but an ISO date
        elif not partition.isdigit():
            raise ValueError(f"{dataset}: partition {partition!r} is not a bucket number")
        if seq < 1:
            raise ValueError(f"batch seq must be >= 1, got {seq}")
        if not _PART.match(part):
            raise ValueError(f"file part {part!r}: use 1-64 letters, digits, '_' or '-'")
        folder = self.data_dir / dataset / f"{spec.partition_column}={partition}"
        return folder / f"b{seq:0{_SEQ_DIGITS}d}-{part}.parquet"

    def write_parquet(self, dataset: str, table: pa.Table, seq: int, part: str) -> list[PublishedFile]:
        """Write one batch's rows of a dataset, one zstd Parquet file per partition date.

        Nothing written here is visible until a manifest listing the returned files is committed.
        Each file is written under a temporary name, fsynced, then renamed, so a final name never
        holds a half-written file. The table must match the dataset's Arrow schema plus its
        date32 partition column (any column order): a drifting type would otherwise surface much
        later as a view that cannot union two files.

        Hand-written rather than `pyarrow.dataset.write_dataset`, which writes to the final
        names directly and does not fsync.
        """
        spec = _spec(dataset)
        if table.num_rows == 0:
            return []
        column = spec.partition_column
        if column not in table.column_names:
            raise ValueError(f"{dataset}: the table has no partition column {column!r}")
        if not table.schema.field(column).type.equals(spec.partition_type):
            kind = table.schema.field(column).type
            raise ValueError(f"{dataset}: partition column {column!r} must be {spec.partition_type}, got {kind}")
        if table.column(column).null_count:
            raise ValueError(f"{dataset}: {table.column(column).null_count} rows have no {column}")
        # A stable sort keeps each partition's rows in input order; one pass, whatever the number
        # of dates (none when the caller already ordered the rows by partition).
        keys = table.column(column)
        if table.num_rows > 1 and not pc.all(pc.less_equal(keys.slice(0, len(keys) - 1), keys.slice(1))).as_py():
            table = table.take(pc.sort_indices(table, sort_keys=[(column, "ascending")]))
            keys = table.column(column)
        data = _conform(spec, table.drop_columns([column]))
        published: list[PublishedFile] = []
        folders: set[Path] = set()
        dictionary_columns = _dictionary_columns(data.schema)
        offset = 0
        counts = pc.value_counts(keys)
        counts = counts.take(pc.sort_indices(counts.field("values")))  # the order of the sorted rows
        for entry in counts.to_pylist():
            day, rows = entry["values"], entry["counts"]
            name = day.isoformat() if spec.by_date else str(day)
            final = self.new_file_path(dataset, name, seq, part)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            try:
                with open(tmp, "wb") as sink:
                    pq.write_table(
                        data.slice(offset, rows),
                        sink,
                        compression=spec.batch_compression,
                        compression_level=1 if spec.batch_compression == "zstd" else None,
                        use_dictionary=dictionary_columns,
                        write_statistics=True if spec.statistics is None else list(spec.statistics),
                    )
                    sink.flush()
                    os.fsync(sink.fileno())
                os.replace(tmp, final)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            folders.add(final.parent)
            published.append(
                PublishedFile(
                    dataset=dataset,
                    path=final.relative_to(self.root).as_posix(),
                    rows=rows,
                    bytes=final.stat().st_size,
                    partition=name,
                )
            )
            offset += rows
        for folder in sorted(folders):  # once per folder: the renames of this batch are durable
            _fsync_dir(folder)
        return published

    def write_stream(
        self, dataset: str, partition: str, batches: Iterable[pa.RecordBatch], seq: int, part: str
    ) -> PublishedFile | None:
        """Write rows of one partition as one file, batch by batch: memory holds one batch.

        For rewrites of whole partitions (compaction), where the rows come from a DuckDB query
        and may be many more than fit in memory. Rows are conformed to the dataset's schema
        like `write_parquet`'s; each batch becomes a row group. None when there is no row.
        """
        spec = _spec(dataset)
        final = self.new_file_path(dataset, partition, seq, part)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        rows = 0
        try:
            with open(tmp, "wb") as sink:
                writer = None
                for batch in batches:
                    if batch.num_rows == 0:
                        continue
                    table = pa.Table.from_batches([batch])
                    table = table.select([n for n in spec.arrow_schema.names if n in table.column_names])
                    table = _conform(spec, table.cast(spec.arrow_schema) if _castable(table, spec) else table)
                    if writer is None:
                        writer = pq.ParquetWriter(
                            sink,
                            spec.arrow_schema,
                            compression="zstd",
                            compression_level=1,
                            use_dictionary=_dictionary_columns(spec.arrow_schema),
                        )
                    writer.write_table(table)
                    rows += table.num_rows
                if writer is not None:
                    writer.close()
                sink.flush()
                os.fsync(sink.fileno())
            if rows == 0:
                tmp.unlink()
                return None
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return PublishedFile(dataset, final.relative_to(self.root).as_posix(), rows, final.stat().st_size, partition)

    def orphans(self) -> list[Path]:
        """Files under data/ that no committed manifest lists: left by a batch that crashed
        before its commit (and temporary files of an interrupted write). While a batch is being
        written its files are listed here too; only `remove_orphans` under the lock is safe.

        Listed means live or removed: a file a manifest listed that is neither is one that
        `delete_removed` deleted, and nothing writes under its name again (see `Checkpoint`)."""
        if not self.data_dir.is_dir():
            return []
        state = self._state()
        listed = [
            *state.live,
            *(path for removal in state.removals for path in removal.paths),
            *(f.path for quarantine in state.quarantined.values() for f in quarantine.files),
        ]
        published = {self.root / path for path in listed}
        return sorted(
            path
            for path in self.data_dir.rglob("*")
            if path.is_file() and path.name.endswith((".parquet", ".tmp")) and path not in published
        )

    def remove_orphans(self) -> list[Path]:
        """Delete `orphans()`. Needs the writer lock, or it would delete a running batch's files."""
        if not self.locked:
            raise RuntimeError("remove_orphans() needs the warehouse lock: use `with warehouse.lock():`")
        removed = self.orphans()
        for path in removed:
            path.unlink(missing_ok=True)
        return removed


def _conform(spec: DatasetSpec, table: pa.Table) -> pa.Table:
    expected = spec.arrow_schema
    present = set(table.column_names)
    problems = []
    if missing := [name for name in expected.names if name not in present]:
        problems.append(f"missing columns {missing}")
    if unexpected := [name for name in table.column_names if name not in set(expected.names)]:
        problems.append(f"unexpected columns {unexpected}")
    for wanted in expected:
        if wanted.name not in present:
            continue
        actual = table.schema.field(wanted.name).type
        if not actual.equals(wanted.type):
            problems.append(f"{wanted.name} is {actual}, expected {wanted.type}")
        elif not wanted.nullable and table.column(wanted.name).null_count:
            problems.append(f"{wanted.name} has {table.column(wanted.name).null_count} nulls but is required")
    if problems:
        raise ValueError(f"{spec.name}: the table does not match the dataset schema: " + "; ".join(problems))
    return pa.Table.from_arrays([table.column(name) for name in expected.names], schema=expected)


def _castable(table: pa.Table, spec: DatasetSpec) -> bool:
    """Same columns, types that differ only in naming (list item names, "Etc/UTC" against
    "UTC"): a cast is safe. Anything else is left to `_conform` to report."""
    if table.column_names != spec.arrow_schema.names:
        return False
    for actual, wanted in zip(table.schema, spec.arrow_schema, strict=True):
        same_kind = (
            (pa.types.is_list(actual.type) and pa.types.is_list(wanted.type))
            or (pa.types.is_timestamp(actual.type) and pa.types.is_timestamp(wanted.type))
            or actual.type.equals(wanted.type)
        )
        if not same_kind:
            return False
    return True


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as sink:
        sink.write(data)
        sink.flush()
        os.fsync(sink.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename or link in `path` survive a power cut, not just the file's contents."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with suppress(OSError):  # some filesystems refuse fsync on a directory
            os.fsync(fd)
    finally:
        os.close(fd)


# String columns with many distinct values: dictionary encoding them costs time and space.
_HIGH_CARDINALITY = frozenset(
    {
        "event_id",
        "customer_id",
        "session_id",
        "response_id",
        "record_id",
        "properties",
        "extra",
        "detail",
        "payload_text",
        "verbatim",
        "question_id",
    }
)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Low-cardinality string columns (channel, stage, touchpoint...) and lists of them (a journey's
    path): dictionary-encoded, which also makes them faster to read."""
    names = []
    for f in schema:
        if f.name in _HIGH_CARDINALITY:
            continue
        if pa.types.is_string(f.type):
            names.append(f.name)
        elif pa.types.is_list(f.type) and pa.types.is_string(f.type.value_type):
            names.append(f"{f.name}.list.element")  # Parquet's path of a list's values
    return names
