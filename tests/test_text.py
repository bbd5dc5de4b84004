"""Language, terms and English sentiment of answers, on small fixtures checked by hand."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from parcours.analytics import text


def test_languages_detected_only_when_the_answer_has_none() -> None:
    texts = pa.array(
        [
            "La livraison est arrivée en retard et le colis était abîmé",
            "The delivery was late and the parcel was damaged",
            "ok",  # too short to tell
            "The delivery was late",  # its own field says fr: the field wins
            None,
            "Le conseiller a été très aimable",
        ]
    )
    own = pa.array([None, "", None, "FR", None, " "])
    assert text.answer_languages(texts, own).to_pylist() == ["fr", "en", "und", "fr", None, "fr"]
    assert text.answer_languages(texts).to_pylist() == ["fr", "en", "und", "en", None, "fr"]


def test_detect_language_hesitation_is_undetermined() -> None:
    assert text.detect_language(None) is None
    assert text.detect_language("ok merci") == "und"  # 7 letters: too short to tell
    assert text.detect_language("super top") == "und"  # 8 letters, but py3langid hesitates (p < 0.8)
    assert text.detect_language("Merci beaucoup pour votre aide") == "fr"


def test_terms_lemmatised_without_stop_words_placeholders_or_punctuation() -> None:
    texts = pa.array(
        [
            "Le remboursement n'est toujours pas arrivé !",
            "L'application plante, l'application plante encore : appelez le [phone] merci",
            "The refund still has not arrived, the app keeps crashing",
            None,
            "!!! 123 ?",
        ]
    )
    terms = text.answer_terms(texts, pa.array(["fr", "fr", "en", None, "fr"])).to_pylist()
    by_answer: dict[int, set[str]] = {}
    for row in terms:
        by_answer.setdefault(row["answer"], set()).add(row["term"])
        assert row["n_words"] == len(row["term"].split())
    # le, n, est, pas: stop words (or one letter); arrivé -> arriver.
    assert by_answer[0] == {"remboursement", "toujours", "arriver", "remboursement toujours", "toujours arriver"}
    # Each term once per answer; no bigram across ",", ":" or the placeholder; "phone" is no word.
    assert by_answer[1] == {"application", "plante", "appeler", "merci", "application plante"}
    # English: the, still, has, not, keeps are stop words; arrived -> arrive, crashing -> crash; "," ends a clause.
    assert by_answer[2] == {"refund", "arrive", "app", "crash", "refund arrive", "app crash"}
    assert set(by_answer) == {0, 1, 2}
    assert len(terms) == sum(len(v) for v in by_answer.values())  # distinct per answer


def test_count_documents_counts_answers_not_words() -> None:
    d1, d2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
    days = pa.array([d1, d1, d1, d2, d2], pa.date32())
    languages = pa.array(["fr", "fr", "en", "fr", "fr"])
    texts = pa.array(["colis abîmé, colis abîmé", "colis perdu", "parcel lost", None, "colis"])
    term_docs, day_docs = text.count_documents(days, languages, texts)
    got = {(r["day"], r["term"], r["language"]): r["n_docs_with_term"] for r in term_docs.to_pylist()}
    assert got == {
        (d1, "colis", "fr"): 2,
        (d1, "abîmé", "fr"): 1,
        (d1, "colis abîmé", "fr"): 1,
        (d1, "perdre", "fr"): 1,  # perdu -> perdre
        (d1, "colis perdre", "fr"): 1,
        (d1, "parcel", "en"): 1,
        (d1, "lose", "en"): 1,
        (d1, "parcel lose", "en"): 1,
        (d2, "colis", "fr"): 1,
    }
    assert sorted((r["day"], r["language"], r["n_docs"]) for r in day_docs.to_pylist()) == [
        (d1, "en", 1),
        (d1, "fr", 2),
        (d2, "fr", 1),  # the null text is no answer
    ]


def test_english_sentiment_only() -> None:
    scores = text.english_sentiment(
        ["Great service, very happy!", "Terrible, the parcel never came.", "Très bon service", None],
        ["en", "en", "fr", "en"],
    ).to_pylist()
    assert scores[0] > 0.5
    assert scores[1] < -0.3
    assert scores[2:] == [None, None]


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="2 texts but 1 languages"):
        text.answer_terms(pa.array(["a", "b"]), pa.array(["fr"]))
