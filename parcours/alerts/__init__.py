"""Alerts on rising churn at a stage: detector, state machine, payload contract, sinks.

    cohorts  -> the input table (COHORT_ARROW): final entry cohorts per series and window
    detect   -> the test of each cohort against its baseline, and the state machine
    evaluate -> one evaluation's state changes and payloads (alert.v1), plus no_data
    notify   -> record, enqueue and deliver (at least once, through the store's outbox)
    sinks    -> the Slack-compatible webhook and the Kafka `alerts` topic
    calibrate-> false alerts and detection by Monte Carlo through the same detector code

docs/alerts.md states the rules, the calibration and its verdicts.
"""

from parcours.alerts.cohorts import COHORT_ARROW, CohortTableError, cohort_matrix, validate_cohorts
from parcours.alerts.detect import bh_qvalues, replay_states, score_windows
from parcours.alerts.evaluate import Evaluation, evaluate
from parcours.alerts.notify import EvaluationReport, deliver, run_evaluation
from parcours.alerts.payload import ALERT_HISTORY_ARROW
from parcours.alerts.settings import AlertSettings, AlertSettingsError
from parcours.alerts.sinks import KafkaSink, WebhookSink, slack_message
from parcours.alerts.store import AlertStore

__all__ = [
    "ALERT_HISTORY_ARROW",
    "COHORT_ARROW",
    "AlertSettings",
    "AlertSettingsError",
    "AlertStore",
    "CohortTableError",
    "Evaluation",
    "EvaluationReport",
    "KafkaSink",
    "WebhookSink",
    "bh_qvalues",
    "cohort_matrix",
    "deliver",
    "evaluate",
    "replay_states",
    "run_evaluation",
    "score_windows",
    "slack_message",
    "validate_cohorts",
]
