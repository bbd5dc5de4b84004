"""Calibration by simulation: how often the detector cries wolf, and how fast it sees a real rise.

Both run binomial cohort counts through the detector's own code (``score_windows``,
``breaches``, ``replay_states``), vectorised over thousands of series at once:

- **false alerts**: stable series (every cohort at the same base rate) for each stated entrant
  count and base rate; every firing is a false alert. Counted per series and window, converted
  to a rate per 90 days (weekly windows: 90 / 7 = 12.86 windows) and per stage (× the series a
  stage carries: 2 rules × 5 cuts by default), with an exact Poisson (Garwood) 95 % interval.
  Two BH families: one series alone (m = 1, BH corrects nothing: the worst case per series) and
  one evaluation of 7 stages × 10 series (m = 70, all stable).
- **detection**: a +5-point rise on a 20 % base rate at 500 entrants a window, from the first
  affected cohort on; detected when the series fires on that cohort or the next one (within two
  windows after the first affected cohort is final), with a Clopper–Pearson 95 % interval. With
  m = 70 the spiked series is tested among 69 stable ones, as it would be in one evaluation.

    python -m parcours.alerts.calibrate            # the full run (docs/alerts.md)
    python -m parcours.alerts.calibrate --quick    # a small run, as the CI test does
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, chi2

from parcours.alerts.detect import TO_FIRING, breaches, replay_states, score_windows
from parcours.alerts.settings import RECOMMENDED, AlertSettings
from parcours.config import load_config

WINDOWS_PER_90_DAYS = 90 / 7
SERIES_PER_STAGE = 10  # 2 rules x (overall + 4 breakdown values)
STAGES = 7
ENTRANTS = (200, 500, 2000)
BASE_RATES = (0.10, 0.20, 0.40)


@dataclass(frozen=True)
class FalseAlerts:
    n_entrants: int
    base_rate: float
    family_size: int
    series_windows: int
    firings: int

    def per_stage_90d(self, series_per_stage: int = SERIES_PER_STAGE) -> tuple[float, float, float]:
        """Rate per stage per 90 days with its exact Poisson 95 % interval."""
        scale = WINDOWS_PER_90_DAYS * series_per_stage / self.series_windows
        k = self.firings
        low = chi2.ppf(0.025, 2 * k) / 2 if k else 0.0
        high = chi2.ppf(0.975, 2 * k + 2) / 2
        return k * scale, low * scale, high * scale


@dataclass(frozen=True)
class Detection:
    family_size: int
    spikes: int
    detected: int

    @property
    def share(self) -> float:
        return self.detected / self.spikes

    def interval(self) -> tuple[float, float]:
        ci = binomtest(self.detected, self.spikes).proportion_ci(0.95, method="exact")
        return ci.low, ci.high


def _shape(s: AlertSettings) -> tuple[int, int]:
    return s.baseline_windows, s.current_windows


def _variants(base: AlertSettings, grid: dict[str, Sequence]) -> list[AlertSettings]:
    keys = list(grid)
    return [
        dataclasses.replace(base, **dict(zip(keys, values, strict=True)))
        for values in itertools.product(*grid.values())
    ]


def _firings(tests, settings: AlertSettings, q: np.ndarray) -> np.ndarray:
    breach = tests.evaluated & breaches(q, tests.difference, tests.relative_rise, settings)
    return replay_states(tests.evaluated, breach, settings).transition == TO_FIRING


def simulate_false_alerts(
    variants: Sequence[AlertSettings],
    n_entrants: int,
    base_rate: float,
    *,
    families: int,
    windows: int,
    family_size: int,
    rng: np.random.Generator,
) -> dict[tuple[AlertSettings, int], FalseAlerts]:
    """False firings of every variant on the same stable counts, for m = 1 and m = family_size.

    Variants sharing a baseline and current length share one scoring (the p-values do not depend on alpha,
    persistence or the practical size).
    """
    out = {}
    for (k, c), group in itertools.groupby(sorted(variants, key=_shape), key=_shape):
        first = k + c - 1  # the first window with a full baseline and current block
        rows, cols = families * family_size, first + windows
        n = np.full((rows, cols), n_entrants, dtype=np.int64)
        d = rng.binomial(n, base_rate)
        settings = dataclasses.replace(AlertSettings(), baseline_windows=k, current_windows=c)
        tests = score_windows(
            n, d, np.ones_like(n, dtype=bool), settings, with_intervals=False, family_size=family_size
        )
        q_alone = tests.p_value  # BH over a family of one leaves p as it is
        for variant in group:
            for m, q in ((1, q_alone), (family_size, tests.q_value)):
                fired = _firings(tests, variant, q)[:, first:]
                out[variant, m] = FalseAlerts(n_entrants, base_rate, m, rows * windows, int(fired.sum()))
    return out


def simulate_detection(
    variants: Sequence[AlertSettings],
    *,
    spikes: int,
    family_size: int,
    rng: np.random.Generator,
    n_entrants: int = 500,
    base_rate: float = 0.20,
    rise: float = 0.05,
    within: int = 2,
) -> dict[tuple[AlertSettings, int], Detection]:
    """Share of spikes fired on the first `within` affected cohorts, for m = 1 and m = family_size."""
    out = {}
    for (k, c), group in itertools.groupby(sorted(variants, key=_shape), key=_shape):
        first = k + c - 1  # the first affected cohort: every test from it on has a clean baseline
        rows, cols = spikes * family_size, first + within
        rate = np.full((rows, cols), base_rate)
        spiked = np.arange(rows) % family_size == 0
        rate[np.ix_(spiked, np.arange(first, cols))] = base_rate + rise
        n = np.full((rows, cols), n_entrants, dtype=np.int64)
        d = rng.binomial(n, rate)
        settings = dataclasses.replace(AlertSettings(), baseline_windows=k, current_windows=c)
        tests = score_windows(
            n, d, np.ones_like(n, dtype=bool), settings, with_intervals=False, family_size=family_size
        )
        for variant in group:
            for m, q in ((1, tests.p_value), (family_size, tests.q_value)):
                fired = _firings(tests, variant, q)[spiked][:, first:].any(axis=1)
                out[variant, m] = Detection(m, spikes, int(fired.sum()))
    return out


def detection_delays(settings: AlertSettings) -> list[tuple[str, int, int, int]]:
    """(stage, timeout, earliest, latest) in days from the first affected entry to the firing evaluation.

    The first affected cohort is final window + horizon (= the stage's timeout) + timeout after
    its window opens: the earliest a rise can fire (fire_after = 1). Each further window of
    persistence, or of pooling the current side, adds one window; "within two windows" is the
    latest.
    """
    config = load_config()
    window_days = settings.window.days
    extra = (settings.fire_after - 1) * window_days
    rows = []
    for stage in config.stages:
        timeout = config.drop_off.timeout_for(stage).days
        earliest = window_days + 2 * timeout + extra
        rows.append((stage, timeout, earliest, earliest + window_days))
    return rows


def _label(s: AlertSettings) -> str:
    return (
        f"K={s.baseline_windows} c={s.current_windows} alpha={s.alpha:g} fire_after={s.fire_after} "
        f"rel>={s.min_relative_rise:.0%}"
    )


def run(quick: bool = False, seed: int = 20261201, out=sys.stdout) -> dict:
    """Print the calibration tables (markdown) and return the figures."""
    rng = np.random.default_rng(seed)
    base = AlertSettings()
    grid = {
        "baseline_windows": (4, 8),
        "current_windows": (1, 2),
        "alpha": (0.001, 0.005, 0.0075, 0.01, 0.05),
        "fire_after": (1, 2),
        "min_relative_rise": (0.20, 0.10),
    }
    variants = _variants(base, grid)
    m = STAGES * SERIES_PER_STAGE
    families, windows, spikes = (4, 26, 200) if quick else (28, 52, 1000)
    started = time.perf_counter()
    false_alerts: dict = {}
    for n_entrants, rate in itertools.product(ENTRANTS, BASE_RATES):
        sims = simulate_false_alerts(
            variants, n_entrants, rate, families=families, windows=windows, family_size=m, rng=rng
        )
        false_alerts |= {(v, fam, n_entrants, rate): r for (v, fam), r in sims.items()}
    detections = simulate_detection(variants, spikes=spikes, family_size=m, rng=rng)
    elapsed = time.perf_counter() - started
    per_stage_windows = families * SERIES_PER_STAGE * windows * STAGES // STAGES

    print(
        f"seed {seed}; {families * m * windows:,} stable series-windows per (entrants, base rate), "
        f"i.e. {per_stage_windows * STAGES // SERIES_PER_STAGE:,} stage-windows of {SERIES_PER_STAGE} series "
        f"per stage; {spikes:,} spikes; {elapsed:.0f} s\n",
        file=out,
    )

    print("## False alerts per stage per 90 days at the defaults (95 % interval)\n", file=out)
    print(
        f"{_label(base)}; a stage = {SERIES_PER_STAGE} series; weekly windows: x {WINDOWS_PER_90_DAYS:.2f}\n", file=out
    )
    print("| entrants | base rate | m = 1 (worst case) | m = 70 (one evaluation) |", file=out)
    print("| --- | --- | --- | --- |", file=out)
    for n_entrants, rate in itertools.product(ENTRANTS, BASE_RATES):
        cells = []
        for fam in (1, m):
            r = false_alerts[base, fam, n_entrants, rate]
            point, low, high = r.per_stage_90d()
            cells.append(f"{point:.3f} [{low:.3f}, {high:.3f}] ({r.firings} / {r.series_windows:,})")
        print(f"| {n_entrants} | {rate:.0%} | {cells[0]} | {cells[1]} |", file=out)

    print(
        "\n## Trade-off: worst false-alert rate over the 9 cells vs detection of +5 points on 20 % at n = 500\n",
        file=out,
    )
    print(
        "| settings | false alerts / stage / 90 d, m = 1 | m = 70 | detected within 2 windows, m = 1 | m = 70 | "
        "both goals |",
        file=out,
    )
    print("| --- | --- | --- | --- | --- | --- |", file=out)
    table = []
    for v in variants:
        worst = {
            fam: max(
                (false_alerts[v, fam, ne, r] for ne, r in itertools.product(ENTRANTS, BASE_RATES)),
                key=lambda x: x.per_stage_90d()[0],
            )
            for fam in (1, m)
        }
        det = {fam: detections[v, fam] for fam in (1, m)}
        meets = {fam: worst[fam].per_stage_90d()[0] <= 1 and det[fam].share >= 0.8 for fam in (1, m)}
        table.append((v, worst, det, meets))
        fa = [f"{worst[f].per_stage_90d()[0]:.2f} [..{worst[f].per_stage_90d()[2]:.2f}]" for f in (1, m)]
        dt = [f"{det[f].share:.1%} [{det[f].interval()[0]:.1%}, {det[f].interval()[1]:.1%}]" for f in (1, m)]
        verdict = {
            (True, True): "yes (m = 1 and 70)",
            (False, True): "m = 70 only",
            (True, False): "m = 1 only",
            (False, False): "no",
        }[meets[1], meets[m]]
        print(f"| {_label(v)} | {fa[0]} | {fa[1]} | {dt[0]} | {dt[1]} | {verdict} |", file=out)

    for settings in (base, RECOMMENDED):
        print(f"\n## Detection delay per stage ({_label(settings)})\n", file=out)
        print(
            "days from the first affected entry to the firing evaluation: window + horizon (= timeout) + timeout "
            "+ (fire_after - 1) x window; a daily evaluation adds up to 1 day\n",
            file=out,
        )
        print("| stage | timeout (days) | earliest firing (days) | within two windows (days) |", file=out)
        print("| --- | --- | --- | --- |", file=out)
        for stage, timeout, earliest, latest in detection_delays(settings):
            print(f"| {stage} | {timeout} | {earliest} | {latest} |", file=out)
    return {"false_alerts": false_alerts, "detections": detections, "table": table, "variants": variants}


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parcours.alerts.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run (the CI test's size)")
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args(list(argv) if argv is not None else None)
    run(quick=args.quick, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
