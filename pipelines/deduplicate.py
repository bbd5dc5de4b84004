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
hash, id hash, customer and (source, partition, offset). Each shard of a micro-batch decides
its own records, inside its own step: it hashes their ids and reads one column of the buckets
they fall in, the index's id hashes (8 bytes a row). An id whose hash repeats in the shard or is
in the index (a re-send, a conflict, or rarely a hash collision) is decided exactly, in DuckDB,
against the index rows of those hashes only, read from the files that hold them; every other id
is new. The shard writes its new ids as one file per bucket, on a thread of its own (the Parquet
encoding overlaps the batch's other work); compaction rewrites each bucket as one file in hash
order. No side input and no regrouping of rows: the step fuses with Validate, so the wide rows
stream through as they did before the index.

Two shards cannot see each other's ids. The driver therefore reads the hashes of the batch's
new index rows before publishing it (`ids_landed_twice`, exact on the hashes that repeat); an
id landed by two shards (rare: an id reused under two customers at once) makes it run the batch
again, under the same
seq and file names, with the winning copy of each such id passed in, so every other copy is a
duplicate or one dead letter (`pipelines/run.py`, `execute`).

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

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime, timedelta

import apache_beam as beam
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from apache_beam.transforms.window import GlobalWindows

from parcours.pipelines.coders import TABLE_ELEMENT
from parcours.pipelines.record_loops import paused_gc
from parcours.pipelines.validate import CONTRACTS, PHONE_REGION, dead_letters
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


def id_hashes(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """XXH3-64 of each id's UTF-8 bytes (uint64)."""
    with paused_gc():
        encoded = ids.cast(pa.binary()).to_pylist()
        return np.fromiter(map(xxhash.xxh3_64_intdigest, encoded), dtype=np.uint64, count=len(encoded))


def id_buckets(ids: pa.Array | pa.ChunkedArray, buckets: int = ID_BUCKETS) -> np.ndarray:
    """The index bucket of each id: XXH3-64 of its UTF-8 bytes, modulo `buckets`."""
    return (id_hashes(ids) % np.uint64(buckets)).astype(np.int32)


def candidates(hashes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Which rows may not simply land: their id hash repeats within `hashes` or is in `others`
    (the hashes of the index rows and winners of these ids). Every copy of an id has the same
    hash, so all copies of an id are in or all out; a hash collision only adds rows to the
    exact check. Pure: tested alone."""
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    return contains(np.sort(others, kind="stable"), hashes) | contains(repeated, hashes)


def contains(pool: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Which of `values` are in `pool` (sorted ascending): a binary search per value, so a large
    pool is never sorted again. Pure: tested alone."""
    if not pool.size or not values.size:
        return np.zeros(values.size, dtype=bool)
    at = np.minimum(np.searchsorted(pool, values), pool.size - 1)
    return pool[at] == values


def file_hashes(path: str) -> np.ndarray:
    """The id hashes of one id index file, sorted: its one 8-byte column. A batch's files are
    small (one shard's ids of one bucket); a compacted bucket is written in hash order, which
    the stable sort passes over in one run."""
    column = pq.ParquetFile(path).read(columns=["id_hash"]).column(0)
    return np.sort(column.to_numpy())


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


def decide_ids(batch: pa.Table, landed: pa.Table, winners: pa.Table | None = None) -> tuple[pa.Table, pa.Table]:
    """(new index rows, decisions) for one shard's narrow rows. Pure: tested alone.

    `batch`: narrow rows (NARROW_IDS, optionally with a `row` column that is carried through);
    `landed`: the index rows of those ids within retention; `winners`: copies of this batch that
    another shard holds and that win (the lowest (topic, partition, offset) of an id landed by
    two shards, found by the driver): they rank with the shard's rows but are never emitted.
    New index rows are the copies that land (NARROW_IDS, plus `row`); decisions are the other
    records (DECISIONS, plus `row`), each once.
    """
    if winners is None:
        winners = NARROW_IDS.empty_table()
    con = duckdb.connect()
    try:
        con.execute("set threads = 1")
        con.register("batch", batch)
        con.register("landed", landed)
        con.register("winners", winners.select(NARROW_IDS.names).cast(NARROW_IDS))
        decided = con.sql(
            """
            with candidates as (
                select *, false as external from batch
                union all by name
                -- the global winner held by another shard (not this shard's own copy)
                select w.*, true as external from winners w
                where not exists (
                    select 1 from batch b
                    where b.kind = w.kind and b.record_id = w.record_id and b.source = w.source
                      and b.source_partition is not distinct from w.source_partition
                      and b.source_offset = w.source_offset
                )
            ), ranked as (
                select *, row_number() over (
                    partition by kind, record_id order by source, source_partition, source_offset
                ) as arrival
                from candidates
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
                where not r.external
            )
            select * from final
            """
        ).to_arrow_table()
        extra = ["row"] if "row" in batch.column_names else []
        new_schema = pa.schema([*NARROW_IDS, *(batch.schema.field(n) for n in extra)])
        new = decided.filter(decided.column("is_new")).select(new_schema.names).cast(new_schema)
        others = decided.filter(pc.invert(decided.column("is_new")))
        others = others.append_column(
            "is_duplicate", pc.equal(others.column("payload_hash"), others.column("ref_hash"))
        )
        decided_schema = pa.schema([*DECISIONS, *(batch.schema.field(n) for n in extra)])
        return new, others.select(decided_schema.names).cast(decided_schema)
    finally:
        con.close()


def _landed(paths: Sequence[str], ids: pa.Table, cutoff: datetime) -> pa.Table:
    """The index rows, within retention, of `ids` (kind, record_id, id_hash) from the files
    `paths` (those that hold one of their hashes)."""
    from parcours.warehouse import ID_INDEX, raw_view_sql

    if not paths or not ids.num_rows:
        return _EMPTY_LANDED
    con = duckdb.connect()
    try:
        con.execute("set threads = 1")
        con.execute(raw_view_sql(con, ID_INDEX, list(paths), temporary=True))
        con.register("ids", ids)
        return con.sql(
            "select i.* exclude (id_bucket) from raw_id_index i semi join ids using (kind, id_hash, record_id) "
            "where i.ingested_at >= $cutoff",
            params={"cutoff": cutoff},
        ).to_arrow_table()
    finally:
        con.close()


def _landed_schema() -> pa.Schema:
    from parcours.warehouse import ID_INDEX

    return pa.schema([f for f in ID_INDEX.arrow_schema if f.name != "id_bucket"])


_EMPTY_LANDED = _landed_schema().empty_table()


_NO_DECISIONS = pa.schema([*DECISIONS, pa.field("row", pa.int64())]).empty_table()


class DeduplicateShardFn(beam.DoFn):
    """((kind, shard), valid rows) -> rows that land; duplicates counted, conflicts dead-lettered,
    and the shard's new index rows written (a receipt names the files).

    Decided inside the shard, against the published index and the `winners` the driver passes
    in when it re-runs a batch whose shards landed the same id (`ids_landed_twice`): no side
    input, no regrouping of rows, so the FnApiRunner fuses this step with Validate and the wide
    rows are never materialised.
    """

    def __init__(
        self,
        index_files: tuple[str, ...],
        now: datetime,
        retention: timedelta,
        root: str,
        seq: int,
        winners: pa.Table | None,
        region: str = PHONE_REGION,
    ) -> None:
        self._index_files = index_files
        self._region = region
        self._cutoff = now - retention
        self._now = now
        self._root = root
        self._seq = seq
        self._winners = winners
        self._warehouse = None

    def setup(self) -> None:
        from parcours.warehouse import Warehouse

        self._warehouse = Warehouse(self._root)
        # The new index rows are written on a thread of their own: Parquet encoding releases the
        # GIL, so it overlaps the rest of the batch's Python work instead of adding to it.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="id-index")

    def start_bundle(self) -> None:
        self._writes: list[Future] = []

    def finish_bundle(self) -> Iterator:
        writes, self._writes = self._writes, []
        for write in writes:  # a failed write raises here and fails the bundle, like any step
            yield beam.pvalue.TaggedOutput("receipts", GlobalWindows.windowed_value({"files": write.result()}))

    def teardown(self) -> None:
        if getattr(self, "_writer", None) is not None:
            self._writer.shutdown(wait=True)

    def process(self, element: tuple[tuple[str, int], pa.Table]) -> Iterator:
        (kind, shard), table = element
        narrow = narrow_ids(kind, table).append_column("row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        hashes = id_hashes(narrow.column("record_id"))
        buckets = (hashes % np.uint64(ID_BUCKETS)).astype(np.int32)
        wanted = {f"/id_bucket={int(b)}/" for b in np.unique(buckets)}
        index = {p: file_hashes(p) for p in self._index_files if any(marker in p for marker in wanted)}
        winners = self._winners
        if winners is not None:
            winners = winners.filter(pc.equal(winners.column("kind"), kind))
        known = [*index.values()]
        if winners is not None and winners.num_rows:
            known.append(id_hashes(winners.column("record_id")))
        others = np.concatenate(known) if known else np.empty(0, np.uint64)
        # The exact decision (DuckDB) for the few rows that need one; the others are new ids.
        check = candidates(hashes, others)
        new = narrow.append_column("id_hash", pa.array(hashes, pa.uint64())).filter(pa.array(~check))
        decisions = _NO_DECISIONS
        if check.any():
            checked = narrow.filter(pa.array(check))
            asked = np.sort(hashes[check])
            holding = [path for path, held in index.items() if contains(held, asked).any()]
            ids = checked.select(["kind", "record_id"]).append_column("id_hash", pa.array(hashes[check], pa.uint64()))
            landed = _landed(holding, ids, self._cutoff)
            decided, decisions = decide_ids(checked, landed, winners)
            decided = decided.append_column("id_hash", pa.array(hashes[decided.column("row").to_numpy()], pa.uint64()))
            new = pa.concat_tables([new, decided.cast(new.schema)])
        if new.num_rows:
            self._writes.append(self._writer.submit(self._write_index, kind, shard, new, buckets))
        if not decisions.num_rows:
            yield (kind, shard), table.drop_columns(["payload"])
            return
        decisions = decisions.sort_by("row")
        keep = np.ones(table.num_rows, dtype=bool)
        keep[decisions.column("row").to_numpy()] = False
        duplicates = int(pc.sum(decisions.column("is_duplicate")).as_py() or 0)
        if duplicates:
            yield beam.pvalue.TaggedOutput("receipts", {"duplicates_skipped": {kind: duplicates}})
        conflicts = decisions.filter(pc.invert(decisions.column("is_duplicate")))
        if conflicts.num_rows:
            yield beam.pvalue.TaggedOutput("dead", _conflict_letters(kind, table, conflicts, self._region))
        if keep.any():
            yield (kind, shard), table.filter(pa.array(keep)).drop_columns(["payload"])

    def _write_index(self, kind: str, shard: int, new: pa.Table, buckets: np.ndarray) -> list[dict]:
        """The shard's new ids, one file per bucket (in the shard's row order: `file_hashes` sorts
        on reading, which costs less than sorting the rows here)."""
        from parcours.warehouse import ID_INDEX

        n = new.num_rows
        rows = new.select([*NARROW_IDS.names, "id_hash"])
        rows = rows.append_column("batch_seq", pa.array(np.full(n, self._seq, dtype=np.int64)))
        at = ID_INDEX.arrow_schema.field("ingested_at").type
        rows = rows.append_column("ingested_at", pa.repeat(pa.scalar(self._now, at), n))
        rows = rows.append_column("id_bucket", pa.array(buckets[new.column("row").to_numpy()], pa.int32()))
        files = self._warehouse.write_parquet("id_index", rows, self._seq, f"ids-{kind}-s{shard:03d}")
        return [asdict(f) for f in files]


def ids_landed_twice(paths: Sequence[str]) -> pa.Table:
    """The winners of the ids that two shards of one batch both landed, from the batch's new
    index files (`paths`): per such id, its copy with the lowest (topic, partition, offset)
    (NARROW_IDS). Usually empty (an id reused under two customers at once), and then only the
    files' hash columns are read: the exact check reads the rows of the hashes that repeat.
    """
    if len(paths) < 2:
        return NARROW_IDS.empty_table()
    ordered = np.sort(np.concatenate([file_hashes(p) for p in paths]))
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if not repeated.size:
        return NARROW_IDS.empty_table()
    return _repeated_ids(paths, repeated)


def _repeated_ids(paths: Sequence[str], hashes: np.ndarray) -> pa.Table:
    from parcours.warehouse import ID_INDEX, raw_view_sql

    con = duckdb.connect()
    try:
        con.execute(raw_view_sql(con, ID_INDEX, list(paths), temporary=True, name="new_ids"))
        con.register("hashes", pa.table({"id_hash": pa.array(hashes, pa.uint64())}))
        twice = con.sql(
            f"""
            with counted as (
                select {", ".join(NARROW_IDS.names)},
                       count(*) over (partition by kind, record_id) as copies,
                       row_number() over (
                           partition by kind, record_id order by source, source_partition, source_offset
                       ) as arrival
                from new_ids semi join hashes using (id_hash)
            ), final as (
                select {", ".join(NARROW_IDS.names)} from counted where copies > 1 and arrival = 1
            )
            select * from final order by kind, record_id
            """
        ).to_arrow_table()
    finally:
        con.close()
    return twice.cast(NARROW_IDS)


def shares_ids(new: Sequence[str], published: Sequence[str]) -> bool:
    """Do the id index files `new` hold an id of the files `published` (same kind and id)?

    Reads the hash columns, and the rows only for the hashes both hold (rare: with
    `--workers N`, a batch that shares an id with one published before it in the round).
    """
    from parcours.warehouse import ID_INDEX, raw_view_sql

    if not new or not published:
        return False
    ours = np.unique(np.concatenate([file_hashes(p) for p in new]))
    theirs = np.concatenate([file_hashes(p) for p in published])
    both = ours[contains(np.sort(theirs), ours)]
    if not both.size:
        return False
    con = duckdb.connect()
    try:
        con.execute(raw_view_sql(con, ID_INDEX, list(new), temporary=True, name="new_ids"))
        con.execute(raw_view_sql(con, ID_INDEX, list(published), temporary=True))
        con.register("hashes", pa.table({"id_hash": pa.array(both, pa.uint64())}))
        found = con.execute(
            "select count(*) from (select kind, record_id from new_ids semi join hashes using (id_hash) "
            "semi join raw_id_index using (kind, id_hash, record_id))"
        ).fetchall()[0][0]
    finally:
        con.close()
    return found > 0


def _conflict_letters(kind: str, table: pa.Table, conflicts: pa.Table, region: str) -> pa.Table:
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
        redact=kind == "surveys",
        region=region,
    )


class Deduplicate(beam.PTransform):
    """((kind, shard), valid rows) -> {"fresh": rows that land, "dead": conflicts, "receipts": ...}.

    `index_files`: the id index's published files; `now`: the batch's ingestion time, which
    new index rows carry and from which `retention` is counted back; `winners`: see
    `DeduplicateShardFn` (None on a batch's first run).
    """

    def __init__(
        self,
        index_files: tuple[str, ...],
        retention: timedelta,
        *,
        now: datetime,
        root: str,
        seq: int,
        winners: pa.Table | None = None,
        region: str = PHONE_REGION,
    ) -> None:
        super().__init__()
        if retention <= timedelta(0):
            raise ValueError(f"id retention must be positive, got {retention}")
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self._decide = DeduplicateShardFn(tuple(index_files), now, retention, root, seq, winners, region)

    def expand(self, shards):
        decided = shards | "DecideIds" >> beam.ParDo(self._decide).with_output_types(
            TABLE_ELEMENT, dead=pa.Table, receipts=dict
        ).with_outputs("dead", "receipts", main="fresh")
        return {"fresh": decided.fresh, "dead": decided.dead, "receipts": decided.receipts}
