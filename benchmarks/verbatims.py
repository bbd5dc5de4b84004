"""Cost of the verbatim steps per answer, and extrapolated to 10M events, on generated data.

    .venv/bin/parcours generate --out /tmp/vgen --customers 4000 --days 60 --seed 7
    .venv/bin/python benchmarks/verbatims.py --data /tmp/vgen --answers 50000

Measures, on the verbatims of `surveys.jsonl` (repeated to --answers texts, each made distinct by a
suffix so that nothing is cached across copies beyond the lemmatiser's word cache):
* redaction (`parcours.pipelines.redact.redact`) on the texts as they are (no personal data: the
  prefilter's cost), with personal data planted in 5 % of them, and the same 5 % batch with every
  text sent to the matchers (no prefilter) as the baseline;
* language detection of every text (their own field dropped): py3langid restricted to fr/en, and
  lingua restricted to fr/en when `lingua-language-detector` is installed (it is not a dependency);
* terms and daily document counts (`parcours.analytics.text.count_documents`).
Events per verbatim come from the same dataset (touchpoints + survey answers), to extrapolate to
10M events. Nothing is asserted here.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from report import report  # benchmarks/report.py: scripts run from this folder

from parcours.analytics import text
from parcours.pipelines import redact

PII = [
    " écrivez-moi à jean.dupont{i}@exemple.fr",
    " rappelez-moi au 06 12 34 {i2} 78",
    " ma carte 4111 1111 1111 1111 a été débitée",
    " remboursez sur FR76 3000 6000 0112 3456 7890 189",
    " call me on +44 20 7946 0958",
]


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a folder written by `parcours generate`")
    parser.add_argument("--answers", type=int, default=50_000, help="verbatims to process")
    parser.add_argument("--pii-share", type=float, default=0.05)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    surveys = pj.read_json(args.data / "surveys.jsonl")
    with open(args.data / "touchpoints.jsonl", "rb") as touchpoints:
        n_events = sum(1 for _ in touchpoints) + surveys.num_rows
    has_text = pc.is_valid(surveys.column("verbatim"))
    answered = surveys.filter(has_text)
    n_verbatims = answered.num_rows
    reps = -(-args.answers // n_verbatims)
    index = np.tile(np.arange(n_verbatims), reps)[: args.answers]
    base = pc.take(answered.column("verbatim"), pa.array(index))
    suffix = pa.array([f" (réf. {k % 97})" for k in range(len(index))])  # short, digit-poor: like most texts
    texts = pc.binary_join_element_wise(base, suffix, "")
    languages = pc.take(answered.column("language"), pa.array(index))
    days = pc.cast(
        pc.take(pc.cast(answered.column("answered_at"), pa.timestamp("us", "UTC")), pa.array(index)), pa.date32()
    )
    n = len(texts)

    rng = np.random.default_rng(1)
    planted = rng.random(n) < args.pii_share
    with_pii = texts.to_pylist()
    for k in np.flatnonzero(planted):
        with_pii[k] += PII[k % len(PII)].format(i=k, i2=f"{k % 100:02d}")
    with_pii = pa.array(with_pii, pa.string())

    # Warm the lazily loaded models (py3langid's unpacking, VADER's lexicon) outside the timings.
    text.detect_language("une phrase pour charger le modèle")
    _, redact_clean_s = _timed(redact.redact, texts)
    (_, counts), redact_pii_s = _timed(redact.redact, with_pii)
    sample = with_pii.to_pylist()[: min(n, 5000)]
    start = time.perf_counter()
    for t in sample:
        redact.redact_text(t)
    redact_all_s_per = (time.perf_counter() - start) / len(sample)

    detect_n = min(n, 20_000)
    detect_texts = texts.slice(0, detect_n)
    detected, py3langid_s = _timed(text.answer_languages, detect_texts, None)
    agree = pc.sum(pc.equal(detected, languages.slice(0, detect_n))).as_py()
    undetermined = pc.sum(pc.equal(detected, text.UNDETERMINED)).as_py()
    results: dict[str, object] = {
        "events in the dataset": n_events,
        "survey answers": surveys.num_rows,
        "answers with a verbatim": n_verbatims,
        "share of answers with a verbatim": f"{n_verbatims / surveys.num_rows:.1%}",
        "verbatims per 1,000 events": round(1000 * n_verbatims / n_events, 2),
        "verbatims processed": n,
        "redact, no PII, us/verbatim": round(1e6 * redact_clean_s / n, 2),
        f"redact, {args.pii_share:.0%} with PII, us/verbatim": round(1e6 * redact_pii_s / n, 2),
        "redact, every text to the matchers, us/verbatim": round(1e6 * redact_all_s_per, 2),
        "prefilter speed-up on the PII batch": round(redact_all_s_per * n / redact_pii_s, 1),
        "redactions found (email, iban, card, phone)": ", ".join(str(counts[k]) for k in redact.KINDS),
        "planted (email, iban, card, phone)": ", ".join(
            str(int(np.isin(np.flatnonzero(planted) % len(PII), kinds).sum())) for kinds in ([0], [3], [2], [1, 4])
        ),
        "py3langid fr/en, us/text": round(1e6 * py3langid_s / detect_n, 1),
        "py3langid agrees with the language field": f"{agree}/{detect_n} ({undetermined} und)",
    }
    try:
        from lingua import Language, LanguageDetectorBuilder

        detector = LanguageDetectorBuilder.from_languages(Language.FRENCH, Language.ENGLISH).build()
        lingua_texts = detect_texts.to_pylist()
        start = time.perf_counter()
        found = [detector.detect_language_of(t) for t in lingua_texts]
        lingua_s = time.perf_counter() - start
        codes = ["fr" if f == Language.FRENCH else "en" if f == Language.ENGLISH else None for f in found]
        lingua_agree = sum(c == g for c, g in zip(codes, languages.slice(0, detect_n).to_pylist(), strict=True))
        results["lingua fr/en, us/text"] = round(1e6 * lingua_s / detect_n, 1)
        results["lingua agrees with the language field"] = f"{lingua_agree}/{detect_n}"
    except ImportError:
        results["lingua fr/en, us/text"] = "not installed"

    text._lemma.cache_clear()
    _, first_call_s = _timed(text.count_documents, days[:100], languages[:100], texts[:100])  # loads simplemma's tables
    (term_docs, _), count_s = _timed(text.count_documents, days, languages, texts)
    per_verbatim_s = (count_s + redact_pii_s) / n
    results |= {
        "terms: first call (simplemma loads fr+en), s": round(first_call_s, 2),
        "terms + daily counts, us/verbatim": round(1e6 * count_s / n, 2),
        "(day, term, language) rows": term_docs.num_rows,
        "10M events: verbatims": round(1e7 * n_verbatims / n_events),
        "10M events: redact + terms, s (one core)": round(1e7 * n_verbatims / n_events * per_verbatim_s, 1),
    }
    report(results, args.json)


if __name__ == "__main__":
    main()
