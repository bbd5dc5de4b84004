"""The `parcours` command line, run as users run it: `python -m parcours.cli` in a subprocess.

Every command answers `--help`; `generate` is deterministic; expected failures exit with code 2
and one clear `error:` line, never a traceback; and `produce` puts every line of the files on the
real broker, keyed by customer, each customer's events in one partition and in file order.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from parcours.cli import app
from parcours.config import load_config
from parcours.kafka import KafkaSettings
from parcours.synthetic import RATED_TOUCHPOINTS, generate_dataset

DATA_FILES = ("touchpoints.jsonl", "surveys.jsonl", "truth.json")


def parcours(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parcours.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **env},
        timeout=120,
        check=False,
    )


def assert_fails_cleanly(result: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 2, no traceback, and the last line of stderr is the error (a progress bar may precede it)."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.endswith("\n"), result.stderr
    assert result.stderr.splitlines()[-1] == f"error: {message}", result.stderr


# -- every command answers --help ---------------------------------------------------------------


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))


def test_the_command_tree_is_discovered() -> None:
    """So that the --help test below cannot pass by finding nothing; a new command joins it by itself."""
    assert set(COMMANDS) >= {
        (),
        ("generate",),
        ("produce",),
        ("run",),
        ("sql",),
        ("serve",),
        ("config",),
        ("config", "show"),
        ("config", "init"),
        ("config", "check"),
        ("broker",),
        ("broker", "start"),
        ("broker", "stop"),
        ("broker", "status"),
    }


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda p: " ".join(p) or "parcours")
def test_help(path: tuple[str, ...]) -> None:
    result = parcours(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    usage = next(line for line in result.stdout.splitlines() if "Usage:" in line)
    assert usage.split()[: 4 + len(path)] == ["Usage:", "python", "-m", "parcours.cli", *path]
    summary = COMMANDS[path].help.split("\n\n")[0].replace("\n", " ")
    assert summary in " ".join(result.stdout.split()), result.stdout


# -- generate -----------------------------------------------------------------------------------


def test_generate_writes_the_three_files_and_the_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    args = ("--customers", "40", "--days", "10", "--start", "2026-03-02")
    runs = {
        name: parcours("generate", "--out", str(tmp_path / name), *args, "--seed", seed)
        for name, seed in (("first", "5"), ("again", "5"), ("other", "6"))
    }
    for result in runs.values():
        assert result.returncode == 0, result.stderr
    for name in DATA_FILES:
        first = (tmp_path / "first" / name).read_bytes()
        assert first, name
        assert (tmp_path / "again" / name).read_bytes() == first, name
        assert (tmp_path / "other" / name).read_bytes() != first, name
    leftover = sorted(p.name for p in (tmp_path / "first").iterdir())
    assert leftover == sorted((*DATA_FILES, "truth"))  # no spill left over

    n_touchpoints = len((tmp_path / "first" / DATA_FILES[0]).read_bytes().splitlines())
    n_surveys = len((tmp_path / "first" / DATA_FILES[1]).read_bytes().splitlines())
    truth = json.loads((tmp_path / "first" / "truth.json").read_text(encoding="utf-8"))
    assert (truth["customers"], truth["days"], truth["start"]) == (40, 10, "2026-03-02")
    assert runs["first"].stderr.splitlines()[-1] == (
        f"wrote {n_touchpoints:,} touchpoints and {n_surveys:,} survey answers for 40 customers "
        f"to {(tmp_path / 'first').resolve()}"
    )


@pytest.mark.parametrize("start", ["2026-13-01", "yesterday", "05/01/2026"])
def test_generate_refuses_a_bad_start(tmp_path: Path, start: str) -> None:
    out = tmp_path / "out"
    result = parcours("generate", "--out", str(out), "--customers", "5", "--start", start)
    assert_fails_cleanly(result, f"--start: '{start}' is not a date (YYYY-MM-DD)")
    assert not out.exists()


NOT_A_SPIKE = "is not STAGE:FROM_DAY:FACTOR[:UNTIL_DAY] (e.g. renewal:40:3 or renewal:40:3:60)"


@pytest.mark.parametrize(
    ("spike", "message"),
    [
        pytest.param(spike, message, id=spike, marks=marks)
        for spike, message, marks in [
            ("renewal:4", f"--churn-spike: 'renewal:4' {NOT_A_SPIKE}", ()),
            ("renewal:day4:3", f"--churn-spike: 'renewal:day4:3' {NOT_A_SPIKE}", ()),
            ("renewal:4:3:6:1", f"--churn-spike: 'renewal:4:3:6:1' {NOT_A_SPIKE}", ()),
            ("renewal:4:3:1", "--churn-spike: churn spike until_day must be after from_day 4, got 1", ()),
            ("renewal:4:3:11", "churn spike until_day 11 is after the 10 days", ()),
            ("renewal:4:lots", f"--churn-spike: 'renewal:4:lots' {NOT_A_SPIKE}", ()),
            (
                "checkout:4:3",
                "--churn-spike: unknown stage 'checkout' (stages: discovery, consideration, "
                "purchase, activation, usage, support, renewal)",
                (),
            ),
            ("renewal:-1:3", "--churn-spike: churn spike from_day must be >= 0, got -1", ()),
            ("renewal:4:0", "--churn-spike: churn spike factor must be > 0, got 0.0", ()),
            ("renewal:4:nan", "--churn-spike: churn spike factor must be > 0, got nan", ()),
            ("renewal:10:3", "churn spike from_day 10 is not within the 10 days", ()),
            (
                "renewal:x:3",
                f"--churn-spike: 'renewal:x:3' {NOT_A_SPIKE}",
                (),
            ),
        ]
    ],
)
def test_generate_refuses_a_bad_churn_spike(tmp_path: Path, spike: str, message: str) -> None:
    out = tmp_path / "out"
    result = parcours("generate", "--out", str(out), "--customers", "5", "--days", "10", "--churn-spike", spike)
    assert_fails_cleanly(result, message)
    assert not out.exists()


def test_generate_steering_options_reach_the_truth(tmp_path: Path) -> None:
    out = tmp_path / "steered"
    result = parcours(
        "generate", "--out", str(out), "--customers", "60", "--days", "12", "--plant", "none",
        "--moments", "installation,repair", "--drop-off", "purchase:0.25", "--churn-spike", "activation:2:3:6",
        "--pii-rate", "0.2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    assert [m["touchpoint"] for m in truth["moments_of_truth"]] == ["installation", "repair"]
    assert truth["drop_off_stages"] == {"purchase": 0.25} and truth["emerging_terms"] is None
    assert (truth["churn_spike"]["stage"], truth["churn_spike"]["until_day"]) == ("activation", 6)
    assert (truth["steering"]["plant"], truth["steering"]["pii_rate"]) == ("none", 0.2)
    assert sorted(p.name for p in (out / "truth").iterdir()) == [
        "customers.parquet", "interactions.parquet", "journeys.parquet", "pii.parquet",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--plant", "some"), "--plant: 'some' is neither 'default' nor 'none'"),
        (("--drop-off", "purchase"), "--drop-off: 'purchase' is not STAGE:P (e.g. purchase:0.25)"),
        (
            ("--drop-off", "checkout:0.2"),
            "--drop-off: unknown stage 'checkout' (stages: discovery, consideration, purchase, activation, usage,"
            " support, renewal)",
        ),
        (("--drop-off", "purchase:1.5"), "drop-off probability at 'purchase' must be in [0, 1), got 1.5"),
        (("--moments", "app_session"), "moment of truth 'app_session' is not a touchpoint the simulation rates"),
    ],
    ids=["plant", "drop-off-format", "drop-off-stage", "drop-off-p", "moments"],
)
def test_generate_refuses_bad_steering(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    out = tmp_path / "out"
    result = parcours("generate", "--out", str(out), "--customers", "5", "--days", "10", *args)
    if "simulation rates" in message:
        message = message + " (one of: " + ", ".join(RATED_TOUCHPOINTS) + ")"
    assert_fails_cleanly(result, message)
    assert not out.exists()


# -- produce: failures ----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_produce_without_a_broker_fails_with_the_address(tmp_path: Path) -> None:
    """kafka-python gives up after parcours' bootstrap timeout (10 s): there is no setting to shorten it."""
    (tmp_path / "touchpoints.jsonl").write_text('{"customer_id": "c1"}\n', encoding="utf-8")
    address = f"127.0.0.1:{_closed_port()}"
    result = parcours("produce", str(tmp_path), PARCOURS_KAFKA_BOOTSTRAP=address)
    assert_fails_cleanly(
        result,
        f"no Kafka broker answered at {address} within 10000 ms: start the local broker with "
        "`bash infra/kafka.sh start`, or point PARCOURS_KAFKA_BOOTSTRAP at a running one",
    )


def test_produce_with_a_bad_bootstrap_setting_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / "touchpoints.jsonl").write_text('{"customer_id": "c1"}\n', encoding="utf-8")
    result = parcours("produce", str(tmp_path), PARCOURS_KAFKA_BOOTSTRAP="localhost")
    assert_fails_cleanly(result, "PARCOURS_KAFKA_BOOTSTRAP: 'localhost' is not host:port[,host:port...]")


@pytest.mark.parametrize("folder", ["empty", "missing"])
def test_produce_needs_the_data_files(tmp_path: Path, folder: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "truth.json").write_text("{}", encoding="utf-8")
    # No broker is needed to find out: the port is closed, and the answer must come at once.
    result = parcours("produce", folder, cwd=tmp_path, PARCOURS_KAFKA_BOOTSTRAP=f"127.0.0.1:{_closed_port()}")
    assert_fails_cleanly(
        result, f"{folder}: neither touchpoints.jsonl nor surveys.jsonl found (run `parcours generate` first)"
    )
    assert result.stderr.count("\n") == 1


# -- produce: the real broker ---------------------------------------------------------------------


def _expected_key(line: bytes) -> bytes | None:
    """The key a producer must give a line: its customer_id, or none when the line has no readable one."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    customer = record.get("customer_id") if isinstance(record, dict) else None
    return customer.encode() if isinstance(customer, str) and customer else None


def _consume_all(settings: KafkaSettings, topic: str) -> tuple[int, list[Any]]:
    """Every message of `topic` from the beginning, partition by partition, in offset order."""
    consumer = KafkaConsumer(**settings.client_config(), group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        messages: list[Any] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, "the topic could not be read back to its end offsets"
            for batch in consumer.poll(timeout_ms=1_000).values():
                messages.extend(batch)
    finally:
        consumer.close()
    messages.sort(key=lambda m: (m.partition, m.offset))
    return len(partitions), messages


@pytest.mark.kafka
def test_produce_sends_every_line_keyed_by_customer_in_file_order(
    tmp_path: Path, kafka_settings: KafkaSettings
) -> None:
    data = tmp_path / "data"
    # Bad, duplicate and late lines too: the producer sends them as they are, bad ones included.
    generate_dataset(
        data, 150, 20, seed=11, config=load_config(), invalid_rate=0.03, duplicate_rate=0.02, late_rate=0.02
    )
    result = parcours(
        "produce",
        str(data),
        PARCOURS_KAFKA_BOOTSTRAP=kafka_settings.bootstrap,
        PARCOURS_TOPIC_PREFIX=kafka_settings.topic_prefix,
    )
    assert result.returncode == 0, result.stderr

    duplicated, unkeyed, customers = 0, 0, set()
    for name, logical in (("touchpoints.jsonl", "touchpoints"), ("surveys.jsonl", "surveys")):
        topic = kafka_settings.topics[logical]
        lines = (data / name).read_bytes().split(b"\n")[:-1]
        n_partitions, messages = _consume_all(kafka_settings, topic)

        assert f"{topic}: {len(lines):,} sent, 0 failed" in result.stderr.splitlines()
        assert len(messages) == len(lines)
        assert collections.Counter(m.value for m in messages) == collections.Counter(lines)
        duplicated += len(lines) - len(set(lines))

        keys = [m.key for m in messages]
        assert keys == [_expected_key(m.value) for m in messages]
        unkeyed += keys.count(None)
        by_customer: dict[bytes, list[Any]] = collections.defaultdict(list)
        for message in messages:
            if message.key is not None:
                by_customer[message.key].append(message)
        customers |= by_customer.keys()
        for key, sent in by_customer.items():
            assert {m.partition for m in sent} == {(murmur2(key) & 0x7FFFFFFF) % n_partitions}, key
        # In a partition, a customer's messages are in the order of the file.
        in_file: dict[bytes, list[bytes]] = collections.defaultdict(list)
        for line in lines:
            key = _expected_key(line)
            if key is not None:
                in_file[key].append(line)
        assert {key: [m.value for m in sent] for key, sent in by_customer.items()} == in_file
        assert {m.partition for m in messages} == set(range(n_partitions)) and n_partitions == 4
    # The checks above were not vacuous: exact duplicates were sent twice, unreadable lines unkeyed.
    assert duplicated > 0 and unkeyed > 0 and len(customers) > 100


# -- serve ----------------------------------------------------------------------------------------


def test_serve_names_the_bad_key_of_prefect_yaml_before_starting_anything(tmp_path: Path) -> None:
    bad = tmp_path / "prefect.yaml"
    bad.write_text("deployments:\n  - name: x\n    entrypoint: flows/ingest.py:ingest_events\n    schedules: [{}]\n")
    result = parcours("serve", "--warehouse", str(tmp_path / "w"), "--prefect-yaml", str(bad))
    assert_fails_cleanly(
        result, f"{bad}: deployments.0.schedules.0: Value error, give exactly one of interval, cron, rrule (got none)"
    )
    assert not (tmp_path / "w").exists()  # no Prefect home, no server
