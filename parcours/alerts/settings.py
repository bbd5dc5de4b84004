"""The alert rules' settings, checked when built so a bad value fails at load, not at 3 a.m.

The defaults are the calibrated ones (docs/alerts.md): a weekly entry cohort compared with the
four cohorts before it, fired on two consecutive breaches and resolved on two consecutive clear
windows. Each error names the key as it will read in the journey configuration (`alerts.<key>`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

RULES = ("dropoff_rate", "explicit_churn_rate")
# How alpha is spent: `bh` compares the Benjamini–Hochberg q-value across every series tested on
# the window with alpha; `per_series` compares each series' own p-value with alpha (a per-series
# budget: a stage with S series then has about S x alpha x the breach rate of false alerts).
CONTROLS = ("bh", "per_series")
# The breakdowns a series may be cut by; `overall` has the single value `all`.
BREAKDOWNS = ("overall", "segment", "channel", "product_line")

DEFAULT_RUNBOOK = (
    "Open the {stage} stage of the journey report for cohorts from {window_start}; compare the contributing "
    "segments and touchpoints with the baseline; look for a release, an outage, a price change or a campaign "
    "that started then. Silence with `parcours alerts silence {alert_id} --until <time>`."
)


class AlertSettingsError(ValueError):
    """A setting that cannot work; the message names the `alerts.` key to fix."""


@dataclass(frozen=True)
class AlertSettings:
    """How a series is tested and how its state moves.

    alpha is the Benjamini–Hochberg level applied across every series tested on the same cohort
    window (all rules × stages × breakdowns of one evaluation), or, with ``control="per_series"``,
    each series' own level. docs/alerts.md shows what each costs in false alerts and detection.
    """

    window: timedelta = timedelta(days=7)
    baseline_windows: int = 4
    current_windows: int = 1
    min_entrants: int = 100
    min_expected_events: float = 10.0
    alpha: float = 0.01
    control: str = "bh"
    min_relative_rise: float = 0.20
    min_absolute_rise: float = 0.02
    fire_after: int = 2
    resolve_after: int = 2
    cooldown_windows: int = 0
    stall_after: timedelta = timedelta(days=14)
    ci_level: float = 0.95
    breakdowns: tuple[str, ...] = BREAKDOWNS
    runbook: str = DEFAULT_RUNBOOK
    rules: tuple[str, ...] = field(default=RULES)

    def __post_init__(self) -> None:
        if self.window <= timedelta(0):
            self._fail("window", f"must be positive, got {self.window}")
        for key in ("baseline_windows", "current_windows", "fire_after", "resolve_after"):
            if int(getattr(self, key)) < 1:
                self._fail(key, f"must be at least 1, got {getattr(self, key)}")
        if self.cooldown_windows < 0:
            self._fail("cooldown_windows", f"must be 0 or more, got {self.cooldown_windows}")
        if self.min_entrants < 1:
            self._fail("min_entrants", f"must be at least 1, got {self.min_entrants}")
        if self.min_expected_events < 0:
            self._fail("min_expected_events", f"must be 0 or more, got {self.min_expected_events}")
        if not 0 < self.alpha < 1:
            self._fail("alpha", f"must be in (0, 1), got {self.alpha}")
        if self.control not in CONTROLS:
            self._fail("control", f"{self.control!r} is not one of {list(CONTROLS)}")
        if not 0 < self.ci_level < 1:
            self._fail("ci_level", f"must be in (0, 1), got {self.ci_level}")
        if self.min_relative_rise < 0 or self.min_absolute_rise < 0:
            self._fail("min_relative_rise", "the practical sizes must be 0 or more")
        if self.stall_after <= timedelta(0):
            self._fail("stall_after", f"must be positive, got {self.stall_after}")
        unknown = set(self.breakdowns) - set(BREAKDOWNS)
        if unknown:
            self._fail("breakdowns", f"unknown {sorted(unknown)} (known: {list(BREAKDOWNS)})")
        unknown = set(self.rules) - set(RULES)
        if unknown:
            self._fail("rules", f"unknown {sorted(unknown)} (known: {list(RULES)})")

    @staticmethod
    def _fail(key: str, problem: str) -> None:
        raise AlertSettingsError(f"alerts.{key}: {problem}")


# The settings the calibration found to meet both goals (docs/alerts.md): at most one false alert
# per stage per 90 days (0.79 measured, at most 0.85) and 85 % of +5-point rises on 20 % at 500
# entrants fired within two windows. They trade the defaults' persistence (fire_after = 2) for
# pooling two cohorts, spend alpha per series, and accept a 10 % relative rise: with 20 %, the
# settings that keep false alerts under 1 detect at most 75 % of such rises in time.
RECOMMENDED = AlertSettings(
    baseline_windows=8,
    current_windows=2,
    alpha=0.0075,
    control="per_series",
    min_relative_rise=0.10,
    fire_after=1,
)
