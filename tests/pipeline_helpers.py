"""Small journeys written by hand-rolled rules, and a plain-Python reference of the session rule.

The reference below is deliberately the naive, record-by-record reading of the rule, written
independently of the vectorised implementation, so the pipeline's sessions can be checked
against it on data of any size.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

T0 = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)
TOUCHPOINTS = [
    "home_page",
    "product_page",
    "checkout",
    "delivery",
    "app_session",
    "support_call",
    "renewal_offer",
]
CHANNELS = ["web", "app", "store", "call_center", "email"]


def make_events(customers: int, per_customer: int, seed: int) -> list[dict]:
    """Events with gaps drawn around the 30 min session gap, so both sides of it occur."""
    rng = random.Random(seed)
    events = []
    for c in range(customers):
        t = T0 + timedelta(minutes=rng.randint(0, 600))
        for i in range(per_customer):
            t += timedelta(minutes=rng.choice([1, 5, 29, 30, 31, 45, 300, 2000]), seconds=rng.choice([0, 0, 1]))
            outcome = rng.choice([None] * 8 + ["purchase", "renewal", "cancellation"])
            events.append(
                {
                    "schema_version": 1,
                    "event_id": f"e-{c}-{i}",
                    "customer_id": f"cust-{c:04d}",
                    "occurred_at": t.isoformat(),
                    "channel": rng.choice(CHANNELS),
                    "touchpoint": rng.choice(TOUCHPOINTS),
                    "outcome": outcome,
                    "revenue": 30.0 if outcome in ("purchase", "renewal") else None,
                }
            )
    events.sort(key=lambda e: (e["occurred_at"], e["event_id"]))
    return events


def csat_answers(events: list[dict]) -> list[dict]:
    """One CSAT answer per event, at the event's time, scores 1..5 in turn."""
    return [
        {
            "schema_version": 1,
            "response_id": f"r{i}",
            "customer_id": e["customer_id"],
            "answered_at": e["occurred_at"],
            "survey": "csat",
            "question_id": "q",
            "score": 1 + i % 5,
        }
        for i, e in enumerate(events)
    ]


def write_jsonl(path: Path, rows: list[dict | str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")


def reference_sessions(events: list[dict], gap: timedelta, max_duration: timedelta) -> list[list[str]]:
    """The session rule applied one event at a time: sorted lists of event ids per session."""
    by_customer: dict[str, list[tuple[datetime, str]]] = {}
    for e in events:
        by_customer.setdefault(e["customer_id"], []).append((datetime.fromisoformat(e["occurred_at"]), e["event_id"]))
    sessions = []
    for rows in by_customer.values():
        rows.sort()
        current: list[str] = []
        start = last = None
        for at, event_id in rows:
            if current and (at - last > gap or at - start > max_duration):
                sessions.append(sorted(current))
                current = []
            if not current:
                start = at
            current.append(event_id)
            last = at
        sessions.append(sorted(current))
    return sorted(sessions)


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def arrow(db: Path, sql: str) -> pa.Table:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql(sql).to_arrow_table()


def view_sessions(db: Path) -> list[list[str]]:
    rows = query(db, "select list_sort(list(event_id)) from touchpoints group by session_id")
    return sorted(r[0] for r in rows)


def parcours(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `parcours` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "parcours.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def land_in_two_runs(root: Path, customers: int, days: int, seed: int, config, late_rate: float = 0.03):
    """Generated touchpoints landed by two runs, each refreshed: the first half of the lines,
    then the rest (the planted late lines come in the second). Returns the lines and the
    warehouse, for tests of an incremental landing against a plain count or a full recompute."""
    from parcours.pipelines.run import Ingestion
    from parcours.synthetic import generate_dataset
    from parcours.warehouse import Warehouse

    data = root / "data"
    generate_dataset(data, customers, days, seed=seed, config=config, late_rate=late_rate)
    lines = (data / "touchpoints.jsonl").read_text().splitlines()
    half = len(lines) // 2
    for name, part in (("run1", lines[:half]), ("run2", lines[half:])):
        (root / name).mkdir()
        (root / name / "touchpoints.jsonl").write_text("\n".join(part) + "\n")
    warehouse = Warehouse(root / "w")
    for name in ("run1", "run2"):
        with warehouse.lock():
            Ingestion(warehouse, config).run_files(root / name)
    return lines, warehouse
