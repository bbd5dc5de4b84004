"""Synthetic customer journeys with known, planted effects (`parcours generate`).

Why a simulator rather than random rows: the analyses downstream (moments of truth, drop-offs,
churn alerts, weak signals in verbatims, revenue by NPS category) can only be tested against data
whose answers are known. So customers are simulated forward in time, one at a time, through the
lifecycle of the journey configuration; a handful of effects are planted at known strengths, and
`truth.json` records them. Everything else is noise on purpose: skipped stages, loops, channel
switches, silent churn, survey non-response, several time-zone offsets.

What is planted (the numbers live in the constants below and are copied into `truth.json`):

* two **moments of truth** (`delivery`, `support_call`): often below expectations (low CSAT), and a
  bad experience there makes customers leave (32 % after one, 59 % after two, as in the PwC study
  the seed articles quote), while a bad experience elsewhere barely matters;
* two **drop-off stages** (`consideration`, `activation`) where a visit ends the journey far more
  often than at the other stages;
* **NPS that follows experience**: detractors cancel more at renewal, promoters spend more;
* **emerging complaint terms** ("facture erronée", "double charge"...) absent before a given day
  and growing after it;
* an optional **churn spike** at one stage from one day (for alert tests);
* optional **bad records** (contract violations with known reason codes), exact **duplicates**
  and **late** (out-of-order) records.

Determinism: every customer has its own `random.Random` seeded from (seed, customer index), a
second one plants the bad records, so the same arguments give the same bytes, and the valid data
does not change when only the bad-record rates change. No wall clock, no set iteration, no `hash()`.

Memory: lines are spilled to per-day bucket files keyed by delivery time and each day is sorted
on its own, so a million events never sit in memory as objects.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from parcours.config import JourneyConfig
from parcours.schemas.contracts import SCHEMA_VERSION, Reason

SECOND_MS = 1_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

DISCOVERY, CONSIDERATION, PURCHASE, ACTIVATION, USAGE, SUPPORT, RENEWAL = (
    "discovery",
    "consideration",
    "purchase",
    "activation",
    "usage",
    "support",
    "renewal",
)

# --------------------------------------------------------------------------------------------
# Planted effects: one place, copied into truth.json.
# --------------------------------------------------------------------------------------------

MOMENTS_OF_TRUTH = ("delivery", "support_call")

# Share of customers who leave after their first and second bad moment-of-truth experience
# (cumulative), and the chance of leaving after a moment of truth that was not bad.
LEAVE_AFTER_BAD = {0: 0.02, 1: 0.32, 2: 0.59}
# Per-experience hazards giving those cumulative shares: h2 = (0.59 - 0.32) / (1 - 0.32).
_HAZARD_FIRST_BAD = LEAVE_AFTER_BAD[1]
_HAZARD_LATER_BAD = (LEAVE_AFTER_BAD[2] - LEAVE_AFTER_BAD[1]) / (1 - LEAVE_AFTER_BAD[1])
# Elsewhere a bad experience has a weak effect on staying.
LEAVE_AFTER_BAD_ELSEWHERE = 0.04
# Share of leavers who cancel explicitly; the others just stop (silent churn).
EXPLICIT_LEAVE_SHARE = 0.8

# Probability that a visit to a stage is the customer's last one (they abandon the journey).
DROP_OFF = {CONSIDERATION: 0.30, ACTIVATION: 0.22}
BASE_ABANDON = 0.05

BELOW, MEETS, ABOVE, DELIGHT = 0, 1, 2, 3
EXPERIENCE_LEVELS = ("below", "meets", "above", "delight")
EXPERIENCE_MIX_MOMENT = (0.34, 0.36, 0.20, 0.10)
EXPERIENCE_MIX_OTHER = (0.07, 0.38, 0.35, 0.20)
# CSAT (1-5) given the experience level; a bad experience is a CSAT of 1 or 2 (95 %).
CSAT_GIVEN_EXPERIENCE = (
    {1: 0.55, 2: 0.40, 3: 0.05},
    {2: 0.10, 3: 0.65, 4: 0.25},
    {3: 0.05, 4: 0.80, 5: 0.15},
    {4: 0.05, 5: 0.95},
)
# How an experience moves the customer's latent loyalty (0-10, the NPS they would give).
_LOYALTY_STEP_MOMENT = (-2.0, -0.1, 0.3, 0.9)
_LOYALTY_STEP_OTHER = (-0.8, 0.0, 0.2, 0.5)

PROMOTER_FROM, DETRACTOR_BELOW = 8.5, 6.5  # on latent loyalty
REVENUE_MULTIPLIER = {"detractor": 0.8, "passive": 1.0, "promoter": 1.3}
# Detractors leave more: at each invoice, a chance to cancel of a + b * (6.5 - loyalty).
DETRACTOR_MONTHLY_CANCEL = (0.05, 0.04)
# At renewal, the chance to cancel is (a + b * max(0, 7 - loyalty)) * the segment factor.
RENEWAL_CANCEL = (0.03, 0.06)
ADD_ON_PER_USAGE_SESSION = {"detractor": 0.01, "passive": 0.025, "promoter": 0.06}

EMERGING_TERMS = {
    "fr": ("facture erronée", "prélèvement en double"),
    "en": ("double charge", "wrong invoice"),
}
EMERGING_FROM_SHARE = 0.6  # of the period, when not given
# Chance that an invoice goes wrong: a small constant, plus a ramp from the emerging day.
_BILLING_INCIDENT_BASE = 0.01
_BILLING_INCIDENT_RAMP = (0.06, 0.5)  # at the emerging day, at the end of the period

KANO_FEATURES = {
    "mobile": {
        "5g_access": "one_dimensional",
        "esim": "attractive",
        "network_coverage": "must_be",
        "paper_invoice": "indifferent",
    },
    "fibre": {
        "wifi_6_box": "attractive",
        "installation_slot_choice": "one_dimensional",
        "stable_connection": "must_be",
        "tv_option": "indifferent",
    },
    "energie": {
        "green_energy": "attractive",
        "fixed_price": "one_dimensional",
        "billing_accuracy": "must_be",
        "smart_meter_app": "indifferent",
    },
}
# (functional, dysfunctional) answer codes: 1 like, 2 expect, 3 neutral, 4 live with, 5 dislike.
_KANO_TYPICAL = {
    "attractive": ((1, 3), (1, 4)),
    "one_dimensional": ((1, 5),),
    "must_be": ((2, 5), (3, 5)),
    "indifferent": ((3, 3), (3, 4)),
}
_KANO_TYPICAL_SHARE = 0.75

# Importance (1-5) of touchpoints: the moments of truth matter most and satisfy least.
_IMPORTANCE_DISTRIBUTIONS = {
    "high": {5: 0.6, 4: 0.3, 3: 0.1},
    "rather_high": {5: 0.3, 4: 0.45, 3: 0.2, 2: 0.05},
    "medium": {5: 0.15, 4: 0.35, 3: 0.35, 2: 0.15},
    "low": {5: 0.05, 4: 0.2, 3: 0.4, 2: 0.25, 1: 0.1},
}
IMPORTANCE = {
    "delivery": "high",
    "support_call": "high",
    "invoice": "rather_high",
    "installation": "rather_high",
    "checkout": "medium",
    "app_session": "medium",
    "store_visit": "low",
    "loyalty_reward": "low",
}

# --------------------------------------------------------------------------------------------
# Customers: segments, product lines, channel habits.
# --------------------------------------------------------------------------------------------

SEGMENTS = {"particulier": 0.68, "pro": 0.20, "premium": 0.12}
PRODUCT_LINES = {"mobile": 0.45, "fibre": 0.35, "energie": 0.20}
_PERSONAS = {  # channel habits, by segment
    "particulier": {"digital": 0.45, "phygital": 0.25, "phone": 0.12, "social": 0.18},
    "pro": {"digital": 0.35, "phygital": 0.15, "phone": 0.45, "social": 0.05},
    "premium": {"digital": 0.40, "phygital": 0.40, "phone": 0.15, "social": 0.05},
}
_CHANNEL_AFFINITY = {
    "digital": {
        "web": 3,
        "app": 4,
        "store": 0.5,
        "call_center": 0.5,
        "email": 2,
        "sms": 1,
        "social": 1,
        "chat": 2,
    },
    "phygital": {
        "web": 2,
        "app": 1.5,
        "store": 4,
        "call_center": 1.5,
        "email": 2,
        "sms": 1.5,
        "social": 0.5,
        "chat": 0.5,
    },
    "phone": {
        "web": 1.5,
        "app": 1,
        "store": 1,
        "call_center": 5,
        "email": 1.5,
        "sms": 2,
        "social": 0.3,
        "chat": 0.5,
    },
    "social": {
        "web": 2,
        "app": 3,
        "store": 0.5,
        "call_center": 0.5,
        "email": 1,
        "sms": 1,
        "social": 5,
        "chat": 3,
    },
}
_LANGUAGES = {"fr": 0.8, "en": 0.2}
# Where customers live: their devices stamp local time. Paris follows EU summer time.
_TIMEZONES = {"Europe/Paris": 0.92, "+04:00": 0.05, "-04:00": 0.03}

_TERM_DAYS = {"mobile": 30, "fibre": 30, "energie": 45}
_MONTHLY_PRICE = {"mobile": (9.99, 39.99), "fibre": (29.99, 49.99), "energie": (59.0, 179.0)}
_SEGMENT_PRICE = {"particulier": 1.0, "pro": 1.6, "premium": 2.2}
_SEGMENT_CANCEL = {"particulier": 1.0, "pro": 0.8, "premium": 0.45}  # premium renews more
_USAGE_GAP_HOURS = {"mobile": 12.0, "fibre": 22.0, "energie": 60.0}

# Touchpoint -> the stage the simulation means it for; the configuration must agree.
_SIMULATED_STAGE = {
    "ad_impression": DISCOVERY,
    "social_post": DISCOVERY,
    "search_result": DISCOVERY,
    "referral_visit": DISCOVERY,
    "newsletter_open": DISCOVERY,
    "home_page": CONSIDERATION,
    "product_page": CONSIDERATION,
    "price_comparison": CONSIDERATION,
    "review_read": CONSIDERATION,
    "store_visit": CONSIDERATION,
    "advisor_chat": CONSIDERATION,
    "quote_request": CONSIDERATION,
    "cart": PURCHASE,
    "checkout": PURCHASE,
    "store_checkout": PURCHASE,
    "sales_call": PURCHASE,
    "order_confirmation": PURCHASE,
    "welcome_email": ACTIVATION,
    "account_setup": ACTIVATION,
    "delivery": ACTIVATION,
    "installation": ACTIVATION,
    "first_login": ACTIVATION,
    "app_session": USAGE,
    "feature_use": USAGE,
    "invoice": USAGE,
    "loyalty_reward": USAGE,
    "help_center": SUPPORT,
    "support_call": SUPPORT,
    "support_chat": SUPPORT,
    "complaint": SUPPORT,
    "repair": SUPPORT,
    "renewal_reminder": RENEWAL,
    "renewal_offer": RENEWAL,
    "renewal_checkout": RENEWAL,
    "cancellation_request": RENEWAL,
}

_TOUCHPOINT_CHANNELS: dict[str, dict[str, float]] = {
    "ad_impression": {"social": 3, "web": 3, "app": 1},
    "social_post": {"social": 1},
    "search_result": {"web": 1},
    "referral_visit": {"web": 2, "app": 1},
    "newsletter_open": {"email": 1},
    "home_page": {"web": 3, "app": 2},
    "product_page": {"web": 3, "app": 2},
    "price_comparison": {"web": 1},
    "review_read": {"web": 2, "social": 1},
    "store_visit": {"store": 1},
    "advisor_chat": {"chat": 3, "app": 1},
    "quote_request": {"web": 2, "call_center": 2, "store": 1},
    "cart": {"web": 3, "app": 2, "store": 1},
    "checkout": {"web": 3, "app": 2},
    "store_checkout": {"store": 1},
    "sales_call": {"call_center": 1},
    "order_confirmation": {"email": 3, "sms": 1},
    "welcome_email": {"email": 1},
    "account_setup": {"web": 2, "app": 3},
    "delivery": {"other": 3, "store": 1},
    "installation": {"other": 1},
    "first_login": {"app": 3, "web": 1},
    "app_session": {"app": 1},
    "feature_use": {"app": 4, "web": 1},
    "invoice": {"email": 3, "app": 2, "web": 1},
    "loyalty_reward": {"app": 2, "email": 1, "sms": 1},
    "help_center": {"web": 2, "app": 2},
    "support_call": {"call_center": 1},
    "support_chat": {"chat": 3, "app": 1},
    "complaint": {"call_center": 2, "email": 2, "web": 2, "social": 1, "store": 1},
    "repair": {"store": 2, "other": 1},
    "renewal_reminder": {"email": 3, "sms": 2},
    "renewal_offer": {"web": 2, "app": 2, "call_center": 1},
    "renewal_checkout": {"web": 2, "app": 2, "store": 1, "call_center": 1},
    "cancellation_request": {"call_center": 3, "web": 2, "store": 1, "email": 1},
}
# Producers that stamp the customer's local time (the others send UTC), and those sending ms.
_LOCAL_TIME_CHANNELS = frozenset({"web", "app", "chat", "store"})
_MILLISECOND_CHANNELS = frozenset({"web", "app"})

_ACTIVE_HOURS = (7, 23)  # local hours when sessions start
_STORE_HOURS = (10, 19)
_CALL_HOURS = (9, 20)
_SESSION_MIN_GAP_MS = 45 * MINUTE_MS  # well above the default 30 min inactivity gap

_CSAT_RATED = {  # touchpoint -> chance of a CSAT survey after it
    "delivery": 0.5,
    "support_call": 0.5,
    "support_chat": 0.4,
    "help_center": 0.12,
    "repair": 0.3,
    "installation": 0.35,
    "store_visit": 0.2,
    "advisor_chat": 0.25,
    "checkout": 0.15,
    "store_checkout": 0.25,
    "sales_call": 0.2,
    "renewal_checkout": 0.15,
}
_CES_AFTER = {"support_call": 0.45, "support_chat": 0.45, "help_center": 0.2}
_CSAT_WITHOUT_EVENT_ID = 0.15

_TOPIC = {
    "delivery": "delivery",
    "installation": "installation",
    "support_call": "support",
    "support_chat": "support",
    "help_center": "support",
    "repair": "support",
    "store_visit": "store",
    "advisor_chat": "store",
    "checkout": "purchase",
    "store_checkout": "purchase",
    "sales_call": "purchase",
    "renewal_checkout": "price",
    "invoice": "billing",
}

# Short verbatims by language, topic and sentiment. None of them contains an emerging term.
_VERBATIMS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "fr": {
        "delivery": {
            "neg": (
                "Livraison avec {n} jours de retard et aucun suivi.",
                "Colis arrivé abîmé, j'ai dû tout renvoyer.",
                "Le livreur n'est jamais passé, colis récupéré au dépôt.",
            ),
            "pos": ("Livraison rapide, colis bien emballé.", "Reçu dès le lendemain, parfait."),
        },
        "installation": {
            "neg": (
                "Le technicien n'est pas venu au rendez-vous.",
                "Installation bâclée, la box ne marchait pas le soir même.",
                "Trois rendez-vous pour une simple installation.",
            ),
            "pos": (
                "Technicien ponctuel et très professionnel.",
                "Installation rapide, tout a marché du premier coup.",
            ),
        },
        "support": {
            "neg": (
                "J'ai attendu {n} minutes au téléphone pour rien.",
                "J'ai rappelé et toujours aucune solution.",
                "On me renvoie d'un service à l'autre, c'est épuisant.",
            ),
            "pos": (
                "Conseiller très à l'écoute, problème réglé en un appel.",
                "Réponse claire et rapide, merci.",
            ),
        },
        "billing": {
            "neg": (
                "Je ne comprends rien à ma facture.",
                "Des frais de {n} € sont apparus sans explication.",
                "Le montant prélevé ne correspond pas à mon offre.",
            ),
            "pos": ("Facture claire et conforme à mon offre.",),
        },
        "purchase": {
            "neg": (
                "Commande compliquée, le paiement a échoué deux fois.",
                "Le site a planté pendant la commande.",
            ),
            "pos": ("Commande simple et rapide.", "Souscription en ligne en quelques minutes."),
        },
        "store": {
            "neg": (
                "Beaucoup trop d'attente en boutique.",
                "Vendeur pressé qui ne connaissait pas les offres.",
            ),
            "pos": ("Vendeur de bon conseil en boutique.", "Accueil chaleureux en magasin."),
        },
        "price": {
            "neg": ("Trop cher pour ce que c'est.", "Le prix a augmenté sans prévenir."),
            "pos": ("Bon rapport qualité-prix.", "Offre de renouvellement intéressante."),
        },
        "general": {
            "neg": (
                "Très déçu, je vais sûrement partir à la concurrence.",
                "Service client injoignable, je ne recommande pas.",
            ),
            "neu": ("Correct, sans plus.", "Rien à signaler.", "Ça fait le travail."),
            "pos": (
                "Je recommande sans hésiter.",
                "Très satisfait depuis le début.",
                "Réseau fiable et appli pratique.",
            ),
        },
    },
    "en": {
        "delivery": {
            "neg": (
                "Delivery was {n} days late and tracking never updated.",
                "The parcel arrived damaged.",
                "The courier never came, I had to pick it up myself.",
            ),
            "pos": ("Fast delivery, well packed.", "Arrived the next day, great."),
        },
        "installation": {
            "neg": (
                "The technician missed the appointment.",
                "Sloppy installation, the box did not work that evening.",
            ),
            "pos": ("Punctual and very professional technician.", "Quick installation, worked first time."),
        },
        "support": {
            "neg": (
                "Waited {n} minutes on hold and nothing was solved.",
                "Called again and still no fix.",
                "Passed from one department to another, exhausting.",
            ),
            "pos": ("Friendly agent, fixed on the first call.", "Clear and quick answer, thanks."),
        },
        "billing": {
            "neg": (
                "I can't make sense of my bill.",
                "A {n} € fee appeared with no explanation.",
                "The amount taken does not match my plan.",
            ),
            "pos": ("Clear bill, matches my plan.",),
        },
        "purchase": {
            "neg": ("Ordering was a pain, payment failed twice.", "The website crashed during checkout."),
            "pos": ("Simple and quick ordering.", "Signed up online in minutes."),
        },
        "store": {
            "neg": ("Far too long a wait in the shop.", "Rushed salesperson who did not know the offers."),
            "pos": ("Helpful advice in the shop.", "Warm welcome in store."),
        },
        "price": {
            "neg": ("Too expensive for what it is.", "The price went up without notice."),
            "pos": ("Good value for money.", "Nice renewal offer."),
        },
        "general": {
            "neg": (
                "Very disappointed, probably switching provider.",
                "Customer service unreachable, would not recommend.",
            ),
            "neu": ("Fine, nothing more.", "Nothing to report.", "Does the job."),
            "pos": (
                "Would recommend without hesitation.",
                "Very happy since day one.",
                "Reliable network and handy app.",
            ),
        },
    },
}
_EMERGING_VERBATIMS = {
    "fr": {
        "neg": (
            "Encore une facture erronée, {n} € de trop.",
            "J'ai eu un prélèvement en double ce mois-ci.",
            "Facture erronée puis prélèvement en double, inadmissible.",
            "Toujours pas remboursé du prélèvement en double.",
        ),
        "neu": ("Appel pour une facture erronée, on verra si c'est corrigé.",),
        "pos": (
            "Prélèvement en double remboursé rapidement, merci.",
            "Facture erronée corrigée en un appel.",
        ),
    },
    "en": {
        "neg": (
            "I got a double charge on my card this month.",
            "Wrong invoice again, {n} € too much.",
            "Double charge and a wrong invoice, unacceptable.",
            "Still waiting for a refund of the double charge.",
        ),
        "neu": ("Called about a wrong invoice, we will see if it gets fixed.",),
        "pos": ("Double charge refunded quickly, thanks.", "Wrong invoice fixed on the first call."),
    },
}

_FEATURES = {
    "mobile": ("data_usage", "roaming", "esim_transfer", "plan_options"),
    "fibre": ("wifi_settings", "tv_guide", "speed_test", "parental_control"),
    "energie": ("consumption_chart", "meter_reading", "payment_schedule", "eco_tips"),
}
_ADD_ONS = {
    "mobile": (("data_boost", 4.99), ("international_pass", 9.99)),
    "fibre": (("tv_pack", 7.99), ("wifi_extender", 3.0)),
    "energie": (("maintenance_plan", 8.5), ("green_option", 2.5)),
}
_SUPPORT_REASONS = {
    "mobile": (("network", 3), ("device", 3), ("contract", 2), ("billing", 1)),
    "fibre": (("network", 5), ("device", 2), ("contract", 1), ("billing", 1)),
    "energie": (("meter", 3), ("contract", 2), ("billing", 2)),
}
_CARRIERS = ("Colissimo", "Chronopost", "DPD", "Relais Colis")
_PAYMENT = ("card", "sepa_debit", "paypal")
_OFFERS = {
    "mobile": ("Forfait 20 Go", "Forfait 100 Go", "Forfait 5G 200 Go"),
    "fibre": ("Fibre Essentielle", "Fibre Power", "Fibre Ultra"),
    "energie": ("Électricité Verte", "Gaz Fixe 2 ans", "Duo Électricité Gaz"),
}


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChurnSpike:
    """From `from_day` (0 = the start date) on, the chance of leaving at `stage` is multiplied."""

    stage: str
    from_day: int
    factor: float

    def __post_init__(self) -> None:
        if self.from_day < 0:
            raise ValueError(f"churn spike from_day must be >= 0, got {self.from_day}")
        if not self.factor > 0:
            raise ValueError(f"churn spike factor must be > 0, got {self.factor}")


@dataclass(frozen=True, slots=True)
class GenerationSummary:
    touchpoints_path: Path
    surveys_path: Path
    truth_path: Path
    n_touchpoints: int  # valid, unique events (planted bad lines and duplicates not counted)
    n_surveys: int
    n_customers: int

    @property
    def paths(self) -> tuple[Path, Path, Path]:
        return self.touchpoints_path, self.surveys_path, self.truth_path


def generate_dataset(
    out_dir: Path,
    customers: int,
    days: int,
    seed: int,
    *,
    config: JourneyConfig,
    start: date = date(2026, 1, 5),
    churn_spike: ChurnSpike | None = None,
    invalid_rate: float = 0.0,
    duplicate_rate: float = 0.0,
    late_rate: float = 0.0,
    emerging_from_day: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> GenerationSummary:
    """Write `touchpoints.jsonl`, `surveys.jsonl` and `truth.json` into `out_dir`.

    Lines come in event-time order, as a stream would deliver them; the planted late lines are
    the only exception. With all rates at 0 every line is a valid, unique record.
    """
    _check_arguments(customers, days, config, churn_spike, invalid_rate, duplicate_rate, late_rate)
    if emerging_from_day is None:
        emerging_from_day = round(days * EMERGING_FROM_SHARE)
    if not 0 <= emerging_from_day < days:
        raise ValueError(f"emerging_from_day must be within the {days} days, got {emerging_from_day}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = _World(
        seed=seed,
        days=days,
        end_ms=days * DAY_MS,
        emerging_from_ms=emerging_from_day * DAY_MS,
        spike=churn_spike,
        clock=_Clock(start, days),
    )
    planter = _Planter(config, invalid_rate, duplicate_rate, late_rate)
    truth = _Truth()
    encoder = msgspec.json.Encoder()
    paths = (out_dir / "touchpoints.jsonl", out_dir / "surveys.jsonl", out_dir / "truth.json")
    with tempfile.TemporaryDirectory(prefix=".generate-", dir=out_dir) as spill:
        touchpoints = _TimeOrderedLines(Path(spill), "touchpoints", _SPILL_EVERY_LINES)
        surveys = _TimeOrderedLines(Path(spill), "surveys", _SPILL_EVERY_LINES)
        ids = _UniqueIds(seed)
        done = 0
        for index in range(customers):
            journey = _Journey(world, index, ids.customer_id(index))
            journey.run()
            plant_rng = random.Random(f"parcours:{seed}:{index}:plant")
            for when, record in journey.touchpoint_records():
                planter.add(touchpoints, "touchpoints", when, record, encoder.encode(record), plant_rng)
            for when, record in journey.survey_records():
                planter.add(surveys, "surveys", when, record, encoder.encode(record), plant_rng)
            truth.add(journey)
            done += 1
            if progress is not None and done == 250:
                progress(done)
                done = 0
        if progress is not None and done:
            progress(done)
        touchpoints.write(paths[0])
        surveys.write(paths[1])
    document = truth.document(world, customers, start, emerging_from_day, churn_spike, planter, config)
    paths[2].write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return GenerationSummary(*paths, truth.n_touchpoints, truth.n_surveys, customers)


def _check_arguments(
    customers: int,
    days: int,
    config: JourneyConfig,
    spike: ChurnSpike | None,
    invalid_rate: float,
    duplicate_rate: float,
    late_rate: float,
) -> None:
    if customers < 1:
        raise ValueError(f"customers must be >= 1, got {customers}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    for name, rate in (
        ("invalid_rate", invalid_rate),
        ("duplicate_rate", duplicate_rate),
        ("late_rate", late_rate),
    ):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {rate}")
    mismatched = [
        f"touchpoints.{touchpoint}: the generator needs stage '{stage}', got '{config.stage_of(touchpoint)}'"
        for touchpoint, stage in _SIMULATED_STAGE.items()
        if config.stage_of(touchpoint) != stage
    ]
    if mismatched:
        raise ValueError("the configuration does not map the generator's touchpoints: " + "; ".join(mismatched))
    if spike is not None:
        if spike.stage not in config.stages:
            raise ValueError(f"churn spike stage '{spike.stage}' is not a stage (stages: {list(config.stages)})")
        if spike.from_day >= days:
            raise ValueError(f"churn spike from_day {spike.from_day} is not within the {days} days")


# --------------------------------------------------------------------------------------------
# Time: simulation time is integer milliseconds since `start` 00:00 UTC.
# --------------------------------------------------------------------------------------------


class _Clock:
    """Formats simulation time as RFC 3339 with the offset a given producer would use."""

    _FIRST_DAY = -2  # local times can fall on the day before the start

    def __init__(self, start: date, days: int) -> None:
        self.dates = [(start + timedelta(days=day)).isoformat() + "T" for day in range(self._FIRST_DAY, days + 8)]
        self.hms = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
        # EU summer time: from the last Sunday of March to the last Sunday of October, 01:00 UTC.
        self.paris_switches: list[int] = []
        for year in range(start.year, (start + timedelta(days=days + 8)).year + 1):
            for month in (3, 10):
                last = date(year, month, 31)
                last -= timedelta(days=(last.weekday() + 1) % 7)
                self.paris_switches.append((last - start).days * DAY_MS + HOUR_MS)

    def paris_offset(self, t: int) -> int:
        return 2 * HOUR_MS if bisect.bisect_right(self.paris_switches, t) % 2 else HOUR_MS

    def stamp(self, t: int, offset_ms: int, suffix: str, millis: bool) -> str:
        day, rest = divmod(t + offset_ms, DAY_MS)
        seconds, ms = divmod(rest, SECOND_MS)
        text = self.dates[day - self._FIRST_DAY] + self.hms[seconds]
        if millis:
            text += f".{ms:03d}"
        return text + suffix


@functools.cache
def _offset_suffix(offset_ms: int) -> str:
    sign = "+" if offset_ms >= 0 else "-"
    minutes = abs(offset_ms) // MINUTE_MS
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True, slots=True)
class _World:
    seed: int
    days: int
    end_ms: int
    emerging_from_ms: int
    spike: ChurnSpike | None
    clock: _Clock


# --------------------------------------------------------------------------------------------
# One customer's journey
# --------------------------------------------------------------------------------------------


def _cumulative(weights: dict[Any, float]) -> tuple[tuple[Any, ...], list[float]]:
    keys = tuple(weights)
    total, cumulative = 0.0, []
    for key in keys:
        total += weights[key]
        cumulative.append(total)
    return keys, cumulative


def _pick(rng: random.Random, table: tuple[tuple[Any, ...], list[float]]) -> Any:
    keys, cumulative = table
    return keys[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]


_SEGMENT_TABLE = _cumulative(SEGMENTS)
_PRODUCT_TABLE = _cumulative(PRODUCT_LINES)
_PERSONA_TABLES = {segment: _cumulative(mix) for segment, mix in _PERSONAS.items()}
_LANGUAGE_TABLE = _cumulative(_LANGUAGES)
_TIMEZONE_TABLE = _cumulative(_TIMEZONES)
_EXPERIENCE_TABLES = {
    True: _cumulative(dict(enumerate(EXPERIENCE_MIX_MOMENT))),
    False: _cumulative(dict(enumerate(EXPERIENCE_MIX_OTHER))),
}
_CSAT_TABLES = tuple(_cumulative(scores) for scores in CSAT_GIVEN_EXPERIENCE)
_CHANNEL_TABLES = {
    persona: {
        touchpoint: _cumulative({ch: w * affinity.get(ch, 1.0) for ch, w in channels.items()})
        for touchpoint, channels in _TOUCHPOINT_CHANNELS.items()
    }
    for persona, affinity in _CHANNEL_AFFINITY.items()
}
_REASON_TABLES = {line: _cumulative(dict(reasons)) for line, reasons in _SUPPORT_REASONS.items()}
_IMPORTANCE_TABLES = {level: _cumulative(dist) for level, dist in _IMPORTANCE_DISTRIBUTIONS.items()}
# Relative chance that a session starts at each local hour (evenings are busiest).
_HOUR_WEIGHTS = dict(zip(range(7, 23), (1, 2, 3, 3, 3, 4, 4, 3, 3, 3, 4, 5, 6, 6, 5, 3), strict=True))


def _hour_table(low: int, high: int) -> tuple[tuple[Any, ...], list[float]]:
    return _cumulative({hour: weight for hour, weight in _HOUR_WEIGHTS.items() if low <= hour < high})


_HOUR_TABLES = {hours: _hour_table(*hours) for hours in (_ACTIVE_HOURS, _STORE_HOURS, _CALL_HOURS)}


class _End(Exception):
    """The customer's story stops: they left, or it runs past the end of the period."""


class _Journey:
    """A customer simulated forward in time through the lifecycle, with the planted effects."""

    def __init__(self, world: _World, index: int, customer_id: str) -> None:
        self.world = world
        self.rng = rng = random.Random(f"parcours:{world.seed}:{index}")
        self.customer_id = customer_id
        self.segment = _pick(rng, _SEGMENT_TABLE)
        self.product_line = _pick(rng, _PRODUCT_TABLE)
        self.persona = _pick(rng, _PERSONA_TABLES[self.segment])
        self.channels = _CHANNEL_TABLES[self.persona]
        self.language = _pick(rng, _LANGUAGE_TABLE)
        timezone = _pick(rng, _TIMEZONE_TABLE)
        self.fixed_offset = None if timezone == "Europe/Paris" else int(timezone[:3]) * HOUR_MS
        self.loyalty = min(10.0, max(0.0, rng.gauss(7.4, 1.3) + {"premium": 0.4, "pro": -0.2}.get(self.segment, 0.0)))
        self.monthly_price = round(rng.uniform(*_MONTHLY_PRICE[self.product_line]), 2)
        # (t, touchpoint, channel, stage, outcome, revenue, properties, event_id), in time order
        self.events: list[tuple] = []
        # [t, fields, index of the rated event when the answer must come before the next event]
        self.surveys: list[list] = []
        self.revenue = 0.0
        self.bad_moments = 0
        self.t = 0
        self._fresh = False  # the next event opens a session
        self.purchased_at: int | None = None
        self.purchase_amount = 0.0
        self.ended_by: str | None = None  # cancelled | abandoned | left_silently
        self.ended_at_stage: str | None = None
        self.topic = "general"  # of the last notable experience, for NPS verbatims
        self.support_reason = ""
        self.emerging_incident = False
        self.kano_done = self.importance_done = False
        self.due = self.reminder_at = self.next_invoice = 0

    # -- the lifecycle ------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._acquire()
            self._purchase()
            self._activate()
            self._live()
        except _End:
            pass
        self._finish_surveys()

    def _acquire(self) -> None:
        """Discovery and consideration, with loops back, until the customer buys or gives up."""
        rng = self.rng
        self.t = int(rng.random() * self.world.days * DAY_MS)
        self._start_session(self.t, first=True)
        direct = rng.random() < 0.25  # walks into a store, types the URL: no discovery
        if not direct:
            self._discovery_visit()
            if rng.random() < 0.12:  # impulse buyer: skips consideration
                return
        while True:
            self._consideration_visit()
            if rng.random() >= 0.2:
                return
            self._discovery_visit()  # back to an earlier stage: retargeting, a friend's post...

    def _discovery_visit(self) -> None:
        rng = self.rng
        for session in range(1 + (rng.random() < 0.35)):
            if session or self.events:
                self._start_session(self._after(30.0, min_hours=1.0))
            for _ in range(rng.randint(1, 3)):
                touchpoint = rng.choice(
                    (
                        "ad_impression",
                        "social_post",
                        "search_result",
                        "referral_visit",
                        "newsletter_open",
                        "ad_impression",
                    )
                )
                props = {"campaign": rng.choice(("spring_promo", "brand", "retargeting", "referral"))}
                self._emit(touchpoint, props=props)
        self._maybe_abandon(DISCOVERY)

    def _consideration_visit(self) -> None:
        rng = self.rng
        offers = _OFFERS[self.product_line]
        for session in range(rng.randint(1, 3)):
            if session or self.events:
                self._start_session(self._after(28.0, min_hours=1.0))
            if self.persona == "phygital" and rng.random() < 0.5:
                self._move_to_hours(_STORE_HOURS)
                index = self._emit("store_visit", props={"store_id": f"PAR-{rng.randint(1, 60):03d}"})
                self._after_other(CONSIDERATION, self._rate(index, "store_visit", CONSIDERATION))
                continue
            if rng.random() < 0.1:
                self._emit("search_result")  # a detour through discovery within the session
            if rng.random() < 0.5:
                self._emit("home_page")
            for _ in range(rng.randint(1, 3)):
                self._emit("product_page", props={"offer": rng.choice(offers)})
            if rng.random() < 0.35:
                self._emit("price_comparison")
            if rng.random() < 0.3:
                self._emit("review_read", props={"rating_seen": rng.randint(2, 5)})
            if rng.random() < 0.12:
                index = self._emit("advisor_chat")
                self._after_other(CONSIDERATION, self._rate(index, "advisor_chat", CONSIDERATION))
            if rng.random() < (0.45 if self.segment == "pro" else 0.06):
                self._emit("quote_request", props={"lines": rng.randint(2, 40) if self.segment == "pro" else 1})
        self._maybe_abandon(CONSIDERATION)

    def _purchase(self) -> None:
        rng = self.rng
        self._start_session(self._after(20.0, min_hours=1.0))
        if self.persona == "phygital" and rng.random() < 0.6:
            self._move_to_hours(_STORE_HOURS)
            self._emit("cart", channel="store")
            self._maybe_abandon(PURCHASE)
            buy, channel = "store_checkout", "store"
        elif self.persona == "phone" or (self.segment == "pro" and rng.random() < 0.4):
            self._move_to_hours(_CALL_HOURS)
            self._emit("sales_call", props={"offer": rng.choice(_OFFERS[self.product_line])})
            self._maybe_abandon(PURCHASE)
            self._start_session(self._after(20.0, min_hours=1.0))
            buy, channel = ("sales_call", "call_center") if rng.random() < 0.5 else ("checkout", "web")
        else:
            channel = rng.choice(("web", "web", "app"))
            self._emit("cart", channel=channel)
            self._maybe_abandon(PURCHASE)
            buy = "checkout"
        props: dict[str, Any] = {
            "order_id": f"O{rng.getrandbits(40):010X}",
            "payment_method": rng.choice(_PAYMENT),
            "offer": rng.choice(_OFFERS[self.product_line]),
        }
        if self.product_line == "mobile" and rng.random() < 0.35:
            # A handset, paid in monthly instalments with the plan.
            props["handset_instalment"] = rng.choice((8.0, 15.0, 25.0, 35.0))
            self.monthly_price = round(self.monthly_price + props["handset_instalment"], 2)
        amount = self.monthly_price * _SEGMENT_PRICE[self.segment]
        if self.product_line == "fibre":
            amount += 49.0  # activation fee
        amount = round(amount * REVENUE_MULTIPLIER[self._category()], 2)
        index = self._emit(buy, channel=channel, outcome="purchase", revenue=amount, props=props)
        self.purchased_at, self.purchase_amount = self.events[index][0], amount
        self._rate(index, buy, PURCHASE)
        self._emit("order_confirmation", props={"order_id": props["order_id"]})
        if rng.random() < 0.3:
            self._nps(index, "nps_after_purchase", delay_hours=(2, 72))

    def _activate(self) -> None:
        rng = self.rng
        abandons = rng.random() < self._spiked(ACTIVATION, DROP_OFF[ACTIVATION])
        if rng.random() < 0.08 and not abandons:  # activated in store: nothing to see here
            return
        self._start_session(self._after(2.0, min_hours=0.75))
        self._emit("welcome_email")
        line = self.product_line
        if line == "mobile" or (line == "fibre" and rng.random() < 0.7):
            self._start_session(self._after(40.0, min_hours=14.0))
            props: dict[str, Any] = {"carrier": rng.choice(_CARRIERS)}
            index = self._emit("delivery", props=props)
            level = self._rate(index, "delivery", ACTIVATION)
            props["delay_days"] = (rng.randint(2, 8), 0, 0, 0)[level]
            props["status"] = ("late", "delivered", "delivered", "delivered_early")[level]
            if level == BELOW and rng.random() < 0.4:
                props["status"] = "damaged"
            self._after_moment(ACTIVATION, level)
        if (line == "fibre" and rng.random() < 0.85) or (line == "energie" and rng.random() < 0.4):
            self._start_session(self._after(80.0, min_hours=20.0))
            self._move_to_hours((8, 18))
            index = self._emit("installation", props={"technician_team": f"T{rng.randint(1, 40):02d}"})
            self._after_other(ACTIVATION, self._rate(index, "installation", ACTIVATION))
        if abandons:
            self._end("abandoned", ACTIVATION)
        if rng.random() < 0.85:
            self._start_session(self._after(8.0, min_hours=0.75))
            self._emit("account_setup")
            if rng.random() < 0.9:
                self._emit("first_login")
        if rng.random() < 0.06:
            self._cxi(delay_hours=(24, 96))

    def _live(self) -> None:
        """Usage, interrupted by support visits and renewals, until the customer leaves."""
        rng = self.rng
        assert self.purchased_at is not None
        term = _TERM_DAYS[self.product_line] * DAY_MS
        self.due = self.purchased_at + term
        self.reminder_at = self.due - rng.randint(3, 7) * DAY_MS
        self.next_invoice = self.purchased_at + 30 * DAY_MS + rng.randint(0, 20) * HOUR_MS
        while True:
            if self._usage_visit() == RENEWAL:
                self._renewal()
                self.due += term
                self.reminder_at = self.due - rng.randint(3, 7) * DAY_MS

    def _usage_visit(self) -> str:
        """Returns RENEWAL when the term comes to an end, SUPPORT after a support visit."""
        rng = self.rng
        sessions_left = -1
        if rng.random() < self._spiked(USAGE, BASE_ABANDON):
            sessions_left = 1 + int(rng.expovariate(0.25))
        gap = _USAGE_GAP_HOURS[self.product_line] * (0.7 if self.segment == "premium" else 1.0)
        while True:
            candidate = self._after(gap, min_hours=2.0)
            if self.reminder_at <= min(candidate, self.next_invoice):
                return RENEWAL
            if self.next_invoice <= candidate:
                self._start_session(self.next_invoice)
                incident = self._invoice()
                self.next_invoice += 30 * DAY_MS
                if incident:
                    self._support("billing")
                    return SUPPORT
                continue
            self._start_session(candidate)
            self._usage_session()
            sessions_left -= 1
            if sessions_left == 0:
                self._end("abandoned", USAGE)
            if rng.random() < (0.035 if self.segment == "pro" else 0.022):
                self._support(_pick(rng, _REASON_TABLES[self.product_line]))
                return SUPPORT

    def _usage_session(self) -> None:
        rng = self.rng
        features = _FEATURES[self.product_line]
        if rng.random() < 0.8:
            self._emit("app_session", props={"app_version": rng.choice(("5.1.0", "5.2.1", "5.3.0"))})
        for _ in range(rng.randint(1, 5)):
            self._emit("feature_use", props={"feature": rng.choice(features)})
        if rng.random() < ADD_ON_PER_USAGE_SESSION[self._category()]:
            name, price = rng.choice(_ADD_ONS[self.product_line])
            self._emit("feature_use", outcome="add_on", revenue=price, props={"feature": name, "add_on": True})
        if rng.random() < 0.05:
            self._emit("loyalty_reward", props={"points": rng.choice((100, 250, 500))})
        if not self.kano_done and rng.random() < 0.012:
            self._kano()
        if not self.importance_done and rng.random() < 0.008:
            self._importance()

    def _invoice(self) -> bool:
        """An invoice; returns whether it went wrong (a billing incident)."""
        rng = self.rng
        amount = round(self.monthly_price * _SEGMENT_PRICE[self.segment], 2)
        props = {"invoice_id": f"F{rng.getrandbits(36):09X}", "amount": amount}
        self._emit("invoice", props=props)
        chance, emerging = _BILLING_INCIDENT_BASE, False
        from_ms, end_ms = self.world.emerging_from_ms, self.world.end_ms
        if self.t >= from_ms:
            low, high = _BILLING_INCIDENT_RAMP
            ramp = low + (high - low) * (self.t - from_ms) / max(1, end_ms - from_ms)
            emerging = rng.random() < ramp
        incident = emerging or rng.random() < chance
        self.emerging_incident = emerging
        if incident:
            props["status"] = "disputed"
            self.topic = "billing"
        if rng.random() < 0.25:
            self._nps(None, "nps_relational", delay_hours=(1, 48))
        if self.loyalty < DETRACTOR_BELOW:
            hazard = DETRACTOR_MONTHLY_CANCEL[0] + DETRACTOR_MONTHLY_CANCEL[1] * (DETRACTOR_BELOW - self.loyalty)
            if rng.random() < self._spiked(USAGE, hazard):
                self._cancel(USAGE, reason="dissatisfied")
        return incident

    def _support(self, reason: str) -> None:
        rng = self.rng
        self.support_reason = reason
        if reason != "billing":
            self.emerging_incident = False
        abandons = rng.random() < self._spiked(SUPPORT, BASE_ABANDON)
        self._start_session(self._after(6.0, min_hours=0.75))
        if rng.random() < 0.55:
            index = self._emit("help_center", props={"article": f"{reason}-{rng.randint(1, 30)}"})
            self._after_other(SUPPORT, self._rate(index, "help_center", SUPPORT))
            if rng.random() < 0.5:
                self._start_session(self._after(10.0, min_hours=0.75))
        phone = {"phone": 0.85, "phygital": 0.6, "digital": 0.35, "social": 0.3}[self.persona]
        if self.segment == "pro":
            phone = max(phone, 0.75)
        for contact in range(1, 5):
            if contact > 1:  # the same problem, again
                self._start_session(self._after(30.0, min_hours=2.0))
            if rng.random() < phone:
                self._move_to_hours(_CALL_HOURS)
                props = {"reason": reason, "wait_s": rng.randint(20, 1500), "contact": contact}
                index = self._emit("support_call", channel="call_center", props=props)
                level = self._rate(index, "support_call", SUPPORT)
                props["resolved"] = level != BELOW
            else:
                props = {"reason": reason, "contact": contact}
                index = self._emit("support_chat", props=props)
                level = self._rate(index, "support_chat", SUPPORT)
                props["resolved"] = level != BELOW
            if level == BELOW and rng.random() < 0.35:
                self._emit("complaint", outcome="complaint", props={"reason": reason})
            if self.events[index][1] == "support_call":
                self._after_moment(SUPPORT, level)
            else:
                self._after_other(SUPPORT, level)
            if level != BELOW or rng.random() > 0.55:
                break
        if reason == "device" and rng.random() < 0.5:
            self._start_session(self._after(24.0, min_hours=2.0))
            if self.persona == "phygital":
                self._move_to_hours(_STORE_HOURS)
                self._emit("store_visit", stage=SUPPORT, props={"purpose": "after_sales"})
            index = self._emit("repair", props={"ticket": f"R{rng.getrandbits(32):08X}"})
            self._after_other(SUPPORT, self._rate(index, "repair", SUPPORT))
        if rng.random() < 0.15:
            self._nps(len(self.events) - 1, "nps_after_support", delay_hours=(2, 72))
        if abandons:
            self._end("abandoned", SUPPORT)

    def _renewal(self) -> None:
        rng = self.rng
        self._start_session(self.reminder_at)
        self._emit("renewal_reminder", props={"term_end": self._date_of(self.due)})
        if rng.random() < 0.55:
            self._start_session(self._after(30.0, min_hours=2.0))
            self._emit("renewal_offer", props={"discount_pct": rng.choice((0, 5, 10, 15))})
        self._start_session(max(self._after(10.0, min_hours=2.0), self.due - rng.randint(0, 48) * HOUR_MS))
        low, slope = RENEWAL_CANCEL
        cancel = (low + slope * max(0.0, 7.0 - self.loyalty)) * _SEGMENT_CANCEL[self.segment]
        cancel = self._spiked(RENEWAL, cancel)
        lapse = self._spiked(RENEWAL, BASE_ABANDON)
        draw = rng.random()
        if draw < cancel:
            self._cancel(RENEWAL, reason="renewal_declined")
        if draw < cancel + lapse:
            self._end("abandoned", RENEWAL)
        amount = self.monthly_price * _SEGMENT_PRICE[self.segment] * _TERM_DAYS[self.product_line] / 30
        amount = round(amount * REVENUE_MULTIPLIER[self._category()], 2)
        index = self._emit(
            "renewal_checkout",
            outcome="renewal",
            revenue=amount,
            props={"term_days": _TERM_DAYS[self.product_line]},
        )
        self._after_other(RENEWAL, self._rate(index, "renewal_checkout", RENEWAL))
        if rng.random() < 0.25:
            self._nps(index, "nps_after_renewal", delay_hours=(2, 72))
        if rng.random() < 0.06:
            self._cxi(delay_hours=(24, 120))

    # -- experiences and leaving ---------------------------------------------------------------

    def _rate(self, index: int, touchpoint: str, stage: str) -> int:
        """Draw how the touchpoint went, move loyalty, and maybe ask for CSAT / CES."""
        rng = self.rng
        moment = touchpoint in MOMENTS_OF_TRUTH
        level = _pick(rng, _EXPERIENCE_TABLES[moment])
        step = (_LOYALTY_STEP_MOMENT if moment else _LOYALTY_STEP_OTHER)[level]
        self.loyalty = min(10.0, max(0.0, self.loyalty + step))
        if level in (BELOW, DELIGHT):
            topic = _TOPIC.get(touchpoint, "general")
            self.topic = "billing" if topic == "support" and self.support_reason == "billing" else topic
        if rng.random() < _CSAT_RATED.get(touchpoint, 0.0):
            score = _pick(rng, _CSAT_TABLES[level])
            self._rating_survey(index, touchpoint, stage, "csat", f"csat_{touchpoint}", score, None, 0.25)
        if rng.random() < _CES_AFTER.get(touchpoint, 0.0):
            if rng.random() < 0.2:
                scale, score = "1-5", (rng.randint(1, 2), 3, 4, 5)[level]
            else:
                scale = "1-7" if rng.random() < 0.3 else None  # some tools send the default explicitly
                low, high = ((1, 3), (4, 5), (5, 6), (6, 7))[level]
                score = rng.randint(low, high)
            self._rating_survey(index, touchpoint, stage, "ces", "ces_ease", score, scale, 0.2)
        return level

    def _after_moment(self, stage: str, level: int) -> None:
        if level == BELOW:
            self.bad_moments += 1
            hazard = _HAZARD_FIRST_BAD if self.bad_moments == 1 else _HAZARD_LATER_BAD
        else:
            hazard = LEAVE_AFTER_BAD[0]
        if self.rng.random() < self._spiked(stage, hazard):
            self._leave(stage)

    def _after_other(self, stage: str, level: int) -> None:
        if level == BELOW and self.rng.random() < self._spiked(stage, LEAVE_AFTER_BAD_ELSEWHERE):
            self._leave(stage)

    def _leave(self, stage: str) -> NoReturn:
        if self.purchased_at is None or self.rng.random() >= EXPLICIT_LEAVE_SHARE:
            self._end("left_silently", stage)
        self._cancel(stage, reason="experience")

    def _cancel(self, stage: str, reason: str) -> NoReturn:
        rng = self.rng
        if self.events[-1][2] == "call_center" and rng.random() < 0.5:
            channel = "call_center"  # cancels during the same call
        else:
            self._start_session(self._after(40.0, min_hours=1.0))
            channel = None
        refund = None
        if self.purchased_at is not None and self.t - self.purchased_at <= 14 * DAY_MS and stage != RENEWAL:
            refund = -self.purchase_amount  # withdrawal within 14 days: the order is refunded
        self._emit(
            "cancellation_request",
            channel=channel,
            stage=None if stage == RENEWAL else stage,
            outcome="cancellation",
            revenue=refund,
            props={"reason": reason},
        )
        self._end("cancelled", stage)

    def _maybe_abandon(self, stage: str) -> None:
        if self.rng.random() < self._spiked(stage, DROP_OFF.get(stage, BASE_ABANDON)):
            self._end("abandoned", stage)

    def _spiked(self, stage: str, probability: float) -> float:
        spike = self.world.spike
        if spike is not None and stage == spike.stage and self.t >= spike.from_day * DAY_MS:
            return min(0.95, probability * spike.factor)
        return probability

    def _end(self, how: str, stage: str) -> NoReturn:
        self.ended_by, self.ended_at_stage = how, stage
        raise _End

    def _category(self) -> str:
        if self.loyalty >= PROMOTER_FROM:
            return "promoter"
        return "detractor" if self.loyalty < DETRACTOR_BELOW else "passive"

    # -- time and events -----------------------------------------------------------------------

    def _after(self, mean_hours: float, min_hours: float) -> int:
        """A candidate start for the next session: hours to days after the current time."""
        return self.t + int((min_hours + self.rng.expovariate(1.0 / mean_hours)) * HOUR_MS)

    def _offset(self, t: int) -> int:
        return self.world.clock.paris_offset(t) if self.fixed_offset is None else self.fixed_offset

    def _start_session(self, t: int, hours: tuple[int, int] = _ACTIVE_HOURS, first: bool = False) -> None:
        """Open a session at `t` or, at night, the next morning; never within the inactivity gap."""
        if not first:
            t = max(t, self.t + _SESSION_MIN_GAP_MS)
        self.t = t
        self._move_to_hours(hours)
        self._fresh = True

    def _move_to_hours(self, hours: tuple[int, int]) -> None:
        """Move the current time into local opening hours (stores, call centre), never backwards."""
        t = self.t
        offset = self._offset(t)
        local = t + offset
        hour = local % DAY_MS // HOUR_MS
        low, high = hours
        if not low <= hour < high:
            day = local - local % DAY_MS + (DAY_MS if hour >= high else 0)
            local = day + _pick(self.rng, _HOUR_TABLES.get(hours) or _hour_table(low, high)) * HOUR_MS
            t = local + self.rng.randrange(3600) * SECOND_MS - offset
        t -= t % SECOND_MS
        if t >= self.world.end_ms:
            raise _End
        self.t = t

    def _emit(
        self,
        touchpoint: str,
        *,
        channel: str | None = None,
        stage: str | None = None,
        outcome: str | None = None,
        revenue: float | None = None,
        props: dict[str, Any] | None = None,
    ) -> int:
        rng = self.rng
        if self._fresh:
            self._fresh = False
        else:
            self.t += rng.randint(20, 300) * SECOND_MS  # minutes apart within a session
        if channel is None:
            channel = _pick(rng, self.channels[touchpoint])
        t = self.t + (rng.randrange(SECOND_MS) if channel in _MILLISECOND_CHANNELS else 0)
        if t >= self.world.end_ms:
            raise _End
        if revenue is not None:
            self.revenue += revenue
        event_id = _uuid(rng)
        self.events.append((t, touchpoint, channel, stage, outcome, revenue, props, event_id))
        return len(self.events) - 1

    def _date_of(self, t: int) -> str:
        return self.world.clock.dates[t // DAY_MS - _Clock._FIRST_DAY][:-1]

    # -- surveys -------------------------------------------------------------------------------

    def _survey(self, t: int, fields: dict[str, Any], before_next_of: int = -1) -> None:
        if (t + self._offset(t)) % DAY_MS < _ACTIVE_HOURS[0] * HOUR_MS:
            t += _ACTIVE_HOURS[0] * HOUR_MS  # people answer in the morning, not at 3 a.m.
        fields["response_id"] = _uuid(self.rng)
        self.surveys.append([t, fields, before_next_of])

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
        if rng.random() < _CSAT_WITHOUT_EVENT_ID:
            before_next = index  # answered before anything else happens: attachable by time
        else:
            fields["event_id"] = self.events[index][7]
        negative = score <= (2 if survey == "csat" else (2 if scale == "1-5" else 3))
        if negative:
            verbatim_chance *= 2
        if self.emerging_incident and _TOPIC.get(touchpoint) == "support":
            verbatim_chance = 0.8  # customers describe a new problem in their own words
        if rng.random() < verbatim_chance:
            sentiment = "neg" if negative else ("pos" if score >= (4 if survey == "csat" else 5) else "neu")
            topic = _TOPIC.get(touchpoint, "general")
            if topic == "support" and self.support_reason == "billing":
                topic = "billing"
            self._add_verbatim(fields, topic, sentiment)
        self._survey(event_t + rng.randint(3 * MINUTE_MS, 8 * HOUR_MS), fields, before_next)

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
            fields["stage"] = _SIMULATED_STAGE[touchpoint]
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
        rng = self.rng
        self.kano_done = True
        t = self.t + rng.randint(1 * HOUR_MS, 72 * HOUR_MS)
        features = list(KANO_FEATURES[self.product_line].items())
        rng.shuffle(features)
        for step, (feature, category) in enumerate(features[: rng.randint(3, 4)]):
            if rng.random() < _KANO_TYPICAL_SHARE:
                functional, dysfunctional = rng.choice(_KANO_TYPICAL[category])
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
        t = self.t + rng.randint(1 * HOUR_MS, 72 * HOUR_MS)
        attributes = list(IMPORTANCE)
        rng.shuffle(attributes)
        for step, touchpoint in enumerate(attributes[: rng.randint(5, len(attributes))]):
            score = _pick(rng, _IMPORTANCE_TABLES[IMPORTANCE[touchpoint]])
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
            text = rng.choice(_EMERGING_VERBATIMS[language][sentiment])
        else:
            bank = _VERBATIMS[language]
            by_sentiment = bank.get(topic, bank["general"])
            text = rng.choice(by_sentiment.get(sentiment) or bank["general"][sentiment])
        if "{n}" in text:
            text = text.replace("{n}", str(rng.randint(2, 45)))
        fields["verbatim"] = text
        fields["language"] = language

    def _finish_surveys(self) -> None:
        """Place answers without event_id before the customer's next event (so the pipeline can
        attach them by time), and drop answers not yet given at the end of the period."""
        events, end = self.events, self.world.end_ms
        kept = []
        for survey in self.surveys:
            t, fields, rated = survey
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
        self.surveys = kept

    # -- records -------------------------------------------------------------------------------

    def touchpoint_records(self) -> list[tuple[int, dict[str, Any]]]:
        clock, customer_id, segment = self.world.clock, self.customer_id, self.segment
        known_line = False
        records = []
        for t, touchpoint, channel, stage, outcome, revenue, props, event_id in self.events:
            if channel in _LOCAL_TIME_CHANNELS:
                offset = self._offset(t)
                stamp = clock.stamp(t, offset, _offset_suffix(offset), channel in _MILLISECOND_CHANNELS)
            else:
                stamp = clock.stamp(t, 0, "Z", False)
            record: dict[str, Any] = {
                "schema_version": SCHEMA_VERSION,
                "event_id": event_id,
                "customer_id": customer_id,
                "occurred_at": stamp,
                "channel": channel,
                "touchpoint": touchpoint,
            }
            if stage is not None:
                record["stage"] = stage
            elif channel == "call_center" and event_id[0] in "0123":
                record["stage"] = _SIMULATED_STAGE[touchpoint]  # the CRM sends the stage it knows
            known_line = known_line or _SIMULATED_STAGE[touchpoint] != DISCOVERY
            if known_line:
                record["product_line"] = self.product_line
            record["segment"] = segment
            if outcome is not None:
                record["outcome"] = outcome
            elif channel == "store":
                record["outcome"] = None  # the store system sends explicit nulls
            if revenue is not None:
                record["revenue"] = revenue
            if props:
                record["properties"] = props
            records.append((t, record))
        return records

    def survey_records(self) -> list[tuple[int, dict[str, Any]]]:
        clock = self.world.clock
        records = []
        for index, (t, fields, _) in enumerate(self.surveys):
            if index % 2:
                stamp = clock.stamp(t, 0, "Z" if index % 4 == 1 else "+00:00", False)
            else:
                offset = self._offset(t)
                stamp = clock.stamp(t, offset, _offset_suffix(offset), False)
            record = {
                "schema_version": SCHEMA_VERSION,
                "response_id": fields.pop("response_id"),
                "customer_id": self.customer_id,
                "answered_at": stamp,
                **fields,
            }
            records.append((t, record))
        records.sort(key=lambda item: item[0])
        return records


def _uuid(rng: random.Random) -> str:
    """A version-4-looking UUID from the journey's own generator (uuid4() would not replay)."""
    bits = rng.getrandbits(122)
    time_low, time_mid, time_high = bits >> 90, (bits >> 74) & 0xFFFF, (bits >> 62) & 0xFFF
    variant, node = 0x8000 | (bits >> 48) & 0x3FFF, bits & 0xFFFF_FFFF_FFFF
    return f"{time_low:08x}-{time_mid:04x}-4{time_high:03x}-{variant:04x}-{node:012x}"


class _UniqueIds:
    """Pseudonymous customer ids, stable for a seed, checked for collisions."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.seen: set[str] = set()

    def customer_id(self, index: int) -> str:
        salt = 0
        while True:
            digest = hashlib.blake2b(f"{self.seed}:{index}:{salt}".encode(), digest_size=6).hexdigest()
            customer_id = f"cus_{digest}"
            if customer_id not in self.seen:
                self.seen.add(customer_id)
                return customer_id
            salt += 1


# --------------------------------------------------------------------------------------------
# Bad records: invalid lines, exact duplicates, late lines
# --------------------------------------------------------------------------------------------

# Mutations of a valid record that `decode_batch` rejects, with the reason it must give.
_TOUCHPOINT_DEFECTS = (
    ("truncated", Reason.MALFORMED_JSON, 3),
    ("array", Reason.NOT_AN_OBJECT, 1),
    ("version_2", Reason.UNSUPPORTED_VERSION, 1),
    ("unknown_channel", Reason.UNKNOWN_ENUM, 2),
    ("missing_customer_id", Reason.SCHEMA_VIOLATION, 2),
    ("naive_timestamp", Reason.SCHEMA_VIOLATION, 2),
    ("revenue_as_text", Reason.SCHEMA_VIOLATION, 1),
    ("empty_event_id", Reason.SCHEMA_VIOLATION, 1),
    ("too_large", Reason.PAYLOAD_TOO_LARGE, 0.3),
    ("before_earliest", Reason.BEFORE_EARLIEST, 0.7),
    ("in_future", Reason.FUTURE_TIMESTAMP, 0.5),
    ("id_conflict", Reason.DUPLICATE_CONFLICT, 0.7),
)
_SURVEY_DEFECTS = (
    ("truncated", Reason.MALFORMED_JSON, 3),
    ("string", Reason.NOT_AN_OBJECT, 1),
    ("version_2", Reason.UNSUPPORTED_VERSION, 1),
    ("score_out_of_range", Reason.OUT_OF_RANGE, 3),
    ("unknown_survey", Reason.UNKNOWN_ENUM, 1),
    ("unknown_scale", Reason.UNKNOWN_ENUM, 1),
    ("missing_customer_id", Reason.SCHEMA_VIOLATION, 1),
    ("naive_timestamp", Reason.SCHEMA_VIOLATION, 1),
    ("score_as_text", Reason.SCHEMA_VIOLATION, 1),
    ("too_large", Reason.PAYLOAD_TOO_LARGE, 0.3),
    ("before_earliest", Reason.BEFORE_EARLIEST, 0.5),
    ("in_future", Reason.FUTURE_TIMESTAMP, 0.3),
    ("id_conflict", Reason.DUPLICATE_CONFLICT, 0.5),
)
# These records are valid alone; the pipeline rejects them with run context (earliest date,
# wall clock / watermark, ids already seen), so `decode_batch` lets them through.
CONTEXT_REASONS = (Reason.BEFORE_EARLIEST, Reason.FUTURE_TIMESTAMP, Reason.DUPLICATE_CONFLICT)
_UNKNOWN_CHANNELS = ("fax", "whatsapp", "kiosk", "Web")
_LATE_DELAY_MS = (1 * HOUR_MS, 47 * HOUR_MS)  # "within 2 days", and beyond any inactivity gap


class _Planter:
    """Writes each valid line, and around it the planted bad, duplicate and late lines."""

    def __init__(self, config: JourneyConfig, invalid_rate: float, duplicate_rate: float, late_rate: float) -> None:
        self.invalid_rate, self.duplicate_rate, self.late_rate = invalid_rate, duplicate_rate, late_rate
        self.active = invalid_rate > 0 or duplicate_rate > 0 or late_rate > 0
        self.max_payload_bytes = config.ingest.max_payload_bytes
        self.earliest_event_date = config.ingest.earliest_event_date
        self.encoder = msgspec.json.Encoder()
        self.defects = {
            "touchpoints": _cumulative_defects(_TOUCHPOINT_DEFECTS),
            "surveys": _cumulative_defects(_SURVEY_DEFECTS),
        }
        self.invalid: dict[str, dict[str, int]] = {"touchpoints": {}, "surveys": {}}
        self.duplicates = {"touchpoints": 0, "surveys": 0}
        self.late = {"touchpoints": 0, "surveys": 0}

    def add(
        self,
        out: _TimeOrderedLines,
        kind: str,
        t: int,
        record: dict[str, Any],
        line: bytes,
        rng: random.Random,
    ) -> None:
        if not self.active:
            out.add(t, line)
            return
        key = t
        if rng.random() < self.late_rate:
            key = t + rng.randint(*_LATE_DELAY_MS)
            self.late[kind] += 1
        out.add(key, line)
        if rng.random() < self.duplicate_rate:
            out.add(key + rng.randint(1 * SECOND_MS, 2 * HOUR_MS), line)  # a producer retry
            self.duplicates[kind] += 1
        if rng.random() < self.invalid_rate:
            defect, reason = _pick(rng, self.defects[kind])
            bad = self._defective(kind, defect, record, line, rng)
            delay = rng.randint(1 * SECOND_MS, 2 * HOUR_MS) if defect == "id_conflict" else 0
            out.add(key + delay, bad)
            counts = self.invalid[kind]
            counts[reason] = counts.get(reason, 0) + 1

    def _defective(self, kind: str, defect: str, record: dict[str, Any], line: bytes, rng: random.Random) -> bytes:
        id_field, time_field = ("event_id", "occurred_at") if kind == "touchpoints" else ("response_id", "answered_at")
        if defect == "truncated":
            return line[: rng.randint(1, len(line) - 2)]
        if defect == "array":
            return b"[" + line + b"]"
        if defect == "string":
            return self.encoder.encode(line.decode())
        bad = dict(record)
        if defect != "id_conflict":
            bad[id_field] = _uuid(rng)
        if defect == "version_2":
            bad["schema_version"] = 2
        elif defect == "unknown_channel":
            bad["channel"] = rng.choice(_UNKNOWN_CHANNELS)
        elif defect == "missing_customer_id":
            del bad["customer_id"]
        elif defect == "naive_timestamp":
            bad[time_field] = bad[time_field][:19]
        elif defect == "revenue_as_text":
            bad["revenue"] = f"{rng.uniform(5, 80):.2f}".replace(".", ",")
        elif defect == "empty_event_id":
            bad["event_id"] = ""
        elif defect == "too_large":
            filler = "lorem ipsum " * (self.max_payload_bytes // 12 + 100)
            if kind == "touchpoints":
                bad["properties"] = {"raw_dump": filler}
            else:
                bad["verbatim"] = filler
        elif defect == "before_earliest":
            old = self.earliest_event_date - timedelta(days=rng.randint(30, 400))
            bad[time_field] = old.isoformat() + bad[time_field][10:]
        elif defect == "in_future":
            bad[time_field] = "2099" + bad[time_field][4:].replace("-02-29", "-02-28")
        elif defect == "id_conflict":  # same id, another payload: a producer bug, not a retry
            if kind == "touchpoints":
                bad["channel"] = "web" if bad["channel"] != "web" else "app"
            else:
                bad["question_id"] = bad["question_id"] + "_v2"
        elif defect == "score_out_of_range":
            survey = bad["survey"]
            if survey == "kano":
                bad["dysfunctional_score"] = 6
            elif survey == "nps":
                bad["score"] = 11
            elif survey == "ces" and bad.get("scale") != "1-5":
                bad["score"] = 8
            else:
                bad["score"] = 0
        elif defect == "unknown_survey":
            bad["survey"] = rng.choice(("csi", "NPS", "ces2"))
        elif defect == "unknown_scale":
            bad["scale"] = "0-100"
        elif defect == "score_as_text":
            bad["score"] = str(bad["score"])
        return self.encoder.encode(bad)

    def planted_invalid(self, context: bool) -> dict[str, int]:
        total: dict[str, int] = {}
        for counts in self.invalid.values():
            for reason, n in counts.items():
                if (reason in CONTEXT_REASONS) == context:
                    total[reason] = total.get(reason, 0) + n
        return dict(sorted(total.items()))


def _cumulative_defects(defects: tuple[tuple[str, str, float], ...]) -> tuple[tuple[Any, ...], list[float]]:
    return _cumulative({(name, reason): weight for name, reason, weight in defects})


# --------------------------------------------------------------------------------------------
# Time-ordered output
# --------------------------------------------------------------------------------------------


_SPILL_EVERY_LINES = 200_000  # lines held in memory before they go to the day buckets (~60 MB)


class _TimeOrderedLines:
    """Lines keyed by delivery time, spilled to one bucket file per day, each sorted on its own.

    The key prefix is fixed-width (time, then arrival sequence), so a plain byte sort orders a
    day and ties keep generation order: the output does not depend on anything but the inputs.
    """

    _KEY_WIDTH = 22

    def __init__(self, spill_dir: Path, name: str, max_buffered: int) -> None:
        self.spill_dir, self.name, self.max_buffered = spill_dir, name, max_buffered
        self.buckets: dict[int, list[bytes]] = {}
        self.spilled: set[int] = set()
        self.buffered = 0
        self.seq = 0

    def add(self, key_ms: int, line: bytes) -> None:
        self.seq += 1
        self.buckets.setdefault(key_ms // DAY_MS, []).append(b"%012d%010d" % (key_ms, self.seq) + line)
        self.buffered += 1
        if self.buffered >= self.max_buffered:
            self._spill()

    def _bucket_path(self, day: int) -> Path:
        return self.spill_dir / f"{self.name}-{day:06d}.bucket"

    def _spill(self) -> None:
        for day in sorted(self.buckets):
            with self._bucket_path(day).open("ab") as bucket:
                bucket.write(b"\n".join(self.buckets[day]) + b"\n")
            self.spilled.add(day)
        self.buckets.clear()
        self.buffered = 0

    def write(self, path: Path) -> None:
        width = self._KEY_WIDTH
        with path.open("wb") as out:
            for day in sorted(self.spilled | set(self.buckets)):
                lines = self.buckets.pop(day, [])
                if day in self.spilled:
                    lines.extend(self._bucket_path(day).read_bytes().split(b"\n")[:-1])
                lines.sort()
                out.write(b"".join([line[width:] + b"\n" for line in lines]))


# --------------------------------------------------------------------------------------------
# truth.json
# --------------------------------------------------------------------------------------------


def _mean(distribution: dict[int, float]) -> float:
    return sum(score * p for score, p in distribution.items()) / sum(distribution.values())


def _mean_csat(mix: tuple[float, ...]) -> float:
    return round(sum(share * _mean(CSAT_GIVEN_EXPERIENCE[level]) for level, share in enumerate(mix)), 4)


class _Truth:
    """What was planted and what came of it, gathered customer by customer."""

    def __init__(self) -> None:
        self.revenue: dict[str, float] = {}
        self.churned: list[str] = []
        self.ends: dict[str, dict[str, int]] = {}
        self.n_touchpoints = self.n_surveys = 0

    def add(self, journey: _Journey) -> None:
        self.revenue[journey.customer_id] = round(journey.revenue, 2)
        self.n_touchpoints += len(journey.events)
        self.n_surveys += len(journey.surveys)
        if journey.ended_by is not None and journey.ended_at_stage is not None:
            by_stage = self.ends.setdefault(journey.ended_by, {})
            by_stage[journey.ended_at_stage] = by_stage.get(journey.ended_at_stage, 0) + 1
            if journey.ended_by == "cancelled":
                self.churned.append(journey.customer_id)

    def document(
        self,
        world: _World,
        customers: int,
        start: date,
        emerging_from_day: int,
        spike: ChurnSpike | None,
        planter: _Planter,
        config: JourneyConfig,
    ) -> dict[str, Any]:
        def day(n: int) -> str:
            return (start + timedelta(days=n)).isoformat()

        return {
            "seed": world.seed,
            "customers": customers,
            "days": world.days,
            "start": start.isoformat(),
            "end": day(world.days),
            "config_fingerprint": config.fingerprint,
            "moments_of_truth": [
                {
                    "touchpoint": touchpoint,
                    "stage": config.stage_of(touchpoint),
                    "leave_probability_by_bad_experiences": {str(k): p for k, p in LEAVE_AFTER_BAD.items()},
                    "experience_mix": dict(zip(EXPERIENCE_LEVELS, EXPERIENCE_MIX_MOMENT, strict=True)),
                    "mean_csat": _mean_csat(EXPERIENCE_MIX_MOMENT),
                    "importance_mean": round(_mean(_IMPORTANCE_DISTRIBUTIONS[IMPORTANCE[touchpoint]]), 4),
                }
                for touchpoint in MOMENTS_OF_TRUTH
            ],
            "other_touchpoints": {
                "leave_probability_after_bad_experience": LEAVE_AFTER_BAD_ELSEWHERE,
                "experience_mix": dict(zip(EXPERIENCE_LEVELS, EXPERIENCE_MIX_OTHER, strict=True)),
                "mean_csat": _mean_csat(EXPERIENCE_MIX_OTHER),
            },
            "explicit_leave_share": EXPLICIT_LEAVE_SHARE,
            "ces": {"question_id": "ces_ease", "higher_is_easier": True, "scales": ["1-7", "1-5"]},
            "drop_off_stages": DROP_OFF,
            "drop_off_base_rate": BASE_ABANDON,
            "nps": {
                "promoter_loyalty_from": PROMOTER_FROM,
                "detractor_loyalty_below": DETRACTOR_BELOW,
                "revenue_multiplier": REVENUE_MULTIPLIER,
                "add_on_chance_per_usage_session": ADD_ON_PER_USAGE_SESSION,
                "detractor_monthly_cancel": {
                    "base": DETRACTOR_MONTHLY_CANCEL[0],
                    "per_loyalty_point_below": DETRACTOR_MONTHLY_CANCEL[1],
                },
                "renewal_cancel": {
                    "base": RENEWAL_CANCEL[0],
                    "per_loyalty_point_below_7": RENEWAL_CANCEL[1],
                    "segment_factor": _SEGMENT_CANCEL,
                },
            },
            "importance_means": {
                touchpoint: round(_mean(_IMPORTANCE_DISTRIBUTIONS[level]), 4)
                for touchpoint, level in IMPORTANCE.items()
            },
            "kano_features": {
                feature: category for line in KANO_FEATURES.values() for feature, category in line.items()
            },
            "emerging_terms": {
                "from_day": emerging_from_day,
                "from_date": day(emerging_from_day),
                "fr": list(EMERGING_TERMS["fr"]),
                "en": list(EMERGING_TERMS["en"]),
            },
            "churn_spike": None
            if spike is None
            else {
                "stage": spike.stage,
                "from_day": spike.from_day,
                "from_date": day(spike.from_day),
                "factor": spike.factor,
            },
            "n_touchpoints": self.n_touchpoints,
            "n_surveys": self.n_surveys,
            "planted_invalid": planter.planted_invalid(context=False),
            "planted_invalid_in_context": planter.planted_invalid(context=True),
            "planted_invalid_by_file": {kind: dict(sorted(c.items())) for kind, c in planter.invalid.items()},
            "planted_duplicates": sum(planter.duplicates.values()),
            "planted_duplicates_by_file": planter.duplicates,
            "planted_late": sum(planter.late.values()),
            "planted_late_by_file": planter.late,
            "journey_ends": {how: dict(sorted(stages.items())) for how, stages in sorted(self.ends.items())},
            "churned_customers": self.churned,
            "revenue_per_customer": self.revenue,
        }


__all__ = ["CONTEXT_REASONS", "ChurnSpike", "GenerationSummary", "generate_dataset"]
