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

This package is storage only: what a batch contains and when it is committed is the pipeline's
business. Its parts, by responsibility: `ledger` (manifests, checkpoints, the lock, the commit),
`files` (durable writes, orphans, removals), `datasets` (the registry of dataset specs), `views`
(the views file, the model loader, the settings views). `Warehouse` is the folder, with all four.
"""

from __future__ import annotations

from pathlib import Path

from parcours.warehouse.datasets import (
    DATASETS,
    ID_INDEX,
    JOURNEY_ARROW,
    MARKER_DATASETS,
    PATH_DATASETS,
    ROLLUPS,
    SESSION_ARROW,
    DatasetSpec,
)
from parcours.warehouse.files import Files
from parcours.warehouse.ledger import (
    CHECKPOINT_FORMAT,
    COMPACTION,
    DROP,
    INGEST,
    KINDS,
    MARTS_THROUGH,
    QUARANTINE,
    REFRESH,
    RELEASE,
    Checkpoint,
    CheckpointError,
    CorruptCheckpoint,
    Delivery,
    DerivedState,
    Ledger,
    Manifest,
    ManifestExists,
    ManifestHistory,
    OutboxEntry,
    PublishedFile,
    Quarantine,
    Refreshed,
    Removal,
    WarehouseBusy,
    _State,
    kind_of,
)
from parcours.warehouse.time import Finality, finality
from parcours.warehouse.views import (
    META_VIEW,
    MODEL_LAYERS,
    SETTINGS_VIEW,
    STAGES_VIEW,
    STORAGE_VERSION,
    Views,
    _create_models,
    _read_models,
    model_references,
    model_sql,
    raw_view_sql,
    settings_views_sql,
)


class Warehouse(Ledger, Files, Views):
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


__all__ = [
    "CHECKPOINT_FORMAT",
    "COMPACTION",
    "DATASETS",
    "DROP",
    "ID_INDEX",
    "INGEST",
    "JOURNEY_ARROW",
    "KINDS",
    "MARKER_DATASETS",
    "MARTS_THROUGH",
    "META_VIEW",
    "MODEL_LAYERS",
    "PATH_DATASETS",
    "QUARANTINE",
    "REFRESH",
    "RELEASE",
    "ROLLUPS",
    "SESSION_ARROW",
    "SETTINGS_VIEW",
    "STAGES_VIEW",
    "STORAGE_VERSION",
    "Checkpoint",
    "CheckpointError",
    "CorruptCheckpoint",
    "DatasetSpec",
    "Delivery",
    "DerivedState",
    "Finality",
    "Manifest",
    "ManifestExists",
    "ManifestHistory",
    "OutboxEntry",
    "PublishedFile",
    "Quarantine",
    "Refreshed",
    "Removal",
    "Warehouse",
    "WarehouseBusy",
    "_State",
    "_create_models",
    "_read_models",
    "finality",
    "kind_of",
    "model_references",
    "model_sql",
    "raw_view_sql",
    "settings_views_sql",
]
