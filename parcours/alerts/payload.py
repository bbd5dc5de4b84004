"""What an alert says: its identity, the alert.v1 payload and the alert history rows.

- ``alert_id`` = hash(kind, rule, stage, breakdown, breakdown_value, first firing window) names
  the incident: the same spike seen by every later evaluation keeps the same id, and a new
  spike after a resolution gets a new one.
- ``notification_id`` = hash(alert_id, state, window): one per thing worth saying (this incident
  fired on this window, resolved on that one). Receivers deduplicate on it; delivery is at least
  once, so they will sometimes need to.
- ``change_id`` = hash(series, kind, state, window) names every state change, including the
  pending and back-to-normal ones that are recorded but not sent.

Hashes are SHA-256 of a canonical JSON array, cut to 32 hex digits: stable across runs,
platforms and versions. The payload's contract is ``schemas/alert.v1.json``; the history rows'
is ``ALERT_HISTORY_ARROW``, the schema of the ``alerts`` Parquet dataset (every state change).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1
TEST_NAME = "fisher_exact_one_sided"
INTERVAL_METHOD = "newcombe_hybrid_score"

_TS = pa.timestamp("us", tz="UTC")

ALERT_HISTORY_ARROW = pa.schema(
    [
        pa.field("change_id", pa.string(), nullable=False),
        pa.field("notification_id", pa.string()),  # null for pending / back-to-normal changes
        pa.field("alert_id", pa.string()),  # null before the series fires
        pa.field("kind", pa.string(), nullable=False),  # churn | no_data
        pa.field("state", pa.string(), nullable=False),  # pending | firing | resolved | normal
        pa.field("rule", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("breakdown", pa.string(), nullable=False),
        pa.field("breakdown_value", pa.string(), nullable=False),
        pa.field("window_start", _TS),  # null for no_data on a series that never had a final cohort
        pa.field("window_end", _TS),
        pa.field("n_entrants", pa.int64()),
        pa.field("n_events", pa.int64()),
        pa.field("rate", pa.float64()),
        pa.field("baseline_n_entrants", pa.int64()),
        pa.field("baseline_n_events", pa.int64()),
        pa.field("baseline_rate", pa.float64()),
        pa.field("difference", pa.float64()),
        pa.field("difference_low", pa.float64()),
        pa.field("difference_high", pa.float64()),
        pa.field("relative_rise", pa.float64()),
        pa.field("p_value", pa.float64()),
        pa.field("q_value", pa.float64()),
        pa.field("watermark", _TS, nullable=False),
        pa.field("finality_point", _TS, nullable=False),
        pa.field("evaluated_at", _TS, nullable=False),
        pa.field("notified", pa.bool_(), nullable=False),  # enqueued for the sinks
        pa.field("silenced", pa.bool_(), nullable=False),  # would have been sent, a silence held it
        pa.field("payload", pa.string()),  # the alert.v1 JSON when notified or silenced
    ]
)


def stable_hash(*parts: object) -> str:
    """32 hex digits of SHA-256 over the parts as a canonical JSON array."""
    text = json.dumps([_plain(p) for p in parts], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return iso(value)
    return value


def iso(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z, the form every timestamp of the payload takes."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert_id(kind: str, series: tuple[str, str, str, str], first_window: datetime | None) -> str:
    return stable_hash("alert", kind, *series, first_window)


def notification_id(alert: str, state: str, window: datetime | None) -> str:
    return stable_hash("notification", alert, state, window)


def change_id(kind: str, series: tuple[str, str, str, str], state: str, window: datetime | None) -> str:
    return stable_hash("change", kind, *series, state, window)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def summary(payload: Mapping[str, Any]) -> str:
    """One plain line a person reads first (also the Slack `text` fallback)."""
    where = payload["stage"]
    if payload["breakdown"] != "overall":
        where += f" ({payload['breakdown']}={payload['breakdown_value']})"
    what = payload["rule"].replace("_", " ")
    if payload["kind"] == "no_data":
        last = payload["window_start"] or "never"
        verb = "NO DATA" if payload["state"] == "firing" else "data back"
        return f"{verb}: {what} at {where}: no new final cohort since {last}"
    verb = "FIRING" if payload["state"] == "firing" else "RESOLVED"
    pooled = payload.get("current_windows", 1)
    cohorts = f"the cohort of {payload['window_start'][:10]}"
    if pooled > 1:
        cohorts = f"the {pooled} cohorts up to {payload['window_start'][:10]}"
    ci = payload["difference_ci"]
    diff = payload["difference"]
    interval = "" if ci is None else f" [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]"
    return (
        f"{verb}: {what} at {where} is {_pct(payload['rate'])} for {cohorts} "
        f"(n={payload['n_entrants']}) vs {_pct(payload['baseline']['rate'])} baseline: "
        f"{100 * diff:+.1f} points{interval}, p={payload['p_value']:.2g}"
    )


def history_table(rows: list[dict[str, Any]]) -> pa.Table:
    """The rows of one evaluation as an ``alerts`` dataset table."""
    return pa.Table.from_pylist(rows, schema=ALERT_HISTORY_ARROW)
