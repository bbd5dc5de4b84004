"""Refresh cadences (every pass, hourly, daily) and the invalidation kinds `whole` and `family`,
end to end on a real warehouse, with four test-only datasets declared beside their models in a
copy of the package's SQL folder and registered for the duration of a test."""

from __future__ import annotations

import dataclasses
import importlib.resources
import shutil
import types
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from statsmodels.stats.multitest import multipletests

import parcours.refresh.declarations as declarations_module
import parcours.warehouse.views as views_module
from parcours.config import load_config
from parcours.pipelines.run import Ingestion
from parcours.refresh.declarations import DeclarationError, declarations, resolve
from parcours.refresh.refresher import catch_up, plan
from parcours.schemas.contracts import UTC_MICROS
from parcours.warehouse import (
    DATASETS,
    MARTS_THROUGH,
    REFRESH,
    Checkpoint,
    DatasetSpec,
    DerivedState,
    Warehouse,
    _State,
)
from parcours.warehouse.files import _SEQ_DIGITS
from tests.pipeline_helpers import query, write_jsonl
from tests.test_warehouse import BATCH_1, manifest, touchpoints

CONFIG = load_config()
D1, D2, D3 = date(2026, 2, 2), date(2026, 2, 3), date(2026, 2, 4)

# Sessions counted per day: the same model under an hourly and a daily declaration.
PER_DAY_SQL = """-- grain: one row per started_date
with sessions as (
    select * from stg_parcours__sessions
),

final as (
    select started_date, count(*) as n_sessions, cast(sum(n_events) as BIGINT) as n_events
    from sessions
    group by started_date
)

select * from final
"""
PER_DAY_ARROW = pa.schema(
    [pa.field("n_sessions", pa.int64()), pa.field("n_events", pa.int64()), pa.field("batch_seq", pa.int64())]
)

# One row per customer over every session: recomputed whole, partitioned by its first day.
WHOLE_SQL = """-- grain: one row per customer_id
with sessions as (
    select * from stg_parcours__sessions
),

final as (
    select
        customer_id,
        min(started_date) as first_date,
        count(*) as n_sessions,
        cast(sum(n_events) as BIGINT) as n_events
    from sessions
    group by customer_id
)

select * from final
"""
WHOLE_ARROW = pa.schema(
    [
        pa.field("customer_id", pa.string()),
        pa.field("n_sessions", pa.int64()),
        pa.field("n_events", pa.int64()),
        pa.field("batch_seq", pa.int64()),
    ]
)

# What the finality point was when the dataset was last recomputed: a model reading the clock.
CLOCK_SQL = """-- grain: one row per first_date
select
    min(started_date) as first_date,
    count(*) as n_sessions,
    (select finality_point from parcours_finality) as finality_point
from stg_parcours__sessions
"""
CLOCK_ARROW = pa.schema(
    [pa.field("n_sessions", pa.int64()), pa.field("finality_point", UTC_MICROS), pa.field("batch_seq", pa.int64())]
)

# One test per (day, channel, customer), p = 1 / (1 + its events), q by Benjamini-Hochberg over
# the family (day, channel).
FAMILY_SQL = """-- grain: one row per (started_date, channel, customer_id)
with per_channel as (
    select started_date, unnest(channels) as channel, customer_id, n_events
    from stg_parcours__sessions
),

tests as (
    select started_date, channel, customer_id, cast(sum(n_events) as BIGINT) as n_events,
        1.0 / (1 + sum(n_events)) as p_value
    from per_channel
    group by started_date, channel, customer_id
),

ranked as (
    select *,
        row_number() over (partition by started_date, channel order by p_value, customer_id) as test_rank,
        count(*) over (partition by started_date, channel) as n_tests
    from tests
),

final as (
    select started_date, channel, customer_id, n_events, p_value,
        least(1.0, min(p_value * n_tests / test_rank) over (
            partition by started_date, channel order by test_rank desc
            rows between unbounded preceding and current row
        )) as q_value
    from ranked
)

select * from final
"""
FAMILY_ARROW = pa.schema(
    [
        pa.field("channel", pa.string()),
        pa.field("customer_id", pa.string()),
        pa.field("n_events", pa.int64()),
        pa.field("p_value", pa.float64()),
        pa.field("q_value", pa.float64()),
        pa.field("batch_seq", pa.int64()),
    ]
)


def declaration(name: str, grain: str, partition: str, cadence: str, invalidation: str) -> str:
    return (
        f"dataset: {name}\nview: {name}\ngrain: [{grain}]\npartition: {partition}\ncadence: {cadence}\n"
        f"invalidation:\n{invalidation}"
    )


TEST_DATASETS = {
    # name: (model, declaration, spec)
    "test_hourly": (
        PER_DAY_SQL,
        declaration(
            "test_hourly",
            "started_date",
            "started_date",
            "hourly",
            "  kind: partitions\n  source: sessions\n  source_partition: started_date\n",
        ),
        DatasetSpec("test_hourly", PER_DAY_ARROW, "started_date"),
    ),
    "test_daily": (
        PER_DAY_SQL,
        declaration(
            "test_daily",
            "started_date",
            "started_date",
            "daily",
            "  kind: partitions\n  source: sessions\n  source_partition: started_date\n",
        ),
        DatasetSpec("test_daily", PER_DAY_ARROW, "started_date"),
    ),
    "test_whole": (
        WHOLE_SQL,
        declaration("test_whole", "customer_id", "first_date", "every_pass", "  kind: whole\n"),
        DatasetSpec("test_whole", WHOLE_ARROW, "first_date"),
    ),
    "test_clock": (
        CLOCK_SQL,
        declaration("test_clock", "first_date", "first_date", "every_pass", "  kind: whole\n"),
        DatasetSpec("test_clock", CLOCK_ARROW, "first_date"),
    ),
    "test_family": (
        FAMILY_SQL,
        declaration(
            "test_family",
            "started_date, channel, customer_id",
            "started_date",
            "every_pass",
            "  kind: family\n  family: [started_date, channel]\n  source: sessions\n"
            "  source_family: {started_date: started_date, channel: 'unnest(channels)'}\n",
        ),
        DatasetSpec("test_family", FAMILY_ARROW, "started_date"),
    ),
}


@pytest.fixture
def test_datasets(tmp_path, monkeypatch):
    """The package's models and declarations plus the four test datasets, read from a copy of the
    SQL folder, their specs registered: what a real dataset's files beside its model give."""
    sql = tmp_path / "sql"
    shutil.copytree(Path(str(importlib.resources.files("parcours.sql"))), sql)
    for name, (model, declared, spec) in TEST_DATASETS.items():
        (sql / "intermediate" / f"int_{name}.sql").write_text(model)
        (sql / "intermediate" / f"int_{name}.yml").write_text(declared)
        (sql / "marts" / f"{name}.sql").write_text(f"-- grain: as declared\nselect * from raw_{name}\n")
        monkeypatch.setitem(DATASETS, name, spec)
    real = importlib.resources.files
    shim = types.SimpleNamespace(files=lambda package: sql if package == "parcours.sql" else real(package))
    monkeypatch.setattr(views_module, "resources", shim)
    monkeypatch.setattr(declarations_module, "resources", shim)
    declarations.cache_clear()
    yield
    declarations.cache_clear()


def event(n: int, customer: str, at: str, channel: str = "web", touchpoint: str = "home_page") -> dict:
    return {
        "schema_version": 1,
        "event_id": f"e{n}",
        "customer_id": customer,
        "occurred_at": at,
        "channel": channel,
        "touchpoint": touchpoint,
        "outcome": None,
        "revenue": None,
    }


class Landing:
    """Lands batches of hand-written events, one file backfill each, and refreshes at given clocks."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.root = tmp_path / "w"
        self.batches = 0

    def land(self, events: list[dict]) -> None:
        self.batches += 1
        data = self.tmp / f"batch{self.batches}"
        write_jsonl(data / "touchpoints.jsonl", events)
        warehouse = Warehouse(self.root)
        with warehouse.lock():
            Ingestion(warehouse, CONFIG).run_files(data, refresh=False)

    def refresh(self, now: datetime, **options):
        warehouse = Warehouse(self.root)
        with warehouse.lock():
            return catch_up(warehouse, now, **options)

    def rows(self, sql: str) -> list[tuple]:
        return query(self.root / "parcours.duckdb", sql)

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.root)


def at(day: date, clock: str) -> str:
    return f"{day.isoformat()}T{clock}:00+00:00"


def utc(hour: int, minute: int, day: int = 4) -> datetime:
    return datetime(2027, 1, day, hour, minute, tzinfo=UTC)


def test_an_hourly_dataset_waits_for_the_next_hour_and_then_holds_both_passes_changes(tmp_path, test_datasets):
    w = Landing(tmp_path)
    # c1: one session of two events on D1; c2: one of one event on D1; c3: one on D2.
    w.land(
        [
            event(1, "c1", at(D1, "08:00")),
            event(2, "c1", at(D1, "08:05")),
            event(3, "c2", at(D1, "09:00")),
            event(4, "c3", at(D2, "10:00")),
        ]
    )
    first = w.refresh(utc(13, 10))  # never refreshed: due
    assert first.seq == 2 and "test_hourly" in first.refreshed
    per_day = "select started_date, n_sessions, n_events, batch_seq from raw_test_hourly order by 1"
    assert w.rows(per_day) == [(D1, 2, 3, 2), (D2, 1, 1, 2)]

    w.land([event(5, "c4", at(D2, "11:00")), event(6, "c4", at(D2, "11:10"))])  # seq 3
    second = w.refresh(utc(13, 40))  # the same hour: sessions refreshed, the hourly one left alone
    assert second.seq == 4 and "sessions" in second.refreshed and "test_hourly" not in second.refreshed
    assert "test_hourly" not in w.warehouse.manifests()[-1].derived
    assert w.rows(per_day) == [(D1, 2, 3, 2), (D2, 1, 1, 2)]
    assert w.rows("select count(*) from sessions where customer_id = 'c4'") == [(1,)]
    # Batch 3 is pending for the hourly dataset only; every dataset holds the commits up to 2.
    assert [m.seq for m in w.warehouse.marts_pending()] == [3]
    assert w.warehouse.manifests()[-1].counts[MARTS_THROUGH] == 2

    w.land([event(7, "c5", at(D3, "09:00"))])  # seq 5
    assert w.refresh(utc(13, 55)).seq == 6
    said = {p.dataset: p for p in plan(w.warehouse, now=utc(13, 58))}
    assert said["test_hourly"].due is False and said["test_hourly"].next_due == utc(14, 0)
    assert said["test_hourly"].reasons == (
        "2 commit(s) since the last refresh (seq 3..5, 3 records landed)",
        "what it reads was refreshed since its own last refresh (seq 4..6)",
        "hourly: next due after 14:00 UTC",
    )
    assert said["sessions"].reasons == ()  # current
    assert w.refresh(utc(13, 59)) is None  # nothing new for the every-pass datasets, the hourly one not due

    said = {p.dataset: p for p in plan(w.warehouse, now=utc(14, 5))}
    assert said["test_hourly"].due and said["test_hourly"].reasons[-1] == (
        "hourly: due (last refreshed 2027-01-04 13:10 UTC, in an earlier hour)"
    )
    third = w.refresh(utc(14, 5))
    assert third.seq == 7 and "test_hourly" in third.refreshed
    assert third.customers == 0 and "sessions" not in third.rows  # the every-pass datasets had nothing new
    # Both deferred passes' sessions: D2 gains c4's session (2 events), D3 holds c5's; D1 untouched.
    assert w.rows(per_day) == [(D1, 2, 3, 2), (D2, 2, 3, 7), (D3, 1, 1, 7)]
    # The daily dataset, refreshed at 13:10 too, waits for tomorrow: batches 3 and 5 pending for it.
    assert w.warehouse.derived_through(["test_hourly", "sessions", "test_daily"]) == {
        "test_hourly": 7,
        "sessions": 7,
        "test_daily": 2,
    }
    assert [m.seq for m in w.warehouse.marts_pending()] == [3, 5]
    assert w.warehouse.manifests()[-1].counts[MARTS_THROUGH] == 2
    stored = "select started_date, n_sessions, n_events from raw_test_hourly"
    assert w.rows(f"{stored} except select * from int_test_hourly") == []


def test_a_daily_rollup_reads_the_every_pass_dataset_refreshed_in_the_same_pass(tmp_path, test_datasets):
    w = Landing(tmp_path)
    w.land([event(1, "c1", at(D1, "08:00"))])
    w.refresh(utc(23, 30, day=4))
    w.land([event(2, "c2", at(D1, "09:00"))])
    assert "test_daily" not in w.refresh(utc(23, 50, day=4)).refreshed
    said = {p.dataset: p for p in plan(w.warehouse, now=utc(23, 55, day=4))}
    assert said["test_daily"].reasons[-1] == "daily: next due after 2027-01-05 00:00 UTC"
    # Landed after the last pass: its session exists only once this pass has refreshed sessions.
    w.land([event(3, "c3", at(D2, "10:00")), event(4, "c3", at(D2, "10:01"))])
    report = w.refresh(utc(0, 10, day=5))
    assert {"sessions", "test_daily"} <= set(report.refreshed)
    assert w.rows("select started_date, n_sessions, n_events from raw_test_daily order by 1") == [
        (D1, 2, 2),
        (D2, 1, 2),
    ]


@pytest.mark.slow  # the command-line test below forces every cadence in CI too
def test_everything_is_current_after_a_pass_forcing_every_cadence(tmp_path, test_datasets):
    w = Landing(tmp_path)
    w.land([event(1, "c1", at(D1, "08:00"))])
    w.refresh(utc(13, 10))
    w.land([event(2, "c2", at(D2, "09:00"))])
    w.refresh(utc(13, 20))
    assert [m.seq for m in w.warehouse.marts_pending()] == [3]
    forced = w.refresh(utc(13, 30), all_cadences=True)  # what a compaction runs first
    assert set(forced.refreshed) == {d.name for d in declarations()}
    assert w.warehouse.marts_pending() == []
    assert set(w.warehouse.derived_through([d.name for d in declarations()]).values()) == {forced.seq}
    assert w.rows("select started_date, n_sessions from raw_test_hourly order by 1") == [(D1, 1), (D2, 1)]


def test_a_whole_dataset_is_replaced_exactly(tmp_path, test_datasets):
    w = Landing(tmp_path)
    w.land(
        [
            event(1, "c1", at(D1, "08:00")),
            event(2, "c1", at(D1, "08:05")),
            event(3, "c2", at(D1, "09:00")),
            event(4, "c3", at(D2, "10:00")),
        ]
    )
    w.refresh(utc(13, 10))
    old = {f.path for f in w.warehouse.live_files("test_whole")}
    assert len(old) == 2  # first days D1 (c1, c2) and D2 (c3)
    # c1 comes back on D2 (a second session), c4 arrives on D3.
    w.land([event(5, "c1", at(D2, "12:00")), event(6, "c4", at(D3, "08:00"))])
    report = w.refresh(utc(13, 20))
    manifest = w.warehouse.manifests()[-1]
    new = new_files(w, "test_whole")
    assert old <= set(manifest.removed) and {f.path for f in w.warehouse.live_files("test_whole")} == new
    assert report.rows["test_whole"] == 4
    # By hand: c1 two sessions (2 + 1 events) from D1, c2 one (1) from D1, c3 one (1) from D2, c4 one (1) from D3.
    assert w.rows("select customer_id, first_date, n_sessions, n_events, batch_seq from raw_test_whole order by 1") == [
        ("c1", D1, 2, 3, 4),
        ("c2", D1, 1, 1, 4),
        ("c3", D2, 1, 1, 4),
        ("c4", D3, 1, 1, 4),
    ]
    # Nothing it reads changed: a pass with nothing new does not commit, the files stay.
    assert w.refresh(utc(13, 30)) is None
    # A model reading `parcours_finality` reads the refresh's own finality point (its `as_of`).
    as_of = w.warehouse.derived_state()["test_clock"].as_of
    assert w.rows("select n_sessions, finality_point, batch_seq from raw_test_clock") == [
        (5, datetime.fromisoformat(as_of), 4)
    ]
    assert w.warehouse.live_files("test_clock")[0].path in new_files(w, "test_clock")


def new_files(w: Landing, dataset: str) -> set[str]:
    """The files of `dataset` the latest refresh commit wrote."""
    refresh = [m for m in w.warehouse.manifests() if m.derived][-1]
    return {f.path for f in refresh.files if f.dataset == dataset}


def bh(p_values: list[float]) -> list[float]:
    return list(multipletests(p_values, method="fdr_bh")[1])


def test_a_family_is_recomputed_whole_and_only_the_invalidated_families(tmp_path, test_datasets):
    w = Landing(tmp_path)
    # Families (day, channel): (D1, web) {c1, c2}, (D1, email) {c1}, (D1, app) {c3}, all in partition D1.
    w.land(
        [
            event(1, "c1", at(D1, "08:00"), "web"),
            event(2, "c1", at(D1, "08:05"), "email", "product_page"),
            event(3, "c2", at(D1, "09:00"), "web"),
            event(4, "c3", at(D1, "10:00"), "app"),
        ]
    )
    w.refresh(utc(13, 10))
    family = "select started_date, channel, customer_id, n_events, p_value, q_value, batch_seq from raw_test_family"
    before = {(r[0], r[1], r[2]): r[3:] for r in w.rows(family)}
    # (D1, web): c1 p = 1/3 (2 events), c2 p = 1/2: q = 1/2 for both (0.5 * 2 / 2; 1/3 * 2 / 1 = 2/3 is larger).
    assert before[D1, "web", "c1"] == pytest.approx((2, 1 / 3, 0.5, 2))
    assert before[D1, "web", "c2"] == pytest.approx((1, 1 / 2, 0.5, 2))
    # c2's session continues with two more web events (invalidating (D1, web) only, in D1), c4 opens (D2, email).
    w.land(
        [
            event(5, "c2", at(D1, "09:10"), "web"),
            event(6, "c2", at(D1, "09:20"), "web"),
            event(7, "c4", at(D2, "08:00"), "email"),
        ]
    )
    report = w.refresh(utc(13, 20))
    after = {(r[0], r[1], r[2]): r[3:] for r in w.rows(family)}
    assert report.rows["test_family"] == 3  # (D1, web): c1, c2; (D2, email): c4
    # The untouched families keep their rows as the first refresh wrote them, batch_seq included,
    # though their partition's file was rewritten.
    assert after[D1, "email", "c1"] == before[D1, "email", "c1"]
    assert after[D1, "app", "c3"] == before[D1, "app", "c3"]
    # (D1, web) recomputed together: c2 p = 1/4, and c1's q moves with it though c1 did not change.
    q = bh([1 / 3, 1 / 4])
    assert after[D1, "web", "c1"] == pytest.approx((2, 1 / 3, q[0], 4))
    assert after[D1, "web", "c2"] == pytest.approx((3, 1 / 4, q[1], 4))
    assert q == pytest.approx([1 / 3, 1 / 3])  # by hand: min(1/4 * 2 / 1, 1/3 * 2 / 2)
    assert after[D2, "email", "c4"] == pytest.approx((1, 1 / 2, 1 / 2, 4))
    assert len(after) == 5
    # And the stored rows are what the model computes over everything.
    assert (
        w.rows(
            "select started_date, channel, customer_id, n_events, p_value, q_value from raw_test_family "
            "except select * from int_test_family"
        )
        == []
    )
    d1_files = [f for f in w.warehouse.live_files("test_family") if f.partition == D1.isoformat()]
    assert len(d1_files) == 1 and d1_files[0].path in {f.path for f in w.warehouse.manifests()[-1].files}


BASE = {"dataset": "sessions_daily", "view": "v", "grain": ["started_date"], "partition": "started_date"}
TEXTS = {
    "int_a": ("intermediate", "select * from raw_sessions"),
    "int_b": ("intermediate", "select * from raw_sessions_daily, raw_sessions"),
    "v": ("marts", "select 1"),
}
SESSIONS = {
    "dataset": "sessions",
    "view": "v",
    "grain": ["session_id"],
    "partition": "batch_date",
    "cadence": "daily",
    "invalidation": {"kind": "whole"},
}


def test_a_dataset_may_not_be_refreshed_more_often_than_what_it_reads():
    faster = {**BASE, "cadence": "hourly", "invalidation": {"kind": "whole"}}
    with pytest.raises(DeclarationError, match="more frequent than that of \\['sessions'\\]"):
        resolve([("intermediate", "int_a.yml", SESSIONS), ("intermediate", "int_b.yml", faster)], TEXTS, [])
    slower = {**faster, "cadence": "daily"}
    resolved = {
        d.name: d
        for d in resolve([("intermediate", "int_a.yml", SESSIONS), ("intermediate", "int_b.yml", slower)], TEXTS, [])
    }
    assert resolved["sessions_daily"].depends_on == ("sessions",)
    assert resolved["sessions_daily"].reads_datasets == ("sessions", "sessions_daily")
    assert resolved["sessions"].reads_datasets == ("sessions",) and not resolved["sessions"].reads_clock


@pytest.mark.parametrize(
    ("invalidation", "message"),
    [
        ({"kind": "whole", "source": "x"}, "states its kind only"),
        (
            {"kind": "family", "family": ["channel"], "source": "sessions", "source_family": {"channel": "c"}},
            "must include the partition column 'started_date'",
        ),
        (
            {
                "kind": "family",
                "family": ["started_date", "nope"],
                "source": "sessions",
                "source_family": {"started_date": "started_date", "nope": "x"},
            },
            "columns \\['nope'\\] are not in",
        ),
        (
            {"kind": "family", "family": ["started_date"], "source": "sessions", "source_family": {"x": "y"}},
            "maps each family column",
        ),
        (
            {
                "kind": "family",
                "family": ["started_date"],
                "source": "journeys",
                "source_family": {"started_date": "started_date"},
            },
            "neither a landed dataset",
        ),
    ],
)
def test_a_wrong_whole_or_family_declaration_is_refused(invalidation, message):
    declared = {**BASE, "cadence": "every_pass", "invalidation": invalidation}
    with pytest.raises(DeclarationError, match=message):
        resolve(
            [
                ("intermediate", "int_a.yml", {**SESSIONS, "cadence": "every_pass"}),
                ("intermediate", "int_b.yml", declared),
            ],
            TEXTS,
            [],
        )


def test_a_model_reading_the_finality_point_reads_the_clock():
    texts = {**TEXTS, "int_b": ("intermediate", "select * from raw_sessions_daily, parcours_finality")}
    declared = {**BASE, "cadence": "every_pass", "invalidation": {"kind": "whole"}}
    (resolved,) = resolve([("intermediate", "int_b.yml", declared)], texts, [])
    assert resolved.reads_clock


def test_the_ledger_keeps_each_dataset_s_point_and_reads_older_records_as_the_global_one(tmp_path):
    """Hand-built history: 1 batch; 2 a refresh written before `through` existed (every dataset
    current); 3 a batch; 4 a refresh leaving `slow` behind at 2; 5 a batch; then checkpoints."""
    wh = Warehouse(tmp_path / "w")

    def batch(seq: int, event_id: str) -> None:
        files = wh.write_parquet("touchpoints", touchpoints([(event_id, "c1", BATCH_1[0][2])], seq), seq, "p0")
        wh.commit(manifest(seq, files))

    batch(1, "e1")
    old = {"fast": DerivedState("f"), "slow": DerivedState("f")}
    wh.commit(manifest(2, [], counts={MARTS_THROUGH: 2}, kind=REFRESH, derived=old))
    assert wh.derived_through(["fast", "slow", "new"]) == {"fast": 2, "slow": 2, "new": 2}
    batch(3, "e2")
    fast = {"fast": DerivedState("f", through=4)}
    wh.commit(manifest(4, [], counts={MARTS_THROUGH: 2}, kind=REFRESH, derived=fast))
    batch(5, "e3")
    assert wh.derived_through(["fast", "slow"]) == {"fast": 4, "slow": 2}
    assert [m.seq for m in wh.marts_pending()] == [3, 5]  # both wait for `slow`
    with wh.lock():
        wh.write_checkpoint()
    reopened = Warehouse(wh.root)
    assert reopened.derived_through(["fast", "slow"]) == {"fast": 4, "slow": 2}
    assert [m.seq for m in reopened.marts_pending()] == [3, 5]
    # A checkpoint written before the field: every dataset current before its first pending batch.
    older = Checkpoint.from_json((wh.root / "_checkpoints" / f"{5:0{_SEQ_DIGITS}d}.json").read_bytes(), "5")
    older = dataclasses.replace(older, marts_through=None, derived={})
    assert _State.starting_at(older).marts_through == 2
    assert _State.starting_at(dataclasses.replace(older, marts_pending=())).marts_through == 5


def test_parcours_refresh_leaves_a_dataset_to_its_cadence_unless_told_all_cadences(tmp_path, test_datasets):
    """The command line in process (the test datasets are this process's): a pass like the
    scheduled one, `--dry-run` saying when a deferred dataset is next due, `--all-cadences`."""
    from typer.testing import CliRunner

    from parcours.cli import app

    w = Landing(tmp_path)
    w.land([event(1, "c1", at(D1, "08:00"))])
    far = datetime(2099, 1, 4, 13, 10, tzinfo=UTC)  # after the wall clock of any run of this test
    w.refresh(far)
    w.land([event(2, "c2", at(D1, "09:00"))])
    cli = CliRunner()
    said = cli.invoke(app, ["refresh", "--dry-run", "-w", str(w.root)])
    assert said.exit_code == 0, said.output
    lines = {line.split(":")[0]: line for line in said.output.splitlines() if ": " in line}
    assert lines["test_hourly"] == (
        "test_hourly: 1 commit(s) since the last refresh (seq 3..3, 1 records landed); hourly: next due after 14:00 UTC"
    )
    assert lines["test_daily"].endswith("daily: next due after 2099-01-05 00:00 UTC")
    assert lines["sessions"].startswith("sessions: 1 commit(s) since the last refresh (seq 3..3")

    plain = cli.invoke(app, ["refresh", "-w", str(w.root)])
    assert plain.exit_code == 0, plain.output
    assert "not due yet: test_daily, test_hourly" in plain.output
    assert [m.seq for m in w.warehouse.marts_pending()] == [3]
    assert w.rows("select count(*) from sessions") == [(2,)]
    assert w.rows("select n_sessions from raw_test_hourly") == [(1,)]

    forced = cli.invoke(app, ["refresh", "--all-cadences", "-w", str(w.root)])
    assert forced.exit_code == 0, forced.output
    assert "not due yet" not in forced.output
    assert w.warehouse.marts_pending() == []
    assert w.rows("select n_sessions from raw_test_hourly") == [(2,)]
