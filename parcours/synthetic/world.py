"""The simulated world: who the customers are, which touchpoints exist, on which channels, when.

None of this is a planted effect (those live in `plant.py`): it is the texture that makes the
journeys realistic and the analyses non-trivial. `World` bundles one run's settings.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Any

from parcours.synthetic.clock import MINUTE_MS, Clock
from parcours.synthetic.plant import (
    ACTIVATION,
    CONSIDERATION,
    DISCOVERY,
    PURCHASE,
    RENEWAL,
    SUPPORT,
    USAGE,
    Plant,
)

SEGMENTS = {"particulier": 0.68, "pro": 0.20, "premium": 0.12}
PRODUCT_LINES = {"mobile": 0.45, "fibre": 0.35, "energie": 0.20}
PERSONAS = {  # channel habits, by segment
    "particulier": {"digital": 0.45, "phygital": 0.25, "phone": 0.12, "social": 0.18},
    "pro": {"digital": 0.35, "phygital": 0.15, "phone": 0.45, "social": 0.05},
    "premium": {"digital": 0.40, "phygital": 0.40, "phone": 0.15, "social": 0.05},
}
CHANNEL_AFFINITY = {
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
LANGUAGES = {"fr": 0.8, "en": 0.2}
# Where customers live: their devices stamp local time. Paris follows EU summer time.
TIMEZONES = {"Europe/Paris": 0.92, "+04:00": 0.05, "-04:00": 0.03}

TERM_DAYS = {"mobile": 30, "fibre": 30, "energie": 45}
MONTHLY_PRICE = {"mobile": (9.99, 39.99), "fibre": (29.99, 49.99), "energie": (59.0, 179.0)}
SEGMENT_PRICE = {"particulier": 1.0, "pro": 1.6, "premium": 2.2}
USAGE_GAP_HOURS = {"mobile": 12.0, "fibre": 22.0, "energie": 60.0}

# Touchpoint -> the stage the simulation means it for; the configuration must agree.
SIMULATED_STAGE = {
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

TOUCHPOINT_CHANNELS: dict[str, dict[str, float]] = {
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
LOCAL_TIME_CHANNELS = frozenset({"web", "app", "chat", "store"})
MILLISECOND_CHANNELS = frozenset({"web", "app"})

ACTIVE_HOURS = (7, 23)  # local hours when sessions start
STORE_HOURS = (10, 19)
CALL_HOURS = (9, 20)
SESSION_MIN_GAP_MS = 45 * MINUTE_MS  # well above the default 30 min inactivity gap

# Touchpoints the company sends on its own: they show the customer is known, not that the
# customer is active (a drop-off is judged on the customer's own activity).
COMPANY_SENT = frozenset({"invoice", "renewal_reminder", "welcome_email", "newsletter_open"})

CSAT_RATED = {  # touchpoint -> chance of a CSAT survey after it
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
CES_AFTER = {"support_call": 0.45, "support_chat": 0.45, "help_center": 0.2}
CSAT_WITHOUT_EVENT_ID = 0.15


FEATURES = {
    "mobile": ("data_usage", "roaming", "esim_transfer", "plan_options"),
    "fibre": ("wifi_settings", "tv_guide", "speed_test", "parental_control"),
    "energie": ("consumption_chart", "meter_reading", "payment_schedule", "eco_tips"),
}
ADD_ONS = {
    "mobile": (("data_boost", 4.99), ("international_pass", 9.99)),
    "fibre": (("tv_pack", 7.99), ("wifi_extender", 3.0)),
    "energie": (("maintenance_plan", 8.5), ("green_option", 2.5)),
}
SUPPORT_REASONS = {
    "mobile": (("network", 3), ("device", 3), ("contract", 2), ("billing", 1)),
    "fibre": (("network", 5), ("device", 2), ("contract", 1), ("billing", 1)),
    "energie": (("meter", 3), ("contract", 2), ("billing", 2)),
}
CARRIERS = ("Colissimo", "Chronopost", "DPD", "Relais Colis")
PAYMENT = ("card", "sepa_debit", "paypal")
OFFERS = {
    "mobile": ("Forfait 20 Go", "Forfait 100 Go", "Forfait 5G 200 Go"),
    "fibre": ("Fibre Essentielle", "Fibre Power", "Fibre Ultra"),
    "energie": ("Électricité Verte", "Gaz Fixe 2 ans", "Duo Électricité Gaz"),
}


def cumulative(weights: dict[Any, float]) -> tuple[tuple[Any, ...], list[float]]:
    """A table for `pick`: the keys and their running weight totals."""
    keys = tuple(weights)
    total, running = 0.0, []
    for key in keys:
        total += weights[key]
        running.append(total)
    return keys, running


def pick(rng: random.Random, table: tuple[tuple[Any, ...], list[float]]) -> Any:
    """One key, drawn with one `rng.random()` (the draw count never depends on the table)."""
    keys, running = table
    return keys[bisect.bisect_right(running, rng.random() * running[-1])]


SEGMENT_TABLE = cumulative(SEGMENTS)
PRODUCT_TABLE = cumulative(PRODUCT_LINES)
PERSONA_TABLES = {segment: cumulative(mix) for segment, mix in PERSONAS.items()}
LANGUAGE_TABLE = cumulative(LANGUAGES)
TIMEZONE_TABLE = cumulative(TIMEZONES)
CHANNEL_TABLES = {
    persona: {
        touchpoint: cumulative({ch: w * affinity.get(ch, 1.0) for ch, w in channels.items()})
        for touchpoint, channels in TOUCHPOINT_CHANNELS.items()
    }
    for persona, affinity in CHANNEL_AFFINITY.items()
}
# Relative chance that a session starts at each local hour (evenings are busiest).
HOUR_WEIGHTS = dict(zip(range(7, 23), (1, 2, 3, 3, 3, 4, 4, 3, 3, 3, 4, 5, 6, 6, 5, 3), strict=True))


def hour_table(low: int, high: int) -> tuple[tuple[Any, ...], list[float]]:
    return cumulative({hour: weight for hour, weight in HOUR_WEIGHTS.items() if low <= hour < high})


HOUR_TABLES = {hours: hour_table(*hours) for hours in (ACTIVE_HOURS, STORE_HOURS, CALL_HOURS)}
REASON_TABLES = {line: cumulative(dict(reasons)) for line, reasons in SUPPORT_REASONS.items()}


@dataclass(frozen=True, slots=True)
class World:
    """One run's settings, shared by every customer's journey."""

    seed: int
    days: int
    end_ms: int
    emerging_from_ms: int
    plant: Plant
    clock: Clock
    pii_rate: float = 0.0

    @property
    def importance(self) -> dict[str, str]:
        return self.plant.importance
