"""What the pipeline needs to know of already-landed data, read from published Parquet.

One look-up, restricted to the customers of one shard of one micro-batch: for each touched
customer, its current events from the earliest new event onwards (they are recomputed with the
new ones) and the latest current event before it (the session and cycle the new events
continue). Whether an id has landed already is the id index's business (`deduplicate.py`).

The "current version" rules are the staging models `stg_parcours__touchpoints.sql` (an event's
latest version) and `stg_parcours__customer_state.sql` (a customer's latest state row), run here
on an in-memory DuckDB over the same files the views read, so the pipeline, the views and the
compaction cannot disagree on them. Only files listed in committed manifests are read: a
crashed batch's files are invisible here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class PublishedFiles:
    """Absolute paths of the committed Parquet files of each dataset, captured by the driver."""

    touchpoints: tuple[str, ...] = ()
    survey_answers: tuple[str, ...] = ()
    rewrites: tuple[str, ...] = ()
    customer_state: tuple[str, ...] = ()
    id_index: tuple[str, ...] = ()


def _empty_like_touchpoints(con: duckdb.DuckDBPyConnection) -> pa.Table:
    return con.sql("select * exclude (event_date) from raw_touchpoints limit 0").to_arrow_table()


def file_date(path: str) -> date | None:
    """The hive partition date of a published file (`.../event_date=2026-01-05/b...parquet`)."""
    for part in reversed(path.split("/")):
        if "=" in part:
            try:
                return date.fromisoformat(part.split("=", 1)[1])
            except ValueError:
                return None
    return None


class LandedState:
    """An in-memory DuckDB over the published files; one per DoFn instance (opened in setup).

    Look-ups choose their files by partition date in Python before DuckDB sees them, and read
    wide rows only for the few events they need: what a batch reads from history is a few narrow
    columns, not every column of every event ever landed.
    """

    def __init__(self, files: PublishedFiles, threads: int = 2, context_window: timedelta = timedelta(days=7)) -> None:
        from parcours.warehouse import DATASETS, model_sql, raw_view_sql

        self._raw_view_sql = raw_view_sql
        self._datasets = DATASETS
        self._con = duckdb.connect()
        self._con.execute(f"set threads = {int(threads)}")
        self._context_window = context_window
        self._touchpoint_files = list(files.touchpoints)
        self._con.execute(raw_view_sql(self._con, DATASETS["rewrites"], list(files.rewrites), temporary=True))
        self._con.execute(
            raw_view_sql(
                self._con,
                DATASETS["customer_state"],
                list(files.customer_state),
                temporary=True,
                name="landed_customer_state",
            )
        )
        self._current_sql = model_sql("staging", "stg_parcours__touchpoints")
        self._current_state_sql = model_sql("staging", "stg_parcours__customer_state")
        self._use_touchpoint_files(self._touchpoint_files)

    def _use_touchpoint_files(self, paths: list[str]) -> None:
        """Point `raw_touchpoints` (and so `current_touchpoints`) at a subset of the files."""
        self._con.execute(self._raw_view_sql(self._con, self._datasets["touchpoints"], paths, temporary=True))
        self._con.execute("create or replace temp view current_touchpoints as " + self._current_sql)

    def customer_history(self, earliest_new: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(prior, context) for customers in `earliest_new` (customer_id, min_at).

        prior: their current events at or after min_at (to recompute with the new events);
        context: per customer, the latest current event before min_at.

        For a customer whose new events all come after its latest landed one (the usual case),
        the context is its row in `customer_state` and there is no prior: nothing of the event
        history is read. Only customers with a late event are looked up in the events, first in
        the partitions of the last few days, then, for those not found there, in all of them.
        """
        self._con.register("earliest_new", earliest_new)
        try:
            # The staging model picks each customer's current row among that customer's rows only,
            # so it is run over the touched customers' rows: the same rows as over everyone's,
            # without ranking every customer ever landed.
            self._con.execute(
                "create or replace temp view raw_customer_state as "
                "select s.* from landed_customer_state s semi join earliest_new using (customer_id)"
            )
            self._con.execute("create or replace temp view current_customer_state as " + self._current_state_sql)
            self._con.execute(
                "create or replace temp table state as "
                "select s.* exclude (batch_date), s.occurred_at >= n.min_at as is_late "
                "from current_customer_state s join earliest_new n using (customer_id)"
            )
            context = self._con.sql("select * exclude (is_late, batch_seq) from state where not is_late")
            context = context.to_arrow_table()
            late = self._con.sql(
                "select n.* from earliest_new n semi join (select customer_id from state where is_late) l "
                "using (customer_id)"
            ).to_arrow_table()
        finally:
            self._con.unregister("earliest_new")
        if late.num_rows == 0:
            return _empty_like_touchpoints(self._con), context
        prior, late_context = self._history_of_late_customers(late)
        return prior, pa.concat_tables([context, late_context.select(context.column_names).cast(context.schema)])

    def _history_of_late_customers(self, late: pa.Table) -> tuple[pa.Table, pa.Table]:
        window_start = min(late.column("min_at").to_pylist()).date() - self._context_window
        recent = [p for p in self._touchpoint_files if (file_date(p) or date.max) >= window_start]
        prior, context = self._scan_history(late, recent)
        missing = pc.invert(pc.is_in(late.column("customer_id"), value_set=context.column("customer_id")))
        if pc.any(missing).as_py():
            # Their previous event is older than the window (or they have none): look everywhere.
            # (Their prior events, at or after min_at, were all within the window already.)
            _, older_context = self._scan_history(late.filter(missing), self._touchpoint_files)
            context = pa.concat_tables([context, older_context])
        return prior, context

    def _scan_history(self, customers: pa.Table, paths: list[str]) -> tuple[pa.Table, pa.Table]:
        """A narrow pass picks the events needed; wide rows come only from those events' dates."""
        self._use_touchpoint_files(paths)
        self._con.register("earliest_new", customers)
        try:
            self._con.execute(
                "create or replace temp table needed as "
                "with touched as ("
                "  select c.customer_id, c.event_id, c.batch_seq, c.event_date, c.occurred_at, "
                "         c.occurred_at >= n.min_at as is_prior "
                "  from current_touchpoints c join earliest_new n using (customer_id)"
                "), context as ("
                "  select * from touched where not is_prior "
                "  qualify row_number() over (partition by customer_id order by occurred_at desc, event_id desc) = 1"
                ") "
                "select * from context union all select * from touched where is_prior"
            )
            dates = {row[0] for row in self._con.execute("select distinct event_date from needed").fetchall()}
            self._use_touchpoint_files([p for p in self._touchpoint_files if file_date(p) in dates])
            rows = self._con.sql(
                "select r.* exclude (event_date), n.is_prior from raw_touchpoints r "
                "join needed n using (event_id, batch_seq)"
            ).to_arrow_table()
        finally:
            self._con.unregister("earliest_new")
            self._use_touchpoint_files(self._touchpoint_files)
        is_prior = rows.column("is_prior")
        rows = rows.drop_columns(["is_prior"])
        return rows.filter(is_prior), rows.filter(pc.invert(is_prior))

    def close(self) -> None:
        self._con.close()
