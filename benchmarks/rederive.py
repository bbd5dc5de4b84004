"""The memory bound of `parcours refresh --full`'s re-derivation: shards of whole customers.

    .venv/bin/python benchmarks/rederive.py --events 200000 --shard-rows 200000,20000 --repeats 2

Generates the events (the synthetic generator), lands them once, then re-derives the
touchpoints' sessions and cycles (`parcours.refresh.rederive.rederive`, no commit) on a
hard-linked copy of that warehouse, once per shard size and repeat, alternated, each in a fresh
process: its peak resident memory (`VmHWM`), the peak of Arrow's memory pool, the shards and
the seconds. One shard holding every row is the baseline: the shards bound what one holds.
Nothing is asserted here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from parcours.config import load_config
from parcours.synthetic import generate_dataset

HERE = Path(__file__).resolve().parent


def _peak_rss_kb() -> int:
    """This process's peak resident memory (VmHWM). Not `ru_maxrss`: Linux carries that over
    `exec` from the parent, which here has just landed every event."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def measure(root: Path, shard_rows: int) -> dict:
    """In this process: one re-derivation of the warehouse `root`, uncommitted."""
    from datetime import UTC, datetime

    import pyarrow as pa

    from parcours.refresh.rederive import rederive
    from parcours.warehouse import Warehouse

    wh = Warehouse(root)
    started = time.perf_counter()
    done = rederive(wh, wh.next_seq(), load_config(), datetime.now(UTC), rows_per_shard=shard_rows)
    return {
        "shard_rows": shard_rows,
        "rows": done.rows,
        "shards": done.shards,
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(_peak_rss_kb() / 1024),
        "peak_arrow_mb": round(pa.default_memory_pool().max_memory() / 2**20),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--shard-rows", default="200000,20000", help="comma-separated rows per shard")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process's warehouse
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure, int(args.shard_rows))))
        return 0

    from parcours.pipelines.run import Ingestion
    from parcours.warehouse import Warehouse

    sizes = [int(s) for s in args.shard_rows.split(",")]
    with tempfile.TemporaryDirectory(prefix="parcours-rederive-") as tmp:
        data, landed = Path(tmp) / "data", Path(tmp) / "landed"
        generate_dataset(data, max(2, args.events // 42), 60, 7, config=load_config())
        (data / "surveys.jsonl").unlink(missing_ok=True)
        wh = Warehouse(landed)
        with wh.lock():
            Ingestion(wh, load_config()).run_files(data, refresh=False)
        results = []
        for repeat in range(args.repeats):
            for size in sizes if repeat % 2 == 0 else sizes[::-1]:
                copy = Path(tmp) / f"copy-{repeat}-{size}"
                shutil.copytree(landed, copy, copy_function=os.link)  # rederive writes new names only
                child = subprocess.run(
                    [sys.executable, str(HERE / "rederive.py"), "--measure", str(copy), "--shard-rows", str(size)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results.append(json.loads(child.stdout.strip().splitlines()[-1]))
                shutil.rmtree(copy)
                print(results[-1], flush=True)
    if args.json:
        args.json.write_text(json.dumps(results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
