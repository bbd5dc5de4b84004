"""Send generated (or exported) JSONL files to Kafka, keyed by customer, as producers would.

The producer does not validate: bad lines are sent as they are, because catching them is the
pipeline's job (dead letters with a reason). Only the key is read, so that every event of a
customer lands in one partition, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from parcours.kafka import KafkaSettings, make_producer

# file name in the data folder -> logical topic
FILES = {"touchpoints.jsonl": "touchpoints", "surveys.jsonl": "surveys"}


class _Keyed(msgspec.Struct):
    customer_id: str | None = None


_key_decoder = msgspec.json.Decoder(_Keyed)


def customer_key(line: bytes) -> bytes | None:
    """The Kafka key of a raw line: its customer_id, or None when the line cannot be read."""
    try:
        customer = _key_decoder.decode(line).customer_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return customer.encode() if customer else None


@dataclass(frozen=True)
class ProduceSummary:
    sent: dict[str, int]  # topic -> messages acknowledged
    failed: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.sent.values())


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        for line in handle:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


def produce_dir(
    data_dir: Path, settings: KafkaSettings, progress: Callable[[int], None] | None = None
) -> ProduceSummary:
    """Send every line of touchpoints.jsonl and surveys.jsonl found in `data_dir`."""
    present = {name: topic for name, topic in FILES.items() if (data_dir / name).exists()}
    if not present:
        raise FileNotFoundError(f"{data_dir}: neither {' nor '.join(FILES)} found")
    sent: dict[str, int] = {}
    failed: dict[str, int] = {}
    producer = make_producer(settings)
    try:
        for name, logical in present.items():
            topic = settings.topics[logical]
            sent[topic] = failed[topic] = 0

            def on_ok(_metadata, topic: str = topic) -> None:
                sent[topic] += 1

            def on_error(_exc, topic: str = topic) -> None:
                failed[topic] += 1

            pending = 0
            for line in _lines(data_dir / name):
                future = producer.send(topic, value=line, key=customer_key(line))
                future.add_callback(on_ok).add_errback(on_error)
                pending += 1
                if pending == 10_000:
                    if progress:
                        progress(pending)
                    pending = 0
            producer.flush()
            if progress and pending:
                progress(pending)
    finally:
        producer.close()
    return ProduceSummary(sent, failed)
