"""The cycle and churn rules (pipelines/cycles.py), on events written by hand.

Each fixture states a customer's events, runs the ingestion's rules on them (`resolve_stages` then
`assign_cycles`, what `AssignJourneys` runs, batch by batch with the context a batch continues
from) and the refresher's Python model (`churn_rows`, at a watermark and finality point), and
compares with rows worked out by hand. Horizon: the default 180 days; `invoice` is company-sent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from parcours.config import load_config
from parcours.pipelines.cycles import CONTEXT_COLUMNS, assign_cycles, churn_rows
from parcours.pipelines.journeys import cycle_rules, resolve_stages
from parcours.pipelines.run import Ingestion
from parcours.refresh.declarations import declarations
from parcours.warehouse import DATASETS, Warehouse
from tests.harness import dataset_problems, run_model, run_python_model
from tests.pipeline_helpers import query, write_jsonl

CONFIG = load_config()
RULES = cycle_rules(CONFIG)
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HORIZON = timedelta(days=180)
assert RULES.inactivity == HORIZON and "invoice" in RULES.not_activity


def event(event_id: str, at: datetime, touchpoint: str, outcome: str | None = None, stage: str | None = None):
    return {"event_id": event_id, "customer_id": "c1", "occurred_at": at, "touchpoint": touchpoint,
            "outcome": outcome, "stage": stage}  # fmt: skip


def land(events: list[dict], context: pa.Table | None = None) -> pa.Table:
    """One batch through the ingestion's rules: the events sorted by time, typed like the landed ones."""
    schema = DATASETS["touchpoints"].arrow_schema
    names = ["event_id", "customer_id", "occurred_at", "touchpoint", "outcome", "stage"]
    rows = sorted(events, key=lambda e: (e["customer_id"], e["occurred_at"], e["event_id"]))
    table = pa.Table.from_pylist(rows, pa.schema([schema.field(n) for n in names]))
    return assign_cycles(resolve_stages(table, CONFIG), context, RULES)


def context_of(landed: pa.Table, before: datetime) -> pa.Table:
    """The latest landed event before `before`: what a batch starting there continues from."""
    earlier = [r for r in landed.to_pylist() if r["occurred_at"] < before]
    return pa.Table.from_pylist([earlier[-1]]).select(list(CONTEXT_COLUMNS))


def cycles_of(landed: pa.Table) -> list[tuple]:
    return [(r["event_id"], r["journey_cycle"], r["cycle_type"], r["step_index"]) for r in landed.to_pylist()]


def churns(landed: pa.Table, watermark: datetime, lateness: timedelta = timedelta(days=3)) -> list[tuple]:
    rows = churn_rows(landed, RULES, watermark, watermark - lateness).to_pylist()
    return [(r["journey_cycle"], r["churn_kind"], r["churned_at"], r["churn_stage"], r["churn_status"]) for r in rows]


def test_an_activity_exactly_at_the_horizon_finds_the_customer_churned_and_opens_a_win_back():
    landed = land([event("p", T0, "checkout", "purchase"), event("b", T0 + HORIZON, "product_page")])
    assert cycles_of(landed) == [("p", 0, "first_purchase", 1), ("b", 1, "win_back", 1)]
    assert churns(landed, T0 + 400 * DAY) == [(0, "silent", T0 + HORIZON, "purchase", "final")]


def test_one_second_before_the_horizon_the_customer_is_still_a_customer():
    landed = land(
        [event("p", T0, "checkout", "purchase"), event("b", T0 + HORIZON - timedelta(seconds=1), "app_session")]
    )
    assert cycles_of(landed) == [("p", 0, "first_purchase", 1), ("b", 1, "renewal", 1)]
    # Silent since `b`: churned at b + 180 days once the watermark is there, final 3 days later.
    b = T0 + HORIZON - timedelta(seconds=1)
    assert churns(landed, b + HORIZON - timedelta(seconds=1)) == []
    assert churns(landed, b + HORIZON) == [(1, "silent", b + HORIZON, "usage", "pending")]
    assert churns(landed, b + HORIZON + 3 * DAY) == [(1, "silent", b + HORIZON, "usage", "final")]


def test_a_prospect_who_goes_quiet_never_churns():
    landed = land([event("v", T0, "ad_impression"), event("w", T0 + 300 * DAY, "product_page")])
    assert cycles_of(landed) == [("v", 0, "first_purchase", 1), ("w", 0, "first_purchase", 2)]
    assert churns(landed, T0 + 900 * DAY) == []
    assert landed.column("churn_deadline").null_count == 2


def test_a_cancellation_then_silence_is_one_churn_not_two():
    landed = land(
        [
            event("p", T0, "checkout", "purchase"),
            event("u", T0 + 10 * DAY, "app_session"),
            event("x", T0 + 20 * DAY, "cancellation_request", "cancellation"),
        ]
    )
    assert cycles_of(landed) == [("p", 0, "first_purchase", 1), ("u", 1, "renewal", 1), ("x", 1, "renewal", 2)]
    # No producer stage on the cancellation: the stage of the last activity before it (app_session: usage).
    assert churns(landed, T0 + 900 * DAY) == [(1, "explicit", T0 + 20 * DAY, "usage", "final")]


def test_the_churn_stage_of_a_cancellation_the_producer_gave_a_stage():
    landed = land(
        [
            event("p", T0, "checkout", "purchase"),
            event("u", T0 + 10 * DAY, "app_session"),
            event("x", T0 + 20 * DAY, "cancellation_request", "cancellation", stage="support"),
        ]
    )
    assert churns(landed, T0 + 21 * DAY) == [(1, "explicit", T0 + 20 * DAY, "support", "final")]


def test_a_company_sent_touchpoint_inside_the_horizon_is_still_silence():
    landed = land(
        [
            event("p", T0, "checkout", "purchase"),
            event("i", T0 + 100 * DAY, "invoice"),
            event("b", T0 + 190 * DAY, "app_session"),
        ]
    )
    # The invoice opens the renewal cycle (the purchase closed cycle 0) but is no activity: the
    # login, 190 days after the purchase, comes after the deadline and opens a win-back.
    assert cycles_of(landed) == [("p", 0, "first_purchase", 1), ("i", 1, "renewal", 1), ("b", 2, "win_back", 1)]
    assert churns(landed, T0 + 400 * DAY) == [(1, "silent", T0 + HORIZON, "purchase", "final")]


def test_a_late_event_inside_the_horizon_withdraws_the_silent_churn():
    first = land([event("p", T0, "checkout", "purchase"), event("b", T0 + 200 * DAY, "app_session")])
    assert churns(first, T0 + 300 * DAY) == [(0, "silent", T0 + HORIZON, "purchase", "final")]
    # `m` (day 100) lands late: the batch recomputes the customer from it on, `b` included.
    late = T0 + 100 * DAY
    second = land([event("m", late, "app_session"), event("b", T0 + 200 * DAY, "app_session")], context_of(first, late))
    assert cycles_of(second) == [("m", 1, "renewal", 1), ("b", 1, "renewal", 2)]
    assert churns(second, T0 + 300 * DAY) == []


def test_a_late_event_after_the_win_back_opened_renumbers_the_later_steps():
    first = land(
        [
            event("p", T0, "checkout", "purchase"),
            event("u", T0 + 10 * DAY, "app_session"),
            event("r", T0 + 300 * DAY, "product_page"),
            event("s", T0 + 301 * DAY, "app_session"),
        ]
    )
    assert cycles_of(first) == [
        ("p", 0, "first_purchase", 1),
        ("u", 1, "renewal", 1),
        ("r", 2, "win_back", 1),
        ("s", 2, "win_back", 2),
    ]
    # `l` (day 250, already after the horizon of day 10) lands late: it opens the win-back and
    # the events after it move one step on; the churn of cycle 1 stands, dated day 10 + 180.
    late = T0 + 250 * DAY
    second = land(
        [event("l", late, "product_page"), event("r", T0 + 300 * DAY, "product_page"),
         event("s", T0 + 301 * DAY, "app_session")],
        context_of(first, late),
    )  # fmt: skip
    assert cycles_of(second) == [("l", 2, "win_back", 1), ("r", 2, "win_back", 2), ("s", 2, "win_back", 3)]
    # The refresher recomputes from cycle 1 (the cycle before the one `l` opens): its events and the new ones.
    recomputed = pa.concat_tables([first.slice(1, 1), second])
    assert churns(recomputed, T0 + 400 * DAY) == [(1, "silent", T0 + 190 * DAY, "usage", "final")]


def test_incremental_batches_number_as_one_batch_would():
    events = [
        event("p", T0, "checkout", "purchase"),
        event("i", T0 + 100 * DAY, "invoice"),
        event("b", T0 + 190 * DAY, "app_session"),
        event("q", T0 + 191 * DAY, "checkout", "purchase"),
        event("u", T0 + 200 * DAY, "app_session"),
    ]
    whole = land(events)
    for cut in range(1, len(events)):
        head = land(events[:cut])
        tail = land(events[cut:], head.slice(head.num_rows - 1).select(list(CONTEXT_COLUMNS)))
        assert pa.concat_tables([head, tail]).select(whole.column_names).equals(whole), cut


def test_the_declared_churns_model_gives_these_rows_through_the_beam_pipeline(tmp_path):
    """The refresher's path: the events of two customers, staged as shards, the declared model
    applied by a Beam pipeline on the local runner, its rows read back."""
    one = land([event("p", T0, "checkout", "purchase"), event("b", T0 + HORIZON, "product_page")])
    other = [
        {**e, "customer_id": "c2"}
        for e in [
            event("p2", T0, "checkout", "purchase"),
            event("x2", T0 + DAY, "cancellation_request", "cancellation"),
        ]
    ]
    both = pa.concat_tables([one, land(other)])  # fmt: skip
    watermark = T0 + 400 * DAY
    rows = run_python_model("churns", both, (RULES, watermark, watermark - 3 * DAY), tmp_path / "staging")
    assert [
        (r["customer_id"], r["journey_cycle"], r["churn_kind"], r["churned_at"], r["churn_stage"]) for r in rows
    ] == [
        ("c1", 0, "silent", T0 + HORIZON, "purchase"),
        ("c2", 1, "explicit", T0 + DAY, "purchase"),  # the last activity before it: the purchase
    ]
    assert not (tmp_path / "staging").exists()  # the shards are removed


@pytest.mark.parametrize(("status", "churned"), [("final", True), ("pending", False)])
def test_the_journeys_model_reads_the_landed_churn_and_counts_only_a_final_one(status, churned):
    rows = [
        {"event_id": "u", "customer_id": "c1", "occurred_at": T0, "touchpoint": "app_session", "stage": "usage",
         "journey_cycle": 1, "cycle_type": "renewal", "step_index": 1, "session_id": "s1", "channel": "web"},
    ]  # fmt: skip
    (unchurned,) = run_model("int_journeys_aggregated", {"stg_parcours__touchpoints": rows})
    assert unchurned["is_churned"] is False and unchurned["churn_status"] is None
    given = {
        "stg_parcours__touchpoints": rows,
        "stg_parcours__churns": [
            {"customer_id": "c1", "journey_cycle": 1, "churn_kind": "silent", "churned_at": T0 + HORIZON,
             "churn_stage": "usage", "churn_status": status},
        ],
    }  # fmt: skip
    (journey,) = run_model("int_journeys_aggregated", given)
    assert journey["is_churned"] is churned
    assert (journey["churn_kind"], journey["churned_at"], journey["churn_status"]) == ("silent", T0 + HORIZON, status)


def _line(event_id: str, customer: str, at: datetime, touchpoint: str, outcome: str | None = None) -> dict:
    return {"schema_version": 1, "event_id": event_id, "customer_id": customer, "occurred_at": at.isoformat(),
            "channel": "web", "touchpoint": touchpoint, "outcome": outcome,
            "revenue": 30.0 if outcome == "purchase" else None}  # fmt: skip


def backfill_and_read(data, root, lines: list[dict], more: tuple[dict, ...], churn_columns: str) -> tuple[list, list]:
    """Add `more` to the backfill file, land it (its refresh included), and read the `churns`
    rows (these columns) and each journey's churn."""
    lines.extend(more)
    write_jsonl(data / "touchpoints.jsonl", lines)
    warehouse = Warehouse(root)
    with warehouse.lock():
        Ingestion(warehouse, CONFIG).run_files(data, refresh=True)
    db = root / "parcours.duckdb"
    churned = query(db, f"select customer_id, journey_cycle, {churn_columns} from churns order by all")
    journeys = query(db, "select customer_id, journey_cycle, is_churned, churn_status from journeys order by all")
    return churned, journeys


def test_a_due_customer_with_no_new_event_changes_status_in_a_refresh(tmp_path):
    """Customer A buys and goes quiet; only customer B's events move the watermark on. A's silent
    churn (day 1 + 180) is pending once the watermark passes it, final once the finality point
    (watermark - 3 days) does: each refresh finds A due in the per-customer state, not in events."""
    data = tmp_path / "data"
    root = tmp_path / "w"
    lines = [
        _line("a1", "A", T0, "checkout", "purchase"),
        _line("a2", "A", T0 + DAY, "app_session"),
        _line("b1", "B", T0 + DAY, "app_session"),
    ]
    deadline = T0 + DAY + HORIZON

    def land_and_read(*more: dict) -> tuple[list, list]:
        return backfill_and_read(data, root, lines, more, "churn_kind, churned_at, churn_stage, churn_status")

    churned, journeys = land_and_read()
    assert churned == []
    assert journeys == [("A", 0, False, None), ("A", 1, False, None), ("B", 0, False, None)]

    churned, journeys = land_and_read(_line("b2", "B", deadline + DAY, "app_session"))  # watermark: deadline + 1 day
    assert churned == [("A", 1, "silent", deadline, "usage", "pending")]
    assert journeys == [("A", 0, False, None), ("A", 1, False, "pending"), ("B", 0, False, None)]

    churned, journeys = land_and_read(_line("b3", "B", deadline + 4 * DAY, "app_session"))  # point: deadline + 1 day
    assert churned == [("A", 1, "silent", deadline, "usage", "final")]
    assert journeys == [("A", 0, False, None), ("A", 1, True, "final"), ("B", 0, False, None)]
    (n_churned,) = query(root / "parcours.duckdb", "select sum(n_churned) from journey_stages_weekly")[0]
    assert n_churned == 1
    with duckdb.connect(str(root / "parcours.duckdb"), read_only=True) as con:
        for d in declarations():
            rows = con.sql(f"select * from {d.view}").to_arrow_table()
            problems = dataset_problems(rows, d)
            assert problems == [], d.name


def test_a_late_event_inside_the_lateness_horizon_withdraws_a_pending_churn(tmp_path):
    """A's silent churn is pending (the watermark passed its date, the finality point has not):
    an event of A dated before that deadline lands late, within the allowed lateness, and the
    churn is gone, never having been counted; the finality point then passes the old deadline
    and nothing reappears."""
    data = tmp_path / "data"
    root = tmp_path / "w"
    deadline = T0 + DAY + HORIZON
    lines = [
        _line("a1", "A", T0, "checkout", "purchase"),
        _line("a2", "A", T0 + DAY, "app_session"),
        _line("b1", "B", deadline + DAY, "app_session"),  # the watermark: one day past A's deadline
    ]

    def land_and_read(*more: dict) -> tuple[list, list]:
        return backfill_and_read(data, root, lines, more, "churned_at, churn_status")

    churned, journeys = land_and_read()
    assert churned == [("A", 1, deadline, "pending")]
    assert ("A", 1, False, "pending") in journeys
    # a3: two days before the deadline, so 3 days behind the watermark: within the 3-day lateness.
    churned, journeys = land_and_read(_line("a3", "A", deadline - 2 * DAY, "app_session"))
    assert churned == []
    assert ("A", 1, False, None) in journeys
    # B moves the watermark past the old deadline + lateness: A is due again at its new deadline
    # (a3 + 180 days), not yet reached: nothing to show.
    churned, journeys = land_and_read(_line("b2", "B", deadline + 4 * DAY, "app_session"))
    assert churned == []
    assert ("A", 1, False, None) in journeys
