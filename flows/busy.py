"""What every scheduled flow does when it finds the warehouse locked: skip the tick, not fail.

Every flow that writes the warehouse takes its lock first (`Warehouse.lock`, non-blocking). A
tick that finds it held (the previous pass still landing, the nightly compaction, someone's
manual `parcours run` or `parcours compact`) ends at once in a Completed state named "Skipped",
with one log line naming the holder: the next tick does what this one would have. Failing
instead would page people for a warehouse that is doing its job; waiting would pile ticks up
behind a long holder.

Kept apart from the flows so that ingestion and compaction skip the same way, under the same
state name (dashboards and `benchmarks/latency.py` count runs by it).
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger
from prefect.states import Completed, State

from parcours.warehouse import WarehouseBusy

SKIPPED = "Skipped"


def skipped(busy: WarehouseBusy, report: Any) -> State:
    """The state a flow returns when `busy` was raised by the lock: Completed, named "Skipped".

    `report` is the flow's usual result, saying why it did nothing; it is the state's data.
    """
    get_run_logger().warning("skipped this run: %s", busy)
    return Completed(name=SKIPPED, message=str(busy), data=report)


__all__ = ["SKIPPED", "skipped"]
