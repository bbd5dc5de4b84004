"""Intervals, tests and q-values that the analytics datasets store as columns.

BI tools cannot run Python, so the refresher computes every rate's interval, every p-value and
every q-value here and lands them next to the counts they come from. The inputs are therefore
arrays of counts, one element per row of an aggregate table (thousands of rows), and every
function here is vectorised over numpy arrays (scalars work too and give numpy scalars back).

Conventions, the same in every function:

- A value that is undefined for a row (``n == 0``: nothing is a rate without a denominator) is
  ``nan``, never an exception and never a made-up number; an empty array gives empty arrays.
- Counts that cannot be (negative, ``k > n``) raise ``ValueError``: they are a bug upstream.
- ``confidence`` is the two-sided level, ``0.95`` by default; each docstring names its method
  and its source.
- The work is done by scipy and statsmodels wherever they have the method; the few methods they
  lack, or have only one table at a time (Mantel-Haenszel risk difference, the Rocks NPS
  interval, Woolf's and Katz's intervals with the zero-cell correction, Fisher's exact test on
  arrays, G² keyness, Fong's test, the t interval from additive components), are written here
  from the published formula, say so, and are checked in ``tests/test_stats.py``
  against published worked examples where the publication has one, else against a direct
  computation that does not share this code.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special
from scipy import stats as sps
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    test_proportions_2indep,
)

Alternative = Literal["two-sided", "larger", "smaller"]

#: Cochran's rule: the large-sample (chi-square / z) test is trusted when every expected count
#: is at least 5; below that the exact test is used.
MIN_EXPECTED_COUNT = 5.0
#: The drop-off issue's rule for odds ratios: Fisher's exact test when any observed cell is < 5.
MIN_CELL_COUNT = 5.0


class Interval(NamedTuple):
    low: NDArray[np.float64]
    high: NDArray[np.float64]


class Estimate(NamedTuple):
    """A point estimate with its interval (each an array of the broadcast shape)."""

    value: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]


class OddsRatio(NamedTuple):
    odds_ratio: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    p_fisher: NDArray[np.float64]
    p_chi2: NDArray[np.float64]
    #: the p-value to report: ``p_fisher`` where ``exact``, else ``p_chi2``
    p_value: NDArray[np.float64]
    exact: NDArray[np.bool_]


class TwoProportionTest(NamedTuple):
    p_value: NDArray[np.float64]
    #: the pooled z statistic (nan where the exact test was used or the test is undefined)
    statistic: NDArray[np.float64]
    exact: NDArray[np.bool_]


class MantelHaenszel(NamedTuple):
    risk_difference: NDArray[np.float64]
    variance: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    #: the group keys the results are ordered by (``np.unique(groups)``), or None without groups
    groups: NDArray | None


class Keyness(NamedTuple):
    g2: NDArray[np.float64]
    p_value: NDArray[np.float64]
    ratio: NDArray[np.float64]


class Correlation(NamedTuple):
    rho: float
    n: int
    p_value: float


class KaplanMeier(NamedTuple):
    times: NDArray[np.float64]
    survival: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    restricted_mean: float
    tau: float


# --------------------------------------------------------------------------- helpers


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    return float(sps.norm.ppf(0.5 + confidence / 2.0))


def _floats(*values: ArrayLike) -> list[NDArray[np.float64]]:
    arrays = np.broadcast_arrays(*[np.asarray(v, dtype=np.float64) for v in values])
    return [np.array(v, dtype=np.float64) for v in arrays]


def _check_counts(k: NDArray[np.float64], n: NDArray[np.float64], what: str) -> None:
    with np.errstate(invalid="ignore"):
        bad = (k < 0) | (n < 0) | (k > n)
    if np.any(bad):
        i = np.flatnonzero(bad)[0]
        raise ValueError(f"{what}: counts must satisfy 0 <= k <= n, got k={k.flat[i]!r}, n={n.flat[i]!r}")


def _check_cells(*cells: NDArray[np.float64]) -> None:
    for cell in cells:
        with np.errstate(invalid="ignore"):
            if np.any(cell < 0):
                raise ValueError(f"cell counts must be >= 0, got {cell[cell < 0].flat[0]!r}")


def _nan(shape: tuple[int, ...]) -> NDArray[np.float64]:
    return np.full(shape, np.nan)


def _ret(x: NDArray) -> NDArray:
    """0-d arrays come back as numpy scalars, so scalar calls read naturally."""
    return x[()] if x.ndim == 0 else x


def rate(k: ArrayLike, n: ArrayLike) -> NDArray[np.float64]:
    """k / n, nan where n == 0 (nothing is a rate without a denominator)."""
    k, n = _floats(k, n)
    _check_counts(k, n, "rate")
    out = _nan(k.shape)
    ok = n > 0
    out[ok] = k[ok] / n[ok]
    return _ret(out)


# --------------------------------------------------------------------------- proportions


def wilson_interval(k: ArrayLike, n: ArrayLike, confidence: float = 0.95) -> Interval:
    """Wilson's score interval for k successes out of n (Wilson 1927; Newcombe 1998, Stat Med
    17:857, method 3), by ``statsmodels.stats.proportion.proportion_confint(method="wilson")``.

    Chosen over the Wald interval because it keeps its coverage near 0 and 1 and at small n,
    which is where drop-off and CSAT rates of thin segments live; nan where n == 0.
    """
    k, n = _floats(k, n)
    _check_counts(k, n, "wilson_interval")
    _z(confidence)
    low, high = _nan(k.shape), _nan(k.shape)
    ok = n > 0
    if ok.any():
        lo, hi = proportion_confint(k[ok], n[ok], alpha=1.0 - confidence, method="wilson")
        # exact in closed form at the edges, where floating point leaves 1e-17 either side
        low[ok] = np.where(k[ok] == 0, 0.0, np.clip(lo, 0.0, 1.0))
        high[ok] = np.where(k[ok] == n[ok], 1.0, np.clip(hi, 0.0, 1.0))
    return Interval(_ret(low), _ret(high))


def newcombe_difference_interval(
    k1: ArrayLike, n1: ArrayLike, k2: ArrayLike, n2: ArrayLike, confidence: float = 0.95
) -> Estimate:
    """Risk difference p1 - p2 with Newcombe's hybrid score interval (Newcombe 1998, Stat Med
    17:873, method 10: the Wilson limits of each arm combined by the square-and-add rule), by
    ``statsmodels.stats.proportion.confint_proportions_2indep(method="newcomb", compare="diff")``.

    The moments-of-truth lift; unlike the Wald interval it stays inside [-1, 1] and does not
    collapse to a point when an arm has 0 or n events. nan where either arm is empty.
    """
    _z(confidence)
    k1, n1, k2, n2 = _floats(k1, n1, k2, n2)
    _check_counts(k1, n1, "newcombe_difference_interval (arm 1)")
    _check_counts(k2, n2, "newcombe_difference_interval (arm 2)")
    value, low, high = _nan(k1.shape), _nan(k1.shape), _nan(k1.shape)
    ok = (n1 > 0) & (n2 > 0)
    if ok.any():
        value[ok] = k1[ok] / n1[ok] - k2[ok] / n2[ok]
        lo, hi = confint_proportions_2indep(
            k1[ok], n1[ok], k2[ok], n2[ok], method="newcomb", compare="diff", alpha=1.0 - confidence
        )
        low[ok], high[ok] = np.clip(lo, -1.0, 1.0), np.clip(hi, -1.0, 1.0)
    return Estimate(_ret(value), _ret(low), _ret(high))


def katz_ratio_interval(
    k1: ArrayLike, n1: ArrayLike, k2: ArrayLike, n2: ArrayLike, confidence: float = 0.95
) -> Estimate:
    """Relative risk p1 / p2 with the Katz log interval (Katz et al. 1978, Biometrics 34:469):
    exp(ln RR ± z·sqrt(1/k1 - 1/n1 + 1/k2 - 1/n2)).

    Written here because scipy's ``contingency.relative_risk`` (the same interval, used by the
    tests as the cross-check) takes one table at a time. When exactly one arm has no event the
    ratio is 0 or infinite; as in the odds ratio, 0.5 is then added to every cell of that row's
    2x2 table (k + 0.5, n + 1) so that a finite ratio and interval are reported. nan where an arm
    is empty or neither arm has an event (no ratio is estimable).
    """
    z = _z(confidence)
    k1, n1, k2, n2 = _floats(k1, n1, k2, n2)
    _check_counts(k1, n1, "katz_ratio_interval (arm 1)")
    _check_counts(k2, n2, "katz_ratio_interval (arm 2)")
    value, low, high = _nan(k1.shape), _nan(k1.shape), _nan(k1.shape)
    ok = (n1 > 0) & (n2 > 0) & ((k1 > 0) | (k2 > 0))
    if ok.any():
        a, m, c, n = k1[ok], n1[ok], k2[ok], n2[ok]
        zero = (a == 0) | (c == 0)
        a, c = np.where(zero, a + 0.5, a), np.where(zero, c + 0.5, c)
        m, n = np.where(zero, m + 1.0, m), np.where(zero, n + 1.0, n)
        log_rr = np.log(a / m) - np.log(c / n)
        se = np.sqrt(1.0 / a - 1.0 / m + 1.0 / c - 1.0 / n)
        value[ok], low[ok], high[ok] = np.exp(log_rr), np.exp(log_rr - z * se), np.exp(log_rr + z * se)
    return Estimate(_ret(value), _ret(low), _ret(high))


# --------------------------------------------------------------------------- 2x2 tables


def _log_choose(n: NDArray, k: NDArray) -> NDArray[np.float64]:
    return special.gammaln(n + 1.0) - special.gammaln(k + 1.0) - special.gammaln(n - k + 1.0)


def _fisher(a: NDArray, b: NDArray, c: NDArray, d: NDArray, alternative: str) -> NDArray[np.float64]:
    """Fisher's exact p-value of each table [[a, b], [c, d]], run on arrays.

    scipy's ``fisher_exact`` takes one table a call (milliseconds each, which thousands of rows
    a refresh cannot afford), so its algorithm is run here on arrays: the hypergeometric tails
    of ``scipy.stats.hypergeom`` and, for the two-sided test, the tail beyond the mode whose
    probabilities do not exceed the observed one, found by binary search on the log pmf
    (closed form by ``gammaln``), with the relative tolerance 1e-7 of R's ``fisher.test``.
    The tests check it against scipy's on random tables.
    """
    shape = np.broadcast(a, b, c, d).shape
    out = np.full(shape, np.nan)
    tables = np.stack([np.ravel(a), np.ravel(b), np.ravel(c), np.ravel(d)], axis=1).astype(np.float64)
    finite = np.isfinite(tables).all(axis=1)
    if np.any(tables[finite] != np.round(tables[finite])):
        raise ValueError("Fisher's exact test needs whole counts in every cell")
    if not finite.any():
        return out
    x, y, u, v = (tables[finite, i] for i in range(4))
    n1, n2, n = x + y, u + v, x + u
    total = n1 + n2
    hyper = sps.hypergeom
    if alternative == "less":
        p = hyper.cdf(x, total, n1, n)
    elif alternative == "greater":
        p = hyper.sf(x - 1, total, n1, n)
    else:
        tol = np.log1p(1e-7)
        mode = np.floor((n + 1) * (n1 + 1) / (total + 2))
        lo_support, hi_support = np.maximum(0.0, n - n2), np.minimum(n, n1)

        def log_pmf(k: NDArray, m1: NDArray, m2: NDArray, draws: NDArray) -> NDArray:
            inside = (k >= np.maximum(0.0, draws - m2)) & (k <= np.minimum(draws, m1))
            kk = np.where(inside, k, 0.0)
            value = _log_choose(m1, kk) + _log_choose(m2, draws - kk) - _log_choose(m1 + m2, draws)
            return np.where(inside, value, -np.inf)

        observed = log_pmf(x, n1, n2, n)
        at_mode = observed >= log_pmf(mode, n1, n2, n) - tol
        p = np.ones(x.shape)
        below = ~at_mode & (x < mode)  # the other tail lies above the mode
        if below.any():
            m1, m2, dr, lp = n1[below], n2[below], n[below], observed[below]
            # first k above the mode whose probability is at most the observed one
            k_lo, k_hi = mode[below], hi_support[below] + 1.0
            while np.any(k_lo < k_hi):
                mid = np.floor((k_lo + k_hi) / 2.0)
                small = log_pmf(mid, m1, m2, dr) <= lp + tol
                k_hi, k_lo = np.where(small, mid, k_hi), np.where(small, k_lo, mid + 1.0)
            p[below] = hyper.cdf(x[below], m1 + m2, m1, dr) + hyper.sf(k_lo - 1.0, m1 + m2, m1, dr)
        above = ~at_mode & (x > mode)  # the other tail lies below the mode
        if above.any():
            m1, m2, dr, lp = n1[above], n2[above], n[above], observed[above]
            # last k below the mode whose probability is at most the observed one
            k_lo, k_hi = lo_support[above] - 1.0, mode[above]
            while np.any(k_lo < k_hi):
                mid = np.ceil((k_lo + k_hi) / 2.0)
                small = log_pmf(mid, m1, m2, dr) <= lp + tol
                k_lo, k_hi = np.where(small, mid, k_lo), np.where(small, k_hi, mid - 1.0)
            p[above] = hyper.sf(x[above] - 1.0, m1 + m2, m1, dr) + hyper.cdf(k_lo, m1 + m2, m1, dr)
        p = np.minimum(p, 1.0)
    # a table with an empty row or column has a single arrangement: p = 1, as scipy says
    p = np.where((n1 == 0) | (n2 == 0) | (n == 0) | (total - n == 0), 1.0, p)
    out.reshape(-1)[finite] = p
    return out


def _pearson_chi2_p(a: NDArray, b: NDArray, c: NDArray, d: NDArray) -> NDArray[np.float64]:
    """Pearson's X² = N(ad - bc)² / (row1·row2·col1·col2), 1 df, no continuity correction:
    the same statistic as the pooled two-proportion z test squared (tests check it against
    ``scipy.stats.chi2_contingency(correction=False)``). nan where a margin is empty."""
    n = a + b + c + d
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    out = np.full(a.shape, np.nan)
    ok = denom > 0
    x2 = n[ok] * (a[ok] * d[ok] - b[ok] * c[ok]) ** 2 / denom[ok]
    out[ok] = sps.chi2.sf(x2, df=1)
    return out


def use_exact_test(
    a: ArrayLike, b: ArrayLike, c: ArrayLike, d: ArrayLike, min_cell: float = MIN_CELL_COUNT
) -> NDArray[np.bool_]:
    """Which p-value a 2x2 table reports: True (Fisher's exact test, two-sided) when any observed
    cell is below ``min_cell`` (5), False (Pearson's chi-square test without continuity
    correction, 1 df, i.e. the two-sided pooled two-proportion z test) otherwise.

    The rule of the drop-off signals; observed rather than expected cells, because it is the
    stricter of the two for the sparse feature tables the signals produce.
    """
    a, b, c, d = _floats(a, b, c, d)
    with np.errstate(invalid="ignore"):
        return _ret(np.minimum(np.minimum(a, b), np.minimum(c, d)) < min_cell)


def odds_ratio(a: ArrayLike, b: ArrayLike, c: ArrayLike, d: ArrayLike, confidence: float = 0.95) -> OddsRatio:
    """Odds ratio ad / bc of the table [[a, b], [c, d]] (a, b: exposed with / without the outcome;
    c, d: unexposed with / without) with Woolf's logit interval exp(ln OR ± z·sqrt(1/a + 1/b +
    1/c + 1/d)) (Woolf 1955, Ann Hum Genet 19:251; Agresti, Categorical Data Analysis, ch. 3).

    When a cell is 0, 0.5 is added to all four cells of that table (Haldane-Anscombe) for the
    estimate and its interval, so a feature seen only among leavers still gets a finite,
    honest-width interval. Both p-values are given: Fisher's exact (two-sided, scipy's
    algorithm run on arrays, equal to ``scipy.stats.fisher_exact``) and Pearson's chi-square; ``p_value`` picks one by
    :func:`use_exact_test`. Everything is nan where a row or column of the table is empty (no
    odds ratio is estimable). Woolf's interval is written here: statsmodels has it only for one
    table at a time (``Table2x2``) and without the zero-cell rule.
    """
    z = _z(confidence)
    a, b, c, d = _floats(a, b, c, d)
    _check_cells(a, b, c, d)
    shape = a.shape
    value, low, high = _nan(shape), _nan(shape), _nan(shape)
    ok = (a + b > 0) & (c + d > 0) & (a + c > 0) & (b + d > 0)
    if ok.any():
        aa, bb, cc, dd = a[ok], b[ok], c[ok], d[ok]
        zero = (aa == 0) | (bb == 0) | (cc == 0) | (dd == 0)
        aa, bb, cc, dd = (np.where(zero, x + 0.5, x) for x in (aa, bb, cc, dd))
        log_or = np.log(aa) + np.log(dd) - np.log(bb) - np.log(cc)
        se = np.sqrt(1.0 / aa + 1.0 / bb + 1.0 / cc + 1.0 / dd)
        value[ok], low[ok], high[ok] = np.exp(log_or), np.exp(log_or - z * se), np.exp(log_or + z * se)
    p_fisher, p_chi2 = _nan(shape), _nan(shape)
    if ok.any():
        p_fisher[ok] = _fisher(a[ok], b[ok], c[ok], d[ok], "two-sided")
        p_chi2[ok] = _pearson_chi2_p(a[ok], b[ok], c[ok], d[ok])
    exact = np.asarray(use_exact_test(a, b, c, d))
    p_value = np.where(exact, p_fisher, p_chi2)
    return OddsRatio(*(_ret(x) for x in (value, low, high, p_fisher, p_chi2, p_value, exact)))


def two_proportion_p_value(
    k1: ArrayLike,
    n1: ArrayLike,
    k2: ArrayLike,
    n2: ArrayLike,
    alternative: Alternative = "two-sided",
    min_expected: float = MIN_EXPECTED_COUNT,
) -> TwoProportionTest:
    """p-value of H0: p1 = p2 against ``alternative`` ("larger": p1 > p2, "smaller": p1 < p2).

    Rule (Cochran's): with the pooled rate p̄ = (k1 + k2) / (n1 + n2), the expected counts under
    H0 are n_i·p̄ and n_i·(1 - p̄); when the smallest of the four is below ``min_expected`` (5),
    Fisher's exact test (conditional on the margins, same alternative; scipy's algorithm run on
    arrays, equal to ``scipy.stats.fisher_exact``) is used; otherwise the pooled z test
    z = (p1 - p2) / sqrt(p̄(1 - p̄)(1/n1 + 1/n2)) by
    ``statsmodels.stats.proportion.test_proportions_2indep(method="score", correction=False)``
    (the score test, whose null variance is the pooled one). nan where an arm is empty.
    """
    if alternative not in ("two-sided", "larger", "smaller"):
        raise ValueError(f"alternative must be 'two-sided', 'larger' or 'smaller', got {alternative!r}")
    k1, n1, k2, n2 = _floats(k1, n1, k2, n2)
    _check_counts(k1, n1, "two_proportion_p_value (arm 1)")
    _check_counts(k2, n2, "two_proportion_p_value (arm 2)")
    shape = k1.shape
    p, stat = _nan(shape), _nan(shape)
    exact = np.zeros(shape, dtype=bool)
    ok = (n1 > 0) & (n2 > 0)
    if ok.any():
        pooled = (k1[ok] + k2[ok]) / (n1[ok] + n2[ok])
        smallest = np.minimum(n1[ok], n2[ok]) * np.minimum(pooled, 1.0 - pooled)
        small = smallest < min_expected
        exact[ok] = small
        idx = np.flatnonzero(ok)
        e, z = idx[small], idx[~small]
        if e.size:
            fisher_alt = {"two-sided": "two-sided", "larger": "greater", "smaller": "less"}[alternative]
            p.flat[e] = _fisher(k1.flat[e], n1.flat[e] - k1.flat[e], k2.flat[e], n2.flat[e] - k2.flat[e], fisher_alt)
        if z.size:
            res = test_proportions_2indep(
                k1.flat[z],
                n1.flat[z],
                k2.flat[z],
                n2.flat[z],
                method="score",
                correction=False,
                alternative=alternative,
                return_results=True,
            )
            p.flat[z], stat.flat[z] = res.pvalue, res.statistic
    return TwoProportionTest(_ret(p), _ret(stat), _ret(exact))


# --------------------------------------------------------------------------- many tests


def benjamini_hochberg(p: ArrayLike) -> NDArray[np.float64]:
    """Benjamini-Hochberg q-values (adjusted p-values, Benjamini & Hochberg 1995) by
    ``scipy.stats.false_discovery_control(method="bh")``.

    nan p-values (tests that were not run: too small, undefined) are left out of the family
    and stay nan, so an undefined row neither consumes nor relaxes the false-discovery budget.
    """
    p = np.array(p, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if np.any((p < 0) | (p > 1)):
            raise ValueError("p-values must lie in [0, 1]")
    q = _nan(p.shape)
    ok = ~np.isnan(p)
    if ok.any():
        q[ok] = sps.false_discovery_control(p[ok], method="bh")
    return _ret(q)


# --------------------------------------------------------------------------- strata


def mantel_haenszel_risk_difference(
    k1: ArrayLike,
    n1: ArrayLike,
    k2: ArrayLike,
    n2: ArrayLike,
    confidence: float = 0.95,
    groups: ArrayLike | None = None,
) -> MantelHaenszel:
    """Mantel-Haenszel pooled risk difference over strata, with Sato's variance.

    Written here because statsmodels' ``StratifiedTable`` pools the odds ratio and the risk
    ratio but not the difference. With, in stratum i, a = k1 events among n1 exposed, c = k2
    among n0 = n2 unexposed, T = n1 + n0 and w = n1·n0 / T (Greenland & Robins 1985, Biometrics
    41:55; Rothman, Greenland & Lash, Modern Epidemiology, 3rd ed., ch. 15):

        RD_MH = Σ (a·n0 - c·n1) / T  /  Σ w
        Var   = (RD_MH·Σ P + Σ Q) / (Σ w)²                     (Sato 1989, Biometrics 45:1323)
        P     = (n1²·c - n0²·a + n1·n0·(n0 - n1) / 2) / T²
        Q     = (a·(n0 - c) + c·(n1 - a)) / (2T)

    Sato's variance is consistent both with few large strata and with many sparse ones (the
    Greenland-Robins variance only with the former), which matters for thin segments. The
    interval is RD_MH ± z·sqrt(Var).

    Without ``groups`` the strata lie along the last axis (one row per pooled result; strata
    with an empty arm weigh nothing, so padding with zeros is harmless). With ``groups`` (one
    key per element of 1-D inputs, e.g. the touchpoint of each (touchpoint, segment) row), the
    strata of each group are pooled and results come in ``np.unique(groups)`` order. nan where
    no stratum has both arms.
    """
    z = _z(confidence)
    a, m1, c, m0 = _floats(k1, n1, k2, n2)
    _check_counts(a, m1, "mantel_haenszel_risk_difference (exposed)")
    _check_counts(c, m0, "mantel_haenszel_risk_difference (unexposed)")
    t = m1 + m0
    with np.errstate(invalid="ignore", divide="ignore"):
        both = (m1 > 0) & (m0 > 0)
        num = np.where(both, (a * m0 - c * m1) / t, 0.0)
        w = np.where(both, m1 * m0 / t, 0.0)
        p_term = np.where(both, (m1**2 * c - m0**2 * a + m1 * m0 * (m0 - m1) / 2.0) / t**2, 0.0)
        q_term = np.where(both, (a * (m0 - c) + c * (m1 - a)) / (2.0 * t), 0.0)
    keys = None
    if groups is None:
        if a.ndim == 0:
            num, w, p_term, q_term = (x.reshape(1) for x in (num, w, p_term, q_term))
        sums = [x.sum(axis=-1) for x in (num, w, p_term, q_term)]
    else:
        g = np.asarray(groups)
        if g.shape != a.shape or a.ndim != 1:
            raise ValueError("groups needs one key per element of 1-D count arrays")
        keys, inverse = np.unique(g, return_inverse=True)
        sums = [np.bincount(inverse, weights=x, minlength=keys.size) for x in (num, w, p_term, q_term)]
    s_num, s_w, s_p, s_q = (np.asarray(x, dtype=np.float64) for x in sums)
    rd, var = _nan(s_w.shape), _nan(s_w.shape)
    ok = s_w > 0
    rd[ok] = s_num[ok] / s_w[ok]
    var[ok] = np.maximum((rd[ok] * s_p[ok] + s_q[ok]) / s_w[ok] ** 2, 0.0)
    half = z * np.sqrt(var)
    return MantelHaenszel(_ret(rd), _ret(var), _ret(rd - half), _ret(rd + half), keys)


# --------------------------------------------------------------------------- survey metrics


def nps(promoters: ArrayLike, passives: ArrayLike, detractors: ArrayLike, confidence: float = 0.95) -> Estimate:
    """Net Promoter Score on the -100..100 scale with the adjusted-Wald interval of Rocks 2016
    (The American Statistician 70:365; arXiv 1601.07235), the best simple interval of the six it
    compares.

    value = 100·(P - D) / n. Interval: with n' = n + 3, p' = (P + 3/4) / n', d' = (D + 3/4) / n',
    100·[(p' - d') ± z·sqrt((p' + d' - (p' - d')²) / n')], clipped to [-100, 100]. Written here
    (no library has it). nan where there is no answer. The interval is centred on the shrunk
    estimate, so at a handful of answers it need not contain the raw value (one promoter: 100,
    interval [-48.5, 98.5]); from two answers of one kind on it reaches the bound.
    """
    z = _z(confidence)
    p, s, d = _floats(promoters, passives, detractors)
    _check_cells(p, s, d)
    n = p + s + d
    value, low, high = _nan(n.shape), _nan(n.shape), _nan(n.shape)
    ok = n > 0
    if ok.any():
        value[ok] = 100.0 * (p[ok] - d[ok]) / n[ok]
        n_adj = n[ok] + 3.0
        pp, dd = (p[ok] + 0.75) / n_adj, (d[ok] + 0.75) / n_adj
        centre = pp - dd
        half = z * np.sqrt(np.maximum(pp + dd - centre**2, 0.0) / n_adj)
        low[ok] = np.clip(100.0 * (centre - half), -100.0, 100.0)
        high[ok] = np.clip(100.0 * (centre + half), -100.0, 100.0)
    return Estimate(_ret(value), _ret(low), _ret(high))


def mean_interval(total: ArrayLike, sum_of_squares: ArrayLike, n: ArrayLike, confidence: float = 0.95) -> Estimate:
    """Mean with Student's t interval from the additive components (Σx, Σx², n) that the CES
    scorecard stores, so that any re-aggregation over periods or filters gives the exact same
    interval as the raw scores would: s² = (Σx² - (Σx)²/n) / (n - 1), mean ± t(n-1)·s/sqrt(n),
    with the t quantile from ``scipy.stats.t``. The mean is nan where n == 0, the interval where
    n < 2 (no spread can be estimated from one score).
    """
    _z(confidence)
    t_sum, t_sq, n = _floats(total, sum_of_squares, n)
    with np.errstate(invalid="ignore"):
        if np.any(n < 0):
            raise ValueError("n must be >= 0")
    value, low, high = _nan(n.shape), _nan(n.shape), _nan(n.shape)
    has = n > 0
    value[has] = t_sum[has] / n[has]
    two = n >= 2
    if two.any():
        nn = n[two]
        var = np.maximum((t_sq[two] - t_sum[two] ** 2 / nn) / (nn - 1.0), 0.0)
        half = sps.t.ppf(0.5 + confidence / 2.0, df=nn - 1.0) * np.sqrt(var / nn)
        low[two], high[two] = value[two] - half, value[two] + half
    return Estimate(_ret(value), _ret(low), _ret(high))


def bootstrap_interval(
    *samples: ArrayLike,
    statistic: Callable[..., float | NDArray],
    confidence: float = 0.95,
    seed: int | Sequence[int],
    n_resamples: int = 9999,
    method: Literal["BCa", "percentile", "basic"] = "BCa",
    paired: bool = False,
) -> Estimate:
    """A statistic of one or more samples with its bootstrap interval by
    ``scipy.stats.bootstrap`` (BCa by default: revenue per customer is zero-inflated and
    skewed, where the percentile interval under-covers), deterministic for a given ``seed``.

    ``statistic`` gets one array per sample (and should take ``axis`` so scipy can vectorise
    it); ``paired=True`` resamples the rows of equally long samples together (h1 and h2 of the
    cumulative effect are both functions of the same customers). A sample whose bootstrap
    distribution is a single value (all revenue zero) gets the degenerate interval [v, v];
    nan where a sample is empty.
    """
    _z(confidence)
    if not samples:
        raise ValueError("bootstrap_interval needs at least one sample")
    data = [np.asarray(s, dtype=np.float64) for s in samples]
    if any(s.size == 0 for s in data):
        return Estimate(np.float64(np.nan), np.float64(np.nan), np.float64(np.nan))
    value = np.float64(statistic(*data))
    if all(np.ptp(s) == 0 for s in data):
        # every resample is the sample itself: scipy's BCa would divide by zero
        return Estimate(value, value, value)
    rng = np.random.default_rng(seed)
    result = sps.bootstrap(
        data,
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method=method,
        paired=paired,
        rng=rng,
    )
    dist = np.asarray(result.bootstrap_distribution)
    if np.ptp(dist) == 0:
        return Estimate(value, np.float64(dist.flat[0]), np.float64(dist.flat[0]))
    ci = result.confidence_interval
    return Estimate(value, np.float64(ci.low), np.float64(ci.high))


def _group_seed(seed: int, key: object) -> list[int]:
    """A group's own stream: the seed with a stable hash of the key (not its position), so a
    group's interval does not move when another group appears in a later refresh."""
    return [int(seed), zlib.crc32(str(key).encode("utf-8"))]


def bootstrap_by_group(
    values: ArrayLike,
    groups: ArrayLike,
    statistic: Callable[..., float | NDArray] = np.mean,
    confidence: float = 0.95,
    *,
    seed: int,
    n_resamples: int = 9999,
    method: Literal["BCa", "percentile", "basic"] = "BCa",
) -> tuple[NDArray, Estimate]:
    """:func:`bootstrap_interval` of one value per unit (revenue per customer) for each group
    (NPS category, segment), in ``np.unique(groups)`` order: the keys and one Estimate of arrays.

    Each group draws from its own stream seeded by ``seed`` and the group's key, so results are
    reproducible and a group's interval does not depend on which other groups are present.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    g = np.asarray(groups).ravel()
    if v.shape != g.shape:
        raise ValueError("values and groups must have the same length")
    keys, inverse = np.unique(g, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(keys.size + 1))
    value, low, high = _nan(keys.shape), _nan(keys.shape), _nan(keys.shape)
    for i, key in enumerate(keys):
        sample = v[order[bounds[i] : bounds[i + 1]]]
        est = bootstrap_interval(
            sample,
            statistic=statistic,
            confidence=confidence,
            seed=_group_seed(seed, key),
            n_resamples=n_resamples,
            method=method,
        )
        value[i], low[i], high[i] = est
    return keys, Estimate(value, low, high)


def kaplan_meier(
    durations: ArrayLike,
    observed: ArrayLike,
    times: ArrayLike | None = None,
    tau: float | None = None,
    confidence: float = 0.95,
) -> KaplanMeier:
    """Kaplan-Meier survival S(t) at ``times`` with its log-log (exponential Greenwood) interval,
    and the restricted mean survival ∫₀^τ S(t) dt, by ``scipy.stats.ecdf`` on
    ``CensoredData.right_censored`` (customers still active at the watermark are censored, never
    counted as churned).

    ``observed`` is True where the event (churn) happened at ``durations``, False where the
    customer was still there. ``times`` defaults to the distinct event times; ``tau`` to the
    longest duration. The restricted mean integrates the step function exactly up to ``tau``;
    it is the "remaining lifetime" of revenue at risk, and says nothing of life beyond ``tau``
    (a ``tau`` past the longest duration would carry the last level on unobserved: keep it within
    the follow-up). nan everywhere when there is no duration.
    """
    _z(confidence)
    x = np.asarray(durations, dtype=np.float64).ravel()
    ev = np.asarray(observed, dtype=bool).ravel()
    if x.shape != ev.shape:
        raise ValueError("durations and observed must have the same length")
    if np.any(~np.isfinite(x)) or np.any(x < 0):
        raise ValueError("durations must be finite and >= 0")
    t = np.unique(x[ev]) if times is None else np.asarray(times, dtype=np.float64).ravel()
    if x.size == 0:
        nan_t = _nan(t.shape)
        return KaplanMeier(t, nan_t, nan_t.copy(), nan_t.copy(), float("nan"), float("nan"))
    horizon = float(x.max()) if tau is None else float(tau)
    if horizon < 0:
        raise ValueError(f"tau must be >= 0, got {tau!r}")
    if not ev.any():
        ones = np.where(t >= 0, 1.0, np.nan)
        return KaplanMeier(t, ones, ones.copy(), ones.copy(), horizon, horizon)
    res = sps.ecdf(sps.CensoredData.right_censored(x, ~ev))
    sf = res.sf
    with np.errstate(invalid="ignore", divide="ignore"):
        ci = sf.confidence_interval(confidence_level=confidence, method="log-log")
        survival = np.asarray(sf.evaluate(t), dtype=np.float64)
        low, high = np.asarray(ci.low.evaluate(t), dtype=np.float64), np.asarray(ci.high.evaluate(t), dtype=np.float64)
    # S is 1 before the first event time and sf.probabilities[i] from sf.quantiles[i] on.
    steps = np.concatenate([[0.0], sf.quantiles[sf.quantiles < horizon], [horizon]])
    levels = np.concatenate([[1.0], sf.probabilities[sf.quantiles < horizon]])
    restricted_mean = float(np.sum(levels * np.diff(steps))) if horizon > 0 else 0.0
    return KaplanMeier(t, survival, low, high, restricted_mean, horizon)


# --------------------------------------------------------------------------- verbatims, Kano, drivers


def g2_keyness(a: ArrayLike, b: ArrayLike, c: ArrayLike, d: ArrayLike) -> Keyness:
    """One-sided log-likelihood keyness of a term (Dunning 1993; Rayson & Garside 2000, as the
    UCREL log-likelihood calculator computes it): a and b are the documents containing the term
    in the focus and the reference windows, c and d all documents of those windows.

    E1 = c(a + b)/(c + d), E2 = d(a + b)/(c + d), G² = 2[a ln(a/E1) + b ln(b/E2)] (0·ln 0 = 0),
    with p = P(χ²₁ > G²)/2 when the focus rate a/c is higher than b/d. The question asked is
    one-sided ("is this term emerging?"): a term whose focus rate is not higher gets G² = 0 and
    p = 1 (conservative, which keeps Benjamini-Hochberg valid). ratio = (a/c)/(b/d) with 0.5 put
    in place of a zero a or b, as the UCREL effect-size calculator does (nan for a term in
    neither window). Written here (no library has it); nan where a window has no document.
    """
    a, b, c, d = _floats(a, b, c, d)
    _check_counts(a, c, "g2_keyness (focus window)")
    _check_counts(b, d, "g2_keyness (reference window)")
    shape = a.shape
    g2, p, ratio = _nan(shape), _nan(shape), _nan(shape)
    ok = (c > 0) & (d > 0)
    if ok.any():
        aa, bb, cc, dd = a[ok], b[ok], c[ok], d[ok]
        e1 = cc * (aa + bb) / (cc + dd)
        e2 = dd * (aa + bb) / (cc + dd)
        with np.errstate(invalid="ignore", divide="ignore"):
            term_a = special.xlogy(aa, np.where(aa > 0, aa / e1, 1.0))
            term_b = special.xlogy(bb, np.where(bb > 0, bb / e2, 1.0))
            stat = 2.0 * (term_a + term_b)
        higher = aa * dd > bb * cc
        stat = np.where(higher, np.maximum(stat, 0.0), 0.0)
        g2[ok] = stat
        p[ok] = np.where(higher, 0.5 * sps.chi2.sf(stat, df=1), 1.0)
        ratio[ok] = np.where(aa + bb > 0, (np.where(aa > 0, aa, 0.5) / cc) / (np.where(bb > 0, bb, 0.5) / dd), np.nan)
    return Keyness(_ret(g2), _ret(p), _ret(ratio))


def fong_distinguishable(a: ArrayLike, b: ArrayLike, n: ArrayLike, z: float = 1.65) -> NDArray[np.bool_]:
    """Fong's test (Fong 1996) for the two most frequent Kano categories of a feature, with
    counts a and b out of n answers: they are *not* distinguishable when
    |a - b| < z·sqrt((a + b)(2n - a - b) / (2n)), z = 1.65 (α = 0.1). Returns True where they
    are distinguishable, False otherwise (and where n == 0). Written here (no library has it).
    """
    a, b, n = _floats(a, b, n)
    _check_cells(a, b, n)
    with np.errstate(invalid="ignore"):
        if np.any(a + b > n):
            raise ValueError("fong_distinguishable: a + b must not exceed n")
    out = np.zeros(a.shape, dtype=bool)
    ok = n > 0
    threshold = z * np.sqrt((a[ok] + b[ok]) * (2.0 * n[ok] - a[ok] - b[ok]) / (2.0 * n[ok]))
    out[ok] = np.abs(a[ok] - b[ok]) >= threshold
    return _ret(out)


def spearman(x: ArrayLike, y: ArrayLike) -> Correlation:
    """Spearman's rank correlation of the complete pairs, with their number and the two-sided
    p-value of ``scipy.stats.spearmanr`` (t approximation, n - 2 df): the derived importance of a
    touchpoint for NPS. nan with fewer than 3 pairs or a constant side (no ranking to correlate).
    """
    xs = np.asarray(x, dtype=np.float64).ravel()
    ys = np.asarray(y, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        raise ValueError("x and y must have the same length")
    keep = ~(np.isnan(xs) | np.isnan(ys))
    xs, ys = xs[keep], ys[keep]
    n = int(xs.size)
    if n < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return Correlation(float("nan"), n, float("nan"))
    res = sps.spearmanr(xs, ys)
    return Correlation(float(res.statistic), n, float(res.pvalue))


def suppress_small(value: ArrayLike, n: ArrayLike, min_n: float) -> NDArray[np.float64]:
    """``value`` with nan where ``n < min_n``: the small-n suppression of the conventions, so a
    dashboard never shows a rate that a handful of customers make up."""
    v, n_ = _floats(value, n)
    return _ret(np.where(n_ < min_n, np.nan, v))


__all__ = [
    "Correlation",
    "Estimate",
    "Interval",
    "KaplanMeier",
    "Keyness",
    "MantelHaenszel",
    "OddsRatio",
    "TwoProportionTest",
    "benjamini_hochberg",
    "bootstrap_by_group",
    "bootstrap_interval",
    "fong_distinguishable",
    "g2_keyness",
    "kaplan_meier",
    "katz_ratio_interval",
    "mantel_haenszel_risk_difference",
    "mean_interval",
    "newcombe_difference_interval",
    "nps",
    "odds_ratio",
    "rate",
    "spearman",
    "suppress_small",
    "two_proportion_p_value",
    "use_exact_test",
    "wilson_interval",
]
