"""What was planted and what came of it: `truth.json` and the per-customer tables in `truth/`.

`truth.json` states the planted strengths and run-level counts (its shape is what existing
consumers read; steering adds keys only when used). The Parquet tables say, customer by customer,
what the simulation did, so a test can compute any estimand (drop-off rates, moment-of-truth
lift, h1/h2, revenue by NPS category, funnel conversions) without parsing the event files.
Their columns are documented in the package docstring.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from parcours.config import JourneyConfig
from parcours.synthetic.bad_records import Planter
from parcours.synthetic.journey import Journey, nps_category
from parcours.synthetic.plant import (
    ADD_ON_PER_USAGE_SESSION,
    CSAT_GIVEN_EXPERIENCE,
    DETRACTOR_BELOW,
    DETRACTOR_MONTHLY_CANCEL,
    EMERGING_TERMS,
    EXPERIENCE_LEVELS,
    EXPERIENCE_MIX_MOMENT,
    EXPERIENCE_MIX_OTHER,
    EXPLICIT_LEAVE_SHARE,
    IMPORTANCE_DISTRIBUTIONS,
    LEAVE_AFTER_BAD,
    LEAVE_AFTER_BAD_ELSEWHERE,
    PROMOTER_FROM,
    RENEWAL_CANCEL,
    REVENUE_MULTIPLIER,
    SEGMENT_CANCEL,
    Plant,
)
from parcours.synthetic.world import COMPANY_SENT, SIMULATED_STAGE, World

_CONVERSIONS = ("purchase", "renewal")  # the outcomes that close a journey cycle in the simulation
_TS = pa.timestamp("ms", tz="UTC")

CUSTOMER_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("customer_index", pa.int32()),
        ("segment", pa.string()),
        ("product_line", pa.string()),
        ("persona", pa.string()),
        ("language", pa.string()),
        ("timezone", pa.string()),
        ("first_event_at", _TS),
        ("last_event_at", _TS),
        ("last_activity_at", _TS),
        ("last_activity_stage", pa.string()),
        ("last_activity_touchpoint", pa.string()),
        ("purchased_at", _TS),
        ("end", pa.string()),
        ("end_stage", pa.string()),
        ("end_at", _TS),
        ("abandoned_stage", pa.string()),
        ("leave_stage", pa.string()),
        ("leave_reason", pa.string()),
        ("leave_decided_at", _TS),
        ("leave_event_id", pa.string()),
        ("leave_touchpoint", pa.string()),
        ("n_journeys", pa.int32()),
        ("n_events", pa.int32()),
        ("n_activities", pa.int32()),
        ("n_interactions", pa.int32()),
        ("n_bad_experiences", pa.int32()),
        ("n_bad_moments", pa.int32()),
        ("initial_loyalty", pa.float64()),
        ("final_loyalty", pa.float64()),
        ("nps_category", pa.string()),
        ("revenue", pa.float64()),
    ]
)
JOURNEY_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("journey_cycle", pa.int32()),
        ("cycle_type", pa.string()),
        ("started_at", _TS),
        ("ended_at", _TS),
        ("n_events", pa.int32()),
        ("n_activities", pa.int32()),
        ("end", pa.string()),
        ("end_stage", pa.string()),
        ("end_at", _TS),
        ("end_touchpoint", pa.string()),
        ("last_activity_at", _TS),
        ("last_activity_stage", pa.string()),
        ("drop_off_due_at", _TS),
        ("abandoned_stage", pa.string()),
        ("revenue", pa.float64()),
    ]
)
INTERACTION_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("event_id", pa.string()),
        ("touchpoint", pa.string()),
        ("stage", pa.string()),
        ("at", _TS),
        ("experience", pa.string()),
        ("experience_level", pa.int8()),
        ("is_bad", pa.bool_()),
        ("is_moment_of_truth", pa.bool_()),
        ("n_bad_before", pa.int32()),
        ("n_bad_moments_before", pa.int32()),
        ("leave_probability", pa.float64()),
        ("made_leave", pa.bool_()),
        ("csat_score", pa.int8()),
        ("ces_score", pa.int8()),
    ]
)
PII_SCHEMA = pa.schema(
    [("response_id", pa.string()), ("customer_id", pa.string()), ("kind", pa.string()), ("text", pa.string())]
)
TABLES = {
    "customers": CUSTOMER_SCHEMA,
    "journeys": JOURNEY_SCHEMA,
    "interactions": INTERACTION_SCHEMA,
    "pii": PII_SCHEMA,
}


def _mean(distribution: dict[int, float]) -> float:
    return sum(score * p for score, p in distribution.items()) / sum(distribution.values())


def _mean_csat(mix: tuple[float, ...]) -> float:
    return round(sum(share * _mean(CSAT_GIVEN_EXPERIENCE[level]) for level, share in enumerate(mix)), 4)


def _stage_of(event: tuple) -> str:
    return event[3] or SIMULATED_STAGE[event[1]]


class Truth:
    """What was planted and what came of it, gathered customer by customer."""

    def __init__(self, world: World, start: date, config: JourneyConfig) -> None:
        self.world, self.config = world, config
        self.origin_ms = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp() * 1000)
        self.timeouts_ms = {
            stage: int(config.drop_off.timeout_for(stage) / timedelta(milliseconds=1)) for stage in config.stages
        }
        self.revenue: dict[str, float] = {}
        self.churned: list[str] = []
        self.ends: dict[str, dict[str, int]] = {}
        self.n_touchpoints = self.n_surveys = 0
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}

    def add(self, journey: Journey) -> None:
        self.revenue[journey.customer_id] = round(journey.revenue, 2)
        self.n_touchpoints += len(journey.events)
        self.n_surveys += len(journey.surveys)
        if journey.ended_by is not None and journey.ended_at_stage is not None:
            by_stage = self.ends.setdefault(journey.ended_by, {})
            by_stage[journey.ended_at_stage] = by_stage.get(journey.ended_at_stage, 0) + 1
            if journey.ended_by == "cancelled":
                self.churned.append(journey.customer_id)
        self._add_rows(journey)

    # -- truth/*.parquet -------------------------------------------------------------------------

    def _at(self, t: int | None) -> datetime | None:
        return None if t is None else datetime.fromtimestamp((self.origin_ms + t) / 1000, tz=UTC)

    def _add_rows(self, journey: Journey) -> None:
        events, customer_id, at = journey.events, journey.customer_id, self._at
        journeys = self._journeys(journey)
        self.rows["journeys"].extend(journeys)
        for interaction in journey.interactions:
            event = events[interaction.event_index]
            self.rows["interactions"].append(
                {
                    "customer_id": customer_id,
                    "event_id": event[7],
                    "touchpoint": interaction.touchpoint,
                    "stage": interaction.stage,
                    "at": at(event[0]),
                    "experience": EXPERIENCE_LEVELS[interaction.level],
                    "experience_level": interaction.level,
                    "is_bad": interaction.level == 0,
                    "is_moment_of_truth": interaction.is_moment,
                    "n_bad_before": interaction.bad_before,
                    "n_bad_moments_before": interaction.bad_moments_before,
                    "leave_probability": interaction.leave_probability,
                    "made_leave": interaction.made_leave,
                    "csat_score": interaction.scores.get("csat"),
                    "ces_score": interaction.scores.get("ces"),
                }
            )
        for response_id, kind, text in journey.pii:
            self.rows["pii"].append(
                {"response_id": response_id, "customer_id": customer_id, "kind": kind, "text": text}
            )
        activities = [e for e in events if e[1] not in COMPANY_SENT]
        last_activity = activities[-1] if activities else None
        leaver = next((i for i in journey.interactions if i.made_leave), None)
        final = journeys[-1]
        self.rows["customers"].append(
            {
                "customer_id": customer_id,
                "customer_index": journey.index,
                "segment": journey.segment,
                "product_line": journey.product_line,
                "persona": journey.persona,
                "language": journey.language,
                "timezone": journey.timezone,
                "first_event_at": at(events[0][0]) if events else None,
                "last_event_at": at(events[-1][0]) if events else None,
                "last_activity_at": at(last_activity[0]) if last_activity else None,
                "last_activity_stage": _stage_of(last_activity) if last_activity else None,
                "last_activity_touchpoint": last_activity[1] if last_activity else None,
                "purchased_at": at(journey.purchased_at),
                "end": "active" if final["end"] in ("in_progress", "converted") else final["end"],
                "end_stage": None if final["end"] in ("in_progress", "converted") else final["end_stage"],
                "end_at": None if final["end"] in ("in_progress", "converted") else final["end_at"],
                "abandoned_stage": final["abandoned_stage"],
                "leave_stage": journey.leaving[0] if journey.leaving else None,
                "leave_reason": journey.leaving[2] if journey.leaving else None,
                "leave_decided_at": at(journey.leaving[1]) if journey.leaving else None,
                "leave_event_id": events[leaver.event_index][7] if leaver else None,
                "leave_touchpoint": leaver.touchpoint if leaver else None,
                "n_journeys": len(journeys),
                "n_events": len(events),
                "n_activities": len(activities),
                "n_interactions": len(journey.interactions),
                "n_bad_experiences": journey.bad_experiences,
                "n_bad_moments": journey.bad_moments,
                "initial_loyalty": round(journey.initial_loyalty, 4),
                "final_loyalty": round(journey.loyalty, 4),
                "nps_category": nps_category(journey.loyalty),
                "revenue": round(journey.revenue, 2),
            }
        )

    def _journeys(self, journey: Journey) -> list[dict[str, Any]]:
        """The customer's journey cycles: cycle 0 up to and including the purchase, each later one
        up to and including the next renewal; the last open one ends as the simulation ended it."""
        cycles: list[list[tuple]] = [[]]
        for event in journey.events:
            cycles[-1].append(event)
            if event[4] in _CONVERSIONS:
                cycles.append([])
        if not cycles[-1] and len(cycles) > 1 and journey.ended_by is None:
            cycles.pop()  # converted, then nothing more by the end of the period
        rows, last_activity, at = [], None, self._at
        for number, cycle in enumerate(cycles):
            for event in cycle:
                if event[1] not in COMPANY_SENT:
                    last_activity = event
            is_last = number == len(cycles) - 1
            end, end_stage, end_t, end_touchpoint, abandoned = "in_progress", None, None, None, None
            if cycle and cycle[-1][4] in _CONVERSIONS:
                end, end_stage, end_t, end_touchpoint = "converted", _stage_of(cycle[-1]), cycle[-1][0], cycle[-1][1]
            elif is_last and journey.ended_by == "cancelled":
                end, end_stage, end_t, end_touchpoint = (
                    "explicit_churn",
                    journey.ended_at_stage,
                    cycle[-1][0],
                    cycle[-1][1],
                )
            elif is_last and journey.ended_by == "left_silently":
                end, end_stage = "silent_churn", journey.ended_at_stage
                end_t = last_activity[0] if last_activity else None
            elif is_last and journey.ended_by == "abandoned":
                end, abandoned = "dropped_off", journey.ended_at_stage
                if last_activity is not None:
                    end_stage, end_t, end_touchpoint = _stage_of(last_activity), last_activity[0], last_activity[1]
            stage = _stage_of(last_activity) if last_activity else None
            due = None if last_activity is None else last_activity[0] + self.timeouts_ms[stage]
            revenue = sum(e[5] for e in cycle if e[5] is not None)
            rows.append(
                {
                    "customer_id": journey.customer_id,
                    "journey_cycle": number,
                    "cycle_type": "first_purchase" if number == 0 else "renewal",
                    "started_at": at(cycle[0][0]) if cycle else None,
                    "ended_at": at(cycle[-1][0]) if cycle else None,
                    "n_events": len(cycle),
                    "n_activities": sum(e[1] not in COMPANY_SENT for e in cycle),
                    "end": end,
                    "end_stage": end_stage,
                    "end_at": at(end_t),
                    "end_touchpoint": end_touchpoint,
                    "last_activity_at": at(last_activity[0]) if last_activity else None,
                    "last_activity_stage": stage,
                    "drop_off_due_at": at(due) if end == "dropped_off" else None,
                    "abandoned_stage": abandoned,
                    "revenue": round(revenue, 2),
                }
            )
        return rows

    def write_tables(self, folder: Path) -> dict[str, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, schema in TABLES.items():
            paths[name] = folder / f"{name}.parquet"
            pq.write_table(pa.Table.from_pylist(self.rows[name], schema=schema), paths[name])
        return paths

    # -- truth.json ------------------------------------------------------------------------------

    def document(
        self,
        customers: int,
        start: date,
        emerging_from_day: int,
        planter: Planter,
    ) -> dict[str, Any]:
        world, config, plant = self.world, self.config, self.world.plant
        spike = plant.spike

        def day(n: int) -> str:
            return (start + timedelta(days=n)).isoformat()

        importance = plant.importance
        document: dict[str, Any] = {
            "seed": world.seed,
            "customers": customers,
            "days": world.days,
            "start": start.isoformat(),
            "end": day(world.days),
            "config_fingerprint": config.fingerprint,
            "moments_of_truth": [
                {
                    "touchpoint": touchpoint,
                    "stage": config.stage_of(touchpoint),
                    "leave_probability_by_bad_experiences": {str(k): p for k, p in LEAVE_AFTER_BAD.items()},
                    "experience_mix": dict(zip(EXPERIENCE_LEVELS, EXPERIENCE_MIX_MOMENT, strict=True)),
                    "mean_csat": _mean_csat(EXPERIENCE_MIX_MOMENT),
                    "importance_mean": round(_mean(IMPORTANCE_DISTRIBUTIONS[importance[touchpoint]]), 4),
                }
                for touchpoint in plant.moments
            ],
            "other_touchpoints": {
                "leave_probability_after_bad_experience": LEAVE_AFTER_BAD_ELSEWHERE,
                "experience_mix": dict(zip(EXPERIENCE_LEVELS, EXPERIENCE_MIX_OTHER, strict=True)),
                "mean_csat": _mean_csat(EXPERIENCE_MIX_OTHER),
            },
            "explicit_leave_share": EXPLICIT_LEAVE_SHARE,
            "ces": {"question_id": "ces_ease", "higher_is_easier": True, "scales": ["1-7", "1-5"]},
            "drop_off_stages": plant.drop_off,
            "drop_off_base_rate": plant.base_abandon,
            "nps": _nps_truth(plant),
            "importance_means": {
                touchpoint: round(_mean(IMPORTANCE_DISTRIBUTIONS[level]), 4) for touchpoint, level in importance.items()
            },
            "kano_features": {feature: category for line in plant.kano.values() for feature, category in line.items()},
            "emerging_terms": {
                "from_day": emerging_from_day,
                "from_date": day(emerging_from_day),
                "fr": list(EMERGING_TERMS["fr"]),
                "en": list(EMERGING_TERMS["en"]),
            }
            if plant.emerging
            else None,
            "churn_spike": None
            if spike is None
            else {
                "stage": spike.stage,
                "from_day": spike.from_day,
                "from_date": day(spike.from_day),
                "factor": spike.factor,
                **(
                    {}
                    if spike.until_day is None
                    else {"until_day": spike.until_day, "until_date": day(spike.until_day)}
                ),
            },
        }
        if not plant.planted or world.pii_rate > 0 or plant.moments != Plant.default().moments:
            kinds: dict[str, int] = {}
            for row in self.rows["pii"]:
                kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
            document["steering"] = {
                "plant": "default" if plant.planted else "none",
                "moments": list(plant.moments),
                "pii_rate": world.pii_rate,
                "pii_planted": dict(sorted(kinds.items())),
            }
        document.update(
            {
                "n_touchpoints": self.n_touchpoints,
                "n_surveys": self.n_surveys,
                "planted_invalid": planter.planted_invalid(context=False),
                "planted_invalid_in_context": planter.planted_invalid(context=True),
                "planted_invalid_by_file": {kind: dict(sorted(c.items())) for kind, c in planter.invalid.items()},
                "planted_duplicates": sum(planter.duplicates.values()),
                "planted_duplicates_by_file": planter.duplicates,
                "planted_late": sum(planter.late.values()),
                "planted_late_by_file": planter.late,
                "journey_ends": {how: dict(sorted(stages.items())) for how, stages in sorted(self.ends.items())},
                "churned_customers": self.churned,
                "revenue_per_customer": self.revenue,
            }
        )
        return document


def _nps_truth(plant: Plant) -> dict[str, Any]:
    if plant.planted:
        return {
            "promoter_loyalty_from": PROMOTER_FROM,
            "detractor_loyalty_below": DETRACTOR_BELOW,
            "revenue_multiplier": REVENUE_MULTIPLIER,
            "add_on_chance_per_usage_session": ADD_ON_PER_USAGE_SESSION,
            "detractor_monthly_cancel": {
                "base": DETRACTOR_MONTHLY_CANCEL[0],
                "per_loyalty_point_below": DETRACTOR_MONTHLY_CANCEL[1],
            },
            "renewal_cancel": {
                "base": RENEWAL_CANCEL[0],
                "per_loyalty_point_below_7": RENEWAL_CANCEL[1],
                "segment_factor": SEGMENT_CANCEL,
            },
        }
    categories = ("detractor", "passive", "promoter")
    return {
        "promoter_loyalty_from": PROMOTER_FROM,
        "detractor_loyalty_below": DETRACTOR_BELOW,
        "revenue_multiplier": {c: plant.revenue_multiplier(c) for c in categories},
        "add_on_chance_per_usage_session": {c: plant.add_on_chance(c) for c in categories},
        "detractor_monthly_cancel": None,
        "renewal_cancel": {"flat": plant.renewal_cancel_chance(0.0, "particulier")},
    }
