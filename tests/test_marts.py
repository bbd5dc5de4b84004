"""The materialised marts: each batch recomputes only the sessions and journey cycles it touched,
and the `sessions` / `journeys` views read those rows instead of aggregating every touchpoint.

Hand-computed fixture (T = 2026-02-02 08:00 UTC, two backfill runs, one batch each):

    run 1: e1 (c1, T, home_page), e3 (c1, T+40m, product_page), e4 (c2, T, home_page)
    run 2: e2 (c1, T+20m, checkout, purchase)  -- late: lands between e1 and e3
           e5 (c2, T+2h, product_page)

After run 1: sessions c1 [e1], c1 [e3] (40 min apart), c2 [e4]; journeys c1 cycle 0 (e1, e3),
c2 cycle 0 (e4). Run 2 re-lands e3 with e2 (everything of c1 from e2 on): e2 continues e1's
session and its 20-min gaps join e3 to it, and e2's purchase closes cycle 0, so e3 opens cycle 1.
c2's e5 is 2 h after e4: a new session, same cycle. So batch 2 recomputes c1's sessions from T
and cycles from 0, c2's sessions from T+2h and cycles from 0 -- and not c2's session of e4.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from parcours.config import load_config
from parcours.pipelines.run import Ingestion
from parcours.refresh.declarations import PARTITIONS, WHOLE, declarations
from parcours.warehouse import DATASETS, ROLLUPS, Warehouse
from tests.pipeline_helpers import make_events, query, write_jsonl

CONFIG = load_config()
T = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)


def event(event_id: str, customer: str, minutes: int, touchpoint: str, outcome: str | None = None) -> dict:
    return {
        "schema_version": 1,
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": (T + timedelta(minutes=minutes)).isoformat(),
        "channel": "web",
        "touchpoint": touchpoint,
        "outcome": outcome,
        "revenue": 50.0 if outcome == "purchase" else None,
    }


RUN_1 = [event("e1", "c1", 0, "home_page"), event("e3", "c1", 40, "product_page"), event("e4", "c2", 0, "home_page")]
RUN_2 = [event("e2", "c1", 20, "checkout", "purchase"), event("e5", "c2", 120, "product_page")]


def land(data: Path, root: Path, batch_size: int | None = None, max_batches: int | None = None) -> list:
    warehouse = Warehouse(root)
    with warehouse.lock():
        return Ingestion(warehouse, CONFIG, batch_size=batch_size).run_files(data, max_batches=max_batches).batches


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("marts")
    write_jsonl(tmp / "run1" / "touchpoints.jsonl", RUN_1)
    write_jsonl(tmp / "run2" / "touchpoints.jsonl", RUN_2)
    land(tmp / "run1", tmp / "w")
    (batch,) = land(tmp / "run2", tmp / "w")
    assert batch.relanded == 1  # e3
    return tmp / "w" / "parcours.duckdb"


def test_the_views_show_the_sessions_and_journeys_computed_by_hand(two_runs: Path) -> None:
    assert query(
        two_runs,
        "select customer_id, started_at, ended_at, n_events, first_touchpoint, last_touchpoint, journey_cycle "
        "from sessions order by customer_id, started_at",
    ) == [
        ("c1", T, T + timedelta(minutes=40), 3, "home_page", "product_page", 0),
        ("c2", T, T, 1, "home_page", "home_page", 0),
        ("c2", T + timedelta(hours=2), T + timedelta(hours=2), 1, "product_page", "product_page", 0),
    ]
    assert query(
        two_runs,
        "select customer_id, journey_cycle, n_events, n_sessions, path, is_converted, revenue "
        "from journeys order by customer_id, journey_cycle",
    ) == [
        ("c1", 0, 2, 1, ["home_page", "checkout"], True, 50.0),
        ("c1", 1, 1, 1, ["product_page"], False, None),
        ("c2", 0, 2, 2, ["home_page", "product_page"], False, None),
    ]


def test_a_refresh_lands_rows_only_for_the_groups_its_batches_touched(two_runs: Path) -> None:
    # Run 1: batch 1, then its refresh (commit 2); run 2: batch 3, then its refresh (commit 4).
    assert query(
        two_runs,
        "select batch_seq, customer_id, started_at, n_events from raw_sessions order by batch_seq, customer_id, 3",
    ) == [
        (2, "c1", T, 1),
        (2, "c1", T + timedelta(minutes=40), 1),
        (2, "c2", T, 1),
        (4, "c1", T, 3),  # e1's session, now with e2 and e3
        (4, "c2", T + timedelta(hours=2), 1),  # e5's; e4's session was not touched
    ]
    assert query(
        two_runs, "select batch_seq, customer_id, journey_cycle, n_events from raw_journeys order by 1, 2, 3"
    ) == [(2, "c1", 0, 2), (2, "c2", 0, 1), (4, "c1", 0, 2), (4, "c1", 1, 1), (4, "c2", 0, 2)]
    assert query(
        two_runs,
        "select batch_seq, customer_id, sessions_from_at, journeys_from_cycle from raw_refreshes order by 1, 2",
    ) == [(2, "c1", T, 0), (2, "c2", T, 0), (4, "c1", T, 0), (4, "c2", T + timedelta(hours=2), 0)]


def test_materialised_marts_have_the_columns_of_their_models(two_runs: Path) -> None:
    for mart, model in (("sessions", "int_sessions_aggregated"), ("journeys", "int_journeys_aggregated")):
        assert query(two_runs, f"describe {mart}") == query(two_runs, f"describe {model}")
        assert query(two_runs, f"select * from {mart} except select * from {model}") == []
        assert query(two_runs, f"select * from {model} except select * from {mart}") == []
    # The Arrow schemas the refresh writes with are the models' columns, in order.
    for dataset in ("sessions", "journeys"):
        names = [row[0] for row in query(two_runs, f"describe int_{dataset}_aggregated")]
        assert DATASETS[dataset].arrow_schema.names == [*names, "batch_seq"]
    # And the rollups': their partition column first, read back from the folder name as a DATE.
    rollups = [(d.name, d.model) for d in declarations() if d.invalidation.kind == PARTITIONS]
    assert sorted(name for name, _ in rollups) == sorted(ROLLUPS)
    for dataset, model in rollups:
        spec = DATASETS[dataset]
        described = query(two_runs, f"describe {model}")
        assert described[0][:2] == (spec.partition_column, "DATE")
        assert spec.arrow_schema.names == [row[0] for row in described[1:]] + ["batch_seq"]
        # The view adds when its period is over (the conventions' `is_complete`).
        is_complete = ("is_complete", "BOOLEAN", "YES", None, None, None)
        assert query(two_runs, f"describe {dataset}") == [*described, is_complete]


def test_the_rollups_count_what_was_computed_by_hand(two_runs: Path) -> None:
    # After run 2: sessions c1 [e1 e2 e3] (40 min, 50.0 of revenue), c2 [e4], c2 [e5], all on the
    # web on 2026-02-02 (a Monday: its own ISO week); journeys c1/0 home_page > checkout
    # (converted), c1/1 product_page, c2/0 home_page > product_page. No segment in the events.
    # The day is not over at the finality point (the latest event less 3 days of lateness).
    day = T.date()
    assert query(two_runs, "select * from sessions_daily") == [
        (day, "web", "unknown", "unknown", 3, 0, 2, 5, 2400, 50.0, False)
    ]
    assert query(
        two_runs,
        "select stage, touchpoint, sum(n_events), sum(n_customers), sum(revenue) from touchpoints_daily "
        "group by all order by all",
    ) == [
        ("consideration", "home_page", 2, 2, None),
        ("consideration", "product_page", 2, 2, None),
        ("purchase", "checkout", 1, 1, 50.0),
    ]
    assert query(
        two_runs,
        "select started_week, stage, sum(n_journeys), sum(n_converted), sum(n_churned) "
        "from journey_stages_weekly group by all order by all",
    ) == [(day, "consideration", 3, 1, 0), (day, "purchase", 1, 1, 0)]
    assert query(
        two_runs,
        "select first_steps, n_journeys, n_events, is_converted from journey_paths_weekly order by all",
    ) == [
        (["home_page", "checkout"], 1, 2, True),
        (["home_page", "product_page"], 1, 2, False),
        (["product_page"], 1, 1, False),
    ]


def test_a_refresh_replaces_only_the_rollup_partitions_that_changed(tmp_path: Path) -> None:
    """Three days of events, then one late event on the first day: the refresh replaces that day's
    files (and its week's), and the other days keep the files of the first run."""
    days = [event(f"d{n}", f"c{n}", n * 24 * 60, "home_page") for n in range(3)]
    write_jsonl(tmp_path / "run1" / "touchpoints.jsonl", days)
    write_jsonl(tmp_path / "run2" / "touchpoints.jsonl", [event("late", "c9", 30, "product_page")])
    land(tmp_path / "run1", tmp_path / "w")
    land(tmp_path / "run2", tmp_path / "w")
    warehouse = Warehouse(tmp_path / "w")
    refresh = warehouse.manifests()[-1]
    replaced = {(f.dataset, f.partition) for f in refresh.files if f.dataset in ROLLUPS}
    first = T.date().isoformat()
    assert replaced == {(name, first) for name in ROLLUPS}
    removed = [Path(path) for path in refresh.removed]
    assert sorted(p.parent.name for p in removed if p.parent.parent.name in ROLLUPS) == [
        f"event_date={first}",
        f"from_week={first}",
        f"started_date={first}",
        f"started_week={first}",
        f"started_week={first}",
    ]
    # Besides the rollups, only the datasets recomputed whole by every pass replaced their files.
    whole = {d.name for d in declarations() if d.invalidation.kind == WHOLE}
    assert {p.parent.parent.name for p in removed if p.parent.parent.name not in ROLLUPS} <= whole
    kept = {
        (f.dataset, f.partition)
        for name in ROLLUPS
        for f in warehouse.live_files(name)
        if f.path not in {g.path for g in refresh.files}
    }
    later = {(T + timedelta(days=n)).date().isoformat() for n in (1, 2)}
    assert kept == {(name, day) for name in ("sessions_daily", "touchpoints_daily") for day in later}
    assert query(
        warehouse.db_path, "select started_date, sum(n_sessions) from sessions_daily group by 1 order by 1"
    ) == [
        (T.date(), 2),
        ((T + timedelta(days=1)).date(), 1),
        ((T + timedelta(days=2)).date(), 1),
    ]


def test_a_late_event_that_moves_a_session_to_the_day_before_empties_the_old_day(tmp_path: Path) -> None:
    """A session starting at 00:10 on 2026-02-03, then a late event at 23:50 the day before: one
    session of 2026-02-02 now. The refresh's new rows are all on the 2nd, so the 3rd must be
    recomputed for the row it supersedes, or it would still count the old session."""
    write_jsonl(tmp_path / "run1" / "touchpoints.jsonl", [event("e1", "c1", 970, "home_page")])
    write_jsonl(tmp_path / "run2" / "touchpoints.jsonl", [event("e0", "c1", 950, "ad_impression")])
    land(tmp_path / "run1", tmp_path / "w")
    db = tmp_path / "w" / "parcours.duckdb"
    assert query(db, "select started_date, n_sessions from sessions_daily") == [((T + timedelta(days=1)).date(), 1)]
    land(tmp_path / "run2", tmp_path / "w")
    assert query(db, "select started_date, n_sessions, n_events from sessions_daily") == [(T.date(), 1, 2)]


def test_incremental_marts_equal_a_full_recomputation_with_late_events(tmp_path: Path) -> None:
    """Events shuffled within two days (lateness is three), landed in ten batches by five runs (each
    ends with a refresh): the marts built run by run hold exactly the rows the models compute over
    every touchpoint at the end."""
    import random

    events = make_events(customers=40, per_customer=25, seed=11)
    rng = random.Random(5)
    shuffled = sorted(
        events, key=lambda e: datetime.fromisoformat(e["occurred_at"]) + timedelta(hours=rng.uniform(0, 48))
    )
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", shuffled)
    batches = [b for _ in range(5) for b in land(tmp_path / "data", tmp_path / "w", batch_size=100, max_batches=2)]
    assert len(batches) == 10 and sum(b.relanded for b in batches) > 0
    assert land(tmp_path / "data", tmp_path / "w", batch_size=100) == []
    db = tmp_path / "w" / "parcours.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        # Superseded rows exist, or this test would not exercise supersession.
        landed, current = con.execute(
            "select (select count(*) from raw_sessions), (select count(*) from sessions)"
        ).fetchone()
        assert landed > current
        for mart, model, key in (
            ("sessions", "int_sessions_aggregated", "session_id"),
            ("journeys", "int_journeys_aggregated", "customer_id, journey_cycle"),
            ("sessions_daily", "int_sessions_counted_daily", "all"),
            ("touchpoints_daily", "int_touchpoints_counted_daily", "all"),
            ("journey_stages_weekly", "int_journey_stages_counted_weekly", "all"),
            ("journey_paths_weekly", "int_journey_paths_counted_weekly", "all"),
        ):
            # A sum of doubles depends on the order DuckDB adds them in: compared to 1e-9.
            has_revenue = con.execute(f"select count(*) from (describe {mart}) where column_name = 'revenue'")
            columns = "* replace (round(revenue, 9) as revenue)" if has_revenue.fetchone()[0] else "*"
            # The view's `is_complete` is read at query time, not materialised: not the model's.
            rolled = mart.endswith(("_daily", "_weekly"))
            view = f"(select * exclude (is_complete) from {mart})" if rolled else mart
            materialised = con.execute(f"select {columns} from {view} order by {key}").fetchall()
            recomputed = con.execute(f"select {columns} from {model} order by {key}").fetchall()
            assert len(materialised) == len(recomputed) > 0
            assert materialised == recomputed, mart
        # The daily rollups were refreshed partition by partition: some live files are older than
        # the last refresh, or this test would only show a whole recomputation. (These events
        # span two ISO weeks, which the late events keep touching.)
        (last,) = con.execute("select max(batch_seq) from raw_sessions").fetchone()
        for name in ("sessions_daily", "touchpoints_daily"):
            assert con.execute(f"select count(*) from raw_{name} where batch_seq < ?", [last]).fetchone()[0] > 0
