"""The refresher: every declared derived dataset brought up to date with what ingestion landed.

Each derived dataset is declared beside its model (`parcours.refresh.declarations`); a pass of
the refresher runs, in dependency order, the datasets that the ingestion commits since the last
refresh invalidated, and publishes all their rows in one commit of kind `refresh`:

* **customers** datasets (`sessions`, `journeys`): for every customer those commits touched, the
  model's rows from the customer's recompute point on (the earliest value of the declaration's
  `from` column among its new touchpoint rows: the session its new events continue, the cycle of
  its earliest landed event), and one `refreshes` marker per customer recording those points,
  by which the staging models supersede the customer's older rows from there on.
  The batches' touchpoint rows say all of that: they are every current event of the customer from
  its earliest new one on (recomputed with it). Sessions and cycles never interleave in time, so
  the events at or after that point are exactly the events of the groups to recompute, older ones
  included: they are read from the published Parquet, from the earliest point's event-date
  partition on (a timestamp point's own date; for a cycle number, the date its cycle started:
  `cycle_started_at`, see `_cycles_started`), so a pass reads what its customers' open sessions
  and cycles hold, not the whole history. A dataset declaring `answers_from` (`survey_attachments`)
  is touched by new survey answers too: its customers are those of the new touchpoints and of the
  new answers, each recomputed from the earliest of its events' point, its new answers' time and
  the time of its landed answers naming one of the new events (an answer that came before its
  event); its model reads the customer's answers from there and every event of the customer (the
  latest one before an answer may be old). Its marker column is null for the customers the other
  datasets alone were refreshed for, and theirs for a survey-only customer: a null marker
  supersedes nothing;
* **partitions** datasets (the rollups `sessions_daily`, `touchpoints_daily`,
  `journey_stages_weekly`, `journey_paths_weekly`): every partition the pass changed, recomputed
  whole by the model over the warehouse as it will read after the commit, its old file removed
  by the manifest. Changed partitions: of a landed source, the partitions of its new files (a
  re-landed event keeps its date); of a derived source, the declaration's `source_partition` of
  the source's new rows and of the rows their markers supersede. A dataset with no file yet is
  computed whole once;
* **family** datasets (q-values): the families of the source's changed rows recomputed whole,
  exactly those, and the partitions holding them rewritten with the other families' rows as
  they were;
* **whole** datasets: recomputed whole, every old file replaced, when anything they read changed
  (or the finality point moved, for a model reading the clock).

Cadences: every-pass datasets are refreshed by every pass with work; an hourly (daily) one by
the first pass in a later UTC hour (day) than its last refresh. The ledger records per dataset
the seq it is current through (`DerivedState.through`), so a deferred dataset, when due, sees
every commit since its own last refresh: the batches landed since, and the refresh commits of
the datasets it reads. `MARTS_THROUGH` is the least of those points (every dataset holds the
commits up to it), and `marts_pending` the batches after it: empty only when every dataset is
current, which a compaction needs (it refreshes every cadence first, as `--full` does).

The rows come from the model SQL itself, run by DuckDB over those events only, so a session row
and a journey row keep one definition (`sql/intermediate/`), and no count is ever patched by a
difference.

The refresh commit also records, per derived dataset, the fingerprint its rows are current
under (its models' text, declaration and the configuration keys they read) and the point in
event time it covers (`as_of`): `parcours_datasets` shows them, and `plan` says when a model or
setting changed since (`parcours refresh --full` rebuilds those datasets whole). When the rules
of the touchpoints' own sessions and cycles changed, `--full` re-derives those first, in the same
commit, and rebuilds every dataset over them (`parcours.refresh.rederive`).

When: `catch_up`, at the end of every `parcours run`, from `parcours refresh`, from the
`refresh_marts` flow after each scheduled ingestion pass, and before a compaction, for every
commit since the last refresh (`Warehouse.marts_pending`), survey-only batches included, so a
run that crashed between its batches and its refresh is caught up by the next one. Why not with
each batch: the journeys model re-aggregates whole open cycles (weeks of events), ~1.7 s a
250,000-event batch at 1M events and more as history grows, which made a catch-up of a backlog
(several batches) a third slower; once per pass it is paid once. The price: while a run lands
several micro-batches, the derived datasets show the state before the run until it ends (the
touchpoints are current after each batch).
"""

from __future__ import annotations

import bisect
import dataclasses
import gc
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import PurePosixPath

import duckdb
import pyarrow as pa

from parcours.config import JourneyConfig
from parcours.pipelines.state import file_date
from parcours.refresh.beam_models import run_model
from parcours.refresh.declarations import (
    CUSTOMERS,
    EVERY_PASS,
    HOURLY,
    PARTITIONS,
    WHOLE,
    Derived,
    declarations,
    fingerprint,
    load_arguments,
    load_python,
)
from parcours.refresh.rederive import TOUCHPOINTS, NeedsConfiguration, rederive, stale_because
from parcours.refresh.statistics import add_intervals
from parcours.warehouse import (
    COMPACTION,
    DATASETS,
    MARTS_THROUGH,
    REFRESH,
    DerivedState,
    Manifest,
    PublishedFile,
    Refreshed,
    Warehouse,
    kind_of,
    model_sql,
    raw_view_sql,
    settings_views_sql,
)
from parcours.warehouse.publish import publish
from parcours.warehouse.time import Finality, finality

PART = "mart"
MEMORY_LIMIT = "1GB"
NO_TIME = Finality(None, None)  # nothing landed yet: no watermark, nothing due
STREAM_ROWS = 122_880  # rows per Arrow batch, so per row group (DuckDB's own size)
# Up to this many new touchpoint rows (a scheduled pass, not a backfill's first refresh, whose
# touched customers are the whole history), the touched customers' rows are read once for all
# the customer datasets of the pass instead of once each (`_scan_touched`).
SHARED_SCAN_MAX_NEW_ROWS = 1_000_000


@dataclass(frozen=True)
class RefreshReport:
    customers: int
    sessions: int
    journeys: int
    files: list[PublishedFile]
    seq: int | None = None  # of the refresh's commit
    batches: int = 0  # batches it caught up
    seconds: float = 0.0
    rollup_partitions: int = 0  # rollup partitions recomputed
    removed: tuple[str, ...] = ()  # rollup files replaced by this refresh
    rows: dict[str, int] = field(default_factory=dict)  # per derived dataset: rows written
    rebuilt: tuple[str, ...] = ()  # datasets rebuilt whole (`--full`: their definition changed)
    rederived: int = 0  # touchpoint rows whose sessions and cycles were re-derived (`--full`)
    refreshed: tuple[str, ...] = ()  # the datasets this pass refreshed (the others' cadence left them)


@dataclass(frozen=True)
class Pending:
    """What a refresh pass would do for one derived dataset, or for the landed touchpoints' derived
    columns (`touchpoints`), and why (`parcours refresh --dry-run`)."""

    dataset: str
    reasons: tuple[str, ...]
    stale_definition: bool = False  # its rows were written under another fingerprint
    due: bool = True  # its cadence lets the next pass refresh it
    next_due: datetime | None = None  # when not: the start of the hour (day) it is due from


def cadence_due(derived: Derived, refreshed: Refreshed | None, now: datetime) -> tuple[bool, datetime | None, str]:
    """Whether a pass at wall clock `now` may refresh `derived`, when it next may if not, and
    why. Every-pass datasets always; an hourly (daily) one when `now` lies in a later UTC hour
    (day) than its last refresh, or it was never refreshed. Its last refresh is the
    `created_at` of the commit that last refreshed it: a pass that left it alone does not count."""
    if derived.cadence == EVERY_PASS:
        return True, None, ""
    if refreshed is None:
        return True, None, f"{derived.cadence}: never refreshed"
    last = datetime.fromisoformat(refreshed.refreshed_at)
    last = (last.replace(tzinfo=UTC) if last.tzinfo is None else last).astimezone(UTC)
    if derived.cadence == HOURLY:
        start, unit, shown = last.replace(minute=0, second=0, microsecond=0), timedelta(hours=1), "%H:%M"
    else:
        start, unit = last.replace(hour=0, minute=0, second=0, microsecond=0), timedelta(days=1)
        shown = "%Y-%m-%d %H:%M"
    following = start + unit
    if now.astimezone(UTC) >= following:
        period = "hour" if derived.cadence == HOURLY else "day"
        return True, None, f"{derived.cadence}: due (last refreshed {last:%Y-%m-%d %H:%M} UTC, in an earlier {period})"
    return False, following, f"{derived.cadence}: next due after {following.strftime(shown)} UTC"


def _in_pass(derived: Sequence[Derived], state: Mapping[str, Refreshed], now: datetime, force: bool) -> dict[str, str]:
    """The datasets a pass at `now` refreshes (name -> why): those their cadence lets it (all when
    `force`), and the datasets each of them reads, so that none is refreshed before what it
    reads is current at least as far (the declarations refuse a cadence more frequent than a
    source's, so this only brings a source forward that an earlier forced pass left behind)."""
    chosen: dict[str, str] = {}
    for d in derived:
        due, _next, why = (True, None, "") if force else cadence_due(d, state.get(d.name), now)
        if due:
            chosen[d.name] = why
    for d in reversed(derived):  # dependants first: what they pull in pulls its own sources in turn
        if d.name in chosen:
            for source in d.depends_on:
                chosen.setdefault(source, f"read by {d.name}, refreshed by this pass")
    return chosen


def _windows(warehouse: Warehouse, names: Sequence[str]) -> tuple[dict[str, int], dict[str, list[Manifest]]]:
    """Per dataset, the seq it is current through and the commits since (its pending work: the
    changed files of every commit after it, refresh commits of the datasets it reads included)."""
    through = warehouse.derived_through(names)
    history = warehouse.manifests()
    oldest = min(through.values(), default=0)
    after = history[bisect.bisect_right(history.seqs, oldest) :]
    return through, {name: [m for m in after if m.seq > through[name]] for name in names}


def _union(windows: Mapping[str, Sequence[Manifest]], datasets: Sequence[Derived]) -> list[Manifest]:
    """The commits any of `datasets` has not seen, in seq order."""
    return sorted({m.seq: m for d in datasets for m in windows[d.name]}.values(), key=lambda m: m.seq)


def _landing(manifests: Sequence[Manifest]) -> list[Manifest]:
    """The commits that landed rows the derived datasets read (ingests, releases)."""
    return [
        m
        for m in manifests
        if kind_of(m) not in (REFRESH, COMPACTION) and any(f.dataset in _LANDED_READ for f in m.files)
    ]


_LANDED_READ = ("touchpoints", "rewrites", "survey_answers")


def _dataset_of(path: str) -> str:
    """The dataset of a file path (`data/<dataset>/<partition>=<value>/<file>`)."""
    parts = PurePosixPath(path).parts
    return next((parts[i - 1] for i, part in enumerate(parts) if "=" in part and i > 0), "")


def _touched(derived: Derived, window: Sequence[Manifest]) -> list[Manifest]:
    """The commits of `window` that added or removed a file of a dataset `derived` reads."""
    reads = set(derived.reads_datasets)
    return [
        m for m in window if any(f.dataset in reads for f in m.files) or any(_dataset_of(p) in reads for p in m.removed)
    ]


def plan(
    warehouse: Warehouse,
    config: JourneyConfig | None = None,
    now: datetime | None = None,
    *,
    all_cadences: bool = False,
) -> list[Pending]:
    """What a refresh pass at wall clock `now` (default: the current time) would do for each
    derived dataset, and why (under `config`'s rules if given, else under the latest commit's),
    the landed touchpoints' derived columns first: the commits it has not seen, whether its
    cadence lets this pass refresh it or when it next does. Reads the ledger only (and the
    pending commits' manifests): cheap, takes no lock."""
    now = now or datetime.now(UTC)
    state = warehouse.derived_state()
    settings = warehouse.manifests()[-1].settings if len(warehouse.manifests()) else {}
    settings = config.settings_record() if config is not None else settings
    out = []
    touchpoints = stale_because(warehouse, settings) if settings else None
    if touchpoints:
        out.append(Pending(TOUCHPOINTS, (touchpoints,), True))
    derived = declarations()
    _through, windows = _windows(warehouse, [d.name for d in derived])
    chosen = _in_pass(derived, state, now, all_cadences)
    for d in derived:
        reasons = []
        landing = _landing(windows[d.name])
        if landing:
            seqs = [m.seq for m in landing]
            touched = sum(m.counts.get("landed", 0) for m in landing)
            reasons.append(
                f"{len(landing)} commit(s) since the last refresh (seq {seqs[0]}..{seqs[-1]}, "
                f"{touched:,} records landed)"
            )
        upstream = [m.seq for m in _touched(d, windows[d.name]) if kind_of(m) == REFRESH]
        if upstream:
            reasons.append(
                f"what it reads was refreshed since its own last refresh (seq {upstream[0]}..{upstream[-1]})"
            )
        current = state.get(d.name)
        stale = False
        if settings and current is not None and current.fingerprint != fingerprint(d, settings):
            stale = True
            reasons.append(
                f"its definition changed since its rows were written (fingerprint {current.fingerprint} -> "
                f"{fingerprint(d, settings)}): `parcours refresh --full` rebuilds it"
            )
        if settings and current is None and not warehouse.live_files(d.name) and landing:
            reasons.append("never built: computed whole")
        due, following, why = cadence_due(d, current, now)
        if d.name in chosen and not due:
            due, following, why = True, None, chosen[d.name] or "every cadence: forced"
        if reasons and why:
            reasons.append(why)
        out.append(Pending(d.name, tuple(reasons), stale, due, following))
    return out


def catch_up(
    warehouse: Warehouse,
    now: datetime | None = None,
    *,
    full: bool = False,
    config: JourneyConfig | None = None,
    beam_args: Sequence[str] = (),
    all_cadences: bool = False,
) -> RefreshReport | None:
    """Refresh the derived datasets due at wall clock `now` for every commit each has not seen, in
    one commit.

    Cadences: an every-pass dataset is refreshed by every pass that has anything to do; an
    hourly (daily) one by the first pass whose wall clock lies in a later UTC hour (day) than its
    last refresh, for every commit since that refresh (the ledger records per dataset the seq it
    is current through: `DerivedState.through`); the others leave it alone. A dataset refreshed
    brings the datasets it reads current in the same pass, before it. `all_cadences` (and
    `full`) refreshes every dataset whatever its cadence, leaving all current: what a compaction
    needs first (it drops the markers a lagging dataset's refresh would read), and what
    `parcours refresh --all-cadences` asks for. A plain `parcours refresh` is a pass like the
    scheduled one: run from cron it *is* the schedule, and forcing there would make every
    cadence every-pass.

    With `full`, the datasets whose definition changed since their rows were written (their
    fingerprint) are rebuilt whole instead, and every other one is refreshed as usual, all in
    that one commit; and if the rules of the landed touchpoints' sessions and cycles changed,
    those are re-derived first (`rederive`, on the runner `beam_args` name), and every derived
    dataset is rebuilt over them, in that same commit. `config`: the rules to refresh under
    (default: the latest commit's settings; re-deriving needs it). The caller holds the
    warehouse lock. None when nothing is to do. The Python models run on the Beam runner
    `beam_args` name (the local one by default).
    """
    started = time.perf_counter()
    manifests = warehouse.manifests()
    if not len(manifests):
        return None
    latest = manifests[-1]
    if config is not None:  # the refresh runs under these rules, and records them
        latest = dataclasses.replace(
            latest,
            settings=config.settings_record(),
            config_version=config.version,
            config_fingerprint=config.fingerprint,
        )
    state = warehouse.derived_state()
    rebuild = _stale(warehouse, latest.settings) if full else set()
    reland = full and stale_because(warehouse, latest.settings) is not None
    if reland and config is None:
        raise NeedsConfiguration(
            f"{stale_because(warehouse, latest.settings)}; re-deriving runs the ingestion transforms, which need "
            "the configuration file: `parcours refresh --full --config FILE`"
        )
    now = now or datetime.now(UTC)
    derived = declarations()
    chosen = _in_pass(derived, state, now, all_cadences or full)
    in_pass = [d for d in derived if d.name in chosen]
    through, windows = _windows(warehouse, [d.name for d in derived])
    pending = _landing(_union(windows, in_pass))
    # The watermark and finality point at the refresh's wall clock (the commit's created_at).
    clock = finality(latest, latest.settings, now.replace(microsecond=0))
    previous = _previous_point(state, in_pass)
    touched = any(_touched(d, windows[d.name]) for d in in_pass)
    if not in_pass or (not pending and not touched and not rebuild and clock.point == previous):
        return None
    # After a run's micro-batches, Arrow's allocator still holds their freed memory: hand it back
    # before DuckDB takes its own, so the run's peak is the larger of the two, not their sum.
    gc.collect()
    pa.default_memory_pool().release_unused()
    seq = warehouse.next_seq()
    customers = [d for d in in_pass if d.invalidation.kind == CUSTOMERS]
    # The customer datasets share one marker per customer: refreshed together, for the commits
    # the least current of them has not seen (again for the others: a recompute is idempotent).
    changed = [f for m in _landing(_union(windows, customers)) for f in m.files]
    relanded = rederive(warehouse, seq, config, now, beam_args=beam_args) if reland else None
    changed += relanded.files if relanded else []
    report = refresh_customers(
        warehouse,
        seq,
        customers,
        changed,
        latest.settings,
        now.date(),
        rebuild=rebuild,
        clock=clock,
        previous_point=_previous_point(state, customers),
        beam_args=beam_args,
    )
    if relanded:  # published by this commit, so read by the partition datasets' models too
        report = dataclasses.replace(report, files=[*relanded.files, *report.files])
    judged_at = dataclasses.replace(latest, created_at=now.replace(microsecond=0).isoformat())
    report = refresh_tables(
        warehouse,
        seq,
        report,
        [d for d in in_pass if d.invalidation.kind != CUSTOMERS],
        {d.name: windows[d.name] for d in in_pass},
        latest.settings,
        rebuild=rebuild,
        clock=clock,
        as_of={d.name: _as_of(state.get(d.name)) for d in in_pass},
        judged_at=judged_at,
    )
    as_of = clock.point.astimezone(UTC).isoformat() if clock.point is not None else None
    publish(
        warehouse,
        Manifest(
            seq=seq,
            created_at=now.replace(microsecond=0).isoformat(),
            config_version=latest.config_version,
            config_fingerprint=latest.config_fingerprint,
            files=tuple(report.files),
            offsets={},
            watermarks=latest.watermarks,  # carried forward: the latest manifest holds them
            delivery=latest.delivery,  # likewise
            counts={
                "refreshed_customers": report.customers,
                "refreshed_sessions": report.sessions,
                "refreshed_journeys": report.journeys,
                "refreshed_batches": len(pending),
                "refreshed_rollup_partitions": report.rollup_partitions,
                "rebuilt_datasets": len(rebuild),
                "refreshed_datasets": len(in_pass),
                **(
                    {
                        "rederived_touchpoints": relanded.rows,
                        "rederived_customers": relanded.customers,
                        "rederived_shards": relanded.shards,
                    }
                    if relanded
                    else {}
                ),
                # Every dataset holds the commits up to the laggard's point (this one's when none lags).
                MARTS_THROUGH: min(seq if d.name in chosen else through[d.name] for d in derived),
            },
            settings=latest.settings,
            removed=report.removed,
            kind=REFRESH,
            derived={  # the datasets this pass left alone keep their own record
                d.name: DerivedState(
                    _current_under(d, state, rebuild, latest.settings), report.rows.get(d.name, 0), as_of, seq
                )
                for d in in_pass
            }
            | (relanded.derived if relanded else {}),
        ),
    )
    return dataclasses.replace(
        report,
        seq=seq,
        batches=len(pending),
        seconds=time.perf_counter() - started,
        rebuilt=tuple(sorted(rebuild)),
        rederived=relanded.rows if relanded else 0,
        refreshed=tuple(d.name for d in in_pass),
    )


def _as_of(refreshed: Refreshed | None) -> datetime | None:
    if refreshed is None or not refreshed.as_of:
        return None
    return datetime.fromisoformat(refreshed.as_of).astimezone(UTC)


def _current_under(derived: Derived, state: dict, rebuild: set[str], settings: dict) -> str:
    """The fingerprint a dataset's rows are current under after this refresh: the definition
    now if it was rebuilt whole (or built for the first time), else the one recorded before: an
    incremental refresh under a changed definition leaves rows of both, until `--full`."""
    if derived.name in rebuild or derived.name not in state:
        return fingerprint(derived, settings)
    return state[derived.name].fingerprint


def _stale(warehouse: Warehouse, settings: dict) -> set[str]:
    if stale_because(warehouse, settings):  # re-derived touchpoints: every dataset reads them
        return {d.name for d in declarations()}
    state = warehouse.derived_state()
    return {d.name for d in declarations() if d.name in state and state[d.name].fingerprint != fingerprint(d, settings)}


def _previous_point(state: dict, datasets: Sequence[Derived]) -> datetime | None:
    """The finality point of the last refresh of `datasets` (the earliest `as_of` they recorded:
    the customers due since then), None before the first."""
    recorded = [_as_of(state.get(d.name)) for d in datasets]
    recorded = [r for r in recorded if r is not None]
    return min(recorded) if recorded else None


def refresh_customers(
    warehouse: Warehouse,
    seq: int,
    datasets: Sequence[Derived],
    batch_files: list[PublishedFile],
    settings: dict,
    batch_date: date,
    *,
    rebuild: set[str] = frozenset(),
    threads: int = 2,
    clock: Finality = NO_TIME,
    previous_point: datetime | None = None,
    beam_args: Sequence[str] = (),
) -> RefreshReport:
    """Write the rows of the customer datasets `datasets`, and their markers, for what the files
    `batch_files` changed, under `seq`; a dataset in `rebuild` gets every customer's rows from
    the start (its older files are removed by the commit).

    Customers are touched by new events, or **due**: time passed a deadline of theirs with
    nothing new arriving (a silent churn: `churn_deadline` after the last refresh's finality
    point and at or before the watermark). The due set comes from the per-customer state index
    (`customer_state`, one current row per customer), not from a scan of events; a due customer
    is recomputed from its current cycle, its sessions untouched.

    `batch_files` may be committed already or not yet. Returns the new files, for the manifest.
    """
    root = warehouse.root
    new_touchpoints = sorted({str(root / f.path) for f in batch_files if f.dataset == "touchpoints"})
    new_answers = sorted({str(root / f.path) for f in batch_files if f.dataset == "survey_answers"})
    rebuilding = [d for d in datasets if d.name in rebuild]
    due_possible = clock.watermark is not None and clock.watermark != previous_point
    touched_by_answers = bool(new_answers and _answer_datasets(datasets))
    if not (new_touchpoints or touched_by_answers) and not rebuilding and not due_possible:
        return RefreshReport(0, 0, 0, [])
    touchpoints = sorted({str(root / p) for p in warehouse.published_files("touchpoints")} | set(new_touchpoints))
    answers = sorted({str(root / p) for p in warehouse.published_files("survey_answers")} | set(new_answers))
    rewrites = {str(root / p) for p in warehouse.published_files("rewrites")}
    rewrites = sorted(rewrites | {str(root / f.path) for f in batch_files if f.dataset == "rewrites"})
    touchpoint_types = DATASETS["touchpoints"].arrow_schema

    spill = root / "_staging" / f"marts-{seq}"
    con = duckdb.connect()
    files: list[PublishedFile | None] = []
    rows: dict[str, int] = {}
    removed: list[str] = []
    try:
        con.execute(f"set threads = {int(threads)}")
        # Bounded like the micro-batches: past this, DuckDB spills its aggregation state to disk
        # (a whole-history refresh, after a 10M-event backfill, took 3.3 GB without a limit).
        con.execute(f"set memory_limit = '{MEMORY_LIMIT}'")
        con.execute("set temp_directory = ?", [str(spill)])
        con.execute("set preserve_insertion_order = false")
        # A rebuild recomputes every customer from its first event: the "batch" is everything.
        source = touchpoints if rebuilding else new_touchpoints
        con.execute(raw_view_sql(con, DATASETS["touchpoints"], source, temporary=True, name="batch_events"))
        _touch(con, datasets, answers if rebuilding else new_answers, answers)
        if not rebuilding and clock.watermark is not None:
            _add_due(con, warehouse, datasets, DATASETS["refreshes"].arrow_schema, clock, previous_point)
        con.execute(raw_view_sql(con, DATASETS["rewrites"], rewrites, temporary=True))
        for statement in settings_views_sql(settings, temporary=True):
            con.execute(statement)

        plans = []  # per dataset to recompute: its touchpoint files, the rows it reads there, its answers
        cycle_starts: dict[str, datetime | None] = {}
        for derived in datasets:
            point, marker = derived.invalidation.from_column, derived.invalidation.marker
            ((earliest,),) = con.execute(f"select min({marker}) from touched").fetchall()
            if earliest is None and derived.name not in rebuild:
                continue  # no customer of this dataset touched (a survey-only batch, for sessions)
            # A time point: the partitions (UTC dates) before its date are not even opened.
            horizon = earliest.astimezone(UTC).date() if isinstance(earliest, datetime) else None
            if derived.invalidation.answers_from:
                # Answers from the point on (answer-date partitions before it are not opened), over
                # every event of their customers: the latest event before an answer may be old,
                # and the event an answer names may come after it.
                recent = [p for p in answers if horizon is None or (file_date(p) or date.max) >= horizon]
                answered = (recent, f"r.{derived.invalidation.answers_from} >= t.{marker}")
                plans.append((derived, touchpoints, f"t.{marker} is not null", answered))
                continue
            if derived.invalidation.history == "whole":
                # Every current event of a touched customer: what it computes may lie anywhere.
                plans.append((derived, touchpoints, f"t.{marker} is not null", None))
                continue
            if not pa.types.is_timestamp(touchpoint_types.field(point).type):
                # A cycle number: the earliest start of the touched customers' recompute cycles.
                if marker not in cycle_starts:  # journeys and churns share their marker
                    cycle_starts[marker] = (
                        None if rebuilding else _cycles_started(con, warehouse, batch_files, point, marker)
                    )
                started = cycle_starts[marker]
                horizon = started.astimezone(UTC).date() if started is not None else None
            candidates = [p for p in touchpoints if horizon is None or (file_date(p) or date.max) >= horizon]
            plans.append((derived, candidates, f"r.{point} >= t.{marker}", None))
        # A pass of a few new events: the touched customers' rows are read from the Parquet once,
        # for every dataset (each then takes the rows of its condition: those of the files it
        # would open, since the files before its horizon hold none that meet it).
        ((new_rows,),) = con.execute("select count(*) from batch_events").fetchall()
        shared = not rebuilding and len(plans) > 1 and new_rows <= SHARED_SCAN_MAX_NEW_ROWS
        if shared:
            _scan_touched(con, sorted({p for _, candidates, _, _ in plans for p in candidates}))
        for derived, candidates, condition, answered in plans:
            if answered is not None:
                _point_answers_at(con, *answered)
            _point_events_at(con, candidates, condition, shared=shared)
            if derived.python:
                written = _run_python(warehouse, con, derived, settings, clock, seq, batch_date, beam_args)
            else:
                written = _stream(
                    warehouse, con, derived.name, model_sql(derived.layer, derived.model), seq, batch_date
                )
            files.append(written)
            rows[derived.name] = written.rows if written is not None else 0
            if derived.name in rebuild:
                removed += [f.path for f in warehouse.live_files(derived.name)]
        marker_file = _stream(warehouse, con, "refreshes", "select * from touched", seq, batch_date)
        files.append(marker_file)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    customers = marker_file.rows if marker_file is not None else 0
    return RefreshReport(
        customers,
        rows.get("sessions", 0),
        rows.get("journeys", 0),
        [f for f in files if f is not None],
        removed=tuple(removed),
        rows=rows,
    )


def _cycles_started(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    batch_files: list[PublishedFile],
    cycle: str,
    marker: str,
) -> datetime | None:
    """The earliest time at which an event of a touched customer's recompute cycle (its `marker`
    column of `touched`) or of a later cycle can lie: the partitions dated before it hold none
    of the events a cycle recompute reads. None when some customer's cycle start is unknown
    (rows landed before `cycle_started_at` existed, or a case below): every partition is read.

    Cycles never interleave in time, so the events of cycles from c on are at or after the first
    event of cycle c (`cycle_started_at`). Per customer, the start of its recompute cycle comes from:
    * a batch row in that cycle: the start it carries (the events before the customer's earliest
      new one keep their cycles, so a row of any version numbered c names the same first event
      when that event is older; when it is not, the earliest new event bounds it: see below);
    * else (the earliest new event opens the next cycle, or the customer is due with no new
      event): its state before the batches (`customer_state` without the batches' files), when
      that state is in the cycle and older than its earliest new event (else it may have been
      re-numbered by a late event);
    and is bounded by the customer's earliest batch row (every recomputed event from the earliest
    new one on is at or after it)."""
    batch = {f.path for f in batch_files if f.dataset == "customer_state"}
    prior = sorted(str(warehouse.root / p) for p in warehouse.published_files("customer_state") if p not in batch)
    con.execute(raw_view_sql(con, DATASETS["customer_state"], prior, temporary=True, name="prior_state_rows"))
    ((unknown, earliest),) = con.execute(
        f"""
        with recomputed as (
            select customer_id, {marker} as cycle from touched where {marker} is not null
        ),
        from_batch as (
            select r.customer_id, r.cycle,
                min(b.occurred_at) as earliest_event,
                min(b.cycle_started_at) filter (where b.{cycle} = r.cycle) as cycle_started,
                bool_or(b.{cycle} = r.cycle and b.cycle_started_at is null) as unknown_start
            from recomputed r join batch_events b using (customer_id)
            group by all
        ),
        prior_state as (
            select s.customer_id, s.{cycle} as cycle, s.occurred_at, s.cycle_started_at
            from prior_state_rows s semi join recomputed r using (customer_id)
            qualify row_number() over (partition by s.customer_id order by s.batch_seq desc) = 1
        ),
        final as (
            select
                r.customer_id,
                b.earliest_event,
                coalesce(b.unknown_start, false) as unknown_start,
                coalesce(
                    b.cycle_started,
                    case
                        when s.cycle = r.cycle and (b.earliest_event is null or s.occurred_at < b.earliest_event)
                            then s.cycle_started_at
                    end
                ) as cycle_started
            from recomputed r
            left join from_batch b using (customer_id)
            left join prior_state s using (customer_id)
        )
        select
            count(*) filter (where unknown_start or cycle_started is null),
            min(least(earliest_event, cycle_started))
        from final
        """
    ).fetchall()
    return None if unknown else earliest


def _add_due(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    datasets: Sequence[Derived],
    markers: pa.Schema,
    clock: Finality,
    previous_point: datetime | None,
) -> None:
    """Add to `touched` the customers due, from the cycle their status may change in:
    * a silent-churn deadline of their current state (`customer_state`, one row per customer)
      after the last refresh's finality point and at or before the watermark;
    * a pending churn (`churns`) the finality point has now passed: it becomes final.
    Neither reads an event."""
    cycle_markers = [d.invalidation.marker for d in datasets if d.invalidation.from_column == "journey_cycle"]
    if not cycle_markers:
        return
    root = warehouse.root
    for name in ("customer_state", "churns", "refreshes"):
        paths = sorted(str(root / p) for p in warehouse.published_files(name))
        con.execute(raw_view_sql(con, DATASETS[name], paths, temporary=True))
    for model in ("stg_parcours__customer_state", "stg_parcours__churns"):
        con.execute(f"create or replace temp view {model} as " + model_sql("staging", model))
    columns = ", ".join(
        "d.journey_cycle" if name in cycle_markers else f"cast(null as {_sql_type(markers.field(name).type)})"
        for name in markers.names
        if name not in ("customer_id", "batch_seq")
    )
    after = "" if previous_point is None else "and churn_deadline > $previous"
    con.execute(
        "insert into touched "
        f"select d.customer_id, {columns} from ("
        "  select customer_id, min(journey_cycle) as journey_cycle from ("
        f"    select customer_id, journey_cycle from stg_parcours__customer_state "
        f"    where churn_deadline <= $watermark {after}"
        "    union all"
        "    select customer_id, journey_cycle from stg_parcours__churns "
        "    where churn_status = 'pending' and churned_at <= $point"
        "  ) group by customer_id"
        ") d anti join touched t using (customer_id)",
        {
            "watermark": clock.watermark,
            "point": clock.point,
            **({} if previous_point is None else {"previous": previous_point}),
        },
    ).fetchall()  # an insert's result (its row count) must be consumed before the next statement


def _run_python(
    warehouse: Warehouse,
    con: duckdb.DuckDBPyConnection,
    derived: Derived,
    settings: dict,
    clock: Finality,
    seq: int,
    batch_date: date,
    beam_args: Sequence[str] = (),
) -> PublishedFile | None:
    """A Python model (a Beam pipeline on the runner `beam_args` name: `beam_models.py`) over
    the touched customers' current events (`stg_parcours__touchpoints`,
    as a SQL model sees them), in customer order; its rows are also what the models after it in
    this pass read as `stg_parcours__<dataset>` (they recompute the same customers and cycles)."""
    arguments = load_arguments(derived)(settings, clock)
    rows = run_model(
        con,
        "select * from stg_parcours__touchpoints",
        load_python(derived),
        arguments,
        DATASETS[derived.name].arrow_schema.remove(DATASETS[derived.name].arrow_schema.get_field_index("batch_seq")),
        warehouse.root / "_staging" / f"model-{seq}-{derived.name}",
        beam_args,
    )
    con.register(f"new_{derived.name}", rows)
    con.execute(f"create or replace temp view stg_parcours__{derived.name} as select * from new_{derived.name}")
    table = rows.append_column("batch_seq", pa.repeat(pa.scalar(seq, pa.int64()), rows.num_rows))
    if table.num_rows == 0:
        return None
    return warehouse.write_stream(
        derived.name,
        batch_date.isoformat(),
        pa.RecordBatchReader.from_batches(table.schema, table.to_batches()),
        seq,
        PART,
    )


def _answer_datasets(datasets: Sequence[Derived]) -> list[Derived]:
    return [d for d in datasets if d.invalidation.answers_from]


def _touch(
    con: duckdb.DuckDBPyConnection, datasets: Sequence[Derived], batch_answers: list[str], answers: list[str]
) -> None:
    """`touched`: one row per customer to recompute, with each dataset's recompute point in its
    `refreshes` marker column (null: that dataset is not recomputed for the customer).

    Customers of the batch's touchpoints (`batch_events`) restart at the earliest value of each
    dataset's `from` column among their rows. A dataset that also declares `answers_from` touches
    the customers of the batch's answers `batch_answers` too, and restarts each customer at the
    earliest of: its batch events' point, its new answers' `answers_from`, and that of its landed
    answers (`answers`) naming one of the batch's events (an answer that arrived before its event,
    attached when the event lands)."""
    markers = DATASETS["refreshes"].arrow_schema
    by_marker = {d.invalidation.marker: d for d in datasets}
    answer_points = sorted({d.invalidation.answers_from for d in _answer_datasets(datasets)})
    events = [f"min({d.invalidation.from_expression}) as {m}" for m, d in by_marker.items()]
    con.execute(
        f"create temp table touched_events as select customer_id, {', '.join(events)} from batch_events group by all"
    )
    if answer_points:
        con.execute(raw_view_sql(con, DATASETS["survey_answers"], batch_answers, temporary=True, name="batch_answers"))
        con.execute(raw_view_sql(con, DATASETS["survey_answers"], answers, temporary=True, name="landed_answers"))
        points = ", ".join(f"min({c}) as {c}" for c in answer_points)
        con.execute(
            f"create temp table touched_answers as select customer_id, {points} from ("
            f"select customer_id, {', '.join(answer_points)} from batch_answers "
            f"union all select a.customer_id, {', '.join(f'a.{c}' for c in answer_points)} from landed_answers a "
            "semi join batch_events e on a.customer_id = e.customer_id and a.event_id = e.event_id"
            ") group by all"
        )
    else:
        con.execute("create temp table touched_answers as select cast(null as VARCHAR) as customer_id where false")
    columns = []
    for name in markers.names:
        if name in ("customer_id", "batch_seq"):
            continue
        derived = by_marker.get(name)
        if derived is None:
            columns.append(f"cast(null as {_sql_type(markers.field(name).type)}) as {name}")
        elif derived.invalidation.answers_from:
            columns.append(f"least(e.{name}, a.{derived.invalidation.answers_from}) as {name}")
        else:
            columns.append(f"e.{name}")
    con.execute(
        f"create temp table touched as select coalesce(e.customer_id, a.customer_id) as customer_id, "
        f"{', '.join(columns)} from touched_events e full join touched_answers a using (customer_id)"
    )


def _point_answers_at(con: duckdb.DuckDBPyConnection, paths: list[str], condition: str) -> None:
    """`raw_survey_answers`: the touched customers' landed answers in `paths` that meet
    `condition`, and the staging model over it (answers are immutable: no current-version rule)."""
    con.execute(raw_view_sql(con, DATASETS["survey_answers"], paths, temporary=True, name="landed_answers"))
    con.execute(
        "create or replace temp view raw_survey_answers as select r.* from landed_answers r "
        f"join touched t on r.customer_id = t.customer_id and {condition}"
    )
    model = "stg_parcours__survey_answers"
    con.execute(f"create or replace temp view {model} as {model_sql('staging', model)}")


def _sql_type(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ"
    if pa.types.is_integer(kind):
        return "BIGINT"
    return "VARCHAR"


def refresh_tables(
    warehouse: Warehouse,
    seq: int,
    marts: RefreshReport,
    datasets: Sequence[Derived],
    windows: Mapping[str, Sequence[Manifest]],
    settings: dict,
    *,
    rebuild: set[str] = frozenset(),
    clock: Finality = NO_TIME,
    as_of: Mapping[str, datetime | None] | None = None,
    judged_at: Manifest | None = None,
    threads: int = 2,
) -> RefreshReport:
    """Refresh the `partitions`, `family` and `whole` datasets `datasets`, in their order (each
    after those it reads), for what changed since each one's last refresh: the commits of its
    window (`windows`) and what this pass wrote before it (`marts`: the customer datasets'
    refresh, then each dataset here in turn). Returns `marts` with the new files and the
    replaced ones. A dataset in `rebuild`, or with no file yet, is computed whole.

    * **partitions**: every changed partition recomputed whole by the model, its old file removed
      by the manifest. Changed partitions: of a landed source, the partitions of its new files (a
      re-landed event keeps its date); of a derived source, the declaration's `source_partition`
      over the source's changed rows (`_changed_rows`);
    * **family**: the families (the declaration's `family` columns) of the source's changed rows
      (`source_family` over them) recomputed by the model, exactly those: a q-value adjusts
      every p-value of its family together, so one changed test changes every q of its family.
      A family lies in one partition; each partition holding one is rewritten, its other
      families' rows carried over as they were (with the `batch_seq` that wrote them);
    * **whole**: recomputed whole, all its old files replaced, when a dataset it reads gained or
      lost a file since its last refresh, or, if its models read the finality point or the
      watermark (`parcours_finality`, `parcours_watermark`), when the finality point moved.

    Every model runs over the views as they will read once this refresh commits (the time views
    judged at the refresh's wall clock: `judged_at`, the commit to be), so no count is ever
    patched by a difference.
    """
    by_name = {d.name: d for d in declarations()}
    as_of = as_of or {}
    spill = warehouse.root / "_staging" / f"rollups-{seq}"
    files: list[PublishedFile] = list(marts.files)
    removed: list[str] = [*marts.removed]
    rows = dict(marts.rows)
    recomputed = 0
    con: duckdb.DuckDBPyConnection | None = None
    seen: set[str] = set()  # datasets whose new files the views of `con` hold
    try:
        for derived in datasets:
            if con is None or (set(derived.depends_on) - seen) & {f.dataset for f in files}:
                # The warehouse as it reads after this commit: the new rows in, the replaced files out.
                if con is not None:
                    con.close()
                con = duckdb.connect()
                con.execute(f"set threads = {int(threads)}")
                con.execute(f"set memory_limit = '{MEMORY_LIMIT}'")
                con.execute("set temp_directory = ?", [str(spill)])
                warehouse.create_views(con, adding=files, settings=settings, leaving=removed, judged_at=judged_at)
                seen = {f.dataset for f in files}
            window = windows.get(derived.name, ())
            added = [f for m in window for f in m.files] + files
            gone = [p for m in window for p in m.removed] + removed
            spec = DATASETS[derived.name]
            live = warehouse.live_files(derived.name)
            kind = derived.invalidation.kind
            whole = not live or derived.name in rebuild or derived.invalidation.source in rebuild
            if kind == WHOLE and not whole:
                reads = set(derived.reads_datasets)
                clock_moved = derived.reads_clock and clock.point != as_of.get(derived.name)
                if not (
                    clock_moved or any(f.dataset in reads for f in added) or any(_dataset_of(p) in reads for p in gone)
                ):
                    continue
                whole = True
            query = f"select * from {derived.model}"
            if whole:
                table = con.sql(query).to_arrow_table()
                new_rows = table.num_rows
            elif kind == PARTITIONS:
                partitions = sorted(_changed_partition_values(con, warehouse, derived, by_name, added, gone))
                if not partitions:
                    continue
                query += f" where {spec.partition_column} in ({', '.join('?' * len(partitions))})"
                live = [f for f in live if date.fromisoformat(f.partition) in set(partitions)]
                table = con.sql(query, params=partitions).to_arrow_table()
                new_rows = table.num_rows
            else:  # FAMILY
                families = _changed_families(con, warehouse, derived, by_name, added, gone)
                if not families:
                    continue
                live = [f for f in live if date.fromisoformat(f.partition) in families]
                table, new_rows = _family_rows(con, warehouse, derived, live, seq)
            if derived.intervals:
                table = add_intervals(table, derived.intervals)
            if "batch_seq" not in table.column_names:
                table = table.append_column("batch_seq", pa.repeat(pa.scalar(seq, pa.int64()), table.num_rows))
            written = warehouse.write_parquet(derived.name, _as_spec(table, spec), seq, PART)
            files += written
            rows[derived.name] = new_rows
            removed += [f.path for f in live]
            recomputed += len({f.partition for f in (*live, *written)})
    finally:
        if con is not None:
            con.close()
        shutil.rmtree(spill, ignore_errors=True)
    return dataclasses.replace(marts, files=files, rollup_partitions=recomputed, removed=tuple(removed), rows=rows)


# The name refresh_partitions had before `family` and `whole` joined the partition datasets here.
refresh_partitions = refresh_tables


def _as_spec(table: pa.Table, spec) -> pa.Table:
    """`table` in the dataset's column order and types (DuckDB names UTC `Etc/UTC`)."""
    schema = pa.schema([*spec.arrow_schema, pa.field(spec.partition_column, spec.partition_type)])
    return table.select(schema.names).cast(schema)


def _changed_rows(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    source: Derived | str,
    added: Sequence[PublishedFile],
    gone: Sequence[str],
) -> str:
    """A temporary view of the rows of `source` that changed: for a landed source, the rows of
    its new files; for a customers dataset, its new rows and the rows their `refreshes` markers
    supersede (the customer's rows from the marker's session start or journey cycle on); for a
    partitions, family or whole dataset, the rows of its new files and of the files they replace.
    `added` and `gone`: the files added and the paths removed since the dependant's last refresh,
    this pass's included. Returns the view's name."""
    name = source if isinstance(source, str) else source.name
    root = warehouse.root
    view = f"changed_{name}"
    new = sorted({str(root / f.path) for f in added if f.dataset == name})
    con.execute(raw_view_sql(con, DATASETS[name], new, temporary=True, name=f"new_{name}"))
    if isinstance(source, str):
        con.execute(f"create or replace temp view {view} as select * from new_{name}")
    elif source.invalidation.kind == CUSTOMERS:
        markers = sorted({str(root / f.path) for f in added if f.dataset == "refreshes"})
        con.execute(raw_view_sql(con, DATASETS["refreshes"], markers, temporary=True, name="new_refreshes"))
        upstream = source.invalidation
        con.execute(
            f"create or replace temp view {view} as select * from new_{name} union all by name "
            f"select l.* from raw_{name} l semi join new_refreshes r on l.customer_id = r.customer_id "
            f"and l.batch_seq < r.batch_seq and l.{upstream.supersedes} >= r.{upstream.marker}"
        )
    else:
        replaced = sorted({str(root / p) for p in gone if _dataset_of(p) == name})
        con.execute(raw_view_sql(con, DATASETS[name], replaced, temporary=True, name=f"replaced_{name}"))
        con.execute(
            f"create or replace temp view {view} as select * from new_{name} union all by name "
            f"select * from replaced_{name}"
        )
    return view


def _source(derived: Derived, by_name: Mapping[str, Derived]) -> Derived | str:
    return by_name.get(derived.invalidation.source, derived.invalidation.source)


def _changed_partition_values(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    derived: Derived,
    by_name: Mapping[str, Derived],
    added: Sequence[PublishedFile],
    gone: Sequence[str],
) -> set[date]:
    source, expression = _source(derived, by_name), derived.invalidation.source_partition
    if isinstance(source, str):  # a landed dataset: the partitions of its new files
        if expression != DATASETS[source].partition_column:
            raise ValueError(f"{derived.source}: a landed source's partition must be its own, {expression!r}")
        return {date.fromisoformat(f.partition) for f in added if f.dataset == source}
    view = _changed_rows(con, warehouse, source, added, gone)
    return {day for (day,) in con.execute(f"select distinct {expression} from {view}").fetchall()}


def _changed_families(
    con: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    derived: Derived,
    by_name: Mapping[str, Derived],
    added: Sequence[PublishedFile],
    gone: Sequence[str],
) -> set[date]:
    """`changed_families`: the families the source's changed rows invalidate (one row each, the
    declaration's `source_family` over those rows); returns the partitions holding them."""
    view = _changed_rows(con, warehouse, _source(derived, by_name), added, gone)
    columns = ", ".join(f"{expression} as {column}" for column, expression in derived.invalidation.source_family)
    con.execute(f"create or replace temp table changed_families as select distinct {columns} from {view}")
    partition = derived.partition
    return {day for (day,) in con.execute(f"select distinct {partition} from changed_families").fetchall()}


def _family_rows(
    con: duckdb.DuckDBPyConnection, warehouse: Warehouse, derived: Derived, live: Sequence[PublishedFile], seq: int
) -> tuple[pa.Table, int]:
    """The rows of the partitions holding an invalidated family (`changed_families`): the model's
    rows of those families, stamped `seq`, and the other families' rows of those partitions as
    their files hold them. Returns them and how many were recomputed."""
    on = " and ".join(f"m.{c} is not distinct from f.{c}" for c in derived.invalidation.family)
    stamp = f"cast({int(seq)} as BIGINT) as batch_seq"
    fresh = con.sql(f"select m.*, {stamp} from {derived.model} m semi join changed_families f on {on}").to_arrow_table()
    paths = [str(warehouse.root / f.path) for f in live]
    con.execute(raw_view_sql(con, DATASETS[derived.name], paths, temporary=True, name="family_files"))
    kept = con.sql(f"select m.* from family_files m anti join changed_families f on {on}").to_arrow_table()
    kept = kept.select(fresh.column_names).cast(fresh.schema)
    return pa.concat_tables([fresh, kept]), fresh.num_rows


def _stream(
    warehouse: Warehouse, con: duckdb.DuckDBPyConnection, dataset: str, query: str, seq: int, batch_date: date
) -> PublishedFile | None:
    """The rows of `query`, stamped with the refresh's seq, written as they come: one Arrow batch
    in memory at a time (a whole-history refresh after a large backfill holds millions of rows)."""
    stamped = con.sql(query).select("*", duckdb.ConstantExpression(seq).cast("BIGINT").alias("batch_seq"))
    reader = stamped.to_arrow_reader(STREAM_ROWS)
    return warehouse.write_stream(dataset, batch_date.isoformat(), reader, seq, PART)


def _scan_touched(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    """`touched_landed`: every landed row in `paths` of a customer in `touched`, in memory (or
    spilled), for the datasets of the pass to take their rows from (`_point_events_at`)."""
    con.execute(raw_view_sql(con, DATASETS["touchpoints"], paths, temporary=True, name="landed_events"))
    con.execute(
        "create or replace temp table touched_landed as "
        "select r.* from landed_events r semi join touched t using (customer_id)"
    )


def _point_events_at(con: duckdb.DuckDBPyConnection, paths: list[str], condition: str, *, shared: bool = False) -> None:
    """`raw_touchpoints`: the touched customers' landed rows in `paths` that meet `condition`,
    and the models over it (a view is bound when it is created, so they are created again).
    With `shared`, from `touched_landed` (`_scan_touched` over files including `paths`), where the
    rows that meet `condition` are those of `paths`.

    The filter is on single rows, so the staging model's current-version rule (an anti-join on
    each row against `rewrites`) gives the same rows as if it ran over every event first.
    """
    if shared:
        con.execute("create or replace temp view landed_events as select * from touched_landed")
    else:
        con.execute(raw_view_sql(con, DATASETS["touchpoints"], paths, temporary=True, name="landed_events"))
    con.execute(
        "create or replace temp view raw_touchpoints as select r.* from landed_events r "
        f"join touched t on r.customer_id = t.customer_id and {condition}"
    )
    for layer, model in (("staging", "stg_parcours__touchpoints"), ("intermediate", "int_journey_steps_cleaned")):
        con.execute(f"create or replace temp view {model} as {model_sql(layer, model)}")
