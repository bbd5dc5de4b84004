"""Transitions: the directly-follows graph of touchpoints, the customer as the case.

Model fixtures are counted by hand; the landed datasets are compared with an independent plain
count over the generated files (a few lines of Python, not the models), after an incremental
landing with late events.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from parcours.config import load_config
from tests.harness import run_model
from tests.pipeline_helpers import land_in_two_runs, query

CONFIG = load_config()
T = datetime(2026, 2, 2, 9, tzinfo=UTC)  # a Monday


def tp(event_id: str, customer: str, minutes: float, touchpoint: str, cycle: int = 0, segment: str | None = "b2c"):
    return {
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": T + timedelta(minutes=minutes),
        "touchpoint": touchpoint,
        "segment": segment,
        "journey_cycle": cycle,
    }


EVENTS = [
    # c1: a self-loop, a step across channels, a purchase, then a renewal cycle a week later.
    tp("e1", "c1", 0, "home_page"),
    tp("e2", "c1", 1, "home_page"),
    tp("e3", "c1", 3, "product_page"),
    tp("e4", "c1", 10, "checkout"),
    tp("e5", "c1", 7 * 24 * 60, "renewal_reminder", cycle=1),
    # c2: one event only; its segment was never sent.
    tp("f1", "c2", 5, "home_page", segment=None),
    # c3: two events at the same time: ordered by event_id.
    tp("g2", "c3", 20, "product_page"),
    tp("g1", "c3", 20, "home_page"),
]
COLUMNS = [
    "customer_id",
    "journey_cycle",
    "from_event_id",
    "to_event_id",
    "from_touchpoint",
    "to_touchpoint",
    "gap_in_s",
]


def paired(events):
    rows = run_model(
        "int_customer_transitions_paired",
        {"stg_parcours__touchpoints": events},
        columns=COLUMNS,
        order_by="customer_id, from_at, from_event_id nulls first, to_event_id nulls last",
    )
    return [tuple(r[c] for c in COLUMNS) for r in rows]


def test_each_step_of_a_path_from_start_to_end_self_loops_and_ties_included():
    assert paired(EVENTS) == [
        ("c1", 0, None, "e1", "(start)", "home_page", None),
        ("c1", 0, "e1", "e2", "home_page", "home_page", 60),  # a self-loop, before any cleaning
        ("c1", 0, "e2", "e3", "home_page", "product_page", 120),
        ("c1", 0, "e3", "e4", "product_page", "checkout", 420),
        ("c1", 0, "e4", "e5", "checkout", "renewal_reminder", 7 * 24 * 3600 - 600),  # into the next cycle
        ("c1", 1, "e5", None, "renewal_reminder", "(end)", None),
        ("c2", 0, None, "f1", "(start)", "home_page", None),
        ("c2", 0, "f1", None, "home_page", "(end)", None),
        ("c3", 0, None, "g1", "(start)", "home_page", None),
        ("c3", 0, "g1", "g2", "home_page", "product_page", 0),
        ("c3", 0, "g2", None, "product_page", "(end)", None),
    ]


def test_from_a_later_cycle_on_the_step_into_it_is_left_to_the_earlier_cycle():
    # What the refresher gives the model when c1 is recomputed from cycle 1: its events of cycle
    # 1 on. The step e4 -> e5 belongs to cycle 0 and stays as landed; no `(start)` either.
    assert paired([e for e in EVENTS if e["customer_id"] == "c1" and e["journey_cycle"] >= 1]) == [
        ("c1", 1, "e5", None, "renewal_reminder", "(end)", None),
    ]


def transitions_of(events):
    return run_model("int_customer_transitions_paired", {"stg_parcours__touchpoints": events})


def test_the_weekly_counts_of_the_steps():
    given = {"stg_parcours__customer_transitions": transitions_of(EVENTS)}
    weekly = run_model(
        "int_transitions_counted_weekly", given, order_by="from_week, segment, from_touchpoint, to_touchpoint"
    )
    week, next_week = date(2026, 2, 2), date(2026, 2, 9)
    assert [
        (r["from_week"], r["segment"], r["from_touchpoint"], r["to_touchpoint"], r["n_transitions"]) for r in weekly
    ] == [
        (week, "b2c", "(start)", "home_page", 2),  # c1, c3
        (week, "b2c", "checkout", "renewal_reminder", 1),  # from e4's week
        (week, "b2c", "home_page", "home_page", 1),
        (week, "b2c", "home_page", "product_page", 2),  # c1, c3
        (week, "b2c", "product_page", "(end)", 1),
        (week, "b2c", "product_page", "checkout", 1),
        (week, "unknown", "(start)", "home_page", 1),  # c2: no segment sent
        (week, "unknown", "home_page", "(end)", 1),
        (next_week, "b2c", "renewal_reminder", "(end)", 1),
    ]


def plain_count(lines: list[dict]) -> Counter:
    """The steps of every customer's path, counted directly from the produced records."""
    by_customer: dict[str, list[dict]] = {}
    for record in lines:
        by_customer.setdefault(record["customer_id"], []).append(record)
    steps: Counter = Counter()
    for events in by_customer.values():
        events.sort(key=lambda e: (datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")), e["event_id"]))
        path = ["(start)", *(e["touchpoint"] for e in events), "(end)"]
        steps.update(itertools.pairwise(path))
    return steps


def test_landed_transitions_equal_a_plain_count_after_an_incremental_landing_with_late_events(tmp_path):
    lines, warehouse = land_in_two_runs(tmp_path, 150, 40, 17, CONFIG)
    db = warehouse.db_path
    ((late,),) = query(db, "select count(*) from dead_letters")
    landed = [json.loads(line) for line in lines]
    if late:  # events later than the allowed lateness are dead letters, not steps
        dead = {r[0] for r in query(db, "select record_id from dead_letters")}
        landed = [e for e in landed if e["event_id"] not in dead]
    expected = plain_count(landed)
    counted = dict(
        ((a, b), n)
        for a, b, n in query(
            db, "select from_touchpoint, to_touchpoint, sum(n_transitions)::BIGINT from transitions group by all"
        )
    )
    assert counted == dict(expected)
    # And the materialised rows are those of the model over every event.
    for dataset, model in (
        ("customer_transitions", "int_customer_transitions_paired"),
        ("transitions", "int_transitions_counted_weekly"),
    ):
        columns = "* exclude (is_complete)" if dataset == "transitions" else "* exclude (batch_seq)"
        assert query(db, f"select {columns} from {dataset} except select * from {model}") == []
        assert query(db, f"select * from {model} except select {columns} from {dataset}") == []
