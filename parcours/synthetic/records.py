"""A simulated journey as contract records: the JSON objects producers would send.

The texture of real producers lives here: local-time stamps with their offsets from the web, app,
chat and store systems, UTC from the others, milliseconds only where web and app send them,
explicit nulls from the store system, the stage a CRM sends with some calls.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING, Any

from parcours.schemas.contracts import SCHEMA_VERSION
from parcours.synthetic.clock import offset_suffix
from parcours.synthetic.plant import DISCOVERY
from parcours.synthetic.world import LOCAL_TIME_CHANNELS, MILLISECOND_CHANNELS, SIMULATED_STAGE

if TYPE_CHECKING:
    from parcours.synthetic.journey import Journey


def touchpoint_records(journey: Journey) -> list[tuple[int, dict[str, Any]]]:
    """(simulation time, touchpoint record) of each event, in time order."""
    clock, customer_id, segment = journey.world.clock, journey.customer_id, journey.segment
    known_line = False
    records = []
    for t, touchpoint, channel, stage, outcome, revenue, props, event_id in journey.events:
        if channel in LOCAL_TIME_CHANNELS:
            offset = journey.offset(t)
            stamp = clock.stamp(t, offset, offset_suffix(offset), channel in MILLISECOND_CHANNELS)
        else:
            stamp = clock.stamp(t, 0, "Z", False)
        record: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "event_id": event_id,
            "customer_id": customer_id,
            "occurred_at": stamp,
            "channel": channel,
            "touchpoint": touchpoint,
        }
        if stage is not None:
            record["stage"] = stage
        elif channel == "call_center" and event_id[0] in "0123":
            record["stage"] = SIMULATED_STAGE[touchpoint]  # the CRM sends the stage it knows
        known_line = known_line or SIMULATED_STAGE[touchpoint] != DISCOVERY
        if known_line:
            record["product_line"] = journey.product_line
        record["segment"] = segment
        if outcome is not None:
            record["outcome"] = outcome
        elif channel == "store":
            record["outcome"] = None  # the store system sends explicit nulls
        if revenue is not None:
            record["revenue"] = revenue
        if props:
            record["properties"] = props
        records.append((t, record))
    return records


def survey_records(journey: Journey) -> list[tuple[int, dict[str, Any]]]:
    """(simulation time, survey answer record) of each answer kept, in time order."""
    clock = journey.world.clock
    records = []
    for index, (t, fields, _, _) in enumerate(journey.surveys):
        if index % 2:
            stamp = clock.stamp(t, 0, "Z" if index % 4 == 1 else "+00:00", False)
        else:
            offset = journey.offset(t)
            stamp = clock.stamp(t, offset, offset_suffix(offset), False)
        record = {
            "schema_version": SCHEMA_VERSION,
            "response_id": fields.pop("response_id"),
            "customer_id": journey.customer_id,
            "answered_at": stamp,
            **fields,
        }
        records.append((t, record))
    records.sort(key=lambda item: item[0])
    return records


def uuid_from(rng: random.Random) -> str:
    """A version-4-looking UUID from the journey's own generator (uuid4() would not replay)."""
    bits = rng.getrandbits(122)
    time_low, time_mid, time_high = bits >> 90, (bits >> 74) & 0xFFFF, (bits >> 62) & 0xFFF
    variant, node = 0x8000 | (bits >> 48) & 0x3FFF, bits & 0xFFFF_FFFF_FFFF
    return f"{time_low:08x}-{time_mid:04x}-4{time_high:03x}-{variant:04x}-{node:012x}"


class UniqueIds:
    """Pseudonymous customer ids, stable for a seed, checked for collisions."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.seen: set[str] = set()

    def customer_id(self, index: int) -> str:
        salt = 0
        while True:
            digest = hashlib.blake2b(f"{self.seed}:{index}:{salt}".encode(), digest_size=6).hexdigest()
            customer_id = f"cus_{digest}"
            if customer_id not in self.seen:
                self.seen.add(customer_id)
                return customer_id
            salt += 1
