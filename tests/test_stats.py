"""The statistics module against published worked examples, direct computations and properties.

Published examples typed in (each test names its source):
- Wilson's interval: Newcombe RG (1998), "Two-sided confidence intervals for the single
  proportion: comparison of seven methods", Stat Med 17:857-872, its worked examples 81/263,
  15/148, 0/20, 1/29 under method 3 (score, no continuity correction).
- Newcombe's interval: Newcombe RG (1998), "Interval estimation for the difference between
  independent proportions: comparison of eleven methods", Stat Med 17:873-890, Table II,
  examples (a)-(h), method 10.
- Odds ratio and relative risk: Agresti, "An Introduction to Categorical Data Analysis" /
  "Categorical Data Analysis", the Physicians' Health Study aspirin table (placebo 189 MI of
  11034, aspirin 104 of 11037): OR 1.83 with Woolf interval (1.44, 2.33), RR 1.82.
- Fisher's exact test: Fisher's tea-tasting table [[3, 1], [1, 3]] (Agresti, Categorical Data
  Analysis, §3.5): one-sided P = 0.243, two-sided P = 0.486; and the array implementation equal
  to ``scipy.stats.fisher_exact`` table by table on random tables.
- Kaplan-Meier: the 6-MP arm of the Freireich et al. (1963) leukaemia remission trial (Gehan
  1965), whose product-limit table is printed in Kleinbaum & Klein, "Survival Analysis: A
  Self-Learning Text", ch. 2: S = 0.857, 0.807, 0.753, 0.690, 0.627, 0.538, 0.448.
- The t interval: Student's sleep data (Cushny & Peebles), as R's documented
  ``t.test(extra ~ group, data = sleep, paired = TRUE)`` prints it: mean difference 1.58, 95 %
  interval (0.7001142, 2.4598858).
- Spearman: the IQ / hours-of-TV example of Wikipedia's "Spearman's rank correlation
  coefficient" article: rho = -29/165, p = 0.627188 (t approximation).
- Mantel-Haenszel risk difference: the UGDP tolbutamide trial stratified by age (Rothman,
  Greenland & Lash, Modern Epidemiology, 3rd ed., ch. 15): stratum differences 0.034 and 0.036,
  crude 0.045, pooled RD_MH = 0.035.

No published worked example is typed in for the NPS interval (Rocks 2016 evaluates the methods
but prints no worked example that could be checked here), the MH variance, G² keyness and Fong's
test: those are checked against direct plain-Python computations of the published formulas
written in this file, which share no code with the module, and against the properties the
formulas imply (the Sato variance of one stratum is the Wald variance of its difference).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from parcours.analytics import stats as st

# --------------------------------------------------------------------------- Wilson

NEWCOMBE_SINGLE = [
    # (k, n) -> (low, high), Newcombe (1998) Stat Med 17:857, method 3
    ((81, 263), (0.2553, 0.3662)),
    ((15, 148), (0.0624, 0.1605)),
    ((0, 20), (0.0000, 0.1611)),
    ((1, 29), (0.0061, 0.1718)),
]


@pytest.mark.parametrize(("counts", "expected"), NEWCOMBE_SINGLE)
def test_wilson_matches_newcombe_single_proportion_examples(counts, expected):
    low, high = st.wilson_interval(*counts)
    assert (round(float(low), 4), round(float(high), 4)) == expected


def test_wilson_matches_the_closed_form_and_is_vectorised():
    k = np.array([0, 1, 5, 17, 40, 40])
    n = np.array([40, 40, 40, 40, 40, 41])
    z = sps.norm.ppf(0.975)
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    low, high = st.wilson_interval(k, n)
    np.testing.assert_allclose(low, np.maximum(centre - half, 0), atol=1e-12)
    np.testing.assert_allclose(high, np.minimum(centre + half, 1), atol=1e-12)
    for i in range(k.size):
        lo_i, hi_i = st.wilson_interval(int(k[i]), int(n[i]))
        assert (lo_i, hi_i) == (low[i], high[i])


def test_wilson_nan_at_zero_n_bounds_and_empty():
    low, high = st.wilson_interval([0, 3], [0, 3])
    assert np.isnan(low[0]) and np.isnan(high[0])
    assert high[1] == 1.0
    k, n = np.meshgrid(np.arange(51), np.arange(51))
    keep = k <= n
    low, high = st.wilson_interval(k[keep], n[keep], confidence=0.99)
    ok = n[keep] > 0
    assert np.all((low[ok] >= 0) & (high[ok] <= 1) & (low[ok] <= k[keep][ok] / n[keep][ok]))
    empty = st.wilson_interval(np.array([]), np.array([]))
    assert empty.low.shape == (0,) and empty.high.shape == (0,)


def test_wilson_higher_confidence_is_wider_and_bad_counts_raise():
    lo95, hi95 = st.wilson_interval(30, 100, 0.95)
    lo99, hi99 = st.wilson_interval(30, 100, 0.99)
    assert lo99 < lo95 < 0.3 < hi95 < hi99
    with pytest.raises(ValueError, match="0 <= k <= n"):
        st.wilson_interval(5, 4)
    with pytest.raises(ValueError, match="confidence"):
        st.wilson_interval(1, 4, confidence=95)


# --------------------------------------------------------------------------- Newcombe

NEWCOMBE_TABLE_II = [
    # (k1, n1, k2, n2) -> (low, high) of p1 - p2, Newcombe (1998) Stat Med 17:873, method 10
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "expected"), NEWCOMBE_TABLE_II)
def test_newcombe_matches_table_ii_method_10(counts, expected):
    est = st.newcombe_difference_interval(*counts)
    assert float(est.value) == pytest.approx(counts[0] / counts[1] - counts[2] / counts[3])
    assert (round(float(est.low), 4), round(float(est.high), 4)) == expected


def test_newcombe_vectorised_equals_elementwise_and_is_the_square_and_add_of_wilson():
    k1, n1, k2, n2 = (np.array(c) for c in zip(*[c for c, _ in NEWCOMBE_TABLE_II], strict=True))
    est = st.newcombe_difference_interval(k1, n1, k2, n2)
    # Newcombe's method 10 from its definition, on Wilson limits computed by statsmodels
    l1, u1 = proportion_confint(k1, n1, method="wilson")
    l2, u2 = proportion_confint(k2, n2, method="wilson")
    p1, p2 = k1 / n1, k2 / n2
    np.testing.assert_allclose(est.low, p1 - p2 - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), atol=1e-12)
    np.testing.assert_allclose(est.high, p1 - p2 + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2), atol=1e-12)
    for i in range(k1.size):
        one = st.newcombe_difference_interval(int(k1[i]), int(n1[i]), int(k2[i]), int(n2[i]))
        assert (one.value, one.low, one.high) == (est.value[i], est.low[i], est.high[i])


def test_newcombe_nan_when_an_arm_is_empty_and_bounds_hold():
    est = st.newcombe_difference_interval([3, 0, 0], [10, 5, 0], [0, 0, 1], [0, 0, 4])
    assert np.isnan(est.value).all() and np.isnan(est.low).all() and np.isnan(est.high).all()
    rng = np.random.default_rng(7)
    n1, n2 = rng.integers(1, 60, 300), rng.integers(1, 60, 300)
    k1, k2 = rng.integers(0, n1 + 1), rng.integers(0, n2 + 1)
    est = st.newcombe_difference_interval(k1, n1, k2, n2)
    assert np.all((est.low >= -1) & (est.low <= est.value) & (est.value <= est.high) & (est.high <= 1))
    assert st.newcombe_difference_interval([], [], [], []).value.shape == (0,)


# --------------------------------------------------------------------------- 2x2: OR, RR, tests

# Physicians' Health Study (Agresti): rows placebo, aspirin; columns MI yes, no.
ASPIRIN = (189, 10845, 104, 10933)


def test_odds_ratio_matches_agresti_aspirin_example():
    res = st.odds_ratio(*ASPIRIN)
    assert round(float(res.odds_ratio), 2) == 1.83
    assert (round(float(res.low), 2), round(float(res.high), 2)) == (1.44, 2.33)
    assert not res.exact and res.p_value == res.p_chi2
    # Pearson's X² without correction, as scipy computes it
    chi2 = sps.chi2_contingency([[189, 10845], [104, 10933]], correction=False)
    assert float(res.p_chi2) == pytest.approx(chi2.pvalue, rel=1e-10)
    assert float(res.p_fisher) == pytest.approx(sps.fisher_exact([[189, 10845], [104, 10933]]).pvalue)


def test_fisher_matches_the_tea_tasting_example_and_is_chosen_for_small_cells():
    res = st.odds_ratio(3, 1, 1, 3)
    assert round(float(res.p_fisher), 3) == 0.486
    assert res.exact and res.p_value == res.p_fisher
    one_sided = st.two_proportion_p_value(3, 4, 1, 4, alternative="larger")
    assert one_sided.exact and round(float(one_sided.p_value), 3) == 0.243


@pytest.mark.parametrize("alternative", ["two-sided", "larger", "smaller"])
def test_fisher_on_arrays_equals_scipy_table_by_table(alternative):
    # tables from 1 to 3000 a cell, with zero cells, empty margins and symmetric ties
    rng = np.random.default_rng(17)
    size = rng.choice([1, 3, 10, 40, 300, 3000], 150)
    a, b, c, d = (rng.integers(0, size + 1) for _ in range(4))
    a[:20], b[:10], c[5:15] = 0, 0, 0
    a[30:40], c[30:40] = b[30:40], d[30:40]
    a[40:45], b[40:45] = 0, 0
    got = st.two_proportion_p_value(a, a + b, c, c + d, alternative=alternative, min_expected=np.inf)
    ok = (a + b > 0) & (c + d > 0)
    assert got.exact[ok].all()
    scipy_alt = {"two-sided": "two-sided", "larger": "greater", "smaller": "less"}[alternative]
    ref = [sps.fisher_exact([[a[i], b[i]], [c[i], d[i]]], alternative=scipy_alt).pvalue for i in np.flatnonzero(ok)]
    np.testing.assert_allclose(got.p_value[ok], ref, rtol=1e-12, atol=1e-300)
    two_sided = st.odds_ratio(a, b, c, d).p_fisher
    full = ok & (a + c > 0) & (b + d > 0)
    if alternative == "two-sided":
        np.testing.assert_allclose(two_sided[full], got.p_value[full], rtol=1e-12, atol=1e-300)


def test_odds_ratio_zero_cell_uses_the_half_correction_by_hand():
    res = st.odds_ratio(0, 20, 6, 14)
    a, b, c, d = 0.5, 20.5, 6.5, 14.5
    log_or = math.log(a * d / (b * c))
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    z = sps.norm.ppf(0.975)
    assert float(res.odds_ratio) == pytest.approx(math.exp(log_or))
    assert float(res.low) == pytest.approx(math.exp(log_or - z * se))
    assert float(res.high) == pytest.approx(math.exp(log_or + z * se))
    assert res.exact


def test_odds_ratio_vectorised_nan_for_empty_margins_and_empty_input():
    a = np.array([189, 3, 0, 0, 7])
    b = np.array([10845, 1, 20, 0, 9])
    c = np.array([104, 1, 6, 5, 0])
    d = np.array([10933, 3, 14, 5, 0])
    res = st.odds_ratio(a, b, c, d)
    assert np.isnan(res.odds_ratio[3]) and np.isnan(res.p_value[3])  # nobody exposed
    assert np.isnan(res.odds_ratio[4])  # nobody unexposed
    for i in range(3):
        one = st.odds_ratio(int(a[i]), int(b[i]), int(c[i]), int(d[i]))
        assert one.odds_ratio == res.odds_ratio[i] and one.p_value == res.p_value[i]
    np.testing.assert_array_equal(st.use_exact_test(a, b, c, d), [False, True, True, True, True])
    empty = st.odds_ratio([], [], [], [])
    assert all(x.shape == (0,) for x in empty)
    with pytest.raises(ValueError):
        st.odds_ratio(-1, 2, 3, 4)
    with pytest.raises(ValueError, match="whole counts"):
        st.odds_ratio(1.5, 2, 3, 4)


def test_relative_risk_matches_agresti_and_scipy():
    placebo, aspirin = (189, 11034), (104, 11037)
    est = st.katz_ratio_interval(*placebo, *aspirin)
    assert round(float(est.value), 2) == 1.82
    ref = sps.contingency.relative_risk(189, 11034, 104, 11037).confidence_interval(0.95)
    assert float(est.low) == pytest.approx(ref.low, rel=1e-10)
    assert float(est.high) == pytest.approx(ref.high, rel=1e-10)


def test_relative_risk_zero_arm_correction_and_undefined_rows():
    est = st.katz_ratio_interval([5, 0, 0], [50, 40, 0], [0, 0, 1], [60, 30, 10])
    a, m, c, n = 5.5, 51.0, 0.5, 61.0
    z = sps.norm.ppf(0.975)
    se = math.sqrt(1 / a - 1 / m + 1 / c - 1 / n)
    rr = (a / m) / (c / n)
    assert est.value[0] == pytest.approx(rr)
    assert (est.low[0], est.high[0]) == (pytest.approx(rr * math.exp(-z * se)), pytest.approx(rr * math.exp(z * se)))
    assert np.isnan(est.value[1:]).all()


def test_two_proportion_pooled_z_by_hand_and_the_exact_rule():
    res = st.two_proportion_p_value(56, 70, 48, 80)
    pooled = 104 / 150
    z = (56 / 70 - 48 / 80) / math.sqrt(pooled * (1 - pooled) * (1 / 70 + 1 / 80))
    assert not res.exact
    assert float(res.statistic) == pytest.approx(z)
    assert float(res.p_value) == pytest.approx(2 * sps.norm.sf(z))
    larger = st.two_proportion_p_value(56, 70, 48, 80, alternative="larger")
    smaller = st.two_proportion_p_value(56, 70, 48, 80, alternative="smaller")
    assert float(larger.p_value) == pytest.approx(sps.norm.sf(z))
    assert float(smaller.p_value) == pytest.approx(sps.norm.cdf(z))
    # expected events under H0: 200 * 8/400 = 4 < 5 -> Fisher; 6/400 twice the size -> z
    both = st.two_proportion_p_value([6, 12], [200, 400], [2, 4], [200, 400])
    np.testing.assert_array_equal(both.exact, [True, False])
    assert both.p_value[0] == pytest.approx(sps.fisher_exact([[6, 194], [2, 198]]).pvalue)
    assert np.isnan(both.statistic[0])
    assert np.isnan(st.two_proportion_p_value(0, 0, 1, 4).p_value)
    with pytest.raises(ValueError, match="alternative"):
        st.two_proportion_p_value(1, 2, 1, 2, alternative="greater")


# --------------------------------------------------------------------------- BH


def test_benjamini_hochberg_against_a_hand_computed_list():
    # sorted 0.01, 0.03, 0.04, 0.5 (m = 4): raw 0.04, 0.06, 0.0533, 0.5; step-up minimum from
    # the top: 0.5, 0.0533, 0.0533, 0.04; the nan stays nan and is not counted in m.
    q = st.benjamini_hochberg([0.01, np.nan, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(q, [0.04, np.nan, 0.16 / 3, 0.16 / 3, 0.5])
    assert st.benjamini_hochberg([]).shape == (0,)
    assert np.isnan(st.benjamini_hochberg([np.nan, np.nan])).all()
    with pytest.raises(ValueError):
        st.benjamini_hochberg([0.2, 1.5])


# --------------------------------------------------------------------------- Mantel-Haenszel

# UGDP, tolbutamide vs placebo, deaths / patients, by age: < 55, 55+.
TOLBUTAMIDE = ([8, 22], [106, 98], [5, 16], [120, 85])


def _sato_by_hand(strata):
    s_num = s_w = s_p = s_q = 0.0
    for a, n1, c, n0 in strata:
        t = n1 + n0
        s_num += (a * n0 - c * n1) / t
        s_w += n1 * n0 / t
        s_p += (n1 * n1 * c - n0 * n0 * a + n1 * n0 * (n0 - n1) / 2) / t**2
        s_q += (a * (n0 - c) + c * (n1 - a)) / (2 * t)
    rd = s_num / s_w
    return rd, (rd * s_p + s_q) / s_w**2


def test_mantel_haenszel_matches_the_tolbutamide_example():
    k1, n1, k2, n2 = TOLBUTAMIDE
    assert [round(k1[i] / n1[i] - k2[i] / n2[i], 3) for i in range(2)] == [0.034, 0.036]
    assert round(sum(k1) / sum(n1) - sum(k2) / sum(n2), 3) == 0.045
    res = st.mantel_haenszel_risk_difference(*TOLBUTAMIDE)
    assert round(float(res.risk_difference), 3) == 0.035
    rd, var = _sato_by_hand(zip(*TOLBUTAMIDE, strict=True))
    assert float(res.risk_difference) == pytest.approx(rd)
    assert float(res.variance) == pytest.approx(var)
    z = sps.norm.ppf(0.975)
    half = z * math.sqrt(var)
    assert (float(res.low), float(res.high)) == (pytest.approx(rd - half), pytest.approx(rd + half))


def test_mantel_haenszel_one_stratum_is_the_plain_difference_with_wald_variance():
    res = st.mantel_haenszel_risk_difference([30], [120], [12], [90])
    p1, p2 = 30 / 120, 12 / 90
    assert float(res.risk_difference) == pytest.approx(p1 - p2)
    assert float(res.variance) == pytest.approx(p1 * (1 - p1) / 120 + p2 * (1 - p2) / 90)


def test_mantel_haenszel_groups_rows_and_padding_agree():
    k1, n1, k2, n2 = TOLBUTAMIDE
    # long format: two groups, the second with a stratum whose unexposed arm is empty
    groups = np.array(["tolbutamide", "tolbutamide", "other", "other", "other"])
    long = st.mantel_haenszel_risk_difference(
        [*k1, 30, 4, 9], [*n1, 120, 10, 50], [*k2, 12, 0, 1], [*n2, 90, 0, 20], groups=groups
    )
    assert list(long.groups) == ["other", "tolbutamide"]
    wide = st.mantel_haenszel_risk_difference(
        [[30, 9, 0], [8, 22, 0]], [[120, 50, 0], [106, 98, 0]], [[12, 1, 0], [5, 16, 0]], [[90, 20, 0], [120, 85, 0]]
    )
    np.testing.assert_allclose(long.risk_difference, wide.risk_difference)
    np.testing.assert_allclose(long.variance, wide.variance)
    rd, var = _sato_by_hand([(30, 120, 12, 90), (9, 50, 1, 20)])
    assert long.risk_difference[0] == pytest.approx(rd) and long.variance[0] == pytest.approx(var)
    none = st.mantel_haenszel_risk_difference([[1, 2]], [[3, 4]], [[0, 0]], [[0, 0]])
    assert np.isnan(none.risk_difference).all() and np.isnan(none.low).all()
    assert st.mantel_haenszel_risk_difference([], [], [], [], groups=[]).risk_difference.shape == (0,)


# --------------------------------------------------------------------------- NPS


def _nps_by_hand(p, s, d, z=1.959963984540054):
    n = p + s + d
    n_adj = n + 3
    pp, dd = (p + 0.75) / n_adj, (d + 0.75) / n_adj
    half = z * math.sqrt((pp + dd - (pp - dd) ** 2) / n_adj)
    return 100 * (p - d) / n, max(-100, 100 * (pp - dd - half)), min(100, 100 * (pp - dd + half))


@pytest.mark.parametrize("counts", [(50, 30, 20), (12, 10, 14), (1, 0, 0), (0, 0, 7), (250, 500, 250)])
def test_nps_adjusted_wald_by_hand(counts):
    est = st.nps(*counts)
    expected = _nps_by_hand(*counts)
    assert (float(est.value), float(est.low), float(est.high)) == pytest.approx(expected)


def test_nps_stays_inside_the_scale_and_is_nan_without_answers():
    n = np.arange(0, 301)
    everyone = st.nps(n, 0 * n, 0 * n)
    nobody = st.nps(0 * n, 0 * n, n)
    assert np.isnan(everyone.value[0]) and np.isnan(everyone.low[0]) and np.isnan(everyone.high[0])
    for est in (everyone, nobody):
        assert np.all((est.low[1:] >= -100) & (est.high[1:] <= 100) & (est.low[1:] <= est.high[1:]))
    assert np.all(everyone.value[1:] == 100) and np.all(everyone.low[1:] < 100)  # no certainty
    # the interval is centred on the shrunk estimate: for one promoter it stops below 100
    assert float(everyone.high[1]) == pytest.approx(_nps_by_hand(1, 0, 0)[2]) and everyone.high[1] < 100
    assert np.all(everyone.high[2:] == 100)
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 40, size=(3, 200))
    est = st.nps(*counts)
    for i in range(0, 200, 37):
        one = st.nps(*(int(c[i]) for c in counts))
        assert (one.value, one.low, one.high) == (est.value[i], est.low[i], est.high[i])


# --------------------------------------------------------------------------- means, bootstrap

SLEEP_DIFFERENCES = np.array([1.2, 2.4, 1.3, 1.3, 0.0, 1.0, 1.8, 0.8, 4.6, 1.4])


def test_mean_interval_matches_r_sleep_t_test():
    x = SLEEP_DIFFERENCES
    est = st.mean_interval(x.sum(), (x**2).sum(), x.size)
    assert float(est.value) == pytest.approx(1.58)
    assert (round(float(est.low), 7), round(float(est.high), 7)) == (0.7001142, 2.4598858)


def test_mean_interval_from_components_equals_raw_t_interval_vectorised():
    rng = np.random.default_rng(11)
    groups = [rng.integers(1, 8, size=m).astype(float) for m in (2, 5, 40, 300)]
    est = st.mean_interval([g.sum() for g in groups], [(g**2).sum() for g in groups], [g.size for g in groups], 0.9)
    for i, g in enumerate(groups):
        lo, hi = sps.t.interval(0.9, df=g.size - 1, loc=g.mean(), scale=sps.sem(g)) if np.ptp(g) else (g[0], g[0])
        assert est.value[i] == pytest.approx(g.mean())
        assert (est.low[i], est.high[i]) == (pytest.approx(lo), pytest.approx(hi))
    edge = st.mean_interval([0.0, 4.0], [0.0, 16.0], [0, 1])
    assert np.isnan(edge.value[0]) and edge.value[1] == 4.0 and np.isnan(edge.low).all()


def test_bootstrap_is_deterministic_and_agrees_with_the_t_interval_on_normal_data():
    x = np.random.default_rng(5).normal(10.0, 2.0, size=400)
    a = st.bootstrap_interval(x, statistic=np.mean, seed=42, n_resamples=2000)
    b = st.bootstrap_interval(x, statistic=np.mean, seed=42, n_resamples=2000)
    assert a == b
    lo, hi = sps.t.interval(0.95, df=x.size - 1, loc=x.mean(), scale=sps.sem(x))
    assert float(a.value) == pytest.approx(x.mean())
    assert float(a.low) == pytest.approx(lo, abs=0.05) and float(a.high) == pytest.approx(hi, abs=0.05)


def test_bootstrap_zero_inflated_paired_degenerate_and_empty():
    rng = np.random.default_rng(8)
    revenue = np.where(rng.random(300) < 0.8, 0.0, rng.lognormal(4, 1, 300))
    est = st.bootstrap_interval(revenue, statistic=np.mean, seed=1, n_resamples=2000)
    assert 0 < est.low < est.value < est.high
    left = (rng.random(200) < 0.3).astype(float)
    exposed = np.ones(200)

    def share(events, at_risk, axis=-1):
        return events.sum(axis=axis) / at_risk.sum(axis=axis)

    paired = st.bootstrap_interval(left, exposed, statistic=share, seed=2, n_resamples=1000, paired=True)
    assert paired.low < left.mean() < paired.high
    zeros = st.bootstrap_interval(np.zeros(50), statistic=np.mean, seed=1)
    assert (zeros.value, zeros.low, zeros.high) == (0.0, 0.0, 0.0)
    assert np.isnan(st.bootstrap_interval(np.array([]), statistic=np.mean, seed=1).value)


def test_bootstrap_of_the_cumulative_effect_resamples_customers_together():
    # per customer: left after the first bad experience; had a second (having stayed); left after it
    rng = np.random.default_rng(13)
    left1 = rng.random(400) < 0.32
    second = ~left1 & (rng.random(400) < 0.5)
    left2 = second & (rng.random(400) < 0.4)

    def cumulative(l1, s2, l2, axis=-1):
        h1 = l1.mean(axis=axis)
        h2 = l2.sum(axis=axis) / s2.sum(axis=axis)
        return 1 - (1 - h1) * (1 - h2)

    est = st.bootstrap_interval(left1, second, left2, statistic=cumulative, seed=4, n_resamples=2000, paired=True)
    h1, h2 = left1.mean(), left2.sum() / second.sum()
    assert float(est.value) == pytest.approx(1 - (1 - h1) * (1 - h2))
    assert est.low < est.value < est.high


def test_bootstrap_by_group_is_reproducible_and_independent_of_other_groups():
    rng = np.random.default_rng(21)
    revenue = np.where(rng.random(600) < 0.7, 0.0, rng.gamma(2.0, 50.0, 600))
    category = rng.choice(np.array(["detractor", "passive", "promoter"]), 600)
    keys, est = st.bootstrap_by_group(revenue, category, seed=9, n_resamples=1000)
    assert list(keys) == ["detractor", "passive", "promoter"]
    for i, key in enumerate(keys):
        assert est.value[i] == pytest.approx(revenue[category == key].mean())
        assert est.low[i] < est.value[i] < est.high[i]
    again = st.bootstrap_by_group(revenue, category, seed=9, n_resamples=1000)[1]
    np.testing.assert_array_equal(again.low, est.low)
    keep = category != "passive"
    keys2, est2 = st.bootstrap_by_group(revenue[keep], category[keep], seed=9, n_resamples=1000)
    assert list(keys2) == ["detractor", "promoter"]
    np.testing.assert_array_equal(est2.low, est.low[[0, 2]])
    np.testing.assert_array_equal(est2.high, est.high[[0, 2]])
    assert st.bootstrap_by_group([], [], seed=1)[0].shape == (0,)


# --------------------------------------------------------------------------- Kaplan-Meier

# Freireich et al. (1963), 6-MP arm: weeks in remission, False where censored.
SIX_MP_WEEKS = np.array([6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35], float)
SIX_MP_RELAPSED = np.array([1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0], bool)


def _product_limit(durations, observed):
    """The product-limit estimate, plainly: at each event time, S *= 1 - d / at_risk."""
    s, steps = 1.0, []
    for t in sorted(set(durations[observed])):
        at_risk = sum(1 for x in durations if x >= t)
        deaths = sum(1 for x, e in zip(durations, observed, strict=True) if x == t and e)
        s *= 1 - deaths / at_risk
        steps.append((t, s))
    return steps


def test_kaplan_meier_matches_the_6mp_table_and_a_plain_product_limit():
    km = st.kaplan_meier(SIX_MP_WEEKS, SIX_MP_RELAPSED)
    np.testing.assert_array_equal(km.times, [6, 7, 10, 13, 16, 22, 23])
    assert [round(float(s), 3) for s in km.survival] == [0.857, 0.807, 0.753, 0.690, 0.627, 0.538, 0.448]
    steps = _product_limit(SIX_MP_WEEKS, SIX_MP_RELAPSED)
    np.testing.assert_allclose(km.survival, [s for _, s in steps])
    # restricted mean to 35 weeks: the area under the step function
    edges = [0.0] + [t for t, _ in steps] + [35.0]
    levels = [1.0] + [s for _, s in steps]
    assert km.restricted_mean == pytest.approx(sum(v * (edges[i + 1] - edges[i]) for i, v in enumerate(levels)))
    assert km.tau == 35.0
    assert np.all((km.low <= km.survival) & (km.survival <= km.high))
    at = st.kaplan_meier(SIX_MP_WEEKS, SIX_MP_RELAPSED, times=[0, 8, 100], tau=12)
    np.testing.assert_allclose(at.survival, [1.0, steps[1][1], steps[-1][1]])
    assert at.restricted_mean == pytest.approx(6 + steps[0][1] * 1 + steps[1][1] * 3 + steps[2][1] * 2)


def test_kaplan_meier_without_events_or_durations():
    none = st.kaplan_meier([3.0, 5.0], [False, False], times=[1, 4])
    np.testing.assert_array_equal(none.survival, [1.0, 1.0])
    assert none.restricted_mean == 5.0
    empty = st.kaplan_meier([], [], times=[1.0])
    assert np.isnan(empty.survival).all() and math.isnan(empty.restricted_mean)
    with pytest.raises(ValueError):
        st.kaplan_meier([-1.0], [True])


# --------------------------------------------------------------------------- keyness, Fong, Spearman


def _g2_by_hand(a, b, c, d):
    e1, e2 = c * (a + b) / (c + d), d * (a + b) / (c + d)
    g2 = 2 * ((a * math.log(a / e1) if a else 0.0) + (b * math.log(b / e2) if b else 0.0))
    return g2, 0.5 * sps.chi2.sf(g2, 1)


@pytest.mark.parametrize(("a", "b", "c", "d"), [(10, 2, 100, 400), (30, 40, 700, 2800), (5, 0, 80, 320)])
def test_g2_keyness_by_hand(a, b, c, d):
    res = st.g2_keyness(a, b, c, d)
    g2, p = _g2_by_hand(a, b, c, d)
    assert float(res.g2) == pytest.approx(g2) and float(res.p_value) == pytest.approx(p)
    assert float(res.ratio) == pytest.approx(((a or 0.5) / c) / ((b or 0.5) / d))


def test_g2_keyness_is_one_sided_and_vectorised():
    res = st.g2_keyness([1, 4, 0, 0], [10, 16, 0, 5], [100, 100, 100, 0], [400, 400, 400, 10])
    np.testing.assert_array_equal(res.g2[:3], [0.0, 0.0, 0.0])  # lower, equal, absent
    np.testing.assert_array_equal(res.p_value[:3], [1.0, 1.0, 1.0])
    assert np.isnan(res.g2[3]) and np.isnan(res.p_value[3])  # a window without documents
    assert res.ratio[0] == pytest.approx(0.4) and np.isnan(res.ratio[2])  # absent: no ratio
    # the critical value: G² = 3.84 is p = .05 two-sided, so .025 one-sided
    assert 0.5 * sps.chi2.sf(3.841459, 1) == pytest.approx(0.025)
    assert st.g2_keyness([], [], [], []).g2.shape == (0,)


def test_fong_by_hand():
    # |10 - 8| = 2 < 1.65·sqrt(18·42/60) = 5.86: not distinguishable;
    # |20 - 5| = 15 >= 1.65·sqrt(25·35/60) = 6.30: distinguishable
    np.testing.assert_array_equal(st.fong_distinguishable([10, 20, 0], [8, 5, 0], [30, 30, 0]), [False, True, False])
    assert bool(st.fong_distinguishable(12, 4, 20)) is (1.65 * math.sqrt(16 * 24 / 40) <= 8)
    with pytest.raises(ValueError):
        st.fong_distinguishable(10, 12, 20)


def test_spearman_matches_the_wikipedia_example():
    iq = [106, 100, 86, 101, 99, 103, 97, 113, 112, 110]
    tv = [7, 27, 2, 50, 28, 29, 20, 12, 6, 17]
    res = st.spearman(iq, tv)
    assert res.rho == pytest.approx(-29 / 165) and res.n == 10
    assert round(res.p_value, 6) == 0.627188
    t = res.rho * math.sqrt(8 / (1 - res.rho**2))
    assert res.p_value == pytest.approx(2 * sps.t.sf(abs(t), 8))


def test_spearman_drops_incomplete_pairs_and_is_nan_when_undefined():
    res = st.spearman([1, 2, np.nan, 4, 5], [2, 1, 3, np.nan, 7])
    assert res.n == 3 and res.rho == pytest.approx(0.5)
    assert math.isnan(st.spearman([1, 2], [2, 1]).rho)
    assert math.isnan(st.spearman([1, 1, 1, 1], [1, 2, 3, 4]).p_value)
    assert st.spearman([], []).n == 0


# --------------------------------------------------------------------------- small n, rates


def test_suppress_small_and_rate():
    np.testing.assert_array_equal(st.suppress_small([0.5, 0.2, 0.1], [10, 30, 29], 30), [np.nan, 0.2, np.nan])
    np.testing.assert_array_equal(st.rate([1, 0], [4, 0]), [0.25, np.nan])
    assert st.rate(np.array([]), np.array([])).shape == (0,)
