"""Read-only access to the published DuckDB views, as any BI tool has it.

The report never reads Parquet, manifests or the pipeline's internals: only the views of
`parcours.duckdb`, opened read-only. Views that later analytics bring (`path_edges`,
`funnel_steps`, `scorecards`…) may not exist yet in a given warehouse, so every reader first
asks `exists` and a section says plainly which view is missing or empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb


@dataclass(frozen=True, slots=True)
class Filters:
    """What the reader asked to see. Each applies only to the views that carry its dimension;
    the other charts say "all segments" or "all time" in their subtitle."""

    segment: str | None = None
    since: date | None = None
    until: date | None = None

    @property
    def has_period(self) -> bool:
        return self.since is not None or self.until is not None


@dataclass(frozen=True, slots=True)
class Applied:
    """A `where` clause with its parameters, and which filters it honoured (for the subtitle)."""

    sql: str
    params: list[Any]
    segment: bool
    period: bool


# Views that cost a join over every touchpoint on each query: the columns the report reads are
# copied once into a temporary table of the read-only connection, which every section then reads.
# None since the survey attachment is materialised (`survey_attachments`): `survey_answers` reads
# its rows, and its `segment` (as of the answer) takes the segment filter like any other view.
READ_ONCE: dict[str, list[str]] = {}


class Views:
    """A read-only connection to the views file, with the few questions the sections ask."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.con = duckdb.connect(str(db_path), read_only=True)
        self.con.execute("set enable_progress_bar = false")
        rows = self.con.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'main' order by table_name, ordinal_position"
        ).fetchall()
        self._columns: dict[str, list[str]] = {}
        self._ingestion: dict[str, tuple[datetime | None, int]] = {}
        self._copied: set[str] = set()
        for table, column in rows:
            self._columns.setdefault(table, []).append(column)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Views:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exists(self, view: str) -> bool:
        return view in self._columns

    def columns(self, view: str) -> list[str]:
        return self._columns.get(view, [])

    def has(self, view: str, *columns: str) -> bool:
        return all(c in self._columns.get(view, []) for c in columns)

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        return self.con.execute(sql, params or []).fetchall()

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        row = self.con.execute(sql, params or []).fetchone()
        return row[0] if row else None

    def count(self, view: str) -> int:
        return int(self.scalar(f'select count(*) from "{view}"'))

    def where(
        self, view: str, filters: Filters, *, date_column: str | None, segment_column: str = "segment"
    ) -> Applied:
        """The filters `view` can honour: the segment when it has `segment_column`, the period
        on `date_column` (a DATE or a TIMESTAMPTZ, compared by its UTC date) when given."""
        clauses: list[str] = []
        params: list[Any] = []
        segment = filters.segment is not None and self.has(view, segment_column)
        if segment:
            clauses.append(f'"{segment_column}" = ?')
            params.append(filters.segment)
        period = filters.has_period and date_column is not None and self.has(view, date_column)
        if period:
            day = f"cast(timezone('UTC', \"{date_column}\") as DATE)"
            if self._is_date(view, date_column):
                day = f'"{date_column}"'
            if filters.since is not None:
                clauses.append(f"{day} >= ?")
                params.append(filters.since)
            if filters.until is not None:
                clauses.append(f"{day} <= ?")
                params.append(filters.until)
        sql = (" where " + " and ".join(clauses)) if clauses else ""
        return Applied(sql, params, segment, period)

    def _is_date(self, view: str, column: str) -> bool:
        kind = self.scalar(
            "select data_type from information_schema.columns where table_name = ? and column_name = ?",
            [view, column],
        )
        return kind == "DATE"

    def source(self, view: str) -> str:
        """What to select from for `view`: the view itself, or its read-once copy."""
        if view not in READ_ONCE or not self.has(view, *READ_ONCE[view]):
            return f'"{view}"'
        local = f'"report_{view}"'
        if view not in self._copied:
            columns = ", ".join(f'"{c}"' for c in READ_ONCE[view])
            self.con.execute(f'create temp table {local} as select {columns} from "{view}"')
            self._copied.add(view)
        return local

    def ingestion(self, view: str) -> tuple[datetime | None, int]:
        """The latest `ingested_at` of `view` and its row count, read once per report."""
        if view not in self._ingestion:
            latest, n = self.con.execute(f"select max(ingested_at), count(*) from {self.source(view)}").fetchone()
            self._ingestion[view] = (latest, int(n))
        return self._ingestion[view]

    def built_at(self) -> datetime | None:
        if not self.exists("parcours_meta"):
            return None
        return self.scalar("select built_at from parcours_meta")

    def as_of(self, view: str) -> tuple[datetime | None, str]:
        """When `view`'s data was as of, and where that comes from: `parcours_datasets` once
        the core declares datasets, else the build time of the views file."""
        if self.has("parcours_datasets", "name", "as_of"):
            value = self.scalar("select max(as_of) from parcours_datasets where name = ?", [view])
            if value is not None:
                return value, "parcours_datasets"
        return self.built_at(), "parcours_meta"
