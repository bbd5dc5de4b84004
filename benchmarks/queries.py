"""Latency of typical BI queries on the published views, from a separate read-only process.

    .venv/bin/python benchmarks/queries.py --warehouse warehouse --repeat 20 [--compact]

Opens `parcours.duckdb` read-only in a fresh process, as Metabase or Superset would, runs each
query `--repeat` times after one warm-up, and prints p50 / p95 in milliseconds, with the number
of Parquet files the views read (the live files of the manifests) and of rows in the mart
datasets. Each `<query>_rollup` asks `<query>`'s question of the rollups the marts refresh lands
(`sessions_daily`, `journey_stages_weekly`, `transitions`, `transitions_summary`...) and is
checked to return exactly its rows; each `<query>_asof` asks it of the survey attachment
computed at query time (the model
`int_survey_answers_attached` as a view, an ASOF join over every touchpoint: what the
`survey_answers` mart did before `survey_attachments` was materialised), checked the same way.
With `--compact`, it then compacts the warehouse (`parcours compact`, which changes
it: run it on a copy to keep the original) and measures again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

QUERIES = {
    # On the entity-grain marts: one row per session, journey, touchpoint.
    "sessions_per_day_and_channel": """
        select started_date, channel, count(*) as n_sessions
        from sessions, unnest(channels) as c(channel)
        group by all order by all""",
    "journeys_reaching_each_stage_per_week": """
        select cast(date_trunc('week', timezone('UTC', started_at)) as date) as week, stage, count(*) as n_journeys
        from journeys, unnest(list_distinct(stage_path)) as s(stage)
        group by all order by all""",
    "top_paths": """
        select path[1:6] as first_steps, count(*) as n_journeys
        from journeys group by 1 order by 2 desc, 1 limit 20""",
    "dead_letters_by_reason": """
        select reason, count(*) as n from dead_letters group by 1 order by 2 desc""",
    "touchpoints_per_stage_and_channel": """
        select stage, channel, count(*) as n from touchpoints group by all order by all""",
    # The report's survey question, by segment as of the answer: on the materialised attachment.
    "survey_scores_per_stage_and_segment": """
        select survey, stage, segment, count(*) as n, avg(score) as mean_score
        from survey_answers group by all order by all""",
    # The directly-follows graph, on the step-grain mart (one row per step of a customer's path).
    "steps_per_pair": """
        select from_touchpoint, to_touchpoint, count(*) as n_transitions
        from customer_transitions group by all order by all""",
    "steps_customers_and_median_gap_per_pair": """
        select from_touchpoint, to_touchpoint, count(*) as n_transitions,
            count(distinct customer_id) as n_customers, median(gap_in_s) as median_gap_in_s
        from customer_transitions group by all order by all""",
    "steps_customers_and_median_gap_per_segment_and_pair": """
        select coalesce(segment, 'unknown') as segment, from_touchpoint, to_touchpoint, count(*) as n_transitions,
            count(distinct customer_id) as n_customers, median(gap_in_s) as median_gap_in_s
        from customer_transitions group by all order by all""",
    # Funnels, from the customers' own rows (one row per customer and funnel): per step, the
    # customers whose best attempt reached it, overall and per week of entry and segment.
    "funnel_reached_per_step": """
        select funnel, k as step_index, count(*) as n_reached
        from customer_funnels, unnest(range(1, best_step + 1)) as s(k)
        where not is_excluded group by all order by all""",
    "funnel_reached_per_week_segment_and_step": """
        select funnel, cast(date_trunc('week', timezone('UTC', entered_at)) as date) as week,
            coalesce(segment, 'unknown') as segment, k as step_index, count(*) as n_reached
        from customer_funnels, unnest(range(1, best_step + 1)) as s(k)
        where not is_excluded group by all order by all""",
    # Paths: read as they land (no entity twin: the ended cycles are judged at the finality point).
    "top_path_variants": """
        select cycle_type, variant, n_journeys, share, share_low, share_high
        from paths order by n_journeys desc, cycle_type, variant limit 20""",
    "sankey_of_the_first_anchor": """
        select step, source, target, n_journeys from path_edges
        where anchor = (select min(anchor) from path_edges) order by all""",
    "step_matrix_of_the_first_anchor": """
        select step, touchpoint, share from path_step_matrix
        where anchor = (select min(anchor) from path_step_matrix) order by all""",
    # The same questions on the rollups the marts refresh lands (one row per day or week and
    # dimensions): each must return exactly the rows of its twin above, which the runner checks.
    "sessions_per_day_and_channel_rollup": """
        select started_date, channel, sum(n_sessions) as n_sessions
        from sessions_daily group by all order by all""",
    "journeys_reaching_each_stage_per_week_rollup": """
        select started_week as week, stage, sum(n_journeys) as n_journeys
        from journey_stages_weekly group by all order by all""",
    "top_paths_rollup": """
        select first_steps, sum(n_journeys) as n_journeys
        from journey_paths_weekly group by 1 order by 2 desc, 1 limit 20""",
    "touchpoints_per_stage_and_channel_rollup": """
        select stage, channel, sum(n_events) as n
        from touchpoints_daily group by all order by all""",
    "steps_per_pair_rollup": """
        select from_touchpoint, to_touchpoint, sum(n_transitions) as n_transitions
        from transitions group by all order by all""",
    # (A step no customer of the group reached has a row of 0 here, none in its twin.)
    "funnel_reached_per_step_rollup": """
        select funnel, step_index, sum(n_reached) as n_reached
        from funnel_steps where breakdown = 'overall' group by all having sum(n_reached) > 0 order by all""",
    "funnel_reached_per_week_segment_and_step_rollup": """
        select funnel, period_start as week, segment, step_index, sum(n_reached) as n_reached
        from funnel_steps where breakdown = 'segment' group by all having sum(n_reached) > 0 order by all""",
    # Over all time, from the summary's rows: distinct customers and medians are not sums.
    "steps_customers_and_median_gap_per_pair_rollup": """
        select from_touchpoint, to_touchpoint, n_transitions, n_customers, median_gap_in_s
        from transitions_summary where breakdown = 'overall' order by all""",
    "steps_customers_and_median_gap_per_segment_and_pair_rollup": """
        select segment, from_touchpoint, to_touchpoint, n_transitions, n_customers, median_gap_in_s
        from transitions_summary where breakdown = 'segment' order by all""",
    # The same question with the attachment computed at query time (the baseline).
    "survey_scores_per_stage_and_segment_asof": """
        select a.survey, coalesce(a.stage, m.stage) as stage, m.segment, count(*) as n, avg(a.score) as mean_score
        from stg_parcours__survey_answers a left join int_survey_answers_attached m using (response_id)
        group by all order by all""",
}
# A query named X_rollup answers X from a rollup, X_asof from the attachment at query time.
TWINS = ("_rollup", "_asof")

RUNNER = """
import json, sys, time, statistics, duckdb
db, repeat, queries, twins = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
con = duckdb.connect(db, read_only=True)
con.execute("set enable_progress_bar = false")
out, rows = {}, {}
for name, sql in queries.items():
    rows[name] = con.execute(sql).fetchall()  # warm-up: metadata and file footers cached, as in a BI session
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        con.execute(sql).fetchall()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    out[name] = {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1)}
    for twin in twins:
        if name.endswith(twin):
            out[name]["same_rows"] = rows[name] == rows[name.removesuffix(twin)]
print(json.dumps(out))
"""


def measure(warehouse: Path, repeat: int, only: str = "") -> dict:
    from parcours.warehouse import DATASETS, Warehouse

    queries = {name: sql for name, sql in QUERIES.items() if only in name}

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            RUNNER,
            str(warehouse / "parcours.duckdb"),
            str(repeat),
            json.dumps(queries),
            json.dumps(TWINS),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    wh = Warehouse(warehouse)
    live = {name: wh.live_files(name) for name in DATASETS}
    return {
        "files": sum(len(files) for files in live.values()),
        "files_on_disk": len(list((warehouse / "data").rglob("*.parquet"))),
        "rows": {
            name: sum(f.rows for f in live[name])
            for name in ("sessions", "journeys", "survey_answers", "survey_attachments", "refreshes")
        },
        "queries": json.loads(result.stdout.strip().splitlines()[-1]),
    }


def show(title: str, measured: dict) -> None:
    rows = ", ".join(f"{name} {n:,}" for name, n in measured["rows"].items())
    print(f"{title}: {measured['files']} Parquet files read by the views ({measured['files_on_disk']} on disk)")
    print(f"  mart dataset rows: {rows}")
    print(f"{'query':<60} {'p50 ms':>8} {'p95 ms':>8}  rows")
    for name, value in measured["queries"].items():
        same = {True: "same as on the marts", False: "DIFFER from the marts"}.get(value.get("same_rows"), "")
        print(f"{name:<60} {value['p50_ms']:>8} {value['p95_ms']:>8}  {same}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--compact", action="store_true", help="compact the warehouse, then measure again")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", default="", help="the queries whose name contains this (a query and its twins)")
    args = parser.parse_args(argv)
    out = measure(args.warehouse, args.repeat, args.only)
    show("as landed" if args.compact else "views", out)
    if args.compact:
        from parcours.compact import compact
        from parcours.warehouse import Warehouse

        wh = Warehouse(args.warehouse)
        started = time.perf_counter()
        with wh.lock():
            report = compact(wh)
        seconds = time.perf_counter() - started
        dropped = sum(report.rows_dropped.values())
        print(f"\ncompacted in {seconds:.1f} s: {dropped:,} superseded rows dropped\n")
        again = measure(args.warehouse, args.repeat, args.only)
        out["after_compaction"] = again | {"compaction_seconds": round(seconds, 1)}
        show("after compaction", out["after_compaction"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
