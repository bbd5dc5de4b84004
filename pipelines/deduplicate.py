"""Deduplicate: the same id twice is a duplicate (skipped, counted) or a conflict (dead letter).

Within a micro-batch the first arrival (by source, partition, offset) wins. Against what has
already landed, only ids within the lateness horizon are looked up: an older copy would be
rejected as late by `Validate` before reaching this step, so the dedup state never grows
beyond the horizon.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import apache_beam as beam
import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from parcours.config import IngestRules
from parcours.pipelines.coders import TABLE_ELEMENT
from parcours.pipelines.state import LandedState, PublishedFiles
from parcours.pipelines.validate import CONTRACTS, dead_letters
from parcours.schemas.contracts import Reason


def split_duplicates(table: pa.Table, id_field: str, landed: pa.Table) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(first arrivals not landed yet, duplicates, conflicts) of one shard's valid rows."""
    ids = table.column(id_field)
    if landed.num_rows == 0 and pc.count_distinct(ids).as_py() == table.num_rows:
        empty = table.slice(0, 0)
        return table, empty, empty  # the usual case, without a query
    con = duckdb.connect()
    con.register("batch", table)
    con.register("landed", landed)
    ranked = con.sql(
        f"""
        select b.*,
               row_number() over arrival as arrival_rank,
               first_value(b.payload_hash) over arrival as first_hash,
               l.payload_hash as landed_hash
        from batch b left join landed l using ({id_field})
        window arrival as (partition by b.{id_field} order by b.source, b.source_partition, b.source_offset)
        """
    ).to_arrow_table()
    con.register("ranked", ranked)
    columns = ", ".join(f'"{name}"' for name in table.column_names)

    def pick(condition: str) -> pa.Table:
        return con.sql(
            f"select {columns} from ranked where {condition} order by source, source_partition, source_offset"
        ).to_arrow_table()

    fresh = pick("arrival_rank = 1 and landed_hash is null")
    duplicates = pick(
        "(arrival_rank = 1 and landed_hash = payload_hash) "
        "or (arrival_rank > 1 and payload_hash = coalesce(landed_hash, first_hash))"
    )
    conflicts = pick("payload_hash <> coalesce(landed_hash, first_hash)")
    con.close()
    return fresh, duplicates, conflicts


class DeduplicateFn(beam.DoFn):
    def __init__(self, files: PublishedFiles, rules: IngestRules, watermarks: dict[str, datetime | None]) -> None:
        self._files = files
        self._rules = rules
        self._watermarks = watermarks
        self._state: LandedState | None = None

    def setup(self) -> None:
        self._state = LandedState(self._files)

    def process(self, element: tuple[tuple[str, int], pa.Table]) -> Iterator:
        (kind, shard), table = element
        contract = CONTRACTS[kind]
        watermark = self._watermarks.get(kind)
        horizon = (watermark - self._rules.allowed_lateness).date() if watermark else None
        ids = table.column(contract.id_field)
        if kind == "touchpoints":
            landed = self._state.landed_touchpoint_hashes(ids, horizon)
        else:
            landed = self._state.landed_survey_hashes(ids, horizon)
        fresh, duplicates, conflicts = split_duplicates(table, contract.id_field, landed)
        if conflicts.num_rows:
            n = conflicts.num_rows
            raw = conflicts.select(["source", "source_partition", "source_offset", "payload"])
            yield beam.pvalue.TaggedOutput(
                "dead",
                dead_letters(
                    raw,
                    list(range(n)),
                    [Reason.DUPLICATE_CONFLICT] * n,
                    [f"{contract.id_field} already seen with a different payload"] * n,
                    conflicts.column(contract.id_field).to_pylist(),
                    conflicts.column("customer_id").to_pylist(),
                ),
            )
        if duplicates.num_rows:
            yield beam.pvalue.TaggedOutput("receipts", {"duplicates_skipped": {kind: duplicates.num_rows}})
        if fresh.num_rows:
            yield (kind, shard), fresh.drop_columns(["payload"])

    def teardown(self) -> None:
        if self._state is not None:
            self._state.close()


class Deduplicate(beam.PTransform):
    """((kind, shard), rows) -> first arrivals; conflicts to `dead`, duplicate counts to `receipts`."""

    def __init__(self, files: PublishedFiles, rules: IngestRules, watermarks: dict[str, datetime | None]) -> None:
        super().__init__()
        self._fn = DeduplicateFn(files, rules, watermarks)

    def expand(self, shards):
        skip = beam.ParDo(self._fn).with_output_types(TABLE_ELEMENT, dead=pa.Table, receipts=dict)
        return shards | "SkipDuplicates" >> skip.with_outputs("dead", "receipts", main="fresh")
