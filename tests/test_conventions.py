"""The conventions every analytics view follows (parcours.warehouse.conventions): rolled-up rows
with `breakdown`, `all` and `unknown`; periods in `reporting.timezone` with `is_complete`; small-n
suppression. Expected rows are counted by hand from the fixtures."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa
import pytest

from parcours.config import parse_config
from parcours.refresh.declarations import DeclarationError, resolve
from parcours.warehouse import DATASETS, DatasetSpec
from parcours.warehouse.conventions import ConventionError, parse, render, render_model
from tests.harness import grain_problems, run_model, run_sql

# A journeys rollup by week, with totals beside its breakdowns: the fixture of every convention.
DECLARED = {
    "grouping_sets": [[], ["segment"], ["stage", "segment"]],
    "additive": ["n_journeys", "n_converted"],
    "period": {"column": "started_week", "unit": "week", "by": "started_at"},
    "min_n": 2,
    "rates": {"n_journeys": ["conversion_rate"]},
}
MODEL = """
with journeys as (
    select
        {{ period }} as started_week,
        last_stage as stage,
        segment,
        customer_id,
        is_converted
    from stg_parcours__journeys
),

final as (
    select
        {{ breakdown }},
        count(*) as n_journeys,
        count(distinct customer_id) as n_customers,
        count(*) filter (where is_converted) as n_converted,
        count(*) filter (where is_converted) / count(*) as conversion_rate
    from journeys
    group by {{ grouping_sets }}
)

select * from final
"""
# What its view reads: the rates below min_n suppressed, and whether the week is over.
VIEW = """
select started_week, breakdown, stage, segment, n_journeys, n_customers, {{ rates }}, {{ is_complete }}
from ({model})
"""


def journey(customer: str, started_at: datetime, segment: str | None, stage: str, converted: bool) -> dict:
    return {
        "customer_id": customer,
        "started_at": started_at,
        "segment": segment,
        "last_stage": stage,
        "is_converted": converted,
    }


JOURNEYS = [
    # c1 changed segment between its two journeys; c2's segment was never sent.
    journey("c1", datetime(2026, 2, 2, 10, tzinfo=UTC), "b2c", "purchase", True),
    journey("c1", datetime(2026, 2, 3, 9, tzinfo=UTC), "b2b", "consideration", False),
    journey("c2", datetime(2026, 2, 4, 9, tzinfo=UTC), None, "consideration", False),
    # Sunday 23:30 UTC: the week of 2 February in UTC, Monday 00:30 of the next one in Paris.
    journey("c3", datetime(2026, 2, 8, 23, 30, tzinfo=UTC), "b2c", "consideration", True),
]
WEEK = date(2026, 2, 2)
ORDER = "started_week, breakdown, stage, segment"


def conventions():
    return parse(DECLARED, "the fixture")


def rollup(journeys=JOURNEYS, config=None):
    return run_sql(
        MODEL, {"stg_parcours__journeys": journeys}, conventions=conventions(), config=config, order_by=ORDER
    )


def view(point: datetime | None, config=None):
    given = {"stg_parcours__journeys": JOURNEYS}
    sql = VIEW.replace("{model}", render(MODEL, conventions(), "the fixture"))
    return run_sql(sql, given, conventions=conventions(), config=config, order_by=ORDER, finality_point=point)


def test_rolled_up_rows_name_their_breakdown_read_all_and_unknown_and_count_distinct_per_set():
    rows = [
        (r["breakdown"], r["stage"], r["segment"], r["n_journeys"], r["n_customers"], r["n_converted"])
        for r in rollup()
    ]
    assert rows == [
        ("overall", "all", "all", 4, 3, 2),  # c1 counted once though it had two journeys
        ("segment", "all", "b2b", 1, 1, 0),
        ("segment", "all", "b2c", 2, 2, 2),
        ("segment", "all", "unknown", 1, 1, 0),  # a segment the producer did not send
        ("stage×segment", "consideration", "b2b", 1, 1, 0),
        ("stage×segment", "consideration", "b2c", 1, 1, 1),
        ("stage×segment", "consideration", "unknown", 1, 1, 0),
        ("stage×segment", "purchase", "b2c", 1, 1, 1),
    ]
    # Customers are distinct per grouping set, never a sum: 4 over the segments, 3 overall.
    assert sum(r[4] for r in rows if r[0] == "segment") == 4
    assert {r["started_week"] for r in rollup()} == {WEEK}


def test_the_grain_checks_hold_on_the_fixture_and_catch_a_broken_convention():
    c = conventions()
    grain = ["started_week", "breakdown", "stage", "segment"]
    rows = rollup()
    assert grain_problems(rows, grain, conventions=c) == []
    broken = [dict(r) for r in rows]
    broken[1]["stage"] = "consideration"  # a `segment` row that does not roll its stage up
    broken[0]["n_journeys"] = 5  # an overall total that is not the breakdowns'
    broken[2]["segment"] = None  # a real null left null
    broken[3]["breakdown"] = "channel"  # not a declared breakdown
    assert grain_problems(broken, grain, conventions=c) == [
        "1 rows have no segment",  # a grain column
        "breakdown 'channel' is not declared (['overall', 'segment', 'stage×segment'])",
        "1 rows of breakdown 'segment' have stage not 'all'",
        "1 rows have a null segment (a real null reads 'unknown')",
        f"the total of n_journeys differs between breakdowns in {WEEK}",  # 5 overall, 3 by segment
        f"the total of n_converted differs between breakdowns in {WEEK}",  # 0 in the `channel` row
    ]


def test_weeks_are_utc_unless_the_reporting_timezone_is_set():
    paris = parse_config("stages: [consideration, purchase]\nreporting:\n  timezone: Europe/Paris\n")
    rows = [
        (r["started_week"], r["n_journeys"], r["n_customers"])
        for r in rollup(config=paris)
        if r["breakdown"] == "overall"
    ]
    assert rows == [(WEEK, 3, 2), (date(2026, 2, 9), 1, 1)]  # c3's journey started on a Monday in Paris


def test_a_week_is_complete_once_the_finality_point_has_passed_its_end():
    def complete(point, config=None):
        return {r["is_complete"] for r in view(point, config)}

    assert complete(None) == {False}  # nothing landed: no period is over
    assert complete(datetime(2026, 2, 8, 23, 59, 59, tzinfo=UTC)) == {False}
    assert complete(datetime(2026, 2, 9, 0, 0, tzinfo=UTC)) == {True}  # Monday 00:00 UTC: the week is over
    paris = parse_config("stages: [consideration, purchase]\nreporting:\n  timezone: Europe/Paris\n")
    # 23:30 UTC on Sunday is Monday 00:30 in Paris: the Paris week of 2 February is over, the next one is not.
    at = datetime(2026, 2, 8, 23, 30, tzinfo=UTC)
    assert {(r["started_week"], r["is_complete"]) for r in view(at, paris)} == {(WEEK, True), (date(2026, 2, 9), False)}


def test_a_rate_below_min_n_is_null_with_its_n_shown():
    rows = [(r["breakdown"], r["segment"], r["stage"], r["n_journeys"], r["conversion_rate"]) for r in view(None)]
    assert rows[:4] == [
        ("overall", "all", "all", 4, 0.5),
        ("segment", "b2b", "all", 1, None),  # n = 1 < min_n = 2
        ("segment", "b2c", "all", 2, 1.0),
        ("segment", "unknown", "all", 1, None),
    ]
    assert {r[4] for r in rows[4:]} == {None}  # every stage×segment row has n = 1


def test_the_daily_rollups_say_whether_their_utc_day_is_over():
    rows = [
        {"event_date": date(2026, 2, 2), "stage": "consideration", "channel": "web", "touchpoint": "home_page",
         "segment": "unknown", "product_line": "unknown", "n_events": 3, "n_customers": 2},
        {"event_date": date(2026, 2, 3), "stage": "consideration", "channel": "web", "touchpoint": "home_page",
         "segment": "unknown", "product_line": "unknown", "n_events": 1, "n_customers": 1},
    ]  # fmt: skip
    got = run_model(
        "touchpoints_daily",
        {"raw_touchpoints_daily": rows},
        columns=["event_date", "is_complete"],
        order_by="event_date",
        finality_point=datetime(2026, 2, 3, 12, tzinfo=UTC),
    )
    assert got == [
        {"event_date": date(2026, 2, 2), "is_complete": True},
        {"event_date": date(2026, 2, 3), "is_complete": False},
    ]


# A registered dataset with rolled-up rows, for the declaration checks.
SUMMARY = DatasetSpec(
    "stage_summary",
    pa.schema(
        [
            pa.field("breakdown", pa.string()),
            pa.field("stage", pa.string()),
            pa.field("segment", pa.string()),
            pa.field("n_journeys", pa.int64()),
            pa.field("batch_seq", pa.int64()),
        ]
    ),
    "started_week",
)
SUMMARY_DECLARED = {
    "dataset": "stage_summary",
    "view": "stage_summary",
    "grain": ["started_week", "breakdown", "stage", "segment"],
    "partition": "started_week",
    "cadence": "every_pass",
    "invalidation": {"kind": "partitions", "source": "touchpoints", "source_partition": "event_date"},
    "grouping_sets": [["stage"], ["stage", "segment"]],
}
SUMMARY_SQL = "select {{ breakdown }}, count(*) as n_journeys from raw_touchpoints group by {{ grouping_sets }}"


@pytest.fixture
def summary(monkeypatch):
    monkeypatch.setitem(DATASETS, "stage_summary", SUMMARY)


def texts(model: str = SUMMARY_SQL):
    return {"int_summary": ("intermediate", model), "stage_summary": ("marts", "select * from raw_stage_summary")}


def test_a_declared_rollup_resolves_and_its_stage_is_always_present(summary):
    (derived,) = resolve([("intermediate", "int_summary.yml", SUMMARY_DECLARED)], texts(), [])
    assert derived.conventions.breakdowns == ("overall", "segment")  # stage is in every set: not a breakdown
    assert derived.conventions.broken_out == ("segment",)


NO_PLACEHOLDERS = "select stage, count(*) from raw_touchpoints group by all"
MARS = {"column": "started_week", "unit": "day", "by": "x", "timezone": "Mars/Olympus"}


@pytest.mark.parametrize(
    ("change", "model", "message"),
    [
        ({}, NO_PLACEHOLDERS, r"does not use \{\{ breakdown \}\}, \{\{ grouping_sets \}\}"),
        ({"grain": ["started_week", "stage", "segment"]}, SUMMARY_SQL, r"the grain must hold \['breakdown'\]"),
        ({"grouping_sets": [["stage"]]}, SUMMARY_SQL, r"at least two grouping sets"),
        ({"grouping_sets": [["stage"], ["channel"]]}, SUMMARY_SQL, r"columns \['channel'\] are not in dataset"),
        ({"additive": ["n_journeys"], "grouping_sets": None}, SUMMARY_SQL, r"grouping_sets must list"),
        ({"min_n": 0, "rates": {"n_journeys": ["x"]}}, SUMMARY_SQL, r"min_n must be a positive integer"),
        ({"period": {"column": "started_week", "unit": "month", "by": "x"}}, SUMMARY_SQL, r"period.unit 'month'"),
        ({"period": MARS}, SUMMARY_SQL, r"not an IANA time zone"),
    ],
)
def test_a_convention_that_cannot_be_generated_is_refused_naming_the_declaration(summary, change, model, message):
    declared = {**SUMMARY_DECLARED, **change}
    with pytest.raises(DeclarationError, match=rf"intermediate/int_summary.yml: .*{message}"):
        resolve([("intermediate", "int_summary.yml", declared)], texts(model), [])


def test_a_placeholder_needs_its_declaration():
    with pytest.raises(ConventionError, match=r"the model: unknown placeholder \{\{ breakdwon \}\}"):
        render("select {{ breakdwon }}", parse({}, "x"), "the model")
    with pytest.raises(ConventionError, match=r"\{\{ is_complete \}\} needs `period` in the declaration"):
        render("select {{ is_complete }}", parse({}, "x"), "the model")
    from importlib import resources

    with pytest.raises(ConventionError, match=r"no declaration names this model or view"):
        render_model(resources.files("parcours.sql"), ("marts",), ("nothing",), "select {{ period }}", "marts/x.sql")


def test_the_reporting_timezone_is_checked_at_load():
    from parcours.config import ConfigError

    with pytest.raises(ConfigError, match=r"reporting\.timezone"):
        parse_config("stages: [a]\nreporting:\n  timezone: Paris\n")
