"""What the pipeline needs to know of already-landed data, read from published Parquet.

Two look-ups, both restricted to the customers or ids of one shard of one micro-batch:
* the ids already landed within the lateness horizon, with their payload hash, so a re-sent
  event is skipped as a duplicate and a different payload under the same id is a conflict;
* for each touched customer, its current events from the earliest new event onwards (they are
  recomputed with the new ones) and the latest current event before it (the session and
  cycle the new events continue).

The "current version" rule is the staging model `stg_parcours__touchpoints.sql`, run here on
an in-memory DuckDB over the same files the views read, so the pipeline and the views cannot
disagree on it. Only files listed in committed manifests are read: a crashed batch's files are
invisible here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from importlib import resources

import duckdb
import pyarrow as pa


def _staging_sql(name: str) -> str:
    return resources.files("parcours.sql").joinpath("staging", f"{name}.sql").read_text("utf-8")


@dataclass(frozen=True)
class PublishedFiles:
    """Absolute paths of the committed Parquet files of each dataset, captured by the driver."""

    touchpoints: tuple[str, ...] = ()
    survey_answers: tuple[str, ...] = ()
    rewrites: tuple[str, ...] = ()


class LandedState:
    """An in-memory DuckDB over the published files; one per DoFn instance (opened in setup)."""

    def __init__(self, files: PublishedFiles) -> None:
        from parcours.warehouse import DATASETS, raw_view_sql

        self._con = duckdb.connect()
        self._con.execute("set threads = 1")  # Beam gives parallelism; one thread per worker
        for name, paths in (
            ("touchpoints", files.touchpoints),
            ("survey_answers", files.survey_answers),
            ("rewrites", files.rewrites),
        ):
            self._con.execute(raw_view_sql(self._con, DATASETS[name], list(paths), temporary=True))
        self._con.execute(
            "create temp view current_touchpoints as " + _staging_sql("stg_parcours__touchpoints").rstrip().rstrip(";")
        )

    def landed_touchpoint_hashes(self, event_ids: pa.Array, horizon: date | None) -> pa.Table:
        """(event_id, payload_hash) of current events among `event_ids`, from `horizon` on."""
        return self._query_ids(
            "select c.event_id, c.payload_hash from current_touchpoints c semi join ids using (event_id) "
            "where $horizon is null or c.event_date >= $horizon",
            pa.table({"event_id": event_ids}),
            {"horizon": horizon},
        )

    def landed_survey_hashes(self, response_ids: pa.Array, horizon: date | None) -> pa.Table:
        return self._query_ids(
            "select s.response_id, s.payload_hash from raw_survey_answers s semi join ids using (response_id) "
            "where $horizon is null or s.answered_date >= $horizon",
            pa.table({"response_id": response_ids}),
            {"horizon": horizon},
        )

    def _query_ids(self, sql: str, ids: pa.Table, parameters: dict) -> pa.Table:
        self._con.register("ids", ids)
        try:
            return self._con.sql(sql, params=parameters).to_arrow_table()
        finally:
            self._con.unregister("ids")

    def customer_history(self, earliest_new: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(prior, context) for customers in `earliest_new` (customer_id, min_at).

        prior: their current events at or after min_at (to recompute with the new events);
        context: per customer, the latest current event before min_at (the state columns only).

        One pass over a few narrow columns finds both; the wide rows are fetched only for the
        customers that have prior events, which only late, out-of-order events cause.
        """
        self._con.register("earliest_new", earliest_new)
        try:
            self._con.execute(
                "create or replace temp table touched as "
                "select c.customer_id, c.event_id, c.occurred_at, c.event_date, c.occurred_at >= n.min_at as is_prior, "
                "c.session_id, c.session_started_at, c.journey_cycle, c.cycle_type, c.step_index, c.outcome "
                "from current_touchpoints c join earliest_new n using (customer_id)"
            )
            context = self._con.sql(
                "select * exclude (is_prior, event_date) from touched where not is_prior "
                "qualify row_number() over (partition by customer_id order by occurred_at desc, event_id desc) = 1"
            ).to_arrow_table()
            prior = self._con.sql(
                "select c.* exclude (event_date) from current_touchpoints c "
                "semi join (select event_id from touched where is_prior) p using (event_id) "
                "where c.event_date >= "
                "(select coalesce(min(event_date), date '9999-12-31') from touched where is_prior)"
            ).to_arrow_table()
        finally:
            self._con.unregister("earliest_new")
        return prior, context

    def close(self) -> None:
        self._con.close()
