"""The synthetic journey generator: valid, deterministic, and true to its own truth.json.

Every statistical check reads the generated files (plain Python over the parsed lines, DuckDB for
revenue) and compares them with what `truth.json` says was planted; none calls generator internals.
Margins: each planted effect is at least a 2x gap in a rate of a few hundred customers, where the
noise is a few points, so the checks hold for the seeds used here and fail if the effect is removed
(e.g. without the drop-off stages every stage abandons at the base rate and the 1.6x margin fails;
without the moment-of-truth hazard, cancellation within 7 days of a bad rating is ~1 %, not > 15 %).
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import random
import re
import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow.parquet as pq
import pytest
from jsonschema import Draft202012Validator
from scipy.stats import chi2_contingency

from parcours.config import JourneyConfig, load_config, parse_config
from parcours.schemas import SURVEY_ANSWER, TOUCHPOINT, Reason, decode_batch
from parcours.synthetic import (
    COMPANY_SENT,
    ChurnSpike,
    GenerationSummary,
    generate_dataset,
    parse_churn_spike,
    parse_drop_off,
    parse_moments,
    pii,
)

FILES = ("touchpoints.jsonl", "surveys.jsonl", "truth.json")


@pytest.fixture(scope="module")
def config() -> JourneyConfig:
    return load_config()


@dataclass
class Dataset:
    """One generated directory, parsed once."""

    path: Path
    config: JourneyConfig
    summary: GenerationSummary

    @cached_property
    def truth(self) -> dict[str, Any]:
        return json.loads((self.path / "truth.json").read_text(encoding="utf-8"))

    def lines(self, name: str) -> list[bytes]:
        return (self.path / name).read_bytes().split(b"\n")[:-1]

    @cached_property
    def touchpoints(self) -> list[dict[str, Any]]:
        return [_with_instant(msgspec.json.decode(line), "occurred_at") for line in self.lines(FILES[0])]

    @cached_property
    def surveys(self) -> list[dict[str, Any]]:
        return [_with_instant(msgspec.json.decode(line), "answered_at") for line in self.lines(FILES[1])]

    @property
    def start(self) -> datetime:
        return datetime.fromisoformat(self.truth["start"]).replace(tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.truth["days"])

    def stage(self, event: dict[str, Any]) -> str:
        return event.get("stage") or self.config.stage_of(event["touchpoint"])

    @cached_property
    def journeys(self) -> dict[str, list[dict[str, Any]]]:
        """Each customer's touchpoints in time order."""
        by_customer: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for event in self.touchpoints:
            by_customer[event["customer_id"]].append(event)
        for events in by_customer.values():
            events.sort(key=lambda e: e["at"])
        return by_customer

    @cached_property
    def cancellations(self) -> dict[str, dict[str, Any]]:
        return {e["customer_id"]: e for e in self.touchpoints if e.get("outcome") == "cancellation"}

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def table(self, name: str) -> list[dict[str, Any]]:
        """A truth table (truth/<name>.parquet) as rows, read once."""
        if name not in self.tables:
            self.tables[name] = pq.read_table(self.path / "truth" / f"{name}.parquet").to_pylist()
        return self.tables[name]


def _valid_in_file_order(dataset: Dataset, name: str) -> list[tuple[bytes, str, datetime]]:
    """(line, id, instant) of each line the contract accepts, in file order."""
    contract = TOUCHPOINT if name == FILES[0] else SURVEY_ANSWER
    lines = dataset.lines(name)
    decoded = decode_batch(contract, lines, dataset.config.ingest.max_payload_bytes)
    ids = decoded.table.column(contract.id_field).to_pylist()
    instants = decoded.table.column(contract.time_field).to_pylist()
    return [(lines[i], record_id, at) for i, record_id, at in zip(decoded.valid_index, ids, instants, strict=True)]


def _with_instant(record: dict[str, Any], field: str) -> dict[str, Any]:
    record["at"] = datetime.fromisoformat(record[field])
    return record


def _generate(root: Path, name: str, config: JourneyConfig, **kwargs: Any) -> Dataset:
    path = root / name
    summary = generate_dataset(path, config=config, **kwargs)
    return Dataset(path, config, summary)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generated")


@pytest.fixture(scope="module")
def small(root: Path, config: JourneyConfig) -> Dataset:
    return _generate(root, "small", config, customers=300, days=30, seed=3)


@pytest.fixture(scope="module")
def main(root: Path, config: JourneyConfig) -> Dataset:
    """Big enough for the planted effects to stand well clear of the noise."""
    return _generate(root, "main", config, customers=2000, days=90, seed=7)


@pytest.fixture(scope="module")
def spiked(root: Path, config: JourneyConfig) -> Dataset:
    spike = ChurnSpike(stage="activation", from_day=45, factor=4.0)
    return _generate(root, "spiked", config, customers=2000, days=90, seed=7, churn_spike=spike)


BAD_RATES = {"invalid_rate": 0.05, "duplicate_rate": 0.03, "late_rate": 0.03}


@pytest.fixture(scope="module")
def with_bad(root: Path, config: JourneyConfig) -> Dataset:
    return _generate(root, "with_bad", config, customers=500, days=45, seed=5, **BAD_RATES)


# -- determinism and validity ------------------------------------------------------------------


def test_same_arguments_give_the_same_bytes_and_another_seed_does_not(
    root: Path, config: JourneyConfig, small: Dataset
) -> None:
    again = _generate(root, "small_again", config, customers=300, days=30, seed=3)
    other = _generate(root, "small_other_seed", config, customers=300, days=30, seed=4)
    for name in FILES:
        assert (again.path / name).read_bytes() == (small.path / name).read_bytes(), name
        assert (other.path / name).read_bytes() != (small.path / name).read_bytes(), name


# sha256 of the files the single-module generator (parcours/generator.py before the split into
# parcours/synthetic/) wrote for the `small` and `with_bad` configurations, computed with that
# code: the split and the steering options keep the default output byte for byte. truth.json
# names the fingerprint of the configuration it was made with: digests are taken with today's
# default fingerprint written as the one of the default configuration of then, so a new setting
# in parcours/journey.yaml does not change them (and the fingerprint occurs exactly once).
FORMER_FINGERPRINT = b"aa0ae88244e1"
FORMER_DIGESTS = {
    "small": {
        "touchpoints.jsonl": "3d8ebe69257ab87828cbc46d8504324dbd9126929045adaca8ec0a54f7d39a20",
        "surveys.jsonl": "147ddad16a0905c194485ba67141cad22a0dc12342692364c91d7d57c7ce2a8f",
        "truth.json": "f75d1333154e3d0ca2273a332318073522f8837f2f39e909ef11ccf17652c702",
    },
    "with_bad": {
        "touchpoints.jsonl": "b47785de6b849bc9cd3b3cf7b1b3b27be5301cea44901fd1603d798c325a3d07",
        "surveys.jsonl": "ffd0724387ee6390a180abc39fac60037186c6d70d518d06b1d330c169f7f458",
        "truth.json": "b459e72b217c352706c3588d93aa641db5f36c3400986b53a6b4d132c5d575bc",
    },
}


def test_default_output_is_byte_for_byte_that_of_the_former_generator(small: Dataset, with_bad: Dataset) -> None:
    fingerprint = small.config.fingerprint.encode()
    for name, dataset in (("small", small), ("with_bad", with_bad)):
        files = {f: (dataset.path / f).read_bytes() for f in FILES}
        assert files["truth.json"].count(fingerprint) == 1
        files["truth.json"] = files["truth.json"].replace(fingerprint, FORMER_FINGERPRINT)
        digests = {f: hashlib.sha256(data).hexdigest() for f, data in files.items()}
        assert digests == FORMER_DIGESTS[name], name


def test_spilling_to_day_buckets_does_not_change_the_output(
    root: Path, config: JourneyConfig, small: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big runs sort through per-day files on disk; small ones never reach that path on their own."""
    monkeypatch.setattr("parcours.synthetic.generate.SPILL_EVERY_LINES", 500)
    spilled = _generate(root, "small_spilled", config, customers=300, days=30, seed=3)
    for name in FILES:
        assert (spilled.path / name).read_bytes() == (small.path / name).read_bytes(), name


def test_every_line_satisfies_both_forms_of_the_contract(small: Dataset) -> None:
    for name, contract in ((FILES[0], TOUCHPOINT), (FILES[1], SURVEY_ANSWER)):
        lines = small.lines(name)
        assert len(lines) > 200
        decoded = decode_batch(contract, lines, small.config.ingest.max_payload_bytes)
        assert decoded.rejects == []
        validator = Draft202012Validator(contract.json_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)
        problems = [(i, e.message) for i, line in enumerate(lines) for e in validator.iter_errors(json.loads(line))]
        assert problems == []
        ids = decoded.table.column(contract.id_field).to_pylist()
        assert len(set(ids)) == len(ids)


def test_files_hold_valid_unique_records_in_time_order_within_the_period(main: Dataset) -> None:
    truth = main.truth
    for name, contract, records, n_expected in (
        (FILES[0], TOUCHPOINT, main.touchpoints, truth["n_touchpoints"]),
        (FILES[1], SURVEY_ANSWER, main.surveys, truth["n_surveys"]),
    ):
        decoded = decode_batch(contract, main.lines(name))
        assert decoded.rejects == []
        assert decoded.table.num_rows == n_expected
        assert len(set(decoded.table.column(contract.id_field).to_pylist())) == n_expected
        instants = [r["at"] for r in records]
        assert instants == sorted(instants), f"{name} is not in event-time order"
        assert main.start <= instants[0] and instants[-1] < main.end
        assert all(r["schema_version"] == 1 for r in records)
    assert main.summary.n_touchpoints == truth["n_touchpoints"] > 80_000
    assert main.summary.n_surveys == truth["n_surveys"] > 3_000
    # Producers stamp their own offsets: UTC, Paris winter and summer time, overseas.
    offsets = collections.Counter(e["occurred_at"][-6:] for e in main.touchpoints)
    assert {"+01:00", "+02:00", "+04:00", "-04:00"} <= offsets.keys()
    assert any(stamp.endswith("Z") for stamp in offsets)


def test_planted_bad_records_are_rejected_with_their_reason(with_bad: Dataset) -> None:
    truth = with_bad.truth
    rejects: collections.Counter[str] = collections.Counter()
    for name, contract in ((FILES[0], TOUCHPOINT), (FILES[1], SURVEY_ANSWER)):
        decoded = decode_batch(contract, with_bad.lines(name), with_bad.config.ingest.max_payload_bytes)
        rejects.update(reject.reason for reject in decoded.rejects)
    assert dict(rejects) == truth["planted_invalid"]
    assert len(truth["planted_invalid"]) >= 6 and sum(rejects.values()) > 100


def test_records_only_the_pipeline_can_reject_are_counted(with_bad: Dataset) -> None:
    """Exact duplicates, id conflicts, dates before the earliest date or in the future."""
    truth, earliest = with_bad.truth, with_bad.config.ingest.earliest_event_date
    seen: dict[str, bytes] = {}
    counts: collections.Counter[str] = collections.Counter()
    for name in FILES[:2]:
        for line, record_id, at in _valid_in_file_order(with_bad, name):
            if record_id in seen:
                counts["duplicate" if seen[record_id] == line else Reason.DUPLICATE_CONFLICT] += 1
                continue
            seen[record_id] = line
            if at.date() < earliest:
                counts[Reason.BEFORE_EARLIEST] += 1
            elif at > with_bad.end + timedelta(days=365):
                counts[Reason.FUTURE_TIMESTAMP] += 1
    assert counts.pop("duplicate") == truth["planted_duplicates"] > 0
    assert dict(counts) == truth["planted_invalid_in_context"]


def test_late_lines_arrive_out_of_order_but_within_two_days(with_bad: Dataset) -> None:
    truth = with_bad.truth
    out_of_order, max_lag = 0, timedelta(0)
    for name in FILES[:2]:
        latest, seen = None, set()
        for _, record_id, at in _valid_in_file_order(with_bad, name):
            if record_id in seen or not with_bad.start <= at < with_bad.end:
                continue  # duplicates and the planted wrong dates are another test's business
            seen.add(record_id)
            if latest is not None and at < latest:
                out_of_order += 1
                max_lag = max(max_lag, latest - at)
            latest = at if latest is None else max(latest, at)
    assert truth["planted_late"] > 20
    assert 0.95 * truth["planted_late"] <= out_of_order <= truth["planted_late"]
    assert max_lag <= timedelta(days=2)


def test_bad_records_leave_the_valid_data_unchanged(root: Path, config: JourneyConfig, with_bad: Dataset) -> None:
    """Planting draws from its own random stream: the valid records are those of a clean run."""
    clean = _generate(root, "clean", config, customers=500, days=45, seed=5)
    for name in FILES[:2]:
        kept, seen = [], set()
        for line, record_id, at in _valid_in_file_order(with_bad, name):
            if record_id not in seen and clean.start <= at < clean.end:
                seen.add(record_id)
                kept.append(line)
        assert sorted(kept) == sorted(clean.lines(name))


# -- the planted effects -------------------------------------------------------------------------


def test_revenue_per_customer_matches_truth(main: Dataset) -> None:
    rows = (
        duckdb.connect()
        .execute(
            "select customer_id, sum(revenue) from read_json(?, format = 'newline_delimited',"
            " columns = {'customer_id': 'VARCHAR', 'revenue': 'DOUBLE'}) group by customer_id",
            [str(main.path / FILES[0])],
        )
        .fetchall()
    )
    observed = {customer: total or 0.0 for customer, total in rows}
    planted = main.truth["revenue_per_customer"]
    assert len(planted) == main.truth["customers"]
    assert sum(1 for total in observed.values() if total > 0) > 500
    for customer, total in planted.items():
        assert observed.get(customer, 0.0) == pytest.approx(total, abs=0.01), customer


def _csat(dataset: Dataset) -> dict[str, list[int]]:
    scores: dict[str, list[int]] = collections.defaultdict(list)
    for answer in dataset.surveys:
        if answer["survey"] == "csat":
            scores[answer["touchpoint"]].append(answer["score"])
    return scores


def test_moments_of_truth_are_the_least_satisfying_touchpoints(main: Dataset) -> None:
    planted = {m["touchpoint"]: m for m in main.truth["moments_of_truth"]}
    scores = {tp: s for tp, s in _csat(main).items() if len(s) >= 50}
    means = {tp: sum(s) / len(s) for tp, s in scores.items()}
    assert set(planted) <= means.keys() and len(means) >= 6
    assert set(sorted(means, key=means.get)[: len(planted)]) == set(planted)
    others = [score for tp, s in scores.items() if tp not in planted for score in s]
    for touchpoint, moment in planted.items():
        assert means[touchpoint] < sum(others) / len(others) - 0.4
        standard_error = statistics.stdev(scores[touchpoint]) / len(scores[touchpoint]) ** 0.5
        assert means[touchpoint] == pytest.approx(moment["mean_csat"], abs=3 * standard_error)


def test_a_bad_moment_of_truth_makes_customers_cancel(main: Dataset) -> None:
    planted = {m["touchpoint"] for m in main.truth["moments_of_truth"]}
    events = {e["event_id"]: e for e in main.touchpoints}
    rated, bad, cancelled_soon_after = set(), set(), collections.Counter()
    for answer in main.surveys:
        if answer["survey"] != "csat" or answer["touchpoint"] not in planted:
            continue
        customer, low = answer["customer_id"], answer["score"] <= 2
        rated.add(customer)
        if low:
            bad.add(customer)
        event, cancellation = events.get(answer.get("event_id", "")), main.cancellations.get(customer)
        if event and event["at"] < main.end - timedelta(days=7):
            counted = "bad" if low else "good"
            cancelled_soon_after[counted + "_n"] += 1
            if cancellation and event["at"] <= cancellation["at"] <= event["at"] + timedelta(days=7):
                cancelled_soon_after[counted] += 1
    good = rated - bad
    assert len(bad) > 100 and len(good) > 200
    bad_rate = len(bad & main.cancellations.keys()) / len(bad)
    good_rate = len(good & main.cancellations.keys()) / len(good)
    assert bad_rate > 2 * good_rate and bad_rate - good_rate > 0.1
    soon_bad = cancelled_soon_after["bad"] / cancelled_soon_after["bad_n"]
    soon_good = cancelled_soon_after["good"] / cancelled_soon_after["good_n"]
    assert soon_bad > 0.15 and soon_bad > 4 * soon_good


def test_one_bad_delivery_loses_about_the_planted_share(main: Dataset) -> None:
    """Delivery is the first moment of truth of a journey: a late or damaged one is bad #1."""
    moment = next(m for m in main.truth["moments_of_truth"] if m["touchpoint"] == "delivery")
    explicit = main.truth["explicit_leave_share"]
    outcomes: dict[bool, list[bool]] = {True: [], False: []}
    for event in main.touchpoints:
        if event["touchpoint"] != "delivery" or event["at"] >= main.end - timedelta(days=10):
            continue
        bad = event["properties"]["status"] in ("late", "damaged")
        cancellation = main.cancellations.get(event["customer_id"])
        outcomes[bad].append(
            cancellation is not None and event["at"] <= cancellation["at"] <= event["at"] + timedelta(days=10)
        )
    assert len(outcomes[True]) > 200
    after_bad = sum(outcomes[True]) / len(outcomes[True])
    after_good = sum(outcomes[False]) / len(outcomes[False])
    assert after_bad == pytest.approx(moment["leave_probability_by_bad_experiences"]["1"] * explicit, abs=0.08)
    assert after_good < moment["leave_probability_by_bad_experiences"]["0"] * explicit + 0.04


def test_drop_off_stages_lose_more_of_the_customers_who_reach_them(main: Dataset) -> None:
    """A drop-off: the last event is at the stage, no cancellation, and the stage's timeout has passed."""
    reached: collections.Counter[str] = collections.Counter()
    dropped: collections.Counter[str] = collections.Counter()
    for customer, events in main.journeys.items():
        reached.update({main.stage(e) for e in events})
        last = events[-1]
        stage = main.stage(last)
        if customer not in main.cancellations and last["at"] + main.config.drop_off.timeout_for(stage) <= main.end:
            dropped[stage] += 1
    rate = {stage: dropped[stage] / reached[stage] for stage in main.config.stages}
    planted = set(main.truth["drop_off_stages"])
    assert planted and planted <= set(main.config.stages)
    highest_other = max(r for stage, r in rate.items() if stage not in planted)
    for stage in planted:
        assert rate[stage] > 1.6 * highest_other, rate


def test_emerging_terms_appear_only_from_their_day_and_grow(main: Dataset) -> None:
    emerging = main.truth["emerging_terms"]
    from_at = datetime.fromisoformat(emerging["from_date"]).replace(tzinfo=UTC)
    verbatims = [(a["at"], a["language"], a["verbatim"].lower()) for a in main.surveys if a.get("verbatim")]
    assert sum(1 for at, _, _ in verbatims if at < from_at) > 200  # absence before means something
    for language in ("fr", "en"):
        for term in emerging[language]:
            hits = [(at, lang) for at, lang, text in verbatims if term in text]
            assert len(hits) >= 3, term
            assert min(at for at, _ in hits) >= from_at, term
            assert {lang for _, lang in hits} == {language}, term
    # Growth as a share of what customers write, not as a count that grows with the customer base.
    terms = emerging["fr"] + emerging["en"]
    middle = from_at + (main.end - from_at) / 2
    share = {}
    for half, low, high in (("early", from_at, middle), ("late", middle, main.end)):
        texts = [text for at, _, text in verbatims if low <= at < high]
        share[half] = sum(any(term in text for term in terms) for text in texts) / len(texts)
    assert share["late"] > 1.4 * share["early"] > 0


def _cancellation_rate_at(dataset: Dataset, stage: str, low: datetime, high: datetime) -> float:
    at_stage = {
        e["customer_id"]
        for events in dataset.journeys.values()
        for e in events
        if low <= e["at"] < high and dataset.stage(e) == stage
    }
    cancelled = {
        customer for customer, e in dataset.cancellations.items() if low <= e["at"] < high and dataset.stage(e) == stage
    }
    assert len(at_stage) > 300
    return len(cancelled & at_stage) / len(at_stage)


def test_churn_spike_raises_cancellations_at_its_stage_from_its_day(spiked: Dataset, main: Dataset) -> None:
    spike = spiked.truth["churn_spike"]
    assert main.truth["churn_spike"] is None
    from_at = datetime.fromisoformat(spike["from_date"]).replace(tzinfo=UTC)
    before = _cancellation_rate_at(spiked, spike["stage"], spiked.start, from_at)
    after = _cancellation_rate_at(spiked, spike["stage"], from_at, spiked.end)
    without_spike = _cancellation_rate_at(main, spike["stage"], from_at, main.end)
    assert after > 2 * before and after > 2 * without_spike


# -- the shape of journeys and surveys ------------------------------------------------------------


def test_journeys_are_non_linear_and_omnichannel(main: Dataset) -> None:
    rank = main.config.stage_rank
    n = len(main.journeys)
    skipped = revisited = looped = several_channels = switched_in_session = 0
    for events in main.journeys.values():
        ranks = [rank(main.stage(e)) for e in events]
        skipped += len(set(ranks)) < max(ranks) + 1
        revisited += any(later < earlier for earlier, later in itertools.pairwise(ranks))
        first_consideration = next((i for i, r in enumerate(ranks) if r == 1), None)
        looped += first_consideration is not None and 0 in ranks[first_consideration:]
        several_channels += len({e["channel"] for e in events}) >= 2
        switched_in_session += any(
            b["at"] - a["at"] < timedelta(minutes=30) and a["channel"] != b["channel"]
            for a, b in itertools.pairwise(events)
        )
    assert skipped > 0.15 * n and revisited > 0.15 * n and looped > 0.05 * n
    assert several_channels > 0.6 * n and switched_in_session > 0.2 * n
    sessions_per_customer = (
        sum(
            1 + sum(b["at"] - a["at"] > timedelta(minutes=30) for a, b in itertools.pairwise(events))
            for events in main.journeys.values()
        )
        / n
    )
    assert sessions_per_customer > 5


def test_purchase_comes_before_renewal_and_cancellation_ends_the_journey(main: Dataset) -> None:
    renewed = 0
    for customer, events in main.journeys.items():
        outcomes = [e.get("outcome") for e in events]
        if "renewal" in outcomes:
            renewed += 1
            assert "purchase" in outcomes[: outcomes.index("renewal")], customer
        if customer in main.cancellations:
            assert outcomes.count("cancellation") == 1 and outcomes[-1] == "cancellation", customer
    assert renewed > 100
    assert set(main.truth["churned_customers"]) == main.cancellations.keys()
    assert len(main.cancellations) > 100


def test_surveys_follow_the_experience(main: Dataset) -> None:
    last_nps = {a["customer_id"]: a["score"] for a in main.surveys if a["survey"] == "nps"}
    promoters = [c for c, score in last_nps.items() if score >= 9]
    detractors = [c for c, score in last_nps.items() if score <= 6]
    assert len(promoters) > 100 and len(detractors) > 100
    revenue = main.truth["revenue_per_customer"]

    def mean_revenue(customers: list[str]) -> float:
        return sum(revenue[c] for c in customers) / len(customers)

    def cancel_rate(customers: list[str]) -> float:
        return sum(c in main.cancellations for c in customers) / len(customers)

    assert mean_revenue(promoters) > 1.25 * mean_revenue(detractors)
    assert cancel_rate(detractors) > 1.5 * cancel_rate(promoters)
    by_survey = collections.Counter(a["survey"] for a in main.surveys)
    assert set(by_survey) == {"nps", "csat", "ces", "cxi", "kano", "importance"}
    assert {a.get("scale") for a in main.surveys if a["survey"] == "ces"} == {None, "1-7", "1-5"}
    assert all("dysfunctional_score" in a for a in main.surveys if a["survey"] == "kano")
    assert {a["question_id"] for a in main.surveys if a["survey"] == "kano"} == set(main.truth["kano_features"])
    assert {a["language"] for a in main.surveys if a.get("verbatim")} == {"fr", "en"}


def test_ratings_without_event_id_can_be_attached_by_time(main: Dataset) -> None:
    """The customer's nearest touchpoint before the answer is the one rated."""
    ratings = [a for a in main.surveys if a["survey"] in ("csat", "ces")]
    unattached = [a for a in ratings if "event_id" not in a]
    assert 0.05 * len(ratings) < len(unattached) < 0.3 * len(ratings)
    window = main.config.surveys.attachment_window
    for answer in unattached:
        before = [e for e in main.journeys[answer["customer_id"]] if e["at"] <= answer["at"]]
        assert before[-1]["touchpoint"] == answer["touchpoint"]
        assert answer["at"] - before[-1]["at"] <= window


def test_planted_importance_is_high_where_satisfaction_is_low(main: Dataset) -> None:
    importance: dict[str, list[int]] = collections.defaultdict(list)
    for answer in main.surveys:
        if answer["survey"] == "importance":
            importance[answer["question_id"]].append(answer["score"])
    means = {attribute: sum(s) / len(s) for attribute, s in importance.items()}
    moments = {m["touchpoint"] for m in main.truth["moments_of_truth"]}
    assert set(sorted(means, key=means.get, reverse=True)[: len(moments)]) == moments
    for attribute, planted in main.truth["importance_means"].items():
        assert means[attribute] == pytest.approx(planted, abs=0.3)


# -- arguments ---------------------------------------------------------------------------------------


def test_progress_counts_every_customer(tmp_path: Path, config: JourneyConfig) -> None:
    calls: list[int] = []
    summary = generate_dataset(tmp_path, 600, 10, 1, config=config, progress=calls.append)
    assert sum(calls) == summary.n_customers == 600 and len(calls) >= 2
    assert all(path.exists() for path in summary.paths)
    assert not [p for p in tmp_path.iterdir() if p.name not in (*FILES, "truth")]  # spill files cleaned up


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"customers": 0}, "customers"),
        ({"days": 0}, "days"),
        ({"invalid_rate": 1.5}, "invalid_rate"),
        ({"late_rate": -0.1}, "late_rate"),
        ({"churn_spike": ChurnSpike("checkout", 3, 2.0)}, "churn spike stage 'checkout'"),
        ({"churn_spike": ChurnSpike("renewal", 30, 2.0)}, "from_day 30"),
        ({"emerging_from_day": 12}, "emerging_from_day"),
        ({"moments": ("nowhere",)}, "moment of truth 'nowhere' is not a configured touchpoint"),
        ({"moments": ("app_session",)}, "moment of truth 'app_session' is not a touchpoint the simulation rates"),
        ({"drop_off": {"checkout": 0.2}}, "drop-off stage 'checkout' is not a stage"),
        ({"drop_off": {"purchase": 1.0}}, r"drop-off probability at 'purchase' must be in \[0, 1\)"),
        ({"pii_rate": 1.0}, "pii_rate"),
        ({"plant": "some"}, "plant must be 'default' or 'none'"),
        ({"churn_spike": ChurnSpike("renewal", 3, 2.0, until_day=11)}, "until_day 11 is after the 10 days"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(
    tmp_path: Path, config: JourneyConfig, kwargs: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"customers": 10, "days": 10, "seed": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path, config=config, **arguments)


def test_churn_spike_checks_its_own_values() -> None:
    with pytest.raises(ValueError, match="factor"):
        ChurnSpike("renewal", 3, 0.0)
    with pytest.raises(ValueError, match="from_day"):
        ChurnSpike("renewal", -1, 2.0)
    with pytest.raises(ValueError, match="until_day must be after from_day 3, got 3"):
        ChurnSpike("renewal", 3, 2.0, until_day=3)


def test_steering_specs_parse_or_say_what_they_expect() -> None:
    assert parse_drop_off("purchase:0.25, support:0.1") == {"purchase": 0.25, "support": 0.1}
    assert parse_churn_spike("renewal:40:3") == ChurnSpike("renewal", 40, 3.0)
    assert parse_churn_spike("renewal:40:3:60") == ChurnSpike("renewal", 40, 3.0, until_day=60)
    assert parse_moments("installation, repair,installation") == ("installation", "repair")
    for parse, text, message in (
        (parse_drop_off, "purchase", "'purchase' is not STAGE:P"),
        (parse_drop_off, "purchase:lots", "'purchase:lots' is not STAGE:P"),
        (parse_drop_off, ",", "names no stage"),
        (parse_churn_spike, "renewal:40", "is not STAGE:FROM_DAY:FACTOR"),
        (parse_churn_spike, "renewal:40:3:x", "is not STAGE:FROM_DAY:FACTOR"),
        (parse_moments, " , ", "names no touchpoint"),
    ):
        with pytest.raises(ValueError, match=message):
            parse(text)


def test_a_configuration_that_maps_touchpoints_elsewhere_is_refused(tmp_path: Path) -> None:
    config = parse_config("stages: [discovery, purchase]\ntouchpoints: {checkout: purchase}\n")
    with pytest.raises(ValueError, match=r"touchpoints\.delivery: the generator needs stage 'activation'"):
        generate_dataset(tmp_path, 10, 10, 1, config=config, start=date(2026, 1, 5))


# -- steering: each option moves what it should ----------------------------------------------------
#
# The steered runs share one size and seed with `plain`, the default world, so each option is
# measured twice: against what the truth tables say was drawn, and against the plain data.

STEERED: dict[str, Any] = {"customers": 2000, "days": 30, "seed": 11}


@pytest.fixture(scope="module")
def plain(root: Path, config: JourneyConfig) -> Dataset:
    return _generate(root, "plain", config, **STEERED)


@pytest.fixture(scope="module")
def moved(root: Path, config: JourneyConfig) -> Dataset:
    return _generate(root, "moved", config, moments=("installation", "repair"), **STEERED)


@pytest.fixture(scope="module")
def null(root: Path, config: JourneyConfig) -> Dataset:
    return _generate(root, "null", config, plant="none", **STEERED)


def _near(successes: int, n: int, p: float, k: float = 3.0) -> bool:
    """The observed share is within k binomial standard errors of p."""
    return abs(successes / n - p) <= k * (p * (1 - p) / n) ** 0.5


def _first_bad(dataset: Dataset, touchpoint: str) -> list[dict[str, Any]]:
    """The latent bad experiences at `touchpoint` that were the customer's first bad one."""
    return [
        i
        for i in dataset.table("interactions")
        if i["touchpoint"] == touchpoint and i["is_bad"] and i["n_bad_before"] == 0
    ]


def _cancelled_within(dataset: Dataset, interactions: list[dict[str, Any]], days: int = 7) -> tuple[int, int]:
    """(cancelled within `days` in the data, n) over the interactions at least `days` before the end."""
    window = timedelta(days=days)
    n = cancelled = 0
    for interaction in interactions:
        at = interaction["at"]
        if at >= dataset.end - window:
            continue
        n += 1
        cancellation = dataset.cancellations.get(interaction["customer_id"])
        cancelled += cancellation is not None and at <= cancellation["at"] <= at + window
    return cancelled, n


def test_moments_of_truth_move_where_a_bad_experience_makes_customers_leave(moved: Dataset, plain: Dataset) -> None:
    assert [m["touchpoint"] for m in moved.truth["moments_of_truth"]] == ["installation", "repair"]
    # The truth: the first bad installation makes 32 % leave, a bad delivery 4 % (not a moment now).
    h1 = moved.truth["moments_of_truth"][0]["leave_probability_by_bad_experiences"]["1"]
    elsewhere = moved.truth["other_touchpoints"]["leave_probability_after_bad_experience"]
    for touchpoint, planted in (("installation", h1), ("delivery", elsewhere)):
        bad = [i for i in moved.table("interactions") if i["touchpoint"] == touchpoint and i["is_bad"]]
        first = [i for i in bad if i["n_bad_moments_before"] == 0]
        assert len(first) > 40, touchpoint
        assert _near(sum(i["made_leave"] for i in first), len(first), planted), touchpoint
    # The data: cancellations within 7 days of a first bad experience follow the moments.
    explicit = moved.truth["explicit_leave_share"]
    rate = {}
    for name, dataset in (("moved", moved), ("plain", plain)):
        for touchpoint in ("installation", "delivery"):
            cancelled, n = _cancelled_within(dataset, _first_bad(dataset, touchpoint))
            assert n > 10, (name, touchpoint)
            rate[name, touchpoint] = cancelled / n
    assert rate["moved", "installation"] == pytest.approx(h1 * explicit, abs=0.1)
    assert rate["moved", "installation"] > 3 * rate["moved", "delivery"]
    assert rate["plain", "delivery"] > 3 * rate["plain", "installation"]
    # Satisfaction and importance move with them.
    moved_csat, plain_csat = _csat(moved), _csat(plain)
    mean = statistics.fmean
    assert mean(moved_csat["installation"]) < mean(plain_csat["installation"]) - 0.5
    assert mean(moved_csat["delivery"]) > mean(plain_csat["delivery"]) + 0.5
    assert moved.truth["importance_means"]["installation"] > moved.truth["importance_means"]["delivery"]


# A chi-square p-value above this says "no difference" (the null world's truth); the default
# world's planted differences give p-values below 1e-9 on the same tests.
NOTHING_DIFFERS = 1e-3


def _homogeneous(table: list[list[int]]) -> float:
    """p-value of the chi-square test that every row of counts comes from one distribution."""
    columns = [j for j in range(len(table[0])) if any(row[j] for row in table)]
    return float(chi2_contingency([[row[j] for j in columns] for row in table]).pvalue)


def _leave_after_bad_by_touchpoint(dataset: Dataset) -> list[list[int]]:
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for i in dataset.table("interactions"):
        if i["is_bad"]:
            counts[i["touchpoint"]][i["made_leave"]] += 1
    return [row for row in counts.values() if sum(row) >= 20]


def _csat_by_touchpoint(dataset: Dataset) -> list[list[int]]:
    return [[scores.count(score) for score in range(1, 6)] for scores in _csat(dataset).values() if len(scores) >= 40]


def test_plant_none_plants_nothing_that_differs_between_touchpoints(null: Dataset, plain: Dataset) -> None:
    truth = null.truth
    assert truth["moments_of_truth"] == [] and truth["drop_off_stages"] == {}
    assert truth["kano_features"] == {} and truth["emerging_terms"] is None and truth["churn_spike"] is None
    assert truth["steering"]["plant"] == "none"
    assert set(truth["nps"]["revenue_multiplier"].values()) == {1.0}
    # One leave chance after a bad experience, wherever it happens; none after a good one.
    interactions = null.table("interactions")
    assert {i["leave_probability"] for i in interactions if i["is_bad"]} == {elsewhere := 0.04}
    assert {i["leave_probability"] for i in interactions if not i["is_bad"]} == {0.0}
    assert truth["other_touchpoints"]["leave_probability_after_bad_experience"] == elsewhere
    leave = _leave_after_bad_by_touchpoint(null)
    assert len(leave) >= 5 and _homogeneous(leave) > NOTHING_DIFFERS
    # One experience mix (latent) and so one CSAT distribution (observed) at every touchpoint,
    # where the same tests tell the default world's touchpoints apart at once.
    levels: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
    for i in interactions:
        levels[i["touchpoint"]][i["experience_level"]] += 1
    assert _homogeneous([row for row in levels.values() if sum(row) >= 50]) > NOTHING_DIFFERS
    assert _homogeneous(_csat_by_touchpoint(null)) > NOTHING_DIFFERS
    assert _homogeneous(_csat_by_touchpoint(plain)) < 1e-9
    assert _homogeneous(_leave_after_bad_by_touchpoint(plain)) < 1e-9


def _drop_off_rates(dataset: Dataset) -> dict[str, tuple[int, int]]:
    """Per stage: (customers whose last activity is there, past its timeout, not cancelled;
    customers with an activity there at least a timeout before the end: the others cannot be seen
    dropping off yet). Company-sent touchpoints are not activity."""
    reached: collections.Counter[str] = collections.Counter()
    dropped: collections.Counter[str] = collections.Counter()
    timeout_for, end = dataset.config.drop_off.timeout_for, dataset.end
    for customer, events in dataset.journeys.items():
        activity = [e for e in events if e["touchpoint"] not in COMPANY_SENT]
        if not activity:
            continue
        reached.update({dataset.stage(e) for e in activity if e["at"] + timeout_for(dataset.stage(e)) <= end})
        stage = dataset.stage(activity[-1])
        if customer not in dataset.cancellations and activity[-1]["at"] + timeout_for(stage) <= end:
            dropped[stage] += 1
    return {stage: (dropped[stage], reached[stage]) for stage in dataset.config.stages}


def test_plant_none_has_one_abandon_rate_and_no_planted_answers(null: Dataset, plain: Dataset) -> None:
    # The default world's drop-off stages stand out; in the null world the acquisition stages,
    # which every customer visits about once, lose the same share.
    null_rates = {s: d / n for s, (d, n) in _drop_off_rates(null).items() if n}
    plain_rates = {s: d / n for s, (d, n) in _drop_off_rates(plain).items() if n}
    assert plain_rates["consideration"] > 3 * plain_rates["discovery"]
    acquisition = [_drop_off_rates(null)[s] for s in ("discovery", "consideration", "purchase")]
    assert _homogeneous([[d, n - d] for d, n in acquisition]) > NOTHING_DIFFERS
    assert null_rates["consideration"] == pytest.approx(null.truth["drop_off_base_rate"], abs=0.02)
    # No emerging terms; importance alike for every touchpoint; Kano answers from one mix.
    texts = [a["verbatim"].lower() for a in null.surveys if a.get("verbatim")]
    terms = [t for terms in plain.truth["emerging_terms"].values() if isinstance(terms, list) for t in terms]
    assert len(texts) > 500 and not [t for t in texts if any(term in t for term in terms)]
    importance: dict[str, list[int]] = collections.defaultdict(list)
    kano: dict[str, list[int]] = collections.defaultdict(lambda: [0] * 5)
    for answer in null.surveys:
        if answer["survey"] == "importance":
            importance[answer["question_id"]].append(answer["score"])
        elif answer["survey"] == "kano":
            kano[answer["question_id"]][answer["score"] - 1] += 1
    assert len(importance) >= 8
    assert max(map(statistics.fmean, importance.values())) - min(map(statistics.fmean, importance.values())) < 0.6
    assert len(kano) == 12 and _homogeneous(list(kano.values())) > NOTHING_DIFFERS


@pytest.fixture(scope="module")
def purchase_drop(root: Path, config: JourneyConfig) -> Dataset:
    return _generate(root, "purchase_drop", config, drop_off={"purchase": 0.25}, **STEERED)


def test_drop_off_option_adds_a_stage_where_visits_end(purchase_drop: Dataset, plain: Dataset) -> None:
    assert purchase_drop.truth["drop_off_stages"] == {"consideration": 0.30, "activation": 0.22, "purchase": 0.25}
    # P is the chance that the visit is the last: customers who reached a cart or a sales call.
    visited = {e["customer_id"] for e in purchase_drop.touchpoints if e["touchpoint"] in ("cart", "sales_call")}
    abandoned = {r["customer_id"] for r in purchase_drop.table("journeys") if r["abandoned_stage"] == "purchase"}
    assert abandoned <= visited and len(visited) > 1000
    assert _near(len(abandoned), len(visited), 0.25)
    # In the data: customers whose last activity is at purchase, past its timeout.
    dropped, reached = _drop_off_rates(purchase_drop)["purchase"]
    plain_dropped, plain_reached = _drop_off_rates(plain)["purchase"]
    assert dropped / reached > 3 * plain_dropped / plain_reached
    assert dropped / reached == pytest.approx(0.25, abs=0.06)
    # And the truth's drop-offs are the data's, customer for customer.
    end = purchase_drop.end
    timeouts = purchase_drop.config.drop_off
    by_truth = {
        c["customer_id"]
        for c in purchase_drop.table("customers")
        if c["end"] in ("dropped_off", "silent_churn")
        and c["last_activity_at"] is not None
        and c["last_activity_at"] + timeouts.timeout_for(c["last_activity_stage"]) <= end
        and c["last_activity_stage"] == "purchase"
    }
    assert len(by_truth) <= dropped <= 1.1 * len(by_truth)  # the rule also finds customers only quiet


@pytest.fixture(scope="module")
def spiked_until(root: Path, config: JourneyConfig) -> Dataset:
    spike = ChurnSpike(stage="activation", from_day=20, factor=4.0, until_day=40)
    return _generate(root, "spiked_until", config, churn_spike=spike, **{**STEERED, "days": 60})


def test_churn_spike_stops_on_its_until_day(spiked_until: Dataset) -> None:
    spike = spiked_until.truth["churn_spike"]
    assert (spike["from_day"], spike["until_day"], spike["until_date"]) == (20, 40, "2026-02-14")
    day = timedelta(days=1)
    start, end = spiked_until.start, spiked_until.end
    # A cancellation decided on the spike's last day lands up to a few days later: the window
    # after the spike starts 5 days after its end.
    windows = ((start, start + 20 * day), (start + 20 * day, start + 40 * day), (start + 45 * day, end))
    before, during, after = (_cancellation_rate_at(spiked_until, "activation", *w) for w in windows)
    assert during > 2 * before and during > 2 * after
    assert after == pytest.approx(before, abs=0.03)
    # The truth: every leave chance at activation is the planted one outside the window and four
    # times it (capped at 0.95) inside.
    planted = {0.0, 0.02, 0.04, 0.32, (0.59 - 0.32) / (1 - 0.32)}
    inside = {p if p == 0 else min(0.95, p * 4.0) for p in planted}
    seen: collections.Counter[tuple[bool, float]] = collections.Counter()
    for i in spiked_until.table("interactions"):
        if i["stage"] == "activation":
            within = start + 20 * day <= i["at"] < start + 40 * day
            assert i["leave_probability"] in (inside if within else planted), i
            seen[within, i["leave_probability"]] += 1
    assert seen[True, 0.95] > 20 and seen[False, 0.32] > 20


@pytest.fixture(scope="module")
def with_pii(root: Path, config: JourneyConfig) -> Dataset:
    return _generate(root, "with_pii", config, pii_rate=0.05, **STEERED)


def _luhn_valid(number: str) -> bool:
    """The Luhn check as ISO/IEC 7812 states it: double every second digit from the right."""
    digits = [int(c) for c in number if c.isdigit()][::-1]
    total = sum(d if i % 2 == 0 else (d * 2 if d < 5 else d * 2 - 9) for i, d in enumerate(digits))
    return total % 10 == 0


def _iban_valid(text: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to 10..35, mod 97 is 1."""
    compact = text.replace(" ", "")
    moved = compact[4:] + compact[:4]
    return int("".join(str(ord(c) - 55) if c.isalpha() else c for c in moved)) % 97 == 1


_PII_SHAPES = {
    "email": re.compile(r"[a-z0-9._]+@[a-z0-9.-]+\.[a-z]{2,}"),
    "phone_fr": re.compile(r"(0|\+33 ?(\(0\))?|0033 )[1-9]([ .-]?[0-9]{2}){4}"),
    "phone_intl": re.compile(r"\+(44|1|49|32|41)[0-9 ()-]{8,16}"),
    "card": re.compile(r"[0-9]{4}([ -]?[0-9]{4,6}){2,3}"),
    "iban": re.compile(r"(FR|DE)[0-9]{2}( ?[0-9A-Z]{4}){4,6}( ?[0-9A-Z]{1,3})?"),
}


def test_pii_rate_plants_personal_data_in_that_share_of_verbatims(with_pii: Dataset, plain: Dataset) -> None:
    planted = with_pii.table("pii")
    verbatims = {a["response_id"]: a["verbatim"] for a in with_pii.surveys if a.get("verbatim")}
    assert len(verbatims) > 300
    assert _near(len(planted), len(verbatims), 0.05)
    assert len({row["kind"] for row in planted}) >= 4
    surveys_file = (with_pii.path / FILES[1]).read_bytes()
    for row in planted:
        assert row["text"] in verbatims[row["response_id"]], row
        assert msgspec.json.encode(row["text"])[1:-1] in surveys_file, row  # as a grep finds it
        assert _PII_SHAPES[row["kind"]].fullmatch(row["text"]), row
        if row["kind"] == "card":
            assert _luhn_valid(row["text"]) and len(re.sub(r"\D", "", row["text"])) in (15, 16), row
        elif row["kind"] == "iban":
            assert _iban_valid(row["text"]), row
    spellings = {row["text"][:3] for row in planted if row["kind"] == "phone_fr"}
    assert len(spellings) >= 3  # 06..., +33..., 0033...
    assert with_pii.truth["steering"]["pii_planted"] == dict(
        sorted(collections.Counter(row["kind"] for row in planted).items())
    )
    # Personal data draws from its own stream: everything but the verbatims is the plain run.
    assert (with_pii.path / FILES[0]).read_bytes() == (plain.path / FILES[0]).read_bytes()
    without = [{k: v for k, v in a.items() if k != "verbatim"} for a in with_pii.surveys]
    assert without == [{k: v for k, v in a.items() if k != "verbatim"} for a in plain.surveys]
    assert not plain.table("pii")


def test_pii_helpers_agree_with_published_check_digits() -> None:
    """Wikipedia's worked examples: Luhn of 7992739871 is 3; the UK IBAN GB82 WEST 1234 5698 7654 32."""
    assert pii.luhn_check_digit("7992739871") == "3"
    assert pii.iban_check_digits("GB", "WEST12345698765432") == "82"
    rng = random.Random(1)
    kinds = collections.Counter()
    for _ in range(500):
        kind, text = pii.draw(rng)
        kinds[kind] += 1
        assert _PII_SHAPES[kind].fullmatch(text), (kind, text)
        if kind == "card":
            assert _luhn_valid(text), text
        elif kind == "iban":
            assert _iban_valid(text), text
    assert kinds.keys() == set(_PII_SHAPES) == set(pii.KINDS)


# -- truth tables against the data -------------------------------------------------------------------


def test_truth_tables_agree_with_the_data(plain: Dataset) -> None:
    customers = {c["customer_id"]: c for c in plain.table("customers")}
    assert len(customers) == plain.truth["customers"]
    assert set(plain.journeys) <= customers.keys()
    for customer_id, events in plain.journeys.items():
        row = customers[customer_id]
        assert row["n_events"] == len(events) and row["revenue"] == plain.truth["revenue_per_customer"][customer_id]
        activity = [e for e in events if e["touchpoint"] not in COMPANY_SENT]
        if activity:
            assert (
                row["last_activity_at"] == activity[-1]["at"]
                and row["last_activity_touchpoint"] == activity[-1]["touchpoint"]
            )
        assert (row["end"] == "explicit_churn") == (customer_id in plain.cancellations)
        purchases = [e["at"] for e in events if e.get("outcome") == "purchase"]
        assert row["purchased_at"] == (purchases[0] if purchases else None)
    # Journeys: cycles cut at purchases and renewals; their events add up to the customer's.
    cycles: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for journey in plain.table("journeys"):
        cycles[journey["customer_id"]].append(journey)
    for customer_id, rows in cycles.items():
        assert [r["journey_cycle"] for r in rows] == list(range(len(rows)))
        assert sum(r["n_events"] for r in rows) == customers[customer_id]["n_events"]
        for r in rows[:-1]:
            assert r["end"] == "converted" and r["end_touchpoint"] in (
                "checkout",
                "store_checkout",
                "sales_call",
                "renewal_checkout",
            )
    ends = collections.Counter(r["end"] for r in plain.table("journeys"))
    assert ends.keys() == {"converted", "dropped_off", "explicit_churn", "silent_churn", "in_progress"}
    # Interactions: real events at the touchpoint they name; the kept CSAT answers are theirs.
    events = {e["event_id"]: e for e in plain.touchpoints}
    csat = {a["event_id"]: a["score"] for a in plain.surveys if a["survey"] == "csat" and "event_id" in a}
    interactions = plain.table("interactions")
    for i in interactions:
        event = events[i["event_id"]]
        assert (event["touchpoint"], event["at"]) == (i["touchpoint"], i["at"])
        if i["event_id"] in csat:
            assert i["csat_score"] == csat[i["event_id"]]
    assert sum(i["csat_score"] is not None for i in interactions) >= len(csat)
    # Every leaver's leave flag is on the experience that made them leave.
    flagged: dict[str, list[str]] = collections.defaultdict(list)
    for i in interactions:
        if i["made_leave"]:
            flagged[i["customer_id"]].append(i["event_id"])
    leavers = {c["customer_id"]: [c["leave_event_id"]] for c in customers.values() if c["leave_reason"] == "experience"}
    assert flagged == leavers and len(leavers) > 50


def test_truth_drop_offs_are_those_the_analytic_rule_finds(plain: Dataset) -> None:
    """Latest activity at S and none within S's timeout by the end (cancellations aside): the
    truth's dropped-off and silently-churned customers, up to the rare customer who is only quiet."""
    end, timeouts = plain.end, plain.config.drop_off
    by_rule: dict[str, str] = {}
    for customer, events in plain.journeys.items():
        activity = [e for e in events if e["touchpoint"] not in COMPANY_SENT]
        if activity and customer not in plain.cancellations:
            stage = plain.stage(activity[-1])
            if activity[-1]["at"] + timeouts.timeout_for(stage) <= end:
                by_rule[customer] = stage
    by_truth = {
        c["customer_id"]: c["last_activity_stage"]
        for c in plain.table("customers")
        if c["end"] in ("dropped_off", "silent_churn")
        and c["last_activity_at"] is not None
        and c["last_activity_at"] + timeouts.timeout_for(c["last_activity_stage"]) <= end
    }
    assert len(by_truth) > 250
    assert all(by_rule.get(customer) == stage for customer, stage in by_truth.items())
    quiet = by_rule.keys() - by_truth.keys()  # still customers, just quiet for longer than a timeout
    assert len(quiet) <= 0.03 * len(by_rule)
    assert all(c["end"] == "active" for c in plain.table("customers") if c["customer_id"] in quiet)


@pytest.mark.slow
def test_a_million_events_take_9700_customers_over_240_days(tmp_path: Path, config: JourneyConfig) -> None:
    """About 101 events per customer over 240 days (customers arrive through the period): 981k
    events for seed 42 (and 618k for 6000 customers)."""
    summary = generate_dataset(tmp_path, 9700, 240, 42, config=config)
    assert 900_000 < summary.n_touchpoints < 1_100_000
    customers = pq.read_table(summary.truth_tables["customers"], columns=["n_events"]).column("n_events")
    assert sum(customers.to_pylist()) == summary.n_touchpoints
