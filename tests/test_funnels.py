"""Funnels: each customer's best attempt (pipelines/funnels.py) and the steps counted from it
(`funnel_steps`).

The rules are checked on hand-written customers, each mode with skips, loops, repeated steps,
ties in time, an exclusion and an open window; `ordered` and `strict` against ClickHouse's
`windowFunnel` (through chdb) on hypothesis-generated event sequences; the counts of
`funnel_steps` on hand-written attempts, with the declared identity and the rates' Wilson
intervals computed here from the formula.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from datetime import UTC, datetime, timedelta

import chdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parcours.compact import compact
from parcours.config import ConfigError, load_config, parse_config
from parcours.pipelines.funnels import FunnelRule, customer_attempt, funnel_rows, funnel_rules
from parcours.refresh.declarations import by_name
from parcours.refresh.statistics import add_intervals
from parcours.warehouse.datasets import FUNNEL_ARROW
from tests.harness import dataset_problems, run_model
from tests.pipeline_helpers import arrow, land_in_two_runs, parcours, query

CONFIG = load_config()
T = datetime(2026, 2, 2, 9, tzinfo=UTC)  # a Monday
STAGES = CONFIG.stages
STAGE_OF = dict(CONFIG.touchpoints)


def ev(customer: str, event_id: str, hours: float, touchpoint: str, *, activity: bool = True, channel="web"):
    return {
        "customer_id": customer,
        "event_id": event_id,
        "occurred_at": T + timedelta(hours=hours),
        "touchpoint": touchpoint,
        "stage": STAGE_OF[touchpoint],
        "is_activity": activity,
        "journey_cycle": 0,
        "channel": channel,
        "segment": "b2c",
        "product_line": "fibre",
    }


def rows_of(events: list[dict], *rules: FunnelRule) -> dict[str, dict]:
    table = pa.Table.from_pylist(
        sorted(events, key=lambda e: (e["customer_id"], e["occurred_at"], e["event_id"])),
        schema=pa.schema(
            [
                ("customer_id", pa.string()),
                ("event_id", pa.string()),
                ("occurred_at", pa.timestamp("us", tz="UTC")),
                ("touchpoint", pa.string()),
                ("stage", pa.string()),
                ("is_activity", pa.bool_()),
                ("journey_cycle", pa.int32()),
                ("channel", pa.string()),
                ("segment", pa.string()),
                ("product_line", pa.string()),
            ]
        ),
    )
    out = funnel_rows(table, rules)
    assert out.schema == FUNNEL_ARROW
    return {f"{r['customer_id']}/{r['funnel']}": r for r in out.to_pylist()}


def touchpoints(name: str, mode: str, window_h: float, *steps: str, exclusions=()) -> FunnelRule:
    return FunnelRule(name, mode, int(window_h * 3600), tuple(("touchpoint", s) for s in steps), tuple(exclusions))


H = timedelta(hours=1)
ORDERED = touchpoints("o", "ordered", 10, "home_page", "product_page", "cart", "checkout")
STRICT = touchpoints("s", "strict", 10, "home_page", "product_page", "cart", "checkout")
ANY = touchpoints("a", "any_order", 10, "home_page", "product_page", "cart", "checkout")


def test_ordered_skips_loops_repeats_ties_and_the_window():
    rows = rows_of(
        [
            # c1: other events between the steps, a loop back to home_page: reaches 4.
            ev("c1", "a1", 0, "home_page"),
            ev("c1", "a2", 1, "review_read"),
            ev("c1", "a3", 2, "product_page"),
            ev("c1", "a4", 3, "home_page"),
            ev("c1", "a5", 4, "cart"),
            ev("c1", "a6", 5, "checkout"),
            # c2: skips product_page: stays at 1 (ordered does not forgive a skip).
            ev("c2", "b1", 0, "home_page"),
            ev("c2", "b2", 1, "cart"),
            ev("c2", "b3", 2, "checkout"),
            # c3: the cart comes 11 h after the first home_page but 9 h after the second one:
            # the later attempt gets there (the latest start is kept).
            ev("c3", "c1", 0, "home_page"),
            ev("c3", "c2", 1, "product_page"),
            ev("c3", "c3", 2, "home_page"),
            ev("c3", "c4", 3, "product_page"),
            ev("c3", "c5", 11, "cart"),
            # c4: product_page and home_page at the same time: ordered by event id (d1 < d2),
            # so home_page (d1) comes first and product_page (d2) fills step 2 at the same instant.
            ev("c4", "d2", 0, "product_page"),
            ev("c4", "d1", 0, "home_page"),
            # c5: exactly the window after step 1 still counts (inclusive).
            ev("c5", "e1", 0, "home_page"),
            ev("c5", "e2", 10, "product_page"),
            # c6: never at step 1: not in the funnel.
            ev("c6", "f1", 0, "product_page"),
        ],
        ORDERED,
    )
    assert {k: r["best_step"] for k, r in rows.items()} == {"c1/o": 4, "c2/o": 1, "c3/o": 3, "c4/o": 2, "c5/o": 2}
    assert rows["c1/o"]["reached_at"] == [T, T + 2 * H, T + 4 * H, T + 5 * H]
    assert rows["c3/o"]["entered_at"] == T + 2 * H and rows["c3/o"]["entry_event_id"] == "c3"
    assert rows["c3/o"]["reached_at"] == [T + 2 * H, T + 3 * H, T + 11 * H]
    assert rows["c4/o"]["reached_at"] == [T, T]
    # The last window a customer opened closes 10 h after their last home_page.
    assert rows["c1/o"]["windows_close_at"] == T + 13 * H
    assert rows["c3/o"]["windows_close_at"] == T + 12 * H


def test_the_best_attempt_is_the_first_to_reach_the_furthest_step():
    rows = rows_of(
        [
            # Two attempts reach step 2; the first to get there (day 0) is the best attempt, not the
            # faster one on day 2.
            ev("c1", "a1", 0, "home_page", channel="store"),
            ev("c1", "a2", 5, "product_page"),
            ev("c1", "a3", 48, "home_page", channel="app"),
            ev("c1", "a4", 49, "product_page"),
        ],
        ORDERED,
    )
    assert rows["c1/o"]["best_step"] == 2
    assert rows["c1/o"]["entered_at"] == T and rows["c1/o"]["channel"] == "store"
    assert rows["c1/o"]["windows_close_at"] == T + 58 * H


def test_strict_stops_at_an_unrelated_event_and_the_best_attempt_counts():
    rows = rows_of(
        [
            # c1: review_read between home_page and product_page: that attempt stops at 1; the later
            # clean attempt reaches 4 (ClickHouse alone would stop at the first review_read).
            ev("c1", "a1", 0, "home_page"),
            ev("c1", "a2", 1, "review_read"),
            ev("c1", "a3", 2, "home_page"),
            ev("c1", "a4", 3, "product_page"),
            ev("c1", "a5", 4, "cart"),
            ev("c1", "a6", 5, "checkout"),
            # c2: a step whose previous step was not reached (cart before product_page) stops it.
            ev("c2", "b1", 0, "home_page"),
            ev("c2", "b2", 1, "cart"),
            ev("c2", "b3", 2, "product_page"),
            # c3: repeats of a reached step do not stop it (as windowFunnel 'strict_order').
            ev("c3", "c1", 0, "home_page"),
            ev("c3", "c2", 1, "product_page"),
            ev("c3", "c3", 2, "product_page"),
            ev("c3", "c4", 3, "cart"),
            # c4: what the company sends is not activity: the invoice does not break the chain.
            ev("c4", "d1", 0, "home_page"),
            ev("c4", "d2", 1, "invoice", activity=False),
            ev("c4", "d3", 2, "product_page"),
        ],
        STRICT,
    )
    assert {k: r["best_step"] for k, r in rows.items()} == {"c1/s": 4, "c2/s": 1, "c3/s": 3, "c4/s": 2}
    assert rows["c1/s"]["reached_at"] == [T + 2 * H, T + 3 * H, T + 4 * H, T + 5 * H]


def test_any_order_counts_distinct_steps_within_the_window():
    rows = rows_of(
        [
            ev("c1", "a1", 0, "cart"),
            ev("c1", "a2", 1, "home_page"),
            ev("c1", "a3", 2, "cart"),  # a repeat adds nothing
            ev("c1", "a4", 3, "product_page"),
            ev("c1", "a5", 20, "checkout"),  # outside every window with the others
            ev("c2", "b1", 0, "checkout"),
        ],
        ANY,
    )
    assert {k: r["best_step"] for k, r in rows.items()} == {"c1/a": 3, "c2/a": 1}
    # The attempts from a1 and from a2 both reach 3 steps at 3 h: the later start is the best
    # attempt (home_page, then the repeated cart, then product_page).
    assert rows["c1/a"]["reached_at"] == [T + H, T + 2 * H, T + 3 * H]
    assert rows["c1/a"]["windows_close_at"] == T + 30 * H  # the checkout opened the last window


def test_furthest_forgives_skipped_stages_within_the_window():
    lifecycle = funnel_rules(CONFIG.funnels_record())[0]
    assert lifecycle.name == "lifecycle" and lifecycle.mode == "furthest"
    day = 24
    rows = rows_of(
        [
            # c1: discovery, then straight to checkout (purchase): consideration is reached too,
            # at the checkout's time; then app_session (usage) on day 30: reaches 5 of 5.
            ev("c1", "a1", 0, "ad_impression"),
            ev("c1", "a2", 2 * day, "checkout"),
            ev("c1", "a3", 30 * day, "app_session"),
            # c2: the welcome e-mail (activation) is sent by the company: not a step; stays at 3.
            ev("c2", "b1", 0, "search_result"),
            ev("c2", "b2", 1, "product_page"),
            ev("c2", "b3", 2, "cart"),
            ev("c2", "b4", 3, "welcome_email", activity=False),
            # c3: usage 91 days after discovery is outside the 90-day window.
            ev("c3", "c1", 0, "social_post"),
            ev("c3", "c2", 91 * day, "feature_use"),
            # c4: starts at consideration: never at step 1 (discovery), not in the funnel.
            ev("c4", "d1", 0, "home_page"),
            ev("c4", "d2", 1, "cart"),
            # c5: a support call (a stage after usage) reaches every step.
            ev("c5", "e1", 0, "referral_visit"),
            ev("c5", "e2", 5, "support_call"),
        ],
        lifecycle,
    )
    assert {k: r["best_step"] for k, r in rows.items()} == {
        "c1/lifecycle": 5,
        "c2/lifecycle": 3,
        "c3/lifecycle": 1,
        "c5/lifecycle": 5,
    }
    assert rows["c1/lifecycle"]["reached_at"] == [
        T,
        T + 2 * day * H,
        T + 2 * day * H,
        T + 30 * day * H,
        T + 30 * day * H,
    ]
    assert rows["c5/lifecycle"]["reached_at"] == [T] + [T + 5 * H] * 4


def test_an_exclusion_between_steps_of_the_best_attempt_removes_the_customer():
    rule = touchpoints(
        "x", "ordered", 10, "home_page", "product_page", "cart", exclusions=[("touchpoint", "complaint", 1, 3)]
    )
    rows = rows_of(
        [
            ev("c1", "a1", 0, "home_page"),
            ev("c1", "a2", 1, "complaint"),
            ev("c1", "a3", 2, "product_page"),
            ev("c1", "a4", 3, "cart"),
            # c2: the complaint after the last step is not between steps.
            ev("c2", "b1", 0, "home_page"),
            ev("c2", "b2", 1, "product_page"),
            ev("c2", "b3", 2, "cart"),
            ev("c2", "b4", 3, "complaint"),
            # c3: did not reach step 3: a complaint within the window after step 1 excludes.
            ev("c3", "c1", 0, "home_page"),
            ev("c3", "c2", 4, "complaint"),
            # c4: ... but not one after the window.
            ev("c4", "d1", 0, "home_page"),
            ev("c4", "d2", 11, "complaint"),
        ],
        rule,
    )
    assert {k: r["is_excluded"] for k, r in rows.items()} == {"c1/x": True, "c2/x": False, "c3/x": True, "c4/x": False}


def test_the_configuration_resolves_steps_and_refuses_bad_funnels():
    assert [(s.kind, s.name) for s in CONFIG.funnels["lifecycle_ordered"].steps] == [
        ("stage", "discovery"),
        ("stage", "consideration"),
        ("stage", "purchase"),
        ("stage", "activation"),
    ]
    base = "stages: [discovery, purchase]\ntouchpoints: {ad: discovery, cart: purchase}\nfunnels:\n"
    mixed = parse_config(base + "  f: {steps: [ad, {stage: purchase}], window: 2d}\n")
    assert [(s.kind, s.name) for s in mixed.funnels["f"].steps] == [("touchpoint", "ad"), ("stage", "purchase")]
    for bad, message in (
        ("  f: {steps: [ad, nowhere]}\n", "neither a stage nor a configured touchpoint"),
        ("  f: {steps: [ad, cart], mode: sideways}\n", "mode 'sideways'"),
        ("  f: {steps: [ad]}\n", "2 to 32 steps"),
        ("  f: {steps: [purchase, discovery], mode: furthest}\n", "stages in lifecycle order"),
        ("  f: {steps: [ad, cart], window: -1d}\n", "window must be a positive duration"),
        ("  f: {steps: [ad, cart], exclusions: [{touchpoint: ad, after_step: 2}]}\n", "after_step 2"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_config(base + bad)


# --------------------------------------------------------------------------- ClickHouse reference

STEPS = ("A", "B", "C", "D")


def window_funnel(names: list[str], seconds: list[int], window: int, mode: str = "") -> int:
    values = ", ".join(f"({t}, '{e}')" for t, e in zip(seconds, names, strict=True))
    modes = f", '{mode}'" if mode else ""
    conditions = ", ".join(f"e = '{s}'" for s in STEPS)
    query = (
        f"select windowFunnel({window}{modes})(toDateTime(t), {conditions}) from values('t UInt32, e String', {values})"
    )
    return int(chdb.query(query, "CSV").data().strip())


def strict_reference(names: list[str], seconds: list[int], window: int) -> int:
    """`strict_order` from each step-1 event (ClickHouse stops at the history's first break)."""
    starts = [i for i, name in enumerate(names) if name == STEPS[0]]
    return max((window_funnel(names[i:], seconds[i:], window, "strict_order") for i in starts), default=0)


sequences = st.integers(min_value=1, max_value=14).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from([*STEPS, "X"]), min_size=n, max_size=n),
        st.lists(st.integers(min_value=1, max_value=400), min_size=n, max_size=n, unique=True).map(sorted),
        st.sampled_from([5, 30, 120, 1000]),
    )
)


def ours(mode: str, names: list[str], seconds: list[int], window: int) -> int:
    rule = FunnelRule("f", mode, window, tuple(("touchpoint", s) for s in STEPS))
    times = np.array(seconds, dtype=np.int64) * 1_000_000
    attempt, _, _ = customer_attempt(
        rule, np.array(names, dtype=object), np.array(["s"] * len(names), dtype=object), times
    )
    return attempt.level


@settings(max_examples=150, deadline=None)
@given(sequences)
def test_ordered_equals_clickhouse_window_funnel(sequence):
    names, seconds, window = sequence
    assert ours("ordered", names, seconds, window) == window_funnel(names, seconds, window)


@settings(max_examples=150, deadline=None)
@given(sequences)
def test_strict_equals_clickhouse_strict_order_from_each_step_one_event(sequence):
    names, seconds, window = sequence
    assert ours("strict", names, seconds, window) == strict_reference(names, seconds, window)


# --------------------------------------------------------------------------- funnel_steps

POINT = T + timedelta(days=10)  # the finality point of the fixture
WEEK = T.date()


def attempt(customer: str, best: int, *, hours_to: list[float] | None = None, closes_days: float = 5, **extra):
    hours_to = hours_to if hours_to is not None else [float(k) for k in range(best)]
    return {
        "customer_id": customer,
        "funnel": "lifecycle_ordered",
        "n_steps": 4,
        "best_step": best,
        "entered_at": T,
        "reached_at": [T + timedelta(hours=h) for h in hours_to],
        "windows_close_at": T + timedelta(days=closes_days),
        "is_excluded": extra.get("excluded", False),
        "entry_event_id": f"{customer}-1",
        "journey_cycle": 0,
        "channel": extra.get("channel", "web"),
        "segment": extra.get("segment", "b2c"),
        "product_line": extra.get("product_line"),
        "batch_seq": 1,
    }


ATTEMPTS = [
    # Settled (every window closed at day 5, the point is day 10):
    attempt("k1", 4, hours_to=[0, 1, 2, 30]),  # converted; 30 h to the last step
    attempt("k2", 4, hours_to=[0, 2, 4, 10], channel="store"),  # converted; 10 h
    attempt("k3", 2, hours_to=[0, 5]),  # not converted past consideration
    attempt("k4", 1, hours_to=[0]),  # not converted past discovery
    attempt("k5", 3, hours_to=[0, 1, 3], segment=None),
    # Open at the point (closes on day 12): in progress at their best step.
    attempt("k6", 2, hours_to=[0, 1], closes_days=12),
    attempt("k7", 4, hours_to=[0, 1, 2, 3], closes_days=12),  # converted, but its windows are open
    # Excluded: in no count but n_excluded.
    attempt("k8", 3, hours_to=[0, 1, 2], excluded=True),
]


def steps_rows(attempts):
    rows = run_model(
        "int_funnel_steps_counted",
        {"stg_parcours__customer_funnels": attempts},
        finality_point=POINT,
        order_by="funnel, breakdown, channel, segment, product_line, step_index",
    )
    return [r for r in rows if r["funnel"] == "lifecycle_ordered"]


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's score interval, from its formula (Wilson 1927)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_funnel_steps_counts_each_step_with_the_declared_identity_and_honest_censoring():
    rows = steps_rows(ATTEMPTS)
    overall = [r for r in rows if r["breakdown"] == "overall"]
    assert [r["step"] for r in overall] == ["discovery", "consideration", "purchase", "activation"]
    got = [
        (r["n_reached"], r["n_moved_on"], r["n_in_progress"], r["n_not_converted"], r["n_excluded"], r["n_settled"])
        for r in overall
    ]
    # reached: all 7 non-excluded at step 1; k4 stops there (settled); k3 and k6 stop at 2 (k6
    # open); k5 stops at 3; k1, k2, k7 reach 4. Settled: k1-k5.
    assert got == [
        (7, 6, 0, 1, 1, 5),
        (6, 4, 1, 1, 1, 4),
        (4, 3, 0, 1, 1, 3),
        (3, 0, 0, 0, 1, 2),
    ]
    for r, after in zip(overall, [*overall[1:], None], strict=True):  # n_reached(k) = n_reached(k+1) + ...
        if after is not None:
            assert r["n_reached"] == after["n_reached"] + r["n_in_progress"] + r["n_not_converted"]
    assert [r["n_settled_previous"] for r in overall] == [None, 5, 4, 3]
    assert {r["n_settled_start"] for r in overall} == {5}
    # Time to convert over settled customers only (k7's 3 h is left out): k1 30 h, k2 10 h.
    assert overall[3]["median_time_to_convert_in_s"] == 20 * 3600
    assert overall[1]["median_time_to_convert_in_s"] == 1.5 * 3600  # k1 1 h, k2 2 h, k3 5 h, k5 1 h
    assert overall[0]["median_time_to_convert_in_s"] is None


def test_the_rates_are_over_settled_customers_with_their_wilson_interval():
    derived = by_name()["funnel_steps"]
    table = pa.Table.from_pylist(steps_rows(ATTEMPTS))
    table = add_intervals(table, derived.intervals)
    overall = [r for r in table.to_pylist() if r["breakdown"] == "overall"]
    # activation from purchase: 2 of the 3 settled who reached purchase; from the start: 2 of 5.
    assert overall[3]["conversion_from_previous"] == pytest.approx(2 / 3)
    assert overall[3]["conversion_from_start"] == pytest.approx(2 / 5)
    low, high = wilson(2, 3)
    assert (overall[3]["conversion_from_previous_low"], overall[3]["conversion_from_previous_high"]) == (
        pytest.approx(low),
        pytest.approx(high),
    )
    assert overall[0]["conversion_from_previous"] is None and overall[0]["conversion_from_start"] == 1.0


def test_funnel_steps_breakdowns_and_grain_checks():
    rows = steps_rows(ATTEMPTS)
    by_segment = {(r["segment"], r["step_index"]): r["n_reached"] for r in rows if r["breakdown"] == "segment"}
    assert by_segment[("unknown", 1)] == 1 and by_segment[("b2c", 1)] == 6
    by_channel = {(r["channel"], r["step_index"]): r["n_reached"] for r in rows if r["breakdown"] == "channel"}
    assert by_channel[("store", 4)] == 1 and by_channel[("web", 4)] == 2
    assert {r["period_start"] for r in rows} == {WEEK}
    derived = by_name()["funnel_steps"]
    table = add_intervals(pa.Table.from_pylist(rows), derived.intervals)
    assert dataset_problems(table, derived) == []


# --------------------------------------------------------------------------- landed, end to end


def landed_events(db) -> pa.Table:
    """Every current touchpoint, as the refresher gives the model its events."""
    return arrow(db, "select * from stg_parcours__touchpoints order by customer_id, occurred_at, event_id")


def test_landed_funnels_after_an_incremental_landing_equal_windowfunnel_and_a_full_recompute(tmp_path):
    _, warehouse = land_in_two_runs(tmp_path, 160, 60, 23, CONFIG)
    db = warehouse.db_path
    events = landed_events(db)
    # The current rows, after two passes, are those of one recompute over every current event.
    current = arrow(db, "select * exclude (batch_seq, is_converted) from customer_funnels").sort_by(
        [("customer_id", "ascending"), ("funnel", "ascending")]
    )
    recomputed = funnel_rows(events, funnel_rules(CONFIG.funnels_record())).sort_by(
        [("customer_id", "ascending"), ("funnel", "ascending")]
    )
    assert current.to_pylist() == recomputed.to_pylist()
    assert current.num_rows > 100

    # lifecycle_ordered's n_reached per step equals ClickHouse's windowFunnel over the landed
    # activity (times in microseconds; ties in time, if any, broken by event id as ours are).
    activity = query(
        db,
        "select customer_id, epoch_us(occurred_at) + row_number() over "
        "(partition by customer_id, occurred_at order by event_id) - 1, stage "
        "from stg_parcours__touchpoints where is_activity order by all",
    )
    table = pa.table(
        {
            "customer_id": [a[0] for a in activity],
            "t": pa.array([a[1] for a in activity], pa.uint64()),
            "stage": [a[2] for a in activity],
        }
    )
    path = tmp_path / "activity.parquet"
    pq.write_table(table, path)
    window = 30 * 86_400 * 1_000_000
    levels = chdb.query(
        f"select level, count() from (select customer_id, windowFunnel({window})(t, stage = 'discovery', "
        "stage = 'consideration', stage = 'purchase', stage = 'activation') as level "
        f"from file('{path}', Parquet) group by customer_id) where level > 0 group by level order by level",
        "CSV",
    ).data()
    per_level = {int(a): int(b) for a, b in (line.split(",") for line in levels.strip().splitlines())}
    reached = {k: sum(n for level, n in per_level.items() if level >= k) for k in range(1, 5)}
    counted = dict(
        query(
            db,
            "select step_index, sum(n_reached + n_excluded)::BIGINT from funnel_steps "
            "where funnel = 'lifecycle_ordered' and breakdown = 'overall' group by all",
        )
    )
    assert counted == reached

    # The same steps in strict mode: ClickHouse's 'strict_order' from each step-1 event of each
    # customer (arrayReduce over the suffix), the best counting, against our rule's best_step.
    strict = FunnelRule("s", "strict", 30 * 86_400, tuple(("stage", s) for s in STAGES[:4]))
    ours_strict = Counter(r["best_step"] for r in funnel_rows(events, [strict]).to_pylist())
    conditions = ", ".join(f"arrayMap(x -> x.2 = '{s}', arraySlice(evs, i))" for s in STAGES[:4])
    reduce = f"arrayReduce('windowFunnel({window}, \\'strict_order\\')', arrayMap(x -> x.1, arraySlice(evs, i)), "
    levels = chdb.query(
        f"""
        with per as (
            select customer_id, arraySort(x -> x.1, groupArray((t, stage))) as evs
            from file('{path}', Parquet) group by customer_id
        )
        select level, count() from (
            select arrayMax(i -> if(evs[i].2 = 'discovery', {reduce}{conditions}), 0), arrayEnumerate(evs)) as level
            from per
        ) where level > 0 group by level
        """,
        "CSV",
    ).data()
    assert {int(a): int(b) for a, b in (line.split(",") for line in levels.strip().splitlines())} == ours_strict
    assert len(ours_strict) > 2  # customers at several levels

    # The command line re-aggregates the weeks: counts summed, rates from the summed settled
    # counts (checked here against the rows), the median over the customers themselves.
    printed = parcours("funnel", "lifecycle_ordered", "--warehouse", str(warehouse.root), "--json")
    assert printed.returncode == 0, printed.stderr
    steps = json.loads(printed.stdout)
    assert {s["step_index"]: s["n_reached"] + s["n_excluded"] for s in steps} == reached
    settled = dict(
        query(
            db,
            "select step_index, sum(n_settled)::BIGINT from funnel_steps "
            "where funnel = 'lifecycle_ordered' and breakdown = 'overall' group by all",
        )
    )
    for s in steps[1:]:
        trials = settled[s["step_index"] - 1]
        assert s["conversion_from_previous"] == (
            pytest.approx(settled[s["step_index"]] / trials) if trials >= 20 else None
        )
    ((median,),) = query(
        db,
        "select median(epoch(reached_at[2]) - epoch(entered_at)) from customer_funnels, parcours_finality "
        "where funnel = 'lifecycle_ordered' and best_step >= 2 and not is_excluded "
        "and windows_close_at <= finality_point",
    )
    assert steps[1]["median_time_to_convert_in_s"] == pytest.approx(median)
    by_segment = json.loads(
        parcours("funnel", "lifecycle_ordered", "-w", str(warehouse.root), "--json", "--by", "segment").stdout
    )
    assert sum(s["n_reached"] for s in by_segment if s["step_index"] == 1) == steps[0]["n_reached"]
    segments = {r[0] for r in query(db, "select distinct coalesce(segment, 'unknown') from customer_funnels")}
    assert {s["value"] for s in by_segment} == segments and len(segments) > 1
    # --since/--until select weeks of entry: a Wednesday selects its whole week.
    weeks = query(
        db,
        "select period_start, sum(n_reached)::BIGINT from funnel_steps where funnel = 'lifecycle_ordered' "
        "and breakdown = 'overall' and step_index = 1 group by all order by 1",
    )
    (week, n_week), *_ = weeks[1:]
    middle = (week + timedelta(days=2)).isoformat()
    one = json.loads(
        parcours(
            "funnel", "lifecycle_ordered", "-w", str(warehouse.root), "--json", "--since", middle, "--until", middle
        ).stdout
    )
    assert one[0]["n_reached"] == n_week and n_week < steps[0]["n_reached"]
    table = parcours("funnel", "lifecycle_ordered", "-w", str(warehouse.root), env={**os.environ, "COLUMNS": "200"})
    assert "consideration" in table.stdout and "in progress" in table.stdout
    unknown = parcours("funnel", "nowhere", "-w", str(warehouse.root))
    assert unknown.returncode == 2 and "no funnel 'nowhere'" in unknown.stderr

    # Each row of funnel_steps meets the declared identity, and compaction keeps every view.
    derived = by_name()["funnel_steps"]
    assert dataset_problems(arrow(db, "select * exclude (is_complete) from funnel_steps"), derived) == []
    before = {v: query(db, f"select * from {v} order by all") for v in ("customer_funnels", "funnel_steps")}
    ((raw,),) = query(db, "select count(*) from raw_customer_funnels")
    with warehouse.lock():
        report = compact(warehouse, grace=timedelta(hours=1))
    assert {v: query(db, f"select * from {v} order by all") for v in before} == before
    assert report.rows_dropped["customer_funnels"] == raw - current.num_rows > 0
