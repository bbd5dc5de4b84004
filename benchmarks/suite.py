"""The benchmark suite in one command: every measure at every size, side by side.

    .venv/bin/python benchmarks/suite.py --sizes 1M,10M --workers 2 --work /tmp/parcours-suite

For each size it generates the data once (kept in WORK/<size>/data, reused on the next call),
then runs, each in its own processes and against baselines measured in the same run:

* `pipeline.py`: raw consume rates (the pipeline's consumer setup, and kafka-python's own),
  Kafka -> published and queryable with 1 and N workers (ingestion, with the marts refresh,
  whole command), the file backfill, and each run's peak memory;
* `sessionize.py`: sessionize + journeys against DuckDB SQL windows (1 and 2 threads) and,
  at the first size only, Beam with one element per event through `Sessions` windows;
* `queries.py --compact`: p50 / p95 of the BI queries from a read-only process on the
  backfilled warehouse, before and after compacting it;

and once, `latency.py`: event-to-queryable latency at prefect.yaml's schedule (`--latency-passes 0`
skips it; it takes a few minutes of wall time). It needs the local broker (`bash infra/kafka.sh
start`). Results go to stdout as one table (a column per size), to `--json`, and as Markdown to
`--markdown`; `--from-json FILE` prints an earlier run's again. Nothing is asserted: the numbers
go to BENCHMARKS.md with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Generator settings per named size: about 42 events per customer over 60 days, 57 over 90.
PRESETS = {"1M": (24_000, 60), "10M": (180_000, 90)}


def generator_args(size: str) -> tuple[int, int]:
    """(customers, days) for a named size (1M, 10M) or a number of events."""
    if size in PRESETS:
        return PRESETS[size]
    events = int(size.replace("_", ""))
    if events < 100:
        raise SystemExit(f"--sizes: {size!r} is neither 1M, 10M nor a number of events >= 100")
    return max(2, events // 42), 60


def run(script: str, *args: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        done = subprocess.run([sys.executable, str(HERE / script), *args, "--json", out.name], text=True)
        if done.returncode:
            raise SystemExit(f"{script} failed (exit {done.returncode})")
        return json.loads(Path(out.name).read_text())


def _cell(value: object) -> str:
    return f"{_md(value):>14}"


def show(results: dict[str, dict], sizes: list[str], markdown: Path | None) -> None:
    """One table, a column per size; the latency measures after it."""
    keys = list(dict.fromkeys(key for size in sizes for key in results[size]))
    width = max(len(key) for key in keys)
    print(f"\n{'measure':<{width}}  " + "  ".join(f"{size:>14}" for size in sizes))
    for key in keys:
        print(f"{key:<{width}}  " + "  ".join(_cell(results[size].get(key, "")) for size in sizes))
    latency = results.get("latency", {})
    if latency:
        print("\nevent-to-queryable latency at the schedule:")
        for key, value in latency.items():
            print(f"  {key}: {value}")
    if markdown:
        lines = ["| measure | " + " | ".join(sizes) + " |", "| --- |" + " ---: |" * len(sizes)]
        lines += [f"| {key} | " + " | ".join(_md(results[size].get(key, "")) for size in sizes) + " |" for key in keys]
        if latency:
            lines += ["", "| latency at the schedule | |", "| --- | ---: |"]
            lines += [f"| {key} | {_md(value)} |" for key, value in latency.items()]
        markdown.write_text("\n".join(lines) + "\n")


def _md(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1M,10M", help="comma-separated: 1M, 10M, or numbers of events")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "parcours-suite")
    parser.add_argument("--repeat", type=int, default=10, help="runs of each BI query")
    parser.add_argument("--latency-passes", type=int, default=3, help="scheduled passes to time; 0 skips")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here (for BENCHMARKS.md)")
    parser.add_argument("--from-json", type=Path, help="print (and --markdown) the results of an earlier --json")
    args = parser.parse_args(argv)

    if args.from_json:
        results = json.loads(args.from_json.read_text())
        sizes = [size for size in results if size != "latency"]
        show(results, sizes, args.markdown)
        return 0
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    results: dict[str, dict] = {}
    for index, size in enumerate(sizes):
        customers, days = generator_args(size)
        folder = args.work / size
        data = folder / "data"
        if not (data / "touchpoints.jsonl").exists():
            generate = ["generate", "--out", str(data), "--seed", "42", "--customers", str(customers)]
            subprocess.run(
                [sys.executable, "-m", "parcours.cli", *generate, "--days", str(days)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        measured: dict = {}
        pipeline = run("pipeline.py", "--data", str(data), "--workers", str(args.workers), "--work", str(folder))
        measured.update(pipeline)
        beam_events = str(min(1_000_000, pipeline["events"])) if index == 0 else "0"  # per-event baseline: first size
        sessionize = run(
            "sessionize.py", "--data", str(data), "--events", str(pipeline["events"]), "--beam-events", beam_events
        )
        measured.update({f"sessionize_{k}": v for k, v in sessionize.items()})
        queries = run(
            "queries.py", "--warehouse", str(folder / "warehouse-files"), "--repeat", str(args.repeat), "--compact"
        )
        for when, block in (("as_landed", queries), ("compacted", queries["after_compaction"])):
            measured[f"bi_files_{when}"] = block["files"]
            for name, value in block["queries"].items():
                measured[f"bi_{name}_p50_ms_{when}"] = value["p50_ms"]
                measured[f"bi_{name}_p95_ms_{when}"] = value["p95_ms"]
                if "same_rows" in value:
                    measured[f"bi_{name}_same_rows_{when}"] = value["same_rows"]
        results[size] = measured
    if args.latency_passes > 0:
        latency = run("latency.py", "--passes", str(args.latency_passes))
        results["latency"] = latency

    show(results, sizes, args.markdown)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
