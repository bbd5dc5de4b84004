"""The benchmark scripts still run, on tiny inputs (the numbers themselves live in BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parcours.config import load_config
from parcours.kafka import KafkaSettings
from parcours.pipelines.run import Ingestion
from parcours.synthetic import generate_dataset
from parcours.warehouse import Warehouse

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench-data")
    generate_dataset(folder, 60, 15, 3, config=load_config())
    return folder


def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> dict:
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"parcours-{name}-{os.getpid()}.json"
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    try:
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def test_sessionize_benchmark_agrees_with_its_sql_baseline(data: Path) -> None:
    touchpoints = sum(1 for _ in (data / "touchpoints.jsonl").open("rb"))
    results = run_script("sessionize", "--data", str(data), "--events", "3000", "--beam-events", "300")
    assert results["events"] == min(3000, touchpoints)
    # An independent method: window functions in DuckDB find the same sessions (no session of
    # this data reaches the maximum duration, which SQL windows cannot express).
    assert results["parcours_sessions"] == results["duckdb_sql_sessions"]
    assert results["beam_per_event_events"] == 300 and results["beam_per_event_sessions"] > 0


def test_quality_benchmark_validates_a_landed_batch_with_great_expectations(data: Path) -> None:
    touchpoints = sum(1 for _ in (data / "touchpoints.jsonl").open("rb"))
    results = run_script("quality", "--data", str(data), "--rows", "500", "--repeats", "1")
    # A clean batch: GE passes its suite, and the same checks in SQL find no failing row.
    assert results["rows"] == min(500, touchpoints) and results["ge_success"] is True
    assert results["sql_failing_rows"] == [0] * 6


def test_query_benchmark_runs_every_query(data: Path, tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "w")
    with warehouse.lock():
        Ingestion(warehouse, load_config()).run_files(data)
    # One batch and its marts refresh, nothing removed yet: every file they list is live.
    landed_files = sum(len(m.files) for m in warehouse.manifests())
    assert len(warehouse.manifests()) == 2
    results = run_script("queries", "--warehouse", str(tmp_path / "w"), "--repeat", "2", "--compact")
    names = {
        "sessions_per_day_and_channel",
        "journeys_reaching_each_stage_per_week",
        "top_paths",
        "dead_letters_by_reason",
        "touchpoints_per_stage_and_channel",
        "survey_scores_per_stage_and_segment",
        "steps_per_pair",
        "steps_customers_and_median_gap_per_pair",
        "steps_customers_and_median_gap_per_segment_and_pair",
        "funnel_reached_per_step",
        "funnel_reached_per_week_segment_and_step",
    }
    alone = {"top_path_variants", "sankey_of_the_first_anchor", "step_matrix_of_the_first_anchor"}
    rollups = {f"{name}_rollup" for name in names - {"dead_letters_by_reason", "survey_scores_per_stage_and_segment"}}
    names |= alone
    twins = rollups | {"survey_scores_per_stage_and_segment_asof"}  # the attachment computed at query time
    after = results["after_compaction"]
    assert set(results["queries"]) == set(after["queries"]) == names | twins
    # The rollups (and the attachment at query time) answer their twin's question with the same
    # rows, before and after compaction.
    assert all(block["queries"][name]["same_rows"] is True for block in (results, after) for name in twins)
    assert results["files"] == landed_files
    assert 0 < after["files"] < results["files"] <= after["files_on_disk"]
    assert after["rows"]["refreshes"] == 0 and after["rows"]["sessions"] == results["rows"]["sessions"]


def test_the_suite_prints_an_earlier_run_as_markdown(tmp_path: Path) -> None:
    earlier = {"1M": {"events": 1_004_018, "same": True}, "10M": {"events": 10_239_444}, "latency": {"p50_s": 34.2}}
    (tmp_path / "run.json").write_text(json.dumps(earlier))
    subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "suite.py"),
            "--from-json",
            str(tmp_path / "run.json"),
            "--markdown",
            str(tmp_path / "run.md"),
        ],
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "run.md").read_text().splitlines() == [
        "| measure | 1M | 10M |",
        "| --- | ---: | ---: |",
        "| events | 1,004,018 | 10,239,444 |",
        "| same | True |  |",
        "",
        "| latency at the schedule | |",
        "| --- | ---: |",
        "| p50_s | 34.2 |",
    ]


@pytest.mark.kafka
def test_the_suite_runs_every_benchmark_at_every_size(tmp_path: Path, kafka_broker: KafkaSettings) -> None:
    """`suite.py` at two tiny sizes: pipeline, sessionize and BI queries each run at each size."""
    env = {**os.environ, "PARCOURS_KAFKA_BOOTSTRAP": kafka_broker.bootstrap}
    args = ("--sizes", "3000,6000", "--work", str(tmp_path / "suite"), "--repeat", "2", "--latency-passes", "0")
    results = run_script("suite", *args, env=env)
    assert set(results) == {"3000", "6000"}
    for size, measured in results.items():
        data = tmp_path / "suite" / size / "data"
        lines = sum(1 for name in ("touchpoints.jsonl", "surveys.jsonl") for _ in (data / name).open("rb"))
        assert measured["events"] == lines, size
        for key in (
            "raw_consume_1p_events_per_s",
            "kafka_python_records_2p_events_per_s",
            "pipeline_1w_events_per_s",
            "pipeline_2w_with_marts_events_per_s",
            "backfill_events_per_s",
            "sessionize_parcours_events_per_s",
            "bi_top_paths_p50_ms_compacted",
        ):
            assert measured[key] > 0, (size, key)
        assert measured["sessionize_parcours_sessions"] == measured["sessionize_duckdb_sql_sessions"], size
    # The per-event Beam baseline runs at the first size only.
    assert results["3000"]["sessionize_beam_per_event_events"] > 0
    assert "sessionize_beam_per_event_events" not in results["6000"]


@pytest.mark.kafka
def test_latency_benchmark_sees_every_produced_event_through_the_schedule(kafka_broker: KafkaSettings) -> None:
    """`parcours serve` on a 5 s schedule, 50 events/s for one interval after the first pass."""
    env = {**os.environ, "PARCOURS_KAFKA_BOOTSTRAP": kafka_broker.bootstrap}
    results = run_script("latency", "--rate", "50", "--passes", "1", "--interval", "5", "--poll", "0.5", env=env)
    assert results["interval_s"] == 5
    assert results["events_produced"] > 0 and results["events_seen"] == results["events_produced"]
    assert results["events_measured"] > 0 and results["flow_runs_completed"] >= 2
    assert len(results["run_duration_s"]) == results["flow_runs_completed"]
    assert results["latency_min_s"] <= results["latency_p50_s"] <= results["latency_p95_s"] <= results["latency_max_s"]


def test_identical_tells_the_same_landing_from_a_different_one(data: Path, tmp_path: Path) -> None:
    def backfill(folder: Path, root: Path) -> None:
        warehouse = Warehouse(root)
        with warehouse.lock():
            Ingestion(warehouse, load_config()).run_files(folder)

    # Rows name the file they came from: every landing reads the same path.
    source = tmp_path / "src"
    source.mkdir()
    lines = (data / "touchpoints.jsonl").read_text().splitlines(keepends=True)
    (source / "surveys.jsonl").write_text((data / "surveys.jsonl").read_text())
    (source / "touchpoints.jsonl").write_text("".join(lines))
    backfill(source, tmp_path / "a")
    backfill(source, tmp_path / "b")
    # The same data less its last touchpoint: every view that counts it differs.
    (source / "touchpoints.jsonl").write_text("".join(lines[:-1]))
    backfill(source, tmp_path / "c")

    def identical(a: Path, b: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(BENCHMARKS / "identical.py"), str(a), str(b)], capture_output=True, text=True
        )

    same = identical(tmp_path / "a", tmp_path / "b")
    assert same.returncode == 0 and same.stdout.rstrip().endswith("identical"), same.stdout + same.stderr
    differs = identical(tmp_path / "a", tmp_path / "c")
    assert differs.returncode == 1 and differs.stdout.rstrip().endswith("DIFFERENT")
    touchpoints = next(line for line in differs.stdout.splitlines() if line.startswith("touchpoints "))
    n = len(lines)
    assert touchpoints.split()[1:] == [f"{n:,}", f"{n - 1:,}", "1", "0"]


@pytest.mark.slow
def test_refresh_benchmark_times_a_pass_at_two_sizes(tmp_path: Path) -> None:
    results = run_script(
        "refresh", "--sizes", "2000,4000", "--new-events", "300", "--repeats", "1", "--work", str(tmp_path)
    )
    small, large = results["2000"], results["4000"]
    # The same cut in time at both sizes, the larger one landing one customer in two after it.
    assert small["cut_at"] == large["cut_at"] and large["customers_sampled"] == "1 in 2"
    assert small["new_events"] == 300 and large["new_events"] > 0
    assert small["history_events"] < large["history_events"]
    for size in ("2000", "4000"):
        run = results[f"{size}_this"]
        assert run["customers_refreshed"] > 0 and run["refresh_median_s"] > 0
        assert run["rows_written"]["journeys"] > 0
    assert results["ratio_this"] > 0
