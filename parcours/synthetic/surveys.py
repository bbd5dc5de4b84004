"""Survey answers a simulated customer gives: CSAT and CES after rated touchpoints, NPS, CXi,
Kano and importance questionnaires, with verbatims (and, when asked for, personal data in them).

A mixin of `Journey`: answers follow the customer's latent experience and loyalty, which only the
journey knows. Each answer waits in `surveys` until `_finish_surveys` places the ones without an
event id before the customer's next event and drops the ones not given by the end of the period.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from parcours.synthetic import pii
from parcours.synthetic.clock import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS
from parcours.synthetic.plant import (
    CSAT_GIVEN_EXPERIENCE,
    IMPORTANCE_DISTRIBUTIONS,
    KANO_FEATURES,
    KANO_TYPICAL,
    KANO_TYPICAL_SHARE,
)
from parcours.synthetic.records import uuid_from
from parcours.synthetic.verbatims import EMERGING_VERBATIMS, TOPIC, VERBATIMS
from parcours.synthetic.world import (
    ACTIVE_HOURS,
    CES_AFTER,
    CSAT_RATED,
    CSAT_WITHOUT_EVENT_ID,
    SIMULATED_STAGE,
    cumulative,
    pick,
)

if TYPE_CHECKING:
    from parcours.synthetic.journey import Interaction
    from parcours.synthetic.world import World

_CSAT_TABLES = tuple(cumulative(scores) for scores in CSAT_GIVEN_EXPERIENCE)
_IMPORTANCE_TABLES = {level: cumulative(dist) for level, dist in IMPORTANCE_DISTRIBUTIONS.items()}


class SurveyTaking:
    """The survey side of a customer's journey (see the module docstring)."""

    # Set by Journey.
    world: World
    rng: random.Random
    pii_rng: random.Random | None
    events: list[tuple]
    surveys: list[list]
    interactions: list[Interaction]
    pii: list[tuple[str, str, str]]
    language: str
    loyalty: float
    product_line: str
    topic: str
    support_reason: str
    emerging_incident: bool
    kano_done: bool
    importance_done: bool
    t: int

    def offset(self, t: int) -> int:
        raise NotImplementedError

    def _rating_surveys(self, index: int, touchpoint: str, stage: str, level: int) -> None:
        """CSAT and CES after a rated touchpoint, following the experience drawn."""
        rng = self.rng
        if rng.random() < CSAT_RATED.get(touchpoint, 0.0):
            score = pick(rng, _CSAT_TABLES[level])
            self._rating_survey(index, touchpoint, stage, "csat", f"csat_{touchpoint}", score, None, 0.25)
        if rng.random() < CES_AFTER.get(touchpoint, 0.0):
            if rng.random() < 0.2:
                scale, score = "1-5", (rng.randint(1, 2), 3, 4, 5)[level]
            else:
                scale = "1-7" if rng.random() < 0.3 else None  # some tools send the default explicitly
                low, high = ((1, 3), (4, 5), (5, 6), (6, 7))[level]
                score = rng.randint(low, high)
            self._rating_survey(index, touchpoint, stage, "ces", "ces_ease", score, scale, 0.2)

    def _survey(self, t: int, fields: dict[str, Any], before_next_of: int = -1, interaction: int = -1) -> None:
        if (t + self.offset(t)) % DAY_MS < ACTIVE_HOURS[0] * HOUR_MS:
            t += ACTIVE_HOURS[0] * HOUR_MS  # people answer in the morning, not at 3 a.m.
        planted = fields.pop("_pii", None)
        fields["response_id"] = response_id = uuid_from(self.rng)
        if planted is not None:
            self.pii.append((response_id, *planted))
        self.surveys.append([t, fields, before_next_of, interaction])

    def _rating_survey(
        self,
        index: int,
        touchpoint: str,
        stage: str,
        survey: str,
        question: str,
        score: int,
        scale: str | None,
        verbatim_chance: float,
    ) -> None:
        rng = self.rng
        event_t = self.events[index][0]
        fields: dict[str, Any] = {"survey": survey, "question_id": question, "score": score}
        if scale is not None:
            fields["scale"] = scale
        fields["touchpoint"] = touchpoint
        fields["stage"] = stage
        before_next = -1
        if rng.random() < CSAT_WITHOUT_EVENT_ID:
            before_next = index  # answered before anything else happens: attachable by time
        else:
            fields["event_id"] = self.events[index][7]
        negative = score <= (2 if survey == "csat" else (2 if scale == "1-5" else 3))
        if negative:
            verbatim_chance *= 2
        if self.emerging_incident and TOPIC.get(touchpoint) == "support":
            verbatim_chance = 0.8  # customers describe a new problem in their own words
        if rng.random() < verbatim_chance:
            sentiment = "neg" if negative else ("pos" if score >= (4 if survey == "csat" else 5) else "neu")
            topic = TOPIC.get(touchpoint, "general")
            if topic == "support" and self.support_reason == "billing":
                topic = "billing"
            self._add_verbatim(fields, topic, sentiment)
        t = event_t + rng.randint(3 * MINUTE_MS, 8 * HOUR_MS)
        self._survey(t, fields, before_next, len(self.interactions) - 1)

    def _nps(self, index: int | None, question: str, delay_hours: tuple[int, int]) -> None:
        rng = self.rng
        score = min(10, max(0, round(self.loyalty + rng.gauss(0.0, 0.9))))
        fields: dict[str, Any] = {"survey": "nps", "question_id": question, "score": score}
        if rng.random() < 0.2:
            fields["scale"] = "0-10"
        t = self.t
        if index is not None:
            touchpoint = self.events[index][1]
            fields["touchpoint"] = touchpoint
            fields["stage"] = SIMULATED_STAGE[touchpoint]
            if rng.random() < 0.9:
                fields["event_id"] = self.events[index][7]
            t = self.events[index][0]
        if rng.random() < (0.5 if score <= 6 else 0.3):
            sentiment = "neg" if score <= 6 else ("pos" if score >= 9 else "neu")
            self._add_verbatim(fields, self.topic if sentiment != "neu" else "general", sentiment)
        self._survey(t + rng.randint(delay_hours[0] * HOUR_MS, delay_hours[1] * HOUR_MS), fields)

    def _cxi(self, delay_hours: tuple[int, int]) -> None:
        rng = self.rng
        t = self.t + rng.randint(delay_hours[0] * HOUR_MS, delay_hours[1] * HOUR_MS)
        for step, question in enumerate(("cxi_effectiveness", "cxi_ease", "cxi_emotion")):
            score = min(5, max(1, round(1 + 0.4 * self.loyalty + rng.gauss(0.0, 0.6))))
            self._survey(t + step * 20 * SECOND_MS, {"survey": "cxi", "question_id": question, "score": score})

    def _kano(self) -> None:
        """Functional / dysfunctional answers: typical of the feature's planted category most of
        the time; in the null world, one uniform mix for every feature."""
        rng = self.rng
        self.kano_done = True
        planted = bool(self.world.plant.kano)
        t = self.t + rng.randint(1 * HOUR_MS, 72 * HOUR_MS)
        features = list(KANO_FEATURES[self.product_line].items())
        rng.shuffle(features)
        for step, (feature, category) in enumerate(features[: rng.randint(3, 4)]):
            if planted and rng.random() < KANO_TYPICAL_SHARE:
                functional, dysfunctional = rng.choice(KANO_TYPICAL[category])
            else:
                functional, dysfunctional = rng.randint(1, 5), rng.randint(1, 5)
            fields = {
                "survey": "kano",
                "question_id": feature,
                "score": functional,
                "dysfunctional_score": dysfunctional,
            }
            self._survey(t + step * 30 * SECOND_MS, fields)

    def _importance(self) -> None:
        rng = self.rng
        self.importance_done = True
        levels = self.world.importance
        t = self.t + rng.randint(1 * HOUR_MS, 72 * HOUR_MS)
        attributes = list(levels)
        rng.shuffle(attributes)
        for step, touchpoint in enumerate(attributes[: rng.randint(5, len(attributes))]):
            score = pick(rng, _IMPORTANCE_TABLES[levels[touchpoint]])
            fields = {
                "survey": "importance",
                "question_id": touchpoint,
                "score": score,
                "touchpoint": touchpoint,
            }
            self._survey(t + step * 15 * SECOND_MS, fields)

    def _add_verbatim(self, fields: dict[str, Any], topic: str, sentiment: str) -> None:
        rng = self.rng
        language = self.language
        if topic == "billing" and self.emerging_incident and rng.random() < 0.85:
            text = rng.choice(EMERGING_VERBATIMS[language][sentiment])
        else:
            bank = VERBATIMS[language]
            by_sentiment = bank.get(topic, bank["general"])
            text = rng.choice(by_sentiment.get(sentiment) or bank["general"][sentiment])
        if "{n}" in text:
            text = text.replace("{n}", str(rng.randint(2, 45)))
        if self.pii_rng is not None and self.pii_rng.random() < self.world.pii_rate:
            kind, planted = pii.draw(self.pii_rng)
            text = pii.embed(self.pii_rng, language, kind, planted, text)
            fields["_pii"] = (kind, planted)
        fields["verbatim"] = text
        fields["language"] = language

    def _finish_surveys(self) -> None:
        """Place answers without event_id before the customer's next event (so the pipeline can
        attach them by time), and drop answers not yet given at the end of the period."""
        events, end = self.events, self.world.end_ms
        kept = []
        for survey in self.surveys:
            t, fields, rated, interaction = survey
            if rated >= 0:
                event_t = events[rated][0]
                next_t = events[rated + 1][0] if rated + 1 < len(events) else end
                if next_t - event_t < 2 * SECOND_MS:
                    fields["event_id"] = events[rated][7]
                else:
                    t = min(t, event_t + (next_t - event_t) * 3 // 4)
            if t < end:
                survey[0] = t
                kept.append(survey)
                if interaction >= 0:
                    self.interactions[interaction].scores[fields["survey"]] = fields["score"]
        self.surveys = kept
        answered = {survey[1]["response_id"] for survey in kept}
        self.pii = [planted for planted in self.pii if planted[0] in answered]
