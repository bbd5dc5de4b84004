"""The model harness: given rows for a model's inputs, run the model, expect rows (dbt's unit tests).

A model test names one SQL model, gives small tables for the relations it reads (raw datasets,
staging or intermediate models), and compares what the model returns with rows written by hand.
The model runs in an in-memory DuckDB holding every view of the views file, over typed empty raw
datasets and the settings views of a configuration, exactly as the views file defines them; each
given relation replaces the view of that name by the given rows, cast to that view's own column
types, so a fixture states only the columns that matter and the rest are null.

A Python model (`python:` in its declaration) is run the same way by `run_python_model`: given
touchpoint rows, through the Beam pipeline the refresher runs, compared with rows by hand.

The declared grain of a model is read from its header (`-- grain: one row per (a, b)`), and
`grain_problems` checks rows against it: a unique, non-null key, and any declared identities.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import duckdb
import pyarrow as pa

from parcours.config import JourneyConfig, load_config
from parcours.refresh.declarations import Derived
from parcours.refresh.statistics import add_intervals
from parcours.warehouse import DATASETS, _create_models, _read_models, raw_view_sql, settings_views_sql
from parcours.warehouse.conventions import ALL, UNKNOWN, Conventions, render
from parcours.warehouse.views import FINALITY_VIEW, _time_views_sql

Rows = Sequence[Mapping[str, Any]]
_GRAIN = re.compile(r"^--\s*grain:\s*one row per\s*(?:\((?P<many>[^)]*)\)|(?P<one>[A-Za-z_][A-Za-z0-9_]*))", re.M)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def model_connection(
    config: JourneyConfig | None = None, finality_point: datetime | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with every view of the views file over empty raw datasets, and the
    finality point `finality_point` (none: nothing landed yet)."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    for spec in DATASETS.values():
        con.execute(raw_view_sql(con, spec, []))
    for statement in settings_views_sql((config or load_config()).settings_record()):
        con.execute(statement)
    for statement in _time_views_sql(None):
        con.execute(statement)
    if finality_point is not None:
        point = f"cast('{finality_point.astimezone(UTC).isoformat()}' as TIMESTAMPTZ)"
        con.execute(
            f"create or replace view {FINALITY_VIEW} as select {point} as watermark, {point} as finality_point, "
            f"{point} as evaluated_at"
        )
    _create_models(con, _read_models(resources.files("parcours.sql")))
    return con


def give(con: duckdb.DuckDBPyConnection, relation: str, rows: Rows) -> None:
    """Replace the view `relation` by `rows`, with the view's own column types."""
    columns = con.execute(f"describe select * from {_quote(relation)}").fetchall()
    names = [name for name, *_ in columns]
    unknown = sorted({key for row in rows for key in row} - set(names))
    if unknown:
        raise ValueError(f"given rows of {relation} have columns it does not have: {unknown} (it has {names})")
    table = f"given_{relation}"
    con.execute(
        f"create or replace temp table {_quote(table)} ("
        + ", ".join(f"{_quote(name)} {kind}" for name, kind, *_ in columns)
        + ")"
    )
    if rows:
        con.executemany(
            f"insert into {_quote(table)} values ({', '.join('?' * len(names))})",
            [[row.get(name) for name in names] for row in rows],
        )
    con.execute(f"create or replace view {_quote(relation)} as select * from {_quote(table)}")


def run_model(
    model: str,
    given: Mapping[str, Rows],
    *,
    config: JourneyConfig | None = None,
    columns: Iterable[str] | None = None,
    order_by: str | None = None,
    finality_point: datetime | None = None,
) -> list[dict[str, Any]]:
    """The rows `model` returns when the relations it reads hold `given`, at `finality_point`."""
    con = model_connection(config, finality_point)
    try:
        for relation, rows in given.items():
            give(con, relation, rows)
        wanted = ", ".join(_quote(c) for c in columns) if columns else "*"
        query = f"select {wanted} from {_quote(model)}" + (f" order by {order_by}" if order_by else "")
        table = con.sql(query).to_arrow_table()
        # The model of a dataset with declared intervals: its rows as the refresher lands them.
        intervals = _declared_intervals(model)
        if intervals and columns is None:
            table = add_intervals(table, intervals)
        return [_plain(row) for row in table.to_pylist()]
    finally:
        con.close()


def _declared_intervals(model: str) -> tuple[tuple[str, str, str], ...]:
    from parcours.refresh.declarations import declarations

    return next((d.intervals for d in declarations() if d.model == model), ())


def run_sql(
    sql: str,
    given: Mapping[str, Rows],
    *,
    conventions: Conventions | None = None,
    config: JourneyConfig | None = None,
    order_by: str | None = None,
    finality_point: datetime | None = None,
) -> list[dict[str, Any]]:
    """The rows of a model's text `sql` that is not in the package (a fixture of a convention),
    its placeholders expanded from `conventions` as the registry expands a declared model's."""
    text = render(sql, conventions or Conventions(), "the fixture's model")
    con = model_connection(config, finality_point)
    try:
        for relation, rows in given.items():
            give(con, relation, rows)
        query = f"select * from ({text}) as model" + (f" order by {order_by}" if order_by else "")
        return [_plain(row) for row in con.sql(query).to_arrow_table().to_pylist()]
    finally:
        con.close()


def run_python_model(
    dataset: str,
    events: pa.Table,
    arguments: tuple[Any, ...],
    staging: Any,
    beam_args: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The rows the declared Python model of `dataset` returns over `events` (touchpoint rows with
    the ingestion's derived columns), run as the refresher runs it: a Beam pipeline over Parquet
    shards of whole customers (`parcours.refresh.beam_models`), on the runner `beam_args` name."""
    from parcours.refresh.beam_models import run_model as run_beam_model
    from parcours.refresh.declarations import by_name, load_python

    derived = by_name()[dataset]
    schema = DATASETS[dataset].arrow_schema
    con = duckdb.connect()
    try:
        con.register("given_events", events)
        rows = run_beam_model(
            con,
            "select * from given_events",
            load_python(derived),
            arguments,
            schema.remove(schema.get_field_index("batch_seq")),
            staging,
            beam_args,
        )
    finally:
        con.close()
    return [_plain(row) for row in rows.sort_by([(c, "ascending") for c in derived.grain]).to_pylist()]


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Timestamps in UTC, so expected rows can be written with `tzinfo=UTC`."""
    return {k: v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo else v for k, v in row.items()}


def declared_grain(model: str) -> tuple[str, ...]:
    """The key of the model's `-- grain:` header line."""
    for layer in ("staging", "intermediate", "marts"):
        path = resources.files("parcours.sql").joinpath(layer, f"{model}.sql")
        if path.is_file():
            match = _GRAIN.search(path.read_text("utf-8"))
            if match is None:
                raise ValueError(f"{layer}/{model}.sql declares no grain")
            key = match.group("many") or match.group("one")
            return tuple(part.strip() for part in key.split(","))
    raise ValueError(f"no SQL model named {model}")


def grain_problems(
    rows: pa.Table | Rows,
    grain: Sequence[str],
    *,
    not_null: Sequence[str] = (),
    identities: Sequence[str] = (),
    nullable: Sequence[str] = (),
    conventions: Conventions | None = None,
) -> list[str]:
    """What breaks the grain: duplicate keys, null keys (but in the `nullable` key columns, where
    a null is a value of its own) or required columns, false identities (SQL boolean expressions
    over one row, e.g. `n_entered = n_moved_on + n_dropped`, or a window over the rows), and what breaks the declared
    `conventions` (`convention_problems`)."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
    if table.num_rows == 0:
        return []
    con = duckdb.connect()
    try:
        con.register("checked", table)
        key = ", ".join(_quote(c) for c in grain)
        problems = [
            f"{n} rows share the key ({key}) = {values}"
            for *values, n in con.execute(
                f"select {key}, count(*) from checked group by all having count(*) > 1 order by all limit 5"
            ).fetchall()
        ]
        for column in (*(c for c in grain if c not in nullable), *not_null):
            (nulls,) = con.execute(f"select count(*) from checked where {_quote(column)} is null").fetchone()
            if nulls:
                problems.append(f"{nulls} rows have no {column}")
        for identity in identities:
            # In the select list, so an identity may be a window over rows (each step's edges
            # adding up to the journeys at it: `sum(n) over (partition by step) = n_at_step`).
            (false,) = con.execute(
                f"select count(*) from (select ({identity}) as holds from checked) where not holds"
            ).fetchone()
            if false:
                problems.append(f"{false} rows break {identity}")
        if conventions is not None and conventions.grouping_sets:
            problems += convention_problems(con, conventions)
        return problems
    finally:
        con.close()


def dataset_problems(rows: pa.Table | Rows, derived: Derived) -> list[str]:
    """What breaks anything `derived`'s declaration says of its rows."""
    return grain_problems(
        rows,
        derived.grain,
        not_null=derived.not_null,
        identities=derived.identities,
        nullable=derived.nullable,
        conventions=derived.conventions,
    )


def convention_problems(con: duckdb.DuckDBPyConnection, conventions: Conventions) -> list[str]:
    """Rolled-up rows (in `checked`) that break the conventions: a breakdown not declared, a
    dimension reading `all` where its breakdown breaks it out (or not reading it where it is
    rolled up), a null dimension, an `additive` total that differs between breakdowns."""
    problems = []
    declared = dict(zip(conventions.breakdowns, conventions.grouping_sets, strict=True))
    for (breakdown,) in con.execute("select distinct breakdown from checked order by 1").fetchall():
        if breakdown not in declared:
            problems.append(f"breakdown {breakdown!r} is not declared ({list(declared)})")
            continue
        for d in conventions.broken_out:
            rolled_up = d not in declared[breakdown]
            wrong = f"{_quote(d)} is distinct from '{ALL}'" if rolled_up else f"{_quote(d)} = '{ALL}'"
            (n,) = con.execute(f"select count(*) from checked where breakdown = ? and {wrong}", [breakdown]).fetchone()
            if n:
                problems.append(f"{n} rows of breakdown {breakdown!r} have {d} {'not ' if rolled_up else ''}{ALL!r}")
    for d in conventions.broken_out:
        (n,) = con.execute(f"select count(*) from checked where {_quote(d)} is null").fetchone()
        if n:
            problems.append(f"{n} rows have a null {d} (a real null reads {UNKNOWN!r})")
    period = [_quote(conventions.period.column)] if conventions.period else []
    for column in conventions.additive:
        by = ", ".join([*period, "breakdown"])
        totals = f"select {by}, sum({_quote(column)}) as total from checked group by {by}"
        rows = con.execute(
            f"select {', '.join([*period, 'count(distinct total)'])} from ({totals}) "
            + (f"group by {period[0]} " if period else "")
            + "having count(distinct total) > 1 limit 5"
        ).fetchall()
        for row in rows:
            problems.append(f"the total of {column} differs between breakdowns" + (f" in {row[0]}" if period else ""))
    return problems
