"""The detector's statistics and state machine on small matrices checked by hand or by scipy/statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import fisher_exact, hypergeom
from statsmodels.stats.multitest import multipletests

from parcours.alerts.detect import (
    FIRING,
    NORMAL,
    PENDING,
    TO_FIRING,
    TO_NORMAL,
    TO_PENDING,
    TO_RESOLVED,
    bh_qvalues,
    fisher_greater,
    replay_states,
    score_windows,
)
from parcours.alerts.settings import AlertSettings, AlertSettingsError


def _matrix(rows: list[list[tuple[int, int] | None]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = np.array([[c[0] if c else 0 for c in row] for row in rows])
    d = np.array([[c[1] if c else 0 for c in row] for row in rows])
    present = np.array([[c is not None for c in row] for row in rows])
    return n, d, present


def test_the_p_value_is_the_one_sided_fisher_exact_test_against_the_pooled_baseline() -> None:
    n, d, present = _matrix([[(500, 100)] * 3 + [(500, 104), (500, 140)]])
    t = score_windows(n, d, present, AlertSettings())
    # Baseline of window 4: 100 + 100 + 100 + 104 events of 2,000 entrants.
    assert t.baseline_entrants[0, 4] == 2000 and t.baseline_events[0, 4] == 404
    expected = fisher_exact([[140, 360], [404, 1596]], alternative="greater").pvalue
    assert t.p_value[0, 4] == pytest.approx(expected, rel=1e-9)
    assert t.rate[0, 4] == pytest.approx(0.28) and t.baseline_rate[0, 4] == pytest.approx(0.202)
    assert np.isnan(t.p_value[0, :4]).all()  # fewer than 4 windows before them: not tested
    assert t.evaluated.tolist() == [[False, False, False, False, True]]


def test_the_difference_interval_is_newcombes_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80,
    # difference 0.2000, method 10 interval 0.0524 to 0.3339.
    settings = AlertSettings(baseline_windows=1, min_entrants=50)
    n, d, present = _matrix([[(80, 48), (70, 56)]])
    t = score_windows(n, d, present, settings)
    assert t.difference[0, 1] == pytest.approx(0.2)
    assert t.difference_low[0, 1] == pytest.approx(0.0524, abs=5e-5)
    assert t.difference_high[0, 1] == pytest.approx(0.3339, abs=5e-5)


def test_volume_gates_leave_small_cohorts_untested() -> None:
    n, d, present = _matrix(
        [
            [(500, 100)] * 4 + [(99, 60)],  # 99 entrants < 100
            [(500, 10)] * 4 + [(400, 40)],  # expected 400 x 0.02 = 8 events < 10
            [(500, 100)] * 3 + [None, (500, 200)],  # only 3 of the 4 baseline windows are final
            [(500, 100)] * 4 + [(100, 40)],  # 100 entrants, 20 expected: tested
        ]
    )
    t = score_windows(n, d, present, AlertSettings())
    assert t.evaluated[:, 4].tolist() == [False, False, False, True]
    assert np.isnan(t.p_value[:3, 4]).all()
    assert not t.breach[:3].any()


def test_a_significant_rise_too_small_to_matter_does_not_breach() -> None:
    n, d, present = _matrix(
        [
            [(100_000, 20_000)] * 4 + [(100_000, 22_000)],  # +2 points but +10 %: not 20 %
            [(20_000, 700)] * 4 + [(20_000, 1_000)],  # +43 % but +1.5 points: not 2
            [(20_000, 4_000)] * 4 + [(20_000, 4_800)],  # +4 points, +20 %: both met
        ]
    )
    t = score_windows(n, d, present, AlertSettings())
    assert (t.q_value[:, 4] < 1e-6).all()  # all three are highly significant
    assert t.breach[:, 4].tolist() == [False, False, True]


def test_bh_qvalues_match_statsmodels_per_column_with_untested_cells() -> None:
    rng = np.random.default_rng(7)
    p = rng.uniform(0, 0.2, size=(9, 5))
    p[rng.uniform(size=p.shape) < 0.3] = np.nan
    p[:, 4] = np.nan  # a window where nothing was tested
    q = bh_qvalues(p)
    for col in range(4):
        tested = ~np.isnan(p[:, col])
        assert np.isnan(q[~tested, col]).all()
        expected = multipletests(p[tested, col], method="fdr_bh")[1]
        np.testing.assert_allclose(q[tested, col], expected, rtol=1e-12)
    assert np.isnan(q[:, 4]).all()
    # Consecutive blocks of rows as separate families.
    np.testing.assert_allclose(bh_qvalues(p[:6], family_size=3)[3:], bh_qvalues(p[3:6]), equal_nan=True)


def test_bh_is_applied_across_the_series_of_one_window() -> None:
    # Two series, same window: p = 0.007 alone would pass alpha 0.01, but with a second
    # series at p = 0.5 its q-value is 0.014.
    n, d, present = _matrix([[(500, 100)] * 4 + [(500, 126)], [(500, 100)] * 4 + [(500, 100)]])
    t = score_windows(n, d, present, AlertSettings())
    p = t.p_value[:, 4]
    assert 0.005 < p[0] < 0.01
    assert p[0] == pytest.approx(fisher_exact([[126, 374], [400, 1600]], alternative="greater").pvalue)
    assert t.q_value[0, 4] == pytest.approx(min(1.0, 2 * p[0]))
    assert not t.breach[0, 4]  # q = 2p > 0.01
    # Per-series control spends alpha on each series' own p-value.
    per_series = score_windows(n, d, present, AlertSettings(control="per_series"))
    assert per_series.breach[:, 4].tolist() == [True, False]


B, C, X = "B", "C", "-"  # breach, clear, not evaluated


def _replay(sequence: str, **settings: int) -> tuple[list[int], list[int], list[int]]:
    cells = sequence.split()
    evaluated = np.array([[c != X for c in cells]])
    breach = np.array([[c == B for c in cells]])
    r = replay_states(evaluated, breach, AlertSettings(**settings))
    return r.transition[0].tolist(), r.state[0].tolist(), r.incident[0].tolist()


def test_persistence_pending_then_firing_and_hysteresis_before_resolving() -> None:
    transitions, states, incident = _replay("B C B B B C B C - C C")
    assert transitions == [TO_PENDING, TO_NORMAL, TO_PENDING, TO_FIRING, 0, 0, 0, 0, 0, TO_RESOLVED, 0]
    assert states == [PENDING, NORMAL, PENDING, FIRING, FIRING, FIRING, FIRING, FIRING, FIRING, NORMAL, NORMAL]
    # The incident is named by the window where it started firing (3), up to its resolution.
    assert incident == [-1, -1, -1, 3, 3, 3, 3, 3, 3, 3, -1]


def test_fire_after_one_fires_at_the_first_breach() -> None:
    transitions, _, incident = _replay("C B C", fire_after=1, resolve_after=1)
    assert transitions == [0, TO_FIRING, TO_RESOLVED]
    assert incident == [-1, 1, 1]


def test_cooldown_defers_a_new_incident_after_a_resolution() -> None:
    sequence = "B B C C B B B"
    without, _, _ = _replay(sequence)
    assert without == [TO_PENDING, TO_FIRING, 0, TO_RESOLVED, TO_PENDING, TO_FIRING, 0]
    # Two evaluated windows of cooldown after the resolution at 3: windows 4 and 5 may only be
    # pending; the incident fires at window 6.
    cooled, _, incident = _replay(sequence, cooldown_windows=2)
    assert cooled == [TO_PENDING, TO_FIRING, 0, TO_RESOLVED, TO_PENDING, 0, TO_FIRING]
    assert incident[6] == 6


def test_not_evaluated_windows_neither_advance_nor_reset() -> None:
    transitions, _, _ = _replay("B - - B - C - C")
    assert transitions == [TO_PENDING, 0, 0, TO_FIRING, 0, 0, 0, TO_RESOLVED]


def test_settings_errors_name_the_key() -> None:
    with pytest.raises(AlertSettingsError, match=r"alerts\.baseline_windows"):
        AlertSettings(baseline_windows=0)
    with pytest.raises(AlertSettingsError, match=r"alerts\.alpha"):
        AlertSettings(alpha=1.5)
    with pytest.raises(AlertSettingsError, match=r"alerts\.control"):
        AlertSettings(control="bonferroni")
    with pytest.raises(AlertSettingsError, match=r"alerts\.breakdowns"):
        AlertSettings(breakdowns=("overall", "region"))


def test_fisher_greater_matches_scipy_on_random_and_edge_tables() -> None:
    rng = np.random.default_rng(11)
    n = rng.integers(1, 3000, 4000)
    n0 = rng.integers(1, 12000, 4000)
    base = rng.uniform(0, 1, 4000)
    d = rng.binomial(n, np.clip(base * rng.uniform(0.5, 1.8, 4000), 0, 1))
    d0 = rng.binomial(n0, base)
    # Edges: no events, all events, a single entrant, an empty baseline.
    d = np.concatenate([d, [0, 10, 1, 0, 7, 3]])
    n = np.concatenate([n, [10, 10, 1, 1, 7, 5]])
    d0 = np.concatenate([d0, [0, 40, 0, 1, 0, 0]])
    n0 = np.concatenate([n0, [40, 40, 4, 4, 0, 1]])
    p = fisher_greater(d, n, d0, n0)
    expected = hypergeom.sf(d - 1, n + n0, d + d0, n)
    np.testing.assert_allclose(p, expected, rtol=1e-8, atol=1e-14)
    for i in (0, 1, 4000, 4001, 4002):
        table = [[d[i], n[i] - d[i]], [d0[i], n0[i] - d0[i]]]
        assert p[i] == pytest.approx(fisher_exact(table, alternative="greater").pvalue, rel=1e-8)


def test_current_windows_pools_the_latest_cohorts_against_the_k_before_them() -> None:
    settings = AlertSettings(current_windows=2)
    n, d, present = _matrix([[(500, 100)] * 4 + [(500, 120), (500, 130)]])
    t = score_windows(n, d, present, settings)
    # Window 4 would need a baseline of windows -1..2: not tested. Window 5: 4-5 vs 0-3.
    assert t.evaluated.tolist() == [[False] * 5 + [True]]
    assert (t.n_entrants[0, 5], t.n_events[0, 5]) == (1000, 250)
    assert (t.baseline_entrants[0, 5], t.baseline_events[0, 5]) == (2000, 400)
    expected = fisher_exact([[250, 750], [400, 1600]], alternative="greater").pvalue
    assert t.p_value[0, 5] == pytest.approx(expected, rel=1e-9)
