"""Throughput of the pipeline, Kafka -> published and queryable, against the raw consumer.

    .venv/bin/python benchmarks/pipeline.py --customers 20000 --days 60 --workers 2

Generates synthetic journeys (or reuses them), produces them to fresh topics on the local
broker, then measures in the same run and on the same data:
* the raw consume rate of the same kafka-python client setup the pipeline uses (the ceiling),
  with one process and with as many processes as pipeline workers;
* the end-to-end rate of `parcours run` (validated, sessionized, landed, manifest committed,
  views rebuilt), with the default batch size;
and prints events/s with the ratios. No number here is asserted anywhere: results go to
BENCHMARKS.md by hand, with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from parcours.config import load_config
from parcours.kafka import KafkaSettings, ensure_topics, make_consumer
from parcours.produce import produce_dir


def raw_consume(settings: KafkaSettings, partitions: list[tuple[str, int]]) -> int:
    """Read every message of the given partitions, start to end, as the pipeline's reader does."""
    from kafka import TopicPartition

    consumer = make_consumer(settings)
    try:
        tps = [TopicPartition(t, p) for t, p in partitions]
        end = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        n = 0
        while remaining:
            for tp, records in consumer.poll(timeout_ms=500, max_records=10_000).items():
                n += len(records)
                if records and records[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
        return n
    finally:
        consumer.close()


def timed_raw_consume(settings: KafkaSettings, processes: int) -> tuple[int, float]:
    partitions = [(settings.topics[k], p) for k in ("touchpoints", "surveys") for p in range(4)]
    groups = [partitions[i::processes] for i in range(processes)]
    started = time.perf_counter()
    if processes == 1:
        n = raw_consume(settings, partitions)
    else:
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            n = sum(pool.map(raw_consume, [settings] * processes, groups))
    return n, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workers", type=int, default=2, help="pipeline worker processes")
    parser.add_argument("--data", type=Path, help="reuse (or create) generated data in this folder")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    from parcours.generator import generate_dataset
    from parcours.pipelines.run import Runner
    from parcours.warehouse import Warehouse

    config = load_config()
    work = Path(tempfile.mkdtemp(prefix="parcours-bench-"))
    data = args.data or work / "data"
    if not (data / "touchpoints.jsonl").exists():
        started = time.perf_counter()
        summary = generate_dataset(data, args.customers, args.days, args.seed, config=config)
        print(f"generated {summary.n_touchpoints:,} touchpoints + {summary.n_surveys:,} answers "
              f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    settings = KafkaSettings.from_env().with_prefix(f"bench{uuid.uuid4().hex[:8]}.")
    ensure_topics(settings)
    started = time.perf_counter()
    produced = produce_dir(data, settings).total
    produce_s = time.perf_counter() - started

    results: dict[str, float | int | str] = {"events": produced, "workers": args.workers,
                                              "batch_size": config.ingest.batch_size}
    n1, s1 = timed_raw_consume(settings, 1)
    nw, sw = timed_raw_consume(settings, args.workers)
    assert n1 == nw == produced, (n1, nw, produced)

    warehouse = Warehouse(work / "warehouse")
    started = time.perf_counter()
    with warehouse.lock():
        report = Runner(warehouse, config, workers=args.workers).run_kafka(settings)
    pipeline_s = time.perf_counter() - started
    consumed = sum(b.total_consumed for b in report.batches)
    assert consumed == produced, (consumed, produced)

    results |= {
        "produce_events_per_s": round(produced / produce_s),
        "raw_consume_1_process_events_per_s": round(n1 / s1),
        f"raw_consume_{args.workers}_processes_events_per_s": round(nw / sw),
        "pipeline_events_per_s": round(consumed / pipeline_s),
        "pipeline_seconds": round(pipeline_s, 2),
        "micro_batches": len(report.batches),
        "pipeline_vs_raw_same_processes": round((consumed / pipeline_s) / (nw / sw), 2),
        "peak_rss_driver_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_rss_workers_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "cpus": os.cpu_count() or 0,
    }
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:>12,}" if isinstance(value, int | float) else f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
