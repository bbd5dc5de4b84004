"""A small, seeded run of the calibration through the detector code (the full run: docs/alerts.md)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from scipy.stats import binom

from parcours.alerts.calibrate import detection_delays, run, simulate_detection, simulate_false_alerts
from parcours.alerts.settings import AlertSettings

# Significance alone decides: no practical size, fire on the first breach, resolve on the first clear.
BARE = AlertSettings(alpha=0.05, min_relative_rise=0, min_absolute_rise=0, fire_after=1, resolve_after=1)


def test_stable_series_fire_no_more_often_than_alpha() -> None:
    # 50 x 200 = 10,000 stable windows. Each firing needs a breach, and the one-sided Fisher
    # test breaches a stable window with probability at most alpha: a binomial test against
    # the baseline rate taken as known would exceed it.
    sims = simulate_false_alerts(
        [BARE], 500, 0.2, families=1, windows=200, family_size=50, rng=np.random.default_rng(101)
    )
    alone, family = sims[BARE, 1], sims[BARE, 50]
    assert alone.series_windows == 10_000
    assert 0 < alone.firings <= binom.ppf(0.999, alone.series_windows, BARE.alpha)
    assert family.firings <= alone.firings  # BH over 50 series only removes breaches
    point, low, high = alone.per_stage_90d(series_per_stage=1)
    assert low < point < high and point == pytest.approx(alone.firings / 10_000 * 90 / 7)


def test_detection_grows_with_alpha_and_shrinks_under_bh() -> None:
    strict = AlertSettings(alpha=0.001, fire_after=1)
    loose = AlertSettings(alpha=0.05, fire_after=1)
    sims = simulate_detection([strict, loose], spikes=300, family_size=10, rng=np.random.default_rng(202))
    assert sims[strict, 1].share < sims[loose, 1].share
    assert sims[loose, 10].share <= sims[loose, 1].share
    # Persistence of two windows can only fire within two windows if both breach.
    persistent = AlertSettings(alpha=0.05, fire_after=2)
    both = simulate_detection([persistent, loose], spikes=300, family_size=1, rng=np.random.default_rng(303))
    assert both[persistent, 1].share < both[loose, 1].share


def test_a_seeded_run_repeats_exactly() -> None:
    a = simulate_false_alerts([BARE], 200, 0.1, families=2, windows=30, family_size=5, rng=np.random.default_rng(7))
    b = simulate_false_alerts([BARE], 200, 0.1, families=2, windows=30, family_size=5, rng=np.random.default_rng(7))
    assert a == b


def test_detection_delay_is_window_plus_horizon_plus_timeout_plus_persistence() -> None:
    delays = {
        stage: (timeout, earliest, latest)
        for stage, timeout, earliest, latest in detection_delays(AlertSettings(fire_after=2))
    }
    # journey.yaml: purchase 7 d, usage 60 d. 7 + 7 + 7 + 7 (one more window of persistence).
    assert delays["purchase"] == (7, 28, 35)
    assert delays["usage"] == (60, 7 + 60 + 60 + 7, 7 + 60 + 60 + 14)
    assert detection_delays(AlertSettings(fire_after=1))[0][2] == 7 + 14 + 14  # discovery, 14 d


@pytest.mark.slow
def test_the_quick_calibration_prints_every_table() -> None:
    out = io.StringIO()
    figures = run(quick=True, seed=5, out=out)
    text = out.getvalue()
    assert "## False alerts per stage per 90 days" in text and "## Detection delay per stage" in text
    assert len(figures["table"]) == len(figures["variants"])
