"""Kafka settings, topic names and client factories: the one place parcours talks to a broker.

Every producer, consumer and admin client is made here, so the choices the pipeline's
correctness rests on are made once and cannot drift between a flow and a test:

- producers are idempotent with ``acks=all``: a retried send never duplicates or reorders a
  customer's touchpoints, and a record counts as sent only once the broker has it;
- consumers never commit on their own and never join a group subscription: the caller assigns
  partitions and commits offsets after its output is safely written (Parquet), so a crash
  replays records rather than losing them;
- records are keyed by ``customer_id``, so all of a customer's events land in one partition, in
  order — the same partition a Java client would pick (murmur2 of the key bytes).

A broker that cannot be reached surfaces as :class:`BrokerUnavailable`, naming the address and
how to start the local broker, instead of kafka-python's bare ``KafkaTimeoutError``.

    python -m parcours.kafka ensure-topics    # what `bash infra/kafka.sh topics` runs
    python -m parcours.kafka ping
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import errors as kafka_errors
from kafka.codec import has_lz4, has_zstd

log = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"
DEFAULT_TOPIC_PREFIX = "parcours."
DEFAULT_PARTITIONS = 4
# How long a client waits for its first metadata answer. kafka-python's 30 s default makes a
# forgotten broker look like a hang; 10 s is ample on a LAN and for a broker that is starting.
BOOTSTRAP_TIMEOUT_MS = 10_000
START_HINT = (
    "start the local broker with `bash infra/kafka.sh start`, or point PARCOURS_KAFKA_BOOTSTRAP at a running one"
)

# The logical topics. Partition counts not listed in _FIXED_PARTITIONS follow ensure_topics'
# `partitions`: those topics are keyed by customer_id and read in parallel.
TOPIC_KEYS = ("touchpoints", "surveys", "dead_letters", "alerts")
# Alerts go to people and webhooks in the order they were raised: a single partition keeps that.
_FIXED_PARTITIONS = {"alerts": 1}

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# The mechanisms a username and a password are enough for (OAUTHBEARER and GSSAPI need more
# than environment variables can carry).
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_TOPIC_CHARS = re.compile(r"^[A-Za-z0-9._-]*$")
_HOST_PORT = re.compile(r"^\[?[A-Za-z0-9.:_-]+\]?:\d{1,5}$")
_ENV = {
    "bootstrap": "PARCOURS_KAFKA_BOOTSTRAP",
    "topic_prefix": "PARCOURS_TOPIC_PREFIX",
    "security_protocol": "PARCOURS_KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "PARCOURS_KAFKA_SASL_MECHANISM",
    "sasl_username": "PARCOURS_KAFKA_SASL_USERNAME",
    "sasl_password": "PARCOURS_KAFKA_SASL_PASSWORD",
}


def topic_names(prefix: str = DEFAULT_TOPIC_PREFIX) -> dict[str, str]:
    """Logical topic → full name. A prefix lets tests and shared clusters keep their own set."""
    return {key: f"{prefix}{key}" for key in TOPIC_KEYS}


# The names under the default prefix. Code that may run under another prefix (every test does)
# takes its names from `KafkaSettings.topics` instead.
TOPICS: dict[str, str] = topic_names()


class KafkaSettingsError(ValueError):
    """Kafka settings that cannot work; the message names the environment variable to fix."""


class BrokerUnavailable(ConnectionError):
    """No broker answered at the bootstrap address: the message says where and what to do."""

    def __init__(self, bootstrap: str, timeout_ms: int | None = None) -> None:
        self.bootstrap = bootstrap
        within = f" within {timeout_ms} ms" if timeout_ms is not None else ""
        super().__init__(f"no Kafka broker answered at {bootstrap}{within}: {START_HINT}")


@dataclass(frozen=True, repr=False)
class KafkaSettings:
    """Where the broker is and how to authenticate; checked when built, not at first send."""

    bootstrap: str = DEFAULT_BOOTSTRAP
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None

    def __post_init__(self) -> None:
        servers = [s.strip() for s in self.bootstrap.split(",")]
        if not all(_HOST_PORT.match(s) for s in servers):
            self._fail("bootstrap", f"{self.bootstrap!r} is not host:port[,host:port...]")
        if not _TOPIC_CHARS.match(self.topic_prefix) or len(self.topic_prefix) > 200:
            self._fail("topic_prefix", f"{self.topic_prefix!r} may only hold letters, digits, '.', '_', '-'")
        if self.security_protocol not in _SECURITY_PROTOCOLS:
            self._fail("security_protocol", f"{self.security_protocol!r} is not one of {_SECURITY_PROTOCOLS}")
        uses_sasl = self.security_protocol.startswith("SASL_")
        if uses_sasl:
            if self.sasl_mechanism not in _SASL_MECHANISMS:
                self._fail("sasl_mechanism", f"{self.sasl_mechanism!r} is not one of {_SASL_MECHANISMS}")
            if not self.sasl_username:
                self._fail("sasl_username", f"is required with {self.security_protocol}")
            if not self.sasl_password:
                self._fail("sasl_password", f"is required with {self.security_protocol}")
        elif self.sasl_mechanism:
            self._fail("sasl_mechanism", f"is set but the security protocol is {self.security_protocol}")

    @staticmethod
    def _fail(field: str, problem: str) -> None:
        raise KafkaSettingsError(f"{_ENV[field]}: {problem}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSettings:
        """Read the PARCOURS_KAFKA_* variables; unset or empty ones take the local defaults."""
        env = os.environ if environ is None else environ

        def get(field: str) -> str | None:
            return env.get(_ENV[field]) or None

        return cls(
            bootstrap=get("bootstrap") or DEFAULT_BOOTSTRAP,
            # An empty prefix is a legitimate choice, so only an unset variable takes the default.
            topic_prefix=env.get(_ENV["topic_prefix"], DEFAULT_TOPIC_PREFIX),
            security_protocol=(get("security_protocol") or "PLAINTEXT").upper(),
            sasl_mechanism=(get("sasl_mechanism") or "").upper() or None,
            sasl_username=get("sasl_username"),
            sasl_password=get("sasl_password"),
        )

    def with_prefix(self, topic_prefix: str) -> KafkaSettings:
        return dataclasses.replace(self, topic_prefix=topic_prefix)

    @property
    def topics(self) -> dict[str, str]:
        return topic_names(self.topic_prefix)

    def client_config(self) -> dict[str, Any]:
        """The keyword arguments every kafka-python client shares (holds the secret: never log it)."""
        config: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap.split(",")],
            "security_protocol": self.security_protocol,
            "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
        }
        if self.security_protocol.startswith("SASL_"):
            config |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        return config

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks; the password must not.
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if values["sasl_password"] is not None:
            values["sasl_password"] = "***"
        return f"KafkaSettings({', '.join(f'{k}={v!r}' for k, v in values.items())})"

    __str__ = __repr__


@functools.cache
def check_crc32c() -> bool:
    """Warn (once) when the C crc32c is missing: kafka-python then checks every batch in pure Python."""
    try:
        import crc32c  # noqa: F401
    except ImportError:
        log.warning(
            "the crc32c package is not installed: kafka-python will verify record CRCs in pure "
            "Python, about 5x slower; pip install crc32c"
        )
        return False
    return True


def compression_type() -> str | None:
    """The best codec this environment has: lz4, else zstd (apache-beam brings zstandard), else none.

    Consumers need the same library to decompress; they run in this same environment.
    """
    if has_lz4():
        return "lz4"
    if has_zstd():
        return "zstd"
    return None


Client = TypeVar("Client", KafkaProducer, KafkaConsumer, KafkaAdminClient)


def _connect(client: type[Client], settings: KafkaSettings, config: dict[str, Any]) -> Client:
    try:
        return client(**config)
    except kafka_errors.KafkaTimeoutError as exc:
        # kafka-python 3 bootstraps eagerly in __init__ and raises this when no broker answers.
        raise BrokerUnavailable(settings.bootstrap, config.get("bootstrap_timeout_ms")) from exc


def make_producer(settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """An idempotent, acks=all producer of raw bytes (callers encode keys and values)."""
    check_crc32c()
    config = {
        **settings.client_config(),
        "client_id": "parcours-producer",
        "acks": "all",
        "enable_idempotence": True,
        # Throughput comes from batching: wait up to 20 ms to fill 256 KiB batches.
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "compression_type": compression_type(),
        **overrides,
    }
    return _connect(KafkaProducer, settings, config)


def make_consumer(settings: KafkaSettings, group_id: str | None = None, **overrides: Any) -> KafkaConsumer:
    """A consumer with no subscription and no auto-commit: callers assign partitions and commit.

    ``group_id`` only names where committed offsets are kept. A partition with no committed
    offset is read from its beginning, so a new reader misses nothing.
    """
    check_crc32c()
    config = {
        **settings.client_config(),
        "client_id": "parcours-consumer",
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        **overrides,
    }
    return _connect(KafkaConsumer, settings, config)


def make_admin(settings: KafkaSettings, **overrides: Any) -> KafkaAdminClient:
    config = {**settings.client_config(), "client_id": "parcours-admin", **overrides}
    return _connect(KafkaAdminClient, settings, config)


def ensure_topics(settings: KafkaSettings, partitions: int = DEFAULT_PARTITIONS) -> list[str]:
    """Create the parcours topics that do not exist yet and wait until they have leaders.

    Idempotent: an existing topic is left as it is (its partition count is not changed: that
    would move customers to other partitions). The replication factor is the broker's default.
    Returns the names created by this call.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    wanted = {
        name: {"num_partitions": _FIXED_PARTITIONS.get(key, partitions), "replication_factor": -1}
        for key, name in settings.topics.items()
    }
    admin = make_admin(settings)
    try:
        response = admin.create_topics(wanted, raise_errors=False)
        created = []
        for topic in response["topics"]:
            error = kafka_errors.for_code(topic["error_code"])
            if error is kafka_errors.NoError:
                created.append(topic["name"])
            elif error is not kafka_errors.TopicAlreadyExistsError:
                raise error(f"creating {topic['name']}: {topic.get('error_message')}")
        # CreateTopics returns before the partitions have leaders; a producer sent off right
        # after would see UnknownTopicOrPartition.
        admin.wait_for_topics(list(wanted), timeout_ms=30_000)
    finally:
        admin.close()
    if created:
        log.info("created Kafka topics %s", ", ".join(sorted(created)))
    return sorted(created)


def ping(settings: KafkaSettings, timeout_ms: int = BOOTSTRAP_TIMEOUT_MS) -> dict[str, Any]:
    """The cluster's id and brokers, or BrokerUnavailable: a health check by a real metadata request."""
    admin = make_admin(settings, bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms)
    try:
        return admin.describe_cluster()
    finally:
        admin.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parcours.kafka", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ensure = commands.add_parser("ensure-topics", help="create the parcours topics that are missing")
    ensure.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS)
    commands.add_parser("ping", help="exit 0 if the broker answers a metadata request")
    args = parser.parse_args(argv)
    # kafka-python narrates every connection at INFO; the lines printed below say what happened.
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s %(message)s")
    # An unreachable broker is reported once, below, instead of as one error per retry.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)

    try:
        settings = KafkaSettings.from_env()
        if args.command == "ping":
            cluster = ping(settings)
            n_brokers = len(cluster["brokers"])
            print(f"cluster {cluster.get('cluster_id')} at {settings.bootstrap}: {n_brokers} broker(s)")
        else:
            created = ensure_topics(settings, args.partitions)
            for key, name in settings.topics.items():
                state = "created" if name in created else "exists"
                print(f"{name:40} {state} ({key})")
    except (KafkaSettingsError, BrokerUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
