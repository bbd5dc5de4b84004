"""Ingestion on a schedule: one pass of the pipeline, Kafka -> published Parquet -> DuckDB views.

The story of one scheduled pass:

    take the warehouse lock (busy: skip this tick) -> land_from_kafka (retried while the
    broker is unreachable) -> refresh_marts (every derived dataset, `flows/refresh.py`)
    -> log and return the counts of every micro-batch and what the refresh wrote

It is the pass `parcours run` makes, through the same `Ingestion.run_kafka`: the pipeline, its
exactly-once publication and its accounting live in `pipelines/run.py`, not here. What this
module adds is what a schedule needs:

* a run that finds the warehouse locked (the previous tick still landing, the nightly
  compaction, or someone's manual `parcours run`) is skipped: the next tick lands what this one
  would have (`flows/busy.py`, shared with the compaction flow);
* only the Kafka I/O is retried, with exponential backoff, and only on errors a later attempt
  can fix (the broker unreachable or stalling). A retry is safe because each attempt resumes
  from the offsets of the last committed manifest. Data errors (counts that do not add up,
  offsets lost to retention, a bad configuration) fail the run on the first attempt: retrying
  them would only delay the alert.

Kafka settings come from the environment (`KafkaSettings.from_env`, as in the CLI), never from
flow parameters: parameters are stored and shown by the Prefect API, and the SASL password
must not be. The schedule is declared in `prefect.yaml`; `parcours serve` runs it locally.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import State
from prefect.tasks import exponential_backoff

from parcours.config import load_config
from parcours.flows.busy import skipped
from parcours.flows.refresh import describe as describe_refresh
from parcours.flows.refresh import refresh_marts, refreshed
from parcours.kafka import BrokerUnavailable, KafkaSettings
from parcours.warehouse import Warehouse, WarehouseBusy

# Three retries, 5 s then 10 s then 20 s apart (each +/- 20 % jitter so that several flows do
# not hammer a recovering broker in step): a broker restart is covered, an outage longer than
# ~40 s fails the run and the next tick tries again. The lock is held meanwhile, so the ticks in
# between are skipped rather than queued.
KAFKA_RETRIES = 3
KAFKA_BACKOFF_S = 5.0
KAFKA_RETRY_JITTER = 0.2


def is_broker_unavailable(exc: BaseException) -> bool:
    """True for the errors a later attempt can fix: the broker not answering or not delivering.

    * `BrokerUnavailable`: no broker answered the bootstrap request;
    * `SourceStalled`: a bounded offset range stopped progressing (the broker went away mid-read);
    * kafka-python errors it marks retriable (timeouts, no leader, node not ready...).

    Everything else is a data or configuration error and is not retried: `CountsDoNotAddUp`,
    `OffsetOutOfRetention`, `KafkaSettingsError`, a bad journey configuration, a bug (`TooManyInternalErrors`).
    """
    from kafka.errors import KafkaError

    from parcours.pipelines.sources import SourceStalled

    if isinstance(exc, BrokerUnavailable | SourceStalled):
        return True
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


def retry_on_broker_unavailable(_task: Any, _task_run: Any, state: State) -> bool:
    """Prefect's retry condition for the Kafka task: retry only when the broker is the problem."""
    try:
        state.result()
    except Exception as exc:  # the failed attempt's exception, re-raised by Prefect
        return is_broker_unavailable(exc)
    return False


@dataclass(frozen=True)
class IngestReport:
    """What one pass did: the counts of every micro-batch, or why it was skipped."""

    warehouse: str
    batches: tuple[dict[str, Any], ...] = ()  # BatchReport fields: seq, consumed, landed... per kind
    skipped: str | None = None
    refreshed: dict[str, Any] | None = None  # what the refresh after the landing did (`flows/refresh.py`)

    def total(self, name: str) -> int:
        """Sum over batches and kinds of one count: consumed, landed, dead_lettered, duplicates_skipped."""
        return sum(sum(batch[name].values()) for batch in self.batches)

    def describe(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        if not self.batches:
            return f"nothing new to land in {self.warehouse}"
        return (
            f"consumed {self.total('consumed'):,} = landed {self.total('landed'):,} + dead-lettered "
            f"{self.total('dead_lettered'):,} + duplicates skipped {self.total('duplicates_skipped'):,} "
            f"in {len(self.batches)} micro-batch(es) into {self.warehouse}"
        )


@task(
    name="land_from_kafka",
    retries=KAFKA_RETRIES,
    retry_delay_seconds=exponential_backoff(backoff_factor=KAFKA_BACKOFF_S),
    retry_jitter_factor=KAFKA_RETRY_JITTER,
    retry_condition_fn=retry_on_broker_unavailable,
    cache_policy=NO_CACHE,  # every pass must read Kafka anew: a cached result would land nothing
)
def land_from_kafka(
    warehouse: Warehouse,
    settings: KafkaSettings,
    config_path: str | None,
    workers: int,
    batch_size: int | None,
    max_batches: int | None,
) -> IngestReport:
    """Everything new in Kafka, up to the end offsets seen at the start, landed and published.

    The caller holds the warehouse lock. Each attempt first tidies the warehouse (views, and the
    files of a batch an earlier attempt left half-written), then resumes from the manifest.
    """
    from parcours.pipelines import import_beam_quietly

    import_beam_quietly()
    from parcours.pipelines.run import Ingestion

    logger = get_run_logger()
    # As in `parcours run`: a broker that just started moves its group coordinator while the
    # first offset commit is retried; kafka-python warns on each retry, then succeeds.
    logging.getLogger("kafka.coordinator").setLevel(logging.ERROR)
    runner = Ingestion(
        warehouse,
        load_config(Path(config_path) if config_path else None),
        batch_size=batch_size,
        workers=workers,
        on_batch=lambda batch: logger.info(batch.describe()),
    )
    runner.tidy()
    result = runner.run_kafka(settings, max_batches=max_batches, refresh=False)  # refresh_marts follows
    return IngestReport(str(warehouse.root), tuple(asdict(batch) for batch in result.batches))


@flow(name="ingest_events")
def ingest_events(
    warehouse: str = "warehouse",
    config: str | None = None,
    workers: int = 1,
    batch_size: int | None = None,
    max_batches: int | None = None,
) -> IngestReport | State:
    """Land everything new from Kafka into the warehouse; skip the tick if a run holds it.

    Parameters mirror `parcours run`: the warehouse folder, the journey configuration (default:
    the built-in one), worker processes, messages per micro-batch, and an optional cap on
    micro-batches per pass. Kafka settings come from the PARCOURS_KAFKA_* environment.
    """
    logger = get_run_logger()
    settings = KafkaSettings.from_env()  # a bad setting fails here, named, before any work
    wh = Warehouse(warehouse)
    # Where from and where to, never the credentials (the settings object itself masks them too).
    logger.info(
        "landing %s* from %s (%s) into %s",
        settings.topic_prefix,
        settings.bootstrap,
        settings.security_protocol,
        wh.root,
    )
    try:
        with wh.lock():
            report = land_from_kafka(wh, settings, config, workers, batch_size, max_batches)
            refresh = refresh_marts(wh)
            report = dataclasses.replace(report, refreshed=refreshed(refresh))
    except WarehouseBusy as exc:
        return skipped(exc, IngestReport(str(wh.root), skipped=str(exc)))
    logger.info(report.describe())
    logger.info(describe_refresh(refresh, str(wh.root)))
    return report


__all__ = [
    "IngestReport",
    "ingest_events",
    "is_broker_unavailable",
    "land_from_kafka",
    "retry_on_broker_unavailable",
]
