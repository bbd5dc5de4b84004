"""What Great Expectations costs on one 500,000-row batch, against landing that batch.

    .venv/bin/python benchmarks/quality.py --data /tmp/bench1m/data --rows 500000 --repeats 3

Measured before the quality gate is built, to decide which expectations can run on every batch
(the gate may cost at most 10 % of ingestion) and which must wait for the refresh. In one run:

1. **Baseline**: the first `rows` touchpoints of the data folder landed into a fresh warehouse as
   one micro-batch (`Ingestion.run_files`, no refresh): the batch's own seconds, as the batch line
   reports them.
2. **Great Expectations 1.x**, in code, on those rows as they landed (read back from the batch's
   Parquet files): the import (in a fresh interpreter, `GX_ANALYTICS_ENABLED=false` set first: it
   would send usage analytics otherwise), the ephemeral context and suite, Arrow to pandas (GE
   validates pandas frames; its SQL path through duckdb-engine is broken upstream), and the
   validation of the per-batch suite: the columns as contracted, non-null keys, a unique
   `event_id`, `occurred_at` not before the earliest valid date nor in the future, `channel` and
   `stage` in their sets, `cycle_type` in its set (revenue may be negative: a cancellation's
   refund).
3. **The same checks in DuckDB SQL** over the same Arrow table, for scale.

Each timed step is the median of `repeats`. Prints one JSON object: seconds and the ratio of each
cost to the baseline. Nothing is asserted here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from parcours.config import UNMAPPED_STAGE, load_config
from parcours.pipelines.cycles import CYCLE_TYPES
from parcours.schemas.contracts import CHANNELS

CONFIG = load_config()
KEYS = ("event_id", "customer_id", "occurred_at", "channel", "touchpoint")


def land(data: Path, rows: int, root: Path) -> tuple[float, pa.Table]:
    """The batch's seconds, and its landed touchpoint rows."""
    from parcours.pipelines.run import Ingestion
    from parcours.warehouse import Warehouse

    source = root.parent / "slice"
    source.mkdir()
    with (data / "touchpoints.jsonl").open("rb") as lines, (source / "touchpoints.jsonl").open("wb") as out:
        for _, line in zip(range(rows), lines, strict=False):
            out.write(line)
    warehouse = Warehouse(root)
    config = CONFIG.model_copy(update={"ingest": CONFIG.ingest.model_copy(update={"batch_size": rows})})
    with warehouse.lock():
        [batch] = Ingestion(warehouse, config).run_files(source, refresh=False).batches
    import pyarrow.parquet as pq

    paths = [root / f.path for f in warehouse.manifests()[-1].files if f.dataset == "touchpoints"]
    return batch.seconds, pa.concat_tables(pq.read_table(p) for p in paths)


def import_seconds() -> float:
    code = "import os, time; os.environ['GX_ANALYTICS_ENABLED'] = 'false'; t = time.perf_counter(); "
    code += "import great_expectations; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def suite_of(gx, now: datetime, columns: list[str]):
    e = gx.expectations
    earliest = datetime.combine(CONFIG.ingest.earliest_event_date, datetime.min.time(), tzinfo=UTC)
    stages = [*CONFIG.stages, UNMAPPED_STAGE]
    return [
        e.ExpectTableColumnsToMatchOrderedList(column_list=columns),
        *(e.ExpectColumnValuesToNotBeNull(column=c) for c in KEYS),
        e.ExpectColumnValuesToBeUnique(column="event_id"),
        e.ExpectColumnValuesToBeBetween(column="occurred_at", min_value=earliest, max_value=now + timedelta(minutes=5)),
        e.ExpectColumnValuesToBeInSet(column="channel", value_set=list(CHANNELS)),
        e.ExpectColumnValuesToBeInSet(column="stage", value_set=stages),
        e.ExpectColumnValuesToBeInSet(column="cycle_type", value_set=list(CYCLE_TYPES)),
    ]


def sql_checks(table: pa.Table, now: datetime) -> list[int]:
    """The same checks as counts of failing rows, in DuckDB."""
    import duckdb

    earliest = datetime.combine(CONFIG.ingest.earliest_event_date, datetime.min.time(), tzinfo=UTC)
    stages = [*CONFIG.stages, UNMAPPED_STAGE]
    con = duckdb.connect()
    con.register("batch", table)
    nulls = " + ".join(f"count(*) filter (where {c} is null)" for c in KEYS)
    row = con.execute(
        f"select {nulls}, count(*) - count(distinct event_id), "
        "count(*) filter (where occurred_at < ? or occurred_at > ?), "
        "count(*) filter (where not list_contains(?, channel)), "
        "count(*) filter (where stage is not null and not list_contains(?, stage)), "
        "count(*) filter (where cycle_type is not null and not list_contains(?, cycle_type)) from batch",
        [earliest, now + timedelta(minutes=5), list(CHANNELS), stages, list(CYCLE_TYPES)],
    ).fetchone()
    con.close()
    return list(row)


def timed(function, repeats: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a `parcours generate` folder")
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        landing, table = land(args.data, args.rows, Path(tmp) / "w")
    now = datetime.now(UTC)
    imported = statistics.median(import_seconds() for _ in range(args.repeats))

    os.environ["GX_ANALYTICS_ENABLED"] = "false"  # before the import: nothing leaves the machine
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    def setup():
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("batches").add_dataframe_asset("touchpoints")
        definition = asset.add_batch_definition_whole_dataframe("batch")
        suite = context.suites.add(gx.ExpectationSuite(name="touchpoints"))
        for expectation in suite_of(gx, now, table.column_names):
            suite.add_expectation(expectation)
        return definition, suite

    set_up, (definition, suite) = timed(setup, 1)
    to_pandas, frame = timed(lambda: table.to_pandas(), args.repeats)
    validated, result = timed(
        lambda: definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite), args.repeats
    )
    in_sql, failing = timed(lambda: sql_checks(table, now), args.repeats)
    gate = to_pandas + validated
    results = {
        "rows": table.num_rows,
        "landing_seconds": round(landing, 2),
        "ge_import_seconds": round(imported, 2),
        "ge_setup_seconds": round(set_up, 2),
        "arrow_to_pandas_seconds": round(to_pandas, 2),
        "ge_validate_seconds": round(validated, 2),
        "ge_success": bool(result.success),
        "ge_per_batch_ratio": round(gate / landing, 3),
        "sql_checks_seconds": round(in_sql, 3),
        "sql_failing_rows": failing,
        "sql_ratio": round(in_sql / landing, 4),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
