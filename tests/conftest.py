"""Shared fixtures: a real Kafka broker for the tests marked ``kafka``.

CI (infra/test.sh, called by .ci/run) starts the broker itself and exports PARCOURS_KAFKA_BOOTSTRAP; that broker is used
when it answers. Otherwise the session starts a private broker with infra/kafka.sh in pytest's
tmp dir, on free ports, reusing the jars already fetched into <repo>/.kafka/libs (or
PARCOURS_KAFKA_LIBS), and stops it at the end. Each test gets its own topic prefix, so tests
never read each other's records, even on a broker that outlives the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from parcours.kafka import BrokerUnavailable, KafkaSettings, ensure_topics, make_admin, ping

REPO = Path(__file__).resolve().parents[1]
KAFKA_SH = REPO / "infra" / "kafka.sh"

KafkaSh = Callable[..., subprocess.CompletedProcess[str]]


_PREFECT_HOME = tempfile.mkdtemp(prefix="parcours-test-prefect-")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kafka: needs a real Kafka broker (the kafka_broker fixture)")
    config.addinivalue_line("markers", "slow: long-running; left out of the CI sample (-m 'not slow')")
    # Prefect reads its settings when first imported: before any test module imports it, give it
    # a throwaway home (never the developer's ~/.prefect profile or server), keep it offline, and
    # drop an API URL inherited from the shell (the tests start their own local API).
    from parcours.flows.serve import OFFLINE_ENV

    os.environ.update({**OFFLINE_ENV, "PREFECT_HOME": _PREFECT_HOME})
    os.environ.pop("PREFECT_API_URL", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that asks for the broker is a kafka test even if its author forgot the marker,
    # so `-m "not kafka"` reliably runs without Java.
    for item in items:
        if "kafka_broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@dataclass(frozen=True)
class _Broker:
    settings: KafkaSettings
    # The environment that points infra/kafka.sh at this broker's run dir; None for a broker
    # that infra/kafka.sh does not manage here (another machine, docker compose).
    kafka_sh_env: dict[str, str] | None


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _kafka_sh(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(KAFKA_SH), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _start_private_broker(home: Path) -> _Broker:
    for _attempt in range(3):  # another process may grab a "free" port before the broker binds it
        port, controller_port = _free_ports(2)
        env = {
            **os.environ,
            "PARCOURS_KAFKA_HOME": str(home),
            "PARCOURS_KAFKA_LIBS": os.environ.get("PARCOURS_KAFKA_LIBS", str(REPO / ".kafka" / "libs")),
            "PARCOURS_KAFKA_PORT": str(port),
            "PARCOURS_KAFKA_CONTROLLER_PORT": str(controller_port),
        }
        result = _kafka_sh(env, "start")
        if result.returncode == 0:
            return _Broker(KafkaSettings(bootstrap=f"127.0.0.1:{port}"), env)
        if "already in use" not in result.stderr:
            break
    raise RuntimeError(
        f"bash infra/kafka.sh start failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    )


def _kafka_sh_env_if_local(settings: KafkaSettings) -> dict[str, str] | None:
    """The environment for infra/kafka.sh when the configured broker is its run dir's (CI's case)."""
    home = Path(os.environ.get("PARCOURS_KAFKA_HOME", REPO / ".kafka"))
    try:
        port = (home / "kafka.port").read_text().strip()
    except OSError:
        return None
    return dict(os.environ) if settings.bootstrap == f"127.0.0.1:{port}" else None


@pytest.fixture(scope="session")
def _kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Broker]:
    if os.environ.get("PARCOURS_KAFKA_BOOTSTRAP"):
        settings = KafkaSettings.from_env()
        try:
            ping(settings, timeout_ms=5_000)
        except BrokerUnavailable as exc:
            # Fall through to a private broker, but say why the configured one was not used.
            print(f"\nconftest: {exc}; starting a private broker instead")
        else:
            yield _Broker(settings, _kafka_sh_env_if_local(settings))
            return
    broker = _start_private_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        assert broker.kafka_sh_env is not None
        stopped = _kafka_sh(broker.kafka_sh_env, "stop", timeout=120)
        assert stopped.returncode == 0, f"bash infra/kafka.sh stop failed:\n{stopped.stdout}\n{stopped.stderr}"


@pytest.fixture(scope="session")
def kafka_broker(_kafka: _Broker) -> KafkaSettings:
    """Settings of a running broker (the default topic prefix; tests use ``kafka_settings``)."""
    return _kafka.settings


@pytest.fixture
def kafka_sh(_kafka: _Broker) -> KafkaSh:
    """Runs infra/kafka.sh against the session's broker; skips when the broker is not ours."""
    if _kafka.kafka_sh_env is None:
        pytest.skip("the broker at PARCOURS_KAFKA_BOOTSTRAP is not one infra/kafka.sh runs here")
    env = _kafka.kafka_sh_env
    return lambda *args, **kwargs: _kafka_sh(env, *args, **kwargs)


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def kafka_settings_without_topics(kafka_broker: KafkaSettings, topic_prefix: str) -> Iterator[KafkaSettings]:
    """This test's own topic names, not created yet; whichever of them exist are deleted after."""
    settings = kafka_broker.with_prefix(topic_prefix)
    yield settings
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics()) & set(settings.topics.values())
        if existing:
            admin.delete_topics(sorted(existing))
    finally:
        admin.close()


@pytest.fixture
def kafka_settings(kafka_settings_without_topics: KafkaSettings) -> KafkaSettings:
    """This test's own parcours topics, created and empty."""
    ensure_topics(kafka_settings_without_topics)
    return kafka_settings_without_topics
