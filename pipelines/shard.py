"""ShardByCustomer: regroup Arrow batches so that each customer's rows meet in one shard.

Sessions and journeys are per customer, so every row of a customer in a micro-batch must be
processed together. Rows are routed by a stable hash of customer_id (crc32, the same in every
process and on every worker, unlike Python's salted `hash`), computed once per distinct
customer of a batch, then moved as one Arrow table per shard: one shuffle element per shard,
not one per event.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parcours.pipelines.coders import TABLE_ELEMENT


def shard_of(customer_ids: pa.ChunkedArray | pa.Array, shards: int) -> np.ndarray:
    """Shard number of each row; rows without a customer go to shard 0."""
    encoded = (
        pc.dictionary_encode(pc.fill_null(customer_ids, "")).combine_chunks()
        if isinstance(customer_ids, pa.ChunkedArray)
        else pc.dictionary_encode(pc.fill_null(customer_ids, ""))
    )
    per_value = np.array(
        [zlib.crc32(value.encode()) % shards for value in encoded.dictionary.to_pylist()], dtype=np.int64
    )
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    return per_value[indices] if len(per_value) else np.zeros(len(indices), dtype=np.int64)


class SplitByShardFn(beam.DoFn):
    def __init__(self, shards: int) -> None:
        self._shards = shards

    def process(self, element: tuple[str, pa.Table]) -> Iterator[tuple[tuple[str, int], pa.Table]]:
        kind, table = element
        shard = shard_of(table.column("customer_id"), self._shards)
        for value in np.unique(shard):
            yield (kind, int(value)), table.filter(pa.array(shard == value))


def _concat(element: tuple[tuple[str, int], Iterable[pa.Table]]) -> tuple[tuple[str, int], pa.Table]:
    key, tables = element
    return key, pa.concat_tables(list(tables))


class ShardByCustomer(beam.PTransform):
    """(kind, table) -> ((kind, shard), one table holding every row of its customers)."""

    def __init__(self, shards: int) -> None:
        super().__init__()
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        self._shards = shards

    def expand(self, batches):
        return (
            batches
            | "SplitByShard" >> beam.ParDo(SplitByShardFn(self._shards)).with_output_types(TABLE_ELEMENT)
            | "GroupByShard" >> beam.GroupByKey()
            | "ConcatShard" >> beam.Map(_concat).with_output_types(TABLE_ELEMENT)
        )
