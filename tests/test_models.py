"""Model tests: each derived dataset's SQL model, given small inputs, returns the rows computed by hand.

Fixture (T = Monday 2026-02-02 08:00 UTC), as the pipeline would have landed it:

    c1  e1  T        home_page     web  consideration  session s1, cycle 0
        e2  T+10m    product_page  app  consideration  s1, cycle 0
        e3  T+15m    product_page  app  consideration  s1, cycle 0   (a repeat: collapsed in paths)
        e4  T+20m    checkout      web  purchase       s1, cycle 0, outcome purchase, revenue 50
        e5  T+3h     app_session   app  usage          s2, cycle 1 (renewal)   -- landed twice: a
            first version in batch 1 with cycle 0, then rewritten by batch 2 (marker c1 from T+3h)
    c2  e6  Sun 2026-02-01 23:30  home_page  web  consideration  s3, cycle 0, segment pro
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from parcours.config import default_config_text, parse_config
from tests.harness import declared_grain, grain_problems, run_model

T = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)
SUNDAY_NIGHT = datetime(2026, 2, 1, 23, 30, tzinfo=UTC)


def tp(event_id, customer, at, touchpoint, channel, stage, session, cycle, batch, **extra) -> dict:
    return {
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": at,
        "event_date": at.date(),
        "touchpoint": touchpoint,
        "channel": channel,
        "stage": stage,
        "session_id": session,
        "session_started_at": {"s1": T, "s2": T + timedelta(hours=3), "s3": SUNDAY_NIGHT}[session],
        "journey_cycle": cycle,
        "cycle_type": "first_purchase" if cycle == 0 else "renewal",
        "batch_seq": batch,
        "segment": extra.pop("segment", "particulier"),
        "product_line": "fibre",
        **extra,
    }


LANDED = [
    tp("e1", "c1", T, "home_page", "web", "consideration", "s1", 0, 1),
    tp("e2", "c1", T + timedelta(minutes=10), "product_page", "app", "consideration", "s1", 0, 1),
    tp("e3", "c1", T + timedelta(minutes=15), "product_page", "app", "consideration", "s1", 0, 1),
    tp(
        "e4",
        "c1",
        T + timedelta(minutes=20),
        "checkout",
        "web",
        "purchase",
        "s1",
        0,
        1,
        outcome="purchase",
        revenue=50.0,
    ),
    tp("e5", "c1", T + timedelta(hours=3), "app_session", "app", "usage", "s2", 0, 1),  # superseded
    tp("e5", "c1", T + timedelta(hours=3), "app_session", "app", "usage", "s2", 1, 2),
    tp("e6", "c2", SUNDAY_NIGHT, "home_page", "web", "consideration", "s3", 0, 1, segment="pro"),
]
REWRITES = [{"customer_id": "c1", "from_at": T + timedelta(hours=3), "batch_seq": 2}]
GIVEN = {"raw_touchpoints": LANDED, "raw_rewrites": REWRITES}


def test_a_rewritten_event_is_current_in_its_latest_version_only() -> None:
    rows = run_model(
        "stg_parcours__touchpoints", GIVEN, columns=["event_id", "journey_cycle", "batch_seq"], order_by="event_id"
    )
    assert [tuple(r.values()) for r in rows] == [
        ("e1", 0, 1),
        ("e2", 0, 1),
        ("e3", 0, 1),
        ("e4", 0, 1),
        ("e5", 1, 2),
        ("e6", 0, 1),
    ]


def test_sessions_aggregate_their_current_events() -> None:
    rows = run_model("int_sessions_aggregated", GIVEN, order_by="session_id")
    assert rows == [
        {
            "session_id": "s1",
            "customer_id": "c1",
            "started_at": T,
            "ended_at": T + timedelta(minutes=20),
            "started_date": date(2026, 2, 2),
            "duration_in_s": 1200,
            "n_events": 4,
            "channels": ["app", "web"],
            "n_channels": 2,
            "is_omnichannel": True,
            "first_touchpoint": "home_page",
            "last_touchpoint": "checkout",
            "first_stage": "consideration",
            "last_stage": "purchase",
            "journey_cycle": 0,
            "revenue": 50.0,
            "segment": "particulier",
            "product_line": "fibre",
        },
        {
            "session_id": "s2",
            "customer_id": "c1",
            "started_at": T + timedelta(hours=3),
            "ended_at": T + timedelta(hours=3),
            "started_date": date(2026, 2, 2),
            "duration_in_s": 0,
            "n_events": 1,
            "channels": ["app"],
            "n_channels": 1,
            "is_omnichannel": False,
            "first_touchpoint": "app_session",
            "last_touchpoint": "app_session",
            "first_stage": "usage",
            "last_stage": "usage",
            "journey_cycle": 1,
            "revenue": None,
            "segment": "particulier",
            "product_line": "fibre",
        },
        {
            "session_id": "s3",
            "customer_id": "c2",
            "started_at": SUNDAY_NIGHT,
            "ended_at": SUNDAY_NIGHT,
            "started_date": date(2026, 2, 1),
            "duration_in_s": 0,
            "n_events": 1,
            "channels": ["web"],
            "n_channels": 1,
            "is_omnichannel": False,
            "first_touchpoint": "home_page",
            "last_touchpoint": "home_page",
            "first_stage": "consideration",
            "last_stage": "consideration",
            "journey_cycle": 0,
            "revenue": None,
            "segment": "pro",
            "product_line": "fibre",
        },
    ]
    assert grain_problems(rows, declared_grain("int_sessions_aggregated")) == []


def test_journeys_follow_the_cleaned_path_and_count_every_event() -> None:
    rows = run_model(
        "int_journeys_aggregated",
        GIVEN,
        columns=[
            "customer_id",
            "journey_cycle",
            "cycle_type",
            "duration_in_s",
            "n_events",
            "n_sessions",
            "channels",
            "path",
            "stage_path",
            "channel_path",
            "path_length",
            "last_outcome",
            "is_converted",
            "is_churned",
            "revenue",
        ],
        order_by="customer_id, journey_cycle",
    )
    assert [tuple(r.values()) for r in rows] == [
        # e3 repeats e2's touchpoint: collapsed in the path, counted in n_events.
        (
            "c1",
            0,
            "first_purchase",
            1200,
            4,
            1,
            ["app", "web"],
            ["home_page", "product_page", "checkout"],
            ["consideration", "consideration", "purchase"],
            ["web", "app", "web"],
            3,
            "purchase",
            True,
            False,
            50.0,
        ),
        ("c1", 1, "renewal", 0, 1, 1, ["app"], ["app_session"], ["usage"], ["app"], 1, None, False, False, None),
        (
            "c2",
            0,
            "first_purchase",
            0,
            1,
            1,
            ["web"],
            ["home_page"],
            ["consideration"],
            ["web"],
            1,
            None,
            False,
            False,
            None,
        ),
    ]
    assert grain_problems(rows, declared_grain("int_journeys_aggregated")) == []


def test_ignored_touchpoints_leave_the_path_and_repeats_join_across_them() -> None:
    config = parse_config(default_config_text().replace("ignore_touchpoints: []", "ignore_touchpoints: [product_page]"))
    rows = run_model(
        "int_journeys_aggregated",
        GIVEN,
        config=config,
        columns=["customer_id", "journey_cycle", "path", "path_length", "n_events"],
        order_by="customer_id, journey_cycle",
    )
    assert rows[0] == {
        "customer_id": "c1",
        "journey_cycle": 0,
        "path": ["home_page", "checkout"],
        "path_length": 2,
        "n_events": 4,
    }


def test_daily_sessions_count_a_session_under_each_of_its_channels() -> None:
    sessions = run_model("int_sessions_aggregated", GIVEN)
    rows = run_model(
        "int_sessions_counted_daily",
        {"raw_sessions": [{**s, "batch_seq": 1} for s in sessions]},
        order_by="started_date, channel, segment",
    )
    assert [
        (r["started_date"], r["channel"], r["segment"], r["n_sessions"], r["n_omnichannel_sessions"], r["n_events"])
        for r in rows
    ] == [
        (date(2026, 2, 1), "web", "pro", 1, 0, 1),
        (date(2026, 2, 2), "app", "particulier", 2, 1, 5),
        (date(2026, 2, 2), "web", "particulier", 1, 1, 4),
    ]
    assert grain_problems(rows, declared_grain("int_sessions_counted_daily")) == []


def test_a_refreshed_session_supersedes_its_older_row() -> None:
    old = {"session_id": "s1", "customer_id": "c1", "started_at": T, "n_events": 3, "batch_seq": 1}
    new = {"session_id": "s1", "customer_id": "c1", "started_at": T, "n_events": 4, "batch_seq": 2}
    untouched = {
        "session_id": "s0",
        "customer_id": "c1",
        "started_at": T - timedelta(days=1),
        "n_events": 2,
        "batch_seq": 1,
    }
    rows = run_model(
        "stg_parcours__sessions",
        {
            "raw_sessions": [old, new, untouched],
            "raw_refreshes": [{"customer_id": "c1", "sessions_from_at": T, "journeys_from_cycle": 0, "batch_seq": 2}],
        },
        columns=["session_id", "n_events"],
        order_by="session_id",
    )
    assert rows == [{"session_id": "s0", "n_events": 2}, {"session_id": "s1", "n_events": 4}]


def test_journeys_reaching_a_stage_are_counted_in_the_iso_week_they_started() -> None:
    journeys = run_model("int_journeys_aggregated", GIVEN)
    rows = run_model(
        "int_journey_stages_counted_weekly",
        {"raw_journeys": [{**j, "batch_seq": 1} for j in journeys]},
        order_by="started_week, stage, cycle_type",
    )
    # c2 started on Sunday 1 February: ISO week of Monday 26 January.
    assert [(r["started_week"], r["stage"], r["cycle_type"], r["n_journeys"], r["n_converted"]) for r in rows] == [
        (date(2026, 1, 26), "consideration", "first_purchase", 1, 0),
        (date(2026, 2, 2), "consideration", "first_purchase", 1, 1),
        (date(2026, 2, 2), "purchase", "first_purchase", 1, 1),
        (date(2026, 2, 2), "usage", "renewal", 1, 0),
    ]
    assert grain_problems(rows, declared_grain("int_journey_stages_counted_weekly")) == []


@pytest.mark.parametrize(
    "model",
    [
        "int_sessions_aggregated",
        "int_journeys_aggregated",
        "int_sessions_counted_daily",
        "int_touchpoints_counted_daily",
        "int_journey_stages_counted_weekly",
        "int_journey_paths_counted_weekly",
    ],
)
def test_every_derived_dataset_declares_a_grain_that_its_rows_keep(model: str) -> None:
    sessions = [{**s, "batch_seq": 1} for s in run_model("int_sessions_aggregated", GIVEN)]
    journeys = [{**j, "batch_seq": 1} for j in run_model("int_journeys_aggregated", GIVEN)]
    rows = run_model(model, {**GIVEN, "raw_sessions": sessions, "raw_journeys": journeys})
    grain = declared_grain(model)
    assert rows and grain_problems(rows, grain) == []


def test_the_grain_check_fails_when_a_fixture_breaks_the_grain() -> None:
    rows = run_model("int_sessions_aggregated", GIVEN)
    broken = [*rows, {**rows[0], "n_events": 99}, {**rows[1], "session_id": None}]
    problems = grain_problems(broken, declared_grain("int_sessions_aggregated"), identities=["n_events >= 1"])
    assert problems == ["2 rows share the key (\"session_id\") = ['s1']", "1 rows have no session_id"]
    assert grain_problems(rows, ["session_id"], identities=["n_channels = len(channels)"]) == []
    assert grain_problems(rows, ["customer_id"]) == ["2 rows share the key (\"customer_id\") = ['c1']"]
