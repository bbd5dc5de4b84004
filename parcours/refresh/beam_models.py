"""Python models run as a Beam pipeline, over Arrow batches of whole customers.

A derived dataset whose model is a Python function (`python:` in its declaration; today the
churn rules, `parcours.pipelines.cycles.churn_rows`) is computed by the refresher through
`ApplyModel`: the invalidated customers' current events are staged as Parquet shards (a
customer's events all in one shard, in customer and time order), one Beam pipeline on the runner
the pipeline options name (the local FnApiRunner unless `--runner ...` is given, as ingestion)
applies the function to each shard and writes its rows beside it, and the refresher reads them
back to publish. What travels through the pipeline is file paths, never the tables: a DoFn
reads its shard, so nothing large is pickled into the graph.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

SORT = [("customer_id", "ascending"), ("occurred_at", "ascending"), ("event_id", "ascending")]


class ApplyModelFn(beam.DoFn):
    """Shard path -> path of the model's rows over that shard's customers."""

    def __init__(self, function: Callable[..., pa.Table], arguments: tuple[Any, ...], out_dir: str) -> None:
        self._function = function
        self._arguments = arguments
        self._out_dir = out_dir

    def process(self, path: str) -> Iterator[str]:
        events = pq.read_table(path).sort_by(SORT)
        rows = self._function(events, *self._arguments)
        out = Path(self._out_dir) / Path(path).name
        pq.write_table(rows, out)
        yield str(out)


class ApplyModel(beam.PTransform):
    """Parquet shards of events -> Parquet files of a Python model's rows, one per shard."""

    def __init__(self, function: Callable[..., pa.Table], arguments: tuple[Any, ...], out_dir: str) -> None:
        super().__init__()
        self._fn = ApplyModelFn(function, arguments, out_dir)

    def expand(self, shards):
        return shards | "Model" >> beam.ParDo(self._fn)


def run_model(
    con: duckdb.DuckDBPyConnection,
    events_sql: str,
    function: Callable[..., pa.Table],
    arguments: tuple[Any, ...],
    schema: pa.Schema,
    staging: Path,
    beam_args: Sequence[str] = (),
    shards: int = 2,
) -> pa.Table:
    """The rows of `function(events, *arguments)` over the events `events_sql` selects on `con`,
    computed shard by shard in one Beam pipeline; `staging` is emptied afterwards."""
    from parcours.pipelines.run import pipeline_options

    inputs, outputs = staging / "in", staging / "out"
    inputs.mkdir(parents=True, exist_ok=True)
    outputs.mkdir(parents=True, exist_ok=True)
    try:
        paths = []
        for shard in range(shards):
            table = con.sql(
                f"select * from ({events_sql}) where hash(customer_id) % {shards} = {shard}"
            ).to_arrow_table()
            if table.num_rows:
                path = inputs / f"shard-{shard:03d}.parquet"
                pq.write_table(table, path)
                paths.append(str(path))
        if not paths:
            return schema.empty_table()
        with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
            _ = (
                pipeline
                | "Shards" >> beam.Create(paths)
                | "ApplyModel" >> ApplyModel(function, arguments, str(outputs))
            )
        written = sorted(outputs.glob("*.parquet"))
        return pa.concat_tables([pq.read_table(p, schema=schema) for p in written]) if written else schema.empty_table()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
