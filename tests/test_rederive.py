"""`parcours refresh --full` when the rules of the touchpoints' sessions and cycles changed: the
landed rows re-derived by the ingestion transforms give the same warehouse as a fresh run
under the new rules, row for row, ids included (a session id is a hash of the customer and the
session's start, so the same session gets the same id however it was computed)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from parcours.config import load_config, parse_config
from parcours.pipelines.run import Ingestion
from parcours.refresh.declarations import declarations
from parcours.refresh.rederive import (
    MIXED,
    TOUCHPOINTS,
    NeedsConfiguration,
    recorded_fingerprint,
    touchpoints_fingerprint,
)
from parcours.refresh.refresher import catch_up, plan
from parcours.warehouse import Warehouse
from tests.harness import dataset_problems
from tests.pipeline_helpers import make_events, parcours, query, reference_sessions, view_sessions, write_jsonl
from tests.test_refresh import arrow

CONFIG = load_config()
EVENTS = make_events(customers=12, per_customer=12, seed=5)
GAP = timedelta(minutes=45)  # the fixture's gaps of 31 and 45 minutes now stay within a session
NEW_GAP = CONFIG.model_copy(update={"sessions": CONFIG.sessions.model_copy(update={"inactivity_gap": GAP})})
# Every view compared whole, but for the columns that say when a row version was written.
VIEWS = {
    "touchpoints": "select * exclude (batch_seq, ingested_at) from touchpoints order by event_id",
    "sessions": "select * from sessions order by session_id",
    "journeys": "select * from journeys order by customer_id, journey_cycle",
    "sessions_daily": "select * from sessions_daily order by all",
    "touchpoints_daily": "select * from touchpoints_daily order by all",
    "journey_stages_weekly": "select * from journey_stages_weekly order by all",
    "journey_paths_weekly": "select * from journey_paths_weekly order by all",
    "paths": "select * from paths order by all",
    "path_edges": "select * from path_edges order by all",
}


def land(data: Path, root: Path, config=CONFIG) -> None:
    warehouse = Warehouse(root)
    with warehouse.lock():
        Ingestion(warehouse, config).run_files(data, refresh=True)


def fresh(tmp_path: Path, config, *folders: str) -> Path:
    """A warehouse that landed the same files (so the same lineage), in turn, under `config` only."""
    root = tmp_path / "fresh"
    for folder in folders:
        land(tmp_path / folder, root, config)
    return root


def assert_same_warehouse(root: Path, expected: Path) -> None:
    for view, sql in VIEWS.items():
        got, want = query(root / "parcours.duckdb", sql), query(expected / "parcours.duckdb", sql)
        assert len(got) == len(want) > 0, view
        assert got == want, view
    db = root / "parcours.duckdb"
    for d in declarations():
        rows = arrow(db, f"select * from {d.view}")
        assert dataset_problems(rows, d) == []
    assert query(db, "select count(*) from parcours_datasets where is_stale") == [(0,)]
    assert all(not p.reasons for p in plan(Warehouse(root)))


def test_full_after_a_new_inactivity_gap_gives_the_sessions_of_a_fresh_run_with_that_gap(tmp_path):
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", EVENTS[:100])
    root = tmp_path / "w"
    land(tmp_path / "data", root)
    db = root / "parcours.duckdb"
    before = view_sessions(db)
    assert before == reference_sessions(EVENTS[:100], CONFIG.sessions.inactivity_gap, CONFIG.sessions.max_duration)
    edited = tmp_path / "journey.yaml"
    text = (Path(__file__).parents[1] / "parcours" / "journey.yaml").read_text(encoding="utf-8")
    assert "  inactivity_gap: 30m\n" in text and "  batch_size: 500000\n" in text
    # And shards of about 20 rows: 100 events of 12 customers in ceil(100 / 20) = 5 shards at most.
    text = text.replace("  inactivity_gap: 30m\n", "  inactivity_gap: 45m\n").replace("500000\n", "20\n")
    edited.write_text(text, encoding="utf-8")
    assert parse_config(text).sessions.inactivity_gap == GAP and parse_config(text).ingest.batch_size == 20

    said = parcours("refresh", "--dry-run", "--config", str(edited), "-w", str(root))
    assert said.returncode == 0, said.stderr
    assert "touchpoints: the touchpoints' sessions and cycles were derived under other rules" in said.stderr
    assert "inactivity_gap_in_s 1800 -> 2700" in said.stderr
    seqs = Warehouse(root).manifests().seqs
    done = parcours("refresh", "--full", "--config", str(edited), "-w", str(root))
    assert done.returncode == 0, done.stderr
    assert "the sessions and cycles of 100 touchpoints re-derived" in done.stderr
    wh = Warehouse(root)
    assert wh.manifests().seqs == [*seqs, seqs[-1] + 1]  # one commit
    latest = wh.manifests()[-1]
    assert latest.counts["rederived_touchpoints"] == 100 and latest.counts["rederived_customers"] == 12
    assert 1 < latest.counts["rederived_shards"] <= 5
    assert recorded_fingerprint(wh) == touchpoints_fingerprint(NEW_GAP.settings_record())

    after = view_sessions(db)
    assert after == reference_sessions(EVENTS[:100], GAP, CONFIG.sessions.max_duration)  # the rule, by hand
    assert after != before  # the fixture has gaps between 30 and 45 minutes
    assert query(db, "select count(*), count(distinct event_id) from touchpoints") == [(100, 100)]
    assert_same_warehouse(root, fresh(tmp_path, NEW_GAP, "data"))

    # The next ingestion continues from the re-derived state, as if it had always been so.
    write_jsonl(tmp_path / "more" / "touchpoints.jsonl", EVENTS[100:])
    land(tmp_path / "more", root, NEW_GAP)
    assert recorded_fingerprint(Warehouse(root)) == touchpoints_fingerprint(NEW_GAP.settings_record())  # one rule
    assert_same_warehouse(root, fresh(tmp_path, NEW_GAP, "more"))
    assert view_sessions(db) == reference_sessions(EVENTS, GAP, CONFIG.sessions.max_duration)


def reference_cycles(events: list[dict], churn_outcomes: set[str]) -> dict[str, tuple[int, str, int]]:
    """The cycle rule one event at a time: event_id -> (journey_cycle, cycle_type, step_index).
    A purchase, renewal or churn outcome closes its cycle; the next one is a win-back after a
    churn, else a renewal cycle; the first is the first-purchase cycle."""
    by_customer: dict[str, list[tuple[datetime, str, str | None]]] = {}
    for e in events:
        at = datetime.fromisoformat(e["occurred_at"])
        by_customer.setdefault(e["customer_id"], []).append((at, e["event_id"], e["outcome"]))
    cycles = {}
    for rows in by_customer.values():
        cycle, kind, step = 0, "first_purchase", 0
        for _at, event_id, outcome in sorted(rows):
            step += 1
            cycles[event_id] = (cycle, kind, step)
            if outcome in ("purchase", "renewal") or outcome in churn_outcomes:
                cycle, kind, step = cycle + 1, "win_back" if outcome in churn_outcomes else "renewal", 0
    return cycles


def test_full_after_new_churn_outcomes_gives_the_cycles_of_a_fresh_run(tmp_path):
    # Cancellations stop being churn: they no longer close a cycle, so later cycles renumber.
    no_cancellation = CONFIG.model_copy(
        update={"churn": CONFIG.churn.model_copy(update={"outcomes": ("renewal_refused",)})}
    )
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", EVENTS[:90])
    root = tmp_path / "w"
    land(tmp_path / "data", root)
    # A later run under the new rules: its customers' new ranges follow them, older rows do not.
    write_jsonl(tmp_path / "more" / "touchpoints.jsonl", EVENTS[90:])
    land(tmp_path / "more", root, no_cancellation)
    wh = Warehouse(root)
    assert recorded_fingerprint(wh) == MIXED
    stale = {p.dataset: p for p in plan(wh)}
    assert stale[TOUCHPOINTS].stale_definition and "re-derives them" in stale[TOUCHPOINTS].reasons[0]
    # Stale under the old rules too: some rows follow the new ones.
    assert TOUCHPOINTS in {p.dataset for p in plan(wh, CONFIG)}
    refused = parcours("refresh", "--full", "-w", str(root))
    assert refused.returncode == 2 and "`parcours refresh --full --config FILE`" in refused.stdout + refused.stderr
    assert "churn_outcomes ['cancellation'] -> ['renewal_refused']" in stale[TOUCHPOINTS].reasons[0]
    with wh.lock(), pytest.raises(NeedsConfiguration, match="--config FILE"):
        catch_up(wh, full=True)
    assert Warehouse(root).manifests().seqs == wh.manifests().seqs  # nothing committed

    landed = "select event_id, journey_cycle, cycle_type, step_index from touchpoints"
    db = root / "parcours.duckdb"
    mixed = {row[0]: tuple(row[1:]) for row in query(db, landed)}
    assert mixed != reference_cycles(EVENTS, {"renewal_refused"})
    with wh.lock():
        report = catch_up(Warehouse(root), full=True, config=no_cancellation)
    assert report is not None and report.rederived == len(EVENTS)
    assert set(report.rebuilt) == {d.name for d in declarations()}
    cycles = {row[0]: tuple(row[1:]) for row in query(db, landed)}
    assert cycles == reference_cycles(EVENTS, {"renewal_refused"})
    assert cycles != reference_cycles(EVENTS, {"cancellation"})  # the fixture has cancellations
    assert query(db, "select count(*) from journeys where is_churned") == [(0,)]
    assert_same_warehouse(root, fresh(tmp_path, no_cancellation, "data", "more"))


def test_the_fingerprint_follows_the_session_and_churn_rules_only():
    base = touchpoints_fingerprint(CONFIG.settings_record())
    changed = {
        "sessions.inactivity_gap": {"sessions": {"inactivity_gap": timedelta(minutes=31)}},
        "sessions.max_duration": {"sessions": {"max_duration": timedelta(hours=12)}},
        "churn.outcomes": {"churn": {"outcomes": ("cancellation", "non_renewal")}},
        "churn.inactivity": {"churn": {"inactivity": timedelta(days=90)}},
        "churn.not_activity": {"churn": {"not_activity": ("invoice",)}},
    }
    for key, update in changed.items():
        ((section, values),) = update.items()
        config = CONFIG.model_copy(update={section: getattr(CONFIG, section).model_copy(update=values)})
        assert touchpoints_fingerprint(config.settings_record()) != base, key
    # Every sessions.* and churn.* key is one of them (a new key must reach the fingerprint).
    assert {f"{s}.{k}" for s in ("sessions", "churn") for k in type(getattr(CONFIG, s)).model_fields} == set(changed)
    # The stage mapping is not: landed rows keep their stage.
    remapped = CONFIG.model_copy(update={"touchpoints": {**CONFIG.touchpoints, "home_page": CONFIG.stages[-1]}})
    shorter = CONFIG.model_copy(
        update={"path_cleaning": CONFIG.path_cleaning.model_copy(update={"max_path_length": 3})}
    )
    for config in (remapped, shorter):
        assert touchpoints_fingerprint(config.settings_record()) == base


def test_a_warehouse_older_than_the_record_is_taken_as_current(tmp_path, monkeypatch):
    import parcours.pipelines.run as run

    monkeypatch.setattr(run, "after_ingest", lambda *args: {})  # ingest commits without the record
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", EVENTS[:30])
    root = tmp_path / "w"
    land(tmp_path / "data", root)
    wh = Warehouse(root)
    assert recorded_fingerprint(wh) is None
    assert TOUCHPOINTS not in {p.dataset for p in plan(wh, NEW_GAP)}  # unknown: not stale
    monkeypatch.undo()
    write_jsonl(tmp_path / "more" / "touchpoints.jsonl", EVENTS[30:40])
    land(tmp_path / "more", root, NEW_GAP)  # the first commit to record it: the rules it ran under
    assert recorded_fingerprint(Warehouse(root)) == touchpoints_fingerprint(NEW_GAP.settings_record())
    assert dataclasses.asdict(Warehouse(root).derived_state()[TOUCHPOINTS])["rows_written"] == 10


@pytest.mark.slow
def test_the_rederive_benchmark_runs(tmp_path):
    out = tmp_path / "rederive.json"
    script = Path(__file__).parents[1] / "benchmarks" / "rederive.py"
    done = subprocess.run(
        [sys.executable, str(script), "--events", "800", "--shard-rows", "1000,100", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["shard_rows"]: r for r in json.loads(out.read_text())}  # the last of 2 repeats each
    assert results[1000]["shards"] == 1 < results[100]["shards"]
    assert results[1000]["rows"] == results[100]["rows"] > 0
