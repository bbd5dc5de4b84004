"""The `parcours` command line: generate, produce, run, and look after the local broker.

Heavy imports (Beam, DuckDB, kafka-python) happen inside the commands, so `parcours --help`
answers at once. Expected failures (bad config, broker down, busy warehouse) print one clear
line and exit with code 2; a traceback means a bug.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

app = typer.Typer(
    help="parcours: customer-journey analytics from touchpoint and survey streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show, write or check the journey configuration.", no_args_is_help=True)
broker_app = typer.Typer(help="Start, stop or check the local Kafka broker (infra/kafka.sh).", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(broker_app, name="broker")

console = Console(stderr=True)
REPO_ROOT = Path(__file__).resolve().parents[1]

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Journey configuration YAML (default: the built-in journey.yaml)."),
]
WarehouseOption = Annotated[
    Path, typer.Option("--warehouse", "-w", help="Warehouse folder (Parquet, manifests, parcours.duckdb).")
]


def fail(message: str) -> NoReturn:
    # The message is data (file names, user input), never markup: escape it.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, emoji=False, soft_wrap=True)
    raise typer.Exit(2)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _load_config(path: Path | None):
    from parcours.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc))


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective configuration (defaults filled in) as JSON."""
    loaded = _load_config(config)
    typer.echo(loaded.model_dump_json(indent=2))


@config_app.command("init")
def config_init(
    path: Annotated[Path, typer.Argument(help="Where to write the documented default journey.yaml.")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write the documented default configuration, to copy and edit."""
    from parcours.config import default_config_text

    if path.exists() and not force:
        fail(f"{path} exists (use --force to overwrite)")
    path.write_text(default_config_text(), encoding="utf-8")
    console.print(f"wrote {path}")


@config_app.command("check")
def config_check(path: Annotated[Path, typer.Argument(help="Journey configuration YAML to check.")]) -> None:
    """Validate a configuration file; names the bad key when it is not valid."""
    loaded = _load_config(path)
    console.print(f"{path}: valid (version {loaded.version}, fingerprint {loaded.fingerprint})")


T = TypeVar("T")


def _parsed(option: str, text: str | None, parse: Callable[[str], T]) -> T | None:
    """`parse(text)` for a command-line option, or a clean failure naming the option."""
    if not text:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        fail(f"{option}: {exc}")


@app.command()
def generate(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder to write touchpoints.jsonl, surveys.jsonl, truth.json."),
    ] = Path("data"),
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 2000,
    days: Annotated[int, typer.Option(min=1, help="Length of the period in days.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same bytes.")] = 7,
    start: Annotated[str, typer.Option(help="First day of the period (UTC date, YYYY-MM-DD).")] = "2026-01-05",
    churn_spike: Annotated[
        str | None,
        typer.Option(
            help="Plant a churn increase: STAGE:FROM_DAY:FACTOR[:UNTIL_DAY], e.g. renewal:40:3 or renewal:40:3:60."
        ),
    ] = None,
    plant: Annotated[
        str,
        typer.Option(help="default: the planted effects of truth.json; none: a world where nothing is planted."),
    ] = "default",
    moments: Annotated[
        str | None,
        typer.Option(help="Moments of truth, TP,... (default delivery,support_call); rated touchpoints only."),
    ] = None,
    drop_off: Annotated[
        str | None,
        typer.Option(
            "--drop-off",
            help="STAGE:P,...: the chance that a visit to STAGE is the customer's last, added to or replacing"
            " the plant's (default consideration:0.30, activation:0.22; other stages 0.05).",
        ),
    ] = None,
    pii_rate: Annotated[
        float,
        typer.Option(min=0, max=0.5, help="Share of verbatims carrying personal data (truth/pii.parquet)."),
    ] = 0.0,
    invalid_rate: Annotated[float, typer.Option(min=0, max=0.5, help="Share of extra invalid lines.")] = 0.0,
    duplicate_rate: Annotated[float, typer.Option(min=0, max=0.5, help="Share of re-sent duplicates.")] = 0.0,
    late_rate: Annotated[float, typer.Option(min=0, max=0.5, help="Share of events delivered out of order.")] = 0.0,
    config: ConfigOption = None,
) -> None:
    """Generate realistic, non-linear synthetic journeys with known planted facts (truth.json, truth/)."""
    from parcours.synthetic import generate_dataset, parse_churn_spike, parse_drop_off, parse_moments

    journey = _load_config(config)
    try:
        first_day = date.fromisoformat(start)
    except ValueError:
        fail(f"--start: '{start}' is not a date (YYYY-MM-DD)")
    if plant not in ("default", "none"):
        fail(f"--plant: '{plant}' is neither 'default' nor 'none'")
    spike = _parsed("--churn-spike", churn_spike, parse_churn_spike)
    stages = _parsed("--drop-off", drop_off, parse_drop_off)
    moment_list = _parsed("--moments", moments, parse_moments)
    for option, named in (("--churn-spike", [spike.stage] if spike else []), ("--drop-off", list(stages or {}))):
        for stage in named:
            if stage not in journey.stages:
                fail(f"{option}: unknown stage '{stage}' (stages: {', '.join(journey.stages)})")
    try:
        with _progress() as bar:
            task = bar.add_task("generating customers", total=customers)
            summary = generate_dataset(
                out,
                customers,
                days,
                seed,
                config=journey,
                start=first_day,
                churn_spike=spike,
                plant=plant,
                moments=moment_list,
                drop_off=stages,
                pii_rate=pii_rate,
                invalid_rate=invalid_rate,
                duplicate_rate=duplicate_rate,
                late_rate=late_rate,
                progress=lambda n: bar.advance(task, n),
            )
    except ValueError as exc:
        fail(str(exc))
    console.print(
        f"wrote {summary.n_touchpoints:,} touchpoints and {summary.n_surveys:,} survey answers "
        f"for {summary.n_customers:,} customers to {out.resolve()}"
    )


@app.command()
def produce(
    data_dir: Annotated[Path, typer.Argument(help="Folder with touchpoints.jsonl and surveys.jsonl.")],
) -> None:
    """Send the JSONL files of a folder to Kafka, keyed by customer_id (bad lines included)."""
    from parcours.kafka import BrokerUnavailable, KafkaSecurityError, KafkaSettings, KafkaSettingsError, ensure_topics
    from parcours.kafka.produce import FILES, count_lines, produce_dir

    try:
        settings = KafkaSettings.from_env()
    except KafkaSettingsError as exc:
        fail(str(exc))
    files = [data_dir / name for name in FILES if (data_dir / name).exists()]
    if not files:
        fail(f"{data_dir}: neither {' nor '.join(FILES)} found (run `parcours generate` first)")
    total = sum(count_lines(path) for path in files)
    try:
        ensure_topics(settings)
        with _progress() as bar:
            task = bar.add_task("producing", total=total)
            summary = produce_dir(data_dir, settings, progress=lambda n: bar.advance(task, n))
    except (BrokerUnavailable, KafkaSecurityError) as exc:
        fail(str(exc))
    for topic, sent in summary.sent.items():
        console.print(f"{topic}: {sent:,} sent, {summary.failed[topic]:,} failed")
    if any(summary.failed.values()):
        fail("some messages were not acknowledged by the broker")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    source: Annotated[
        Path | None,
        typer.Option("--from", help="Backfill from a folder of touchpoints.jsonl / surveys.jsonl instead of Kafka."),
    ] = None,
    warehouse: WarehouseOption = Path("warehouse"),
    config: ConfigOption = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Messages per micro-batch (default: config).")] = None,
    max_batches: Annotated[int | None, typer.Option(min=1, help="Stop after this many micro-batches.")] = None,
    shards: Annotated[int, typer.Option(min=1, help="Customer shards per micro-batch (parallelism).")] = 2,
    workers: Annotated[
        int, typer.Option(min=1, help="Kafka only: micro-batches run at once, each over its own partitions.")
    ] = 1,
) -> None:
    """Land everything new: Kafka (or files) -> validate -> sessionize -> journeys -> Parquet + views.

    Extra arguments after `--` go to Beam, e.g. `parcours run -- --runner FlinkRunner
    --flink_master host:8081`; the default runner is the local FnApiRunner.
    """
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # A broker that just started moves its group coordinator while the first offset commit is
    # retried: kafka-python warns on each retry, then succeeds (or raises, which is reported).
    logging.getLogger("kafka.coordinator").setLevel(logging.ERROR)
    from parcours.pipelines.worker_pool import start_workers

    # Kafka workers start importing now, beside this process's own imports below.
    pool = start_workers(workers - 1) if source is None else None
    from parcours.pipelines import import_beam_quietly

    import_beam_quietly()
    from parcours.kafka import BrokerUnavailable, KafkaSecurityError, KafkaSettings, KafkaSettingsError
    from parcours.pipelines.run import AmbiguousBackfill, CountsDoNotAddUp, Ingestion, WorkersNeedKeyedTopics
    from parcours.pipelines.sources import OffsetOutOfRetention, SourceStalled
    from parcours.warehouse import CheckpointError, Warehouse, WarehouseBusy

    journey = _load_config(config)
    wh = Warehouse(warehouse)

    def report(batch) -> None:
        console.print(batch.describe(), soft_wrap=True)

    try:
        runner = Ingestion(
            wh,
            journey,
            beam_args=ctx.args,
            shards=shards,
            batch_size=batch_size,
            workers=workers,
            pool=pool,
            on_batch=report,
        )
    except (ValueError, SystemExit) as exc:
        fail(f"bad pipeline arguments {ctx.args}: {exc}")
    try:
        with wh.lock():
            runner.tidy()
            if source is not None:
                result = runner.run_files(source, max_batches=max_batches)
            else:
                result = runner.run_kafka(KafkaSettings.from_env(), max_batches=max_batches)
    except (
        WarehouseBusy,
        CheckpointError,
        BrokerUnavailable,
        KafkaSecurityError,
        OffsetOutOfRetention,
        SourceStalled,
        CountsDoNotAddUp,
        AmbiguousBackfill,
        FileNotFoundError,
        KafkaSettingsError,
        WorkersNeedKeyedTopics,
    ) as exc:
        fail(str(exc))
    if result.marts is not None:
        console.print(_describe_refresh(result.marts), soft_wrap=True)
    if not result.batches:
        console.print("nothing new to land")
    elif len(result.batches) > 1:
        consumed = sum(b.total_consumed for b in result.batches)
        console.print(
            f"run: consumed {consumed:,} = landed {result.total('landed'):,} + dead-lettered "
            f"{result.total('dead_lettered'):,} + duplicates skipped {result.total('duplicates_skipped'):,} "
            f"in {len(result.batches)} micro-batches",
            soft_wrap=True,
        )
    console.print(f"warehouse: {wh.root}  (DuckDB views: {wh.db_path})")


def _describe_refresh(report) -> str:
    rebuilt = f", {len(report.rebuilt)} rebuilt whole ({', '.join(report.rebuilt)})" if report.rebuilt else ""
    if report.rederived:
        rebuilt = f", the sessions and cycles of {report.rederived:,} touchpoints re-derived{rebuilt}"
    return (
        f"marts {report.seq}: sessions and journeys of {report.customers:,} customers refreshed for "
        f"{report.batches} batch{'es' if report.batches != 1 else ''}{rebuilt}{_left_alone(report)} "
        f"({report.seconds:.1f} s)"
    )


def _left_alone(report) -> str:
    """The datasets a pass left to their hourly or daily cadence, if any."""
    from parcours.refresh.declarations import declarations

    waiting = [d.name for d in declarations() if report.refreshed and d.name not in report.refreshed]
    return f"; not due yet: {', '.join(waiting)}" if waiting else ""


@app.command()
def serve(
    warehouse: WarehouseOption = Path("warehouse"),
    config: ConfigOption = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes per pass (default: prefect.yaml's).")
    ] = None,
    prefect_yaml: Annotated[
        Path | None, typer.Option(help="Deployments and schedules (default: prefect.yaml of the checkout).")
    ] = None,
    deployment: Annotated[
        list[str] | None,
        typer.Option("--deployment", "-d", help="Serve only this deployment of prefect.yaml (repeatable)."),
    ] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the local Prefect API (0: a free one).")] = 4200,
    ui: Annotated[bool, typer.Option(help="Also serve the Prefect UI at that port.")] = False,
    interval: Annotated[
        float | None, typer.Option(min=0.1, help="Override every schedule, in seconds (benchmarks and tests).")
    ] = None,
) -> None:
    """Run the schedules of prefect.yaml here until Ctrl-C: ingestion every 60 s, compaction nightly.

    Starts a local Prefect API on 127.0.0.1 (data under WAREHOUSE/_prefect) unless
    PREFECT_API_URL names one; no Prefect Cloud, nothing leaves the machine.
    """
    from parcours.flows.serve import DEFAULT_PREFECT_YAML, ServeError
    from parcours.flows.serve import serve as serve_deployments

    parameters: dict[str, object] = {} if workers is None else {"workers": workers}
    if config is not None:
        _load_config(config)  # a bad file is named now, not at the first tick
        parameters["config"] = str(config.resolve())
    try:
        serve_deployments(
            warehouse,
            prefect_yaml=prefect_yaml or DEFAULT_PREFECT_YAML,
            deployments=deployment or None,
            port=port,
            ui=ui,
            interval=interval,
            parameters=parameters,
        )
    except ServeError as exc:
        fail(str(exc))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def refresh(
    ctx: typer.Context,
    warehouse: WarehouseOption = Path("warehouse"),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what is pending for each dataset, and why; change nothing.")
    ] = False,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Also rebuild whole every derived dataset whose definition (models, declaration, the settings "
            "they read) changed since its rows were written; and if the rules of the touchpoints' sessions and "
            "cycles (sessions.*, churn.*) changed, re-derive those first (needs --config).",
        ),
    ] = False,
    all_cadences: Annotated[
        bool,
        typer.Option(
            "--all-cadences",
            help="Refresh the hourly and daily datasets too, due or not, leaving every dataset current "
            "(--full and parcours compact always do).",
        ),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="With --full or --dry-run: the journey configuration to refresh under (default: the rules of the "
            "latest commit).",
        ),
    ] = None,
) -> None:
    """Bring every derived dataset (sessions, journeys, rollups...) up to date with what landed.

    Extra arguments after `--` are Beam pipeline options (`--runner PrismRunner ...`), as for
    `parcours run`: for the Python models, and for the touchpoints' re-derivation of --full.

    A pass like the scheduled one: an hourly (daily) dataset is refreshed only by the first pass
    in a later UTC hour (day) than its last refresh (`--all-cadences`: now).
    """
    from parcours.refresh.rederive import NeedsConfiguration
    from parcours.refresh.refresher import catch_up, plan
    from parcours.warehouse import CheckpointError, Warehouse, WarehouseBusy

    wh = Warehouse(warehouse)
    if not wh.manifest_dir.is_dir():
        fail(f"{wh.root} is not a parcours warehouse (no _manifests folder): nothing to refresh")
    if config is not None and not (full or dry_run):
        fail("--config applies to --full (the rules to rebuild under) or --dry-run only")
    journey = _load_config(config) if config is not None else None
    if dry_run:
        for pending in plan(wh, journey, all_cadences=all_cadences):
            if not pending.reasons:
                console.print(f"{pending.dataset}: current")
                continue
            console.print(f"{pending.dataset}: " + "; ".join(pending.reasons), soft_wrap=True)
        return
    try:
        with wh.lock():
            refreshed = catch_up(wh, full=full, config=journey, beam_args=ctx.args, all_cadences=all_cadences)
            if refreshed is None and wh.views_outdated():
                wh.rebuild_views()
    except (WarehouseBusy, CheckpointError, NeedsConfiguration) as exc:
        fail(str(exc))
    if refreshed is None:
        console.print("nothing to refresh: every derived dataset is current")
        return
    console.print(_describe_refresh(refreshed), soft_wrap=True)


@app.command()
def compact(
    warehouse: WarehouseOption = Path("warehouse"),
    grace: Annotated[
        str,
        typer.Option(
            help="Keep files a compaction removes on disk this long (e.g. 30m, 24h, 0s), for BI "
            "connections opened before it; they are deleted by a later compaction."
        ),
    ] = "24h",
) -> None:
    """Rewrite each partition's small files as one, keeping only current rows (one atomic commit)."""
    from datetime import timedelta

    from parcours.compact import compact as compact_warehouse
    from parcours.config import parse_duration
    from parcours.refresh.refresher import catch_up
    from parcours.warehouse import CheckpointError, Warehouse, WarehouseBusy

    period = parse_duration(grace)
    if not isinstance(period, timedelta) or period < timedelta(0):
        fail(f"--grace: '{grace}' is not a duration such as 30m, 24h or 0s")
    wh = Warehouse(warehouse)
    if not wh.manifest_dir.is_dir():
        fail(f"{wh.root} is not a parcours warehouse (no _manifests folder): nothing to compact")
    try:
        with wh.lock():
            if wh.views_outdated():
                wh.rebuild_views()
            # Compaction drops the markers a refresh needs: every dataset current first, whatever its cadence.
            refreshed = catch_up(wh, all_cadences=True)
            if refreshed is not None:
                console.print(_describe_refresh(refreshed))
            report = compact_warehouse(wh, grace=period)
    except (WarehouseBusy, CheckpointError) as exc:
        fail(str(exc))
    if report.deleted:
        console.print(f"deleted {len(report.deleted):,} files removed by earlier compactions")
    if report.seq is None:
        console.print("nothing to compact")
        return
    before, after = sum(report.files_before.values()), sum(report.files_after.values())
    dropped = sum(report.rows_dropped.values())
    console.print(
        f"compaction {report.seq}: {before:,} live files -> {after:,}, {dropped:,} superseded rows dropped; "
        f"the {report.removed:,} removed files are deleted by a compaction after {grace}",
        soft_wrap=True,
    )


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A SQL query over the views (touchpoints, sessions, journeys...).")],
    warehouse: WarehouseOption = Path("warehouse"),
) -> None:
    """Query the warehouse's DuckDB views read-only, as a BI tool would, and print the result."""
    import duckdb

    from parcours.warehouse import Warehouse

    wh = Warehouse(warehouse)
    if not wh.db_path.exists():
        fail(f"{wh.db_path} does not exist: run `parcours run --warehouse {warehouse}` first")
    if wh.views_outdated():  # moved folder, or a run that died between commit and rebuild
        wh.rebuild_views()
    try:
        with duckdb.connect(str(wh.db_path), read_only=True) as con:
            con.sql(query).show(max_width=200)
    except duckdb.Error as exc:
        fail(str(exc))


def _read_only(warehouse: Path):
    """The warehouse's views file, opened read-only as a BI tool opens it (its views rebuilt
    first when outdated: a moved folder, or a run that died between commit and rebuild)."""
    import duckdb

    from parcours.warehouse import Warehouse

    wh = Warehouse(warehouse)
    if not wh.db_path.exists():
        fail(f"{wh.db_path} does not exist: run `parcours run --warehouse {warehouse}` first")
    if wh.views_outdated():  # moved folder, or a run that died between commit and rebuild
        wh.rebuild_views()
    return duckdb.connect(str(wh.db_path), read_only=True)


def _day(name: str, value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        fail(f"--{name} must be a date YYYY-MM-DD, not {value!r}")


def _percent(value: float | None, low: float | None = None, high: float | None = None) -> str:
    if value is None:
        return "-"
    if low is None or high is None:
        return f"{value:.1%}"
    return f"{value:.1%} [{low:.1%}, {high:.1%}]"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 86_400:
        return f"{seconds / 86_400:.1f} d"
    return f"{seconds / 3600:.1f} h"


@app.command()
def funnel(
    name: Annotated[str, typer.Argument(help="A funnel of the configuration (`funnels` in journey.yaml).")],
    warehouse: WarehouseOption = Path("warehouse"),
    by: Annotated[str | None, typer.Option(help="Break down by channel, segment or product_line of entry.")] = None,
    since: Annotated[str | None, typer.Option(help="First week of entry: the week of this date (YYYY-MM-DD).")] = None,
    until: Annotated[
        str | None, typer.Option(help="Last week of entry: weeks starting on or before this date.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows instead of a table.")] = False,
) -> None:
    """A funnel's steps: customers reaching each, in progress, not converted, and the conversion
    rates (95 % interval) over customers whose windows have all closed."""
    import json

    from rich.table import Table

    from parcours.analytics.funnels import UnknownFunnel, funnel_steps

    first, last = _day("since", since), _day("until", until)
    if first and last and first > last:
        fail(f"--since {since} is after --until {until}")
    with _read_only(warehouse) as con:
        try:
            steps = funnel_steps(con, name, by=by, since=first, until=last)
        except (UnknownFunnel, ValueError) as exc:
            fail(str(exc.args[0]))
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in steps], indent=2))
        return
    table = Table(title=f"funnel {name}" + (f" by {by}" if by else ""), title_justify="left")
    columns = [*([by] if by else []), "#", "step", "reached", "in progress", "not converted", "excluded"]
    for column in (*columns, "from previous", "from start", "median time"):
        table.add_column(column, justify="left" if column in (by, "step") else "right")
    for s in steps:
        table.add_row(
            *([escape(s.value)] if by else []),
            str(s.step_index),
            escape(s.step),
            f"{s.n_reached:,}",
            f"{s.n_in_progress:,}",
            f"{s.n_not_converted:,}",
            f"{s.n_excluded:,}",
            _percent(s.conversion_from_previous, s.conversion_from_previous_low, s.conversion_from_previous_high),
            _percent(s.conversion_from_start, s.conversion_from_start_low, s.conversion_from_start_high),
            _duration(s.median_time_to_convert_in_s),
        )
    Console().print(table)
    if not steps:
        console.print("no customer entered this funnel in those weeks")
    elif not any(s.n_settled for s in steps):
        console.print("no customer has every window closed at the finality point yet: no rate until some have")
    console.print(
        "rates over customers whose every window has closed (in progress: shown apart); "
        "not converted: stopped at the step with every window closed, not a stage drop-off"
    )


def _print_rows(title: str, columns: list[str], rows: list[tuple], as_json: bool) -> None:
    """Rows on stdout: a rich table, or with --json one JSON object a row (lists as lists)."""
    import json

    from rich.table import Table

    if as_json:
        typer.echo(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str, indent=2))
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column.startswith(("n_", "share", "step", "median")) else "left")
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    Console(width=200).print(table)


def _cell(value: object) -> str:
    if isinstance(value, list):
        return escape(" > ".join(map(str, value)))
    if isinstance(value, float):
        return f"{value:.3f}"
    return escape("" if value is None else str(value))


@app.command()
def paths(
    warehouse: WarehouseOption = Path("warehouse"),
    top: Annotated[int, typer.Option(help="How many variants to show, most frequent first.", min=1)] = 10,
    cycle_type: Annotated[
        str | None, typer.Option("--cycle-type", help="Only this cycle type (first_purchase, renewal, win_back).")
    ] = None,
    anchor: Annotated[
        str | None, typer.Option(help="Show the edges of this anchor of paths.anchors instead (a Sankey as a table).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The top path variants of ended journeys (open ones counted apart), or an anchor's edges."""
    import duckdb

    con = _read_only(warehouse)
    try:
        with con:
            if anchor is not None:
                columns = ["step", "source", "target", "n_journeys", "n_journeys_at_step"]
                rows = con.execute(
                    f"select {', '.join(columns)} from path_edges where anchor = ? "
                    "order by step, n_journeys desc, source, target",
                    [anchor],
                ).fetchall()
                if not rows:
                    known = [a for (a,) in con.execute("select distinct anchor from path_edges order by 1").fetchall()]
                    fail(f"no edges for anchor {anchor!r} (anchors with edges: {', '.join(known) or 'none'})")
                (direction,) = con.execute(
                    "select any_value(direction) from path_edges where anchor = ?", [anchor]
                ).fetchone()
                title = f"path edges {direction} {anchor}"
            else:
                columns = [
                    "cycle_type",
                    "variant",
                    "n_journeys",
                    "share",
                    "share_low",
                    "share_high",
                    "median_duration_in_s",
                    "n_ended",
                    "n_open",
                    "is_truncated",
                ]
                where = "where cycle_type = ?" if cycle_type else ""
                rows = con.execute(
                    f"select {', '.join(columns)} from paths {where} "
                    "order by n_journeys desc, cycle_type, variant limit ?",
                    [*([cycle_type] if cycle_type else []), top],
                ).fetchall()
                (as_of,) = con.execute("select max(as_of) from paths").fetchone()
                title = f"top {top} path variants of ended journeys, as of {as_of or 'nothing landed'}"
    except duckdb.Error as exc:
        fail(str(exc))
    _print_rows(title, columns, rows, as_json)


@app.command()
def report(
    warehouse: WarehouseOption = Path("warehouse"),
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write (the previous one is kept).")] = Path(
        "report.html"
    ),
    since: Annotated[str | None, typer.Option(help="First day shown (UTC date, YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Last day shown (UTC date, YYYY-MM-DD).")] = None,
    segment: Annotated[str | None, typer.Option(help="Only this customer segment, where a view has one.")] = None,
    lang: Annotated[str, typer.Option(help="Language of the labels: fr or en.")] = "fr",
) -> None:
    """Write the journey report: one self-contained HTML file, read from the views read-only."""
    from parcours.report import Filters, write_report
    from parcours.warehouse import Warehouse

    if lang not in ("fr", "en"):
        fail(f"--lang must be fr or en, not {lang!r}")
    days = {}
    for name, value in (("since", since), ("until", until)):
        try:
            days[name] = date.fromisoformat(value) if value else None
        except ValueError:
            fail(f"--{name} must be a date YYYY-MM-DD, not {value!r}")
    if days["since"] and days["until"] and days["since"] > days["until"]:
        fail(f"--since {since} is after --until {until}")
    wh = Warehouse(warehouse)
    if not wh.db_path.exists():
        fail(f"{wh.db_path} does not exist: run `parcours run --warehouse {warehouse}` first")
    if wh.views_outdated():  # moved folder, or a run that died between commit and rebuild
        wh.rebuild_views()
    result = write_report(wh.db_path, out, Filters(segment, days["since"], days["until"]), lang)
    kept = f" (previous kept as {result.previous})" if result.previous else ""
    console.print(f"report: {escape(str(result.path))}, {result.bytes / 1e6:.2f} MB{escape(kept)}", soft_wrap=True)


def _broker(action: str) -> None:
    script = REPO_ROOT / "infra" / "kafka.sh"
    if not script.exists():
        fail(f"{script} not found: the broker commands work from a parcours checkout")
    raise typer.Exit(subprocess.call(["bash", str(script), action]))


@broker_app.command("start")
def broker_start() -> None:
    """Start the local single-node Kafka (KRaft) on 127.0.0.1; does nothing if it runs."""
    _broker("start")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the local broker."""
    _broker("stop")


@broker_app.command("status")
def broker_status() -> None:
    """Exit 0 when the local broker answers."""
    _broker("status")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
