"""The dead-letter topic: each dead letter as one bounded Kafka record, sent without ever blocking.

The `dead_letters` Parquet dataset keeps every rejected payload whole; the topic is a mirror for
alerting and replay tooling. A mirror must never be what stops ingestion, so:

* a record is at most `record_limit(producer)` bytes (key and value): min(64 KiB, half the
  producer's `max_request_size`). The payload is truncated to fit (`payload_truncated`,
  `payload_bytes` say so) and the record names the Parquet row that holds it whole
  (`parquet.path`, `parquet.row`, beside `batch_seq`, `source`, `partition`, `offset`);
* every send is checked, and what could not be sent is returned, in order, to be recorded in the
  manifest's outbox and sent first, with the same key, by the next run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from parcours.warehouse import OutboxEntry

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 64 * 1024
# Characters kept of each text field but the payload (detail, ids, source) before it is cut.
FIELD_CHARS = 1024
SEND_TIMEOUT_S = 60.0


def record_limit(max_request_size: int) -> int:
    """The most bytes (key + value) one dead-letter record may take."""
    return min(MAX_RECORD_BYTES, max_request_size // 2)


def _cut(text: str | None, chars: int) -> str | None:
    return text if text is None or len(text) <= chars else text[:chars] + "…"


def topic_record(row: dict, path: str, index: int, topic: str, limit: int) -> OutboxEntry:
    """One dead-letter row of a Parquet file (`path`, row `index`) as a record of at most `limit` bytes."""
    payload: bytes = row["payload"]
    chars, budget = FIELD_CHARS, len(payload)
    while True:
        customer_id = _cut(row["customer_id"], chars)
        text = payload[:budget].decode("utf-8", errors="replace")
        value = {
            "reason": row["reason"],
            "detail": _cut(row["detail"], chars),
            "source": _cut(row["source"], chars),
            "partition": row["partition"],
            "offset": row["offset"],
            "record_id": _cut(row["record_id"], chars),
            "customer_id": customer_id,
            "batch_seq": row["batch_seq"],
            "ingested_at": row["ingested_at"].isoformat(),
            "payload": text,
            "payload_bytes": len(payload),
            "payload_truncated": budget < len(payload),
            "parquet": {"path": path, "row": index},
        }
        encoded = json.dumps(value, ensure_ascii=False)
        key = customer_id or None
        size = len(encoded.encode()) + (len(key.encode()) if key else 0)
        if size <= limit:
            return OutboxEntry(topic=topic, key=key, value=encoded)
        if budget > 0:  # escapes and replacement characters can make the text longer than its bytes
            budget = max(0, budget - (size - limit) - 64)
        elif chars > 16:
            chars //= 4
        else:
            raise ValueError(f"limit {limit} bytes is too small for a dead-letter record")


def records_of(root: Path, paths: Iterable[str], topic: str, limit: int) -> Iterator[OutboxEntry]:
    """The dead-letter records of a batch's dead-letter files, in file and row order."""
    import pyarrow.parquet as pq

    for path in paths:
        for index, row in enumerate(pq.read_table(root / path).to_pylist()):
            yield topic_record(row, path, index, topic, limit)


def send_in_order(producer, entries: list[OutboxEntry], timeout_s: float = SEND_TIMEOUT_S) -> list[OutboxEntry]:
    """Send `entries` in order; return those whose delivery failed or is unknown, in order.

    Every future is checked: a send that raises at once (too large for the client) and one that
    the broker refuses (too large for the topic, not authorised, timed out) are both kept.
    """
    futures = []
    for entry in entries:
        try:
            key = entry.key.encode() if entry.key is not None else None
            futures.append(producer.send(entry.topic, key=key, value=entry.value.encode()))
        except Exception as exc:  # the client refused it before sending: keep it for the next run
            futures.append(exc)
    try:
        producer.flush(timeout=timeout_s)
    except Exception as exc:  # whatever is not done below counts as unsent
        log.warning("dead-letter topic: flush failed (%s: %s)", type(exc).__name__, exc)
    unsent: list[OutboxEntry] = []
    failures: dict[str, int] = {}
    for entry, future in zip(entries, futures, strict=True):
        error = future if isinstance(future, Exception) else None
        if error is None:
            try:
                future.get(timeout=0 if future.is_done else 1)
            except Exception as exc:
                error = exc
        if error is not None:
            unsent.append(entry)
            name = f"{type(error).__name__}: {error}"
            failures[name] = failures.get(name, 0) + 1
    for name, n in failures.items():
        log.warning("dead-letter topic: %d record(s) not sent (%s); kept in the manifest's outbox", n, name)
    return unsent
