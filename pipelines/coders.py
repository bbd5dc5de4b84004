"""Beam coders for the Arrow tables that flow between steps, and the element types that carry them.

Why: Beam estimates the size of the first ten elements of every PCollection (then a sample)
by encoding them with the PCollection's coder. Without a type hint that coder pickles, so
each Arrow table was pickled once just to be measured, even inside a fused stage where it is
never sent anywhere: ~1.2 µs an event, measured. These coders size a table by its buffers
(`nbytes`) and move it, where a runner does move it (a shuffle, Flink, Dataflow), as an Arrow
IPC stream.

The transforms declare their output types with these aliases, so Beam picks these coders.
"""

from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.coders import coder_impl


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class ArrowTableCoder(beam.coders.Coder):
    """An Arrow table as an IPC stream; its size is estimated from its buffers, not encoded."""

    def encode(self, value: pa.Table) -> bytes:
        return _ipc_bytes(value)

    def decode(self, encoded: bytes) -> pa.Table:
        return _from_ipc(encoded)

    def _create_impl(self):
        return coder_impl.CallbackCoderImpl(self.encode, self.decode, size_estimator=lambda table: table.nbytes)

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self):
        return pa.Table

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class TablesCarrierCoder(beam.coders.Coder):
    """A picklable value holding Arrow tables (e.g. `ShardWork`), sized by those tables."""

    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=5)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)

    def _create_impl(self):
        return coder_impl.CallbackCoderImpl(self.encode, self.decode, size_estimator=_carried_bytes)

    def is_deterministic(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


def _carried_bytes(value: Any) -> int:
    tables = [v for v in vars(value).values() if isinstance(v, pa.Table)]
    return sum(table.nbytes for table in tables) or 64


beam.coders.registry.register_coder(pa.Table, ArrowTableCoder)


# (key, table): the elements between steps. The key is the kind, or (kind, shard).
TABLE_ELEMENT = tuple[Any, pa.Table]


def carries_tables(cls: type) -> type:
    """Class decorator: Beam moves and sizes instances of `cls` with `TablesCarrierCoder`."""
    beam.coders.registry.register_coder(cls, TablesCarrierCoder)
    return cls
