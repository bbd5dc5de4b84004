"""The detector: is the newest final cohort of a series leaving faster than the cohorts before it?

For every series (rule, stage, breakdown, breakdown_value) and every final cohort window w:

1. **Baseline**: the K cohorts before w (``baseline_windows``, default 4) pooled — their
   entrants and events summed. A window is tested only when all K are there. With
   ``current_windows`` c > 1 the current side pools cohorts w - c + 1 .. w and the baseline is
   the K cohorts before those (a sustained rise is seen with c times the entrants).
2. **Volume gates**: at least ``min_entrants`` entrants in w, and at least
   ``min_expected_events`` events expected at the baseline rate (n_w × p_baseline ≥ 10): below
   that no test has the power to tell a spike from noise, and the cell is *not evaluated*.
3. **Significance**: the one-sided Fisher exact test of the 2×2 table (events / non-events ×
   current / baseline), P(X ≥ d_w) under the hypergeometric law of the events given both
   margins. Exact at every count (no normal approximation at the small end of the gate) and
   conditional on the baseline's own total, so the baseline's sampling noise is in the p-value
   (a binomial test against the baseline rate treats that rate as known). Computed for a whole
   matrix at once (``fisher_greater``, checked against ``scipy.stats.hypergeom.sf``).
4. **False-alert control**: Benjamini–Hochberg q-values across every series tested on the same
   window (one evaluation's family: rules × stages × breakdowns); a cell breaches when
   q ≤ ``alpha`` (``control="bh"``, the default), or when its own p ≤ ``alpha``
   (``control="per_series"``, what a per-stage false-alert budget calls for). Under the
   complete null BH holds the chance of any false breach in the family at alpha; when some
   series truly rise it controls the share of false ones among the breaches.
5. **Practical size**: the rise must also be worth waking someone for — relative rise
   ≥ ``min_relative_rise`` (20 %) and absolute ≥ ``min_absolute_rise`` (2 points), on the point
   estimates.

An evaluated cell that does not breach is *clear*. The state machine (``replay_states``) then
folds each series' breach/clear sequence in window order: pending after the first breach,
firing after ``fire_after`` consecutive breaches, resolved after ``resolve_after`` consecutive
clear windows (hysteresis); cells that are not evaluated neither advance nor reset anything.
Because the state is a pure function of the evaluated windows, re-evaluating the same data
yields the same transitions and nothing new to send.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from parcours.alerts.settings import AlertSettings
from parcours.analytics.stats import benjamini_hochberg, newcombe_difference_interval

# State codes of a series after a window, and transition codes of a window.
NORMAL, PENDING, FIRING = 0, 1, 2
NO_CHANGE, TO_PENDING, TO_FIRING, TO_RESOLVED, TO_NORMAL = 0, 1, 2, 3, 4
TRANSITION_STATES = {TO_PENDING: "pending", TO_FIRING: "firing", TO_RESOLVED: "resolved", TO_NORMAL: "normal"}


@dataclass(frozen=True)
class WindowTests:
    """The test of every (series, window) cell; arrays of shape (S, W), NaN where not tested."""

    n_entrants: np.ndarray
    n_events: np.ndarray
    baseline_entrants: np.ndarray
    baseline_events: np.ndarray
    rate: np.ndarray
    baseline_rate: np.ndarray
    difference: np.ndarray
    relative_rise: np.ndarray
    difference_low: np.ndarray
    difference_high: np.ndarray
    p_value: np.ndarray
    q_value: np.ndarray
    evaluated: np.ndarray  # bool: the gates passed, the cell was tested
    breach: np.ndarray  # bool: evaluated, significant and large enough


def bh_qvalues(p: np.ndarray, family_size: int | None = None) -> np.ndarray:
    """Benjamini–Hochberg q-values down axis 0 (one family per column); NaN cells are not tested.

    Each family goes through the project's one BH (``parcours.analytics.stats``). With
    ``family_size``, consecutive blocks of that many rows are separate families (the
    calibration's many independent evaluations in one matrix).
    """
    p = np.asarray(p, dtype=float)
    if p.ndim == 1:
        return bh_qvalues(p[:, None])[:, 0]
    rows, cols = p.shape
    if family_size is not None and family_size != rows:
        if rows % family_size:
            raise ValueError(f"{rows} rows do not split into families of {family_size}")
        blocks = p.reshape(rows // family_size, family_size, cols).transpose(1, 0, 2).reshape(family_size, -1)
        q = bh_qvalues(blocks)
        return q.reshape(family_size, rows // family_size, cols).transpose(1, 0, 2).reshape(rows, cols)
    q = np.full(p.shape, np.nan)
    for col in np.flatnonzero(~np.isnan(p).all(axis=0)):
        q[:, col] = benjamini_hochberg(p[:, col])
    return q


def fisher_greater(d: np.ndarray, n: np.ndarray, d0: np.ndarray, n0: np.ndarray) -> np.ndarray:
    """One-sided Fisher exact p-value that the first rate (d of n) exceeds the second (d0 of n0).

    P(X >= d) for X ~ Hypergeom(population n + n0, d + d0 events, n drawn). scipy's
    ``hypergeom.sf`` gives it at ~100 µs a table, which would make the Monte Carlo calibration
    (millions of tables) take an hour; this sums the same probability mass function in numpy,
    all tables at once: from d upwards when d is above the mode, else 1 minus the sum from d - 1
    downwards, each tail walked by the pmf's ratio recursion from its largest term until the
    terms no longer count. ``tests/test_alerts_detect.py`` checks it against ``hypergeom.sf``
    and ``fisher_exact`` on random and edge tables.
    """
    shape = np.shape(d)
    d, n, d0, n0 = (np.asarray(a, dtype=np.int64).ravel() for a in (d, n, d0, n0))
    big_m, k, draws = n + n0, d + d0, n
    lo = np.maximum(0, draws + k - big_m)
    hi = np.minimum(k, draws)
    mode = ((draws + 1) * (k + 1)) // (big_m + 2)
    upper = d > mode
    x = np.where(upper, d, d - 1)
    inside = (x >= lo) & (x <= hi)
    xs = np.clip(x, lo, hi).astype(float)
    log_term = (
        gammaln(k + 1)
        - gammaln(xs + 1)
        - gammaln(k - xs + 1)
        + gammaln(big_m - k + 1)
        - gammaln(draws - xs + 1)
        - gammaln(big_m - k - draws + xs + 1)
        - gammaln(big_m + 1)
        + gammaln(draws + 1)
        + gammaln(big_m - draws + 1)
    )
    term = np.where(inside, np.exp(log_term), 0.0)
    total = term.copy()
    active = np.flatnonzero(term > 0)
    step = np.where(upper, 1, -1)
    xf = x.astype(float)
    kf, mf, nf = k.astype(float), big_m.astype(float), draws.astype(float)
    while active.size:
        a = active
        xa, ka, ma, na = xf[a], kf[a], mf[a], nf[a]
        up = upper[a]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(
                up,
                (ka - xa) * (na - xa) / ((xa + 1) * (ma - ka - na + xa + 1)),
                xa * (ma - ka - na + xa) / ((ka - xa + 1) * (na - xa + 1)),
            )
        at_edge = np.where(up, xa >= hi[a], xa <= lo[a])
        t = np.where(at_edge, 0.0, term[a] * np.nan_to_num(ratio))
        term[a] = t
        xf[a] = xa + step[a]
        total[a] += t
        active = a[t > total[a] * 1e-17]
    p = np.where(upper, total, 1.0 - total)
    return np.clip(p, 0.0, 1.0).reshape(shape)


def breaches(q: np.ndarray, difference: np.ndarray, relative: np.ndarray, settings: AlertSettings) -> np.ndarray:
    """Significant (``q`` is the BH q-value, or the p-value under per-series control) and large
    enough to matter; NaN cells, not tested, never breach."""
    with np.errstate(invalid="ignore"):
        large = (difference >= settings.min_absolute_rise - 1e-12) & (relative >= settings.min_relative_rise - 1e-12)
        return (q <= settings.alpha) & large


def _block_sum(values: np.ndarray, lag: int, length: int) -> np.ndarray:
    """For each column w, the sum of columns w - lag - length + 1 .. w - lag (missing ones count 0)."""
    rows, cols = values.shape
    pad = lag + length
    # prefix[i] = sum of the columns before i - pad (exclusive prefix, shifted right by pad).
    prefix = np.concatenate([np.zeros((rows, pad + 1), dtype=values.dtype), np.cumsum(values, axis=1)], axis=1)
    w = np.arange(cols)
    return prefix[:, w - lag + 1 + pad] - prefix[:, w - lag - length + 1 + pad]


def score_windows(
    n_entrants: np.ndarray,
    n_events: np.ndarray,
    present: np.ndarray,
    settings: AlertSettings,
    *,
    with_intervals: bool = True,
    family_size: int | None = None,
) -> WindowTests:
    """Test every cell of a (series × window) matrix of final cohorts against its own baseline.

    All the series of the matrix form one BH family per window, unless ``family_size`` splits
    the rows into consecutive families of that many series (the calibration's many independent
    evaluations in one matrix).
    """
    n = np.asarray(n_entrants, dtype=np.int64)
    d = np.asarray(n_events, dtype=np.int64)
    present = np.asarray(present, dtype=bool)
    n = np.where(present, n, 0)
    d = np.where(present, d, 0)
    k, c = settings.baseline_windows, settings.current_windows
    counted = present.astype(np.int64)
    if c > 1:  # the latest c cohorts pooled into the current one
        n, d, current_count = _block_sum(n, 0, c), _block_sum(d, 0, c), _block_sum(counted, 0, c)
    else:
        current_count = counted
    base_n = _block_sum(np.where(present, np.asarray(n_entrants, dtype=np.int64), 0), c, k)
    base_d = _block_sum(np.where(present, np.asarray(n_events, dtype=np.int64), 0), c, k)
    base_count = _block_sum(counted, c, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(n > 0, d / n, np.nan)
        base_rate = np.where(base_n > 0, base_d / base_n, np.nan)
    expected = n * np.nan_to_num(base_rate)
    evaluated = (
        present
        & (current_count == c)
        & (base_count == k)
        & (n >= settings.min_entrants)
        & (expected >= settings.min_expected_events)
    )
    p = np.full(n.shape, np.nan)
    idx = np.nonzero(evaluated)
    p[idx] = fisher_greater(d[idx], n[idx], base_d[idx], base_n[idx])
    q = bh_qvalues(p, family_size)
    difference = np.where(evaluated, rate - base_rate, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(evaluated, rate / base_rate - 1.0, np.nan)
    breach = breaches(p if settings.control == "per_series" else q, difference, relative, settings)
    low = np.full(n.shape, np.nan)
    high = np.full(n.shape, np.nan)
    if with_intervals and idx[0].size:
        interval = newcombe_difference_interval(d[idx], n[idx], base_d[idx], base_n[idx], settings.ci_level)
        low[idx], high[idx] = interval.low, interval.high
    return WindowTests(
        n_entrants=n,
        n_events=d,
        baseline_entrants=base_n,
        baseline_events=base_d,
        rate=rate,
        baseline_rate=base_rate,
        difference=difference,
        relative_rise=relative,
        difference_low=low,
        difference_high=high,
        p_value=p,
        q_value=q,
        evaluated=evaluated,
        breach=breach,
    )


@dataclass(frozen=True)
class StateReplay:
    """Each series' state after each window and the transition that window caused, (S, W) int8.

    ``incident`` holds, for a cell in an incident (firing, or the window that resolved it), the
    column of the window where it started firing; -1 elsewhere. It names the alert.
    """

    state: np.ndarray
    transition: np.ndarray
    incident: np.ndarray


def replay_states(evaluated: np.ndarray, breach: np.ndarray, settings: AlertSettings) -> StateReplay:
    """Fold the breach / clear sequence of every series, vectorised across series.

    normal --breach--> pending --(fire_after consecutive breaches)--> firing
    pending --clear--> normal;  firing --(resolve_after consecutive clear)--> resolved (normal).
    After a resolution, ``cooldown_windows`` evaluated windows must pass before the series may
    fire again (it can be pending meanwhile). With fire_after = 1 a breach fires at once.
    """
    evaluated = np.asarray(evaluated, dtype=bool)
    breach = np.asarray(breach, dtype=bool) & evaluated
    clear = evaluated & ~breach
    s, w = evaluated.shape
    state = np.full(s, NORMAL, dtype=np.int8)
    breaches = np.zeros(s, dtype=np.int64)
    clears = np.zeros(s, dtype=np.int64)
    cooldown = np.zeros(s, dtype=np.int64)
    started = np.full(s, -1, dtype=np.int64)
    states = np.empty((s, w), dtype=np.int8)
    transitions = np.zeros((s, w), dtype=np.int8)
    incidents = np.full((s, w), -1, dtype=np.int64)
    for col in range(w):
        b, c = breach[:, col], clear[:, col]
        cooling = cooldown > 0
        cooldown = np.where(evaluated[:, col] & cooling, cooldown - 1, cooldown)
        breaches = np.where(b, breaches + 1, np.where(c, 0, breaches))
        clears = np.where(c, clears + 1, np.where(b, 0, clears))
        not_firing = state != FIRING
        fire = b & not_firing & (breaches >= settings.fire_after) & ~cooling
        pend = b & (state == NORMAL) & ~fire
        back = c & (state == PENDING)
        resolve = c & (state == FIRING) & (clears >= settings.resolve_after)
        started = np.where(fire, col, started)
        incidents[:, col] = np.where((state == FIRING) | fire, started, -1)
        state = np.where(fire, FIRING, np.where(pend, PENDING, np.where(back | resolve, NORMAL, state))).astype(np.int8)
        cooldown = np.where(resolve, settings.cooldown_windows, cooldown)
        transitions[:, col] = np.select(
            [fire, pend, resolve, back], [TO_FIRING, TO_PENDING, TO_RESOLVED, TO_NORMAL], NO_CHANGE
        )
        states[:, col] = state
    return StateReplay(state=states, transition=transitions, incident=incidents)
