"""Where notifications go: a Slack-compatible webhook and the Kafka ``alerts`` topic.

A sink gets every notification that is due for it in one call and says which ones it
delivered; the caller (``notify.deliver``) keeps the rest in that sink's outbox and retries them
with backoff on later evaluations. A sink raises nothing: an exception inside one would hold up
the others, so every failure comes back as a :class:`SendResult` with a reason that names no
secret.

The webhook sink sends ONE grouped message per evaluation (Slack allows about one message a
second), with a plain ``text`` fallback and ``blocks``; HTTP 429 is honoured by waiting the
``Retry-After`` it gives (through an injected sleeper, up to ``max_wait_s``; longer waits are
left to a later evaluation), 5xx and network errors are retried on later evaluations, other 4xx
(``invalid_payload``, ``channel_not_found``, ``channel_is_archived``...) are permanent and go to
the dead list. Its URL and token come from the environment (``PARCOURS_ALERT_WEBHOOK_URL``,
``PARCOURS_ALERT_WEBHOOK_TOKEN``) and stay inside the sink: not in its repr, not in its errors,
not in httpx's request log lines (a filter redacts them), never in a payload.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
from kafka import errors as kafka_errors

from parcours.alerts.store import Pending
from parcours.kafka import BrokerUnavailable, KafkaSettings, make_producer

WEBHOOK_URL_ENV = "PARCOURS_ALERT_WEBHOOK_URL"
WEBHOOK_TOKEN_ENV = "PARCOURS_ALERT_WEBHOOK_TOKEN"
# Slack: at most 50 blocks a message, 3000 characters a section, 150 a header.
_MAX_ALERT_BLOCKS = 22
_SECTION_CHARS = 3000


@dataclass(frozen=True)
class SendResult:
    acked: set[str] = field(default_factory=set)
    error: str | None = None
    permanent: bool = False
    retry_after_s: float | None = None


class Sink(Protocol):
    name: str

    def send(self, items: Sequence[Pending], now: datetime) -> SendResult: ...


def _escape(text: str) -> str:
    """Slack mrkdwn treats & < > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _cohorts(p: Mapping[str, Any]) -> str:
    pooled = p.get("current_windows", 1)
    if pooled > 1:
        return f"the {pooled} cohorts up to {p['window_start'][:10]}"
    return f"cohort of {p['window_start'][:10]}"


def _detail(p: Mapping[str, Any]) -> str:
    where = f"*{p['stage']}*" + ("" if p["breakdown"] == "overall" else f" ({p['breakdown']}={p['breakdown_value']})")
    what = p["rule"].replace("_", " ")
    head = f"*{p['state'].upper()}* {p['kind'].replace('_', ' ')}: {what} at {where}"
    lines = [head]
    if p["kind"] == "churn":
        b = p["baseline"]
        lines.append(
            f"{_cohorts(p)}: {_pct(p['rate'])} ({p['n_events']}/{p['n_entrants']}) vs baseline "
            f"{_pct(b['rate'])} ({b['n_events']}/{b['n_entrants']}, {b['windows']} windows)"
        )
        ci = p["difference_ci"]
        interval = (
            "" if ci is None else f", {100 * ci['level']:.0f} % CI [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]"
        )
        lines.append(
            f"difference {100 * p['difference']:+.1f} points{interval}, relative {100 * p['relative_rise']:+.0f} %, "
            f"p={p['p_value']:.2g}, q={p['q_value']:.2g}"
        )
    else:
        lines.append(p["summary"])
    if p.get("contributors"):
        top = ", ".join(f"{c['kind']} {c['name']}" for c in p["contributors"][:5])
        lines.append(f"contributing most: {top}")
    lines.append(f"runbook: {p['runbook']}")
    return _escape("\n".join(lines))[:_SECTION_CHARS]


def slack_message(payloads: Sequence[Mapping[str, Any]], include_payloads: bool = False) -> dict[str, Any]:
    """One grouped message for one evaluation's notifications (Slack incoming-webhook JSON).

    ``include_payloads`` adds the alert.v1 payloads under ``parcours_notifications`` for
    receivers that are not Slack; the notification ids are in the context blocks either way.
    """
    firing = sum(p["state"] == "firing" for p in payloads)
    title = f"parcours alerts: {firing} firing, {len(payloads) - firing} resolved"
    text = _escape("\n".join([title, *(p["summary"] for p in payloads)]))
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}}]
    for p in payloads[:_MAX_ALERT_BLOCKS]:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _detail(p)}})
        ids = f"alert `{p['alert_id']}` · notification `{p['notification_id']}`"
        times = f"watermark {p['watermark']} · finality point {p['finality_point']}"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"{ids} · {times}"}]})
    if len(payloads) > _MAX_ALERT_BLOCKS:
        more = len(payloads) - _MAX_ALERT_BLOCKS
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"… and {more} more in the alerts view"}})
    message: dict[str, Any] = {"text": text, "blocks": blocks}
    if include_payloads:
        message["parcours_notifications"] = list(payloads)
    return message


def retry_after_seconds(value: str | None, now: datetime, default: float = 1.0) -> float:
    """``Retry-After`` as seconds: a delay in seconds or an HTTP date (RFC 9110)."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class _Redact(logging.Filter):
    """Rewrites log records that would carry a secret (httpx logs every request's URL).

    One filter for the process, installed once on the httpx and httpcore loggers; each webhook
    sink adds its URL and token to it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, *secrets: str | None) -> None:
        self.secrets.update(s for s in secrets if s)

    def scrub(self, text: str) -> str:
        # Longest first, so a URL is replaced whole before the token inside it.
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            record.msg, record.args = self.scrub(message), ()
        return True


_REDACT = _Redact()
for _logger in ("httpx", "httpcore"):
    logging.getLogger(_logger).addFilter(_REDACT)


class WebhookSink:
    """POSTs one Slack-compatible message per evaluation to a webhook URL from the environment."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        name: str = "webhook",
        include_payloads: bool = False,
        timeout_s: float = 10.0,
        max_wait_s: float = 30.0,
        max_rate_limit_waits: int = 3,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            # The URL itself is not echoed: it is a secret.
            raise ValueError(f"{WEBHOOK_URL_ENV} must be an http:// or https:// URL")
        self.name = name
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.include_payloads = include_payloads
        self.timeout_s = timeout_s
        self.max_wait_s = max_wait_s
        self.max_rate_limit_waits = max_rate_limit_waits
        import time

        self._sleep = sleep or time.sleep
        _REDACT.add(url, token)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> WebhookSink | None:
        """The sink configured by the environment, or None when no webhook URL is set."""
        env = os.environ if environ is None else environ
        url = env.get(WEBHOOK_URL_ENV)
        if not url:
            return None
        return cls(url, env.get(WEBHOOK_TOKEN_ENV) or None, **options)

    def __repr__(self) -> str:
        return f"WebhookSink(name={self.name!r}, url='***')"

    def send(self, items: Sequence[Pending], now: datetime) -> SendResult:
        body = slack_message([p.payload for p in items], self.include_payloads)
        ids = {p.notification_id for p in items}
        try:
            with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
                for attempt in range(self.max_rate_limit_waits + 1):
                    response = client.post(self._url, json=body, headers=self._headers)
                    status = response.status_code
                    if response.is_success:
                        return SendResult(acked=ids)
                    if status == 429:
                        wait = retry_after_seconds(response.headers.get("Retry-After"), now)
                        if wait <= self.max_wait_s and attempt < self.max_rate_limit_waits:
                            self._sleep(wait)
                            continue
                        return SendResult(error="webhook rate limited (HTTP 429)", retry_after_s=wait)
                    answer = _REDACT.scrub(response.text[:200])
                    error = f"webhook answered HTTP {status}: {answer!r}"
                    return SendResult(error=error, permanent=status < 500 and status != 408)
        except httpx.HTTPError as exc:
            # str(exc) may hold the URL: only the kind of failure is kept.
            return SendResult(error=f"webhook unreachable ({type(exc).__name__})")
        return SendResult(error="webhook rate limited (HTTP 429)")


class KafkaSink:
    """One message per notification on the ``alerts`` topic, keyed by alert_id (one partition, in order)."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        name: str = "kafka",
        flush_timeout_s: float = 10.0,
        **producer_overrides: Any,
    ) -> None:
        self.name = name
        self.settings = settings
        self.topic = settings.topics["alerts"]
        self.flush_timeout_s = flush_timeout_s
        self.producer_overrides = producer_overrides

    def send(self, items: Sequence[Pending], now: datetime) -> SendResult:
        try:
            producer = make_producer(self.settings, **self.producer_overrides)
        except (BrokerUnavailable, kafka_errors.KafkaError) as exc:
            return SendResult(error=f"Kafka unavailable at {self.settings.bootstrap} ({type(exc).__name__})")
        acked: set[str] = set()
        error = None
        try:
            futures = [
                (
                    p.notification_id,
                    producer.send(
                        self.topic,
                        key=p.payload["alert_id"].encode(),
                        value=json.dumps(p.payload, sort_keys=True, separators=(",", ":")).encode(),
                        headers=[("notification_id", p.notification_id.encode())],
                    ),
                )
                for p in items
            ]
            producer.flush(timeout=self.flush_timeout_s)
            for notification, future in futures:
                try:
                    future.get(timeout=0)
                except kafka_errors.KafkaError as exc:
                    error = f"Kafka send failed ({type(exc).__name__})"
                else:
                    acked.add(notification)
        except kafka_errors.KafkaError as exc:
            error = f"Kafka send failed ({type(exc).__name__})"
        finally:
            producer.close(timeout=5)
        return SendResult(acked=acked, error=error)
