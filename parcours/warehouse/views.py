"""Views: the DuckDB file of views only, the SQL model loader, and the settings views.

``parcours.duckdb`` holds only views over the live files. It is rebuilt as a new file and moved
into place with ``os.replace``: a BI tool that has the old file open keeps reading the old inode
(Linux), and every new connection sees the new views. The views name the Parquet files by
absolute path, because DuckDB resolves a relative path against the client's working directory,
not against the database file: a moved warehouse needs its views rebuilt.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import duckdb

from parcours.warehouse.conventions import render_model
from parcours.warehouse.datasets import DATASETS, DatasetSpec
from parcours.warehouse.files import _fsync_dir
from parcours.warehouse.ledger import Manifest, PublishedFile, Refreshed, _utc_iso

# DuckDB 1.x clients (most BI drivers) cannot open a file written with DuckDB 2.0's default
# storage format; v1.0.0 is the oldest format the 2.0 writer offers and every 1.x reads it.
STORAGE_VERSION = "v1.0.0"
MODEL_LAYERS = ("staging", "intermediate", "marts")
META_VIEW = "parcours_meta"
SETTINGS_VIEW = "parcours_settings"
STAGES_VIEW = "parcours_stages"
DATASETS_VIEW = "parcours_datasets"
WATERMARK_VIEW = "parcours_watermark"
FINALITY_VIEW = "parcours_finality"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VIEW_HEADER = re.compile(r"^--\s*view:\s*(\S+)\s*$")
_BUILD_ALIAS = "parcours_build"


class Views:
    """The views file of a `Warehouse`."""

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
        * `parcours_meta`: the root the views were built for, when, and from which manifests;
        * `parcours_watermark` and `parcours_finality`: the watermark per source partition and
          overall, and the finality point, at the latest commit's wall clock (`_time_views_sql`).

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
                    for statement in _time_views_sql(manifests[-1] if manifests else None):
                        con.execute(statement)
                    settings = _latest_settings(manifests)
                    self._create_views(con, models, settings)
                    if sql_dir is None:  # the package's models: the views the declarations name
                        con.execute(_datasets_view_sql(self.derived_state(), settings))
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
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        adding: Iterable[PublishedFile] = (),
        leaving: Iterable[str] = (),
        settings: dict | None = None,
        judged_at: Manifest | None = None,
    ) -> None:
        """Create every view of the views file in `con` (an in-memory connection of the caller's),
        over the live files plus `adding` less the paths `leaving`: the warehouse as it will read
        once a commit listing those files lands. The refresher computes the partition datasets
        through it, from the same models the views file holds."""
        models = _read_models(resources.files("parcours.sql"))
        manifests = self.manifests()
        settings = settings or _latest_settings(manifests)
        # A view's `is_complete` reads the finality point: judged at `judged_at`'s wall clock and
        # watermarks (a refresh passes its own commit-to-be, so they are its `as_of`), else the latest's.
        judged_at = judged_at or (manifests[-1] if manifests else None)
        for statement in _time_views_sql(judged_at, temporary=True):
            con.execute(statement)
        self._create_views(con, models, settings, adding=tuple(adding), leaving=frozenset(leaving))

    def _create_views(
        self,
        con: duckdb.DuckDBPyConnection,
        models: list[_Model],
        settings: dict[str, Any],
        adding: tuple[PublishedFile, ...] = (),
        leaving: frozenset[str] = frozenset(),
    ) -> None:
        for spec in DATASETS.values():
            paths = self.published_files(spec.name) + [f.path for f in adding if f.dataset == spec.name]
            paths = [path for path in paths if path not in leaving]
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


def _datasets_view_sql(state: Mapping[str, Refreshed], settings: dict[str, Any]) -> str:
    """`parcours_datasets`: one row per derived dataset, from its declaration and its latest
    refresh: what it is, how it is kept current, the definition its rows are current under
    against the one the code and configuration give now, and its current row count."""
    from parcours.refresh.declarations import declarations, fingerprint

    def strings(values: Iterable[str]) -> str:
        return "cast([" + ", ".join(_literal(v) for v in values) + "] as VARCHAR[])"

    def nullable(value: Any, kind: str) -> str:
        return f"cast(null as {kind})" if value is None else f"cast({_literal(str(value))} as {kind})"

    rows = []
    for derived in declarations():
        refreshed = state.get(derived.name)
        period = derived.conventions.period
        zone = (period.timezone if period else "") or settings.get("reporting_timezone", "UTC")
        current = fingerprint(derived, settings)
        stored = refreshed.fingerprint if refreshed is not None else None
        rows.append(
            "select "
            + ", ".join(
                [
                    f"{_literal(derived.name)} as name",
                    f"{_literal(derived.view)} as view_name",
                    f"{_literal(derived.description)} as description",
                    f"{_literal(derived.source)} as declared_in",
                    f"{strings(derived.grain)} as grain",
                    f"{_literal(derived.partition)} as partition_column",
                    # The conventions (README, "Reading the analytics views"): the period a row
                    # counts in and the timestamp that puts it there, the breakdowns it holds.
                    f"{nullable(period.column if period else None, 'VARCHAR')} as period_column",
                    f"{nullable(period.unit if period else None, 'VARCHAR')} as period_unit",
                    f"{nullable(period.by if period else None, 'VARCHAR')} as period_by",
                    f"{nullable(zone if period else None, 'VARCHAR')} as period_timezone",
                    f"{strings(derived.conventions.breakdowns)} as breakdowns",
                    f"{nullable(derived.conventions.min_n, 'INTEGER')} as min_n",
                    f"{_literal(derived.cadence)} as cadence",
                    f"{_literal(derived.invalidation.kind)} as invalidation",
                    f"{strings(derived.depends_on)} as depends_on",
                    f"{strings(derived.reads_config)} as reads_config",
                    f"{nullable(stored, 'VARCHAR')} as fingerprint",
                    f"{_literal(current)} as current_fingerprint",
                    f"{'null' if stored is None else str(stored != current).lower()} as is_stale",
                    f"{nullable(refreshed.seq if refreshed else None, 'BIGINT')} as refreshed_seq",
                    # The latest commit its rows hold (behind the others for an hourly or daily one).
                    f"{nullable(_through(refreshed), 'BIGINT')} as through_seq",
                    f"{nullable(refreshed.refreshed_at if refreshed else None, 'TIMESTAMPTZ')} as refreshed_at",
                    f"{nullable(refreshed.as_of if refreshed else None, 'TIMESTAMPTZ')} as as_of",
                    f"(select count(*) from {_quote(derived.view)}) as rows",
                ]
            )
        )
    if not rows:
        return f"create view {DATASETS_VIEW} as select cast(null as VARCHAR) as name where false"
    return f"create view {DATASETS_VIEW} as " + " union all ".join(rows)


def _through(refreshed: Refreshed | None) -> int | None:
    if refreshed is None:
        return None
    return refreshed.through if refreshed.through is not None else refreshed.seq


def _time_views_sql(latest: Manifest | None, *, temporary: bool = False) -> list[str]:
    """`parcours_watermark`: one row per source partition (touchpoints or surveys, source,
    partition): its latest landed event time, when it last delivered, whether it was read to its
    end, whether it is idle and whether it holds the watermark back. `parcours_finality`: the
    overall watermark and the finality point in one row, and the wall clock they are judged at.

    Judged at the latest commit's `created_at`, not at the build: the views then say what the
    commit says (after a refresh, `parcours_finality.finality_point` is the datasets' `as_of`),
    and a rebuild of the same commits gives the same rows.
    """
    from parcours.warehouse.time import finality, partition_times

    def at(value: datetime | None) -> str:
        return "cast(null as TIMESTAMPTZ)" if value is None else f"cast({_literal(_utc_iso(value))} as TIMESTAMPTZ)"

    def flag(value: bool | None) -> str:
        return "cast(null as BOOLEAN)" if value is None else str(value).lower()

    if latest is None:
        rows, overall, now = [], None, None
    else:
        now = datetime.fromisoformat(latest.created_at)
        now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
        rows = partition_times(latest, latest.settings, now)
        overall = finality(latest, latest.settings, now)
    watermark, point = (overall.watermark, overall.point) if overall else (None, None)
    columns = (
        "source_kind, source, source_partition, latest_event_at, last_delivered_at, is_read_to_end, "
        "is_idle, is_holding_back"
    )
    selects = [
        f"select {_literal(r.kind)}, {_literal(r.source)}, cast({r.partition} as INTEGER), {at(r.latest_at)}, "
        f"{at(r.delivered_at)}, {flag(r.read_to_end)}, {flag(r.idle)}, {flag(r.holds_back)}"
        for r in rows
    ]
    if not selects:
        selects = [
            "select cast(null as VARCHAR), cast(null as VARCHAR), cast(null as INTEGER), "
            "cast(null as TIMESTAMPTZ), cast(null as TIMESTAMPTZ), cast(null as BOOLEAN), cast(null as BOOLEAN), "
            "cast(null as BOOLEAN) where false"
        ]
    create = "create or replace temp view" if temporary else "create view"
    return [
        f"{create} {WATERMARK_VIEW} as select * from ({' union all '.join(selects)}) as t({columns})",
        f"{create} {FINALITY_VIEW} as select {at(watermark)} as watermark, {at(point)} as finality_point, "
        f"{at(now)} as evaluated_at",
    ]


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
    root = resources.files("parcours.sql")
    text = root.joinpath(layer, f"{name}.sql").read_text("utf-8")
    text = render_model(root, MODEL_LAYERS, (name, _declared_view_name(text) or name), text, f"{layer}/{name}.sql")
    return text.rstrip().rstrip(";")


def settings_views_sql(settings: dict[str, Any], *, temporary: bool = False) -> list[str]:
    """`parcours_settings` (one row) and `parcours_stages` (one row per lifecycle stage), from a
    `JourneyConfig.settings_record()`. Shared by the views file and by the pipeline's refresh of
    the marts, which runs the same models.

    Generated from the record, not listed by hand: a key ending in `_in_s` is an INTERVAL column
    without the suffix, a list of strings a VARCHAR[], a mapping keyed by stage (named in the
    plural) a column of `parcours_stages` in the singular (`drop_off_timeouts_in_s` ->
    `drop_off_timeout`), a list of integers an INTEGER[]. The types and the key
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
    if isinstance(template, list) and template and all(type(v) is int for v in template):
        return "cast([" + ", ".join(str(int(v)) for v in value or []) + "] as INTEGER[])"
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
    names[WATERMARK_VIEW] = names[FINALITY_VIEW] = "the time views"
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
            # The conventions' placeholders, from the declaration naming the model or its view.
            rendered = render_model(sql_dir, MODEL_LAYERS, (entry.name.removesuffix(".sql"), name), text, source)
            body = rendered.rstrip().removesuffix(";").rstrip()
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
    hive_type = "date" if spec.by_date else "integer"
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
        columns.append(f"cast(null as {hive_type}) as {_quote(spec.partition_column)}")
        return f"{create} {name} as select {', '.join(columns)} where false"
    files = ", ".join(_literal(path) for path in paths)
    return (
        f"{create} {name} as select * from read_parquet([{files}], hive_partitioning = true, "
        f"hive_types = {{{_literal(spec.partition_column)}: {hive_type}}}, union_by_name = true)"
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
