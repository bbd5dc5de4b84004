"""A cycle recompute opens only the partitions from its customers' recompute cycles on, and
gives the rows a from-scratch backfill gives: journeys and churns after a late event inside an
open cycle, a win-back cycle (recomputed from the cycle before it), a due customer, a pending
churn turning final, and a late event inside a win-back cycle that renumbers its later steps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from parcours.config import load_config
from parcours.pipelines.journeys import cycle_rules
from parcours.pipelines.run import Ingestion
from parcours.pipelines.state import file_date
from parcours.refresh import refresher
from parcours.warehouse import Warehouse
from tests.pipeline_helpers import query, write_jsonl

CONFIG = load_config()
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
HORIZON = 180  # days: the default silent-churn horizon
assert cycle_rules(CONFIG).inactivity == timedelta(days=HORIZON)


def line(event_id: str, customer: str, day: float, touchpoint: str = "app_session", outcome: str | None = None):
    return {"schema_version": 1, "event_id": event_id, "customer_id": customer,
            "occurred_at": (T0 + timedelta(days=day)).isoformat(), "channel": "web", "touchpoint": touchpoint,
            "outcome": outcome, "revenue": 30.0 if outcome in ("purchase", "renewal") else None}  # fmt: skip


PASSES = [
    # History: A and B buy on day 0 (cycle 1 from day 1), C on day 2 (cycle 1 from day 3), P never does.
    [
        line("a0", "A", 0, "checkout", "purchase"), line("a1", "A", 1), line("a2", "A", 2),
        line("b0", "B", 0, "checkout", "purchase"), line("b1", "B", 1),
        line("c0", "C", 0), line("c2", "C", 2, "checkout", "purchase"), line("c3", "C", 3), line("c6", "C", 6),
        line("p0", "P", 0), line("p5", "P", 5),
    ],
    # A continues cycle 1 (from day 1); C's late event lands inside cycle 1 (from day 3): day 0 is not read.
    [line("a20", "A", 20), line("c5", "C", 5)],
    # B comes back after its silent churn (day 181): the win-back cycle 2 opens, cycle 1 is
    # recomputed (its start comes from B's state before the pass); C's deadline (day 186) passes:
    # C is due, from its current cycle.
    [line("b187", "B", 187), line("b189", "B", 189)],
    # A renews; the finality point (watermark - 3 days) passes C's churn: final, C due again.
    [line("a190", "A", 190, "renewal_offer", "renewal")],
    # Late, within the allowed lateness: inside B's win-back cycle, its later step renumbered.
    [line("b188", "B", 188)],
]  # fmt: skip


def backfill(data: Path, root: Path, lines: list[dict]) -> None:
    write_jsonl(data / "touchpoints.jsonl", lines)
    warehouse = Warehouse(root)
    with warehouse.lock():
        Ingestion(warehouse, CONFIG).run_files(data, refresh=True)


def rows(root: Path, view: str) -> list[tuple]:
    db = root / "parcours.duckdb"
    columns = [name for (name, *_rest) in query(db, f"describe {view}") if name != "batch_seq"]
    return query(db, f"select {', '.join(columns)} from {view} order by all")


def test_a_cycle_recompute_skips_older_partitions_and_equals_a_backfill_from_scratch(tmp_path, monkeypatch):
    read: list[tuple[str, list[date]]] = []  # per cycle recompute: its dataset's partitions opened
    point_events_at = refresher._point_events_at

    def recording(con, paths, condition, **kwargs):
        if "journey_cycle" in condition:
            read.append((condition, sorted({file_date(p) for p in paths})))
        return point_events_at(con, paths, condition, **kwargs)

    monkeypatch.setattr(refresher, "_point_events_at", recording)
    # Each dataset reads its own files (not the pass's one scan of the touched customers' rows,
    # which takes each dataset's rows by its condition alone): the pruned files are not read at all.
    monkeypatch.setattr(refresher, "SHARED_SCAN_MAX_NEW_ROWS", 0)
    lines: list[dict] = []
    opened: list[list[date]] = []
    for index, new in enumerate(PASSES):
        lines += new
        read.clear()
        backfill(tmp_path / "data", tmp_path / "w", lines)
        opened.append(sorted({day for _, days in read for day in days}))
        if index == 0:
            continue  # the first pass computes everything from scratch itself
        monkeypatch.setattr(refresher, "_point_events_at", point_events_at)
        backfill(tmp_path / f"scratch-{index}", tmp_path / f"w-scratch-{index}", lines)
        monkeypatch.setattr(refresher, "_point_events_at", recording)
        for view in ("journeys", "churns"):
            assert rows(tmp_path / "w", view) == rows(tmp_path / f"w-scratch-{index}", view), (index, view)

    day = lambda n: (T0 + timedelta(days=n)).date()  # noqa: E731
    # The history pass reads everything; A (cycle 1 from day 1) and C (from day 3) leave day 0 out.
    assert opened[0][0] == day(0)
    assert opened[1] and opened[1][0] == day(1)
    # B's recompute from cycle 1 (day 1 on) and the due C (cycle 1 from day 3).
    assert opened[2] and opened[2][0] == day(1)
    # A's cycle 1 (day 1 on), the due C; then B's win-back cycle 2 (from day 187).
    assert opened[3] and opened[3][0] == day(1)
    assert opened[4] == [day(187), day(188), day(189), day(190)]
    # The rows the recomputes are about: B's win-back and C's churn, final.
    churned = query(tmp_path / "w" / "parcours.duckdb", "select customer_id, journey_cycle, churn_status from churns")
    assert sorted(churned) == [("B", 1, "final"), ("C", 1, "final")]
