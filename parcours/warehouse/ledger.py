"""The ledger: manifests, checkpoints, the writer lock and the atomic commit.

A batch becomes visible only when its manifest ``_manifests/<seq>.json`` is committed, with a hard
link that cannot overwrite an existing one. The warehouse state (live files, offsets, watermarks,
backfill progress, removed files, batches the marts do not hold yet) is the fold of the manifests;
a compaction writes a checkpoint ``_checkpoints/<seq>.json`` of that fold, so a process reads the
latest checkpoint and only the manifests committed after it (see the package docstring).
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import msgspec

from parcours.warehouse.datasets import _spec
from parcours.warehouse.files import _SEQ_DIGITS, PublishedFile, _fsync_dir, _write_durably

_MANIFEST_NAME = re.compile(rf"^(\d{{{_SEQ_DIGITS}}})\.json$")


@dataclass(frozen=True)
class OutboxEntry:
    """A dead-letter record not yet delivered to its topic: sent again, in order, by the next run."""

    topic: str
    key: str | None  # UTF-8 text of the Kafka key (the customer_id), or None
    value: str  # the record's JSON text, bounded (`pipelines.dead_letter_topic`)


UNKNOWN_KIND = "unknown"  # a source partition's kind, in manifests written before it was recorded


@dataclass(frozen=True)
class Delivery:
    """How one source partition last delivered, beside its latest landed event time (`watermarks`).

    What the time rules need to tell an idle partition from a lagging one
    (`parcours.warehouse.time`): a partition read to its end and silent for long enough has
    nothing left to say, one still being read may yet deliver older events. None is unknown (a
    manifest written before these were recorded), which the rules treat as holding back.
    """

    kind: str = UNKNOWN_KIND  # "touchpoints" or "surveys": which kind of records the source holds
    delivered_at: str | None = None  # wall clock (UTC ISO) of the latest batch that read records from it
    # Whether the latest batch that looked at it read it to its end: Kafka, the end offset of the
    # snapshot its run took; a backfill file, the file's end.
    read_to_end: bool | None = None


@dataclass(frozen=True)
class DerivedState:
    """A derived dataset as a refresh left it: the fingerprint of the definition its rows are
    current under (`parcours.refresh.declarations.fingerprint`), the rows that refresh wrote, and
    its `as_of`: the finality point of the refresh (`parcours.warehouse.time.finality` at the
    refresh's wall clock, UTC ISO 8601), the event time up to which its time-dependent statuses
    are final; and `through`: the seq of the latest commit whose changes its rows hold (a
    dataset refreshed hourly or daily lags the others between its refreshes). None in manifests
    written before it was recorded, when every refresh brought every dataset current: it reads as
    the seq of the refresh that recorded it (`Ledger.derived_through`)."""

    fingerprint: str
    rows_written: int = 0
    as_of: str | None = None
    through: int | None = None


@dataclass(frozen=True)
class Refreshed:
    """A derived dataset's latest refresh: its `DerivedState`, and which commit, when."""

    seq: int
    refreshed_at: str
    fingerprint: str
    rows_written: int = 0
    as_of: str | None = None
    through: int | None = None


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
    # What the commit is (KINDS); "" in manifests written before kinds were stated, read by `kind_of`.
    kind: str = ""
    # A quarantine's files: kept on disk and listed here, read by no view and no refresh.
    quarantined: tuple[PublishedFile, ...] = ()
    settles: int | None = None  # release / drop: the seq of the quarantine it settles
    reason: str = ""  # quarantine: why the gate refused the batch; drop: why it was dropped
    # Dead letters still to be sent to their topic after this commit, in order; None: the commit
    # leaves the outbox as it was (a refresh, a compaction, a manifest older than the field).
    outbox: tuple[OutboxEntry, ...] | None = None
    # A refresh: per derived dataset, the definition its rows are now current under. An ingest (and
    # a `--full` refresh that re-derived them): under `touchpoints`, the rules the landed
    # touchpoints' sessions and cycles follow (`parcours.refresh.rederive`).
    derived: dict[str, DerivedState] = field(default_factory=dict)
    # source -> partition -> how it last delivered; cumulative and carried forward like `watermarks`
    # (empty in manifests written before it was recorded: every partition unknown).
    delivery: dict[str, dict[int, Delivery]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        # Indented: manifests are the first thing a person reads when a number looks wrong.
        return msgspec.json.format(msgspec.json.encode(self), indent=2) + b"\n"

    @classmethod
    def from_json(cls, data: bytes | str) -> Manifest:
        """Decode and type-check (int partition keys, [start, end) pairs) in one pass."""
        return msgspec.json.decode(data, type=cls)


INGEST, REFRESH, COMPACTION, QUARANTINE, RELEASE, DROP = (
    "ingest",
    "refresh",
    "compaction",
    "quarantine",
    "release",
    "drop",
)
KINDS = (INGEST, REFRESH, COMPACTION, QUARANTINE, RELEASE, DROP)


def kind_of(manifest: Manifest) -> str:
    """The manifest's kind; for one written before kinds were stated, what its counts say."""
    if manifest.kind:
        return manifest.kind
    if MARTS_THROUGH in manifest.counts:
        return COMPACTION if "compacted_files_in" in manifest.counts else REFRESH
    return INGEST


@dataclass(frozen=True)
class Quarantine:
    """A batch the gate refused: its files kept, its offsets consumed, nothing of it published."""

    seq: int
    created_at: str
    reason: str
    files: tuple[PublishedFile, ...]
    counts: dict[str, int] = field(default_factory=dict)


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse lock: a second run must stop at once, not queue."""


# Counts key of a refresh or compaction commit: the seq through which *every* derived dataset
# holds the committed batches. A refresh that brought every dataset current (every one before
# cadences existed, a compaction, which runs one first) records its own seq; one that left an
# hourly or daily dataset behind, the seq that dataset is current through (the minimum).
MARTS_THROUGH = "marts_through_seq"
# A commit that lands rows of these is pending for the refresher (survey answers too: the
# datasets that read them are derived like any other).
_REFRESHED_FROM = ("touchpoints", "rewrites", "survey_answers")


class ManifestExists(FileExistsError):
    """A manifest with this seq is already committed: two writers raced, or a batch was replayed."""


# -- checkpoints ---------------------------------------------------------------------------

CHECKPOINT_FORMAT = 2  # raised on any change that a reader of the previous format would misread
# Formats this parcours reads: 1 is 2 without quarantines, which did not exist then.
READABLE_CHECKPOINT_FORMATS = (1, 2)
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
    # Batches some derived dataset does not hold yet, read from their manifests when asked for.
    # None after a compaction, which needs the marts current.
    marts_pending: tuple[int, ...]
    quarantined: tuple[Quarantine, ...] = ()  # open quarantines, neither released nor dropped
    outbox: tuple[OutboxEntry, ...] = ()  # of the latest manifest that set one (none in older checkpoints)
    derived: dict[str, Refreshed] = field(default_factory=dict)  # each derived dataset's latest refresh
    # Of the latest manifest, like `watermarks` (none in older checkpoints; a reader older than
    # the field ignores it: the format is unchanged).
    delivery: dict[str, dict[int, Delivery]] = field(default_factory=dict)
    # The latest MARTS_THROUGH (None in older checkpoints: read from `marts_pending`, see
    # `_State.starting_at`; a reader older than the field ignores it: the format is unchanged).
    marts_through: int | None = None

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
        if written_format not in READABLE_CHECKPOINT_FORMATS:
            raise CheckpointError(
                f"checkpoint {source} is in format {written_format}, but this parcours reads format "
                f"{' or '.join(map(str, READABLE_CHECKPOINT_FORMATS))} only: it was written by another version of "
                "parcours. Run that "
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
    quarantined: dict[int, Quarantine] = field(default_factory=dict)
    outbox: tuple[OutboxEntry, ...] = ()
    derived: dict[str, Refreshed] = field(default_factory=dict)
    delivery: dict[str, dict[int, Delivery]] = field(default_factory=dict)
    marts_through: int = 0  # the latest MARTS_THROUGH: every derived dataset holds the commits up to it

    @classmethod
    def starting_at(cls, checkpoint: Checkpoint) -> _State:
        through = checkpoint.marts_through
        if through is None:  # before it was recorded, a refresh left every dataset current
            through = checkpoint.marts_pending[0] - 1 if checkpoint.marts_pending else checkpoint.seq
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
            quarantined={q.seq: q for q in checkpoint.quarantined},
            outbox=tuple(checkpoint.outbox),
            derived=dict(checkpoint.derived),
            delivery=checkpoint.delivery,
            marts_through=through,
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
        self.delivery = manifest.delivery  # likewise
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
        if manifest.outbox is not None:
            self.outbox = manifest.outbox
        kind = kind_of(manifest)
        if kind == QUARANTINE:
            self.quarantined[manifest.seq] = Quarantine(
                manifest.seq, manifest.created_at, manifest.reason, manifest.quarantined, manifest.counts
            )
        elif kind in (RELEASE, DROP) and manifest.settles is not None:
            settled = self.quarantined.pop(manifest.settles, None)
            if kind == DROP and settled is not None:
                self.removals.append(Removal(manifest.seq, manifest.created_at, tuple(f.path for f in settled.files)))
        for name, state in manifest.derived.items():
            self.derived[name] = Refreshed(manifest.seq, manifest.created_at, **dataclasses.asdict(state))
        if kind in (REFRESH, COMPACTION):
            # Batches after the laggard's point stay pending (an hourly or daily dataset's).
            self.marts_through = int(manifest.counts.get(MARTS_THROUGH, manifest.seq))
            self.marts_pending = [s for s in self.marts_pending if s > self.marts_through]
        elif any(published.dataset in _REFRESHED_FROM for published in manifest.files):
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
            quarantined=tuple(self.quarantined.values()),
            outbox=self.outbox,
            derived=self.derived,
            delivery=self.delivery,
            marts_through=self.marts_through,
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


class Ledger:
    """The manifests, checkpoints and lock of a `Warehouse` (its other parts: files, views)."""

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

    def derived_state(self) -> dict[str, Refreshed]:
        """Each derived dataset's latest refresh (none before its first)."""
        return dict(self._state().derived)

    def marts_pending(self) -> list[Manifest]:
        """Committed batches some derived dataset does not hold yet, oldest first: after a
        refresh that left an hourly or daily dataset behind, the batches since that one's last
        refresh. Empty means every derived dataset is current (what a compaction needs)."""
        return [self._manifest(seq) for seq in self._state().marts_pending]

    def derived_through(self, names: Sequence[str]) -> dict[str, int]:
        """Per derived dataset of `names`, the seq of the latest commit whose changes its rows
        hold: the `through` its latest refresh recorded (that refresh's own seq in manifests
        older than the field), and never less than the latest MARTS_THROUGH (a compaction,
        which brings every dataset current first, or a refresh that did). A dataset never
        refreshed reads as that too: it is built whole when it has no file."""
        state = self._state()
        out = {}
        for name in names:
            refreshed = state.derived.get(name)
            own = 0 if refreshed is None else refreshed.through if refreshed.through is not None else refreshed.seq
            out[name] = max(own, state.marts_through)
        return out

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
        kind = kind_of(manifest)
        if kind not in KINDS:
            problems.append(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        if kind in (RELEASE, DROP) and manifest.settles not in self._state().quarantined:
            # Exactly once: a quarantine is released or dropped by one commit, never two.
            problems.append(f"{kind} of batch {manifest.settles}, which is no open quarantine")
        if manifest.quarantined and kind != QUARANTINE:
            problems.append(f"a {kind} commit lists quarantined files")
        for published in (*manifest.files, *manifest.quarantined):
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
            raise ValueError(f"manifest {manifest.seq} cannot be committed: {listed}")
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

    def outbox(self) -> tuple[OutboxEntry, ...]:
        """Dead letters committed but not yet delivered to their topic, in the order to send them."""
        return self._state().outbox

    def file_progress(self) -> dict[str, int]:
        """Backfill file key -> byte offset up to which it was landed (`Manifest.sources`)."""
        return dict(self._state().file_progress)

    def published_files(self, dataset: str) -> list[str]:
        """Relative paths of the dataset's live files (committed, not removed since), in commit order."""
        _spec(dataset)
        return [path for path, published in self._live_files().items() if published.dataset == dataset]

    def quarantines(self) -> list[Quarantine]:
        """The open quarantines (neither released nor dropped), oldest first."""
        return sorted(self._state().quarantined.values(), key=lambda q: q.seq)

    def _live_files(self) -> dict[str, PublishedFile]:
        return dict(self._state().live)

    def live_files(self, dataset: str) -> list[PublishedFile]:
        """The dataset's live files with their partition, rows and size, in commit order."""
        _spec(dataset)
        return [published for published in self._live_files().values() if published.dataset == dataset]


def _busy_message(root: Path, path: Path, fd: int) -> str:
    try:
        note = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        note = {}
    holder = f"pid {note.get('pid', '?')} since {note.get('since', '?')}"
    if note.get("command"):
        holder += f" ({note['command']})"
    return f"warehouse {root} is busy: {path} is held by {holder}; let that run finish"


def _seqs_in(folder: Path) -> list[int]:
    """The seqs of the `<seq>.json` files of `folder` (manifests, checkpoints), sorted. Skips
    the `*.tmp` of a write in progress. Listing is cheap; reading the files is what costs."""
    try:
        entries = os.scandir(folder)
    except FileNotFoundError:
        return []
    with entries:
        return sorted(int(match.group(1)) for entry in entries if (match := _MANIFEST_NAME.match(entry.name)))


def merge_watermarks(previous: dict[str, dict[int, str]], new: dict[str, dict[int, str]]) -> dict[str, dict[int, str]]:
    """Per source and partition, the later of two latest landed event times (ISO text)."""
    merged = {source: dict(parts) for source, parts in previous.items()}
    for source, parts in new.items():
        for partition, at in parts.items():
            current = merged.setdefault(source, {}).get(int(partition))
            if current is None or datetime.fromisoformat(at) > datetime.fromisoformat(current):
                merged[source][int(partition)] = at
    return merged


def merge_delivery(
    previous: dict[str, dict[int, Delivery]],
    new: dict[str, dict[int, Delivery]],
    *,
    landed: dict[str, dict[int, str]] | None = None,
    landed_by: str | None = None,
) -> dict[str, dict[int, Delivery]]:
    """Per source and partition, what a batch saw replaces what was recorded, except that a
    partition it read no record from keeps the time it last delivered (`delivered_at` None in
    `new`).

    A partition with a latest event time in `landed` (the previous watermarks) but no recorded
    delivery time landed before deliveries were recorded: it delivered by the previous commit
    (`landed_by`, its wall clock) at the latest, which is taken as its time, so that it can go
    idle and is judged idle no sooner than it truly is.
    """
    merged = {source: dict(parts) for source, parts in previous.items()}
    for source, parts in new.items():
        for partition, seen in parts.items():
            before = merged.setdefault(source, {}).get(int(partition))
            if seen.delivered_at is None and before is not None:
                seen = dataclasses.replace(seen, delivered_at=before.delivered_at)
            if seen.delivered_at is None and int(partition) in (landed or {}).get(source, {}):
                seen = dataclasses.replace(seen, delivered_at=landed_by)
            merged[source][int(partition)] = seen
    return merged


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
