"""Event-to-queryable latency at the ingestion schedule, on the real broker.

    .venv/bin/python benchmarks/latency.py --rate 2000 --passes 5                # prefect.yaml's schedule (60 s)
    .venv/bin/python benchmarks/latency.py --rate 2000 --passes 10 --interval 10 # the floor: one pass

Runs the ingestion as it runs in production, on fresh topics and an empty warehouse:
`parcours serve` (a local Prefect server and runner, the ingestion's schedule of prefect.yaml or --interval)
while this process produces touchpoints at a steady rate, each stamped with its produce time as
`occurred_at`. A separate process opens the views file read-only, as a BI tool would, every
--poll seconds; whenever a new batch is published it reads the new events' `occurred_at` and
records `seen - occurred_at` for every one of them (the poll period bounds the error).

Events produced before the first published batch are left out (they measure the server start,
not the schedule). After --passes intervals the producer stops, and the run ends once every
produced event is queryable. Then it reads from the Prefect API when each flow run was due,
started and ended, and prints the latency percentiles, the run duration per pass, how late
passes started after their tick, and the interval. Nothing is asserted (BENCHMARKS.md).

Expected: latency = wait for the next tick (uniform over the interval) + process start + one
pass; so p50 ~ interval / 2 + pass, max ~ interval + pass, and at short intervals the pass
itself is the floor (ticks that find the previous pass still running are skipped).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from report import report  # benchmarks/report.py: scripts run from this folder

TOUCHPOINTS = ("home_page", "product_page", "checkout", "delivery", "app_session", "support_call", "renewal_offer")
CHANNELS = ("web", "app", "store", "call_center", "email")
DEPLOYMENT = "ingest-events"  # of prefect.yaml


def poll_views(db: str, period: float, stop, seen_count, first_seen_at, out_path: str) -> None:
    """In its own process: record, per published batch, when its events became queryable."""
    import duckdb
    import numpy as np

    last_seq, batches, occurred, seen = 0, [], [], []
    while not stop.is_set():
        now = time.time()  # the file opened below was already in place at this instant
        if os.path.exists(db):
            try:
                with duckdb.connect(db, read_only=True) as con:
                    (seq,) = con.execute("select last_seq from parcours_meta").fetchone()
                    if seq is not None and seq > last_seq:
                        times = con.execute(
                            "select epoch_us(occurred_at) as at_us from touchpoints where batch_seq > ?", [last_seq]
                        ).fetchnumpy()["at_us"]
                        occurred.append(np.asarray(times, dtype=np.int64))
                        seen.append(np.full(len(times), now))
                        batches.append({"last_seq": seq, "seen_at": now, "events": len(times)})
                        last_seq = seq
                        if first_seen_at.value == 0 and len(times):
                            first_seen_at.value = now
                        seen_count.value += len(times)
            except duckdb.Error:
                pass  # the views file was being replaced under us: the next poll reads the new one
        stop.wait(period)
    occurred_s = np.concatenate(occurred) / 1e6 if occurred else np.array([])
    seen_s = np.concatenate(seen) if seen else np.array([])
    measured = occurred_s >= first_seen_at.value
    latency = seen_s[measured] - occurred_s[measured]
    summary = {"batches": batches, "measured_events": int(measured.sum())}
    if len(latency):
        summary |= {
            "p50_s": round(float(np.percentile(latency, 50)), 2),
            "p95_s": round(float(np.percentile(latency, 95)), 2),
            "max_s": round(float(latency.max()), 2),
            "min_s": round(float(latency.min()), 2),
        }
    Path(out_path).write_text(json.dumps(summary))


def flow_runs(api_url: str) -> list[dict]:
    """The ingestion's flow runs as the Prefect API recorded them, oldest first."""
    import httpx

    response = httpx.post(f"{api_url}/flow_runs/filter", json={"sort": "EXPECTED_START_TIME_ASC", "limit": 200})
    response.raise_for_status()
    return response.json()


def _at(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000, help="events produced per second")
    parser.add_argument("--passes", type=int, default=5, help="intervals to produce for after the first pass")
    parser.add_argument("--interval", type=float, help="override prefect.yaml's schedule (seconds)")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between two looks at the views")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the warehouse and logs (always kept on failure)")
    args = parser.parse_args(argv)

    from parcours.flows.serve import DEFAULT_PREFECT_YAML, free_port, read_deployments
    from parcours.kafka import KafkaSettings, ensure_topics, make_admin, make_producer

    (ingestion,) = [spec for spec in read_deployments(DEFAULT_PREFECT_YAML) if spec.name == DEPLOYMENT]
    interval = args.interval or ingestion.schedules[0].interval.total_seconds()
    work = Path(tempfile.mkdtemp(prefix="parcours-latency-"))
    warehouse = work / "warehouse"
    settings = KafkaSettings.from_env().with_prefix(f"lat{uuid.uuid4().hex[:8]}.")
    ensure_topics(settings)
    port = free_port()
    env = {
        **os.environ,
        "PARCOURS_KAFKA_BOOTSTRAP": settings.bootstrap,
        "PARCOURS_TOPIC_PREFIX": settings.topic_prefix,
        "PREFECT_HOME": str(work / "prefect"),
    }
    env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "parcours.cli", "serve", "--warehouse", str(warehouse), "--port", str(port)]
    command += ["--deployment", DEPLOYMENT]  # the ingestion alone: --interval would schedule the compaction too
    if args.interval:
        command += ["--interval", str(args.interval)]
    serve_log = (work / "serve.log").open("w")
    serve = subprocess.Popen(command, env=env, stdout=serve_log, stderr=subprocess.STDOUT, start_new_session=True)

    spawn = multiprocessing.get_context("spawn")
    stop, seen_count, first_seen_at = spawn.Event(), spawn.Value("q", 0), spawn.Value("d", 0.0)
    poll_out = work / "poll.json"
    poller = spawn.Process(
        target=poll_views,
        args=(str(warehouse / "parcours.duckdb"), args.poll, stop, seen_count, first_seen_at, str(poll_out)),
    )
    poller.start()

    producer = make_producer(settings)
    topic = settings.topics["touchpoints"]
    rng = random.Random(42)
    produced = produced_at_first_pass = 0
    started = time.time()
    warmup_deadline = started + 300
    measure_until = None
    try:
        while True:
            now = time.time()
            if measure_until is None and first_seen_at.value:
                measure_until = now + args.passes * interval
                produced_at_first_pass = produced
            if (measure_until is not None and now >= measure_until) or now > warmup_deadline:
                break
            if serve.poll() is not None:
                raise RuntimeError(f"parcours serve exited with {serve.returncode}; see {work / 'serve.log'}")
            due = int((now - started) * args.rate)
            stamp = datetime.now(UTC).isoformat()
            for _ in range(due - produced):
                customer = f"c{rng.randrange(args.customers):06d}"
                event = {
                    "schema_version": 1,
                    "event_id": f"ev-{produced}",
                    "customer_id": customer,
                    "occurred_at": stamp,
                    "channel": rng.choice(CHANNELS),
                    "touchpoint": rng.choice(TOUCHPOINTS),
                }
                producer.send(topic, value=json.dumps(event).encode(), key=customer.encode())
                produced += 1
            time.sleep(0.01)  # pacing the producer, not synchronising anything
        producer.flush()
        produce_seconds = time.time() - started
        if measure_until is None:
            raise RuntimeError(f"no batch was published within 300 s; see {work / 'serve.log'}")
        drain_deadline = time.time() + 2 * interval + 300
        while seen_count.value < produced and time.time() < drain_deadline and serve.poll() is None:
            time.sleep(0.2)  # the poller process publishes its count; nothing to block on across processes
        # The pass that published the last events is still running until its marts refresh ends:
        # read the runs once every run started by then has ended.
        all_seen_at = time.time()
        runs = flow_runs(f"http://127.0.0.1:{port}/api")
        while time.time() < drain_deadline and any(
            r["state_type"] == "RUNNING" and _at(r["start_time"]) <= all_seen_at for r in runs
        ):
            time.sleep(0.5)
            runs = flow_runs(f"http://127.0.0.1:{port}/api")
    finally:
        producer.close()
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(serve.pid, signal.SIGKILL)
                serve.wait()
        serve_log.close()
        stop.set()
        poller.join(60)
        admin = make_admin(settings)
        try:
            admin.delete_topics(list(settings.topics.values()))
        finally:
            admin.close()

    polled = json.loads(poll_out.read_text())
    landed = [r for r in runs if r["state_name"] == "Completed" and r["start_time"] and r["end_time"]]
    durations = [_at(r["end_time"]) - _at(r["start_time"]) for r in landed]
    delays = [_at(r["start_time"]) - _at(r["expected_start_time"]) for r in landed]
    results: dict[str, object] = {
        "interval_s": interval,
        "rate_events_per_s": round(produced / produce_seconds),
        "events_produced": produced,
        "events_seen": seen_count.value,
        "events_measured": polled["measured_events"],
        "events_before_first_pass": produced_at_first_pass,
        "latency_p50_s": polled.get("p50_s"),
        "latency_p95_s": polled.get("p95_s"),
        "latency_max_s": polled.get("max_s"),
        "latency_min_s": polled.get("min_s"),
        "batches_published": len(polled["batches"]),
        "flow_runs_completed": len(landed),
        "flow_runs_skipped": sum(r["state_name"] == "Skipped" for r in runs),
        "run_duration_s": [round(d, 1) for d in durations],
        "run_start_after_tick_s": [round(d, 1) for d in delays],
        "work_dir": str(work),
    }
    complete = seen_count.value == produced
    if complete and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
        del results["work_dir"]
    report(results, args.json)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
