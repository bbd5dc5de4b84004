"""The one publish path: staged files -> gate -> atomic manifest commit -> views rebuild.

Ingestion, the refresh of the derived datasets and compaction all publish through `publish`, so
every commit meets the same gate and the same views rebuild. The gate judges a staged commit (its
manifest and the files it lists, already on disk under their final names) and either accepts it
or refuses it with a reason. A refused commit is not lost and not published: it is committed as a
**quarantine** manifest, whose files stay on disk listed under `quarantined`, which no view and no
refresh reads, and whose offsets are consumed, so later batches keep landing. Its watermarks are
not merged: lateness is judged against what is published.

A quarantine is then settled exactly once, by one commit (the ledger refuses a second):

* `release`: its files published as they were gated, with its counts, by a `release` commit, and
  the watermarks of its events merged then;
* `drop`: the reason recorded, the files removed like a compaction's (deleted after the grace
  period).

The gate is a callable, so the quality suites plug in without the publish path knowing them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from parcours.warehouse.datasets import DATASETS
from parcours.warehouse.ledger import DROP, QUARANTINE, RELEASE, Manifest, Quarantine, merge_watermarks
from parcours.warehouse.views import raw_view_sql


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str = ""


ACCEPTED = Verdict(True)


@dataclass(frozen=True)
class Staged:
    """A commit about to be published: its manifest, and the warehouse its files are in."""

    warehouse: object  # parcours.warehouse.Warehouse (not imported: it is built from this package)
    manifest: Manifest


Gate = Callable[[Staged], Verdict]


def accept_all(_staged: Staged) -> Verdict:
    return ACCEPTED


class NotQuarantined(ValueError):
    """Release or drop of a seq that is no open quarantine."""


def publish(warehouse, manifest: Manifest, *, gate: Gate = accept_all, rebuild_views: bool = True) -> Manifest:
    """Commit `manifest` if the gate accepts it, else as a quarantine; returns what was committed.

    `rebuild_views=False` when more commits follow at once (the views are rebuilt after the last);
    a quarantine changes no view, so it never rebuilds them.
    """
    verdict = gate(Staged(warehouse, manifest))
    if not verdict.accepted:
        manifest = dataclasses.replace(
            manifest,
            kind=QUARANTINE,
            files=(),
            quarantined=manifest.files,
            reason=verdict.reason or "refused by the gate",
            watermarks=warehouse._state().watermarks,  # lateness is judged against what is published
        )
        warehouse.commit(manifest)
        return manifest
    warehouse.commit(manifest)
    if rebuild_views:
        warehouse.rebuild_views()
    return manifest


def _open_quarantine(warehouse, seq: int) -> Quarantine:
    for quarantine in warehouse.quarantines():
        if quarantine.seq == seq:
            return quarantine
    raise NotQuarantined(f"batch {seq} is no open quarantine (open: {[q.seq for q in warehouse.quarantines()]})")


def release(warehouse, seq: int, *, now: datetime | None = None) -> Manifest:
    """Publish quarantine `seq`'s files as they were gated, by one commit. Needs the lock."""
    if not warehouse.locked:
        raise RuntimeError("release() needs the warehouse lock: use `with warehouse.lock():`")
    quarantine = _open_quarantine(warehouse, seq)
    latest = warehouse.manifests()[-1]
    manifest = Manifest(
        seq=warehouse.next_seq(),
        created_at=(now or datetime.now(UTC)).replace(microsecond=0).isoformat(),
        config_version=latest.config_version,
        config_fingerprint=latest.config_fingerprint,
        files=quarantine.files,
        offsets={},  # consumed by the quarantine's own commit
        watermarks=_merged_watermarks(warehouse, quarantine),
        delivery=latest.delivery,
        counts=dict(quarantine.counts),
        settings=latest.settings,
        kind=RELEASE,
        settles=seq,
    )
    warehouse.commit(manifest)
    warehouse.rebuild_views()
    return manifest


def drop(warehouse, seq: int, why: str, *, now: datetime | None = None) -> Manifest:
    """Settle quarantine `seq` without publishing it: the reason recorded, its files removed."""
    if not warehouse.locked:
        raise RuntimeError("drop() needs the warehouse lock: use `with warehouse.lock():`")
    if not why.strip():
        raise ValueError("a dropped batch needs a reason: say why")
    _open_quarantine(warehouse, seq)
    latest = warehouse.manifests()[-1]
    manifest = Manifest(
        seq=warehouse.next_seq(),
        created_at=(now or datetime.now(UTC)).replace(microsecond=0).isoformat(),
        config_version=latest.config_version,
        config_fingerprint=latest.config_fingerprint,
        files=(),
        offsets={},
        watermarks=latest.watermarks,
        delivery=latest.delivery,
        counts={},
        settings=latest.settings,
        kind=DROP,
        settles=seq,
        reason=why.strip(),
    )
    warehouse.commit(manifest)
    return manifest


def _merged_watermarks(warehouse, quarantine: Quarantine) -> dict[str, dict[int, str]]:
    """The published watermarks with the latest event time per source partition of the quarantine's
    touchpoints and answers, as their own commit would have merged them."""
    latest: dict[str, dict[int, str]] = {}
    columns = {"touchpoints": "occurred_at", "survey_answers": "answered_at"}
    with duckdb.connect() as con:
        for dataset, column in columns.items():
            paths = [str(warehouse.root / f.path) for f in quarantine.files if f.dataset == dataset]
            if not paths:
                continue
            con.execute(raw_view_sql(con, DATASETS[dataset], paths, temporary=True, name="released"))
            for source, partition, at in con.execute(
                f"select source, coalesce(source_partition, -1), max({column}) from released group by all"
            ).fetchall():
                latest.setdefault(source, {})[int(partition)] = at.astimezone(UTC).isoformat()
    return merge_watermarks(warehouse._state().watermarks, latest)
