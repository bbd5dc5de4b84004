"""What alerting remembers between evaluations: one JSON file, replaced atomically.

- the ``change_id`` of every state change already recorded, so a re-evaluation records and
  sends nothing twice;
- the outbox: per sink, the notifications not yet acknowledged, with their attempts and the
  earliest time of the next one. A notification leaves a sink's outbox only when that sink
  acknowledged it (delivery at least once); a sink that refuses it for good (HTTP 4xx other
  than 408/429) moves it to that sink's ``dead`` list with the reason, never out of sight;
- silences (alert_id → until) and the ``no_data`` alerts left open.

The file is written before anything is sent and again after, so a crash in between sends the
same notifications again rather than losing them. It holds no secret: sinks keep their URLs
and tokens to themselves.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from parcours.alerts.payload import iso

STORE_VERSION = 1


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Pending:
    notification_id: str
    payload: dict[str, Any]
    attempts: int = 0
    next_attempt_at: str | None = None  # ISO; None = now
    last_error: str | None = None

    def due(self, now: datetime) -> bool:
        return self.next_attempt_at is None or _parse(self.next_attempt_at) <= now


@dataclass
class SinkOutbox:
    pending: list[Pending] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    delivered: int = 0


@dataclass
class AlertStore:
    path: Path | None = None
    known: set[str] = field(default_factory=set)
    silences: dict[str, str] = field(default_factory=dict)
    open_no_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    outboxes: dict[str, SinkOutbox] = field(default_factory=dict)
    evaluations: int = 0

    @classmethod
    def load(cls, path: str | Path) -> AlertStore:
        """The store at ``path``; a fresh one when the file does not exist yet."""
        path = Path(path)
        if not path.exists():
            return cls(path=path)
        data = json.loads(path.read_text())
        if data.get("version") != STORE_VERSION:
            raise ValueError(f"{path}: alert store version {data.get('version')!r}, expected {STORE_VERSION}")
        return cls(
            path=path,
            known=set(data["known"]),
            silences=dict(data["silences"]),
            open_no_data=dict(data["open_no_data"]),
            outboxes={
                name: SinkOutbox(
                    pending=[Pending(**p) for p in box["pending"]], dead=list(box["dead"]), delivered=box["delivered"]
                )
                for name, box in data["outboxes"].items()
            },
            evaluations=int(data["evaluations"]),
        )

    def save(self) -> None:
        if self.path is None:
            return
        data = {
            "version": STORE_VERSION,
            "evaluations": self.evaluations,
            "known": sorted(self.known),
            "silences": self.silences,
            "open_no_data": self.open_no_data,
            "outboxes": {
                name: {"pending": [vars(p) for p in box.pending], "dead": box.dead, "delivered": box.delivered}
                for name, box in self.outboxes.items()
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def silence(self, alert_id: str, until: datetime) -> None:
        """Hold the notifications of ``alert_id`` until ``until`` (`parcours alerts silence ID --until T`)."""
        if until.tzinfo is None:
            raise ValueError("until must be timezone-aware")
        self.silences[alert_id] = iso(until)

    def is_silenced(self, alert_id: str | None, now: datetime) -> bool:
        until = self.silences.get(alert_id or "")
        return until is not None and now < _parse(until)

    def outbox(self, sink: str) -> SinkOutbox:
        return self.outboxes.setdefault(sink, SinkOutbox())


def utc_now() -> datetime:
    return datetime.now(UTC)
