"""The planted effects: their default strengths in one place, and the `Plant` that steers them.

The constants are today's planted world (copied into `truth.json`); a `Plant` is the one object the
simulation asks "is this touchpoint a moment of truth?", "how likely is a visit to this stage the
last one?", "does this day fall in the churn spike?". `Plant.default()` reproduces the constants
exactly, so the default output does not change; `Plant.none()` plants nothing that differs
between touchpoints, stages, features or days (the null world tests check finds nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from parcours.synthetic.clock import DAY_MS

DISCOVERY, CONSIDERATION, PURCHASE, ACTIVATION, USAGE, SUPPORT, RENEWAL = (
    "discovery",
    "consideration",
    "purchase",
    "activation",
    "usage",
    "support",
    "renewal",
)

MOMENTS_OF_TRUTH = ("delivery", "support_call")

# Share of customers who leave after their first and second bad moment-of-truth experience
# (cumulative), and the chance of leaving after a moment of truth that was not bad.
LEAVE_AFTER_BAD = {0: 0.02, 1: 0.32, 2: 0.59}
# Per-experience hazards giving those cumulative shares: h2 = (0.59 - 0.32) / (1 - 0.32).
HAZARD_FIRST_BAD = LEAVE_AFTER_BAD[1]
HAZARD_LATER_BAD = (LEAVE_AFTER_BAD[2] - LEAVE_AFTER_BAD[1]) / (1 - LEAVE_AFTER_BAD[1])
# Elsewhere a bad experience has a weak effect on staying.
LEAVE_AFTER_BAD_ELSEWHERE = 0.04
# Share of leavers who cancel explicitly; the others just stop (silent churn).
EXPLICIT_LEAVE_SHARE = 0.8

# Probability that a visit to a stage is the customer's last one (they abandon the journey).
DROP_OFF = {CONSIDERATION: 0.30, ACTIVATION: 0.22}
BASE_ABANDON = 0.05

BELOW, MEETS, ABOVE, DELIGHT = 0, 1, 2, 3
EXPERIENCE_LEVELS = ("below", "meets", "above", "delight")
EXPERIENCE_MIX_MOMENT = (0.34, 0.36, 0.20, 0.10)
EXPERIENCE_MIX_OTHER = (0.07, 0.38, 0.35, 0.20)
# CSAT (1-5) given the experience level; a bad experience is a CSAT of 1 or 2 (95 %).
CSAT_GIVEN_EXPERIENCE = (
    {1: 0.55, 2: 0.40, 3: 0.05},
    {2: 0.10, 3: 0.65, 4: 0.25},
    {3: 0.05, 4: 0.80, 5: 0.15},
    {4: 0.05, 5: 0.95},
)
# How an experience moves the customer's latent loyalty (0-10, the NPS they would give).
LOYALTY_STEP_MOMENT = (-2.0, -0.1, 0.3, 0.9)
LOYALTY_STEP_OTHER = (-0.8, 0.0, 0.2, 0.5)

PROMOTER_FROM, DETRACTOR_BELOW = 8.5, 6.5  # on latent loyalty
REVENUE_MULTIPLIER = {"detractor": 0.8, "passive": 1.0, "promoter": 1.3}
# Detractors leave more: at each invoice, a chance to cancel of a + b * (6.5 - loyalty).
DETRACTOR_MONTHLY_CANCEL = (0.05, 0.04)
# At renewal, the chance to cancel is (a + b * max(0, 7 - loyalty)) * the segment factor.
RENEWAL_CANCEL = (0.03, 0.06)
SEGMENT_CANCEL = {"particulier": 1.0, "pro": 0.8, "premium": 0.45}  # premium renews more
ADD_ON_PER_USAGE_SESSION = {"detractor": 0.01, "passive": 0.025, "promoter": 0.06}

EMERGING_TERMS = {
    "fr": ("facture erronée", "prélèvement en double"),
    "en": ("double charge", "wrong invoice"),
}
EMERGING_FROM_SHARE = 0.6  # of the period, when not given
# Chance that an invoice goes wrong: a small constant, plus a ramp from the emerging day.
BILLING_INCIDENT_BASE = 0.01
BILLING_INCIDENT_RAMP = (0.06, 0.5)  # at the emerging day, at the end of the period

KANO_FEATURES = {
    "mobile": {
        "5g_access": "one_dimensional",
        "esim": "attractive",
        "network_coverage": "must_be",
        "paper_invoice": "indifferent",
    },
    "fibre": {
        "wifi_6_box": "attractive",
        "installation_slot_choice": "one_dimensional",
        "stable_connection": "must_be",
        "tv_option": "indifferent",
    },
    "energie": {
        "green_energy": "attractive",
        "fixed_price": "one_dimensional",
        "billing_accuracy": "must_be",
        "smart_meter_app": "indifferent",
    },
}
# (functional, dysfunctional) answer codes: 1 like, 2 expect, 3 neutral, 4 live with, 5 dislike.
KANO_TYPICAL = {
    "attractive": ((1, 3), (1, 4)),
    "one_dimensional": ((1, 5),),
    "must_be": ((2, 5), (3, 5)),
    "indifferent": ((3, 3), (3, 4)),
}
KANO_TYPICAL_SHARE = 0.75

# Importance (1-5) of touchpoints: the moments of truth matter most and satisfy least.
IMPORTANCE_DISTRIBUTIONS = {
    "high": {5: 0.6, 4: 0.3, 3: 0.1},
    "rather_high": {5: 0.3, 4: 0.45, 3: 0.2, 2: 0.05},
    "medium": {5: 0.15, 4: 0.35, 3: 0.35, 2: 0.15},
    "low": {5: 0.05, 4: 0.2, 3: 0.4, 2: 0.25, 1: 0.1},
}
IMPORTANCE = {
    "delivery": "high",
    "support_call": "high",
    "invoice": "rather_high",
    "installation": "rather_high",
    "checkout": "medium",
    "app_session": "medium",
    "store_visit": "low",
    "loyalty_reward": "low",
}

# In the null world: one renewal cancel chance for everyone, loyalty and segment aside.
_NULL_RENEWAL_CANCEL = 0.08


@dataclass(frozen=True, slots=True)
class ChurnSpike:
    """From `from_day` (0 = the start date) on, the chance of leaving at `stage` is multiplied;
    up to, not including, `until_day` when given (else to the end of the period)."""

    stage: str
    from_day: int
    factor: float
    until_day: int | None = None

    def __post_init__(self) -> None:
        if self.from_day < 0:
            raise ValueError(f"churn spike from_day must be >= 0, got {self.from_day}")
        if not self.factor > 0:
            raise ValueError(f"churn spike factor must be > 0, got {self.factor}")
        if self.until_day is not None and self.until_day <= self.from_day:
            raise ValueError(f"churn spike until_day must be after from_day {self.from_day}, got {self.until_day}")

    def applies(self, stage: str, t_ms: int) -> bool:
        if stage != self.stage or t_ms < self.from_day * DAY_MS:
            return False
        return self.until_day is None or t_ms < self.until_day * DAY_MS


@dataclass(frozen=True, slots=True)
class Plant:
    """What the simulation plants. `planted=False` is the null world: one experience mix, one
    leave chance after a bad experience, one abandon rate, loyalty driving nothing, no emerging
    terms, no Kano categories, flat importance. Explicit `moments`, `drop_off` and `spike` are
    planted on top of either world."""

    planted: bool = True
    moments: tuple[str, ...] = MOMENTS_OF_TRUTH
    drop_off: dict[str, float] = field(default_factory=lambda: dict(DROP_OFF))
    base_abandon: float = BASE_ABANDON
    spike: ChurnSpike | None = None

    @classmethod
    def default(cls) -> Plant:
        return cls()

    @classmethod
    def none(cls) -> Plant:
        return cls(planted=False, moments=(), drop_off={})

    @classmethod
    def named(cls, name: str) -> Plant:
        if name == "default":
            return cls.default()
        if name == "none":
            return cls.none()
        raise ValueError(f"plant must be 'default' or 'none', got {name!r}")

    def steered(
        self,
        moments: tuple[str, ...] | None = None,
        drop_off: dict[str, float] | None = None,
        spike: ChurnSpike | None = None,
    ) -> Plant:
        """This plant with other moments of truth, drop-off stages added or overridden, a spike."""
        for stage, p in (drop_off or {}).items():
            if not 0.0 <= p < 1.0:
                raise ValueError(f"drop-off probability at '{stage}' must be in [0, 1), got {p}")
        return replace(
            self,
            moments=self.moments if moments is None else tuple(moments),
            drop_off={**self.drop_off, **(drop_off or {})},
            spike=spike if spike is not None else self.spike,
        )

    def is_moment(self, touchpoint: str) -> bool:
        return touchpoint in self.moments

    def abandon_chance(self, stage: str) -> float:
        """Probability that a visit to `stage` is the customer's last (before any spike)."""
        return self.drop_off.get(stage, self.base_abandon)

    def spiked(self, stage: str, t_ms: int, probability: float) -> float:
        if self.spike is not None and self.spike.applies(stage, t_ms):
            return min(0.95, probability * self.spike.factor)
        return probability

    # -- what the null world flattens ------------------------------------------------------------

    def revenue_multiplier(self, category: str) -> float:
        return REVENUE_MULTIPLIER[category] if self.planted else 1.0

    def add_on_chance(self, category: str) -> float:
        return ADD_ON_PER_USAGE_SESSION[category if self.planted else "passive"]

    def detractor_cancel_chance(self, loyalty: float) -> float:
        """At each invoice: the planted extra churn of detractors (none in the null world)."""
        if not self.planted or loyalty >= DETRACTOR_BELOW:
            return 0.0
        return DETRACTOR_MONTHLY_CANCEL[0] + DETRACTOR_MONTHLY_CANCEL[1] * (DETRACTOR_BELOW - loyalty)

    def renewal_cancel_chance(self, loyalty: float, segment: str) -> float:
        if not self.planted:
            return _NULL_RENEWAL_CANCEL
        low, slope = RENEWAL_CANCEL
        return (low + slope * max(0.0, 7.0 - loyalty)) * SEGMENT_CANCEL[segment]

    @property
    def emerging(self) -> bool:
        return self.planted

    @property
    def kano(self) -> dict[str, dict[str, str]]:
        """Planted Kano category of each feature, by product line (empty in the null world)."""
        return KANO_FEATURES if self.planted else {}

    @property
    def importance(self) -> dict[str, str]:
        """Importance level of each surveyed touchpoint: the moments of truth matter most."""
        levels = dict(IMPORTANCE) if self.planted else dict.fromkeys(IMPORTANCE, "medium")
        for touchpoint in MOMENTS_OF_TRUTH:
            if touchpoint not in self.moments:
                levels[touchpoint] = "medium"  # no longer a moment of truth
        levels.update(dict.fromkeys(self.moments, "high"))
        return levels


def parse_drop_off(text: str) -> dict[str, float]:
    """`STAGE:P,...` -> {stage: p}; stages are checked against the configuration by the caller."""
    result: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        stage, sep, p = item.partition(":")
        try:
            if not sep or not stage:
                raise ValueError
            result[stage] = float(p)
        except ValueError:
            raise ValueError(f"'{item}' is not STAGE:P (e.g. purchase:0.25)") from None
    if not result:
        raise ValueError(f"'{text}' names no stage (STAGE:P,..., e.g. purchase:0.25)")
    return result


def parse_churn_spike(text: str) -> ChurnSpike:
    """`STAGE:FROM_DAY:FACTOR[:UNTIL_DAY]` -> ChurnSpike."""
    parts = text.split(":")
    try:
        if len(parts) not in (3, 4):
            raise ValueError
        until = int(parts[3]) if len(parts) == 4 else None
        from_day, factor = int(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(
            f"'{text}' is not STAGE:FROM_DAY:FACTOR[:UNTIL_DAY] (e.g. renewal:40:3 or renewal:40:3:60)"
        ) from None
    return ChurnSpike(stage=parts[0], from_day=from_day, factor=factor, until_day=until)


def parse_moments(text: str) -> tuple[str, ...]:
    moments = tuple(dict.fromkeys(filter(None, (part.strip() for part in text.split(",")))))
    if not moments:
        raise ValueError(f"'{text}' names no touchpoint (TP,..., e.g. delivery,support_call)")
    return moments
