"""Kafka over TLS and SASL, against the real local broker started with secured listeners.

The module starts its own broker (infra/kafka.sh) with a SASL_SSL listener (SCRAM-SHA-512 and
PLAIN), a SASL_PLAINTEXT one and an SSL one that requires a client certificate, all on free
ports of 127.0.0.1, with a CA and certificates generated here by openssl and keytool. The
secrets are random per run and travel only through environment variables; the last test greps
every byte the run left behind (outputs, logs, manifests, Parquet, the views file) for them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka import errors as kafka_errors

from parcours.kafka import (
    AuthenticationFailed,
    KafkaSettings,
    KafkaSettingsError,
    TlsHandshakeFailed,
    ensure_topics,
    make_consumer,
    make_producer,
    ping,
)
from tests.pipeline_helpers import csat_answers, make_events, query, write_jsonl

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "infra" / "kafka.sh"
SCRAM_USER, PLAIN_USER = "parcours-scram", "parcours-plain"


# -- certificates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_pem: Path
    other_ca_pem: Path  # a CA that did not sign the broker's certificate
    broker_keystore: Path  # PKCS12: the broker's key and its chain
    broker_truststore: Path  # PKCS12: the CA, for client certificates
    client_cert: Path
    client_key: Path  # PEM, encrypted with key_password
    store_password: str
    key_password: str


def _run(args: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, f"{args[0]} failed: {result.stderr}"


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, pem = folder / f"{name}.key", folder / f"{name}.pem"
    _run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(pem),
         "-days", "2", "-subj", f"/CN=parcours test {name}",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    )  # fmt: skip
    return key, pem


def _sign(folder: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    key, csr, pem, ext = (folder / f"{name}.{suffix}" for suffix in ("key", "csr", "pem", "ext"))
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
          "-subj", f"/CN={name}"])  # fmt: skip
    ext.write_text(extensions)
    _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]), "-CAcreateserial",
          "-out", str(pem), "-days", "2", "-extfile", str(ext)])  # fmt: skip
    return key, pem


def make_pki(folder: Path) -> Pki:
    """A CA, a broker certificate for 127.0.0.1 and localhost, a client certificate, the stores."""
    if shutil.which("openssl") is None or shutil.which("keytool") is None:
        pytest.fail("openssl and keytool (from the JDK the broker needs) must be on PATH")
    ca = _make_ca(folder, "ca")
    _, other_ca = _make_ca(folder, "other-ca")
    broker = _sign(folder, "broker", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    client = _sign(folder, "client", ca, "extendedKeyUsage=clientAuth\n")
    store_password, key_password = f"store-{secrets.token_hex(12)}", f"key-{secrets.token_hex(12)}"
    # The passwords reach openssl and keytool through their environment, never their arguments.
    env = {**os.environ, "STORE_PW": store_password, "KEY_PW": key_password}
    keystore, truststore = folder / "broker.p12", folder / "truststore.p12"
    _run(["openssl", "pkcs12", "-export", "-in", str(broker[1]), "-inkey", str(broker[0]), "-certfile", str(ca[1]),
          "-name", "broker", "-out", str(keystore), "-passout", "env:STORE_PW"], env)  # fmt: skip
    _run(["keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", str(ca[1]), "-keystore", str(truststore),
          "-storetype", "PKCS12", "-storepass:env", "STORE_PW"], env)  # fmt: skip
    client_key = folder / "client.enc.key"
    _run(["openssl", "pkey", "-in", str(client[0]), "-aes256", "-passout", "env:KEY_PW", "-out", str(client_key)], env)
    return Pki(ca[1], other_ca, keystore, truststore, client[1], client_key, store_password, key_password)


# -- the secured broker ---------------------------------------------------------------------------


@dataclass
class SecuredBroker:
    pki: Pki
    home: Path
    ports: dict[str, int]
    passwords: dict[str, str]  # mechanism -> that user's password
    # Every stdout and stderr this module captured, for the secret grep at the end.
    outputs: list[str] = field(default_factory=list)

    @property
    def secrets(self) -> list[str]:
        return [*self.passwords.values(), self.pki.store_password, self.pki.key_password]

    def env(self, mechanism: str, protocol: str = "SASL_SSL", password: str | None = None) -> dict[str, str]:
        """The PARCOURS_KAFKA_* variables a user sets for this broker."""
        env = {
            "PARCOURS_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.ports[protocol]}",
            "PARCOURS_KAFKA_SECURITY_PROTOCOL": protocol,
            "PARCOURS_KAFKA_SASL_MECHANISM": mechanism,
            "PARCOURS_KAFKA_SASL_USERNAME": SCRAM_USER if mechanism.startswith("SCRAM") else PLAIN_USER,
            "PARCOURS_KAFKA_SASL_PASSWORD": self.passwords[mechanism] if password is None else password,
        }
        if protocol == "SASL_SSL":
            env["PARCOURS_KAFKA_SSL_CAFILE"] = str(self.pki.ca_pem)
        return env

    def settings(self, mechanism: str, protocol: str = "SASL_SSL", prefix: str = "", **overrides: str) -> KafkaSettings:
        return KafkaSettings.from_env({**self.env(mechanism, protocol), **overrides, "PARCOURS_TOPIC_PREFIX": prefix})


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _kafka_sh(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(KAFKA_SH), *args], env=env, capture_output=True, text=True, timeout=300)


def _broker_env(home: Path, pki: Pki, ports: dict[str, int], passwords: dict[str, str]) -> dict[str, str]:
    # Nothing of the caller's Kafka settings: this broker is configured by these variables alone.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PARCOURS_KAFKA")}
    return {
        **inherited,
        "PARCOURS_KAFKA_HOME": str(home),
        "PARCOURS_KAFKA_LIBS": os.environ.get("PARCOURS_KAFKA_LIBS", str(REPO / ".kafka" / "libs")),
        "PARCOURS_KAFKA_PORT": str(ports["PLAINTEXT"]),
        "PARCOURS_KAFKA_CONTROLLER_PORT": str(ports["CONTROLLER"]),
        "PARCOURS_KAFKA_SASL_SSL_PORT": str(ports["SASL_SSL"]),
        "PARCOURS_KAFKA_SASL_PLAINTEXT_PORT": str(ports["SASL_PLAINTEXT"]),
        "PARCOURS_KAFKA_SSL_PORT": str(ports["SSL"]),
        "PARCOURS_KAFKA_BROKER_KEYSTORE": str(pki.broker_keystore),
        "PARCOURS_KAFKA_BROKER_KEYSTORE_PASSWORD": pki.store_password,
        "PARCOURS_KAFKA_BROKER_TRUSTSTORE": str(pki.broker_truststore),
        "PARCOURS_KAFKA_BROKER_TRUSTSTORE_PASSWORD": pki.store_password,
        "PARCOURS_KAFKA_BROKER_PLAIN_JAAS_CONFIG": (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_{PLAIN_USER}="{passwords["PLAIN"]}";'
        ),
        "PARCOURS_KAFKA_BROKER_SCRAM_USERNAME": SCRAM_USER,
        "PARCOURS_KAFKA_BROKER_SCRAM_PASSWORD": passwords["SCRAM-SHA-512"],
    }


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    home = tmp_path_factory.mktemp("kafka-secured")
    passwords = {"SCRAM-SHA-512": f"scram-{secrets.token_hex(12)}", "PLAIN": f"plain-{secrets.token_hex(12)}"}
    for _attempt in range(3):  # another process may take a "free" port before the broker binds it
        ports = dict(zip(("PLAINTEXT", "CONTROLLER", "SASL_SSL", "SASL_PLAINTEXT", "SSL"), _free_ports(5), strict=True))
        env = _broker_env(home, pki, ports, passwords)
        started = _kafka_sh(env, "start")
        if started.returncode == 0 or "already in use" not in started.stderr:
            break
    assert started.returncode == 0, f"kafka.sh start failed:\n{started.stdout}\n{started.stderr}"
    broker = SecuredBroker(pki, home, ports, passwords, outputs=[started.stdout, started.stderr])
    try:
        yield broker
    finally:
        stopped = _kafka_sh(env, "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def _topic_prefix() -> str:
    return f"sec{secrets.token_hex(4)}."


def _round_trip(settings: KafkaSettings, n: int = 50) -> list[tuple[bytes, bytes]]:
    """Creates the topics, sends n keyed records and reads them all back, through `settings`."""
    ensure_topics(settings, partitions=2)
    topic = settings.topics["touchpoints"]
    sent = [(f"cust-{i % 7}".encode(), f"record-{i}".encode()) for i in range(n)]
    producer = make_producer(settings)
    try:
        for future in [producer.send(topic, key=key, value=value) for key, value in sent]:
            future.get(timeout=30)
    finally:
        producer.close()
    consumer = make_consumer(settings)
    try:
        partitions = [TopicPartition(topic, p) for p in range(2)]
        consumer.assign(partitions)
        end = consumer.end_offsets(partitions)
        read: list[tuple[bytes, bytes]] = []
        for _ in range(60):  # bounded: each poll waits at most 1 s
            if all(consumer.position(tp) >= end[tp] for tp in partitions):
                break
            read += [(r.key, r.value) for records in consumer.poll(timeout_ms=1000).values() for r in records]
    finally:
        consumer.close()
    assert sorted(read) == sorted(sent)
    return read


# -- through the broker -----------------------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.parametrize(
    ("mechanism", "protocol"),
    [("SCRAM-SHA-512", "SASL_SSL"), ("PLAIN", "SASL_SSL"), ("SCRAM-SHA-512", "SASL_PLAINTEXT")],
)
def test_records_go_through_a_sasl_listener(secured_broker: SecuredBroker, mechanism: str, protocol: str) -> None:
    settings = secured_broker.settings(mechanism, protocol, prefix=_topic_prefix())

    assert len(_round_trip(settings)) == 50
    # The listener really is the secured one: the same port refuses a client without SASL.
    with pytest.raises(ConnectionError):
        ping(KafkaSettings(bootstrap=settings.bootstrap), timeout_ms=1_500)


@pytest.mark.kafka
def test_mutual_tls_with_an_encrypted_client_key(secured_broker: SecuredBroker) -> None:
    pki = secured_broker.pki
    settings = KafkaSettings.from_env(
        {
            "PARCOURS_KAFKA_BOOTSTRAP": f"127.0.0.1:{secured_broker.ports['SSL']}",
            "PARCOURS_KAFKA_SECURITY_PROTOCOL": "SSL",
            "PARCOURS_KAFKA_SSL_CAFILE": str(pki.ca_pem),
            "PARCOURS_KAFKA_SSL_CERTFILE": str(pki.client_cert),
            "PARCOURS_KAFKA_SSL_KEYFILE": str(pki.client_key),
            "PARCOURS_KAFKA_SSL_KEY_PASSWORD": pki.key_password,
            "PARCOURS_TOPIC_PREFIX": _topic_prefix(),
        }
    )

    assert len(_round_trip(settings, n=10)) == 10
    assert pki.key_password not in repr(settings)
    # Without the client certificate the broker refuses the connection, and the error says so.
    anonymous = dataclasses.replace(settings, ssl_certfile=None, ssl_keyfile=None, ssl_key_password=None)
    with pytest.raises(TlsHandshakeFailed, match="certificate") as raised:
        make_producer(anonymous, bootstrap_timeout_ms=2_000)
    assert "PARCOURS_KAFKA_SSL_CERTFILE" in str(raised.value)


@pytest.mark.kafka
def test_a_certificate_from_another_ca_is_a_tls_error_naming_the_ca_variable(secured_broker: SecuredBroker) -> None:
    settings = secured_broker.settings("SCRAM-SHA-512", PARCOURS_KAFKA_SSL_CAFILE=str(secured_broker.pki.other_ca_pem))

    with pytest.raises(TlsHandshakeFailed) as raised:
        make_producer(settings)

    message = str(raised.value)
    assert message.startswith(f"TLS handshake with the Kafka broker at {settings.bootstrap} failed: ")
    assert "certificate" in message and "PARCOURS_KAFKA_SSL_CAFILE" in message


@pytest.mark.kafka
@pytest.mark.parametrize(("mechanism", "command"), [("SCRAM-SHA-512", "run"), ("PLAIN", "produce")])
def test_a_wrong_password_is_one_error_line_naming_the_mechanism_not_the_secret(
    secured_broker: SecuredBroker, tmp_path: Path, mechanism: str, command: str
) -> None:
    wrong = f"wrong-{secrets.token_hex(8)}"
    env = {**os.environ, **secured_broker.env(mechanism, password=wrong), "PARCOURS_TOPIC_PREFIX": _topic_prefix()}
    write_jsonl(tmp_path / "data" / "touchpoints.jsonl", make_events(customers=2, per_customer=2, seed=1))
    args = ["run", "--warehouse", str(tmp_path / "w")] if command == "run" else ["produce", str(tmp_path / "data")]

    result = subprocess.run(
        [sys.executable, "-m", "parcours.cli", *args],
        capture_output=True, text=True, env={**env, "COLUMNS": "400"}, timeout=300,
    )  # fmt: skip
    secured_broker.outputs += [result.stdout, result.stderr]

    bootstrap = env["PARCOURS_KAFKA_BOOTSTRAP"]
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: Kafka SASL authentication failed at {bootstrap}: mechanism {mechanism} ")
    assert "PARCOURS_KAFKA_SASL_PASSWORD" in lines[0]
    assert wrong not in result.stderr + result.stdout
    assert secured_broker.passwords[mechanism] not in result.stderr + result.stdout
    # The same through the API: the error type says what to fix, and holds no password.
    with pytest.raises(AuthenticationFailed) as raised:
        ping(KafkaSettings.from_env(env))
    assert raised.value.mechanism == mechanism and raised.value.bootstrap == bootstrap
    assert wrong not in str(raised.value)


@pytest.mark.kafka
def test_parcours_produce_and_run_land_the_data_through_sasl_ssl_and_leave_no_secret(
    secured_broker: SecuredBroker, tmp_path: Path
) -> None:
    data, warehouse = tmp_path / "data", tmp_path / "warehouse"
    events = make_events(customers=25, per_customer=8, seed=17)
    write_jsonl(data / "touchpoints.jsonl", [*events, "{not json"])
    write_jsonl(data / "surveys.jsonl", csat_answers(events[:40]))
    env = {**os.environ, **secured_broker.env("SCRAM-SHA-512"), "PARCOURS_TOPIC_PREFIX": _topic_prefix()}

    def parcours(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "parcours.cli", *args],
            capture_output=True, text=True, env={**env, "COLUMNS": "200"}, timeout=600,
        )  # fmt: skip
        secured_broker.outputs.extend([result.stdout, result.stderr])
        return result

    produced = parcours("produce", str(data))
    ran = parcours("run", "--warehouse", str(warehouse))

    assert produced.returncode == 0, produced.stderr
    assert ran.returncode == 0, ran.stderr
    db = warehouse / "parcours.duckdb"
    assert query(db, "select count(*), count(distinct event_id) from touchpoints") == [(200, 200)]
    assert query(db, "select count(*) from survey_answers") == [(40,)]
    assert query(db, "select reason from dead_letters") == [("malformed_json",)]
    # Not a byte of any secret in what the commands printed, nor in the manifests, the Parquet
    # files, the dead letters, the views file (all under the warehouse) or the broker's files.
    for output in (produced.stdout, produced.stderr, ran.stdout, ran.stderr):
        assert not [s for s in secured_broker.secrets if s in output]
    assert sorted(p.name for p in warehouse.iterdir() if p.suffix == ".duckdb") == ["parcours.duckdb"]
    assert _files_holding_a_secret([warehouse, secured_broker.home], secured_broker) == []


def _files_holding_a_secret(roots: list[Path], broker: SecuredBroker) -> list[str]:
    needles = [s.encode() for s in broker.secrets]
    found = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                content = path.read_bytes()
                found += [f"{path}: secret #{i}" for i, needle in enumerate(needles) if needle in content]
    return found


@pytest.mark.kafka
def test_no_secret_in_any_output_log_manifest_or_warehouse_file(secured_broker: SecuredBroker) -> None:
    """Runs last in the module: every output captured above, and everything the broker wrote since."""
    assert len(secured_broker.outputs) >= 2  # kafka.sh start's; with the whole module, every command's
    for i, output in enumerate(secured_broker.outputs):
        for secret in secured_broker.secrets:
            assert secret not in output, f"a secret in captured output #{i}"
    # The broker's own logs and its rendered configuration name the secrets' variables only.
    logs = secured_broker.home / "logs" / "server.log"
    assert logs.stat().st_size > 0
    assert (
        "${env:PARCOURS_KAFKA_BROKER_KEYSTORE_PASSWORD}"
        in (secured_broker.home / "config" / "server.properties").read_text()
    )
    assert _files_holding_a_secret([secured_broker.home], secured_broker) == []


# -- settings, without a broker ---------------------------------------------------------------------


def test_tls_settings_come_from_the_environment_and_the_key_password_is_masked(tmp_path: Path) -> None:
    ca, cert = tmp_path / "ca.pem", tmp_path / "client.pem"
    key_ca, _ = _make_ca(tmp_path, "ca")
    key, _ = _sign(tmp_path, "client", (key_ca, ca), "extendedKeyUsage=clientAuth\n")

    settings = KafkaSettings.from_env(
        {
            "PARCOURS_KAFKA_SECURITY_PROTOCOL": "ssl",
            "PARCOURS_KAFKA_SSL_CAFILE": str(ca),
            "PARCOURS_KAFKA_SSL_CERTFILE": str(cert),
            "PARCOURS_KAFKA_SSL_KEYFILE": str(key),
            "PARCOURS_KAFKA_SSL_KEY_PASSWORD": "not-needed-but-secret",
            "PARCOURS_KAFKA_SSL_CHECK_HOSTNAME": "false",
        }
    )

    config = settings.client_config()
    assert (config["ssl_cafile"], config["ssl_certfile"], config["ssl_keyfile"]) == (str(ca), str(cert), str(key))
    assert config["ssl_check_hostname"] is False and config["ssl_password"] == "not-needed-but-secret"
    assert "not-needed-but-secret" not in repr(settings) and "ssl_key_password='***'" in repr(settings)
    assert KafkaSettings.from_env({"PARCOURS_KAFKA_SECURITY_PROTOCOL": "SSL"}).client_config()["ssl_check_hostname"]


SSL = {"PARCOURS_KAFKA_SECURITY_PROTOCOL": "SSL"}


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PARCOURS_KAFKA_SSL_CAFILE": "{ca}"}, "PARCOURS_KAFKA_SSL_CAFILE: is set but the security protocol is"),
        ({**SSL, "PARCOURS_KAFKA_SSL_CAFILE": "{missing}"}, "PARCOURS_KAFKA_SSL_CAFILE: no file at"),
        ({**SSL, "PARCOURS_KAFKA_SSL_CAFILE": "{not_pem}"}, "PARCOURS_KAFKA_SSL_CAFILE: cannot be loaded"),
        ({**SSL, "PARCOURS_KAFKA_SSL_KEYFILE": "{ca}"}, "PARCOURS_KAFKA_SSL_KEYFILE: is set without"),
        ({**SSL, "PARCOURS_KAFKA_SSL_CHECK_HOSTNAME": "maybe"}, "PARCOURS_KAFKA_SSL_CHECK_HOSTNAME"),
    ],
)
def test_bad_tls_settings_name_the_variable(tmp_path: Path, environ: dict[str, str], named: str) -> None:
    _, ca = _make_ca(tmp_path, "ca")
    (tmp_path / "not.pem").write_text("not a certificate\n")
    paths = {"{ca}": str(ca), "{missing}": str(tmp_path / "nowhere.pem"), "{not_pem}": str(tmp_path / "not.pem")}

    with pytest.raises(KafkaSettingsError, match=named):
        KafkaSettings.from_env({k: paths.get(v, v) for k, v in environ.items()})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "PARCOURS_KAFKA_BROKER_KEYSTORE is required with a SASL_SSL or SSL listener"),
        ({"PARCOURS_KAFKA_BROKER_KEYSTORE": "{keystore}"}, "PARCOURS_KAFKA_BROKER_KEYSTORE_PASSWORD is required"),
        ({"PARCOURS_KAFKA_BROKER_KEYSTORE": "{missing}"}, "PARCOURS_KAFKA_BROKER_KEYSTORE: no readable file at"),
        (
            {
                "PARCOURS_KAFKA_BROKER_KEYSTORE": "{keystore}",
                "PARCOURS_KAFKA_BROKER_KEYSTORE_PASSWORD": "kept-to-itself",
                "PARCOURS_KAFKA_BROKER_SCRAM_USERNAME": "u",
            },
            "PARCOURS_KAFKA_BROKER_SCRAM_PASSWORD is required with PARCOURS_KAFKA_BROKER_SCRAM_USERNAME",
        ),
    ],
)
def test_kafka_sh_refuses_a_secured_listener_it_cannot_serve_before_starting_anything(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    (tmp_path / "broker.p12").write_bytes(b"not read before the checks pass")
    paths = {"{keystore}": str(tmp_path / "broker.p12"), "{missing}": str(tmp_path / "nowhere.p12")}
    env = {
        "PATH": os.environ["PATH"],
        "PARCOURS_KAFKA_HOME": str(tmp_path / "home"),
        "PARCOURS_KAFKA_SASL_SSL_PORT": str(_free_ports(1)[0]),
        **{k: paths.get(v, v) for k, v in environ.items()},
    }

    result = _kafka_sh(env, "start")

    assert result.returncode == 1
    assert result.stderr.startswith(f"kafka.sh: error: {message}")
    assert "kept-to-itself" not in result.stdout + result.stderr
    assert not (tmp_path / "home").exists()  # refused before the run dir was made


def test_kafka_pythons_debug_line_of_the_admin_configuration_holds_no_password(caplog) -> None:
    """kafka-python's admin client logs its whole configuration at DEBUG; parcours masks the passwords."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    settings = KafkaSettings(
        bootstrap=f"127.0.0.1:{closed}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password="debug-line-secret",
    )

    with caplog.at_level(logging.DEBUG, logger="kafka"), pytest.raises(kafka_errors.KafkaTimeoutError):
        # Straight to kafka-python, so that the line is logged (make_admin quiets the bootstrap).
        KafkaAdminClient(**settings.client_config() | {"bootstrap_timeout_ms": 200})

    assert "Starting KafkaAdminClient with configuration" in caplog.text
    assert "'sasl_plain_password': '***'" in caplog.text
    assert "debug-line-secret" not in caplog.text
