"""One customer simulated forward in time through the lifecycle, with the planted effects.

The lifecycle: acquisition (discovery and consideration, with loops back) -> purchase ->
activation -> usage, interrupted by support visits and renewals, until the customer leaves or the
period ends. Every random draw comes from the customer's own `random.Random`, in an order that
depends only on the draws before it: the steering options change probabilities, never the number
of draws of a default run, so the default output keeps its bytes.

A visit to a stage ends the journey with the plant's drop-off probability for that stage
(`Plant.abandon_chance`): the customer then sends nothing more at all, so their last *activity*
is where they stopped (see the package docstring for the visits that hold no activity).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, NoReturn

from parcours.synthetic.clock import DAY_MS, HOUR_MS, SECOND_MS
from parcours.synthetic.plant import (
    ACTIVATION,
    BELOW,
    BILLING_INCIDENT_BASE,
    BILLING_INCIDENT_RAMP,
    CONSIDERATION,
    DELIGHT,
    DETRACTOR_BELOW,
    DISCOVERY,
    EXPERIENCE_MIX_MOMENT,
    EXPERIENCE_MIX_OTHER,
    EXPLICIT_LEAVE_SHARE,
    HAZARD_FIRST_BAD,
    HAZARD_LATER_BAD,
    LEAVE_AFTER_BAD,
    LEAVE_AFTER_BAD_ELSEWHERE,
    LOYALTY_STEP_MOMENT,
    LOYALTY_STEP_OTHER,
    PROMOTER_FROM,
    PURCHASE,
    RENEWAL,
    SUPPORT,
    USAGE,
)
from parcours.synthetic.records import uuid_from
from parcours.synthetic.surveys import SurveyTaking
from parcours.synthetic.verbatims import TOPIC
from parcours.synthetic.world import (
    ACTIVE_HOURS,
    ADD_ONS,
    CALL_HOURS,
    CARRIERS,
    CHANNEL_TABLES,
    FEATURES,
    HOUR_TABLES,
    LANGUAGE_TABLE,
    MILLISECOND_CHANNELS,
    MONTHLY_PRICE,
    OFFERS,
    PAYMENT,
    PERSONA_TABLES,
    PRODUCT_TABLE,
    REASON_TABLES,
    SEGMENT_PRICE,
    SEGMENT_TABLE,
    SESSION_MIN_GAP_MS,
    STORE_HOURS,
    TERM_DAYS,
    TIMEZONE_TABLE,
    USAGE_GAP_HOURS,
    World,
    cumulative,
    hour_table,
    pick,
)

_EXPERIENCE_TABLES = {
    True: cumulative(dict(enumerate(EXPERIENCE_MIX_MOMENT))),
    False: cumulative(dict(enumerate(EXPERIENCE_MIX_OTHER))),
}


@dataclass(slots=True)
class Interaction:
    """A touchpoint whose experience was drawn, surveyed or not (a row of truth/interactions)."""

    event_index: int
    touchpoint: str
    stage: str
    level: int
    is_moment: bool
    bad_before: int  # the customer's bad experiences before this one, anywhere
    bad_moments_before: int  # ... at moments of truth
    leave_probability: float = 0.0  # the planted chance that this experience made them leave
    made_leave: bool = False
    scores: dict[str, int] = field(default_factory=dict)  # survey -> score, for the answers kept


class End(Exception):
    """The customer's story stops: they left, or it runs past the end of the period."""


class Journey(SurveyTaking):
    """A customer simulated forward in time through the lifecycle, with the planted effects."""

    def __init__(self, world: World, index: int, customer_id: str) -> None:
        self.world = world
        self.plant = world.plant
        self.index = index
        self.rng = rng = random.Random(f"parcours:{world.seed}:{index}")
        # Personal data in verbatims draws from its own stream: it changes nothing else.
        self.pii_rng = random.Random(f"parcours:{world.seed}:{index}:pii") if world.pii_rate > 0 else None
        self.customer_id = customer_id
        self.segment = pick(rng, SEGMENT_TABLE)
        self.product_line = pick(rng, PRODUCT_TABLE)
        self.persona = pick(rng, PERSONA_TABLES[self.segment])
        self.channels = CHANNEL_TABLES[self.persona]
        self.language = pick(rng, LANGUAGE_TABLE)
        self.timezone = timezone = pick(rng, TIMEZONE_TABLE)
        self.fixed_offset = None if timezone == "Europe/Paris" else int(timezone[:3]) * HOUR_MS
        self.loyalty = min(10.0, max(0.0, rng.gauss(7.4, 1.3) + {"premium": 0.4, "pro": -0.2}.get(self.segment, 0.0)))
        self.initial_loyalty = self.loyalty
        self.monthly_price = round(rng.uniform(*MONTHLY_PRICE[self.product_line]), 2)
        # (t, touchpoint, channel, stage, outcome, revenue, properties, event_id), in time order
        self.events: list[tuple] = []
        # [t, fields, index of the rated event when the answer must come before the next event,
        #  index of the interaction rated or -1]
        self.surveys: list[list] = []
        self.interactions: list[Interaction] = []
        self.pii: list[tuple[str, str, str]] = []  # (response_id, kind, planted text)
        self.revenue = 0.0
        self.bad_moments = self.bad_experiences = 0
        self.t = 0
        self._fresh = False  # the next event opens a session
        self.purchased_at: int | None = None
        self.purchase_amount = 0.0
        self.ended_by: str | None = None  # cancelled | abandoned | left_silently
        self.ended_at_stage: str | None = None
        self.leaving: tuple[str, int, str] | None = None  # (stage, time, reason) of the decision to leave
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
        except End:
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
        offers = OFFERS[self.product_line]
        for session in range(rng.randint(1, 3)):
            if session or self.events:
                self._start_session(self._after(28.0, min_hours=1.0))
            if self.persona == "phygital" and rng.random() < 0.5:
                self._move_to_hours(STORE_HOURS)
                index = self._emit("store_visit", props={"store_id": f"PAR-{rng.randint(1, 60):03d}"})
                self._after_experience(CONSIDERATION, self._rate(index, "store_visit", CONSIDERATION))
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
                self._after_experience(CONSIDERATION, self._rate(index, "advisor_chat", CONSIDERATION))
            if rng.random() < (0.45 if self.segment == "pro" else 0.06):
                self._emit("quote_request", props={"lines": rng.randint(2, 40) if self.segment == "pro" else 1})
        self._maybe_abandon(CONSIDERATION)

    def _purchase(self) -> None:
        rng = self.rng
        self._start_session(self._after(20.0, min_hours=1.0))
        if self.persona == "phygital" and rng.random() < 0.6:
            self._move_to_hours(STORE_HOURS)
            self._emit("cart", channel="store")
            self._maybe_abandon(PURCHASE)
            buy, channel = "store_checkout", "store"
        elif self.persona == "phone" or (self.segment == "pro" and rng.random() < 0.4):
            self._move_to_hours(CALL_HOURS)
            self._emit("sales_call", props={"offer": rng.choice(OFFERS[self.product_line])})
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
            "payment_method": rng.choice(PAYMENT),
            "offer": rng.choice(OFFERS[self.product_line]),
        }
        if self.product_line == "mobile" and rng.random() < 0.35:
            # A handset, paid in monthly instalments with the plan.
            props["handset_instalment"] = rng.choice((8.0, 15.0, 25.0, 35.0))
            self.monthly_price = round(self.monthly_price + props["handset_instalment"], 2)
        amount = self.monthly_price * SEGMENT_PRICE[self.segment]
        if self.product_line == "fibre":
            amount += 49.0  # activation fee
        amount = round(amount * self.plant.revenue_multiplier(self._category()), 2)
        index = self._emit(buy, channel=channel, outcome="purchase", revenue=amount, props=props)
        self.purchased_at, self.purchase_amount = self.events[index][0], amount
        level = self._rate(index, buy, PURCHASE)
        # The default world plants no leaving after the purchase itself; the null world treats
        # it like every other rated touchpoint, and a purchase named a moment of truth is one.
        if self.plant.is_moment(buy) or not self.plant.planted:
            self._after_experience(PURCHASE, level)
        self._emit("order_confirmation", props={"order_id": props["order_id"]})
        if rng.random() < 0.3:
            self._nps(index, "nps_after_purchase", delay_hours=(2, 72))

    def _activate(self) -> None:
        rng = self.rng
        abandons = rng.random() < self._spiked(ACTIVATION, self.plant.abandon_chance(ACTIVATION))
        if rng.random() < 0.08 and not abandons:  # activated in store: nothing to see here
            return
        self._start_session(self._after(2.0, min_hours=0.75))
        self._emit("welcome_email")
        line = self.product_line
        if line == "mobile" or (line == "fibre" and rng.random() < 0.7):
            self._start_session(self._after(40.0, min_hours=14.0))
            props: dict[str, Any] = {"carrier": rng.choice(CARRIERS)}
            index = self._emit("delivery", props=props)
            level = self._rate(index, "delivery", ACTIVATION)
            props["delay_days"] = (rng.randint(2, 8), 0, 0, 0)[level]
            props["status"] = ("late", "delivered", "delivered", "delivered_early")[level]
            if level == BELOW and rng.random() < 0.4:
                props["status"] = "damaged"
            self._after_experience(ACTIVATION, level)
        if (line == "fibre" and rng.random() < 0.85) or (line == "energie" and rng.random() < 0.4):
            self._start_session(self._after(80.0, min_hours=20.0))
            self._move_to_hours((8, 18))
            index = self._emit("installation", props={"technician_team": f"T{rng.randint(1, 40):02d}"})
            self._after_experience(ACTIVATION, self._rate(index, "installation", ACTIVATION))
        if abandons:
            self._abandon(ACTIVATION)
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
        term = TERM_DAYS[self.product_line] * DAY_MS
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
        if rng.random() < self._spiked(USAGE, self.plant.abandon_chance(USAGE)):
            sessions_left = 1 + int(rng.expovariate(0.25))
        gap = USAGE_GAP_HOURS[self.product_line] * (0.7 if self.segment == "premium" else 1.0)
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
                self._abandon(USAGE)
            if rng.random() < (0.035 if self.segment == "pro" else 0.022):
                self._support(pick(rng, REASON_TABLES[self.product_line]))
                return SUPPORT

    def _usage_session(self) -> None:
        rng = self.rng
        features = FEATURES[self.product_line]
        if rng.random() < 0.8:
            self._emit("app_session", props={"app_version": rng.choice(("5.1.0", "5.2.1", "5.3.0"))})
        for _ in range(rng.randint(1, 5)):
            self._emit("feature_use", props={"feature": rng.choice(features)})
        if rng.random() < self.plant.add_on_chance(self._category()):
            name, price = rng.choice(ADD_ONS[self.product_line])
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
        amount = round(self.monthly_price * SEGMENT_PRICE[self.segment], 2)
        props = {"invoice_id": f"F{rng.getrandbits(36):09X}", "amount": amount}
        self._emit("invoice", props=props)
        chance, emerging = BILLING_INCIDENT_BASE, False
        from_ms, end_ms = self.world.emerging_from_ms, self.world.end_ms
        if self.plant.emerging and self.t >= from_ms:
            low, high = BILLING_INCIDENT_RAMP
            ramp = low + (high - low) * (self.t - from_ms) / max(1, end_ms - from_ms)
            emerging = rng.random() < ramp
        incident = emerging or rng.random() < chance
        self.emerging_incident = emerging
        if incident:
            props["status"] = "disputed"
            self.topic = "billing"
        if rng.random() < 0.25:
            self._nps(None, "nps_relational", delay_hours=(1, 48))
        hazard = self.plant.detractor_cancel_chance(self.loyalty)
        if hazard > 0 and rng.random() < self._spiked(USAGE, hazard):
            self._cancel(USAGE, reason="dissatisfied")
        return incident

    def _support(self, reason: str) -> None:
        rng = self.rng
        self.support_reason = reason
        if reason != "billing":
            self.emerging_incident = False
        abandons = rng.random() < self._spiked(SUPPORT, self.plant.abandon_chance(SUPPORT))
        self._start_session(self._after(6.0, min_hours=0.75))
        if rng.random() < 0.55:
            index = self._emit("help_center", props={"article": f"{reason}-{rng.randint(1, 30)}"})
            self._after_experience(SUPPORT, self._rate(index, "help_center", SUPPORT))
            if rng.random() < 0.5:
                self._start_session(self._after(10.0, min_hours=0.75))
        phone = {"phone": 0.85, "phygital": 0.6, "digital": 0.35, "social": 0.3}[self.persona]
        if self.segment == "pro":
            phone = max(phone, 0.75)
        for contact in range(1, 5):
            if contact > 1:  # the same problem, again
                self._start_session(self._after(30.0, min_hours=2.0))
            if rng.random() < phone:
                self._move_to_hours(CALL_HOURS)
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
            self._after_experience(SUPPORT, level)
            if level != BELOW or rng.random() > 0.55:
                break
        if reason == "device" and rng.random() < 0.5:
            self._start_session(self._after(24.0, min_hours=2.0))
            if self.persona == "phygital":
                self._move_to_hours(STORE_HOURS)
                self._emit("store_visit", stage=SUPPORT, props={"purpose": "after_sales"})
            index = self._emit("repair", props={"ticket": f"R{rng.getrandbits(32):08X}"})
            self._after_experience(SUPPORT, self._rate(index, "repair", SUPPORT))
        if rng.random() < 0.15:
            self._nps(len(self.events) - 1, "nps_after_support", delay_hours=(2, 72))
        if abandons:
            self._abandon(SUPPORT)

    def _renewal(self) -> None:
        rng = self.rng
        self._start_session(self.reminder_at)
        self._emit("renewal_reminder", props={"term_end": self.world.clock.date_of(self.due)})
        if rng.random() < 0.55:
            self._start_session(self._after(30.0, min_hours=2.0))
            self._emit("renewal_offer", props={"discount_pct": rng.choice((0, 5, 10, 15))})
        self._start_session(max(self._after(10.0, min_hours=2.0), self.due - rng.randint(0, 48) * HOUR_MS))
        cancel = self._spiked(RENEWAL, self.plant.renewal_cancel_chance(self.loyalty, self.segment))
        lapse = self._spiked(RENEWAL, self.plant.abandon_chance(RENEWAL))
        draw = rng.random()
        if draw < cancel:
            self._cancel(RENEWAL, reason="renewal_declined")
        if draw < cancel + lapse:
            self._abandon(RENEWAL)
        amount = self.monthly_price * SEGMENT_PRICE[self.segment] * TERM_DAYS[self.product_line] / 30
        amount = round(amount * self.plant.revenue_multiplier(self._category()), 2)
        index = self._emit(
            "renewal_checkout",
            outcome="renewal",
            revenue=amount,
            props={"term_days": TERM_DAYS[self.product_line]},
        )
        self._after_experience(RENEWAL, self._rate(index, "renewal_checkout", RENEWAL))
        if rng.random() < 0.25:
            self._nps(index, "nps_after_renewal", delay_hours=(2, 72))
        if rng.random() < 0.06:
            self._cxi(delay_hours=(24, 120))

    # -- experiences and leaving ---------------------------------------------------------------

    def _rate(self, index: int, touchpoint: str, stage: str) -> int:
        """Draw how the touchpoint went, move loyalty, and maybe ask for CSAT / CES."""
        rng = self.rng
        moment = self.plant.is_moment(touchpoint)
        level = pick(rng, _EXPERIENCE_TABLES[moment])
        self.interactions.append(
            Interaction(index, touchpoint, stage, level, moment, self.bad_experiences, self.bad_moments)
        )
        self.bad_experiences += level == BELOW
        step = (LOYALTY_STEP_MOMENT if moment else LOYALTY_STEP_OTHER)[level]
        self.loyalty = min(10.0, max(0.0, self.loyalty + step))
        if level in (BELOW, DELIGHT):
            topic = TOPIC.get(touchpoint, "general")
            self.topic = "billing" if topic == "support" and self.support_reason == "billing" else topic
        self._rating_surveys(index, touchpoint, stage, level)
        return level

    def _after_experience(self, stage: str, level: int) -> None:
        """Maybe leave after the experience just drawn: the planted moment-of-truth hazards
        (first bad, later bad, not bad), or the small chance after a bad experience elsewhere."""
        interaction = self.interactions[-1]
        if interaction.is_moment:
            if level == BELOW:
                self.bad_moments += 1
                hazard = HAZARD_FIRST_BAD if self.bad_moments == 1 else HAZARD_LATER_BAD
            else:
                hazard = LEAVE_AFTER_BAD[0]
        elif level == BELOW:
            hazard = LEAVE_AFTER_BAD_ELSEWHERE
        else:
            return
        interaction.leave_probability = hazard = self._spiked(stage, hazard)
        if self.rng.random() < hazard:
            interaction.made_leave = True
            self._leave(stage)

    def _leave(self, stage: str) -> NoReturn:
        self.leaving = (stage, self.t, "experience")
        if self.purchased_at is None or self.rng.random() >= EXPLICIT_LEAVE_SHARE:
            self._end("left_silently", stage)
        self._cancel(stage, reason="experience")

    def _cancel(self, stage: str, reason: str) -> NoReturn:
        rng = self.rng
        if self.leaving is None:
            self.leaving = (stage, self.t, reason)
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
        if self.rng.random() < self._spiked(stage, self.plant.abandon_chance(stage)):
            self._abandon(stage)

    def _abandon(self, stage: str) -> NoReturn:
        self._end("abandoned", stage)

    def _spiked(self, stage: str, probability: float) -> float:
        return self.plant.spiked(stage, self.t, probability)

    def _end(self, how: str, stage: str) -> NoReturn:
        self.ended_by, self.ended_at_stage = how, stage
        raise End

    def _category(self) -> str:
        return nps_category(self.loyalty)

    # -- time and events -----------------------------------------------------------------------

    def _after(self, mean_hours: float, min_hours: float) -> int:
        """A candidate start for the next session: hours to days after the current time."""
        return self.t + int((min_hours + self.rng.expovariate(1.0 / mean_hours)) * HOUR_MS)

    def offset(self, t: int) -> int:
        return self.world.clock.paris_offset(t) if self.fixed_offset is None else self.fixed_offset

    def _start_session(self, t: int, hours: tuple[int, int] = ACTIVE_HOURS, first: bool = False) -> None:
        """Open a session at `t` or, at night, the next morning; never within the inactivity gap."""
        if not first:
            t = max(t, self.t + SESSION_MIN_GAP_MS)
        self.t = t
        self._move_to_hours(hours)
        self._fresh = True

    def _move_to_hours(self, hours: tuple[int, int]) -> None:
        """Move the current time into local opening hours (stores, call centre), never backwards."""
        t = self.t
        offset = self.offset(t)
        local = t + offset
        hour = local % DAY_MS // HOUR_MS
        low, high = hours
        if not low <= hour < high:
            day = local - local % DAY_MS + (DAY_MS if hour >= high else 0)
            local = day + pick(self.rng, HOUR_TABLES.get(hours) or hour_table(low, high)) * HOUR_MS
            t = local + self.rng.randrange(3600) * SECOND_MS - offset
        t -= t % SECOND_MS
        if t >= self.world.end_ms:
            raise End
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
            channel = pick(rng, self.channels[touchpoint])
        t = self.t + (rng.randrange(SECOND_MS) if channel in MILLISECOND_CHANNELS else 0)
        if t >= self.world.end_ms:
            raise End
        if revenue is not None:
            self.revenue += revenue
        event_id = uuid_from(rng)
        self.events.append((t, touchpoint, channel, stage, outcome, revenue, props, event_id))
        return len(self.events) - 1


def nps_category(loyalty: float) -> str:
    """The NPS category a latent loyalty stands for (what the customer would answer)."""
    if loyalty >= PROMOTER_FROM:
        return "promoter"
    return "detractor" if loyalty < DETRACTOR_BELOW else "passive"


__all__ = ["End", "Interaction", "Journey", "nps_category"]
