"""Bad records planted around the valid ones: invalid lines with the reason the contract must
give, exact duplicates (producer retries) and late (out-of-order) lines.

Planting draws from its own random stream per customer, so the valid records of a run with bad
records are exactly those of the same run without.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import msgspec

from parcours.config import JourneyConfig
from parcours.schemas.contracts import Reason
from parcours.synthetic.clock import HOUR_MS, SECOND_MS
from parcours.synthetic.ordering import TimeOrderedLines
from parcours.synthetic.records import uuid_from
from parcours.synthetic.world import cumulative, pick

# Mutations of a valid record that `decode_batch` rejects, with the reason it must give.
_TOUCHPOINT_DEFECTS = (
    ("truncated", Reason.MALFORMED_JSON, 3),
    ("array", Reason.NOT_AN_OBJECT, 1),
    ("version_2", Reason.UNSUPPORTED_VERSION, 1),
    ("unknown_channel", Reason.UNKNOWN_ENUM, 2),
    ("missing_customer_id", Reason.SCHEMA_VIOLATION, 2),
    ("naive_timestamp", Reason.SCHEMA_VIOLATION, 2),
    ("revenue_as_text", Reason.SCHEMA_VIOLATION, 1),
    ("empty_event_id", Reason.SCHEMA_VIOLATION, 1),
    ("too_large", Reason.PAYLOAD_TOO_LARGE, 0.3),
    ("before_earliest", Reason.BEFORE_EARLIEST, 0.7),
    ("in_future", Reason.FUTURE_TIMESTAMP, 0.5),
    ("id_conflict", Reason.DUPLICATE_CONFLICT, 0.7),
)
_SURVEY_DEFECTS = (
    ("truncated", Reason.MALFORMED_JSON, 3),
    ("string", Reason.NOT_AN_OBJECT, 1),
    ("version_2", Reason.UNSUPPORTED_VERSION, 1),
    ("score_out_of_range", Reason.OUT_OF_RANGE, 3),
    ("unknown_survey", Reason.UNKNOWN_ENUM, 1),
    ("unknown_scale", Reason.UNKNOWN_ENUM, 1),
    ("missing_customer_id", Reason.SCHEMA_VIOLATION, 1),
    ("naive_timestamp", Reason.SCHEMA_VIOLATION, 1),
    ("score_as_text", Reason.SCHEMA_VIOLATION, 1),
    ("too_large", Reason.PAYLOAD_TOO_LARGE, 0.3),
    ("before_earliest", Reason.BEFORE_EARLIEST, 0.5),
    ("in_future", Reason.FUTURE_TIMESTAMP, 0.3),
    ("id_conflict", Reason.DUPLICATE_CONFLICT, 0.5),
)
# These records are valid alone; the pipeline rejects them with run context (earliest date,
# wall clock / watermark, ids already seen), so `decode_batch` lets them through.
CONTEXT_REASONS = (Reason.BEFORE_EARLIEST, Reason.FUTURE_TIMESTAMP, Reason.DUPLICATE_CONFLICT)
_UNKNOWN_CHANNELS = ("fax", "whatsapp", "kiosk", "Web")
_LATE_DELAY_MS = (1 * HOUR_MS, 47 * HOUR_MS)  # "within 2 days", and beyond any inactivity gap


class Planter:
    """Writes each valid line, and around it the planted bad, duplicate and late lines."""

    def __init__(self, config: JourneyConfig, invalid_rate: float, duplicate_rate: float, late_rate: float) -> None:
        self.invalid_rate, self.duplicate_rate, self.late_rate = invalid_rate, duplicate_rate, late_rate
        self.active = invalid_rate > 0 or duplicate_rate > 0 or late_rate > 0
        self.max_payload_bytes = config.ingest.max_payload_bytes
        self.earliest_event_date = config.ingest.earliest_event_date
        self.encoder = msgspec.json.Encoder()
        self.defects = {
            "touchpoints": _cumulative_defects(_TOUCHPOINT_DEFECTS),
            "surveys": _cumulative_defects(_SURVEY_DEFECTS),
        }
        self.invalid: dict[str, dict[str, int]] = {"touchpoints": {}, "surveys": {}}
        self.duplicates = {"touchpoints": 0, "surveys": 0}
        self.late = {"touchpoints": 0, "surveys": 0}

    def add(
        self,
        out: TimeOrderedLines,
        kind: str,
        t: int,
        record: dict[str, Any],
        line: bytes,
        rng: random.Random,
    ) -> None:
        if not self.active:
            out.add(t, line)
            return
        key = t
        if rng.random() < self.late_rate:
            key = t + rng.randint(*_LATE_DELAY_MS)
            self.late[kind] += 1
        out.add(key, line)
        if rng.random() < self.duplicate_rate:
            out.add(key + rng.randint(1 * SECOND_MS, 2 * HOUR_MS), line)  # a producer retry
            self.duplicates[kind] += 1
        if rng.random() < self.invalid_rate:
            defect, reason = pick(rng, self.defects[kind])
            bad = self._defective(kind, defect, record, line, rng)
            delay = rng.randint(1 * SECOND_MS, 2 * HOUR_MS) if defect == "id_conflict" else 0
            out.add(key + delay, bad)
            counts = self.invalid[kind]
            counts[reason] = counts.get(reason, 0) + 1

    def _defective(self, kind: str, defect: str, record: dict[str, Any], line: bytes, rng: random.Random) -> bytes:
        id_field, time_field = ("event_id", "occurred_at") if kind == "touchpoints" else ("response_id", "answered_at")
        if defect == "truncated":
            return line[: rng.randint(1, len(line) - 2)]
        if defect == "array":
            return b"[" + line + b"]"
        if defect == "string":
            return self.encoder.encode(line.decode())
        bad = dict(record)
        if defect != "id_conflict":
            bad[id_field] = uuid_from(rng)
        if defect == "version_2":
            bad["schema_version"] = 2
        elif defect == "unknown_channel":
            bad["channel"] = rng.choice(_UNKNOWN_CHANNELS)
        elif defect == "missing_customer_id":
            del bad["customer_id"]
        elif defect == "naive_timestamp":
            bad[time_field] = bad[time_field][:19]
        elif defect == "revenue_as_text":
            bad["revenue"] = f"{rng.uniform(5, 80):.2f}".replace(".", ",")
        elif defect == "empty_event_id":
            bad["event_id"] = ""
        elif defect == "too_large":
            filler = "lorem ipsum " * (self.max_payload_bytes // 12 + 100)
            if kind == "touchpoints":
                bad["properties"] = {"raw_dump": filler}
            else:
                bad["verbatim"] = filler
        elif defect == "before_earliest":
            old = self.earliest_event_date - timedelta(days=rng.randint(30, 400))
            bad[time_field] = old.isoformat() + bad[time_field][10:]
        elif defect == "in_future":
            bad[time_field] = "2099" + bad[time_field][4:].replace("-02-29", "-02-28")
        elif defect == "id_conflict":  # same id, another payload: a producer bug, not a retry
            if kind == "touchpoints":
                bad["channel"] = "web" if bad["channel"] != "web" else "app"
            else:
                bad["question_id"] = bad["question_id"] + "_v2"
        elif defect == "score_out_of_range":
            survey = bad["survey"]
            if survey == "kano":
                bad["dysfunctional_score"] = 6
            elif survey == "nps":
                bad["score"] = 11
            elif survey == "ces" and bad.get("scale") != "1-5":
                bad["score"] = 8
            else:
                bad["score"] = 0
        elif defect == "unknown_survey":
            bad["survey"] = rng.choice(("csi", "NPS", "ces2"))
        elif defect == "unknown_scale":
            bad["scale"] = "0-100"
        elif defect == "score_as_text":
            bad["score"] = str(bad["score"])
        return self.encoder.encode(bad)

    def planted_invalid(self, context: bool) -> dict[str, int]:
        total: dict[str, int] = {}
        for counts in self.invalid.values():
            for reason, n in counts.items():
                if (reason in CONTEXT_REASONS) == context:
                    total[reason] = total.get(reason, 0) + n
        return dict(sorted(total.items()))


def _cumulative_defects(defects: tuple[tuple[str, str, float], ...]) -> tuple[tuple[Any, ...], list[float]]:
    return cumulative({(name, reason): weight for name, reason, weight in defects})
