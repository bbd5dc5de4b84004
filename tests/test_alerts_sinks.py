"""The sinks against real receivers: an HTTP server on 127.0.0.1 and the Kafka broker."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kafka import TopicPartition

from parcours.alerts import AlertSettings, AlertStore, KafkaSink, WebhookSink, run_evaluation, slack_message
from parcours.alerts.sinks import retry_after_seconds
from parcours.kafka import KafkaSettings, make_consumer
from tests.alerts_helpers import cohort_table, evaluation_time
from tests.conftest import _free_ports

SERIES = ("explicit_churn_rate", "renewal", "segment", "pro & <vip>")
SPIKE = [(500, 100)] * 4 + [(500, 150), (500, 150)]
SECRET_PATH = "/services/T0SECRET/B0SECRET/xoxSECRETwebhook"
TOKEN = "tok-SECRET-4f9a"


class Receiver:
    """A webhook receiver answering a scripted list of (status, headers), then 200 `ok`."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, headers = receiver.script.pop(0) if receiver.script else (200, {})
                receiver.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body, "status": status}
                )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                answer = b"ok" if status == 200 else b"rollup_error"
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:  # the test server's own access log
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def notification_ids(self, request: dict) -> list[str]:
        contexts = [b["elements"][0]["text"] for b in request["body"]["blocks"] if b["type"] == "context"]
        return [text.split("notification `")[1].split("`")[0] for text in contexts]


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    r = Receiver(getattr(request, "param", []))
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()
    r.thread.join()


def _evaluate(store, sinks, i: int, days_later: int = 0):
    """Evaluate the cohorts final after window i, `days_later` daily evaluations after it became final."""
    table = cohort_table({SERIES: SPIKE}, finality_point=evaluation_time(i))
    return run_evaluation(table, AlertSettings(), store, sinks, evaluation_time(i) + timedelta(days=days_later))


def _read_alerts(settings: KafkaSettings, expected: int) -> list:
    """The records on the alerts topic, polling until `expected` arrived (or 20 empty polls)."""
    consumer = make_consumer(settings)
    try:
        partition = TopicPartition(settings.topics["alerts"], 0)
        consumer.assign([partition])
        records: list = []
        for _ in range(20):
            records += consumer.poll(timeout_ms=1000).get(partition, [])
            if len(records) >= expected:
                break
        # One more short poll: a duplicate would show here.
        records += consumer.poll(timeout_ms=500).get(partition, [])
    finally:
        consumer.close()
    return records


def _down_kafka() -> KafkaSink:
    (port,) = _free_ports(1)  # nothing listens there
    return KafkaSink(KafkaSettings(bootstrap=f"127.0.0.1:{port}"), bootstrap_timeout_ms=500)


@pytest.mark.parametrize("receiver", [[(500, {}), (500, {})]], indirect=True)
def test_a_webhook_answering_500_twice_gets_the_same_notification_again_and_is_delivered_once(receiver) -> None:
    store = AlertStore()
    sink = WebhookSink(receiver.url)
    for i in range(6):
        _evaluate(store, [sink], i)  # fires at window 5: 500
    assert [r["status"] for r in receiver.requests] == [500]
    assert store.outbox("webhook").pending[0].last_error == "webhook answered HTTP 500: 'rollup_error'"
    _evaluate(store, [sink], 5, days_later=1)  # the next evaluation, same data: retried, 500 again
    _evaluate(store, [sink], 5, days_later=2)  # and again: 200
    _evaluate(store, [sink], 5, days_later=3)  # nothing left to send
    assert [r["status"] for r in receiver.requests] == [500, 500, 200]
    ids = [receiver.notification_ids(r) for r in receiver.requests]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 1
    assert store.outbox("webhook").pending == [] and store.outbox("webhook").delivered == 1


@pytest.mark.parametrize("receiver", [[(429, {"Retry-After": "7"}), (429, {"Retry-After": "3"})]], indirect=True)
def test_a_429_is_honoured_by_waiting_its_retry_after(receiver) -> None:
    waits: list[float] = []
    store = AlertStore()
    sink = WebhookSink(receiver.url, sleep=waits.append)
    reports = [_evaluate(store, [sink], i) for i in range(6)]
    assert waits == [7.0, 3.0]
    assert [r["status"] for r in receiver.requests] == [429, 429, 200]
    assert reports[-1].deliveries[0].delivered == 1


@pytest.mark.parametrize("receiver", [[(429, {"Retry-After": "600"})]], indirect=True)
def test_a_long_retry_after_is_left_to_a_later_evaluation(receiver) -> None:
    waits: list[float] = []
    store = AlertStore()
    sink = WebhookSink(receiver.url, sleep=waits.append, max_wait_s=30)
    for i in range(6):
        _evaluate(store, [sink], i)
    pending = store.outbox("webhook").pending[0]
    assert waits == [] and pending.last_error == "webhook rate limited (HTTP 429)"
    sent_at = evaluation_time(5)
    assert pending.next_attempt_at == (sent_at + timedelta(seconds=600)).isoformat()


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = evaluation_time(0)
    assert retry_after_seconds("12", now) == 12.0
    assert (
        retry_after_seconds(
            now.strftime("%a, %d %b %Y %H:%M:%S GMT").replace(
                now.strftime("%H:%M:%S"), (now + timedelta(seconds=90)).strftime("%H:%M:%S")
            ),
            now,
        )
        == 90.0
    )
    assert retry_after_seconds(None, now) == 1.0 and retry_after_seconds("soon", now) == 1.0


@pytest.mark.parametrize("receiver", [[(404, {})]], indirect=True)
def test_a_permanent_refusal_goes_to_the_dead_list_with_its_reason(receiver) -> None:
    store = AlertStore()
    for i in range(6):
        _evaluate(store, [WebhookSink(receiver.url)], i)
    box = store.outbox("webhook")
    assert box.pending == [] and [d["reason"] for d in box.dead] == ["webhook answered HTTP 404: 'rollup_error'"]


def test_one_grouped_message_per_evaluation_with_escaped_text(receiver) -> None:
    store = AlertStore()
    other = ("dropoff_rate", "purchase", "overall", "all")
    sink = WebhookSink(receiver.url)
    for i in range(6):
        table = cohort_table({SERIES: SPIKE, other: SPIKE}, finality_point=evaluation_time(i))
        run_evaluation(table, AlertSettings(), store, [sink], evaluation_time(i))
    assert len(receiver.requests) == 1  # two alerts, one message
    body = receiver.requests[0]["body"]
    assert len(receiver.notification_ids(receiver.requests[0])) == 2
    assert body["text"].startswith("parcours alerts: 2 firing, 0 resolved")
    assert "pro &amp; &lt;vip&gt;" in body["text"] and "<vip>" not in json.dumps(body["blocks"])
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "context", "section", "context"]


def test_a_message_keeps_within_slacks_block_limit() -> None:
    payload = {
        "state": "firing",
        "summary": "s",
        "kind": "no_data",
        "stage": "x",
        "breakdown": "overall",
        "breakdown_value": "all",
        "rule": "dropoff_rate",
        "runbook": "r",
        "alert_id": "a",
        "notification_id": "n",
        "watermark": "w",
        "finality_point": "f",
    }
    message = slack_message([payload] * 40)
    assert len(message["blocks"]) <= 50 and "18 more" in message["blocks"][-1]["text"]["text"]


def test_kafka_down_does_not_block_the_webhook_and_is_retried_next_evaluation(receiver, kafka_settings) -> None:
    store = AlertStore()
    webhook = WebhookSink(receiver.url, TOKEN, include_payloads=True)
    for i in range(6):
        report = _evaluate(store, [_down_kafka(), webhook], i)
    kafka_delivery, webhook_delivery = report.deliveries
    assert webhook_delivery.delivered == 1 and len(receiver.requests) == 1
    assert kafka_delivery.delivered == 0 and kafka_delivery.pending == 1
    assert kafka_delivery.error.startswith("Kafka unavailable at 127.0.0.1:")
    sent = receiver.requests[0]["body"]["parcours_notifications"][0]
    # The broker is back: the next evaluation (same data) delivers to Kafka and nothing else.
    report = _evaluate(store, [KafkaSink(kafka_settings), webhook], 5, days_later=1)
    assert [d.delivered for d in report.deliveries] == [1, 0] and len(receiver.requests) == 1
    records = _read_alerts(kafka_settings, expected=1)
    assert len(records) == 1
    record = records[0]
    assert record.key == sent["alert_id"].encode()
    assert json.loads(record.value) == sent
    assert dict(record.headers)["notification_id"] == sent["notification_id"].encode()


@pytest.mark.parametrize("receiver", [[(500, {}), (404, {})]], indirect=True)
def test_the_webhook_url_and_token_appear_in_no_log_error_row_or_message(
    receiver, kafka_settings, caplog, tmp_path
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"PARCOURS_ALERT_WEBHOOK_URL": receiver.url, "PARCOURS_ALERT_WEBHOOK_TOKEN": TOKEN}
    webhook = WebhookSink.from_env(env, include_payloads=True)
    store = AlertStore.load(tmp_path / "alerts-state.json")
    sinks = [webhook, KafkaSink(kafka_settings)]
    reports = [_evaluate(store, sinks, i) for i in range(6)]  # 500
    reports.append(_evaluate(store, sinks, 5, days_later=1))  # 404
    # And once against a receiver that is gone (connection refused).
    receiver.server.shutdown()
    receiver.server.server_close()
    gone = WebhookSink(receiver.url, TOKEN, name="webhook-gone")
    reports += [_evaluate(AlertStore(), [gone], i) for i in range(6)]
    assert receiver.requests[0]["auth"] == f"Bearer {TOKEN}" and receiver.requests[0]["path"] == SECRET_PATH
    errors = [d.error or "" for r in reports for d in r.deliveries]
    assert "webhook answered HTTP 500: 'rollup_error'" in errors
    assert any(e.startswith("webhook unreachable (") for e in errors)
    messages = b"".join(r.value for r in _read_alerts(kafka_settings, expected=1))
    assert messages
    places = {
        "logs": caplog.text,
        "errors": "\n".join(errors),
        "rows": "\n".join(str(r.history.to_pylist()) for r in reports),
        "store": (tmp_path / "alerts-state.json").read_text(),
        "kafka": messages.decode(),
        "repr": repr(webhook) + repr(gone),
    }
    assert "HTTP Request: POST" in caplog.text  # httpx's request lines were captured, redacted
    for place, text in places.items():
        for secret in (SECRET_PATH, "T0SECRET", "xoxSECRETwebhook", TOKEN):
            assert secret not in text, f"{secret!r} leaked into {place}"
