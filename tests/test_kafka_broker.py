"""The local Kafka broker and parcours.kafka, against a real broker (see conftest.py)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import TopicPartition
from kafka.partitioner.default import murmur2

from parcours.kafka import (
    BrokerUnavailable,
    KafkaSettings,
    KafkaSettingsError,
    check_crc32c,
    ensure_topics,
    make_admin,
    make_consumer,
    make_producer,
    ping,
)

KAFKA_SH = Path(__file__).resolve().parents[1] / "infra" / "kafka.sh"
KafkaSh = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.kafka
def test_the_broker_answers_a_metadata_request(kafka_broker: KafkaSettings) -> None:
    cluster = ping(kafka_broker)

    assert cluster["cluster_id"]
    assert [broker["is_fenced"] for broker in cluster["brokers"]] == [False] * len(cluster["brokers"])
    assert len(cluster["brokers"]) >= 1


@pytest.mark.kafka
def test_kafka_sh_status_and_start_on_a_running_broker(kafka_sh: KafkaSh, kafka_broker: KafkaSettings) -> None:
    status = kafka_sh("status")
    again = kafka_sh("start")

    assert status.returncode == 0, status.stdout + status.stderr
    assert f"healthy at {kafka_broker.bootstrap}" in status.stdout
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout


def test_kafka_sh_status_fails_when_no_broker_runs(tmp_path) -> None:
    result = subprocess.run(
        ["bash", str(KAFKA_SH), "status"],
        env={"PATH": "/usr/bin:/bin", "PARCOURS_KAFKA_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 3
    assert "not running" in result.stdout


@pytest.mark.kafka
def test_ensure_topics_creates_each_topic_once(kafka_settings_without_topics: KafkaSettings) -> None:
    settings = kafka_settings_without_topics
    names = settings.topics

    first = ensure_topics(settings)
    second = ensure_topics(settings)

    assert first == sorted(names.values())
    assert second == []
    admin = make_admin(settings)
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(names.values()))}
    finally:
        admin.close()
    assert described == {
        f"{settings.topic_prefix}touchpoints": 4,
        f"{settings.topic_prefix}surveys": 4,
        f"{settings.topic_prefix}dead_letters": 4,
        f"{settings.topic_prefix}alerts": 1,
    }


@pytest.mark.kafka
def test_keyed_records_come_back_once_each_in_order_per_customer(kafka_settings: KafkaSettings) -> None:
    topic = kafka_settings.topics["touchpoints"]
    n_customers, n_records = 37, 500
    customers = [f"cust-{i:03d}".encode() for i in range(n_customers)]
    sent = [(customers[i % n_customers], f"{i % n_customers}:{i // n_customers}".encode()) for i in range(n_records)]

    producer = make_producer(kafka_settings)
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in sent]
        producer.flush(timeout=30)
        acked = [future.get(timeout=30) for future in futures]
    finally:
        producer.close()

    consumer = make_consumer(kafka_settings)
    try:
        partitions = [TopicPartition(topic, p) for p in range(4)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(partitions)
        read: dict[int, list] = defaultdict(list)
        for _ in range(100):  # bounded: each poll waits at most 1 s for data
            if all(consumer.position(tp) >= end[tp] for tp in partitions):
                break
            for tp, records in consumer.poll(timeout_ms=1000).items():
                read[tp.partition].extend(records)
    finally:
        consumer.close()

    assert sum(end.values()) == n_records
    assert sum(len(records) for records in read.values()) == n_records
    # The partition a Java client (or Beam's KafkaIO) would pick for the same key.
    expected_partition = {key: (murmur2(key) & 0x7FFFFFFF) % 4 for key in customers}
    assert {meta.partition for meta in acked} == set(expected_partition.values())
    assert len(set(expected_partition.values())) == 4  # 37 keys spread over all 4 partitions
    by_customer: dict[bytes, list[tuple[int, bytes]]] = defaultdict(list)
    for partition, records in read.items():
        offsets = [r.offset for r in records]
        assert offsets == sorted(offsets)
        for record in records:
            by_customer[record.key].append((partition, record.value))
    for i, key in enumerate(customers):
        n_for_customer = 14 if i < n_records % n_customers else 13  # 500 = 13 * 37 + 19
        assert by_customer[key] == [(expected_partition[key], f"{i}:{seq}".encode()) for seq in range(n_for_customer)]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_producer_names_an_unreachable_broker_and_how_to_start_one() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()

    with pytest.raises(BrokerUnavailable) as raised:
        make_producer(KafkaSettings(bootstrap=address), bootstrap_timeout_ms=500)

    assert raised.value.bootstrap == address
    assert address in str(raised.value)
    assert "bash infra/kafka.sh start" in str(raised.value)
    # The override reached the client: kafka-python's own default would wait 30 s.
    assert time.monotonic() - started < 10


def test_settings_repr_masks_the_password() -> None:
    settings = KafkaSettings.from_env(
        {
            "PARCOURS_KAFKA_BOOTSTRAP": "kafka-1:9092,kafka-2:9092",
            "PARCOURS_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "PARCOURS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "PARCOURS_KAFKA_SASL_USERNAME": "parcours",
            "PARCOURS_KAFKA_SASL_PASSWORD": "hunter2-secret",
        }
    )

    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in str(settings)
    assert "sasl_password='***'" in repr(settings)
    assert "sasl_username='parcours'" in repr(settings)
    assert settings.client_config()["sasl_plain_password"] == "hunter2-secret"


def test_settings_from_an_empty_environment_are_the_local_broker_and_default_topics() -> None:
    settings = KafkaSettings.from_env({})

    assert settings.bootstrap == "127.0.0.1:19092"
    assert settings.topics == {
        "touchpoints": "parcours.touchpoints",
        "surveys": "parcours.surveys",
        "dead_letters": "parcours.dead_letters",
        "alerts": "parcours.alerts",
    }


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PARCOURS_KAFKA_BOOTSTRAP": "localhost"}, "PARCOURS_KAFKA_BOOTSTRAP"),
        ({"PARCOURS_TOPIC_PREFIX": "bad prefix/"}, "PARCOURS_TOPIC_PREFIX"),
        ({"PARCOURS_KAFKA_SECURITY_PROTOCOL": "TLS"}, "PARCOURS_KAFKA_SECURITY_PROTOCOL"),
        (
            {
                "PARCOURS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "PARCOURS_KAFKA_SASL_MECHANISM": "PLAIN",
                "PARCOURS_KAFKA_SASL_USERNAME": "u",
            },
            "PARCOURS_KAFKA_SASL_PASSWORD",
        ),
    ],
)
def test_bad_settings_name_the_variable_to_fix(environ: dict[str, str], named: str) -> None:
    with pytest.raises(KafkaSettingsError, match=named):
        KafkaSettings.from_env(environ)


def test_check_crc32c_warns_when_the_c_extension_is_missing(monkeypatch, caplog) -> None:
    check_crc32c.cache_clear()
    monkeypatch.setitem(sys.modules, "crc32c", None)  # makes `import crc32c` raise ImportError
    try:
        with caplog.at_level(logging.WARNING, logger="parcours.kafka"):
            assert check_crc32c() is False
    finally:
        check_crc32c.cache_clear()

    assert "crc32c" in caplog.text
    assert "pure Python" in caplog.text
