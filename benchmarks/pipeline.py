"""Throughput of the pipeline, Kafka -> published and queryable, against the raw consumer.

    .venv/bin/python benchmarks/pipeline.py --customers 18000 --days 90 --workers 2

Generates synthetic journeys (or reuses a folder of them), produces them to fresh topics on the
local broker, then measures in the same run, on the same data, each step in its own process
(wall time and that process tree's peak resident memory):

* raw: the consumer setup the pipeline uses (kafka-python, whole record batches unpacked by
  `parcours.kafka.records`), reading every message, in 1 process and in N processes over
  disjoint partitions: the ceiling; and kafka-python's own per-record path, for reference;
* pipeline: what `parcours run` does (validated, sessionized, landed, manifest committed, views
  rebuilt; then the sessions and journeys marts refreshed) with the default batch size, with 1
  worker and with N workers, timed inside the process (ingestion, and with the marts refresh)
  and as a whole command (interpreter start-up and imports included);
* backfill: `parcours run --from DIR` over the same files.

With `--baseline [NAME=]PYTHON` (the interpreter of another checkout, e.g. a git worktree of
`main` with its own virtual environment; repeatable), it measures a change instead: after
producing, only the pipeline runs, with 1 and N workers, alternating between those interpreters'
code and this one's (the order rotates every round), `--repeats` times each on the same topics,
each into a new warehouse; it reports each run, the medians and the ratio of the medians (this
code / each baseline).

It prints events/s and the ratios. Nothing is asserted: the numbers go to BENCHMARKS.md with
the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from report import report  # benchmarks/report.py: scripts run from this folder

RAW_CONSUMER = """
import sys, time
from kafka import TopicPartition
from parcours.kafka import KafkaSettings, make_consumer
from parcours.kafka.records import enable_batch_unpacking
settings = KafkaSettings.from_env()
groups, index, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
consumer = make_consumer(settings)
if mode == "chunks":  # the pipeline's setup: whole record batches
    assert enable_batch_unpacking(consumer)
tps = [TopicPartition(settings.topics[k], p) for k in ("touchpoints", "surveys") for p in range(4)][index::groups]
end = consumer.end_offsets(tps)
consumer.assign(tps)
consumer.seek_to_beginning(*tps)
n, started = 0, time.perf_counter()
while any(consumer.position(tp) < end[tp] for tp in tps):
    for tp, items in consumer.poll(timeout_ms=500, max_records=1000 if mode == "chunks" else 50_000).items():
        n += sum(len(c.offsets) for c in items) if mode == "chunks" else len(items)
print(n, time.perf_counter() - started)
"""

# The pipeline in one process as `parcours run` drives it, timed from inside: the ingestion
# (every micro-batch published and queryable) and the marts refresh that ends the run.
# The driver's own peak memory is also read when the refresh starts (every micro-batch landed): the
# micro-batches' share of the peak, apart from the refresh's, which covers everything the run touched.
PIPELINE = """
import json, resource, sys, time
import parcours.pipelines.run as run
from parcours.config import load_config
from parcours.kafka import KafkaSettings
from parcours.warehouse import Warehouse
peaks = {}
def catch_up(*args, **kwargs):
    peaks["before_refresh"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return refresh(*args, **kwargs)
refresh, run.catch_up = run.catch_up, catch_up
if __name__ == "__main__":
    warehouse = Warehouse(sys.argv[1])
    started = time.perf_counter()
    with warehouse.lock():
        ingestion = getattr(run, "Ingestion", None) or run.Runner  # a baseline from before the rename
        report = ingestion(warehouse, load_config(), workers=int(sys.argv[2])).run_kafka(KafkaSettings.from_env())
    total = time.perf_counter() - started
    marts = report.marts.seconds if report.marts else 0.0
    events = sum(b.total_consumed for b in report.batches)
    print(json.dumps({"events": events, "batches": len(report.batches), "seconds": total, "marts_seconds": marts,
                      "peak_before_refresh_mb": peaks.get("before_refresh", 0)}))
"""


# Every measured process starts in an empty folder: `python -c` and `-m` put the working
# directory first on sys.path, so started from a checkout, a baseline's interpreter would import
# that checkout's `parcours/` instead of its own.
NEUTRAL = tempfile.mkdtemp(prefix="parcours-bench-cwd-")


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB of the process and its reaped children, stdout) of a command."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True, cwd=NEUTRAL)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own rusage, unlike getrusage
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{err.read()[-3000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def measure_pipeline(python: str, warehouse: Path, workers: int, lines: int, env: dict[str, str]) -> dict:
    """One pipeline run into a new warehouse: events/s of its ingestion, its peak RSS."""
    _wall, peak, out = run_measured([python, "-c", PIPELINE, str(warehouse), str(workers)], env)
    inside = json.loads(out.strip().splitlines()[-1])
    assert inside["events"] == lines, (inside, lines)
    return {"events_per_s": lines / (inside["seconds"] - inside["marts_seconds"]), "peak_rss_mb": peak}


def compare(
    baselines: dict[str, str],
    python: str,
    work: Path,
    lines: int,
    worker_counts: list[int],
    repeats: int,
    env: dict[str, str],
) -> dict[str, object]:
    """Each baseline and this code alternated: the order rotates by one every round, so every
    code runs first, in the middle and last equally often over len(codes) rounds."""
    results: dict[str, object] = {}
    codes = [*baselines.items(), ("this", python)]
    for workers in worker_counts:
        runs: dict[str, list[float]] = {name: [] for name, _ in codes}
        peaks: dict[str, list[float]] = {name: [] for name, _ in codes}
        for round_ in range(repeats):
            shift = round_ % len(codes)
            for name, interpreter in codes[shift:] + codes[:shift]:
                warehouse = work / f"warehouse-{name}-{workers}w-{round_}"
                measured = measure_pipeline(interpreter, warehouse, workers, lines, env)
                runs[name].append(measured["events_per_s"])
                peaks[name].append(measured["peak_rss_mb"])
                print(f"{name}, {workers} worker(s), round {round_ + 1}: {measured}", file=sys.stderr, flush=True)
        for name, values in runs.items():
            results[f"pipeline_{workers}w_{name}_runs_events_per_s"] = [round(v) for v in values]
            results[f"pipeline_{workers}w_{name}_median_events_per_s"] = round(statistics.median(values))
            results[f"pipeline_{workers}w_{name}_peak_rss_mb"] = round(max(peaks[name]))
        for name in baselines:
            results[f"pipeline_{workers}w_this_vs_{name}"] = round(
                statistics.median(runs["this"]) / statistics.median(runs[name]), 3
            )
    return results


def _baselines(values: list[str]) -> dict[str, str]:
    """`--baseline PYTHON` or `--baseline NAME=PYTHON`, repeatable: name -> interpreter."""
    named: dict[str, str] = {}
    for index, value in enumerate(values):
        name, _, python = value.rpartition("=")
        named[name or ("baseline" if index == 0 else f"baseline{index + 1}")] = python
    return named


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=18_000, help="about 55 touchpoints each over 90 days")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workers", type=int, default=2, help="pipeline worker processes to compare with 1")
    parser.add_argument("--data", type=Path, help="reuse (or create) generated data in this folder")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--work", type=Path, help="keep the warehouses here (default: a new temporary folder)")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        help="compare with the code of this Python interpreter (another checkout); NAME=PYTHON to name it; repeatable",
    )
    parser.add_argument("--repeats", type=int, default=3, help="with --baseline: runs of each code, alternated")
    args = parser.parse_args(argv)

    python = sys.executable
    work = args.work or Path(tempfile.mkdtemp(prefix="parcours-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = args.data or work / "data"
    if not (data / "touchpoints.jsonl").exists():
        subprocess.run(
            [
                python,
                "-m",
                "parcours.cli",
                "generate",
                "--out",
                str(data),
                "--customers",
                str(args.customers),
                "--days",
                str(args.days),
                "--seed",
                str(args.seed),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    lines = sum(1 for name in ("touchpoints.jsonl", "surveys.jsonl") for _ in (data / name).open("rb"))
    env = {**os.environ, "PARCOURS_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:8]}.", "COLUMNS": "200"}
    results: dict[str, object] = {"events": lines, "workers": args.workers, "cpus": os.cpu_count()}

    wall, _, _ = run_measured([python, "-m", "parcours.cli", "produce", str(data)], env)
    results["produce_events_per_s"] = round(lines / wall)
    if args.baseline:
        results.update(
            compare(_baselines(args.baseline), python, work, lines, sorted({1, args.workers}), args.repeats, env)
        )
        report(results, args.json)
        return 0

    for mode in ("records", "chunks"):
        for processes in sorted({1, args.workers}):
            procs = [
                subprocess.Popen(
                    [python, "-c", RAW_CONSUMER, str(processes), str(i), mode],
                    env=env,
                    cwd=NEUTRAL,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for i in range(processes)
            ]
            outputs = [p.communicate()[0].split() for p in procs]
            n = sum(int(o[0]) for o in outputs)
            assert n == lines, (n, lines)
            name = "raw_consume" if mode == "chunks" else "kafka_python_records"
            results[f"{name}_{processes}p_events_per_s"] = round(n / max(float(o[1]) for o in outputs))

    for workers in sorted({1, args.workers}):
        warehouse = work / f"warehouse-kafka-{workers}"
        wall, peak, out = run_measured([python, "-c", PIPELINE, str(warehouse), str(workers)], env)
        inside = json.loads(out.strip().splitlines()[-1])
        assert inside["events"] == lines, (inside, lines)
        ingest = inside["seconds"] - inside["marts_seconds"]
        results[f"pipeline_{workers}w_events_per_s"] = round(lines / ingest)
        results[f"pipeline_{workers}w_with_marts_events_per_s"] = round(lines / inside["seconds"])
        results[f"pipeline_{workers}w_command_events_per_s"] = round(lines / wall)
        results[f"pipeline_{workers}w_batches"] = inside["batches"]
        results[f"pipeline_{workers}w_marts_refresh_s"] = round(inside["marts_seconds"], 2)
        results[f"pipeline_{workers}w_peak_rss_mb"] = round(peak)
        results[f"pipeline_{workers}w_peak_rss_before_refresh_mb"] = round(inside["peak_before_refresh_mb"])
    wall, peak, _ = run_measured(
        [python, "-m", "parcours.cli", "run", "--from", str(data), "--warehouse", str(work / "warehouse-files")], env
    )
    results["backfill_events_per_s"] = round(lines / wall)
    results["backfill_peak_rss_mb"] = round(peak)
    w = args.workers
    results[f"pipeline_{w}w_vs_raw_{w}p"] = round(
        results[f"pipeline_{w}w_events_per_s"] / results[f"raw_consume_{w}p_events_per_s"], 2
    )

    report(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
