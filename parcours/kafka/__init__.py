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
how to start the local broker, instead of kafka-python's bare ``KafkaTimeoutError``. A broker
that answers but refuses us surfaces as :class:`AuthenticationFailed` (SASL: the mechanism, the
user and the address are named, never the password) or :class:`TlsHandshakeFailed` (the
certificate problem and the variable to fix); neither is worth a retry.

    python -m parcours.kafka ensure-topics    # what `bash infra/kafka.sh topics` runs
    python -m parcours.kafka ping
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import re
import socket
import ssl
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import errors as kafka_errors
from kafka.codec import has_lz4, has_zstd
from kafka.net.compat import KafkaNetClient
from kafka.net.manager import KafkaConnectionManager
from kafka.net.selector import NetworkSelector

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
    "ssl_cafile": "PARCOURS_KAFKA_SSL_CAFILE",
    "ssl_certfile": "PARCOURS_KAFKA_SSL_CERTFILE",
    "ssl_keyfile": "PARCOURS_KAFKA_SSL_KEYFILE",
    "ssl_key_password": "PARCOURS_KAFKA_SSL_KEY_PASSWORD",
    "ssl_check_hostname": "PARCOURS_KAFKA_SSL_CHECK_HOSTNAME",
}
# The settings that are secrets: masked in repr, and never put in an error message.
_SECRETS = ("sasl_password", "ssl_key_password")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


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


class KafkaSecurityError(ConnectionError):
    """The broker answered but the connection's security failed: a setting to fix, not a retry."""


class AuthenticationFailed(KafkaSecurityError):
    """The broker rejected the SASL credentials. The message names the mechanism, never the password."""

    def __init__(self, settings: KafkaSettings, broker_message: str | None = None) -> None:
        self.bootstrap = settings.bootstrap
        self.mechanism = settings.sasl_mechanism
        said = f" (the broker said: {broker_message})" if broker_message else ""
        super().__init__(
            f"Kafka SASL authentication failed at {settings.bootstrap}: mechanism {settings.sasl_mechanism} "
            f"over {settings.security_protocol}, user {settings.sasl_username!r}{said}; check "
            f"{_ENV['sasl_username']}, {_ENV['sasl_password']} and {_ENV['sasl_mechanism']}"
        )


class TlsHandshakeFailed(KafkaSecurityError):
    """The TLS handshake with the broker failed: the message says why and which variable to check."""

    def __init__(self, bootstrap: str, reason: str) -> None:
        self.bootstrap = bootstrap
        super().__init__(
            f"TLS handshake with the Kafka broker at {bootstrap} failed: {reason}; check "
            f"{_ENV['ssl_cafile']} (the CA that signed the broker's certificate), that the certificate names "
            f"the host of {_ENV['bootstrap']} ({_ENV['ssl_check_hostname']}), and the client certificate "
            f"({_ENV['ssl_certfile']}, {_ENV['ssl_keyfile']}) when the broker requires one"
        )


@dataclass(frozen=True, repr=False)
class KafkaSettings:
    """Where the broker is and how to authenticate; checked when built, not at first send."""

    bootstrap: str = DEFAULT_BOOTSTRAP
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    # TLS (SSL and SASL_SSL). No CA file: the system's CAs. A client certificate only where the
    # broker asks for one (mutual TLS); its key may be in the certificate file.
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: str | None = None
    ssl_check_hostname: bool = True

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

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
        self._check_tls()

    def _check_tls(self) -> None:
        """Missing or unreadable TLS files are named now: kafka-python would retry them until its timeout."""
        files = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
        if not self.uses_tls:
            for field in (*files, "ssl_key_password"):
                if getattr(self, field):
                    self._fail(field, f"is set but the security protocol is {self.security_protocol}")
            return
        for field in files:
            path = getattr(self, field)
            if path and not os.path.isfile(path):
                self._fail(field, f"no file at {path}")
        if self.ssl_keyfile and not self.ssl_certfile:
            self._fail("ssl_keyfile", f"is set without {_ENV['ssl_certfile']} (the client certificate)")
        if self.ssl_key_password and not self.ssl_certfile:
            self._fail("ssl_key_password", f"is set without {_ENV['ssl_certfile']} (the client certificate)")
        self.ssl_context()  # a CA file that is not PEM, a key that does not match or decrypt

    def ssl_context(self) -> ssl.SSLContext:
        """The client TLS context these settings describe (the one kafka-python builds from them).

        Raises KafkaSettingsError naming the file's variable when a file cannot be loaded.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = self.ssl_check_hostname
        try:
            if self.ssl_cafile:
                ctx.load_verify_locations(self.ssl_cafile)
            else:
                ctx.load_default_certs()
        except ssl.SSLError as exc:
            self._fail("ssl_cafile", f"cannot be loaded as PEM certificates: {exc.reason or exc}")
        if self.ssl_certfile:
            try:
                ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password=self._key_password())
            except ssl.SSLError as exc:
                self._fail("ssl_certfile", f"the certificate and its key cannot be loaded: {exc.reason or exc}")
        return ctx

    def _key_password(self) -> str:
        # Never None: with None, OpenSSL would prompt on the terminal for an encrypted key's password.
        return self.ssl_key_password or ""

    @staticmethod
    def _fail(field: str, problem: str) -> None:
        raise KafkaSettingsError(f"{_ENV[field]}: {problem}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSettings:
        """Read the PARCOURS_KAFKA_* variables; unset or empty ones take the local defaults."""
        env = os.environ if environ is None else environ

        def get(field: str) -> str | None:
            return env.get(_ENV[field]) or None

        check_hostname = (get("ssl_check_hostname") or "true").strip().lower()
        if check_hostname not in _TRUE + _FALSE:
            cls._fail("ssl_check_hostname", f"{check_hostname!r} is not true or false")
        return cls(
            bootstrap=get("bootstrap") or DEFAULT_BOOTSTRAP,
            # An empty prefix is a legitimate choice, so only an unset variable takes the default.
            topic_prefix=env.get(_ENV["topic_prefix"], DEFAULT_TOPIC_PREFIX),
            security_protocol=(get("security_protocol") or "PLAINTEXT").upper(),
            sasl_mechanism=(get("sasl_mechanism") or "").upper() or None,
            sasl_username=get("sasl_username"),
            sasl_password=get("sasl_password"),
            ssl_cafile=get("ssl_cafile"),
            ssl_certfile=get("ssl_certfile"),
            ssl_keyfile=get("ssl_keyfile"),
            ssl_key_password=get("ssl_key_password"),
            ssl_check_hostname=check_hostname in _TRUE,
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
        if self.uses_tls:
            config |= {
                "ssl_cafile": self.ssl_cafile,
                "ssl_certfile": self.ssl_certfile,
                "ssl_keyfile": self.ssl_keyfile,
                "ssl_password": self._key_password(),
                "ssl_check_hostname": self.ssl_check_hostname,
            }
        return config

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks; the password must not.
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for secret in _SECRETS:
            if values[secret] is not None:
                values[secret] = "***"
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
    # kafka-python retries a rejected SASL login or TLS handshake until its bootstrap timeout and
    # then raises the same timeout as for a stopped broker: its connections are watched to tell
    # them apart.
    rejections: list[Exception] = []
    secured = settings.security_protocol != "PLAINTEXT"
    if secured:
        config = {"kafka_client": functools.partial(_watched_client, rejections), **config}
    try:
        with _quiet_bootstrap() if secured else contextlib.nullcontext():
            return client(**config)
    except kafka_errors.SaslAuthenticationFailedError as exc:
        raise AuthenticationFailed(settings, _broker_message(exc)) from None
    except kafka_errors.KafkaTimeoutError as exc:
        # kafka-python 3 bootstraps eagerly in __init__ and raises this when no broker answers.
        sasl = [e for e in rejections if isinstance(e, kafka_errors.SaslAuthenticationFailedError)]
        if sasl:
            raise AuthenticationFailed(settings, _broker_message(sasl[-1])) from None
        # Behind TLS, "no answer" is often a handshake kafka-python retried until the timeout.
        if settings.uses_tls:
            reason = _tls_failure(settings)
            if reason is not None:
                raise TlsHandshakeFailed(settings.bootstrap, reason) from None
        raise BrokerUnavailable(settings.bootstrap, config.get("bootstrap_timeout_ms")) from exc


class _RedactSecrets(logging.Filter):
    """Masks the passwords in kafka-python's admin client's DEBUG line of its whole configuration."""

    KEYS = ("sasl_plain_password", "ssl_password")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):  # logging unpacks a lone dict argument to record.args
            record.args = self._redacted(record.args)
        elif isinstance(record.args, tuple):
            record.args = tuple(self._redacted(a) if isinstance(a, Mapping) else a for a in record.args)
        return True

    def _redacted(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: "***" if k in self.KEYS and v else v for k, v in values.items()}


# A logger's filters see only the records of that very logger: this is the one that dumps configs.
logging.getLogger("kafka.admin.client").addFilter(_RedactSecrets())

_quiet_lock = threading.Lock()
_quiet_depth = 0
_kafka_log = logging.getLogger("kafka")
_kafka_log_level = logging.NOTSET


@contextlib.contextmanager
def _quiet_bootstrap() -> Iterator[None]:
    """kafka-python's own log lines off while a secured client bootstraps (in any thread).

    It logs each failed attempt of its bootstrap loop (a rejected login, a refused certificate,
    a slow event loop) as warnings and errors; the outcome is what counts, and it is reported
    once: the client, or AuthenticationFailed / TlsHandshakeFailed / BrokerUnavailable.
    """
    global _quiet_depth, _kafka_log_level
    with _quiet_lock:
        if _quiet_depth == 0:
            _kafka_log_level = _kafka_log.level
            _kafka_log.setLevel(logging.CRITICAL)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                _kafka_log.setLevel(_kafka_log_level)


class _WatchedConnections(KafkaConnectionManager):
    """kafka-python's connection manager, noting each SASL or certificate rejection its connections meet."""

    def __init__(self, net: NetworkSelector, rejections: list[Exception], **configs: Any) -> None:
        super().__init__(net, **configs)
        self._rejections = rejections

    def get_connection(self, node_id: Any, *args: Any, **kwargs: Any) -> Any:
        conn = super().get_connection(node_id, *args, **kwargs)
        conn.init_future.add_errback(self._note)
        return conn

    def _note(self, exc: Exception) -> None:
        # Only the rejections a retry cannot cure: other TLS errors (a broker going down in the
        # middle of a handshake) keep kafka-python's retries, and are diagnosed after its timeout.
        rejected = isinstance(exc, kafka_errors.SaslAuthenticationFailedError) or (
            isinstance(exc, kafka_errors.KafkaConnectionError)
            and isinstance(exc.__context__, ssl.SSLCertVerificationError)
        )
        if rejected:
            self._rejections.append(exc)
            if not self.bootstrapped:
                # Like the Java client: a rejected login is not retried. Closing ends kafka-python's
                # bootstrap loop now instead of at its timeout (then _connect names the rejection).
                self.close()


def _watched_client(rejections: list[Exception], **configs: Any) -> KafkaNetClient:
    net = NetworkSelector(**configs)
    return KafkaNetClient(net=net, manager=_WatchedConnections(net, rejections, **configs), **configs)


def _broker_message(exc: Exception) -> str | None:
    # kafka-python's text is "[Error 58] SaslAuthenticationFailedError: <ErrorClass>: <the broker's
    # message>". The broker's message names the mechanism, never the password.
    message = str(exc).rsplit("Error: ", 1)[-1].strip()
    return message or None


def _tls_failure(settings: KafkaSettings, timeout_s: float = 5.0) -> str | None:
    """Why a TLS handshake with the first bootstrap server fails, or None (no TCP answer, or no failure).

    kafka-python logs a failed handshake and retries it until its bootstrap timeout, then raises
    the same timeout as for a stopped broker; one handshake of our own tells the two apart. With
    TLS 1.3 a broker checks the client's certificate after the handshake: its refusal is the alert
    that a first read gets (a broker that accepted us says nothing until it gets a request).
    """
    host, _, port = settings.bootstrap.split(",")[0].strip().rpartition(":")
    host = host.strip("[]")
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout_s) as sock,
            settings.ssl_context().wrap_socket(sock, server_hostname=host) as tls,
        ):
            tls.settimeout(1.0)
            with contextlib.suppress(TimeoutError):
                tls.recv(1)
            return None
    except ssl.SSLCertVerificationError as exc:
        return f"the broker's certificate was not accepted: {exc.verify_message}"
    except ssl.SSLError as exc:
        return f"{exc.reason or exc}"
    except OSError:
        return None


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
    except (KafkaSettingsError, BrokerUnavailable, KafkaSecurityError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
