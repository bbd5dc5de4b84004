"""`transitions_summary`: the directly-follows graph over all time, overall and per segment.

The model fixture is a dozen customers whose expected rows are counted by hand (below each
customer, its steps and gaps); the landed dataset, after an incremental landing with late
events, is compared with the model over every event and with an independent plain count
(a few lines of Python over the produced records, not the models).
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from parcours.config import load_config
from parcours.refresh.declarations import by_name
from tests.harness import dataset_problems, run_model
from tests.pipeline_helpers import land_in_two_runs, query

CONFIG = load_config()
T = datetime(2026, 2, 2, 9, tzinfo=UTC)
H, P, C = "home_page", "product_page", "checkout"
S, E = "(start)", "(end)"


def path(customer: str, segment: str | None, *steps: tuple[float, str] | tuple[float, str, str | None]):
    """A customer's events: (seconds after the previous event, touchpoint[, segment])."""
    events, at = [], T
    for index, step in enumerate(steps):
        at += timedelta(seconds=step[0])
        events.append(
            {
                "event_id": f"{customer}-{index}",
                "customer_id": customer,
                "occurred_at": at,
                "touchpoint": step[1],
                "segment": step[2] if len(step) == 3 else segment,
                "journey_cycle": 0,
            }
        )
    return events


EVENTS = [
    *path("c01", "b2c", (0, H), (60, P), (120, C)),  # S>H, H>P 60, P>C 120, C>E
    *path("c02", "b2c", (0, H), (30, P)),  # S>H, H>P 30, P>E
    *path("c03", "b2c", (0, H), (10, H), (50, P)),  # S>H, H>H 10 (a self-loop), H>P 50, P>E
    *path("c04", "b2c", (0, H), (90, P), (20, H), (40, P)),  # S>H, H>P 90, P>H 20, H>P 40, P>E
    *path("c05", "b2b", (0, H), (20, P)),  # S>H, H>P 20, P>E
    *path("c06", "b2b", (0, P), (300, C)),  # S>P, P>C 300, C>E
    *path("c07", "b2b", (0, H), (100, P), (600, C)),  # S>H, H>P 100, P>C 600, C>E
    # Moves from b2c to b2b: a step is in the segment of its from-event. S>H b2c, H>P 70 b2c,
    # P>H 5 b2c, H>P 15 b2b, P>E b2b: in H>P under both segments, one customer overall.
    *path("c08", "b2c", (0, H), (70, P), (5, H, "b2b"), (15, P, "b2b")),
    *path("c09", None, (0, H), (45, P)),  # no segment sent: S>H, H>P 45, P>E
    *path("c10", None, (0, P)),  # S>P, P>E
    *path("c11", "b2c", (0, C), (0, C)),  # two events at one time: S>C, C>C 0, C>E
    *path("c12", "b2b", (0, H)),  # S>H, H>E
]

# (breakdown, segment, from, to): (n_transitions, n_customers, median_gap_in_s), by hand.
EXPECTED = {
    ("overall", "all", S, C): (1, 1, None),  # c11
    ("overall", "all", S, H): (9, 9, None),
    ("overall", "all", S, P): (2, 2, None),  # c06, c10
    ("overall", "all", C, E): (4, 4, None),  # c01, c06, c07, c11
    ("overall", "all", C, C): (1, 1, 0.0),
    ("overall", "all", H, E): (1, 1, None),  # c12
    ("overall", "all", H, H): (1, 1, 10.0),
    # 15 20 30 40 [45 50] 60 70 90 100: ten steps of eight customers (c04 twice, c08 twice).
    ("overall", "all", H, P): (10, 8, 47.5),
    ("overall", "all", P, E): (7, 7, None),  # c02 c03 c04 c05 c08 c09 c10
    ("overall", "all", P, C): (3, 3, 300.0),  # 120 300 600
    ("overall", "all", P, H): (2, 2, 12.5),  # c04 20, c08 5
    ("segment", "b2b", S, H): (3, 3, None),  # c05 c07 c12
    ("segment", "b2b", S, P): (1, 1, None),
    ("segment", "b2b", C, E): (2, 2, None),
    ("segment", "b2b", H, E): (1, 1, None),
    ("segment", "b2b", H, P): (3, 3, 20.0),  # c08 15, c05 20, c07 100
    ("segment", "b2b", P, E): (2, 2, None),  # c05, c08
    ("segment", "b2b", P, C): (2, 2, 450.0),  # 300, 600
    ("segment", "b2c", S, C): (1, 1, None),
    ("segment", "b2c", S, H): (5, 5, None),  # c01 c02 c03 c04 c08
    ("segment", "b2c", C, E): (2, 2, None),  # c01, c11
    ("segment", "b2c", C, C): (1, 1, 0.0),
    ("segment", "b2c", H, H): (1, 1, 10.0),
    ("segment", "b2c", H, P): (6, 5, 55.0),  # 30 40 [50 60] 70 90
    ("segment", "b2c", P, E): (3, 3, None),  # c02 c03 c04
    ("segment", "b2c", P, C): (1, 1, 120.0),
    ("segment", "b2c", P, H): (2, 2, 12.5),
    ("segment", "unknown", S, H): (1, 1, None),
    ("segment", "unknown", S, P): (1, 1, None),
    ("segment", "unknown", H, P): (1, 1, 45.0),
    ("segment", "unknown", P, E): (2, 2, None),
}
KEY = ("breakdown", "segment", "from_touchpoint", "to_touchpoint")


def summarised(events=EVENTS):
    transitions = run_model("int_customer_transitions_paired", {"stg_parcours__touchpoints": events})
    return run_model("int_transitions_summarised", {"stg_parcours__customer_transitions": transitions})


def test_the_summary_overall_and_per_segment_counted_by_hand():
    rows = summarised()
    got = {tuple(r[k] for k in KEY): (r["n_transitions"], r["n_customers"], r["median_gap_in_s"]) for r in rows}
    assert got == EXPECTED
    assert {r["through_date"] for r in rows} == {T.date()}


def test_customers_are_distinct_per_grouping_set_never_summed_and_steps_add_up_in_each_breakdown():
    rows = summarised()
    by = defaultdict(list)
    for r in rows:
        by[(r["breakdown"], r["from_touchpoint"], r["to_touchpoint"])].append(r)
    # H>P: 5 + 3 + 1 customers over the segments, 8 overall (c08 is in two segments).
    assert sum(r["n_customers"] for r in by[("segment", H, P)]) == 9
    assert [r["n_customers"] for r in by[("overall", H, P)]] == [8]
    # Every step once in each breakdown: 41 steps of the twelve paths (4+3+4+5+3+3+4+5+3+2+3+2).
    totals = {b: sum(r["n_transitions"] for r in rows if r["breakdown"] == b) for b in ("overall", "segment")}
    assert totals == {"overall": 41, "segment": 41}


def test_the_declared_grain_checks_hold_and_catch_a_summed_breakdown():
    derived = by_name()["transitions_summary"]
    rows = summarised()
    assert dataset_problems(rows, derived) == []
    broken = [dict(r) for r in rows]
    next(r for r in broken if r["breakdown"] == "segment")["n_transitions"] += 1
    assert any("n_transitions" in p for p in dataset_problems(broken, derived))
    gapless = [dict(r) for r in rows]
    next(r for r in gapless if r["from_touchpoint"] == H and r["to_touchpoint"] == P)["median_gap_in_s"] = None
    assert any("median_gap_in_s is null" in p for p in dataset_problems(gapless, derived))


def plain_summary(records: list[dict]) -> dict:
    """Every (breakdown, segment, from, to) counted directly from the produced records: steps,
    distinct customers and the median gap (statistics.median: the mean of the middle two)."""
    by_customer: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_customer[record["customer_id"]].append(record)
    steps, customers, gaps = defaultdict(int), defaultdict(set), defaultdict(list)
    for customer, events in by_customer.items():
        for e in events:
            e["at"] = datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00"))
        events.sort(key=lambda e: (e["at"], e["event_id"]))
        first = {"touchpoint": S, "segment": events[0].get("segment"), "at": None}
        last = {"touchpoint": E}
        for a, b in itertools.pairwise([first, *events, last]):
            segment = a["segment"] or "unknown"
            # gap_in_s as customer_transitions has it: the second boundaries crossed (DuckDB's
            # date_diff('second', ...)), not the elapsed time rounded down.
            gap = None if a["at"] is None or "at" not in b else int(b["at"].timestamp() // 1 - a["at"].timestamp() // 1)
            for key in (("overall", "all"), ("segment", segment)):
                group = (*key, a["touchpoint"], b["touchpoint"])
                steps[group] += 1
                customers[group].add(customer)
                if gap is not None:
                    gaps[group].append(gap)
    return {g: (steps[g], len(customers[g]), statistics.median(gaps[g]) if gaps[g] else None) for g in steps}


def test_an_incremental_landing_with_late_events_equals_a_full_recompute_and_a_plain_count(tmp_path):
    lines, warehouse = land_in_two_runs(tmp_path, 150, 40, 17, CONFIG)
    db = tmp_path / "w" / "parcours.duckdb"
    # Run 2's refresh recomputed it (current through the latest commit, that refresh).
    ((through,),) = query(db, "select through_seq from parcours_datasets where name = 'transitions_summary'")
    assert through == warehouse.manifests()[-1].seq
    landed = [json.loads(line) for line in lines]
    dead = {r[0] for r in query(db, "select record_id from dead_letters")}
    landed = [e for e in landed if e["event_id"] not in dead]  # later than the allowed lateness
    columns = ", ".join([*KEY, "n_transitions", "n_customers", "median_gap_in_s"])
    rows = query(db, f"select {columns} from transitions_summary")
    got = {tuple(r[:4]): tuple(r[4:]) for r in rows}
    assert got == plain_summary(landed)
    # The materialised rows are those of the model over every current transition.
    every = f"{columns}, through_date"
    model = "int_transitions_summarised"
    assert query(db, f"select {every} from transitions_summary except select {every} from {model}") == []
    assert query(db, f"select {every} from {model} except select {every} from transitions_summary") == []
    derived = by_name()["transitions_summary"]
    names = [*KEY, "n_transitions", "n_customers", "median_gap_in_s", "through_date"]
    table = [dict(zip(names, r, strict=True)) for r in query(db, f"select {every} from transitions_summary")]
    assert dataset_problems(table, derived) == []
