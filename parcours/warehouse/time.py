"""Time: the watermark, and the finality point every time-dependent status is judged at.

Per source and partition a manifest records the latest landed event time (`Manifest.watermarks`)
and how the partition last delivered (`Manifest.delivery`: when, whether read to its end). At a
wall-clock `now`:

* a **touchpoint** partition holds the watermark back, at its latest event time, unless it was
  read to its end and has delivered nothing for longer than `ingest.idle_after`: a partition
  with nothing left to read and nothing new cannot deliver the older events the watermark waits
  for, while one still being read (lagging) or one that delivered recently can;
* a **survey** partition never holds it back: answers come when customers answer, and a quiet
  survey topic must not freeze drop-offs and churn. Its times are reported only;
* a partition whose kind or delivery is unknown (recorded by a manifest older than these
  fields) holds it back, as every partition did before;
* the **watermark** is the minimum over the partitions that hold it back; when none does but
  touchpoint partitions exist (every one idle and read to its end), it is the maximum of their
  latest event times: everything there is has landed, so time has reached the newest of it.
  Without any touchpoint partition there is no watermark (None);
* the **finality point** is watermark - `ingest.allowed_lateness`: a status that depends on
  time is final once this point has passed its deadline.

Pure functions of a manifest, its settings record and `now`, so the refresher, the views and the
tests compute the same thing from the same commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from parcours.config import IngestRules
from parcours.warehouse.ledger import Delivery, Manifest

TOUCHPOINTS = "touchpoints"
SURVEYS = "surveys"


@dataclass(frozen=True)
class Finality:
    """The overall watermark at a wall clock, and the finality point it gives."""

    watermark: datetime | None
    point: datetime | None  # watermark - allowed_lateness


@dataclass(frozen=True)
class PartitionTime:
    """One source partition at a wall clock: what `parcours_watermark` shows a row of."""

    kind: str  # touchpoints | surveys | unknown
    source: str  # Kafka topic, or backfill file path
    partition: int  # -1 for a file
    latest_at: datetime | None  # latest landed event time
    delivered_at: datetime | None  # wall clock it last delivered records; None: unknown or never
    read_to_end: bool | None  # None: unknown
    idle: bool | None  # delivered nothing for longer than idle_after; None: unknown
    holds_back: bool


def idle_after(settings: dict[str, Any]) -> timedelta:
    """`ingest.idle_after` from a settings record (the default for records older than the key)."""
    value = settings.get("idle_after_in_s")
    return IngestRules().idle_after if value is None else timedelta(seconds=value)


def allowed_lateness(settings: dict[str, Any]) -> timedelta:
    """`ingest.allowed_lateness` from a settings record (the default when the record has none)."""
    value = settings.get("allowed_lateness_in_s")
    return IngestRules().allowed_lateness if value is None else timedelta(seconds=value)


def partition_times(manifest: Manifest, settings: dict[str, Any], now: datetime) -> list[PartitionTime]:
    """Every source partition the manifest knows (a latest event time or a delivery), sorted by
    kind, source and partition, judged at `now`."""
    quiet_for = idle_after(settings)
    keys = {(source, int(p)) for source, parts in manifest.watermarks.items() for p in parts}
    keys |= {(source, int(p)) for source, parts in manifest.delivery.items() for p in parts}
    rows = []
    for source, partition in keys:
        latest = manifest.watermarks.get(source, {}).get(partition)
        seen = manifest.delivery.get(source, {}).get(partition, Delivery())
        delivered_at = _utc(seen.delivered_at)
        # Unknown when the manifest does not say when it delivered: a partition with a latest
        # event time delivered once, so "never" cannot be told from "not recorded".
        idle = None if delivered_at is None else now - delivered_at > quiet_for
        released = seen.read_to_end is True and idle is True
        rows.append(
            PartitionTime(
                kind=seen.kind,
                source=source,
                partition=partition,
                latest_at=_utc(latest),
                delivered_at=delivered_at,
                read_to_end=seen.read_to_end,
                idle=idle,
                holds_back=latest is not None and seen.kind != SURVEYS and not released,
            )
        )
    return sorted(rows, key=lambda r: (r.kind, r.source, r.partition))


def finality(manifest: Manifest, settings: dict[str, Any], now: datetime) -> Finality:
    """The watermark and the finality point of `manifest`'s warehouse at wall clock `now`.

    `settings` is the manifest's settings record (`JourneyConfig.settings_record()`): it says
    `idle_after` and `allowed_lateness`.
    """
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware (UTC), got {now!r}")
    rows = partition_times(manifest, settings, now)
    holding = [r.latest_at for r in rows if r.holds_back]
    touchpoints = [r.latest_at for r in rows if r.kind == TOUCHPOINTS and r.latest_at is not None]
    if holding:
        watermark = min(holding)
    elif touchpoints:
        watermark = max(touchpoints)  # every touchpoint partition idle and read to its end
    else:
        return Finality(None, None)
    return Finality(watermark, watermark - allowed_lateness(settings))


def _utc(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
