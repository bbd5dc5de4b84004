"""What an answer's text is about: its language, its terms, and (in English) its tone.

Everything here runs offline, from data shipped inside the packages' wheels: py3langid's model
(BSD-3-Clause), simplemma's lemma tables (MIT), the stop-words lists (BSD-3-Clause) and VADER's
lexicon (MIT). Nothing is downloaded at run time.

* Language: the answer's own `language` field when it has one; else py3langid restricted to French
  and English. Why py3langid and not lingua (Apache-2.0, also offline): on 20,000 generated
  verbatims py3langid took 410 us a text against lingua's 500 us, agreed with the true language on
  every text it decided (99.1 %, the rest `und`) against lingua's 98.2 %, and its wheel is 4.5 MB
  against 96 MB (benchmarks/verbatims.py). A text too short to tell (fewer than MIN_LETTERS
  letters), or on which the detector hesitates (probability under MIN_CONFIDENCE), is `und` (ISO
  639-2 "undetermined"): a guess would put its terms into the wrong language's counts. py3langid
  unpacks its model once per process (about 3 s), on the first text without a language.
* Terms: lowercased words, placeholders of redacted personal data (`[email]`...) and punctuation
  dropped, each word lemmatised in its answer's language (simplemma), stop words dropped (stop-words'
  list for the language, checked on the word and on its lemma, so "était" goes with "être"), words
  without a letter or of one letter dropped; then unigrams and bigrams of consecutive kept words
  ("remboursement bloquer") within a clause (punctuation and placeholders end one). An answer
  counts once per term (document frequency): the signals count voices, not repetitions. Languages
  other than fr/en (and `und`) are not lemmatised and lose the stop words of both.
* Sentiment: VADER's compound score, English only. No maintained French sentiment lexicon exists on
  PyPI: the only French lexicon packages there are textblob-fr (last release October 2013) and
  vadersentiment-fr (last release March 2021, no description); the other French sentiment packages
  need transformer models. A lexicon typed in here would be worse than none: French answers get
  None, and the answer's own score stays the polarity for every language.

The batch functions work on Arrow arrays: tokenising, dropping and pairing run in pyarrow/numpy over
the whole batch; only the distinct words of a batch go through the lemmatiser (a few thousand, cached).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import simplemma
from stop_words import get_stop_words

LANGUAGES = ("fr", "en")
UNDETERMINED = "und"
MIN_LETTERS = 8
MIN_CONFIDENCE = 0.8
PLACEHOLDER_PATTERN = r"\[(?:email|phone|card|iban)\]"
# Word characters in RE2 (pyarrow's regex engine): letters and digits of any script; the rest splits.
_SEPARATORS = r"[^\pL\pN]+"
_CLAUSE_BREAKS = r"[.,;:!?…()\[\]{}\"«»\n\r\t/|]+"

_detector_lock = threading.Lock()


@functools.cache
def _detector():
    """py3langid's identifier restricted to fr/en, loaded once (about 3 s: its model is xz-compressed)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(LANGUAGES))
    return identifier


def detect_language(text: str | None) -> str | None:
    """fr, en or `und` for one text (None for no text)."""
    if text is None:
        return None
    if sum(ch.isalpha() for ch in text) < MIN_LETTERS:
        return UNDETERMINED
    with _detector_lock:  # one model load even when worker threads race for the first text
        language, probability = _detector().classify(text)
    return language if probability >= MIN_CONFIDENCE else UNDETERMINED


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def answer_languages(texts: pa.Array, languages: pa.Array | None = None) -> pa.Array:
    """Each answer's language: its own field (lowercased) when present, else detected from its text."""
    texts = _array(texts)
    languages = None if languages is None else _array(languages)
    n = len(texts)
    given = pa.nulls(n, pa.string()) if languages is None else pc.utf8_lower(pc.utf8_trim_whitespace(languages))
    given = pc.if_else(pc.equal(given, ""), pa.scalar(None, pa.string()), given)
    missing = pc.fill_null(pc.and_(pc.is_null(given), pc.is_valid(texts)), False)
    if not pc.any(missing).as_py():
        return given
    detected = pa.array([detect_language(t) for t in pc.filter(texts, missing).to_pylist()], pa.string())
    return pc.replace_with_mask(given, missing, detected)


@functools.cache
def stop_words(language: str) -> frozenset[str]:
    """The stop-words list of a language; for any other language, the union of fr and en."""
    if language in LANGUAGES:
        return frozenset(w.lower() for w in get_stop_words(language))
    return stop_words("fr") | stop_words("en")


@functools.lru_cache(maxsize=200_000)
def _lemma(word: str, language: str) -> str:
    return simplemma.lemmatize(word, lang=language).lower() if language in LANGUAGES else word


def _kept_lemma(word: str, language: str) -> str | None:
    """The lemma a word counts as, or None when it carries no topic (stop word, no letter, one letter)."""
    if len(word) < 2 or not any(ch.isalpha() for ch in word):
        return None
    stops = stop_words(language)
    if word in stops:
        return None
    lemma = _lemma(word, language)
    return None if lemma in stops or len(lemma) < 2 else lemma


def _words(texts: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(answer index, clause index, lowercased word) for every word of every answer, in order.

    Clauses end at punctuation and at placeholders, so that a bigram never spans "plante, appelez".
    """
    cleaned = pc.replace_substring_regex(pc.utf8_lower(texts), PLACEHOLDER_PATTERN, ".")
    clauses = pc.split_pattern_regex(pc.fill_null(cleaned, ""), _CLAUSE_BREAKS)
    clause_answer = pc.list_parent_indices(clauses).to_numpy()
    split = pc.split_pattern_regex(pc.list_flatten(clauses), _SEPARATORS)
    words = pc.list_flatten(split)
    word_clause = pc.list_parent_indices(split).to_numpy()
    non_empty = pc.not_equal(words, "").to_numpy(zero_copy_only=False)
    word_clause = word_clause[non_empty]
    return clause_answer[word_clause], word_clause, pc.filter(words, pa.array(non_empty))


def answer_terms(texts: pa.Array, languages: pa.Array) -> pa.Table:
    """The distinct terms of each answer: one row per (answer, term), `answer` the index in `texts`.

    `languages` is the answer's language (see `answer_languages`); null texts have no terms.
    Columns: answer (int64), term (string), n_words (1 for a unigram, 2 for a bigram).
    """
    if len(texts) != len(languages):
        raise ValueError(f"{len(texts)} texts but {len(languages)} languages")
    texts, languages = _array(texts), _array(languages)
    empty = pa.table(
        {"answer": pa.array([], pa.int64()), "term": pa.array([], pa.string()), "n_words": pa.array([], pa.int8())}
    )
    parents, clause_of, words = _words(texts)
    if len(words) == 0:
        return empty
    word_language = pc.take(pc.fill_null(languages, UNDETERMINED), pa.array(parents))
    # Lemmatise each distinct (word, language) once.
    pairs = pa.table({"word": words, "language": word_language})
    distinct = pairs.group_by(["word", "language"], use_threads=False).aggregate([])
    distinct_keys = pc.binary_join_element_wise(distinct.column("word"), distinct.column("language"), "\x00")
    lemmas = pa.array(
        [
            _kept_lemma(w, lang)
            for w, lang in zip(
                distinct.column("word").to_pylist(), distinct.column("language").to_pylist(), strict=True
            )
        ],
        pa.string(),
    )
    keys = pc.binary_join_element_wise(words, word_language, "\x00")
    token_lemmas = pc.take(lemmas, pc.index_in(keys, value_set=distinct_keys))
    kept = pc.is_valid(token_lemmas).to_numpy(zero_copy_only=False)
    kept_parents = parents[kept]
    kept_clauses = clause_of[kept]
    kept_lemmas = pc.filter(token_lemmas, pa.array(kept))
    # Bigrams: each kept word with the next kept word of the same clause.
    first = np.flatnonzero(kept_clauses[1:] == kept_clauses[:-1])
    bigrams = pc.binary_join_element_wise(pc.take(kept_lemmas, first), pc.take(kept_lemmas, first + 1), " ")
    terms = pa.table(
        {
            "answer": np.concatenate([kept_parents, kept_parents[first]]).astype(np.int64),
            "term": pa.concat_arrays([kept_lemmas, bigrams]),
            "n_words": np.concatenate([np.ones(len(kept_lemmas), np.int8), np.full(len(first), 2, np.int8)]),
        }
    )
    return (
        terms.group_by(["answer", "term", "n_words"], use_threads=False)
        .aggregate([])
        .sort_by([("answer", "ascending"), ("n_words", "ascending"), ("term", "ascending")])
        .select(["answer", "term", "n_words"])
    )


def count_documents(days: pa.Array, languages: pa.Array, texts: pa.Array) -> tuple[pa.Table, pa.Table]:
    """Daily document frequencies, the input of `parcours.analytics.signals`.

    Returns (day, term, language, n_docs_with_term) and (day, language, n_docs), n_docs counting the
    answers with a non-null text. `languages` as from `answer_languages`.
    """
    if not len(days) == len(languages) == len(texts):
        raise ValueError("days, languages and texts must have the same length")
    days, languages, texts = _array(days), pc.fill_null(_array(languages), UNDETERMINED), _array(texts)
    terms = answer_terms(texts, languages)
    index = pa.array(terms.column("answer").to_numpy())
    term_docs = (
        pa.table({"day": pc.take(days, index), "term": terms.column("term"), "language": pc.take(languages, index)})
        .group_by(["day", "term", "language"], use_threads=False)
        .aggregate([([], "count_all")])
        .rename_columns(["day", "term", "language", "n_docs_with_term"])
    )
    answered = pc.is_valid(texts)
    day_docs = (
        pa.table({"day": pc.filter(days, answered), "language": pc.filter(languages, answered)})
        .group_by(["day", "language"], use_threads=False)
        .aggregate([([], "count_all")])
        .rename_columns(["day", "language", "n_docs"])
    )
    return term_docs, day_docs


@functools.cache
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def english_sentiment(texts: Sequence[str | None] | pa.Array, languages: Sequence[str | None] | pa.Array) -> pa.Array:
    """VADER's compound score (-1 .. 1) for English answers; None for every other language (see the module doc)."""
    texts = texts.to_pylist() if isinstance(texts, pa.Array | pa.ChunkedArray) else list(texts)
    languages = languages.to_pylist() if isinstance(languages, pa.Array | pa.ChunkedArray) else list(languages)
    if len(texts) != len(languages):
        raise ValueError(f"{len(texts)} texts but {len(languages)} languages")
    scores = [
        _vader().polarity_scores(t)["compound"] if t is not None and lang == "en" else None
        for t, lang in zip(texts, languages, strict=True)
    ]
    return pa.array(scores, pa.float64())
