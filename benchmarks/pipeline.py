"""Throughput of the pipeline, Kafka -> published and queryable, against the raw consumer.

    .venv/bin/python benchmarks/pipeline.py --customers 18000 --days 90 --workers 2

Generates synthetic journeys (or reuses a folder of them), produces them to fresh topics on the
local broker, then measures in the same run, on the same data, each step in its own process
(wall time and that process tree's peak resident memory):

* raw: the same kafka-python consumer setup the pipeline uses, reading every message, in 1
  process and in N processes over disjoint partitions: the ceiling;
* pipeline: `parcours run` (validated, sessionized, landed, manifest committed, views rebuilt)
  with the default batch size, with 1 worker and with N workers;
* backfill: `parcours run --from DIR` over the same files.

It prints events/s and the ratios. Nothing is asserted: the numbers go to BENCHMARKS.md with
the machine they were measured on.
"""

from __future__ import annotations

import argparse
import os
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
settings = KafkaSettings.from_env()
groups, index = int(sys.argv[1]), int(sys.argv[2])
consumer = make_consumer(settings)
tps = [TopicPartition(settings.topics[k], p) for k in ("touchpoints", "surveys") for p in range(4)][index::groups]
end = consumer.end_offsets(tps)
consumer.assign(tps)
consumer.seek_to_beginning(*tps)
remaining = {tp for tp in tps if end[tp] > 0}
n, started = 0, time.perf_counter()
while remaining:
    for tp, records in consumer.poll(timeout_ms=500, max_records=50_000).items():
        n += len(records)
        if records and records[-1].offset + 1 >= end[tp]:
            remaining.discard(tp)
print(n, time.perf_counter() - started)
"""


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB of the process and its reaped children, stdout) of a command."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own rusage, unlike getrusage
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{err.read()[-3000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=18_000, help="about 55 touchpoints each over 90 days")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workers", type=int, default=2, help="pipeline worker processes to compare with 1")
    parser.add_argument("--data", type=Path, help="reuse (or create) generated data in this folder")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="parcours-bench-"))
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

    for processes in sorted({1, args.workers}):
        procs = [
            subprocess.Popen(
                [python, "-c", RAW_CONSUMER, str(processes), str(i)], env=env, stdout=subprocess.PIPE, text=True
            )
            for i in range(processes)
        ]
        outputs = [p.communicate()[0].split() for p in procs]
        n = sum(int(o[0]) for o in outputs)
        assert n == lines, (n, lines)
        results[f"raw_consume_{processes}p_events_per_s"] = round(n / max(float(o[1]) for o in outputs))

    for workers in sorted({1, args.workers}):
        warehouse = work / f"warehouse-kafka-{workers}"
        wall, peak, _ = run_measured(
            [python, "-m", "parcours.cli", "run", "--warehouse", str(warehouse), "--workers", str(workers)], env
        )
        results[f"pipeline_{workers}w_events_per_s"] = round(lines / wall)
        results[f"pipeline_{workers}w_peak_rss_mb"] = round(peak)
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
