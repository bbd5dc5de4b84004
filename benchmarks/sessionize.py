"""The sessionize + journey step against two baselines, on the same events, in one run.

    .venv/bin/python benchmarks/sessionize.py --data DIR --events 1000000 --beam-events 1000000

* parcours: `assign_sessions`, `resolve_stages` and `assign_cycles` on one Arrow table (what
  the Sessionize and AssignJourneys transforms run inside their DoFns);
* DuckDB SQL: the same sessions and cycles with window functions (the gap rule only: the
  maximum duration needs a recursive walk SQL windows cannot express; on this data no session
  reaches it, and the session counts printed side by side show it);
* Beam per event: one element per event through `Sessions` windows and a GroupByKey, the way
  the Beam examples sessionize (note Beam splits two events exactly one gap apart).

Prints events/s of each and the ratios. Nothing is asserted here.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
from report import report  # benchmarks/report.py: scripts run from this folder

from parcours.config import load_config
from parcours.pipelines.cycles import assign_cycles
from parcours.pipelines.journeys import cycle_rules, resolve_stages
from parcours.pipelines.sessionize import assign_sessions

SQL_BASELINE = """
with events as (
    select *, epoch_us(occurred_at) as t_us from events_table
),
gaps as (
    select *,
        coalesce(t_us - lag(t_us) over by_customer > $gap_us, true) as starts_session,
        coalesce(outcome in ('purchase', 'renewal') or list_contains($churn, outcome), false) as ends_cycle
    from events
    window by_customer as (partition by customer_id order by t_us, event_id)
),
numbered as (
    select *,
        sum(starts_session::int) over by_customer as session_number,
        coalesce(sum(ends_cycle::int) over (
            partition by customer_id order by t_us, event_id rows between unbounded preceding and 1 preceding
        ), 0) as journey_cycle
    from gaps
    window by_customer as (partition by customer_id order by t_us, event_id)
),
final as (
    select
        numbered.* exclude (t_us, starts_session, ends_cycle),
        coalesce(numbered.stage, mapping.stage, 'unmapped') as resolved_stage,
        customer_id || '#' || session_number as session_id,
        row_number() over (partition by customer_id, journey_cycle order by t_us, event_id) as step_index
    from numbered left join mapping using (touchpoint)
)
select * from final
"""


def load_events(data: Path, limit: int) -> pa.Table:
    with duckdb.connect() as con:
        return con.sql(
            "select event_id, customer_id, occurred_at::timestamptz as occurred_at, touchpoint, stage, outcome "
            "from read_json($path, format = 'newline_delimited', columns = {event_id: 'VARCHAR', "
            "customer_id: 'VARCHAR', occurred_at: 'VARCHAR', touchpoint: 'VARCHAR', stage: 'VARCHAR', "
            "outcome: 'VARCHAR'}) limit $limit",
            params={"path": str(data / "touchpoints.jsonl"), "limit": limit},
        ).to_arrow_table()


def parcours_step(events: pa.Table, config) -> tuple[float, int]:
    started = time.perf_counter()
    sessions = assign_sessions(events, None, config.sessions.inactivity_gap, config.sessions.max_duration)
    sessions = sessions.append_column("stage_source", pa.nulls(sessions.num_rows, pa.string()))
    result = assign_cycles(resolve_stages(sessions, config), None, cycle_rules(config))
    elapsed = time.perf_counter() - started
    return elapsed, len(set(result.column("session_id").to_pylist()))


def sql_step(events: pa.Table, config, threads: int) -> tuple[float, int]:
    with duckdb.connect() as con:
        con.execute(f"set threads = {threads}")
        con.register("events_table", events)
        con.register(
            "mapping", pa.table({"touchpoint": list(config.touchpoints), "stage": list(config.touchpoints.values())})
        )
        started = time.perf_counter()
        result = con.sql(
            SQL_BASELINE,
            params={
                "gap_us": config.sessions.inactivity_gap // timedelta(microseconds=1),
                "churn": list(config.churn.outcomes),
            },
        ).to_arrow_table()
        elapsed = time.perf_counter() - started
    return elapsed, len(set(result.column("session_id").to_pylist()))


def _count_session(group) -> None:
    from apache_beam.metrics import Metrics

    Metrics.counter("baseline", "sessions").inc()


def beam_per_event_step(events: pa.Table, config) -> tuple[float, int]:
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.transforms import window

    rows = [
        (r["customer_id"], r["event_id"], r["occurred_at"].timestamp())
        for r in events.select(["customer_id", "event_id", "occurred_at"]).to_pylist()
    ]
    gap_s = config.sessions.inactivity_gap.total_seconds()
    started = time.perf_counter()
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    _ = (
        pipeline
        | "Events" >> beam.Create(rows)
        | "Timestamp" >> beam.Map(lambda r: window.TimestampedValue((r[0], r[1]), r[2]))
        | "Sessions" >> beam.WindowInto(window.Sessions(gap_s))
        | "GroupByCustomer" >> beam.GroupByKey()
        | "CountSessions" >> beam.Map(_count_session)
    )
    result = pipeline.run()
    result.wait_until_finish()
    elapsed = time.perf_counter() - started
    counters = result.metrics().query(MetricsFilter().with_name("sessions"))["counters"]
    return elapsed, sum(c.committed for c in counters)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a folder made by `parcours generate`")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--beam-events", type=int, default=1_000_000, help="0 skips the per-event Beam baseline")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    config = load_config()
    events = load_events(args.data, args.events)
    n = events.num_rows
    results: dict[str, object] = {"events": n}
    seconds, sessions = parcours_step(events, config)
    results |= {"parcours_events_per_s": round(n / seconds), "parcours_sessions": sessions}
    for threads in (1, 2):
        seconds, sql_sessions = sql_step(events, config, threads)
        results |= {f"duckdb_sql_{threads}t_events_per_s": round(n / seconds), "duckdb_sql_sessions": sql_sessions}
    results["parcours_vs_duckdb_sql_1t"] = round(
        results["parcours_events_per_s"] / results["duckdb_sql_1t_events_per_s"], 2
    )
    if args.beam_events:
        sample = events.slice(0, args.beam_events)
        seconds, beam_sessions = beam_per_event_step(sample, config)
        results |= {
            "beam_per_event_events": sample.num_rows,
            "beam_per_event_events_per_s": round(sample.num_rows / seconds),
            "beam_per_event_sessions": beam_sessions,
        }
        results["parcours_vs_beam_per_event"] = round(
            results["parcours_events_per_s"] / results["beam_per_event_events_per_s"], 1
        )
    report(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
