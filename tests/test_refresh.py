"""The refresher as users drive it: `parcours refresh` (--dry-run, --full), what survey-only
batches do, and the `parcours_datasets` view."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from parcours.config import load_config
from parcours.pipelines.run import Ingestion
from parcours.refresh.declarations import by_name, declarations, fingerprint
from parcours.refresh.refresher import catch_up, plan
from parcours.warehouse import REFRESH, Warehouse, kind_of
from tests.harness import dataset_problems, grain_problems
from tests.pipeline_helpers import arrow, csat_answers, make_events, parcours, query, write_jsonl

CONFIG = load_config()


def with_discovery(events: list[dict]) -> list[dict]:
    """`events` with a search result a minute before each customer's first event: every customer
    enters the lifecycle funnels (their step 1 is discovery, which `make_events` never draws)."""
    first: dict[str, dict] = {}
    for e in events:
        if e["customer_id"] not in first or e["occurred_at"] < first[e["customer_id"]]["occurred_at"]:
            first[e["customer_id"]] = e
    found = [
        {
            **e,
            "event_id": f"d-{e['customer_id']}",
            "occurred_at": (datetime.fromisoformat(e["occurred_at"]) - timedelta(minutes=1)).isoformat(),
            "touchpoint": "search_result",
            "outcome": None,
            "revenue": None,
        }
        for e in first.values()
    ]
    return sorted(events + found, key=lambda e: (e["occurred_at"], e["event_id"]))


EVENTS = with_discovery(make_events(customers=12, per_customer=12, seed=5))


def land(data: Path, root: Path, config=CONFIG, *, refresh: bool = False) -> None:
    warehouse = Warehouse(root)
    with warehouse.lock():
        Ingestion(warehouse, config).run_files(data, refresh=refresh)


def models_equal_marts(db: Path, dataset: str, model: str) -> bool:
    """The materialised rows are exactly what the model computes over every event (a view's
    `is_complete` is computed when it is read, not materialised)."""
    view = f"(select * exclude (is_complete) from {dataset})" if by_name()[dataset].conventions.period else dataset
    return (
        query(db, f"select * from {view} except select * from {model}") == []
        and query(db, f"select * from {model} except select * from {view}") == []
    )


def test_pending_work_is_said_then_done_by_parcours_refresh(tmp_path):
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", EVENTS)
    root = tmp_path / "w"
    land(tmp_path / "data", root)
    wh = Warehouse(root)
    pending = {p.dataset: p for p in plan(wh)}
    assert sorted(pending) == sorted(d.name for d in declarations())
    assert all("1 commit(s) since the last refresh (seq 1..1" in p.reasons[0] for p in pending.values())
    assert all(f"{len(EVENTS):,} records landed" in p.reasons[0] for p in pending.values())

    said = parcours("refresh", "--dry-run", "-w", str(root))
    assert said.returncode == 0, said.stderr
    assert "sessions: 1 commit(s) since the last refresh" in said.stderr
    assert Warehouse(root).marts_pending() != []  # a dry run changes nothing

    done = parcours("refresh", "-w", str(root))
    assert done.returncode == 0, done.stderr
    assert "marts 2:" in done.stderr
    wh = Warehouse(root)
    assert kind_of(wh.manifests()[-1]) == REFRESH and wh.marts_pending() == []
    assert all(not p.reasons for p in plan(wh))
    again = parcours("refresh", "-w", str(root))
    assert "nothing to refresh" in again.stderr
    assert "sessions: current" in parcours("refresh", "--dry-run", "-w", str(root)).stderr

    db = root / "parcours.duckdb"
    assert models_equal_marts(db, "sessions", "int_sessions_aggregated")
    assert models_equal_marts(db, "journeys", "int_journeys_aggregated")


def test_parcours_datasets_shows_each_dataset_as_its_last_refresh_left_it(tmp_path):
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", EVENTS)
    root = tmp_path / "w"
    land(tmp_path / "data", root, refresh=True)
    db = root / "parcours.duckdb"
    rows = query(
        db,
        "select name, view_name, grain, fingerprint, current_fingerprint, is_stale, refreshed_seq, "
        "as_of, rows, cadence, through_seq from parcours_datasets order by name",
    )
    settings = Warehouse(root).manifests()[-1].settings
    by_name = {d.name: d for d in declarations()}
    assert [r[0] for r in rows] == sorted(by_name)
    latest = max(e["occurred_at"] for e in EVENTS)
    for name, view, grain, stored, current, stale, seq, as_of, n_rows, cadence, through in rows:
        assert view == by_name[name].view and tuple(grain) == by_name[name].grain
        assert stored == current == fingerprint(by_name[name], settings) and stale is False
        assert seq == 2 and cadence == "every_pass" and through == 2  # every pass: current through its refresh
        # One file source, read to its end by the batch just before the refresh (not idle yet):
        # the watermark is its latest event, the finality point the allowed lateness before it.
        point = datetime.fromisoformat(latest) - timedelta(seconds=settings["allowed_lateness_in_s"])
        assert as_of == point
        (count,) = query(db, f"select count(*) from {view}")[0]
        assert n_rows == count
    # The conventions each declares: which timestamp puts a row in which period, in which zone.
    periods = query(db, "select name, period_column, period_unit, period_by, period_timezone from parcours_datasets")
    assert sorted(p for p in periods if p[1] is not None) == [
        ("funnel_steps", "period_start", "week", "entered_at", "UTC"),
        ("journey_paths_weekly", "started_week", "week", "started_at", "UTC"),
        ("journey_stages_weekly", "started_week", "week", "started_at", "UTC"),
        ("sessions_daily", "started_date", "day", "started_at", "UTC"),
        ("touchpoints_daily", "event_date", "day", "occurred_at", "UTC"),
        ("transitions", "from_week", "week", "from_at", "UTC"),
    ]
    counts = {r[0]: r[8] for r in rows}
    # Independently: one session row per distinct session id among the landed events.
    assert counts["sessions"] == query(db, "select count(distinct session_id) from touchpoints")[0][0]
    assert counts["journeys"] == query(db, "select count(distinct (customer_id, journey_cycle)) from touchpoints")[0][0]


def test_a_survey_only_batch_is_refreshed_too(tmp_path):
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", EVENTS)
    root = tmp_path / "w"
    land(tmp_path / "data", root, refresh=True)
    write_jsonl(tmp_path / "answers" / "surveys.jsonl", csat_answers(EVENTS)[:5])
    land(tmp_path / "answers", root)
    wh = Warehouse(root)
    assert [m.seq for m in wh.marts_pending()] == [3]
    with wh.lock():
        report = catch_up(wh)
    # No touchpoint changed: only the answers' customers' survey attachments were refreshed.
    customers = {a["customer_id"] for a in csat_answers(EVENTS)[:5]}
    assert report is not None and report.seq == 4 and report.customers == len(customers)
    assert report.sessions == report.journeys == 0 and report.rows["survey_attachments"] == 5
    assert Warehouse(root).marts_pending() == []
    assert query(root / "parcours.duckdb", "select count(*) from survey_answers") == [(5,)]
    assert query(root / "parcours.duckdb", "select max(refreshed_seq) from parcours_datasets") == [(4,)]


def test_full_rebuilds_the_datasets_whose_definition_changed_and_keeps_the_others(tmp_path):
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", EVENTS[:100])
    root = tmp_path / "w"
    land(tmp_path / "data", root, refresh=True)
    sessions_files = {f.path for f in Warehouse(root).live_files("sessions")}
    # A later run under a shorter path limit: the journeys' definition changed (its model reads
    # max_path_length); the sessions' did not.
    shorter = CONFIG.model_copy(
        update={"path_cleaning": CONFIG.path_cleaning.model_copy(update={"max_path_length": 3})}
    )
    write_jsonl(tmp_path / "more" / "touchpoints.jsonl", EVENTS[100:])
    land(tmp_path / "more", root, config=shorter, refresh=True)
    db = root / "parcours.duckdb"
    stale = dict(query(db, "select name, is_stale from parcours_datasets"))
    # The path datasets read max_path_length too (their variants are cut there).
    stale_ones = ("journeys", "paths", "path_edges")
    assert stale == {d.name: d.name in stale_ones for d in declarations()}
    # Incremental refreshes mix the two definitions: journeys cut at 200 and at 3 steps.
    reasons = {p.dataset: p for p in plan(Warehouse(root))}
    assert reasons["journeys"].stale_definition and not reasons["sessions"].stale_definition
    assert "parcours refresh --full" in reasons["journeys"].reasons[-1]

    done = parcours("refresh", "--full", "-w", str(root))
    assert done.returncode == 0, done.stderr
    rebuilt = done.stderr.split("rebuilt whole (")[1].split(")")[0]
    assert sorted(rebuilt.split(", ")) == sorted(stale_ones)
    assert query(db, "select count(*) from parcours_datasets where is_stale") == [(0,)]
    assert query(db, "select max(len(path)), max(path_length) > 3 from journeys") == [(3, True)]  # cut, length kept
    assert models_equal_marts(db, "journeys", "int_journeys_aggregated")
    assert models_equal_marts(db, "journey_paths_weekly", "int_journey_paths_counted_weekly")
    assert models_equal_marts(db, "journey_stages_weekly", "int_journey_stages_counted_weekly")
    assert models_equal_marts(db, "path_edges", "(select * exclude (as_of_date) from int_path_edges_counted)")
    # The shares and their intervals are the refresher's (the statistics step), not the model's.
    landed = "(select * exclude (share, share_low, share_high) from paths)"
    model = "(select * exclude (as_of_date) from int_journey_variants_counted)"
    assert query(db, f"select * from {landed} except select * from {model}") == []
    assert query(db, f"select * from {model} except select * from {landed}") == []
    assert query(db, "select count(*) from paths where abs(share - n_journeys / n_ended) > 1e-12") == [(0,)]
    # The sessions were kept: their earlier files are still live.
    assert sessions_files <= {f.path for f in Warehouse(root).live_files("sessions")}
    assert models_equal_marts(db, "sessions", "int_sessions_aggregated")


@pytest.mark.parametrize("flag", ["--dry-run", ""])
def test_refresh_of_a_folder_that_is_no_warehouse_fails_clearly(tmp_path, flag):
    result = parcours("refresh", *([flag] if flag else []), "-w", str(tmp_path / "nowhere"))
    assert result.returncode == 2  # the CLI's code for a usage error (`fail`)
    assert "is not a parcours warehouse" in result.stdout + result.stderr


def test_every_declared_dataset_meets_its_declared_grain_and_a_broken_one_is_caught(tmp_path):
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", EVENTS)
    write_jsonl(tmp_path / "data" / "surveys.jsonl", csat_answers(EVENTS))
    root = tmp_path / "w"
    land(tmp_path / "data", root, refresh=True)
    db = root / "parcours.duckdb"
    for d in declarations():
        rows = arrow(db, f"select * from {d.view}")
        assert rows.num_rows > 0, d.name
        assert dataset_problems(rows, d) == [], d.name
    # A session row landed twice, and a journey whose counts break its identity: both reported.
    sessions = arrow(db, "select * from sessions")
    twice = pa.concat_tables([sessions, sessions.slice(0, 1)])
    declared = {d.name: d for d in declarations()}
    assert grain_problems(twice, declared["sessions"].grain) == [
        f"2 rows share the key (\"session_id\") = ['{sessions.column('session_id')[0].as_py()}']"
    ]
    journeys = arrow(db, "select * exclude (n_sessions), n_events + 1 as n_sessions from journeys")
    problems = grain_problems(journeys, declared["journeys"].grain, identities=declared["journeys"].identities)
    assert problems == [f"{journeys.num_rows} rows break n_sessions between 1 and n_events"]
