"""Synthetic customer journeys with known, planted effects (`parcours generate`).

Why a simulator rather than random rows: the analyses downstream (moments of truth, drop-offs,
churn alerts, weak signals in verbatims, revenue by NPS category) can only be tested against data
whose answers are known. So customers are simulated forward in time, one at a time, through the
lifecycle of the journey configuration; a handful of effects are planted at known strengths, and
the truth is written next to the data. Everything else is noise on purpose: skipped stages, loops,
channel switches, silent churn, survey non-response, several time-zone offsets.

Modules, by concern:

* `plant`: the planted effects and their default strengths; `Plant` steers them;
* `world`: segments, product lines, channels, touchpoints, opening hours (texture, not effects);
* `clock`: simulation time (ms since the start) and the producers' time stamps;
* `journey`: one customer's lifecycle, experiences and leaving; `surveys`: the answers they give;
  `verbatims` and `pii`: what they write;
* `records`: a journey as contract records; `bad_records`: invalid, duplicate, late lines;
  `ordering`: delivery-time order through per-day spill files;
* `truth`: `truth.json` and `truth/*.parquet`; `generate`: `generate_dataset`, which runs it all.

What is planted by default (`plant="default"`; the numbers live in `plant.py`):

* two **moments of truth** (`delivery`, `support_call`; `moments=` names others): often below
  expectations (low CSAT), and a bad experience there makes customers leave (32 % after one,
  59 % after two, as in the PwC study the seed articles quote), while a bad experience elsewhere
  barely matters (4 %);
* two **drop-off stages** (`consideration` 0.30, `activation` 0.22; `drop_off=` adds or
  overrides) where a visit ends the journey far more often than at the other stages (0.05);
* **NPS that follows experience**: detractors cancel more at renewal, promoters spend more;
* **emerging complaint terms** ("facture erronée", "double charge"...) absent before a given day
  and growing after it;
* **Kano categories** per feature, and importance highest at the moments of truth;
* an optional **churn spike** at one stage from one day, optionally until another (alert tests);
* optional **bad records** (contract violations with known reason codes), exact **duplicates**
  and **late** (out-of-order) records, and **personal data** in a share of the verbatims
  (`pii_rate`: e-mail addresses, French and foreign phone numbers, Luhn-valid card numbers, IBANs).

`plant="none"` is the null world: one experience mix at every touchpoint, the same 4 % chance of
leaving after a bad experience wherever it happens (the purchase included), one abandon rate
(0.05) at every stage, loyalty driving neither revenue nor churn (one renewal cancel chance), no
emerging terms, Kano answers from one uniform mix for every feature, the same importance for
every touchpoint, no spike. Explicit `moments`, `drop_off` and `churn_spike` are planted on top.

**Drop-off probability.** P for stage S is the probability that a visit to S is the customer's last
one: they send nothing at all afterwards. A visit is one pass of the simulation through S (a
discovery or consideration round, the purchase attempt, activation, a run of usage sessions, a
support visit, a renewal). The analytic drop-off is judged on *activity*, company-sent touchpoints
(`world.COMPANY_SENT`: invoice, renewal_reminder, welcome_email, newsletter_open) aside: the
customer's latest activity is at S and none follows within S's timeout. Because nothing follows a
drop-off, the two agree except where a visit held no activity before its end: an activation visit
of a customer with neither delivery nor installation (welcome_email only), a renewal visit without
a renewal offer (renewal_reminder only), a discovery round of newsletters only. There the last
activity is at the earlier stage, and `truth/journeys.parquet` says both (`abandoned_stage` is the
simulation's stage, `end_stage` the stage of the last activity).

Determinism: every customer has its own `random.Random` seeded from (seed, customer index); bad
records and personal data draw from streams of their own, so the same arguments give the same
bytes and the valid data does not change when only those rates change. The steering options change
probabilities, never the draws of a default run: the default output is byte for byte that of the
former single-module generator (tests/test_generator.py holds digests of it). No wall clock, no set
iteration, no `hash()`.

Truth tables (`truth/`, one Parquet file each; times are UTC timestamps in ms):

`customers.parquet`, one row per customer: `customer_id`, `customer_index`, `segment`,
`product_line`, `persona`, `language`, `timezone`; `first_event_at`, `last_event_at`;
`last_activity_at`, `last_activity_stage`, `last_activity_touchpoint` (company-sent aside);
`purchased_at` (null: never converted); `end` (`active`: still a customer or still in acquisition
at the end of the period, `dropped_off`, `explicit_churn`, `silent_churn`), `end_stage`, `end_at`
(as in the customer's last journey); `abandoned_stage`; `leave_stage`, `leave_reason`
(`experience`, `dissatisfied`: detractor cancel at an invoice, `renewal_declined`),
`leave_decided_at` (the decision may fall before the end and its cancellation after it),
`leave_event_id`, `leave_touchpoint` (the experience that made the customer leave); `n_journeys`,
`n_events`, `n_activities`, `n_interactions`, `n_bad_experiences`, `n_bad_moments`;
`initial_loyalty`, `final_loyalty` (latent, 0-10), `nps_category` (of the final loyalty);
`revenue` (the sum of the customer's event revenue, refunds included).

`journeys.parquet`, one row per (customer_id, journey_cycle), cycles cut as the pipeline cuts them
(cycle 0 up to and including the purchase, each later one up to and including the next renewal):
`cycle_type` (`first_purchase`, `renewal`), `started_at`, `ended_at`, `n_events`, `n_activities`;
`end`: `converted` (`end_at`/`end_touchpoint`: the purchase or renewal), `dropped_off` (`end_at`:
the last activity, `end_stage` its stage, `drop_off_due_at` = that + the stage's timeout, the first
instant the analytic rule can call it; `abandoned_stage` the simulation's stage), `explicit_churn`
(`end_stage` where they left, `end_at` the cancellation), `silent_churn` (`end_stage` where they
left, `end_at` the last activity), `in_progress` (still going at the end of the period);
`last_activity_at`, `last_activity_stage` (the customer's latest activity up to the cycle's end);
`revenue`.

`interactions.parquet`, one row per touchpoint whose experience was drawn, surveyed or not:
`customer_id`, `event_id`, `touchpoint`, `stage`, `at`, `experience` (`below`, `meets`, `above`,
`delight`), `experience_level` (0-3), `is_bad` (below), `is_moment_of_truth`, `n_bad_before`
(the customer's bad experiences before this one), `n_bad_moments_before` (at moments of truth:
0 for the first bad one, 1 for the second: h1 and h2), `leave_probability` (the planted chance
applied, after any spike; 0 where nothing was drawn), `made_leave`, `csat_score`, `ces_score`
(the answers kept, null when not asked or not given by the end).

`pii.parquet`, one row per planted personal-data string: `response_id`, `customer_id`, `kind`
(`email`, `phone_fr`, `phone_intl`, `card`, `iban`), `text` (exactly as it appears in the verbatim).
"""

from parcours.synthetic.bad_records import CONTEXT_REASONS
from parcours.synthetic.generate import RATED_TOUCHPOINTS, GenerationSummary, generate_dataset
from parcours.synthetic.plant import ChurnSpike, Plant, parse_churn_spike, parse_drop_off, parse_moments
from parcours.synthetic.world import COMPANY_SENT

__all__ = [
    "COMPANY_SENT",
    "CONTEXT_REASONS",
    "RATED_TOUCHPOINTS",
    "ChurnSpike",
    "GenerationSummary",
    "Plant",
    "generate_dataset",
    "parse_churn_spike",
    "parse_drop_off",
    "parse_moments",
]
