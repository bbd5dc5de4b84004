"""The warehouse on disk: Parquet files published by manifests, and a DuckDB file of views only.

Why this shape: a DuckDB database file admits one read-write process or many read-only ones,
and a writer cannot even open the file while a BI tool (Metabase, Superset, DBeaver) holds it
read-only. So no data lives in DuckDB:

* every row is in a Parquet file under ``data/<dataset>/<partition column>=<date>/``;
* a batch becomes visible only when its manifest ``_manifests/<seq>.json`` is committed, with
  a hard link that cannot overwrite an existing one. Files of a batch that crashed before its
  commit are listed by no manifest, so no view reads them (``orphans()`` finds them);
* a manifest may also remove earlier files (a compaction replacing many small files by one):
  the live files are those committed and not removed since, and only they are read. Removed
  files stay on disk for readers of older views until ``delete_removed`` after a grace period;
* what a process needs from the manifests (live files, offsets, watermarks, backfill progress,
  removed files, batches the marts do not hold yet) is their fold, and there is one manifest
  per batch since the warehouse began: 1,440 a day at a 60 s schedule. So a compaction also
  writes a checkpoint ``_checkpoints/<seq>.json``, the fold up to its own commit, and a process
  reads the latest checkpoint and only the manifests committed after it: what opening the
  warehouse costs follows what happened since the last compaction, not the warehouse's age.
  Manifests stay as the history. An operator may archive those older than the latest checkpoint
  (seq below its own); its own manifest and every later one must stay. A checkpoint that does
  not read back as written is skipped with a warning (an older one or the manifests give the
  same state; if those are archived too, the process stops and says so); one of an unknown
  format stops the process, as it was written by another version of parcours;
* ``parcours.duckdb`` holds only views over the live files. It is rebuilt as a new file
  and moved into place with ``os.replace``: a BI tool that has the old file open keeps reading
  the old inode (Linux), and every new connection sees the new views.

The views name the Parquet files by absolute path, because DuckDB resolves a relative path
against the client's working directory, not against the database file. A moved warehouse
therefore needs its views rebuilt: ``needs_relocation()`` tells, ``rebuild_views()`` fixes it,
and every parcours command runs that check on start.

This module is storage only: what a batch contains and when it is committed is the pipeline's
business.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, overload

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from parcours.schemas.contracts import DEAD_LETTER_ARROW, SURVEY_ARROW, TOUCHPOINT_ARROW, UTC_MICROS

# DuckDB 1.x clients (most BI drivers) cannot open a file written with DuckDB 2.0's default
# storage format; v1.0.0 is the oldest format the 2.0 writer offers and every 1.x reads it.
STORAGE_VERSION = "v1.0.0"
MODEL_LAYERS = ("staging", "intermediate", "marts")
META_VIEW = "parcours_meta"
SETTINGS_VIEW = "parcours_settings"
STAGES_VIEW = "parcours_stages"

_SEQ_DIGITS = 10
_MANIFEST_NAME = re.compile(rf"^(\d{{{_SEQ_DIGITS}}})\.json$")
_PART = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VIEW_HEADER = re.compile(r"^--\s*view:\s*(\S+)\s*$")
_BUILD_ALIAS = "parcours_build"


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """A dataset stored as hive-partitioned Parquet.

    `partition_column` is a date32 column of the tables handed to `write_parquet`; it is not
    stored inside the files but as the directory name, where DuckDB reads it back as a DATE.
    """

    name: str
    arrow_schema: pa.Schema
    partition_column: str


def _extend(schema: pa.Schema, *fields: pa.Field) -> pa.Schema:
    return pa.schema([*schema, *fields])


_LINEAGE = (
    pa.field("source", pa.string()),  # topic name or file path
    pa.field("source_partition", pa.int32()),
    pa.field("source_offset", pa.int64()),
)
_BATCH = (pa.field("batch_seq", pa.int64()), pa.field("ingested_at", UTC_MICROS))
_STRINGS = pa.list_(pa.string())

# The columns of the models `int_sessions_aggregated` / `int_journeys_aggregated`, as DuckDB
# returns them (a test checks they agree, so a model change that forgets this fails loudly).
SESSION_ARROW = pa.schema(
    [
        pa.field("session_id", pa.string()),
        pa.field("customer_id", pa.string()),
        pa.field("started_at", UTC_MICROS),
        pa.field("ended_at", UTC_MICROS),
        pa.field("started_date", pa.date32()),
        pa.field("duration_in_s", pa.int64()),
        pa.field("n_events", pa.int64()),
        pa.field("channels", _STRINGS),
        pa.field("n_channels", pa.int64()),
        pa.field("is_omnichannel", pa.bool_()),
        pa.field("first_touchpoint", pa.string()),
        pa.field("last_touchpoint", pa.string()),
        pa.field("first_stage", pa.string()),
        pa.field("last_stage", pa.string()),
        pa.field("journey_cycle", pa.int32()),
        pa.field("revenue", pa.float64()),
        pa.field("segment", pa.string()),
        pa.field("product_line", pa.string()),
    ]
)
JOURNEY_ARROW = pa.schema(
    [
        pa.field("customer_id", pa.string()),
        pa.field("journey_cycle", pa.int32()),
        pa.field("cycle_type", pa.string()),
        pa.field("started_at", UTC_MICROS),
        pa.field("ended_at", UTC_MICROS),
        pa.field("duration_in_s", pa.int64()),
        pa.field("n_events", pa.int64()),
        pa.field("n_sessions", pa.int64()),
        pa.field("n_channels", pa.int64()),
        pa.field("channels", _STRINGS),
        pa.field("path", _STRINGS),
        pa.field("stage_path", _STRINGS),
        pa.field("channel_path", _STRINGS),
        pa.field("path_length", pa.int64()),
        pa.field("last_stage", pa.string()),
        pa.field("last_touchpoint", pa.string()),
        pa.field("last_outcome", pa.string()),
        pa.field("is_converted", pa.bool_()),
        pa.field("is_churned", pa.bool_()),
        pa.field("revenue", pa.float64()),
        pa.field("segment", pa.string()),
        pa.field("product_line", pa.string()),
    ]
)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "touchpoints",
            _extend(
                TOUCHPOINT_ARROW,
                pa.field("stage_source", pa.string()),
                pa.field("session_id", pa.string()),
                pa.field("session_started_at", UTC_MICROS),
                pa.field("journey_cycle", pa.int32()),
                pa.field("cycle_type", pa.string()),
                pa.field("step_index", pa.int32()),
                *_LINEAGE,
                *_BATCH,
            ),
            "event_date",
        ),
        DatasetSpec("survey_answers", _extend(SURVEY_ARROW, *_LINEAGE, *_BATCH), "answered_date"),
        DatasetSpec("dead_letters", _extend(DEAD_LETTER_ARROW, *_BATCH), "ingested_date"),
        DatasetSpec(
            "rewrites",
            pa.schema(
                [
                    pa.field("customer_id", pa.string()),
                    pa.field("from_at", UTC_MICROS),
                    pa.field("batch_seq", pa.int64()),
                ]
            ),
            "batch_date",
        ),
        # Per customer touched by a batch, its latest event after that batch: what the next
        # events continue (session, cycle). The row of the highest batch_seq is current.
        DatasetSpec(
            "customer_state",
            pa.schema(
                [
                    pa.field("customer_id", pa.string()),
                    pa.field("event_id", pa.string()),
                    pa.field("occurred_at", UTC_MICROS),
                    pa.field("session_id", pa.string()),
                    pa.field("session_started_at", UTC_MICROS),
                    pa.field("journey_cycle", pa.int32()),
                    pa.field("cycle_type", pa.string()),
                    pa.field("step_index", pa.int32()),
                    pa.field("outcome", pa.string()),
                    pa.field("batch_seq", pa.int64()),
                ]
            ),
            "batch_date",
        ),
        # Materialised marts: rows of the models `int_sessions_aggregated` and
        # `int_journeys_aggregated`, recomputed for the groups each batch touched. Which rows are
        # current is said by `refreshes`, read by `stg_parcours__sessions` / `__journeys`.
        DatasetSpec("sessions", _extend(SESSION_ARROW, pa.field("batch_seq", pa.int64())), "batch_date"),
        DatasetSpec("journeys", _extend(JOURNEY_ARROW, pa.field("batch_seq", pa.int64())), "batch_date"),
        # Per customer whose marts a batch refreshed: from which session start and which journey
        # cycle on its rows were recomputed. They supersede that customer's older rows from there.
        DatasetSpec(
            "refreshes",
            pa.schema(
                [
                    pa.field("customer_id", pa.string()),
                    pa.field("sessions_from_at", UTC_MICROS),
                    pa.field("journeys_from_cycle", pa.int32()),
                    pa.field("batch_seq", pa.int64()),
                ]
            ),
            "batch_date",
        ),
    )
}
# Rollups: the marts at the grain dashboards chart them at (per day or ISO week), landed by the
# marts refresh for the days and weeks it touched, one file per partition: a refresh replaces a
# partition's file (the manifest removes the old one), so every live row is current. Their
# columns are the models `int_*_counted_*` (a test checks they agree).
_ROLLUP_KEYS = {
    "segment": pa.string(),
    "product_line": pa.string(),
    "cycle_type": pa.string(),
    "channel": pa.string(),
    "stage": pa.string(),
    "touchpoint": pa.string(),
}


def _rollup(name: str, partition_column: str, keys: tuple[str, ...], *measures: pa.Field) -> DatasetSpec:
    columns = [pa.field(key, _ROLLUP_KEYS[key]) for key in keys]
    return DatasetSpec(name, pa.schema([*columns, *measures, pa.field("batch_seq", pa.int64())]), partition_column)


_COUNT = pa.int64()
ROLLUPS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _rollup(
            "sessions_daily",
            "started_date",
            ("channel", "segment", "product_line"),
            pa.field("n_sessions", _COUNT),
            pa.field("n_omnichannel_sessions", _COUNT),
            pa.field("n_customers", _COUNT),
            pa.field("n_events", _COUNT),
            pa.field("total_duration_in_s", _COUNT),
            pa.field("revenue", pa.float64()),
        ),
        _rollup(
            "touchpoints_daily",
            "event_date",
            ("stage", "channel", "touchpoint", "segment", "product_line"),
            pa.field("n_events", _COUNT),
            pa.field("n_customers", _COUNT),
            pa.field("revenue", pa.float64()),
        ),
        _rollup(
            "journey_stages_weekly",
            "started_week",
            ("stage", "cycle_type", "segment", "product_line"),
            pa.field("n_journeys", _COUNT),
            pa.field("n_customers", _COUNT),
            pa.field("n_converted", _COUNT),
            pa.field("n_churned", _COUNT),
        ),
        DatasetSpec(
            "journey_paths_weekly",
            pa.schema(
                [
                    pa.field("first_steps", _STRINGS),
                    pa.field("cycle_type", pa.string()),
                    pa.field("is_converted", pa.bool_()),
                    pa.field("is_churned", pa.bool_()),
                    pa.field("n_journeys", _COUNT),
                    pa.field("n_events", _COUNT),
                    pa.field("revenue", pa.float64()),
                    pa.field("batch_seq", pa.int64()),
                ]
            ),
            "started_week",
        ),
    )
}
DATASETS.update(ROLLUPS)

# Datasets whose rows only say which rows of other datasets are superseded. Once a compaction
# has dropped the rows they supersede, they have nothing left to say and are removed whole.
MARKER_DATASETS = ("rewrites", "refreshes")


@dataclass(frozen=True)
class PublishedFile:
    dataset: str
    path: str  # relative to the warehouse root, posix: manifests stay valid when the folder moves
    rows: int
    bytes: int
    partition: str  # ISO date, e.g. "2026-01-05"


@dataclass(frozen=True)
class Manifest:
    """One committed batch. Immutable once written; the warehouse state is the sum of them."""

    seq: int
    created_at: str  # UTC ISO 8601
    config_version: int
    config_fingerprint: str
    files: tuple[PublishedFile, ...]
    offsets: dict[str, dict[int, tuple[int, int]]]  # topic -> partition -> [start, end) of this batch
    watermarks: dict[str, dict[int, str]]  # topic -> partition -> max landed event time, cumulative
    counts: dict[str, int]
    sources: tuple[dict, ...] = field(default=())  # file backfills: {"path", "key", "range": [start, end), "records"}
    settings: dict[str, Any] = field(default_factory=dict)  # JourneyConfig.settings_record() of the run
    # Paths of earlier files this commit takes out of the warehouse (a compaction replaced them).
    # They stay on disk for readers of older views until `delete_removed` after a grace period.
    removed: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        # Indented: manifests are the first thing a person reads when a number looks wrong.
        return msgspec.json.format(msgspec.json.encode(self), indent=2) + b"\n"

    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        """Decode and type-check (int partition keys, [start, end) pairs) in one pass."""
        return msgspec.json.decode(data, type=cls)


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse lock: a second run must stop at once, not queue."""


# Counts key of a commit after which the sessions and journeys marts summarise every batch
# committed so far (a marts refresh, or a compaction, which runs one first).
MARTS_THROUGH = "marts_through_seq"


class ManifestExists(FileExistsError):
    """A manifest with this seq is already committed: two writers raced, or a batch was replayed."""


# -- checkpoints ---------------------------------------------------------------------------

CHECKPOINT_FORMAT = 1  # raised on any change that a reader of the previous format would misread
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Removal:
    """Paths one commit took out of the warehouse: `delete_removed` deletes them once the grace
    period after that commit's `created_at` is over."""

    seq: int
    created_at: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Checkpoint:
    """What manifests 1..seq add up to: all a process needs from them to open the warehouse.

    Stored as `_checkpoints/<seq>.json`: `{"format": 1, "sha256": <of the state's bytes>,
    "state": <this record>}` on one line. The digest is what lets a reader tell a damaged file
    from a good one: JSON that still parses after a flipped bit would otherwise be believed.
    """

    seq: int
    # Of the latest manifest (seq): when, under which configuration, and its cumulative watermarks.
    created_at: str
    config_version: int
    config_fingerprint: str
    settings: dict[str, Any]
    watermarks: dict[str, dict[int, str]]
    offsets: dict[str, dict[int, int]]  # topic -> partition -> next offset (the highest end committed)
    live: tuple[PublishedFile, ...]  # committed and not removed since, in commit order
    # Only the removed files still on disk when the checkpoint was written. A deleted one is
    # gone for good: its name holds the seq of the batch that wrote it, and no later batch
    # writes under an old seq, so nothing can appear there to be mistaken for an orphan.
    removals: tuple[Removal, ...]
    file_progress: dict[str, int]  # backfill file key -> byte offset landed up to (`Manifest.sources`)
    # Batches the sessions and journeys marts do not summarise yet, read from their manifests
    # when asked for. None after a compaction, which needs the marts current.
    marts_pending: tuple[int, ...]

    def to_json(self) -> bytes:
        state = msgspec.json.encode(self)
        envelope = {
            "format": CHECKPOINT_FORMAT,
            "sha256": hashlib.sha256(state).hexdigest(),
            "state": msgspec.Raw(state),
        }
        return msgspec.json.encode(envelope) + b"\n"

    @classmethod
    def from_json(cls, data: bytes, source: str) -> Checkpoint:
        """Decode, or raise `CorruptCheckpoint` (damaged: skip it) or `CheckpointError` (unknown
        format: stop). `source` names the file in the messages."""
        try:
            written_format = msgspec.json.decode(data, type=_CheckpointFormat).format
        except msgspec.DecodeError as exc:
            raise CorruptCheckpoint(f"checkpoint {source} is damaged ({exc})") from None
        if written_format != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"checkpoint {source} is in format {written_format}, but this parcours reads format "
                f"{CHECKPOINT_FORMAT} only: it was written by another version of parcours. Run that "
                "version, or move the _checkpoints folder aside to read the manifests instead "
                "(slower, and only if none was archived)"
            )
        try:
            envelope = msgspec.json.decode(data, type=_CheckpointFile)
            if hashlib.sha256(envelope.state).hexdigest() != envelope.sha256:
                raise CorruptCheckpoint(f"checkpoint {source} is damaged (its state does not match its sha256)")
            return msgspec.json.decode(envelope.state, type=cls)
        except msgspec.DecodeError as exc:
            raise CorruptCheckpoint(f"checkpoint {source} is damaged ({exc})") from None


class _CheckpointFormat(msgspec.Struct):
    format: int


class _CheckpointFile(msgspec.Struct):
    format: int
    sha256: str
    state: msgspec.Raw  # the state's bytes exactly as written, which the digest is of


class CorruptCheckpoint(ValueError):
    """A checkpoint that does not read back as written (truncated, edited, bit rot). It is only
    a summary of manifests, so readers skip it for an older one, or for the manifests."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read past: an unknown format, or damaged while the manifests
    it summarises are no longer on disk. Guessing would publish a wrong set of files."""


@dataclass
class _State:
    """The warehouse state: manifests folded one at a time, in seq order, onto a checkpoint
    (`base` its seq) or onto nothing (`base` 0). A process reads it with or without a
    checkpoint, and a checkpoint is written from it, so the two cannot disagree."""

    base: int = 0
    tail: list[int] = field(default_factory=list)  # seqs folded onto the base, in order
    seq: int = 0
    created_at: str = ""
    config_version: int = 0
    config_fingerprint: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    watermarks: dict[str, dict[int, str]] = field(default_factory=dict)
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    live: dict[str, PublishedFile] = field(default_factory=dict)
    removals: list[Removal] = field(default_factory=list)
    file_progress: dict[str, int] = field(default_factory=dict)
    marts_pending: list[int] = field(default_factory=list)

    @classmethod
    def starting_at(cls, checkpoint: Checkpoint) -> _State:
        return cls(
            base=checkpoint.seq,
            seq=checkpoint.seq,
            created_at=checkpoint.created_at,
            config_version=checkpoint.config_version,
            config_fingerprint=checkpoint.config_fingerprint,
            settings=checkpoint.settings,
            watermarks=checkpoint.watermarks,
            offsets={topic: dict(partitions) for topic, partitions in checkpoint.offsets.items()},
            live={published.path: published for published in checkpoint.live},
            removals=list(checkpoint.removals),
            file_progress=dict(checkpoint.file_progress),
            marts_pending=list(checkpoint.marts_pending),
        )

    def add(self, manifest: Manifest) -> None:
        """Fold in the next manifest."""
        self.tail.append(manifest.seq)
        self.seq = manifest.seq
        self.created_at = manifest.created_at
        self.config_version = manifest.config_version
        self.config_fingerprint = manifest.config_fingerprint
        self.settings = manifest.settings
        self.watermarks = manifest.watermarks  # cumulative: each manifest carries them forward
        for topic, partitions in manifest.offsets.items():
            known = self.offsets.setdefault(topic, {})
            for partition, (_start, end) in partitions.items():
                known[partition] = max(end, known.get(partition, end))
        for published in manifest.files:
            self.live.setdefault(published.path, published)
        for path in manifest.removed:
            self.live.pop(path, None)
        if manifest.removed:
            self.removals.append(Removal(manifest.seq, manifest.created_at, manifest.removed))
        for source in manifest.sources:
            key = source.get("key")
            if key:
                self.file_progress[key] = max(self.file_progress.get(key, 0), source["range"][1])
        if MARTS_THROUGH in manifest.counts:
            self.marts_pending = []
        elif any(published.dataset in ("touchpoints", "rewrites") for published in manifest.files):
            self.marts_pending.append(manifest.seq)

    def checkpoint(self, on_disk: Callable[[str], bool]) -> Checkpoint:
        removals = []
        for removal in self.removals:
            paths = tuple(path for path in removal.paths if on_disk(path))
            if paths:
                removals.append(Removal(removal.seq, removal.created_at, paths))
        return Checkpoint(
            seq=self.seq,
            created_at=self.created_at,
            config_version=self.config_version,
            config_fingerprint=self.config_fingerprint,
            settings=self.settings,
            watermarks=self.watermarks,
            offsets=self.offsets,
            live=tuple(self.live.values()),
            removals=tuple(removals),
            file_progress=self.file_progress,
            marts_pending=tuple(self.marts_pending),
        )


class ManifestHistory(Sequence[Manifest]):
    """The committed manifests in seq order, each read from disk when first indexed.

    One manifest per batch, kept forever: most callers want the last one (`[-1]`), and reading
    them all is the cost checkpoints exist to avoid. Compares equal to a list of the same
    manifests.
    """

    def __init__(self, read: Callable[[int], Manifest], seqs: list[int]) -> None:
        self._read = read
        self.seqs = seqs

    def __len__(self) -> int:
        return len(self.seqs)

    @overload
    def __getitem__(self, index: int) -> Manifest: ...

    @overload
    def __getitem__(self, index: slice) -> list[Manifest]: ...

    def __getitem__(self, index: int | slice) -> Manifest | list[Manifest]:
        if isinstance(index, slice):
            return [self._read(seq) for seq in self.seqs[index]]
        return self._read(self.seqs[index])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ManifestHistory | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # equal as a list is, so unhashable as a list is

    def __repr__(self) -> str:
        span = f"{self.seqs[0]}..{self.seqs[-1]}" if self.seqs else "none"
        return f"<ManifestHistory: {len(self.seqs)} manifests, seqs {span}>"


class Warehouse:
    """The warehouse folder. Cheap to construct; folders are created when first written."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        # DuckDB's hive partitioning reads every `key=value` folder of a path as a column, the
        # warehouse's own parents included: a root under `/data/env=prod/` would add a column.
        bad = [part for part in self.root.parts if "=" in part]
        if bad:
            raise ValueError(f"warehouse root {self.root}: no folder of its path may hold '=' ({bad[0]!r})")
        self.db_path = self.root / "parcours.duckdb"
        self.data_dir = self.root / "data"
        self.manifest_dir = self.root / "_manifests"
        self.staging_dir = self.root / "_staging"
        self.checkpoint_dir = self.root / "_checkpoints"
        self._lock_fd: int | None = None
        self._manifest_cache: dict[int, Manifest] = {}
        self._folded: _State | None = None

    # -- the writer lock -------------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the exclusive writer lock, or raise `WarehouseBusy` at once.

        Non-blocking on purpose: a second `parcours run` started by cron while the first one is
        still landing should say who holds the warehouse and exit, not pile up behind it.
        `flock` is released by the kernel when the holder dies, so a crash never leaves a stale
        lock; the pid and start time written into the file are only there for the message.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".lock"
        # O_CREAT without O_TRUNC: truncating before holding the lock would erase the holder's note.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise WarehouseBusy(_busy_message(self.root, path, fd)) from None
            note = {"pid": os.getpid(), "since": _utc_iso(datetime.now(UTC)), "command": " ".join(sys.argv)}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(note).encode() + b"\n", 0)
            self._lock_fd = fd
            try:
                yield
            finally:
                self._lock_fd = None
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # releases the flock

    @property
    def locked(self) -> bool:
        """True while this object holds the writer lock."""
        return self._lock_fd is not None

    # -- manifests -------------------------------------------------------------------------

    def manifests(self) -> ManifestHistory:
        """The committed manifests on disk in seq order, each read when first indexed.

        The history: `manifests()[-1]` reads one file, iterating reads them all. What the
        warehouse holds (live files, offsets...) comes from `_state`, never from iterating this.
        """
        return ManifestHistory(self._manifest, _seqs_in(self.manifest_dir))

    def _manifest(self, seq: int) -> Manifest:
        """One committed manifest. Committed files never change, so each is read once."""
        manifest = self._manifest_cache.get(seq)
        if manifest is None:
            path = self.manifest_dir / f"{seq:0{_SEQ_DIGITS}d}.json"
            manifest = Manifest.from_json(path.read_bytes())
            if manifest.seq != seq:
                raise ValueError(f"{path}: holds seq {manifest.seq}, its name says {path.stem}")
            self._manifest_cache[seq] = manifest
        return manifest

    def _state(self) -> _State:
        """The state as of the manifests on disk now: the latest checkpoint, then the manifests
        after it. Folded once per process, then brought up to date by the manifests committed since."""
        seqs = _seqs_in(self.manifest_dir)
        state = self._folded
        if state is not None:
            after = [seq for seq in seqs if seq > state.base]
            if after[: len(state.tail)] != state.tail:  # not only new ones at the end: start over
                state = None
        if state is None:
            state = self._open_state(seqs)
            after = [seq for seq in seqs if seq > state.base]
        for seq in after[len(state.tail) :]:
            state.add(self._manifest(seq))
        self._folded = state
        return state

    def _open_state(self, manifest_seqs: list[int]) -> _State:
        """Start from the newest checkpoint that reads back as written, else from nothing.

        A damaged checkpoint is skipped with a warning, which repeats in every process until a
        compaction writes a newer one: an older checkpoint or the manifests give the same state,
        as long as every manifest it summarised after the fallback is still on disk. When some
        are not (archived), no state read now would be the warehouse's: stop and say what to do.
        """
        damaged: list[tuple[int, str]] = []
        state = _State()
        for seq in reversed(_seqs_in(self.checkpoint_dir)):
            path = self.checkpoint_dir / f"{seq:0{_SEQ_DIGITS}d}.json"
            try:
                checkpoint = Checkpoint.from_json(path.read_bytes(), str(path))
                if checkpoint.seq != seq:
                    raise CorruptCheckpoint(f"checkpoint {path} is damaged (it holds seq {checkpoint.seq})")
            except CorruptCheckpoint as exc:
                damaged.append((seq, str(exc)))
                continue
            state = _State.starting_at(checkpoint)
            break
        if damaged:
            summarised = range(state.base + 1, damaged[0][0] + 1)
            missing = sorted(set(summarised) - set(manifest_seqs))
            if missing:
                raise CheckpointError(
                    f"{damaged[0][1]}, and manifests {missing[0]}..{missing[-1]} it summarises are not in "
                    f"{self.manifest_dir} ({len(missing)} missing): restore them from the archive, or a "
                    "good copy of the checkpoint"
                )
            instead = f"checkpoint {state.base} and the manifests after it" if state.base else "every manifest"
            for _seq, reason in damaged:
                log.warning("%s: ignored, reading %s instead", reason, instead)
        return state

    def write_checkpoint(self) -> Path:
        """Write `_checkpoints/<seq>.json` for the latest commit: from then on, processes opening
        the warehouse read it and the manifests after it instead of every manifest.

        A compaction calls it after its commit. Written like a manifest (temporary file, fsync,
        rename, fsync of the folder), so a crash leaves the old checkpoints and the manifests,
        which read the same. Needs the writer lock: a commit landing meanwhile would be missed.
        """
        if not self.locked:
            raise RuntimeError("write_checkpoint() needs the warehouse lock: use `with warehouse.lock():`")
        state = self._state()
        if state.seq == 0:
            raise ValueError(f"warehouse {self.root} has no commit yet: nothing to checkpoint")
        checkpoint = state.checkpoint(on_disk=lambda path: (self.root / path).exists())
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.checkpoint_dir.glob("*.tmp"):  # under the lock, only a dead write leaves one
            stale.unlink(missing_ok=True)
        final = self.checkpoint_dir / f"{checkpoint.seq:0{_SEQ_DIGITS}d}.json"
        tmp = final.with_name(f"{final.name}.{os.getpid()}.tmp")
        try:
            _write_durably(tmp, checkpoint.to_json())
            os.replace(tmp, final)  # the same seq, the same state: replacing one is harmless
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.checkpoint_dir)
        return final

    def marts_pending(self) -> list[Manifest]:
        """Committed batches the sessions and journeys marts do not summarise yet, oldest first."""
        return [self._manifest(seq) for seq in self._state().marts_pending]

    def next_seq(self) -> int:
        return self._state().seq + 1

    def commit(self, manifest: Manifest) -> None:
        """Publish a batch atomically: after this returns, and only then, its files are visible.

        The manifest is written and fsynced under a temporary name, then hard-linked to its final
        name: unlike a rename, `link` fails when the target exists, so a batch can never replace
        a committed one (`ManifestExists`). The files it lists must already be on disk with the
        recorded size; `write_parquet` fsynced them before returning.
        """
        if manifest.seq < 1:
            raise ValueError(f"manifest seq must be >= 1, got {manifest.seq}")
        problems = []
        for published in manifest.files:
            path = self.root / published.path
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                problems.append(f"{published.path}: missing")
                continue
            if size != published.bytes:
                problems.append(f"{published.path}: {size} bytes on disk, manifest says {published.bytes}")
        if manifest.removed:
            live = self._live_files()
            problems += [f"{path}: removed, but not a live file" for path in manifest.removed if path not in live]
        if problems:
            listed = "; ".join(problems)
            raise ValueError(f"manifest {manifest.seq} lists files that are not as written: {listed}")
        self.manifest_dir.mkdir(parents=True, exist_ok=True)
        final = self.manifest_dir / f"{manifest.seq:0{_SEQ_DIGITS}d}.json"
        tmp = final.with_name(f"{final.name}.{os.getpid()}.tmp")
        try:
            _write_durably(tmp, manifest.to_json())
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise ManifestExists(
                    f"manifest seq {manifest.seq} is already committed ({final}); "
                    f"the next free seq is {self.next_seq()}"
                ) from None
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.manifest_dir)
        self._manifest_cache[manifest.seq] = manifest

    def offsets(self) -> dict[str, dict[int, int]]:
        """topic -> partition -> next offset to read: the highest end committed by any batch."""
        return {topic: dict(partitions) for topic, partitions in self._state().offsets.items()}

    def watermarks(self) -> dict[str, dict[int, datetime]]:
        """From the latest manifest only: each manifest carries the cumulative watermarks forward."""
        return {
            topic: {partition: datetime.fromisoformat(value) for partition, value in partitions.items()}
            for topic, partitions in self._state().watermarks.items()
        }

    def file_progress(self) -> dict[str, int]:
        """Backfill file key -> byte offset up to which it was landed (`Manifest.sources`)."""
        return dict(self._state().file_progress)

    def published_files(self, dataset: str) -> list[str]:
        """Relative paths of the dataset's live files (committed, not removed since), in commit order."""
        _spec(dataset)
        return [path for path, published in self._live_files().items() if published.dataset == dataset]

    def _live_files(self) -> dict[str, PublishedFile]:
        return dict(self._state().live)

    def live_files(self, dataset: str) -> list[PublishedFile]:
        """The dataset's live files with their partition, rows and size, in commit order."""
        _spec(dataset)
        return [published for published in self._live_files().values() if published.dataset == dataset]

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
        date.fromisoformat(partition)  # raises on anything but an ISO date
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
        if not table.schema.field(column).type.equals(pa.date32()):
            kind = table.schema.field(column).type
            raise ValueError(f"{dataset}: partition column {column!r} must be date32, got {kind}")
        if table.column(column).null_count:
            raise ValueError(f"{dataset}: {table.column(column).null_count} rows have no {column}")
        # A stable sort keeps each partition's rows in input order; one pass, whatever the number of dates.
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
            final = self.new_file_path(dataset, day.isoformat(), seq, part)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            try:
                with open(tmp, "wb") as sink:
                    pq.write_table(
                        data.slice(offset, rows),
                        sink,
                        compression="zstd",
                        compression_level=1,
                        use_dictionary=dictionary_columns,
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
                    partition=day.isoformat(),
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
        listed = [*state.live, *(path for removal in state.removals for path in removal.paths)]
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

    # -- the DuckDB file of views ----------------------------------------------------------

    def views_outdated(self) -> str | None:
        """Why `parcours.duckdb` does not describe this warehouse as it is, or None when it does.

        Reasons: the file is missing or cannot be read (then a rebuild is the safe answer); its
        views point at another root (the folder was moved or copied: the absolute paths inside
        are dead); it was built before the latest manifest (a run crashed between commit and
        rebuild). The file is opened through ATTACH from a fresh in-memory database, because a
        `duckdb.connect(path)` in a process that already has the file open returns that cached,
        possibly stale, instance.
        """
        if not self.db_path.exists():
            return f"{self.db_path} does not exist"
        try:
            with duckdb.connect(":memory:") as con:
                con.execute(f"ATTACH {_literal(str(self.db_path))} AS current_views (READ_ONLY)")
                meta = con.execute(f"select root, last_seq from current_views.{META_VIEW}").fetchone()
        except duckdb.Error as exc:
            return f"{self.db_path} cannot be read ({exc})"
        root, last_seq = meta
        if root != str(self.root):
            return f"{self.db_path} has views over {root}, but the warehouse is now at {self.root}"
        manifests = self.manifests()
        latest = manifests[-1].seq if manifests else None
        if last_seq != latest:
            return f"{self.db_path} was built at manifest {last_seq}, the latest is {latest}"
        return None

    def needs_relocation(self) -> bool:
        """True when the views must be rebuilt before anyone queries them, above all because the
        warehouse folder moved (see `views_outdated` for the reason). Every parcours command calls
        this on start and then `rebuild_views()`; rebuilding is always safe, so doubt means yes."""
        return self.views_outdated() is not None

    def rebuild_views(self, sql_dir: Traversable | None = None) -> Path:
        """Build a new `parcours.duckdb` holding only views, and move it over the old one.

        * `raw_<dataset>`: the dataset's committed files, by absolute path, with the partition
          column read back from the folder name as a DATE; a typed empty view while a dataset
          has no file, so BI tools and models still see its columns;
        * the models of `sql_dir` (default: the `parcours.sql` package), folder by folder
          (staging, intermediate, marts), each file a `create view`. The view is named after the
          file unless a header line says `-- view: <name>`. Each is created after the models it
          reads, found in its text (`model_references`): a cycle, or a model reading a later
          layer, fails the build with the files named;
        * `parcours_meta`: the root the views were built for, when, and from which manifests.

        The file is written in DuckDB's v1.0.0 storage format so DuckDB 1.x clients can open it.
        Readers holding the old file keep their snapshot; a failed build leaves the old file in
        place. Builds are serialised by a blocking lock on `.views.lock` (they take milliseconds),
        and each one reads the manifests under it, so a slow build can never move a file built
        from fewer manifests over a newer one. Literals are formatted into the DDL because DuckDB
        takes no bound parameters in a view definition; they are quoted by `_literal`.
        """
        models = _read_models(sql_dir if sql_dir is not None else resources.files("parcours.sql"))
        self.root.mkdir(parents=True, exist_ok=True)
        with self._views_lock():
            # Under the lock no other build is running, so any temporary file is a dead build's.
            for stale in self.root.glob(".parcours.duckdb.*.tmp*"):
                stale.unlink(missing_ok=True)
            manifests = self.manifests()
            tmp = self.root / f".parcours.duckdb.{os.getpid()}.tmp"
            try:
                with duckdb.connect(":memory:") as con:
                    options = f"STORAGE_VERSION {_literal(STORAGE_VERSION)}"
                    con.execute(f"ATTACH {_literal(str(tmp))} AS {_BUILD_ALIAS} ({options})")
                    con.execute(f"USE {_BUILD_ALIAS}")
                    con.execute(self._meta_view_sql(manifests))
                    self._create_views(con, models, _latest_settings(manifests))
                    con.execute("USE memory")
                    con.execute(f"DETACH {_BUILD_ALIAS}")  # checkpoints: no WAL is left beside the file
                # A WAL left by someone who opened the old file read-write belongs to the old file:
                # DuckDB would refuse to open the new one beside it. This file is regenerated, so
                # nothing a user wrote into it is meant to survive.
                self.db_path.with_name(self.db_path.name + ".wal").unlink(missing_ok=True)
                os.replace(tmp, self.db_path)
            except BaseException:
                for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                    leftover.unlink(missing_ok=True)
                raise
            _fsync_dir(self.root)
        return self.db_path

    def create_views(
        self, con: duckdb.DuckDBPyConnection, *, adding: Iterable[PublishedFile] = (), settings: dict | None = None
    ) -> None:
        """Create every view of the views file in `con` (an in-memory connection of the caller's),
        over the live files plus `adding`: the warehouse as it will read once a commit listing
        those files lands. The marts refresh computes the rollups through it, from the same
        models the views file holds."""
        models = _read_models(resources.files("parcours.sql"))
        self._create_views(con, models, settings or _latest_settings(self.manifests()), adding=tuple(adding))

    def _create_views(
        self,
        con: duckdb.DuckDBPyConnection,
        models: list[_Model],
        settings: dict[str, Any],
        adding: tuple[PublishedFile, ...] = (),
    ) -> None:
        for spec in DATASETS.values():
            paths = self.published_files(spec.name) + [f.path for f in adding if f.dataset == spec.name]
            con.execute(raw_view_sql(con, spec, [str(self.root / path) for path in paths]))
        for statement in settings_views_sql(settings):
            con.execute(statement)
        _create_models(con, models)

    def _meta_view_sql(self, manifests: Sequence[Manifest]) -> str:
        last_seq = str(manifests[-1].seq) if manifests else "null"
        built_at = _utc_iso(datetime.now(UTC))
        return (
            f"create view {META_VIEW} as select {_literal(str(self.root))} as root, "
            f"cast({_literal(built_at)} as TIMESTAMPTZ) as built_at, "
            f"cast({len(manifests)} as INTEGER) as n_manifests, cast({last_seq} as BIGINT) as last_seq"
        )

    @contextmanager
    def _views_lock(self) -> Iterator[None]:
        fd = os.open(self.root / ".views.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _latest_settings(manifests: Sequence[Manifest]) -> dict[str, Any]:
    """The latest manifest's settings: the rules that produced the data. Before the first
    batch, the default configuration's, so the models always find their settings."""
    if manifests and manifests[-1].settings:
        return manifests[-1].settings
    from parcours.config import load_config

    return load_config().settings_record()


def model_sql(layer: str, name: str) -> str:
    """The select of the SQL model `sql/<layer>/<name>.sql`, for a temporary view or a query of
    the pipeline's own: the pipeline runs the same model definitions the views file holds."""
    text = resources.files("parcours.sql").joinpath(layer, f"{name}.sql").read_text("utf-8")
    return text.rstrip().rstrip(";")


def settings_views_sql(settings: dict[str, Any], *, temporary: bool = False) -> list[str]:
    """`parcours_settings` (one row) and `parcours_stages` (one row per lifecycle stage), from a
    `JourneyConfig.settings_record()`. Shared by the views file and by the pipeline's refresh of
    the marts, which runs the same models.

    Generated from the record, not listed by hand: a key ending in `_in_s` is an INTERVAL column
    without the suffix, a list of strings a VARCHAR[], a mapping keyed by stage (named in the
    plural) a column of `parcours_stages` in the singular (`drop_off_timeouts_in_s` ->
    `drop_off_timeout`). The types and the key
    order come from the default configuration's record, so a record written by an older
    parcours that lacks a key gets the default's value for it.
    """
    create = "create or replace temp view" if temporary else "create view"
    default = _default_settings()
    stages = settings["stages"]
    row: list[str] = []
    per_stage: list[tuple[str, str, dict]] = []
    for key, template in default.items():
        value = settings.get(key, template)
        if key == "stages":
            continue
        if isinstance(template, dict):  # keyed by stage
            name = key.removesuffix("_in_s").removesuffix("s")  # named in the plural: one per stage
            per_stage.append((key, name, value))
            continue
        row.append(f"{_setting_literal(key, template, value)} as {_quote(key.removesuffix('_in_s'))}")
    stage_rows = []
    for rank, stage in enumerate(stages):
        columns = [f"{_literal(stage)} as stage", f"cast({rank} as INTEGER) as stage_rank"]
        columns += [
            f"{_setting_literal(key, next(iter(default[key].values())), value.get(stage))} as {_quote(name)}"
            for key, name, value in per_stage
        ]
        stage_rows.append("select " + ", ".join(columns))
    return [
        f"{create} {SETTINGS_VIEW} as select {', '.join(row)}",
        f"{create} {STAGES_VIEW} as {' union all '.join(stage_rows)}",
    ]


@functools.cache
def _default_settings() -> dict[str, Any]:
    from parcours.config import load_config

    return load_config().settings_record()


def _setting_literal(key: str, template: Any, value: Any) -> str:
    """One setting as a typed SQL literal; the type is the default record's (`template`)."""
    if key.endswith("_in_s"):
        return "cast(null as INTERVAL)" if value is None else f"to_seconds(cast({int(value)} as BIGINT))"
    if isinstance(template, bool):
        return "cast(null as BOOLEAN)" if value is None else ("true" if value else "false")
    if isinstance(template, int):
        return "cast(null as INTEGER)" if value is None else f"cast({int(value)} as INTEGER)"
    if isinstance(template, list):
        return "cast([" + ", ".join(_literal(str(v)) for v in value or []) + "] as VARCHAR[])"
    return "cast(null as VARCHAR)" if value is None else _literal(str(value))


@dataclass(frozen=True, slots=True)
class _Model:
    name: str
    source: str  # "staging/stg_x.sql", for error messages
    body: str
    layer: int  # position of its folder in MODEL_LAYERS
    reads: frozenset[str] = frozenset()  # the other models it reads, found in its text


def _read_models(sql_dir: Traversable) -> list[_Model]:
    """Read and check every model before anything is built, so a bad file fails the build early.

    Returned in the order to create them: each model after the models it reads. What a model
    reads is found in its own text (`model_references`), so the order never depends on file
    names and a model reading a later layer, or a cycle, is an error naming the files.
    """
    models: list[_Model] = []
    names: dict[str, str] = {f"raw_{name}": "a raw dataset view" for name in DATASETS}
    names[META_VIEW] = "the metadata view"
    names[SETTINGS_VIEW] = names[STAGES_VIEW] = "the settings views"
    for layer, folder_name in enumerate(MODEL_LAYERS):
        folder = sql_dir.joinpath(folder_name)
        if not folder.is_dir():
            continue
        for entry in sorted((e for e in folder.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name):
            source = f"{folder_name}/{entry.name}"
            text = entry.read_text(encoding="utf-8")
            name = _declared_view_name(text) or entry.name.removesuffix(".sql")
            if not _IDENTIFIER.match(name):
                raise ValueError(f"{source}: view name {name!r} is not a plain identifier")
            if name in names:
                raise ValueError(f"{source}: view {name!r} is already defined by {names[name]}")
            names[name] = source
            body = text.rstrip().removesuffix(";").rstrip()
            if not body:
                raise ValueError(f"{source}: empty model")
            models.append(_Model(name, source, body, layer))
    return _in_dependency_order(models)


_SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_SQL_STRING = re.compile(r"'(?:[^']|'')*'")
_SQL_WORD = re.compile(r'"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_]*)')
_CTE_NAME = re.compile(
    r'(?:\bwith|,)\s*(?:recursive\s+)?"?([A-Za-z_][A-Za-z0-9_]*)"?\s+as\s*(?:not\s+)?(?:materialized\s+)?\(', re.I
)


_SQL_ALIAS = re.compile(r'\bas\s+"?([A-Za-z_][A-Za-z0-9_]*)"?(?!\s*\()', re.I)


def model_references(body: str, known: Iterable[str]) -> frozenset[str]:
    """The names of `known` that the SQL text `body` reads: words outside comments and string
    literals, less the names it gives itself (CTEs, and aliases after `as`), which shadow a
    model of the same name."""
    text = _SQL_STRING.sub("''", _SQL_COMMENT.sub(" ", body))
    ctes = {match.group(1).lower() for match in _CTE_NAME.finditer(text)}
    ctes |= {alias.lower() for alias in _SQL_ALIAS.findall(text)}
    words = {(quoted.replace('""', '"') if quoted else plain).lower() for quoted, plain in _SQL_WORD.findall(text)}
    return frozenset(name for name in known if name.lower() in words - ctes)


def _in_dependency_order(models: list[_Model]) -> list[_Model]:
    by_name = {model.name: model for model in models}
    with_reads = []
    for model in models:
        reads = model_references(model.body, by_name.keys() - {model.name})
        later = sorted(name for name in reads if by_name[name].layer > model.layer)
        if later:
            raise ValueError(
                f"{model.source} reads {', '.join(by_name[name].source for name in later)}, of a later layer "
                f"(layers: {' -> '.join(MODEL_LAYERS)})"
            )
        with_reads.append(_Model(model.name, model.source, model.body, model.layer, reads))
    final = {model.name: model for model in with_reads}
    order: list[_Model] = []
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:  # depth first: a model right after the models it reads
        if name in done:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise ValueError(f"SQL models read each other in a cycle: {' -> '.join(by_name[n].source for n in cycle)}")
        visiting.append(name)
        for read in sorted(final[name].reads, key=lambda n: (by_name[n].layer, by_name[n].source)):
            visit(read)
        visiting.pop()
        done.add(name)
        order.append(final[name])

    for model in with_reads:  # in layer then file order, so the order reads like the folders
        visit(model.name)
    return order


def _declared_view_name(text: str) -> str | None:
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            return None  # the header comment block is over
        match = _VIEW_HEADER.match(stripped)
        if match:
            return match.group(1)
    return None


def _create_models(con: duckdb.DuckDBPyConnection, models: list[_Model]) -> None:
    for model in models:  # in dependency order: every model it reads exists already
        try:
            con.execute(f"create view {_quote(model.name)} as\n{model.body}\n")
        except duckdb.Error as exc:
            exc.add_note(f"in SQL model {model.source}")
            raise


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


def _spec(dataset: str) -> DatasetSpec:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r} (known: {sorted(DATASETS)})") from None


def _busy_message(root: Path, path: Path, fd: int) -> str:
    try:
        note = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        note = {}
    holder = f"pid {note.get('pid', '?')} since {note.get('since', '?')}"
    if note.get("command"):
        holder += f" ({note['command']})"
    return f"warehouse {root} is busy: {path} is held by {holder}; let that run finish"


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


def _seqs_in(folder: Path) -> list[int]:
    """The seqs of the `<seq>.json` files of `folder` (manifests, checkpoints), sorted. Skips
    the `*.tmp` of a write in progress. Listing is cheap; reading the files is what costs."""
    try:
        entries = os.scandir(folder)
    except FileNotFoundError:
        return []
    with entries:
        return sorted(int(match.group(1)) for entry in entries if (match := _MANIFEST_NAME.match(entry.name)))


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


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


def raw_view_sql(
    con: duckdb.DuckDBPyConnection,
    spec: DatasetSpec,
    paths: list[str],
    *,
    temporary: bool = False,
    name: str | None = None,
) -> str:
    """`create view raw_<dataset>` (or `name`) over the given files; typed and empty when there are none.

    Shared by the views file and by the pipeline's own look-ups of landed data, so both read
    the same files the same way.
    """
    name = _quote(name or f"raw_{spec.name}")
    # A temporary view lives in a private look-up connection that re-points it at other files.
    create = "create or replace temp view" if temporary else "create view"
    if not paths:
        # Types come from DuckDB's own reading of the Arrow schema, so the empty view has
        # exactly the types the Parquet files will have once there are some.
        con.register("parcours_empty", spec.arrow_schema.empty_table())
        try:
            described = con.execute("describe select * from parcours_empty").fetchall()
        finally:
            con.unregister("parcours_empty")
        columns = [f"cast(null as {row[1]}) as {_quote(row[0])}" for row in described]
        columns.append(f"cast(null as DATE) as {_quote(spec.partition_column)}")
        return f"{create} {name} as select {', '.join(columns)} where false"
    files = ", ".join(_literal(path) for path in paths)
    return (
        f"{create} {name} as select * from read_parquet([{files}], hive_partitioning = true, "
        f"hive_types = {{{_literal(spec.partition_column)}: date}}, union_by_name = true)"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
