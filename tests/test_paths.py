"""Paths: variants of ended journeys, loops and back-and-forth, anchored edges, the step matrix.

Every expected value below is worked out by hand from the fixture rows, in the comments beside it;
the shares' intervals are compared with statsmodels' Wilson interval on the same counts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from statsmodels.stats.proportion import proportion_confint

from parcours.config import ConfigError, load_config, parse_config
from parcours.refresh.declarations import by_name
from tests.harness import dataset_problems, run_model

T = datetime(2026, 2, 2, 9, tzinfo=UTC)  # a Monday
F = datetime(2026, 3, 1, tzinfo=UTC)  # the finality point the fixtures are judged at
DAY = timedelta(days=1)

# Applied in order: rule 3 reads rule 2's result, so a support call or chat ends as `help`.
ALIASES = [
    {"pattern": "^store_(.*)$", "alias": "\\1"},
    {"pattern": "^(support_call|support_chat)$", "alias": "support_contact"},
    {"pattern": "^support_contact$", "alias": "help"},
]
ANCHORS = [
    {"name": "from_home", "touchpoint": "home_page", "direction": "from", "steps": 3, "top": 1},
    {"name": "from_purchase", "stage": "purchase", "direction": "from", "steps": 2, "top": 5},
    {"name": "to_cancellation", "touchpoint": "cancellation_request", "direction": "to", "steps": 3, "top": 2},
]


def config_with(aliases=ALIASES, anchors=ANCHORS, max_path_length: int = 6):
    raw = load_config().model_dump(mode="json")
    raw["paths"] = {"aliases": aliases, "anchors": anchors}
    raw["path_cleaning"]["max_path_length"] = max_path_length
    return parse_config(json.dumps(raw))


C, P = "consideration", "purchase"


def journey(
    customer,
    path,
    stages,
    *,
    cycle_type="acquisition",
    converted=False,
    churned=False,
    quiet_days=40.0,
    stage=C,
    duration=100,
    path_length=None,
    cycle=0,
):
    """A `journeys` row whose latest activity lies `quiet_days` before the finality point."""
    last = F - timedelta(days=quiet_days)
    return {
        "customer_id": customer,
        "journey_cycle": cycle,
        "cycle_type": cycle_type,
        "started_at": last - timedelta(seconds=duration),
        "ended_at": last,
        "duration_in_s": duration,
        "path": path,
        "stage_path": stages,
        "path_length": len(path) if path_length is None else path_length,
        "last_stage": stage,
        "last_activity_at": last,
        "last_activity_stage": stage,
        "is_converted": converted,
        "is_churned": churned,
    }


HOME, PRODUCT, CART, CHECKOUT = "home_page", "product_page", "cart", "checkout"
JOURNEYS = [
    # V1 three times, the aliases and the collapse of repeats bringing j2 and j3 to it.
    journey("j1", [HOME, PRODUCT, CART, CHECKOUT], [C, C, P, P], converted=True, duration=100),
    journey("j2", [HOME, PRODUCT, CART, "store_checkout"], [C, C, P, P], converted=True, duration=200),
    # store_checkout -> checkout: two checkouts in a row, collapsed into one step.
    journey("j3", [HOME, PRODUCT, CART, "store_checkout", CHECKOUT], [C, C, P, P, P], converted=True, duration=400),
    # V2 twice: support_call and support_chat both end as `help`; dropped off (consideration's
    # timeout is 21 days; their latest activity was 30 days before the finality point).
    journey("j4", [HOME, "support_call", PRODUCT], [C, "support", C], quiet_days=30, duration=50),
    journey("j5", [HOME, "support_chat", PRODUCT], [C, "support", C], quiet_days=30, duration=70),
    # Open: 10 days quiet; exactly 21 days quiet (the deadline is the finality point: not past it).
    journey("j6", [HOME, PRODUCT], [C, C], quiet_days=10),
    journey("j7", [HOME, PRODUCT], [C, C], quiet_days=21),
    # V3: 22 days quiet at consideration, dropped off.
    journey("j8", [HOME, PRODUCT], [C, C], quiet_days=22, duration=30),
    # Renewal cycles: a final churn, a renewal, a pending churn (10 days quiet in usage: 60 days).
    journey(
        "j9",
        ["app_session", "renewal_reminder", "cancellation_request"],
        ["usage", "renewal", "renewal"],
        cycle_type="renewal",
        churned=True,
        stage="renewal",
        duration=500,
        cycle=1,
    ),
    journey(
        "j10",
        ["app_session", "renewal_reminder", "renewal_checkout"],
        ["usage", "renewal", "renewal"],
        cycle_type="renewal",
        converted=True,
        stage="renewal",
        duration=600,
        cycle=1,
    ),
    journey(
        "j11",
        ["app_session", "renewal_reminder"],
        ["usage", "renewal"],
        cycle_type="renewal",
        stage="usage",
        quiet_days=10,
        cycle=1,
    ),
    # A path of 8 steps cut at max_path_length 6: its variant is truncated.
    journey(
        "j12",
        [HOME, PRODUCT, HOME, PRODUCT, CART, CHECKOUT],
        [C, C, C, C, P, P],
        converted=True,
        path_length=8,
        duration=900,
    ),
]


def variants(config=None, rows=JOURNEYS):
    return run_model(
        "int_journey_variants_counted",
        {"stg_parcours__journeys": rows},
        config=config or config_with(),
        finality_point=F,
        order_by="cycle_type, n_journeys desc, variant",
    )


def test_variants_of_ended_cycles_with_cleaning_and_aliases_applied_in_order():
    rows = variants()
    got = [
        (
            r["cycle_type"],
            r["variant"],
            r["is_truncated"],
            r["n_journeys"],
            r["n_converted"],
            r["n_churned"],
            r["n_dropped_off"],
            r["n_ended"],
            r["n_open"],
            r["median_duration_in_s"],
        )
        for r in rows
    ]
    # acquisition: ended j1 j2 j3 j12 (converted), j4 j5 j8 (dropped off) = 7; open j6 j7 = 2.
    # renewal: ended j9 (churned), j10 (renewed) = 2; open j11 = 1.
    assert got == [
        ("acquisition", [HOME, PRODUCT, CART, CHECKOUT], False, 3, 3, 0, 0, 7, 2, 200.0),  # median of 100 200 400
        ("acquisition", [HOME, "help", PRODUCT], False, 2, 0, 0, 2, 7, 2, 60.0),  # median of 50 70
        ("acquisition", [HOME, PRODUCT], False, 1, 0, 0, 1, 7, 2, 30.0),  # j8 only: j6 and j7 are open
        ("acquisition", [HOME, PRODUCT, HOME, PRODUCT, CART, CHECKOUT], True, 1, 1, 0, 0, 7, 2, 900.0),
        ("renewal", ["app_session", "renewal_reminder", "cancellation_request"], False, 1, 0, 1, 0, 2, 1, 500.0),
        ("renewal", ["app_session", "renewal_reminder", "renewal_checkout"], False, 1, 1, 0, 0, 2, 1, 600.0),
    ]
    for r in rows:
        assert r["share"] == pytest.approx(r["n_journeys"] / r["n_ended"])
        low, high = proportion_confint(r["n_journeys"], r["n_ended"], alpha=0.05, method="wilson")
        assert (r["share_low"], r["share_high"]) == (pytest.approx(low), pytest.approx(high))
        assert r["as_of"] == F
    assert dataset_problems(rows, by_name()["paths"]) == []


def test_the_order_of_the_alias_rules_matters():
    # `support_contact -> help` first: it finds no support_contact yet, so the calls stop there.
    reordered = config_with(aliases=[ALIASES[0], ALIASES[2], ALIASES[1]])
    got = {tuple(r["variant"]): r["n_journeys"] for r in variants(reordered) if r["cycle_type"] == "acquisition"}
    assert got[(HOME, "support_contact", PRODUCT)] == 2
    assert (HOME, "help", PRODUCT) not in got
    # No rules at all: store_checkout stays itself, so j2 and j3 are variants of their own.
    plain = {tuple(r["variant"]): r["n_journeys"] for r in variants(config_with(aliases=[]))}
    assert plain[(HOME, PRODUCT, CART, CHECKOUT)] == 1
    assert plain[(HOME, PRODUCT, CART, "store_checkout")] == 1
    assert plain[(HOME, PRODUCT, CART, "store_checkout", CHECKOUT)] == 1


def test_an_open_cycle_ends_when_the_finality_point_passes_its_deadline():
    # Judged a day later, j7 (21 days quiet) is past consideration's 21 days: it ends, dropped off.
    rows = run_model(
        "int_journey_variants_counted",
        {"stg_parcours__journeys": JOURNEYS},
        config=config_with(),
        finality_point=F + DAY,
        order_by="cycle_type, n_journeys desc, variant",
    )
    two_steps = next(r for r in rows if r["variant"] == [HOME, PRODUCT])
    assert (two_steps["n_journeys"], two_steps["n_ended"], two_steps["n_open"]) == (2, 8, 1)


def edges(config=None, rows=JOURNEYS):
    return run_model(
        "int_path_edges_counted",
        {"stg_parcours__journeys": rows},
        config=config or config_with(),
        finality_point=F,
        order_by="anchor, step, source, target",
    )


def test_path_edges_fold_into_other_and_ended_and_each_step_sums_to_its_journeys():
    rows = edges()
    got = [(r["anchor"], r["step"], r["source"], r["target"], r["n_journeys"], r["n_journeys_at_step"]) for r in rows]
    # from_home, top 1, over the ended journeys (j6 and j7, open, are not drawn). Walks from the
    # first home_page: j1-j3 home product cart checkout; j4 j5 home help product; j8 home product;
    # j12 home product home product. Position 2: product 5, help 2 -> help is (other).
    # Position 3: cart 3, product 2 (j4 j5), home 1 (j12) -> only cart kept. Position 4:
    # checkout 3, product 1 (j12) -> checkout kept.
    assert [g for g in got if g[0] == "from_home"] == [
        ("from_home", 1, HOME, "(other)", 2, 7),  # j4 j5: help
        ("from_home", 1, HOME, PRODUCT, 5, 7),
        ("from_home", 2, "(other)", "(other)", 2, 7),  # j4 j5: help -> product, both folded
        ("from_home", 2, PRODUCT, "(ended)", 1, 7),  # j8
        ("from_home", 2, PRODUCT, "(other)", 1, 7),  # j12: product -> home
        ("from_home", 2, PRODUCT, CART, 3, 7),
        ("from_home", 3, "(other)", "(ended)", 2, 6),  # j4 j5 end at product; j8 ended before
        ("from_home", 3, "(other)", "(other)", 1, 6),  # j12: home -> product
        ("from_home", 3, CART, CHECKOUT, 3, 6),
    ]
    # from_purchase: the first step at the purchase stage (cart) of j1 j2 j3 j12.
    assert [g for g in got if g[0] == "from_purchase"] == [
        ("from_purchase", 1, CART, CHECKOUT, 4, 4),
        ("from_purchase", 2, CHECKOUT, "(ended)", 4, 4),
    ]
    # to_cancellation walks back from j9's cancellation request to its start; j11's renewal
    # cycle has none.
    assert [g for g in got if g[0] == "to_cancellation"] == [
        ("to_cancellation", 1, "renewal_reminder", "cancellation_request", 1, 1),
        ("to_cancellation", 2, "app_session", "renewal_reminder", 1, 1),
        ("to_cancellation", 3, "(start)", "app_session", 1, 1),
    ]
    assert {r["direction"] for r in rows if r["anchor"] == "to_cancellation"} == {"to"}
    # The declared identity: a step's edges add up to the journeys at it.
    assert dataset_problems(rows, by_name()["path_edges"]) == []
    # And what flows into a node at step j leaves it at step j + 1 (from_home: (other) 1 + 2 = 3).
    for step in (1, 2):
        into = {}
        for r in rows:
            if r["anchor"] == "from_home" and r["step"] == step and r["target"] != "(ended)":
                into[r["target"]] = into.get(r["target"], 0) + r["n_journeys"]
        out = {}
        for r in rows:
            if r["anchor"] == "from_home" and r["step"] == step + 1:
                out[r["source"]] = out.get(r["source"], 0) + r["n_journeys"]
        assert into == out


def test_the_identity_catches_a_step_that_does_not_add_up():
    rows = edges()
    broken = [dict(r, n_journeys=r["n_journeys"] + 1) if r["target"] == "(ended)" else r for r in rows]
    problems = dataset_problems(broken, by_name()["path_edges"])
    assert any("sum(n_journeys) over (partition by anchor, step) = n_journeys_at_step" in p for p in problems)


def test_the_step_matrix_shares_add_up_to_one_with_an_ended_row():
    given = {"path_edges": [{k: v for k, v in r.items() if k != "as_of_date"} for r in edges()]}
    rows = run_model("path_step_matrix", given, config=config_with(), order_by="anchor, step, touchpoint")
    got = [(r["step"], r["touchpoint"], r["n_journeys"], r["n_at_anchor"]) for r in rows if r["anchor"] == "from_home"]
    assert got == [
        (1, "(ended)", 0, 7),
        (1, "(other)", 2, 7),
        (1, PRODUCT, 5, 7),
        (2, "(ended)", 1, 7),  # j8
        (2, "(other)", 3, 7),  # j4 j5 j12
        (2, CART, 3, 7),
        (3, "(ended)", 3, 7),  # j8, then j4 j5
        (3, "(other)", 1, 7),
        (3, CHECKOUT, 3, 7),
    ]
    for r in rows:
        assert r["share"] == pytest.approx(r["n_journeys"] / r["n_at_anchor"])
        low, high = proportion_confint(r["n_journeys"], r["n_at_anchor"], alpha=0.05, method="wilson")
        assert (r["share_low"], r["share_high"]) == (pytest.approx(low), pytest.approx(high))
    for step in (1, 2, 3):  # each step's shares add up to 1
        assert sum(r["share"] for r in rows if r["anchor"] == "from_home" and r["step"] == step) == pytest.approx(1)
    back = [(r["step"], r["touchpoint"], r["n_journeys"]) for r in rows if r["anchor"] == "to_cancellation"]
    assert back == [
        (1, "(start)", 0),
        (1, "renewal_reminder", 1),
        (2, "(start)", 0),
        (2, "app_session", 1),
        (3, "(start)", 1),
    ]


def tp(event_id, customer, minutes, touchpoint, stage, *, cycle=0, is_activity=None):
    return {
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": T + timedelta(minutes=minutes),
        "touchpoint": touchpoint,
        "stage": stage,
        "journey_cycle": cycle,
        "cycle_type": "acquisition",
        "session_id": f"s-{customer}",
        "channel": "web",
        "is_activity": is_activity,
    }


def cycle_events(customer, *steps):
    return [tp(f"{customer}-{i}", customer, i, touchpoint, stage) for i, (touchpoint, stage) in enumerate(steps)]


H, PR, CA, CH = ("home_page", C), ("product_page", C), ("cart", P), ("checkout", P)
EVENTS = [
    # (customer, n_loops, n_back_and_forth, by hand)
    *cycle_events("l1", H, PR, H, PR, CA),  # home and product revisited: 2; stages c p: 0
    *cycle_events("l2", H, CA, H, CH),  # home revisited: 1; c p c p: the second c after p: 1
    *cycle_events("l3", H, H, PR),  # the repeat is collapsed: no loop; 0
    # d p c d: consideration is new (no revisit); discovery comes back after purchase: 1
    *cycle_events("l4", ("ad_impression", "discovery"), CA, H, ("ad_impression", "discovery")),
    # home, an unmapped step, home: a loop; the unmapped step is no stage, c c is one visit: 0
    *cycle_events("l5", H, ("kiosk", "unmapped"), H),
    # a s u s a: support again, but no stage later than support was reached: no; activation
    # again after support and usage (both later): 1. help_center revisited: 1 loop.
    *cycle_events(
        "l6",
        ("account_setup", "activation"),
        ("help_center", "support"),
        ("app_session", "usage"),
        ("help_center", "support"),
        ("first_login", "activation"),
    ),
    # c p c p c: both returns to consideration come after a purchase step: 2; 3 loops (home, cart, home)
    *cycle_events("l7", H, CA, H, CA, H),
    # p c p: a step back, then forward again: 0 back-and-forth; cart revisited: 1 loop
    *cycle_events("l8", CA, H, CA),
    # c p c d c: consideration again after purchase, twice (the second after discovery too): 2;
    # home revisited twice: 2 loops
    *cycle_events("l9", H, CA, H, ("ad_impression", "discovery"), H),
]
EXPECTED_LOOPS = {
    "l1": (2, 0),
    "l2": (1, 1),
    "l3": (0, 0),
    "l4": (1, 1),
    "l5": (1, 0),
    "l6": (1, 1),
    "l7": (3, 2),
    "l8": (1, 0),
    "l9": (2, 2),
}


def test_loops_and_back_and_forth_per_journey():
    rows = run_model("int_journeys_aggregated", {"stg_parcours__touchpoints": EVENTS}, order_by="customer_id")
    assert {r["customer_id"]: (r["n_loops"], r["n_back_and_forth"]) for r in rows} == EXPECTED_LOOPS
    assert dataset_problems(rows, by_name()["journeys"]) == []


def test_the_latest_activity_leaves_out_what_the_company_sends():
    events = [
        tp("a1", "m1", 0, "home_page", C, is_activity=True),
        tp("a2", "m1", 3, "product_page", C),  # landed before is_activity existed: activity
        tp("a3", "m1", 9, "invoice", "usage", is_activity=False),  # sent by the company
        tp("b1", "m2", 0, "welcome_email", "activation", is_activity=False),  # no activity at all
    ]
    rows = run_model("int_journeys_aggregated", {"stg_parcours__touchpoints": events}, order_by="customer_id")
    got = [(r["customer_id"], r["last_activity_at"], r["last_activity_stage"], r["last_stage"]) for r in rows]
    assert got == [("m1", T + timedelta(minutes=3), C, "usage"), ("m2", None, None, "activation")]


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ({"aliases": [{"pattern": "(unclosed", "alias": "x"}]}, "is not a regular expression RE2 reads"),
        ({"aliases": [{"pattern": "(?=look)", "alias": "x"}]}, "is not a regular expression RE2 reads"),
        ({"anchors": [{"name": "a", "stage": "nowhere"}]}, "paths.anchors.a: unknown stage 'nowhere'"),
        ({"anchors": [{"name": "a", "stage": "purchase", "touchpoint": "cart"}]}, "exactly one of stage or touchpoint"),
        ({"anchors": [{"name": "a", "touchpoint": "cart", "direction": "up"}]}, "direction must be from or to"),
        ({"anchors": [{"name": "a", "touchpoint": "(ended)"}]}, "is reserved"),
        ({"anchors": [{"name": "a", "touchpoint": "cart"}, {"name": "a", "touchpoint": "cart"}]}, "more than once"),
        ({"anchors": [{"name": "a", "touchpoint": "cart", "top": 0}]}, "paths.anchors.0.top"),
    ],
)
def test_bad_path_rules_are_refused_at_load_naming_the_key(paths, message):
    raw = load_config().model_dump(mode="json")
    raw["paths"] = paths
    with pytest.raises(ConfigError, match="paths") as caught:
        parse_config(json.dumps(raw), "journey.yaml")
    assert message in str(caught.value)


def test_the_rules_reach_the_settings_views_in_order(tmp_path: Path):
    from tests.harness import model_connection

    con = model_connection(config_with())
    try:
        row = con.execute(
            "select path_alias_patterns, path_aliases, path_anchor_names, path_anchor_kinds, path_anchor_points, "
            "path_anchor_directions, path_anchor_steps, path_anchor_tops from parcours_settings"
        ).fetchone()
    finally:
        con.close()
    assert row == (
        [a["pattern"] for a in ALIASES],
        [a["alias"] for a in ALIASES],
        ["from_home", "from_purchase", "to_cancellation"],
        ["touchpoint", "stage", "touchpoint"],
        ["home_page", "purchase", "cancellation_request"],
        ["from", "from", "to"],
        [3, 2, 3],
        [1, 5, 2],
    )


# -- `parcours paths`, on a small landed warehouse ------------------------------------------------


def _event(event_id: str, customer: str, day: float, touchpoint: str, outcome: str | None = None) -> dict:
    line = {
        "schema_version": 1,
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": (T + timedelta(days=day)).isoformat().replace("+00:00", "Z"),
        "channel": "web",
        "touchpoint": touchpoint,
        "segment": "particulier",
    }
    if outcome:
        line.update(outcome=outcome, revenue=30.0)
    return line


def _customer(customer: str, day: float, *touchpoints: str) -> list[dict]:
    """One event a minute from `day` on; a checkout is a purchase."""
    return [
        _event(f"{customer}-{i}", customer, day + i / 1440, t, "purchase" if t == "checkout" else None)
        for i, t in enumerate(touchpoints)
    ]


LANDED = [
    *(e for c in ("a1", "a2", "a3", "a4") for e in _customer(c, 0, HOME, PRODUCT, CART, CHECKOUT)),
    *(e for c in ("b1", "b2") for e in _customer(c, 0, HOME, CART, CHECKOUT)),
    *_customer("c1", 0, HOME, PRODUCT),  # quiet since day 0 at consideration (21 days): dropped off
    *(e for c in ("e1", "e2") for e in _customer(c, 0, PRODUCT, PRODUCT)),  # a repeat, collapsed
    *_customer("f1", 0, HOME, CART),  # quiet since day 0 at purchase (7 days): dropped off
    *_customer("d1", 39, HOME),  # 1 day before the last event: open
    # The latest events: the watermark is day 40, the finality point day 37 (3 days' lateness).
    *_customer("z1", 40, HOME, CART, CHECKOUT),
]


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> Path:
    from parcours.pipelines.run import Ingestion
    from parcours.warehouse import Warehouse

    root = tmp_path_factory.mktemp("paths")
    (root / "data").mkdir()
    (root / "data" / "touchpoints.jsonl").write_text("".join(json.dumps(line) + "\n" for line in LANDED))
    warehouse = Warehouse(root / "w")
    with warehouse.lock():
        Ingestion(warehouse, load_config()).run_files(root / "data")
    return root / "w"


def parcours_paths(warehouse: Path, *args: str):
    from tests.test_cli import parcours

    return parcours("paths", "--warehouse", str(warehouse), *args)


def test_the_cli_prints_the_top_variants_as_json(landed: Path):
    result = parcours_paths(landed, "--json", "--top", "4")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    # 11 ended first-purchase cycles (d1 is open); a1-a4, then b1 b2 z1, then e1 e2, then f1 and c1
    # (one each: the fifth, left out by --top 4, is c1's home > product, after home > cart).
    assert [(r["variant"], r["n_journeys"], r["n_ended"], r["n_open"]) for r in rows] == [
        ([HOME, PRODUCT, CART, CHECKOUT], 4, 11, 1),
        ([HOME, CART, CHECKOUT], 3, 11, 1),
        ([PRODUCT], 2, 11, 1),
        ([HOME, CART], 1, 11, 1),
    ]
    assert {r["cycle_type"] for r in rows} == {"first_purchase"}
    assert rows[0]["share"] == pytest.approx(4 / 11)
    assert rows[0]["median_duration_in_s"] == 180.0  # three one-minute steps
    # Another cycle type: nothing to show, an empty list.
    empty = parcours_paths(landed, "--json", "--cycle-type", "renewal")
    assert empty.returncode == 0 and json.loads(empty.stdout) == []


def test_the_cli_prints_an_anchors_edges(landed: Path):
    result = parcours_paths(landed, "--anchor", "from_purchase", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    # The first purchase-stage step is the cart: 7 go on to checkout, f1 ends there; then the 7 end.
    assert [(r["step"], r["source"], r["target"], r["n_journeys"], r["n_journeys_at_step"]) for r in rows] == [
        (1, CART, CHECKOUT, 7, 8),
        (1, CART, "(ended)", 1, 8),
        (2, CHECKOUT, "(ended)", 7, 7),
    ]
    table = parcours_paths(landed, "--anchor", "from_purchase")
    assert table.returncode == 0, table.stderr
    assert "path edges from from_purchase" in table.stdout
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in table.stdout.splitlines() if "│" in line]
    assert cells == [
        ["1", CART, CHECKOUT, "7", "8"],
        ["1", CART, "(ended)", "1", "8"],
        ["2", CHECKOUT, "(ended)", "7", "7"],
    ]


def test_the_cli_prints_a_table_and_names_an_unknown_anchor(landed: Path):
    table = parcours_paths(landed, "--top", "2")
    assert table.returncode == 0, table.stderr
    assert "top 2 path variants of ended journeys" in table.stdout
    assert f"{HOME} > {PRODUCT} > {CART} > {CHECKOUT}" in table.stdout
    from tests.test_cli import assert_fails_cleanly

    # No cancellation request landed: the default anchor to_cancellation_request has no edges.
    assert_fails_cleanly(
        parcours_paths(landed, "--anchor", "nowhere"),
        "no edges for anchor 'nowhere' (anchors with edges: from_purchase)",
    )


def test_the_landed_path_datasets_keep_their_declared_grain(landed: Path):
    import duckdb

    with duckdb.connect(str(landed / "parcours.duckdb"), read_only=True) as con:
        for name in ("paths", "path_edges"):
            rows = con.sql(f"select * from {name}").to_arrow_table()
            assert rows.num_rows > 0
            assert dataset_problems(rows, by_name()[name]) == []
        # Judged at the finality point: day 40's watermark less the 3 days of allowed lateness.
        (as_of,) = con.execute("select distinct as_of from paths").fetchone()
        assert as_of == T + timedelta(days=37, minutes=2)
        loops = con.execute("select customer_id, n_loops, n_back_and_forth from journeys order by 1").fetchall()
        assert {n for _, n, _ in loops} == {0} and {n for *_, n in loops} == {0}  # a repeat is collapsed
        (invalidation,) = con.execute(
            "select distinct invalidation from parcours_datasets where name like 'path%'"
        ).fetchone()
        assert invalidation == "whole"


def test_a_later_batch_moves_the_finality_point_and_the_paths_with_it(tmp_path: Path):
    from parcours.pipelines.run import Ingestion
    from parcours.warehouse import Warehouse

    warehouse = Warehouse(tmp_path / "w")
    later = _customer("y1", 70, HOME, CART, CHECKOUT)  # the finality point moves to day 67
    data = tmp_path / "data"
    data.mkdir()
    # One backfill file, grown between the runs: its partition moves the watermark on (a second
    # file would be a partition of its own, holding the watermark at its end until it is idle).
    for lines in (LANDED, [*LANDED, *later]):
        (data / "touchpoints.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        with warehouse.lock():
            Ingestion(warehouse, load_config()).run_files(data)
    import duckdb

    with duckdb.connect(str(warehouse.db_path), read_only=True) as con:
        rows = con.execute(
            "select variant, n_journeys, n_ended, n_open, n_dropped_off from paths order by all"
        ).fetchall()
        seqs = con.execute("select distinct batch_seq from raw_paths").fetchall()
    # d1's home page on day 39 is past consideration's 21 days at day 67: it ended, dropped off;
    # y1 joins home > cart > checkout. 13 ended, none open.
    assert rows == [
        ([HOME], 1, 13, 0, 1),
        ([HOME, CART], 1, 13, 0, 1),
        ([HOME, CART, CHECKOUT], 4, 13, 0, 0),
        ([HOME, PRODUCT], 1, 13, 0, 1),
        ([HOME, PRODUCT, CART, CHECKOUT], 4, 13, 0, 0),
        ([PRODUCT], 2, 13, 0, 2),
    ]
    # Every row from the second refresh: its file replaced the first one.
    assert len(warehouse.live_files("paths")) == 1 and len(seqs) == 1
