"""One evaluation end to end: evaluate, record every new state change, enqueue, deliver.

``run_evaluation`` is what the scheduled flow calls after the drop-off datasets refresh. It
returns the new history rows (for the ``alerts`` dataset) and what each sink did. Order matters
for at-least-once delivery: the store (changes seen, outboxes) is saved *before* any sink is
called and again after, so a crash mid-way re-sends rather than loses.

A store that has never evaluated (a first deployment over months of history) records every
past change but only sends the alerts still firing: nobody wants last spring's resolved spikes
paged tonight.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa

from parcours.alerts.evaluate import Contributors, Evaluation, evaluate
from parcours.alerts.payload import history_table
from parcours.alerts.settings import AlertSettings
from parcours.alerts.sinks import SendResult, Sink
from parcours.alerts.store import AlertStore, Pending

log = logging.getLogger(__name__)

BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=6)


@dataclass(frozen=True)
class Delivery:
    sink: str
    attempted: int
    delivered: int
    error: str | None
    pending: int


@dataclass(frozen=True)
class EvaluationReport:
    history: pa.Table
    enqueued: list[str]  # notification_ids new in this evaluation
    deliveries: list[Delivery]
    evaluation: Evaluation


def backoff(attempts: int) -> timedelta:
    """1 min, 2 min, 4 min... capped at 6 h: the next evaluation usually comes first."""
    return min(BACKOFF_BASE * (2 ** max(0, attempts - 1)), BACKOFF_MAX)


def run_evaluation(
    cohorts: pa.Table,
    settings: AlertSettings,
    store: AlertStore,
    sinks: Sequence[Sink],
    evaluated_at: datetime,
    contributors: Contributors | None = None,
) -> EvaluationReport:
    """Evaluate ``cohorts`` as of ``evaluated_at``, record and send what is new."""
    evaluation = evaluate(cohorts, settings, evaluated_at, store.open_no_data, contributors)
    fresh = store.evaluations == 0
    rows, enqueued = [], []
    for change in evaluation.changes:
        if change.change_id in store.known:
            continue
        row = dict(change.row)
        if change.payload is not None and (
            not fresh or (change.state == "firing" and change.alert_id in evaluation.firing)
        ):
            row["payload"] = json.dumps(change.payload, sort_keys=True)
            if store.is_silenced(change.alert_id, evaluated_at):
                row["silenced"] = True
            else:
                row["notified"] = True
                enqueued.append(change.notification_id)
                for sink in sinks:
                    store.outbox(sink.name).pending.append(Pending(change.notification_id, change.payload))
        rows.append(row)
        store.known.add(change.change_id)
    store.open_no_data = evaluation.open_no_data
    store.evaluations += 1
    store.save()
    deliveries = deliver(store, sinks, evaluated_at)
    store.save()
    return EvaluationReport(history_table(rows), enqueued, deliveries, evaluation)


def deliver(store: AlertStore, sinks: Sequence[Sink], now: datetime) -> list[Delivery]:
    """Offer each sink its due notifications; one sink failing never stops the next."""
    deliveries = []
    for sink in sinks:
        box = store.outbox(sink.name)
        due = [p for p in box.pending if p.due(now)]
        if not due:
            deliveries.append(Delivery(sink.name, 0, 0, None, len(box.pending)))
            continue
        try:
            result = sink.send(due, now)
        except Exception as exc:  # a sink must not raise; if one does, it still must not block the others
            result = SendResult(error=f"{sink.name} raised {type(exc).__name__}")
        failed = [p for p in due if p.notification_id not in result.acked]
        box.delivered += len(due) - len(failed)
        keep = {p.notification_id for p in box.pending} - result.acked
        if result.permanent:
            box.dead.extend(
                {"notification_id": p.notification_id, "reason": result.error, "payload": p.payload} for p in failed
            )
            keep -= {p.notification_id for p in failed}
        else:
            for p in failed:
                p.attempts += 1
                p.last_error = result.error
                wait = backoff(p.attempts)
                if result.retry_after_s is not None:
                    wait = max(wait, timedelta(seconds=result.retry_after_s))
                p.next_attempt_at = (now + wait).isoformat()
        box.pending = [p for p in box.pending if p.notification_id in keep]
        if result.error:
            log.warning(
                "alert sink %s: %s (%d notification(s) kept for retry)",
                sink.name,
                result.error,
                0 if result.permanent else len(failed),
            )
        deliveries.append(Delivery(sink.name, len(due), len(due) - len(failed), result.error, len(box.pending)))
    return deliveries
