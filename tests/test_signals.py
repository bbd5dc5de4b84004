"""Emerging terms: a hand-computed G², and planted / absent signals in a Zipf background corpus."""

from __future__ import annotations

import datetime as dt
import functools
import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from parcours.analytics import signals

START = dt.date(2026, 1, 1)


def test_g2_matches_a_hand_computed_example() -> None:
    # a=30 of c=1000 focus answers, b=40 of d=4000 baseline answers.
    # E1 = 1000*70/5000 = 14, E2 = 4000*70/5000 = 56
    # G² = 2 (30 ln(30/14) + 40 ln(40/56)) = 2 (22.8642 - 13.4589) = 18.8106
    expected = 2 * (30 * math.log(30 / 14) + 40 * math.log(40 / 56))
    assert expected == pytest.approx(18.8106, abs=1e-4)
    g2, p = signals.g2_one_sided(np.array([30]), np.array([40]), np.array([1000]), np.array([4000]))
    assert g2[0] == pytest.approx(expected, rel=1e-12)
    assert p[0] == pytest.approx(stats.chi2.sf(expected, 1) / 2, rel=1e-12)
    # The same shift the other way round is not emerging: one-sided.
    g2_down, p_down = signals.g2_one_sided(np.array([10]), np.array([40]), np.array([1000]), np.array([1000]))
    assert g2_down[0] > 0
    assert p_down[0] == 1.0
    # A zero baseline cell contributes nothing: G² = 2 a ln(a/E1), E1 = c a/(c+d).
    g2_new, _ = signals.g2_one_sided(np.array([6]), np.array([0]), np.array([700]), np.array([2800]))
    assert g2_new[0] == pytest.approx(2 * 6 * math.log(6 / (700 * 6 / 3500)), rel=1e-12)


def _tables(counts: dict[tuple[int, str, str], int], totals: dict[tuple[int, str], int]) -> tuple[pa.Table, pa.Table]:
    term_docs = pa.table(
        {
            "day": pa.array([START + dt.timedelta(days=k[0]) for k in counts], pa.date32()),
            "term": [k[1] for k in counts],
            "language": [k[2] for k in counts],
            "n_docs_with_term": pa.array(list(counts.values()), pa.int64()),
        }
    )
    day_docs = pa.table(
        {
            "day": pa.array([START + dt.timedelta(days=k[0]) for k in totals], pa.date32()),
            "language": [k[1] for k in totals],
            "n_docs": pa.array(list(totals.values()), pa.int64()),
        }
    )
    return term_docs, day_docs


def test_one_day_by_hand_windows_ratio_and_baseline_rule() -> None:
    # 35 days of 100 answers each in fr; days 0..27 baseline, 28..34 focus for D = day 34.
    totals = {(k, "fr"): 100 for k in range(35)}
    counts: dict[tuple[int, str, str], int] = {}
    for k in range(35):
        counts[(k, "steady", "fr")] = 10  # same rate everywhere
    for k in range(28, 35):
        counts[(k, "nouveau", "fr")] = 2  # 14 answers in focus, none before
    counts[(27, "nouveau", "fr")] = 0  # a zero row is harmless
    counts[(40, "nouveau", "fr")] = 99  # after D: ignored
    term_docs, day_docs = _tables(counts, totals)
    out = signals.emerging_terms(term_docs, day_docs, START + dt.timedelta(days=34)).to_pylist()
    by_term = {row["term"]: row for row in out}
    assert set(by_term) == {"steady", "nouveau"}
    new = by_term["nouveau"]
    assert new["period_start"] == START + dt.timedelta(days=28)
    assert new["n"] == 14
    assert new["rate"] == pytest.approx(14 / 700)
    assert new["baseline_rate"] == 0.0
    assert new["ratio"] == pytest.approx((14 / 700) / (0.5 / 2800))
    g2 = 2 * 14 * math.log(14 / (700 * 14 / 3500))
    assert new["g2"] == pytest.approx(g2)
    p_new = stats.chi2.sf(g2, 1) / 2
    assert new["p_value"] == pytest.approx(p_new)
    # BH over two tests: p_steady = 1 (same rate, not higher), q_new = min(1, 2 p_new).
    assert by_term["steady"]["p_value"] == 1.0
    assert new["q_value"] == pytest.approx(2 * p_new)
    assert new["is_emerging"] and not by_term["steady"]["is_emerging"]

    # Only 13 baseline days with answers: not evaluated.
    short = {k: v for k, v in totals.items() if k[0] >= 15}
    term_docs, day_docs = _tables(counts, short)
    assert signals.emerging_terms(term_docs, day_docs, START + dt.timedelta(days=34)).num_rows == 0
    # 14 baseline days: evaluated.
    enough = {k: v for k, v in totals.items() if k[0] >= 14}
    term_docs, day_docs = _tables(counts, enough)
    assert signals.emerging_terms(term_docs, day_docs, START + dt.timedelta(days=34)).num_rows == 2


def test_fewer_than_five_responses_is_not_emerging() -> None:
    totals = {(k, "en"): 100 for k in range(35)}
    counts = {(k, "steady", "en"): 10 for k in range(35)}
    counts[(33, "glitch", "en")] = 4
    term_docs, day_docs = _tables(counts, totals)
    out = {r["term"]: r for r in signals.emerging_terms(term_docs, day_docs, START + dt.timedelta(days=34)).to_pylist()}
    assert out["glitch"]["n"] == 4
    assert out["glitch"]["q_value"] < signals.Q_MAX and out["glitch"]["ratio"] >= signals.MIN_RATIO
    assert not out["glitch"]["is_emerging"]


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="n_docs_with_term"):
        signals.emerging_terms(pa.table({"day": [], "term": [], "language": []}), pa.table({}), START)


# -- a Zipf background corpus ------------------------------------------------------------------

VOCABULARY = 2500
WORDS_PER_ANSWER = 8
ANSWERS_PER_DAY = {"fr": 400, "en": 120}
N_DAYS = 70
PLANT_DAY = 49  # the planted term appears from this day on
PLANTED = "lemme_nouveau"
RAMP_DAYS = 7  # from 0 to PLANT_SHARE in a week, then steady
PLANT_SHARE = 0.02


def _lemma(rank: int) -> str:
    """A made-up lemma per rank: what matters are the statistics, not the words."""
    consonants, vowels = "bcdfglmnprstv", "aeiou"
    out = []
    value = rank
    for _ in range(3):
        out.append(consonants[value % len(consonants)] + vowels[(value // len(consonants)) % len(vowels)])
        value //= len(consonants) * len(vowels)
    return "".join(out) + str(rank % 7)


@functools.cache
def zipf_corpus(seed: int, plant: bool) -> tuple[pa.Table, pa.Table]:
    """Daily document frequencies of answers drawn word by word from a Zipf(1) vocabulary.

    Each answer draws WORDS_PER_ANSWER lemmas (with repeats) and counts once per distinct lemma; the
    planted term goes into a share of the answers that ramps linearly from 0 to PLANT_SHARE.
    """
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, VOCABULARY + 1)
    weights /= weights.sum()
    names = {
        lang: pa.array([f"{lang}_{_lemma(r)}" for r in range(1, VOCABULARY + 1)] + [PLANTED])
        for lang in ANSWERS_PER_DAY
    }
    days, terms, languages, n_docs = [], [], [], []
    total_days, total_languages, total_n = [], [], []
    for language, n_answers in ANSWERS_PER_DAY.items():
        for day in range(N_DAYS):
            words = rng.choice(VOCABULARY, size=(n_answers, WORDS_PER_ANSWER), p=weights)
            codes = np.unique(np.arange(n_answers)[:, None] * VOCABULARY + words)  # distinct per answer
            per_term = np.bincount(codes % VOCABULARY, minlength=VOCABULARY + 1)
            if plant and language == "fr" and day >= PLANT_DAY:
                share = PLANT_SHARE * min(1.0, (day - PLANT_DAY + 1) / RAMP_DAYS)
                per_term[VOCABULARY] = rng.binomial(n_answers, share)
            used = np.flatnonzero(per_term)
            days.append(np.full(used.size, day))
            terms.append(names[language].take(used))
            languages += [language] * used.size
            n_docs.append(per_term[used])
            total_days.append(day)
            total_languages.append(language)
            total_n.append(n_answers)
    epoch_day = (START - dt.date(1970, 1, 1)).days
    term_docs = pa.table(
        {
            "day": pa.array(np.concatenate(days) + epoch_day, pa.int32()).cast(pa.date32()),
            "term": pa.concat_arrays(terms),
            "language": languages,
            "n_docs_with_term": pa.array(np.concatenate(n_docs), pa.int64()),
        }
    )
    day_docs = pa.table(
        {
            "day": pa.array(np.array(total_days) + epoch_day, pa.int32()).cast(pa.date32()),
            "language": total_languages,
            "n_docs": pa.array(total_n, pa.int64()),
        }
    )
    return term_docs, day_docs


def _flags(term_docs: pa.Table, day_docs: pa.Table, exact: bool = False) -> list[tuple[int, str]]:
    """(evaluation day, term) of every flag; day 6 + 14 = 20 is the first day with 14 baseline days."""
    out = signals.emerging_terms_between(term_docs, day_docs, START, START + dt.timedelta(days=N_DAYS - 1), exact)
    flagged = out.filter(out.column("is_emerging")).to_pylist()
    return [((row["period_start"] - START).days + signals.FOCUS_DAYS - 1, row["term"]) for row in flagged]


EVALUATED_DAYS = N_DAYS - (signals.FOCUS_DAYS - 1 + signals.MIN_BASELINE_DAYS)


def test_the_vocabulary_is_large_and_zipf_shaped() -> None:
    term_docs, _ = zipf_corpus(seed=1, plant=False)
    assert len({_lemma(r) for r in range(1, VOCABULARY + 1)}) == VOCABULARY >= 2000
    fr = term_docs.filter(pa.compute.equal(term_docs.column("language"), "fr"))
    per_term = (
        fr.group_by("term").aggregate([("n_docs_with_term", "sum")]).sort_by([("n_docs_with_term_sum", "descending")])
    )
    assert per_term.num_rows > 2000  # most of the vocabulary is seen at least once
    counts = per_term.column("n_docs_with_term_sum").to_numpy()
    assert 1.5 < counts[0] / counts[1] < 2.5  # Zipf(1): the second lemma about half as frequent as the first


def test_evaluation_starts_with_fourteen_baseline_days() -> None:
    term_docs, day_docs = zipf_corpus(seed=3, plant=False)
    assert signals.emerging_terms(term_docs, day_docs, START + dt.timedelta(days=19)).num_rows == 0
    assert signals.emerging_terms(term_docs, day_docs, START + dt.timedelta(days=20)).num_rows > 0


@pytest.mark.parametrize("exact", [False, True], ids=["g2", "exact"])
@pytest.mark.parametrize(
    "seed", [11, pytest.param(12, marks=pytest.mark.slow), pytest.param(13, marks=pytest.mark.slow)]
)
def test_a_planted_term_is_flagged_within_a_week_and_never_before(seed: int, exact: bool) -> None:
    term_docs, day_docs = zipf_corpus(seed, plant=True)
    planted_days = [day for day, term in _flags(term_docs, day_docs, exact) if term == PLANTED]
    assert planted_days, "the planted term was never flagged"
    assert PLANT_DAY <= min(planted_days) <= PLANT_DAY + 6


def _false_alarm_days(seeds: range | list[int], exact: bool) -> tuple[int, int]:
    """(days with at least one flag, days evaluated) over null corpora: every flag is a false alarm."""
    flagged = 0
    for seed in seeds:
        flagged += len({day for day, _ in _flags(*zipf_corpus(seed, plant=False), exact=exact)})
    return flagged, EVALUATED_DAYS * len(seeds)


# Under "nothing changes", Benjamini-Hochberg at Q_MAX keeps the chance of any flag on a day at most
# Q_MAX when the p-values are valid. Measured over 20 seeds x 50 days (test below, slow): G²'s
# chi-square p-values give 14 days with a false alarm in 1,000 (1.4 %, in 10 of the 20 seeds), the
# exact test 3 in 1,000 (0.3 %, 3 seeds). So "no flag on any seed" does not hold for a 50-day run
# with either; the tests hold each to its measured rate.
@pytest.mark.parametrize(("exact", "bound"), [(False, 2 * signals.Q_MAX), (True, signals.Q_MAX)], ids=["g2", "exact"])
def test_false_alarms_without_a_planted_term_are_rare(exact: bool, bound: float) -> None:
    """One seed in CI (50 days: at most one day with a flag for G², none for the exact test)."""
    flagged, evaluated = _false_alarm_days([21], exact)
    assert flagged <= bound * evaluated


@pytest.mark.slow
@pytest.mark.parametrize(("exact", "bound"), [(False, 2 * signals.Q_MAX), (True, signals.Q_MAX)], ids=["g2", "exact"])
def test_false_alarms_over_twenty_seeds(exact: bool, bound: float) -> None:
    flagged, evaluated = _false_alarm_days(range(100, 120), exact)
    assert flagged <= bound * evaluated


@pytest.mark.slow
def test_a_planted_phrase_in_text_is_flagged_through_the_text_pipeline() -> None:
    """The same story from verbatim strings: terms (unigrams and bigrams) counted by `count_documents`."""
    from parcours.analytics import text

    rng = np.random.default_rng(5)
    weights = 1.0 / np.arange(1, VOCABULARY + 1)
    weights /= weights.sum()
    lemmas = np.array([_lemma(r) for r in range(1, VOCABULARY + 1)], dtype=object)
    n_answers, days, texts = 300, [], []
    for day in range(PLANT_DAY + 7):
        words = lemmas[rng.choice(VOCABULARY, size=(n_answers, WORDS_PER_ANSWER), p=weights)]
        share = PLANT_SHARE * min(1.0, (day - PLANT_DAY + 1) / RAMP_DAYS) if day >= PLANT_DAY else 0.0
        planted = rng.random(n_answers) < share
        for k in range(n_answers):
            sentence = " ".join(words[k])
            texts.append(f"{sentence}, appli bloquée" if planted[k] else sentence)
            days.append(START + dt.timedelta(days=day))
    term_docs, day_docs = text.count_documents(
        pa.array(days, pa.date32()), pa.array(["fr"] * len(texts)), pa.array(texts)
    )
    out = signals.emerging_terms_between(term_docs, day_docs, START, START + dt.timedelta(days=PLANT_DAY + 6))
    flagged = out.filter(out.column("is_emerging")).to_pylist()
    first = {}
    for row in flagged:
        first.setdefault(row["term"], (row["period_start"] - START).days + signals.FOCUS_DAYS - 1)
    assert {"appli bloqué", "appli", "bloqué"} <= set(first), first
    assert all(PLANT_DAY <= first[t] <= PLANT_DAY + 6 for t in ("appli bloqué", "appli", "bloqué"))
