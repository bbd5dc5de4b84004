"""The cost of one refresh pass on top of 1M and of 10M events of history.

    .venv/bin/python benchmarks/refresh.py --sizes 1M,10M --work /tmp/parcours-refresh --repeats 3 \
        [--baseline ../main/.venv/bin/python]

A refresh pass (`parcours.refresh.refresher.catch_up`) should cost what its new events and the
touched or due customers' own open cycles cost, not what the history costs. The two sizes are
the same business, one ten times the other: the synthetic generator (seed 42) over the same 60
days, 24,000 customers for 1M, 240,000 for 10M (about 42 events each). For each size it:

1. generates the events once (kept in WORK/<size>/data and reused; `--data SIZE=FOLDER`
   reuses a folder generated the same way; once WORK/<size>/split.json is written, the smallest
   size's cut is read from it and its data is not needed any more);
2. cuts them at one time for every size, that of the smallest size's last `--new-events`
   (100,000) events (the lines are written in event-time order): the events before it are the
   history; the pass's new events are those from it on of as many customers as the smallest
   size has (all of its customers; at 10M one in ten, by a hash of the id), so every size
   lands about the same new events of about as many existing customers, over the same days,
   on ten times the history. The other customers' events after the cut are left out (they never
   happened: the history simply ends there). Survey answers are cut the same way;
3. backfills the history (`Ingestion.run_files`, refreshed, as `parcours run --from` does) into
   WORK/<size>/history, then lands the new events on a copy of it without refreshing
   (WORK/<size>/pending): the state a scheduled pass starts its refresh from;
4. times `catch_up` alone, each run on a fresh copy of that pending warehouse, in its own process,
   `--repeats` times alternating the sizes (1M, 10M, then 10M, 1M, ...) and, with
   `--baseline PYTHON` (another checkout's interpreter, e.g. `main`'s), that checkout's refresher
   alternated with this one's on the same copies: seconds, the seconds of each step (each
   customer dataset's model, the shared scan, the rollups), the rows of the touchpoint files
   opened (`touchpoint_rows_opened`: per dataset, every row of the files its rows were taken
   from; `shared_scan`, the files the pass's one scan read) and the customers refreshed.

The new events move the event-time watermark from the history's last event to their own last
one, by the same ~3.6 days at both sizes (`watermark_advance_h`): the 1M data lands ~28,000
events a day at its end, so 100,000 events of its customers take that long.

A copy of a warehouse hard-links its Parquet files (published files are never rewritten: a
commit adds files and a new manifest) and copies everything else. It prints the runs, the
medians and the ratio of the medians (10M / 1M); nothing is asserted: the numbers go to
BENCHMARKS.md with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
PRESETS = {"1M": 24_000, "10M": 240_000}  # customers over 60 days (about 42 events each)
DAYS = 60


def customers_of(size: str) -> int:
    """Customers for a named size (1M, 10M) or a number of events (about 42 per customer)."""
    return PRESETS[size] if size in PRESETS else max(2, int(size.replace("_", "")) // 42)


def _utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _field(line: bytes, name: str) -> str:
    return json.loads(line)[name]


def cut_time(data: Path, new_events: int) -> datetime:
    """The time of the `new_events`-th last touchpoint line (the lines are in event-time order)."""
    with (data / "touchpoints.jsonl").open("rb") as source:
        total = sum(1 for _ in source)
    if total <= new_events:
        raise SystemExit(f"{data}: {total:,} events, no more than --new-events {new_events:,}")
    with (data / "touchpoints.jsonl").open("rb") as source:
        for index, line in enumerate(source):
            if index == total - new_events:
                return _utc(_field(line, "occurred_at"))
    raise AssertionError("unreachable")


def sampled(customer_id: str, share: int) -> bool:
    """One customer in `share`, by a hash of its id (the same customers on every call)."""
    return zlib.crc32(customer_id.encode()) % share == 0


def split(data: Path, history: Path, new: Path, cut_at: datetime, share: int) -> dict:
    """Events before `cut_at` to `history`; those from it on, of one customer in `share`, to
    `new` (the other customers' are left out: they never happened); survey answers likewise."""
    history.mkdir(parents=True, exist_ok=True)
    new.mkdir(parents=True, exist_ok=True)
    counts = {"history_events": 0, "new_events": 0, "left_out_events": 0, "history_answers": 0, "new_answers": 0}
    last: dict[str, datetime] = {}
    for name, column, kind in (
        ("touchpoints.jsonl", "occurred_at", "events"),
        ("surveys.jsonl", "answered_at", "answers"),
    ):
        if not (data / name).exists():
            continue
        with (data / name).open("rb") as source, (history / name).open("wb") as old, (new / name).open("wb") as fresh:
            for line in source:
                record = json.loads(line)
                at = _utc(record[column])
                if at < cut_at:
                    old.write(line)
                    counts[f"history_{kind}"] += 1
                    if kind == "events":
                        last["history"] = max(last.get("history", at), at)
                elif sampled(record["customer_id"], share):
                    fresh.write(line)
                    counts[f"new_{kind}"] += 1
                    if kind == "events":
                        last["new"] = max(last.get("new", at), at)
                elif kind == "events":
                    counts["left_out_events"] += 1
    return {
        **counts,
        "customers_sampled": f"1 in {share}",
        "cut_at": cut_at.isoformat(),
        "last_history_event": last["history"].isoformat(),
        "last_new_event": last["new"].isoformat(),
    }


def copy_warehouse(source: Path, target: Path) -> None:
    """Parquet hard-linked (never rewritten), everything else (manifests, DuckDB file) copied."""

    def link_or_copy(src: str, dst: str) -> None:
        if src.endswith(".parquet"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


def generate(size: str, data: Path) -> None:
    command = ["generate", "--out", str(data), "--seed", "42", "--customers", str(customers_of(size))]
    subprocess.run([sys.executable, "-m", "parcours.cli", *command, "--days", str(DAYS)], check=True)


def prepare(size: str, work: Path, data: Path | None, cut_at: datetime, share: int) -> dict:
    """Generate, split, backfill and land (each step skipped when its result is there)."""
    from parcours.config import load_config
    from parcours.pipelines.run import Ingestion
    from parcours.warehouse import Warehouse

    folder = work / size
    data = data or folder / "data"
    meta_path = folder / "split.json"
    if not meta_path.exists() and not (data / "touchpoints.jsonl").exists():
        generate(size, data)
    if not meta_path.exists():
        meta = split(data, folder / "history-data", folder / "new-data", cut_at, share)
        meta_path.write_text(json.dumps(meta, indent=2))
    meta = json.loads(meta_path.read_text())
    history, pending = folder / "history", folder / "pending"
    if not (folder / "history.done").exists():
        shutil.rmtree(history, ignore_errors=True)
        started = time.perf_counter()
        wh = Warehouse(history)
        with wh.lock():
            Ingestion(wh, load_config()).run_files(folder / "history-data")
        meta["history_backfill_s"] = round(time.perf_counter() - started, 1)
        meta_path.write_text(json.dumps(meta, indent=2))
        (folder / "history.done").touch()
    if not (folder / "pending.done").exists():
        shutil.rmtree(pending, ignore_errors=True)
        copy_warehouse(history, pending)
        wh = Warehouse(pending)
        with wh.lock():
            Ingestion(wh, load_config()).run_files(folder / "new-data", refresh=False)
        (folder / "pending.done").touch()
    return meta


def measure(root: Path) -> dict:
    """In this process: one `catch_up` of the warehouse `root`, with what its models opened."""
    import pyarrow.parquet as pq

    from parcours.refresh import refresher
    from parcours.warehouse import Warehouse

    opened: dict[str, int] = {}
    seconds: dict[str, float] = {}
    current: list[str] = []
    point_events_at, stream, run_python = refresher._point_events_at, refresher._stream, refresher._run_python

    def counting_point_events_at(con, paths, condition, **kwargs):
        rows = sum(pq.read_metadata(p).num_rows for p in paths)
        current.append(str(rows))
        return point_events_at(con, paths, condition, **kwargs)

    def counting_scan(con, paths):
        opened["shared_scan"] = sum(pq.read_metadata(p).num_rows for p in paths)
        started = time.perf_counter()
        try:
            return scan(con, paths)
        finally:
            seconds["shared_scan"] = round(time.perf_counter() - started, 2)

    def timed_stream(warehouse, con, dataset, *args):
        started = time.perf_counter()
        try:
            return stream(warehouse, con, dataset, *args)
        finally:
            if current:
                opened[dataset] = int(current.pop())
            seconds[dataset] = round(time.perf_counter() - started, 2)

    def timed_python(warehouse, con, derived, *args, **kwargs):
        started = time.perf_counter()
        try:
            return run_python(warehouse, con, derived, *args, **kwargs)
        finally:
            if current:
                opened[derived.name] = int(current.pop())
            seconds[derived.name] = round(time.perf_counter() - started, 2)

    def timed(name, step):
        def run(*args, **kwargs):
            started = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                seconds[name] = round(time.perf_counter() - started, 2)

        return run

    refresher._point_events_at = counting_point_events_at
    if hasattr(refresher, "_scan_touched"):  # not in a baseline's refresher
        scan = refresher._scan_touched
        refresher._scan_touched = counting_scan
    refresher._stream = timed_stream
    refresher._run_python = timed_python
    # The partition, family and whole datasets, each: the seconds from the previous one's files
    # written (or the step's start) to its own (its model, its views, its write).
    write_parquet, since = Warehouse.write_parquet, [0.0]

    def timed_write(self, dataset, *args, **kwargs):
        try:
            return write_parquet(self, dataset, *args, **kwargs)
        finally:
            now = time.perf_counter()
            seconds[dataset] = round(now - since[0], 2)
            since[0] = now

    def tables(*args, **kwargs):
        since[0] = time.perf_counter()
        return timed("partition_datasets", refresh_tables)(*args, **kwargs)

    # `catch_up` calls `refresh_tables` (`refresh_partitions` is its older name, a baseline's).
    step = "refresh_tables" if hasattr(refresher, "refresh_tables") else "refresh_partitions"
    refresh_tables = getattr(refresher, step)
    Warehouse.write_parquet = timed_write
    refresher.refresh_customers = timed("customer_datasets", refresher.refresh_customers)
    setattr(refresher, step, tables)
    wh = Warehouse(root)
    started = time.perf_counter()
    with wh.lock():
        report = refresher.catch_up(wh)
    elapsed = time.perf_counter() - started
    return {
        "seconds": round(elapsed, 2),
        "customers": report.customers if report else 0,
        "rows_written": report.rows if report else {},
        "touchpoint_rows_opened": opened,
        "dataset_seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1M,10M")
    parser.add_argument("--work", type=Path, default=Path("/tmp/parcours-refresh"))
    parser.add_argument("--data", action="append", default=[], help="SIZE=FOLDER: reuse generated data")
    parser.add_argument("--new-events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", help="another checkout's interpreter: its refresher, alternated")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process's warehouse
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure)))
        return 0

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    data = {k: Path(v) for k, v in (item.split("=", 1) for item in args.data)}
    # The cut: the smallest size's last `--new-events` events; every size lands the events
    # after it of as many customers as that size has (one in `share` of its own).
    small = sizes[0]
    small_data = data.get(small) or args.work / small / "data"
    split_of_small = args.work / small / "split.json"
    if split_of_small.exists() and not (small_data / "touchpoints.jsonl").exists():
        # The warehouses are there, split at this cut: its generated data is not needed again.
        cut_at = _utc(json.loads(split_of_small.read_text())["cut_at"])
    else:
        if not (small_data / "touchpoints.jsonl").exists():
            generate(small, small_data)
        cut_at = cut_time(small_data, args.new_events)
    meta = {
        size: prepare(size, args.work, data.get(size), cut_at, round(customers_of(size) / customers_of(small)))
        for size in sizes
    }
    if args.repeats == 0:  # the warehouses only
        print(json.dumps(meta, indent=2))
        return 0
    codes = {"this": sys.executable, **({"baseline": args.baseline} if args.baseline else {})}
    runs: dict[str, list[dict]] = {f"{size}_{code}": [] for code in codes for size in sizes}
    for repeat in range(args.repeats):
        for size in sizes if repeat % 2 == 0 else sizes[::-1]:
            for code, python in codes.items() if repeat % 2 == 0 else list(codes.items())[::-1]:
                copy = args.work / size / "run"
                shutil.rmtree(copy, ignore_errors=True)
                copy_warehouse(args.work / size / "pending", copy)
                child = subprocess.run(
                    [python, str(HERE / "refresh.py"), "--measure", str(copy)], capture_output=True, text=True
                )
                if child.returncode:
                    raise SystemExit(f"refresh of {size} ({code}) failed:\n{child.stderr[-4000:]}")
                runs[f"{size}_{code}"].append(json.loads(child.stdout.strip().splitlines()[-1]))
                shutil.rmtree(copy)
                print(size, code, json.dumps(runs[f"{size}_{code}"][-1]), flush=True)
    results: dict = {}
    for key, measured in runs.items():
        size = key.rsplit("_", 1)[0]
        seconds = [r["seconds"] for r in measured]
        results[key] = {
            "refresh_runs_s": seconds,
            "refresh_median_s": statistics.median(seconds),
            "customers_refreshed": measured[0]["customers"],
            "rows_written": measured[0]["rows_written"],
            "touchpoint_rows_opened": measured[0]["touchpoint_rows_opened"],
            "step_seconds_median": {
                name: statistics.median(r["dataset_seconds"].get(name, 0.0) for r in measured)
                for name in measured[0]["dataset_seconds"]
            },
        }
    for size in sizes:
        advance = _utc(meta[size]["last_new_event"]) - _utc(meta[size]["last_history_event"])
        results[size] = {**meta[size], "watermark_advance_h": round(advance.total_seconds() / 3600, 1)}
    if len(sizes) == 2:
        small, large = sizes
        for code in codes:
            ratio = results[f"{large}_{code}"]["refresh_median_s"] / results[f"{small}_{code}"]["refresh_median_s"]
            results[f"ratio_{code}"] = round(ratio, 2)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
