"""`generate_dataset`: run every customer's journey and write the files, in delivery-time order."""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import msgspec

from parcours.config import JourneyConfig
from parcours.synthetic.bad_records import Planter
from parcours.synthetic.clock import DAY_MS, Clock
from parcours.synthetic.journey import Journey
from parcours.synthetic.ordering import TimeOrderedLines
from parcours.synthetic.plant import EMERGING_FROM_SHARE, ChurnSpike, Plant
from parcours.synthetic.records import UniqueIds, survey_records, touchpoint_records
from parcours.synthetic.truth import Truth
from parcours.synthetic.world import CSAT_RATED, SIMULATED_STAGE, World

SPILL_EVERY_LINES = 200_000  # lines held in memory before they go to the day buckets (~60 MB)

# Touchpoints whose experience the simulation draws: the only ones that can be moments of truth.
RATED_TOUCHPOINTS = tuple(CSAT_RATED)


@dataclass(frozen=True, slots=True)
class GenerationSummary:
    touchpoints_path: Path
    surveys_path: Path
    truth_path: Path
    n_touchpoints: int  # valid, unique events (planted bad lines and duplicates not counted)
    n_surveys: int
    n_customers: int
    truth_tables: dict[str, Path] | None = None  # truth/<name>.parquet

    @property
    def paths(self) -> tuple[Path, Path, Path]:
        return self.touchpoints_path, self.surveys_path, self.truth_path


def generate_dataset(
    out_dir: Path,
    customers: int,
    days: int,
    seed: int,
    *,
    config: JourneyConfig,
    start: date = date(2026, 1, 5),
    churn_spike: ChurnSpike | None = None,
    invalid_rate: float = 0.0,
    duplicate_rate: float = 0.0,
    late_rate: float = 0.0,
    emerging_from_day: int | None = None,
    plant: str | Plant = "default",
    moments: tuple[str, ...] | None = None,
    drop_off: dict[str, float] | None = None,
    pii_rate: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> GenerationSummary:
    """Write `touchpoints.jsonl`, `surveys.jsonl`, `truth.json` and `truth/*.parquet` into `out_dir`.

    Lines come in event-time order, as a stream would deliver them; the planted late lines are
    the only exception. With all rates at 0 every line is a valid, unique record. `plant`
    ("default" or "none") chooses the world; `moments`, `drop_off` and `churn_spike` steer it
    (see `Plant.steered`); `pii_rate` is the share of verbatims carrying personal data.
    """
    base = plant if isinstance(plant, Plant) else Plant.named(plant)
    steered = base.steered(moments=moments, drop_off=drop_off, spike=churn_spike)
    _check_arguments(customers, days, config, steered, invalid_rate, duplicate_rate, late_rate, pii_rate)
    if emerging_from_day is None:
        emerging_from_day = round(days * EMERGING_FROM_SHARE)
    if not 0 <= emerging_from_day < days:
        raise ValueError(f"emerging_from_day must be within the {days} days, got {emerging_from_day}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = World(
        seed=seed,
        days=days,
        end_ms=days * DAY_MS,
        emerging_from_ms=emerging_from_day * DAY_MS,
        plant=steered,
        clock=Clock(start, days),
        pii_rate=pii_rate,
    )
    planter = Planter(config, invalid_rate, duplicate_rate, late_rate)
    truth = Truth(world, start, config)
    encoder = msgspec.json.Encoder()
    paths = (out_dir / "touchpoints.jsonl", out_dir / "surveys.jsonl", out_dir / "truth.json")
    with tempfile.TemporaryDirectory(prefix=".generate-", dir=out_dir) as spill:
        touchpoints = TimeOrderedLines(Path(spill), "touchpoints", SPILL_EVERY_LINES)
        surveys = TimeOrderedLines(Path(spill), "surveys", SPILL_EVERY_LINES)
        ids = UniqueIds(seed)
        done = 0
        for index in range(customers):
            journey = Journey(world, index, ids.customer_id(index))
            journey.run()
            truth.add(journey)
            plant_rng = random.Random(f"parcours:{seed}:{index}:plant")
            for when, record in touchpoint_records(journey):
                planter.add(touchpoints, "touchpoints", when, record, encoder.encode(record), plant_rng)
            for when, record in survey_records(journey):
                planter.add(surveys, "surveys", when, record, encoder.encode(record), plant_rng)
            done += 1
            if progress is not None and done == 250:
                progress(done)
                done = 0
        if progress is not None and done:
            progress(done)
        touchpoints.write(paths[0])
        surveys.write(paths[1])
    document = truth.document(customers, start, emerging_from_day, planter)
    paths[2].write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tables = truth.write_tables(out_dir / "truth")
    return GenerationSummary(*paths, truth.n_touchpoints, truth.n_surveys, customers, tables)


def _check_arguments(
    customers: int,
    days: int,
    config: JourneyConfig,
    plant: Plant,
    invalid_rate: float,
    duplicate_rate: float,
    late_rate: float,
    pii_rate: float,
) -> None:
    if customers < 1:
        raise ValueError(f"customers must be >= 1, got {customers}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    for name, rate in (
        ("invalid_rate", invalid_rate),
        ("duplicate_rate", duplicate_rate),
        ("late_rate", late_rate),
        ("pii_rate", pii_rate),
    ):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {rate}")
    mismatched = [
        f"touchpoints.{touchpoint}: the generator needs stage '{stage}', got '{config.stage_of(touchpoint)}'"
        for touchpoint, stage in SIMULATED_STAGE.items()
        if config.stage_of(touchpoint) != stage
    ]
    if mismatched:
        raise ValueError("the configuration does not map the generator's touchpoints: " + "; ".join(mismatched))
    for touchpoint in plant.moments:
        if touchpoint not in config.touchpoints:
            raise ValueError(f"moment of truth '{touchpoint}' is not a configured touchpoint")
        if touchpoint not in RATED_TOUCHPOINTS:
            raise ValueError(
                f"moment of truth '{touchpoint}' is not a touchpoint the simulation rates"
                f" (one of: {', '.join(RATED_TOUCHPOINTS)})"
            )
    for stage in plant.drop_off:
        if stage not in config.stages:
            raise ValueError(f"drop-off stage '{stage}' is not a stage (stages: {list(config.stages)})")
    spike = plant.spike
    if spike is not None:
        if spike.stage not in config.stages:
            raise ValueError(f"churn spike stage '{spike.stage}' is not a stage (stages: {list(config.stages)})")
        if spike.from_day >= days:
            raise ValueError(f"churn spike from_day {spike.from_day} is not within the {days} days")
        if spike.until_day is not None and spike.until_day > days:
            raise ValueError(f"churn spike until_day {spike.until_day} is after the {days} days")


__all__ = ["RATED_TOUCHPOINTS", "GenerationSummary", "generate_dataset"]
