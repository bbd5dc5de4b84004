"""The run: plan micro-batches, run the Beam pipeline on each, publish, then commit offsets.

The story of one micro-batch:

    ReadRanges -> Validate -> [ShardByCustomer] -> Deduplicate -> Sessionize -> AssignJourneys -> Land

(ShardByCustomer only for files and for topics not keyed by customer: a Kafka partition of a
customer-keyed topic already holds whole customers; Deduplicate decides each shard's ids against
the id index, and the driver re-runs the rare batch whose shards landed the same id), then, in
the driver and in this order: check that the numbers add up (consumed = landed + dead-lettered +
duplicates skipped), send the dead letters to their Kafka topic, commit the manifest (the one
atomic step that makes the batch visible and records its offsets and watermarks), rebuild the
DuckDB views, and only then mirror the offsets to Kafka's committed offsets. The manifest is the
source of truth: a crash anywhere before its commit re-runs the batch under the same sequence
number and file names; a crash after it resumes from the manifest's offsets. A run ends by
refreshing the sessions and journeys marts for every batch since the last refresh, in one more
commit (`marts.py`).

With `--workers N` a round's micro-batches run at once, so none sees the ids of the others:
before publishing each, the driver checks its new ids against those of the batches published
before it in the round, and runs it again (against the index as they left it) if one is shared,
so the copy published first wins, as between rounds (`deduplicate.py` says why).

The runner comes from the Beam pipeline options (`--runner FlinkRunner ...`); the default,
named explicitly, is the local FnApiRunner (the DirectRunner would first try to download the
Prism runner).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from parcours.config import JourneyConfig
from parcours.kafka import KafkaSettings, make_consumer, make_producer
from parcours.pipelines.coders import TABLE_ELEMENT
from parcours.pipelines.dead_letter_topic import record_limit, records_of, send_in_order
from parcours.pipelines.deduplicate import Deduplicate, ids_landed_twice, shares_ids
from parcours.pipelines.journeys import AssignJourneys
from parcours.pipelines.land import Land
from parcours.pipelines.sessionize import Sessionize
from parcours.pipelines.shard import ShardByCustomer
from parcours.pipelines.sources import (
    CHUNK_ROWS,
    FileRange,
    OffsetRange,
    ReadRanges,
    plan_file_ranges,
    plan_offset_ranges,
)
from parcours.pipelines.state import PublishedFiles
from parcours.pipelines.validate import Validate
from parcours.pipelines.worker_pool import start_workers
from parcours.refresh.rederive import after_ingest
from parcours.refresh.refresher import RefreshReport, catch_up
from parcours.warehouse import INGEST, Manifest, OutboxEntry, PublishedFile, Warehouse
from parcours.warehouse.ledger import UNKNOWN_KIND, Delivery, merge_delivery, merge_watermarks
from parcours.warehouse.publish import Gate, accept_all
from parcours.warehouse.publish import publish as publish_commit

log = logging.getLogger(__name__)

LOCAL_RUNNER = "FnApiRunner"
CONSUMER_GROUP = "parcours"
DEFAULT_SHARDS = 2
FILE_KINDS = {
    "touchpoints.jsonl": "touchpoints",
    "touchpoints.parquet": "touchpoints",
    "surveys.jsonl": "surveys",
    "surveys.parquet": "surveys",
}
# Fault injection for the crash tests: the process dies on the spot (no cleanup, no finally).
CRASH_ENV = "PARCOURS_CRASH_AT"


class AmbiguousBackfill(ValueError):
    """A backfill folder holds the same kind of records in two files (JSONL and Parquet)."""


class WorkersNeedKeyedTopics(ValueError):
    """--workers > 1 splits partitions between processes: only right if partitions hold whole customers."""


class CountsDoNotAddUp(RuntimeError):
    """consumed != landed + dead-lettered + duplicates skipped: the batch is not published."""


class TooManyInternalErrors(RuntimeError):
    """Too many records of a batch hit an error in parcours itself: a bug, not bad data; the
    batch is not published (its records are read again once the bug is fixed)."""


# A batch is stopped when `internal_error` dead letters reach both: 1 % of its records, and 100.
INTERNAL_ERROR_SHARE = 0.01
INTERNAL_ERROR_MIN = 100


@dataclass
class BatchReport:
    seq: int
    consumed: dict[str, int]
    landed: dict[str, int]
    dead_lettered: dict[str, int]
    duplicates_skipped: dict[str, int]
    relanded: int
    files: int
    seconds: float
    unmapped: int = 0  # landed touchpoints whose stage is `unmapped` (part of `landed`)
    blank_lines: int = 0  # blank lines of JSONL backfills: skipped, not records, not in `consumed`
    internal_errors: int = 0  # dead letters `internal_error` (part of `dead_lettered`)
    redacted: int = 0  # strings of personal data replaced in what landed (verbatims, dead letters)

    @property
    def total_consumed(self) -> int:
        return sum(self.consumed.values())

    def describe(self) -> str:
        """The line every caller prints or logs per micro-batch: the numbers must visibly add up."""
        consumed = self.total_consumed
        notes = [f"{self.unmapped:,} unmapped touchpoints"]
        if self.internal_errors:
            notes.append(f"{self.internal_errors:,} internal errors")
        if self.blank_lines:
            notes.append(f"{self.blank_lines:,} blank lines skipped")
        if self.redacted:
            notes.append(f"{self.redacted:,} personal data redacted")
        return (
            f"batch {self.seq}: consumed {consumed:,} = landed {sum(self.landed.values()):,} + dead-lettered "
            f"{sum(self.dead_lettered.values()):,} + duplicates skipped {sum(self.duplicates_skipped.values()):,}"
            f" ({', '.join(notes)}; {consumed / max(self.seconds, 1e-9):,.0f} events/s)"
        )


@dataclass
class RunReport:
    warehouse: Path
    batches: list[BatchReport] = field(default_factory=list)
    marts: RefreshReport | None = None  # the sessions and journeys refresh that ended the run

    def total(self, name: str) -> int:
        """Sum over batches and kinds of one count: landed, dead_lettered, duplicates_skipped..."""
        return sum(sum(getattr(b, name).values()) for b in self.batches)


def pipeline_options(beam_args: Sequence[str] = ()) -> PipelineOptions:
    """Beam options from the command line; the local FnApiRunner unless a runner is named."""
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = LOCAL_RUNNER
    return options


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        log.error("fault injection: dying at %s", name)
        os._exit(137)


class IngestMicroBatch(beam.PTransform):
    """The story of one micro-batch, applied to a pipeline's start:

        ReadRanges -> Validate -> [ShardByCustomer] -> Deduplicate -> ByKind
            touchpoints -> Sessionize -> AssignJourneys -> Land
            survey answers, invalid records, id conflicts -> Land
        every step's receipts -> one JSON file (`receipts_path`), which `execute` accounts from

    `job` says everything else: the ranges to read, the configuration, the warehouse's published
    files and watermarks, the batch's seq and ingestion time, the shard count and, on a re-run,
    the winning copies of ids two shards both landed.
    """

    def __init__(self, job: BatchJob, receipts_path: str) -> None:
        super().__init__()
        self._job = job
        self._receipts_path = receipts_path

    def expand(self, begin):
        job, config = self._job, self._job.config
        ranges = list(job.ranges)
        # Kafka topics keyed by customer: a group of whole partitions is a shard of whole
        # customers, so the reader yields shards and no shuffle is needed. Files (and other keys)
        # are regrouped.
        by_partition = bool(ranges) and isinstance(ranges[0], OffsetRange) and config.ingest.keyed_by_customer
        read = begin | "ReadRanges" >> ReadRanges(
            ranges, job.settings, read_groups=job.shards, whole_shards=by_partition
        )
        checked = read.raw | "Validate" >> Validate(
            config.ingest,
            job.watermarks,
            job.now,
            check_key=by_partition,
            stages=config.stages,
            region=config.surveys.phone_region,
        )
        shards_of_customers = (
            checked.valid if by_partition else checked.valid | "ShardByCustomer" >> ShardByCustomer(job.shards)
        )
        unique = shards_of_customers | "Deduplicate" >> Deduplicate(
            job.files.id_index,
            config.ingest.id_retention,
            now=job.now,
            root=job.root,
            seq=job.seq,
            winners=job.winners,
            region=config.surveys.phone_region,
        )
        by_kind = beam.ParDo(_ByKindFn()).with_output_types(
            TABLE_ELEMENT, touchpoints=TABLE_ELEMENT, surveys=TABLE_ELEMENT
        )
        kinds = unique["fresh"] | "ByKind" >> by_kind.with_outputs("touchpoints", "surveys")
        journeys = (
            kinds.touchpoints
            | "Sessionize" >> Sessionize(job.files, config.sessions.inactivity_gap, config.sessions.max_duration)
            | "AssignJourneys" >> AssignJourneys(config)
        )
        # Each branch lands on its own: a Flatten of large tables before Land would make the
        # FnApiRunner materialise (pickle) every table at the join, measured at ~1.3 GB per
        # 250,000 events. Only the small receipts are joined.
        landed = [
            branch | f"Land{name}" >> Land(job.root, job.seq, job.now)
            for name, branch in (
                ("Touchpoints", journeys),
                ("Surveys", kinds.surveys),
                ("Invalid", checked.dead),
                ("Conflicts", unique["dead"]),
            )
        ]
        return (
            (*landed, read.receipts, unique["receipts"])
            | "AllReceipts" >> beam.Flatten()
            | "CollectReceipts" >> beam.combiners.ToList()
            | "WriteReceipts" >> beam.Map(_write_receipts, self._receipts_path)
        )


class _ByKindFn(beam.DoFn):
    """((kind, shard), table) -> the output named by its kind."""

    def process(self, element):
        (kind, _shard), _table = element
        yield beam.pvalue.TaggedOutput(kind, element)


def _write_receipts(receipts: list[dict], path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(receipts, handle)
    os.replace(tmp, path)


def _add(into: dict[str, int], values: dict[str, int]) -> None:
    for key, value in values.items():
        into[key] = into.get(key, 0) + value


def watermark_of(watermarks: dict[str, dict[int, str]], sources: set[str]) -> datetime | None:
    """Lateness reference: the minimum across a source's partitions of their latest landed time."""
    times = [datetime.fromisoformat(at) for s in sources for at in watermarks.get(s, {}).values()]
    return min(times) if times else None


def batch_delivery(job: BatchJob) -> dict[str, dict[int, Delivery]]:
    """How each partition the batch looked at delivered: its kind, the batch's wall clock if the
    batch read records from it (else None: it keeps the time it last delivered), and whether it
    is read to its end once the batch is published."""
    kind_of_source = {source: kind for kind, sources in job.source_of_kind.items() for source in sources}
    delivered = set()
    for r in job.ranges:
        if isinstance(r, OffsetRange) and r.size > 0:
            delivered.add((r.topic, r.partition))
        elif isinstance(r, FileRange) and r.lines > 0:
            delivered.add((r.path, -1))
    at = job.now.astimezone(UTC).isoformat()
    return {
        source: {
            partition: Delivery(
                kind_of_source.get(source, UNKNOWN_KIND), at if (source, partition) in delivered else None, done
            )
            for partition, done in parts.items()
        }
        for source, parts in job.read_to_end.items()
    }


@dataclass(frozen=True)
class BatchJob:
    """Everything one micro-batch needs, picklable: it may run in a worker process."""

    seq: int
    ranges: tuple
    settings: KafkaSettings | None
    config: JourneyConfig
    beam_args: tuple[str, ...]
    files: PublishedFiles
    watermarks: dict[str, datetime | None]
    now: datetime
    root: str
    shards: int
    source_of_kind: dict[str, frozenset[str]]
    sources_meta: tuple[dict, ...] = ()
    # source -> partition -> whether it is read to its end once this batch is published, for
    # every partition the batch looked at (`Manifest.delivery`).
    read_to_end: dict[str, dict[int, bool]] = field(default_factory=dict)
    # On a re-run only: the winning copies of the ids two shards both landed (`ids_landed_twice`).
    winners: pa.Table | None = None


@dataclass
class BatchOutcome:
    """What a micro-batch wrote and counted; nothing of it is visible until published."""

    job: BatchJob
    consumed: dict[str, int]
    landed: dict[str, int]
    dead_lettered: dict[str, int]
    duplicates_skipped: dict[str, int]
    relanded: int
    watermarks: dict[str, dict[int, str]]
    files: list[PublishedFile]
    seconds: float
    unmapped: int = 0
    blank_lines: int = 0
    internal_errors: int = 0
    redacted: int = 0


def execute(job: BatchJob) -> BatchOutcome:
    """Run the Beam pipeline of one micro-batch and account for every record it consumed.

    Each shard decides its ids against the published index and within itself; two shards of
    the batch cannot see each other's ids, so their new index rows are checked here, before
    anything is published, and a batch where two shards landed the same id (rare: an id reused
    under two customers at once) runs again, same seq and file names, with the winning copies
    of those ids passed in: every other copy then has exactly one outcome.
    """
    started = time.perf_counter()
    job = replace(job, winners=None)  # decided afresh (a lane's re-run passes the job of its first run)
    outcome = _execute_once(job)
    winners = ids_landed_twice(_id_index_paths(job.root, outcome.files))
    if winners.num_rows:
        log.info("batch %d: %d ids landed by two shards: run again with their winners", job.seq, winners.num_rows)
        outcome = _execute_once(replace(job, winners=winners))
        again = ids_landed_twice(_id_index_paths(job.root, outcome.files))
        if again.num_rows:  # cannot happen: the winners decide every other copy of those ids
            raise RuntimeError(f"batch {job.seq}: ids still landed by two shards after the re-run")
        outcome.seconds = time.perf_counter() - started
    return outcome


def _id_index_paths(root: str | Path, files: Sequence[PublishedFile]) -> list[str]:
    return [str(Path(root) / f.path) for f in files if f.dataset == "id_index"]


def _execute_once(job: BatchJob) -> BatchOutcome:
    started = time.perf_counter()
    staging = Path(job.root) / "_staging" / f"{job.seq:010d}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    receipts_path = staging / "receipts.json"
    pipeline = beam.Pipeline(options=pipeline_options(job.beam_args))
    _ = pipeline | "IngestMicroBatch" >> IngestMicroBatch(job, str(receipts_path))
    pipeline.run().wait_until_finish()
    receipts = json.loads(receipts_path.read_text(encoding="utf-8"))
    shutil.rmtree(staging, ignore_errors=True)

    consumed: dict[str, int] = {}
    landed: dict[str, int] = {}
    dead_by_source: dict[str, int] = {}
    duplicates: dict[str, int] = {}
    relanded = unmapped = blank_lines = internal_errors = redacted = 0
    internal_example = ""
    watermarks: dict[str, dict[int, str]] = {}
    published: list[PublishedFile] = []
    for receipt in receipts:
        unmapped += receipt.get("unmapped", 0)
        blank_lines += sum(receipt.get("blank_lines", {}).values())
        internal_errors += receipt.get("internal_errors", 0)
        redacted += receipt.get("redacted", 0)
        internal_example = internal_example or receipt.get("internal_error_example", "")
        _add(consumed, receipt.get("consumed", {}))
        _add(landed, receipt.get("landed", {}))
        _add(dead_by_source, receipt.get("dead_lettered", {}))
        _add(duplicates, receipt.get("duplicates_skipped", {}))
        relanded += sum(receipt.get("relanded", {}).values())
        for kind_marks in receipt.get("watermarks", {}).values():
            watermarks = merge_watermarks(watermarks, kind_marks)
        published += [PublishedFile(**f) for f in receipt.get("files", [])]
    kind_of_source = {source: kind for kind, sources in job.source_of_kind.items() for source in sources}
    dead: dict[str, int] = {}
    for source, n in dead_by_source.items():
        _add(dead, {kind_of_source.get(source, "unknown"): n})
    for kind in sorted(set(consumed) | set(landed) | set(dead) | set(duplicates)):
        parts = (landed.get(kind, 0), dead.get(kind, 0), duplicates.get(kind, 0))
        if consumed.get(kind, 0) != sum(parts):
            raise CountsDoNotAddUp(
                f"batch {job.seq}, {kind}: consumed {consumed.get(kind, 0)} != landed {parts[0]} + "
                f"dead-lettered {parts[1]} + duplicates skipped {parts[2]}; nothing was published"
            )
    total = sum(consumed.values())
    if internal_errors >= INTERNAL_ERROR_MIN and internal_errors >= INTERNAL_ERROR_SHARE * total:
        raise TooManyInternalErrors(
            f"batch {job.seq}: {internal_errors} of {total} records ({internal_errors / total:.1%}) failed with "
            f"internal_error, an error in parcours itself and not bad data (first: {internal_example}); nothing "
            f"was published. Report it with this message; the batch is read again by the next run"
        )
    return BatchOutcome(
        job,
        consumed,
        landed,
        dead,
        duplicates,
        relanded,
        watermarks,
        sorted(published, key=lambda f: f.path),
        time.perf_counter() - started,
        unmapped,
        blank_lines,
        internal_errors,
        redacted,
    )


def _lanes(partitions: list, workers: int) -> list[list]:
    """Split partitions into groups, one per worker process.

    Messages are keyed by customer, so partitions hold disjoint sets of customers: micro-batches
    over disjoint partitions never touch the same customer's sessions and can run at once.
    """
    lanes: list[list] = [[] for _ in range(workers)]
    for index, tp in enumerate(sorted(partitions, key=lambda tp: (tp.partition, tp.topic))):
        lanes[(tp.partition if workers > 1 else index) % workers].append(tp)
    return [lane for lane in lanes if lane]


class Ingestion:
    """Ingestion into one warehouse: plans, runs and publishes its micro-batches (from Kafka or
    from files), then refreshes the derived datasets; the caller holds the warehouse lock. Not a
    Beam runner: each micro-batch's Beam pipeline runs on the runner its options name."""

    def __init__(
        self,
        warehouse: Warehouse,
        config: JourneyConfig,
        *,
        beam_args: Sequence[str] = (),
        shards: int = DEFAULT_SHARDS,
        batch_size: int | None = None,
        workers: int = 1,
        on_batch: Callable[[BatchReport], None] | None = None,
        pool: ProcessPoolExecutor | None = None,
        gate: Gate = accept_all,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`pool`: the workers-1 processes of `lanes.start_workers`, if the caller started them
        early; else `run_kafka` starts them. `gate`: judges each batch before its commit (the
        publish path); a refused batch is committed as a quarantine. `clock`: the wall clock of
        each batch (ingestion time, when partitions last delivered); the system's by default,
        a fixed one in tests of time."""
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._pool = pool
        self.warehouse = warehouse
        self.config = config
        self.beam_args = tuple(beam_args)
        pipeline_options(beam_args)  # fail on bad Beam arguments before any work
        self.shards = shards
        self.batch_size = batch_size or config.ingest.batch_size
        self.workers = workers
        self.on_batch = on_batch
        self.gate = gate
        self.clock = clock or (lambda: datetime.now(UTC))

    def tidy(self) -> None:
        """Before a run, under the lock: views that describe this warehouse as it is (it may have
        moved, or a run died between commit and rebuild), and no file of a batch that died before
        its commit. Every writer (`parcours run`, the ingestion flow) starts with this."""
        if self.warehouse.views_outdated():
            self.warehouse.rebuild_views()
        self.warehouse.remove_orphans()

    # -- one micro-batch -------------------------------------------------------------------
    def plan_job(
        self,
        seq: int,
        ranges: list[OffsetRange] | list[FileRange],
        *,
        settings: KafkaSettings | None,
        source_of_kind: dict[str, set[str]],
        sources_meta: tuple[dict, ...] = (),
        read_to_end: dict[str, dict[int, bool]] | None = None,
    ) -> BatchJob:
        wh = self.warehouse
        manifests = wh.manifests()
        previous = manifests[-1].watermarks if manifests else {}
        return BatchJob(
            seq=seq,
            ranges=tuple(ranges),
            settings=settings,
            config=self.config,
            beam_args=self.beam_args,
            files=self._published_files(),
            watermarks={kind: watermark_of(previous, sources) for kind, sources in source_of_kind.items()},
            now=self.clock().replace(microsecond=0),
            root=str(wh.root),
            shards=self.shards,
            source_of_kind={kind: frozenset(sources) for kind, sources in source_of_kind.items()},
            sources_meta=sources_meta,
            read_to_end=read_to_end or {},
        )

    def _published_files(self) -> PublishedFiles:
        wh = self.warehouse
        paths = {
            name: tuple(str(wh.root / p) for p in wh.published_files(name))
            for name in ("touchpoints", "survey_answers", "rewrites", "customer_state", "id_index")
        }
        return PublishedFiles(**paths)

    def run_batch(
        self,
        ranges: list[OffsetRange] | list[FileRange],
        *,
        settings: KafkaSettings | None,
        source_of_kind: dict[str, set[str]],
        sources_meta: tuple[dict, ...] = (),
        read_to_end: dict[str, dict[int, bool]] | None = None,
    ) -> BatchReport:
        job = self.plan_job(
            self.warehouse.next_seq(),
            ranges,
            settings=settings,
            source_of_kind=source_of_kind,
            sources_meta=sources_meta,
            read_to_end=read_to_end,
        )
        return self.publish(execute(job))

    def publish(self, outcome: BatchOutcome, *, refresh_views: bool = True) -> BatchReport:
        """Dead letters to Kafka, then the manifest commit (the batch becomes visible), then views.

        `refresh_views=False` when more batches are published right after this one: the views
        are rebuilt once, after the last.
        """
        started = time.perf_counter()
        job, wh = outcome.job, self.warehouse
        _crash_point("before_manifest")
        outbox = None  # the outbox as it was
        if job.settings is not None and (sum(outcome.dead_lettered.values()) or wh.outbox()):
            outbox = self._send_dead_letters(job.settings, [f for f in outcome.files if f.dataset == "dead_letters"])
        offsets: dict[str, dict[int, tuple[int, int]]] = {}
        for r in job.ranges:
            if isinstance(r, OffsetRange):
                start, end = offsets.setdefault(r.topic, {}).get(r.partition, (r.start, r.end))
                offsets[r.topic][r.partition] = (min(start, r.start), max(end, r.end))
        manifests = wh.manifests()
        previous = manifests[-1].watermarks if manifests else {}
        delivered = manifests[-1].delivery if manifests else {}
        manifest = Manifest(
            seq=job.seq,
            created_at=job.now.isoformat(),
            config_version=self.config.version,
            config_fingerprint=self.config.fingerprint,
            files=tuple(outcome.files),
            offsets=offsets,
            watermarks=merge_watermarks(previous, outcome.watermarks),
            counts={
                "consumed": sum(outcome.consumed.values()),
                "landed": sum(outcome.landed.values()),
                "dead_lettered": sum(outcome.dead_lettered.values()),
                "duplicates_skipped": sum(outcome.duplicates_skipped.values()),
                "relanded": outcome.relanded,
                "unmapped_touchpoints": outcome.unmapped,
                "internal_errors": outcome.internal_errors,
                "redacted": outcome.redacted,
                "blank_lines": outcome.blank_lines,
                **{f"consumed_{k}": v for k, v in outcome.consumed.items()},
                **{f"landed_{k}": v for k, v in outcome.landed.items()},
                **({"dead_letters_unsent": len(outbox)} if outbox is not None else {}),
            },
            sources=job.sources_meta,
            settings=self.config.settings_record(),
            kind=INGEST,
            outbox=outbox,
            delivery=merge_delivery(
                delivered,
                batch_delivery(job),
                landed=previous,
                landed_by=manifests[-1].created_at if manifests else None,
            ),
            # The rules the landed touchpoints' sessions and cycles are current under after it.
            derived=after_ingest(wh, self.config.settings_record(), outcome.files),
        )
        publish_commit(wh, manifest, gate=self.gate, rebuild_views=refresh_views)
        report = BatchReport(
            job.seq,
            outcome.consumed,
            outcome.landed,
            outcome.dead_lettered,
            outcome.duplicates_skipped,
            outcome.relanded,
            len(outcome.files),
            outcome.seconds + time.perf_counter() - started,
            outcome.unmapped,
            outcome.blank_lines,
            outcome.internal_errors,
            outcome.redacted,
        )
        if self.on_batch:
            self.on_batch(report)
        return report

    def _send_dead_letters(self, settings: KafkaSettings, files: list[PublishedFile]) -> tuple[OutboxEntry, ...]:
        """Send the outbox of earlier runs, then this batch's dead letters, to the dead-letter topic.

        Returns what could not be sent, in order: the outbox the manifest records. Never raises
        for the topic's sake: the Parquet rows are the dead letters, the topic only mirrors them.
        """
        pending = list(self.warehouse.outbox())
        try:
            producer = make_producer(settings)
        except Exception as exc:  # no producer: everything waits for the next run
            log.warning("dead-letter topic: no producer (%s: %s); kept in the outbox", type(exc).__name__, exc)
            producer = None
        try:
            limit = record_limit(producer.config["max_request_size"] if producer else 1024 * 1024)
            topic = settings.topics["dead_letters"]
            pending += records_of(self.warehouse.root, [f.path for f in files], topic, limit)
            return tuple(send_in_order(producer, pending)) if producer else tuple(pending)
        finally:
            if producer is not None:
                producer.close()

    def _send_outbox(self, settings: KafkaSettings) -> None:
        """At the start of a run, the dead letters earlier runs could not send: sent again, and a
        commit that records what is left (nothing else changes)."""
        wh = self.warehouse
        before = wh.outbox()
        if not before:
            return
        left = self._send_dead_letters(settings, [])
        if left == before:  # nothing went out (the broker is away): nothing to record
            return
        latest = wh.manifests()[-1]
        publish_commit(
            wh,
            Manifest(
                seq=wh.next_seq(),
                created_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
                config_version=latest.config_version,
                config_fingerprint=latest.config_fingerprint,
                files=(),
                offsets={},
                watermarks=latest.watermarks,  # carried forward: the latest manifest holds them
                counts={"dead_letters_resent": len(before) - len(left), "dead_letters_unsent": len(left)},
                settings=latest.settings,
                kind=INGEST,  # of nothing: the outbox alone
                outbox=left,
                delivery=latest.delivery,
            ),
            gate=accept_all,  # nothing to judge: no file
            rebuild_views=False,
        )

    # -- whole runs ------------------------------------------------------------------------
    def run_kafka(self, settings: KafkaSettings, max_batches: int | None = None, *, refresh: bool = True) -> RunReport:
        """Catch up from the published offsets to a snapshot of the end offsets taken now, then
        (unless `refresh` is false: the scheduled flow refreshes in a task of its own) the
        derived datasets.

        With `workers` > 1, that many micro-batches run at once in worker processes, each over
        its own partitions (customers never span partitions), and are published in order.
        """
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        if self.workers > 1 and not self.config.ingest.keyed_by_customer:
            raise WorkersNeedKeyedTopics(
                f"--workers {self.workers} runs partitions in separate processes, which is only right when "
                "every message is keyed by its customer_id; the configuration says it is not "
                "(ingest.keyed_by_customer: false): run with --workers 1"
            )
        report = RunReport(self.warehouse.root)
        kind_of_topic = {settings.topics["touchpoints"]: "touchpoints", settings.topics["surveys"]: "surveys"}
        self._send_outbox(settings)
        consumer = make_consumer(settings, group_id=CONSUMER_GROUP)
        pool = self._pool or (start_workers(self.workers - 1) if self.config.ingest.keyed_by_customer else None)
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in kind_of_topic
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                raise RuntimeError(
                    f"topics {', '.join(kind_of_topic)} do not exist at {settings.bootstrap}: "
                    "create them with `parcours produce` or `python -m parcours.kafka ensure-topics`"
                )
            end = {(tp.topic, tp.partition): o for tp, o in consumer.end_offsets(partitions).items()}
            beginning = {(tp.topic, tp.partition): o for tp, o in consumer.beginning_offsets(partitions).items()}
            source_of_kind = {kind: {topic} for topic, kind in kind_of_topic.items()}
            lanes = _lanes(partitions, self.workers)
            while max_batches is None or len(report.batches) < max_batches:
                offsets = self.warehouse.offsets()
                seq = self.warehouse.next_seq()
                jobs = []
                for lane in lanes:
                    keys = {(tp.topic, tp.partition) for tp in lane}
                    ranges = plan_offset_ranges(
                        kind_of_topic,
                        offsets,
                        {k: v for k, v in beginning.items() if k in keys},
                        {k: v for k, v in end.items() if k in keys},
                        self.batch_size,
                    )
                    if ranges and (max_batches is None or len(report.batches) + len(jobs) < max_batches):
                        reached = _read_to_end(ranges, offsets, beginning, end, keys)
                        jobs.append(
                            self.plan_job(
                                seq + len(jobs),
                                ranges,
                                settings=settings,
                                source_of_kind=source_of_kind,
                                read_to_end=reached,
                            )
                        )
                if not jobs:
                    break
                # One job per lane: the first here, in the process that already imported everything.
                others = [pool.submit(execute, job) for job in jobs[1:]] if pool is not None else []
                outcomes = [execute(jobs[0]), *(future.result() for future in others)]
                published_ids: list[str] = []  # the id index files of this round's published batches
                for index, outcome in enumerate(outcomes, 1):
                    if shares_ids(_id_index_paths(self.warehouse.root, outcome.files), published_ids):
                        # It ran beside them and could not see their ids: decided again against
                        # the index as they left it. Rare (an id under two customers at once).
                        log.info("batch %d shares ids with a batch published before it: run again", outcome.job.seq)
                        outcome = execute(replace(outcome.job, files=self._published_files()))
                    report.batches.append(self.publish(outcome, refresh_views=index == len(outcomes)))
                    published_ids += _id_index_paths(self.warehouse.root, outcome.files)
                _crash_point("before_kafka_commit")
                self._mirror_offsets(consumer, TopicPartition, OffsetAndMetadata)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
                self._pool = None
            consumer.close()
        if refresh:
            report.marts = catch_up(self.warehouse, beam_args=self.beam_args)
        return report

    def _mirror_offsets(self, consumer, topic_partition, offset_and_metadata) -> None:
        """Kafka's committed offsets follow the manifest (for lag monitoring), never lead it."""
        commits = {
            topic_partition(topic, partition): offset_and_metadata(offset, "", -1)
            for topic, parts in self.warehouse.offsets().items()
            for partition, offset in parts.items()
        }
        if commits:
            consumer.commit(commits)

    def run_files(self, data_dir: Path, max_batches: int | None = None, *, refresh: bool = True) -> RunReport:
        """Backfill from touchpoints.jsonl / surveys.jsonl, resuming after what was landed, then
        (unless `refresh` is false) refresh the derived datasets."""
        report = RunReport(self.warehouse.root)
        found: dict[str, Path] = {}
        for name, kind in FILE_KINDS.items():
            if (data_dir / name).exists():
                if kind in found:
                    raise AmbiguousBackfill(f"{data_dir}: both {found[kind].name} and {name}: keep one {kind} file")
                found[kind] = (data_dir / name).resolve()
        if not found:
            raise FileNotFoundError(f"{data_dir}: none of {', '.join(FILE_KINDS)} found")
        done = self.warehouse.file_progress()
        pending = [
            r
            for kind, path in sorted(found.items())
            for r in plan_file_ranges(kind, path, done.get(_file_key(path), 0), min(CHUNK_ROWS, self.batch_size))
        ]
        source_of_kind = {kind: {str(path)} for kind, path in found.items()}
        while pending and (max_batches is None or len(report.batches) < max_batches):
            batch_ranges: list[FileRange] = []
            lines = 0
            while pending and lines + pending[0].lines <= max(self.batch_size, pending[0].lines):
                lines += pending[0].lines
                batch_ranges.append(pending.pop(0))
            meta = tuple(
                {"path": r.path, "key": _file_key(Path(r.path)), "range": [r.start, r.end], "records": r.lines}
                for r in batch_ranges
            )
            # A file is read to its end by the batch that takes its last range.
            reached = {r.path: {-1: not any(p.path == r.path for p in pending)} for r in batch_ranges}
            report.batches.append(
                self.run_batch(
                    batch_ranges, settings=None, source_of_kind=source_of_kind, sources_meta=meta, read_to_end=reached
                )
            )
        if refresh:
            report.marts = catch_up(self.warehouse, beam_args=self.beam_args)
        return report


def _read_to_end(
    ranges: list[OffsetRange],
    offsets: dict[str, dict[int, int]],
    beginning: dict[tuple[str, int], int],
    end: dict[tuple[str, int], int],
    partitions: set[tuple[str, int]],
) -> dict[str, dict[int, bool]]:
    """Per partition of a lane: whether the batch leaves it at the end offset of the run's
    snapshot (a partition the batch does not read is where the published offsets left it)."""
    after = {(r.topic, r.partition): r.end for r in ranges}
    reached: dict[str, dict[int, bool]] = {}
    for topic, partition in sorted(partitions):
        at = after.get((topic, partition), offsets.get(topic, {}).get(partition, beginning[(topic, partition)]))
        reached.setdefault(topic, {})[partition] = at >= end[(topic, partition)]
    return reached


def _file_key(path: Path) -> str:
    """A file is identified by path, size and modification time: an edited file starts over."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
