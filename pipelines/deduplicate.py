"""Deduplicate: an id is one row, whatever customer or partition carries it.

The rule, for an `event_id` (touchpoints) or a `response_id` (survey answers):

* an id already in the id index (landed within `ingest.id_retention` of ingestion time) is
  judged against its landed copy: the same payload bytes are a re-send (skipped, counted as a
  duplicate), other bytes are a conflict, dead-lettered `duplicate_id_conflict` naming the
  landed copy (its source, partition, offset and customer);
* among the copies of a new id in one micro-batch, the one with the lowest (topic, partition,
  offset) lands and the others are judged against it in the same way;
* exactly one outcome per record: landed, duplicate or one dead letter.

Why an index, and why partitioned by a hash of the id: the rows of a micro-batch are split by
customer (a Kafka partition of a customer-keyed topic holds whole customers), so two copies of
an id under two customers meet in no shard, and the landed datasets are laid out by event date,
so finding an id in them means reading every date. The index (`data/id_index/id_bucket=<b>/`,
declared in `parcours.warehouse.ID_INDEX`) holds one narrow row per landed id: kind, id, payload
hash, customer and (source, partition, offset). Each micro-batch projects its valid rows to the
same narrow columns, regroups them by bucket (a shuffle of ~60 bytes a row; the wide rows do not
move), decides per bucket against that bucket's files only, and writes its new ids as one file
per bucket. The decisions that are not "land" (duplicates, conflicts: usually none) go to every
shard as a side input, which drops or dead-letters those rows.

The index files are published by the same manifest commit as the batch's rows, so a crash
before the commit leaves neither, and a re-run decides the same way. Compaction rewrites each
bucket as one file and drops the ids ingested more than `id_retention` ago (`parcours.compact`);
the look-up ignores them too, so when compaction runs does not change what lands.

Across micro-batches the copy published first wins, and a published row is never retracted:
a row that readers may already have seen, counted and exported stays, and the later copy is
the conflict. It also keeps publishing a pure append: retracting would mean rewriting the
other customer's sessions and journeys, already refreshed, for a record that was the producer's
error. With `--workers N` the micro-batches of one round run at once and cannot see each
other's ids; the driver checks each one's new ids against those published before it in the
round and re-runs a batch that shares one (`pipelines/run.py`), so the rule holds exactly.

The bucket of an id is XXH3-64 of its UTF-8 bytes modulo `ID_BUCKETS`: the same in every process
and every version. `ID_BUCKETS` is part of the warehouse format: changing it would misplace
every id already indexed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import datetime, timedelta

import apache_beam as beam
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from parcours.pipelines.batching import paused_gc
from parcours.pipelines.coders import TABLE_ELEMENT
from parcours.pipelines.validate import CONTRACTS, dead_letters
from parcours.schemas.contracts import Reason

ID_BUCKETS = 8
_POSITION = ("source", "source_partition", "source_offset")
# The narrow row of one valid record: what the decision needs, ~60 bytes.
NARROW_IDS = pa.schema(
    [
        pa.field("kind", pa.string()),
        pa.field("record_id", pa.string()),
        pa.field("payload_hash", pa.uint64()),
        pa.field("customer_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("source_partition", pa.int32()),
        pa.field("source_offset", pa.int64()),
    ]
)
# A record that does not land, and the copy it was judged against.
DECISIONS = pa.schema(
    [
        *(NARROW_IDS.field(name) for name in ("kind", *_POSITION)),
        pa.field("is_duplicate", pa.bool_()),
        pa.field("is_landed", pa.bool_()),  # the reference copy is a published one (else in this batch)
        pa.field("ref_source", pa.string()),
        pa.field("ref_partition", pa.int32()),
        pa.field("ref_offset", pa.int64()),
        pa.field("ref_customer_id", pa.string()),
    ]
)


def id_buckets(ids: pa.Array | pa.ChunkedArray, buckets: int = ID_BUCKETS) -> np.ndarray:
    """The index bucket of each id: XXH3-64 of its UTF-8 bytes, modulo `buckets`."""
    with paused_gc():
        encoded = ids.cast(pa.binary()).to_pylist()
        hashes = np.fromiter(map(xxhash.xxh3_64_intdigest, encoded), dtype=np.uint64, count=len(encoded))
    return (hashes % np.uint64(buckets)).astype(np.int32)


def narrow_ids(kind: str, table: pa.Table) -> pa.Table:
    """One shard's valid rows -> their narrow rows (see `NARROW_IDS`)."""
    id_field = CONTRACTS[kind].id_field
    columns = {
        "kind": pa.array([kind] * table.num_rows, pa.string()),
        "record_id": table.column(id_field),
        "payload_hash": table.column("payload_hash"),
        "customer_id": table.column("customer_id"),
        **{name: table.column(name) for name in _POSITION},
    }
    return pa.table(columns).cast(NARROW_IDS)


def decide_ids(batch: pa.Table, landed: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(new index rows, decisions) for one bucket. Pure: tested alone.

    `batch`: the micro-batch's narrow rows of the bucket; `landed`: the bucket's index rows
    within retention. New index rows are the copies that land (NARROW_IDS); decisions are the
    other records (DECISIONS), each once.
    """
    con = duckdb.connect()
    try:
        con.execute("set threads = 1")
        con.register("batch", batch)
        con.register("landed", landed)
        decided = con.sql(
            """
            with ranked as (
                select *, row_number() over (
                    partition by kind, record_id order by source, source_partition, source_offset
                ) as arrival
                from batch
            ), published as (
                -- one per id by construction; should two ever be there, the first published rules
                select kind, record_id, payload_hash, customer_id, source, source_partition, source_offset
                from landed
                qualify row_number() over (
                    partition by kind, record_id order by batch_seq, source, source_partition, source_offset
                ) = 1
            ), reference as (
                select r.kind, r.record_id,
                       p.record_id is not null as is_landed,
                       coalesce(p.payload_hash, r.payload_hash) as ref_hash,
                       if(p.record_id is null, r.source, p.source) as ref_source,
                       if(p.record_id is null, r.source_partition, p.source_partition) as ref_partition,
                       if(p.record_id is null, r.source_offset, p.source_offset) as ref_offset,
                       if(p.record_id is null, r.customer_id, p.customer_id) as ref_customer_id
                from ranked r left join published p using (kind, record_id)
                where r.arrival = 1
            ), final as (
                select r.*, f.* exclude (kind, record_id),
                       not f.is_landed and r.arrival = 1 as is_new
                from ranked r join reference f using (kind, record_id)
            )
            select * from final
            """
        ).to_arrow_table()
        new = decided.filter(decided.column("is_new")).select(NARROW_IDS.names).cast(NARROW_IDS)
        others = decided.filter(pc.invert(decided.column("is_new")))
        others = others.append_column(
            "is_duplicate", pc.equal(others.column("payload_hash"), others.column("ref_hash"))
        )
        return new, others.select(DECISIONS.names).cast(DECISIONS)
    finally:
        con.close()


class ProjectIdsFn(beam.DoFn):
    """((kind, shard), valid rows) -> (bucket, narrow rows of that bucket)."""

    def process(self, element: tuple[tuple[str, int], pa.Table]) -> Iterator[tuple[int, pa.Table]]:
        (kind, _shard), table = element
        narrow = narrow_ids(kind, table)
        bucket = id_buckets(narrow.column("record_id"))
        for value in np.unique(bucket):
            yield int(value), narrow.filter(pa.array(bucket == value))


class DecideIdsFn(beam.DoFn):
    """(bucket, narrow tables) -> decisions (main), and a receipt of the bucket's new index file."""

    def __init__(self, index_files: tuple[str, ...], now: datetime, retention: timedelta, root: str, seq: int) -> None:
        self._index_files = index_files
        self._cutoff = now - retention
        self._now = now
        self._root = root
        self._seq = seq
        self._warehouse = None

    def setup(self) -> None:
        from parcours.warehouse import Warehouse

        self._warehouse = Warehouse(self._root)

    def _landed(self, bucket: int, ids: pa.Table) -> pa.Table:
        from parcours.warehouse import ID_INDEX, raw_view_sql

        marker = f"/id_bucket={bucket}/"
        paths = [p for p in self._index_files if marker in p]
        con = duckdb.connect()
        try:
            con.execute("set threads = 1")
            con.execute(raw_view_sql(con, ID_INDEX, paths, temporary=True))
            con.register("ids", ids)
            return con.sql(
                "select i.* exclude (id_bucket) from raw_id_index i semi join ids using (kind, record_id) "
                "where i.ingested_at >= $cutoff",
                params={"cutoff": self._cutoff},
            ).to_arrow_table()
        finally:
            con.close()

    def process(self, element: tuple[int, Iterable[pa.Table]]) -> Iterator:
        bucket, tables = element
        batch = pa.concat_tables(list(tables))
        landed = self._landed(bucket, batch.select(["kind", "record_id"]))
        new, decisions = decide_ids(batch, landed)
        if new.num_rows:
            from parcours.warehouse import ID_INDEX

            n = new.num_rows
            rows = new.append_column("batch_seq", pa.array([self._seq] * n, pa.int64()))
            at = ID_INDEX.arrow_schema.field("ingested_at").type
            rows = rows.append_column("ingested_at", pa.array([self._now] * n, at))
            rows = rows.append_column("id_bucket", pa.array([bucket] * n, pa.int32()))
            files = self._warehouse.write_parquet("id_index", rows, self._seq, "ids")
            yield beam.pvalue.TaggedOutput("receipts", {"files": [asdict(f) for f in files]})
        if decisions.num_rows:
            yield decisions


def _positions(table: pa.Table) -> pa.Table:
    return pa.table(
        {
            "source": table.column("source"),
            "partition": pc.fill_null(table.column("source_partition"), -1),
            "offset": table.column("source_offset"),
        }
    )


class SkipDuplicatesFn(beam.DoFn):
    """((kind, shard), valid rows) -> rows that land; duplicates counted, conflicts dead-lettered.

    `decisions` (a side input) lists every record of the micro-batch that does not land.
    """

    def process(self, element: tuple[tuple[str, int], pa.Table], decisions: list[pa.Table]) -> Iterator:
        (kind, shard), table = element
        ours = [d.filter(pc.equal(d.column("kind"), kind)) for d in decisions]
        ours = [d for d in ours if d.num_rows]
        if not ours:
            yield (kind, shard), table.drop_columns(["payload"])
            return
        con = duckdb.connect()
        try:
            con.execute("set threads = 1")
            con.register("decided", pa.concat_tables(ours))
            con.register("positions", _positions(table).append_column("row", pa.array(np.arange(table.num_rows))))
            matched = con.sql(
                "select p.row, d.* exclude (kind, source, source_partition, source_offset) from positions p "
                "join decided d on p.source = d.source and p.partition = coalesce(d.source_partition, -1) "
                "and p.offset = d.source_offset order by p.row"
            ).to_arrow_table()
        finally:
            con.close()
        rows = matched.column("row").to_numpy()
        keep = np.ones(table.num_rows, dtype=bool)
        keep[rows] = False
        duplicates = int(pc.sum(matched.column("is_duplicate")).as_py() or 0)
        if duplicates:
            yield beam.pvalue.TaggedOutput("receipts", {"duplicates_skipped": {kind: duplicates}})
        conflicts = matched.filter(pc.invert(matched.column("is_duplicate")))
        if conflicts.num_rows:
            yield beam.pvalue.TaggedOutput("dead", _conflict_letters(kind, table, conflicts))
        if keep.any():
            yield (kind, shard), table.filter(pa.array(keep)).drop_columns(["payload"])


def _conflict_letters(kind: str, table: pa.Table, conflicts: pa.Table) -> pa.Table:
    id_field = CONTRACTS[kind].id_field
    index = conflicts.column("row").to_pylist()
    rows = table.take(pa.array(index, pa.int64()))
    details = [
        f"{id_field} {record_id!r} already {'landed' if landed else 'lands in this batch'} with a different "
        f"payload: source {source} partition {partition} offset {offset}, customer {customer}"
        for record_id, landed, source, partition, offset, customer in zip(
            rows.column(id_field).to_pylist(),
            conflicts.column("is_landed").to_pylist(),
            conflicts.column("ref_source").to_pylist(),
            conflicts.column("ref_partition").to_pylist(),
            conflicts.column("ref_offset").to_pylist(),
            conflicts.column("ref_customer_id").to_pylist(),
            strict=True,
        )
    ]
    raw = table.select([*_POSITION, "payload"])
    return dead_letters(
        raw,
        index,
        [Reason.DUPLICATE_CONFLICT] * len(index),
        details,
        rows.column(id_field).to_pylist(),
        rows.column("customer_id").to_pylist(),
    )


class Deduplicate(beam.PTransform):
    """((kind, shard), valid rows) -> {"fresh": rows that land, "dead": conflicts, "receipts": ...}.

    `index_files`: the id index's published files; `now`: the batch's ingestion time, which
    new index rows carry and from which `retention` is counted back.
    """

    def __init__(
        self, index_files: tuple[str, ...], retention: timedelta, *, now: datetime, root: str, seq: int
    ) -> None:
        super().__init__()
        if retention <= timedelta(0):
            raise ValueError(f"id retention must be positive, got {retention}")
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self._decide = DecideIdsFn(tuple(index_files), now, retention, root, seq)

    def expand(self, shards):
        decided = (
            shards
            | "ProjectIds" >> beam.ParDo(ProjectIdsFn()).with_output_types(tuple[int, pa.Table])
            | "GroupByBucket" >> beam.GroupByKey()
            | "DecideIds"
            >> beam.ParDo(self._decide)
            .with_output_types(pa.Table, receipts=dict)
            .with_outputs("receipts", main="decisions")
        )
        skip = beam.ParDo(SkipDuplicatesFn(), beam.pvalue.AsList(decided.decisions))
        skipped = shards | "SkipDuplicates" >> skip.with_output_types(TABLE_ELEMENT).with_outputs(
            "dead", "receipts", main="fresh"
        )
        receipts = (decided.receipts, skipped.receipts) | "DedupReceipts" >> beam.Flatten()
        return {"fresh": skipped.fresh, "dead": skipped.dead, "receipts": receipts}
