"""Worker processes for `--workers N`, started before the driver needs them.

A spawned worker imports Beam, Arrow and DuckDB before it can run a micro-batch: ~2.5 s of one
core. Started when the run starts (and by the command line before it imports all that itself),
that import runs beside the driver's instead of after it, so the lanes of the first round start
together. Spawned, not forked: the driver holds threads (kafka-python's I/O thread, DuckDB's)
that a forked child would inherit half-copied.

Nothing heavy is imported here: the command line imports it first.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def _import_pipeline() -> None:
    import parcours.pipelines.run  # noqa: F401 - the import is the point


def start_workers(processes: int) -> ProcessPoolExecutor | None:
    """A pool of `processes` spawned workers, already importing the pipeline; None for 0."""
    if processes < 1:
        return None
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
    for _ in range(processes):
        pool.submit(_import_pipeline)
    return pool
