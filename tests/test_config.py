"""The journey configuration: documented defaults, duration forms, errors that name the bad key,
the settings record and fingerprint written into manifests, and the `parcours config` commands.

The commands run through the real CLI in a subprocess, as a user runs them: an expected failure
is exit code 2 and one `error:` line naming the key, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from parcours.config import (
    UNMAPPED_STAGE,
    ConfigError,
    JourneyConfig,
    default_config_text,
    load_config,
    parse_config,
    parse_duration,
)

STAGES = ("discovery", "consideration", "purchase", "activation", "usage", "support", "renewal")
DAY = 86_400


@pytest.fixture(scope="module")
def default() -> JourneyConfig:
    return load_config()


# -- the documented default ---------------------------------------------------------------------


def test_the_default_configuration_has_the_documented_values(default: JourneyConfig) -> None:
    assert default.version == 1
    assert default.stages == STAGES
    assert default.sessions.inactivity_gap == timedelta(minutes=30)
    assert default.sessions.max_duration == timedelta(hours=24)
    assert default.ingest.allowed_lateness == timedelta(days=3)
    assert default.ingest.earliest_event_date == date(2020, 1, 1)
    assert default.ingest.max_payload_bytes == 65_536
    assert default.surveys.attachment_window == timedelta(days=7)
    assert default.churn.outcomes == ("cancellation",)
    assert default.churn.inactivity == timedelta(days=180)
    assert default.drop_off.default_timeout == timedelta(days=30)
    assert default.path_cleaning.collapse_repeats is True
    assert default.path_cleaning.ignore_touchpoints == ()
    assert default.path_cleaning.max_path_length == 200
    assert len(default.touchpoints) == 35
    assert default.stage_of("delivery") == "activation"
    assert default.stage_of("checkout") == "purchase"
    assert default.stage_of("not_in_the_mapping") == UNMAPPED_STAGE == "unmapped"


def test_the_batch_size_is_the_one_written_in_the_yaml(default: JourneyConfig) -> None:
    written = yaml.safe_load(default_config_text())["ingest"]["batch_size"]
    assert written == 500_000
    assert default.ingest.batch_size == written


def test_stage_rank_follows_the_lifecycle_and_unmapped_comes_first(default: JourneyConfig) -> None:
    assert [default.stage_rank(s) for s in STAGES] == [0, 1, 2, 3, 4, 5, 6]
    assert default.stage_rank(UNMAPPED_STAGE) == -1
    assert default.stage_rank("no_such_stage") == -1


# -- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("3d", timedelta(days=3)),
        ("2w", timedelta(days=14)),
        ("1.5h", timedelta(minutes=90)),
        (" 45 m ", timedelta(minutes=45)),
        ("-5m", timedelta(minutes=-5)),  # parsed; the rules refuse it (below)
    ],
)
def test_parse_duration_short_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("value", ["PT30M", 1800, 1800.0, "30M", "1y", None])
def test_parse_duration_leaves_other_forms_to_pydantic(value: object) -> None:
    assert parse_duration(value) == value


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("PT30M", timedelta(minutes=30)),
        ("PT1H30M", timedelta(minutes=90)),
        ("P1DT2H", timedelta(hours=26)),
        ("1800", timedelta(minutes=30)),  # YAML reads an integer: seconds
        ("90.5", timedelta(seconds=90.5)),
        ("3d", timedelta(days=3)),
        ("2w", timedelta(days=14)),
    ],
)
def test_every_duration_form_works_in_a_file(written: str, expected: timedelta) -> None:
    config = parse_config(f"stages: [a]\nsessions:\n  inactivity_gap: {written}\n  max_duration: 4w\n")
    assert config.sessions.inactivity_gap == expected


# -- errors name the bad key ----------------------------------------------------------------------

BAD_CONFIGS = [
    # (id, yaml, the start of the message after "f.yaml: ")
    (
        "unknown nested key",
        "stages: [a]\nsessions:\n  inactivity_gapp: 30m\n",
        "sessions.inactivity_gapp: unknown setting (check the spelling against the default journey.yaml)",
    ),
    ("unknown top-level key", "stages: [a]\nsesions: {}\n", "sesions: unknown setting"),
    (
        "unknown key two levels down",
        "stages: [a]\ndrop_off:\n  timeout: {a: 3d}\n",
        "drop_off.timeout: unknown setting",
    ),
    (
        "unknown key in path_cleaning",
        "stages: [a]\npath_cleaning: {collapse_repeat: true}\n",
        "path_cleaning.collapse_repeat: unknown setting",
    ),
    ("misspelt stages", "stagess: [a]\n", "stages: Field required; stagess: unknown setting"),
    (
        "negative gap",
        "stages: [a]\nsessions: {inactivity_gap: -30m}\n",
        "sessions: inactivity_gap must be a positive duration",
    ),
    (
        "zero gap",
        "stages: [a]\nsessions: {inactivity_gap: 0s}\n",
        "sessions: inactivity_gap must be a positive duration, got 0 s",
    ),
    (
        "zero max_duration",
        "stages: [a]\nsessions: {max_duration: 0h}\n",
        "sessions: max_duration must be a positive duration, got 0 s",
    ),
    (
        "max_duration below gap",
        "stages: [a]\nsessions: {inactivity_gap: 2h, max_duration: 1h}\n",
        "sessions: max_duration must be at least inactivity_gap",
    ),
    (
        "zero default drop-off timeout",
        "stages: [a]\ndrop_off: {default_timeout: 0d}\n",
        "drop_off: default_timeout must be a positive duration",
    ),
    (
        "negative drop-off timeout",
        "stages: [a]\ndrop_off: {timeouts: {a: -1d}}\n",
        "drop_off: timeouts.a must be a positive duration",
    ),
    (
        "zero churn inactivity",
        "stages: [a]\nchurn: {inactivity: 0s}\n",
        "churn: inactivity must be a positive duration",
    ),
    (
        "no churn rule at all",
        "stages: [a]\nchurn: {outcomes: [], inactivity: null}\n",
        "churn: churn needs at least one outcome or an inactivity duration",
    ),
    (
        "negative lateness",
        "stages: [a]\ningest: {allowed_lateness: -1h}\n",
        "ingest: allowed_lateness must not be negative",
    ),
    (
        "zero id retention",
        "stages: [a]\ningest: {id_retention: 0s}\n",
        "ingest: id_retention must be a positive duration",
    ),
    (
        "id retention shorter than the lateness",
        "stages: [a]\ningest: {id_retention: 2d, allowed_lateness: 3d}\n",
        "ingest: id_retention (2 days, 0:00:00) must be at least allowed_lateness (3 days, 0:00:00)",
    ),
    (
        "zero idle_after",
        "stages: [a]\ningest: {idle_after: 0s}\n",
        "ingest: idle_after must be a positive duration",
    ),
    (
        "zero attachment window",
        "stages: [a]\nsurveys: {attachment_window: 0s}\n",
        "surveys: attachment_window must be a positive duration",
    ),
    (
        "not a duration",
        "stages: [a]\nsessions: {inactivity_gap: soon}\n",
        "sessions.inactivity_gap: Input should be a valid timedelta",
    ),
    (
        "batch size zero",
        "stages: [a]\ningest: {batch_size: 0}\n",
        "ingest.batch_size: Input should be greater than or equal to 1",
    ),
    (
        "payload limit too small",
        "stages: [a]\ningest: {max_payload_bytes: 100}\n",
        "ingest.max_payload_bytes: Input should be greater than or equal to 256",
    ),
    ("not a date", "stages: [a]\ningest: {earliest_event_date: soon}\n", "ingest.earliest_event_date: "),
    ("section not a mapping", "stages: [a]\nsessions: [30m]\n", "sessions: Input should be a valid dictionary"),
    (
        "touchpoint to an unknown stage",
        "stages: [a, b]\ntouchpoints: {checkout: c}\n",
        "touchpoints.checkout: unknown stage 'c' (stages: ['a', 'b'])",
    ),
    (
        "drop-off timeout for an unknown stage",
        "stages: [a, b]\ndrop_off: {timeouts: {c: 3d}}\n",
        "drop_off.timeouts.c: unknown stage (stages: ['a', 'b'])",
    ),
    ("duplicate stages", "stages: [a, b, a]\n", "stages: a listed more than once"),
    ("a reserved stage", "stages: [a, all]\n", "stages: 'all' reserved (the views give all, unknown, unattached,"),
    ("a reserved touchpoint", "stages: [a]\ntouchpoints: {(end): a}\n", "touchpoints: '(end)' reserved"),
    (
        "company-sent touchpoints that are not configured",
        "stages: [a]\ntouchpoints: {invoice: a}\nchurn: {not_activity: [invoice, fax]}\n",
        "churn.not_activity: ['fax'] are not configured touchpoints",
    ),
    ("no stages", "stages: []\n", "stages must list at least one stage"),
    ("not valid YAML", "stages: [a\n", "not valid YAML: "),
    ("tabs in YAML", "stages: [a]\nsessions:\n\tinactivity_gap: 30m\n", "not valid YAML: "),
    ("a list at the top level", "- a\n- b\n", "expected a mapping of settings at the top level"),
    ("a scalar at the top level", "journey\n", "expected a mapping of settings at the top level"),
    ("an empty file", "", "expected a mapping of settings at the top level"),
]


@pytest.mark.parametrize(("text", "message"), [pytest.param(t, m, id=i) for i, t, m in BAD_CONFIGS])
def test_a_bad_configuration_is_refused_with_a_message_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "f.yaml")
    assert str(raised.value).startswith(f"f.yaml: {message}"), str(raised.value)


def test_the_reserved_stage_error_names_the_stages_key() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config("stages: [a, unmapped]\n", "f.yaml")
    assert str(raised.value).startswith("f.yaml: stages"), str(raised.value)


def test_an_impossible_date_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config("stages: [a]\ningest: {earliest_event_date: 2020-13-01}\n", "f.yaml")
    assert str(raised.value).startswith("f.yaml: "), str(raised.value)


def test_zero_lateness_is_allowed() -> None:
    """Lateness may be zero (nothing late is accepted), unlike the other durations."""
    assert parse_config("stages: [a]\ningest: {allowed_lateness: 0s}\n").ingest.allowed_lateness == timedelta(0)


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as raised:
        load_config(missing)
    assert str(raised.value) == f"{missing}: cannot read the configuration (No such file or directory)"
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path)
    assert str(raised.value) == f"{tmp_path}: cannot read the configuration (Is a directory)"


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("stages: [a]\n# étapes du parcours\n".encode("latin-1"))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}: ")


# -- what manifests record --------------------------------------------------------------------------


def test_settings_record_of_the_default(default: JourneyConfig) -> None:
    record = default.settings_record()
    fingerprint = record.pop("config_fingerprint")
    assert fingerprint == default.fingerprint
    assert len(fingerprint) == 12 and set(fingerprint) <= set("0123456789abcdef")
    assert record == {
        "config_version": 1,
        "stages": list(STAGES),
        "drop_off_timeouts_in_s": {
            "discovery": 14 * DAY,
            "consideration": 21 * DAY,
            "purchase": 7 * DAY,
            "activation": 14 * DAY,
            "usage": 60 * DAY,
            "support": 14 * DAY,
            "renewal": 30 * DAY,
        },
        "inactivity_gap_in_s": 1_800,
        "max_duration_in_s": 86_400,
        "allowed_lateness_in_s": 3 * DAY,
        "id_retention_in_s": 400 * DAY,
        "idle_after_in_s": 3_600,
        "attachment_window_in_s": 7 * DAY,
        "cycle_outcomes": ["purchase", "renewal"],  # fixed: what closes a cycle as converted
        "churn_outcomes": ["cancellation"],
        "churn_inactivity_in_s": 180 * DAY,
        "churn_not_activity": ["invoice", "renewal_reminder", "welcome_email", "newsletter_open"],
        "collapse_repeats": True,
        "ignore_touchpoints": [],
        "max_path_length": 200,
        "path_summary_steps": 6,
        "path_alias_patterns": [],
        "path_aliases": [],
        "path_anchor_names": ["from_discovery", "from_purchase", "to_cancellation_request"],
        "path_anchor_kinds": ["stage", "stage", "touchpoint"],
        "path_anchor_points": ["discovery", "purchase", "cancellation_request"],
        "path_anchor_directions": ["from", "from", "to"],
        "path_anchor_steps": [5, 5, 5],
        "path_anchor_tops": [5, 5, 5],
        "reporting_timezone": "UTC",
        "funnels": record["funnels"],  # checked below
    }
    lifecycle = ("discovery", "consideration", "purchase", "activation", "usage")
    assert json.loads(record["funnels"]) == [
        {
            "name": "lifecycle",
            "mode": "furthest",
            "window_in_s": 90 * DAY,
            "steps": [{"kind": "stage", "name": s} for s in lifecycle],
            "stages": list(STAGES),
            "exclusions": [],
        },
        {
            "name": "lifecycle_ordered",
            "mode": "ordered",
            "window_in_s": 30 * DAY,
            "steps": [{"kind": "stage", "name": s} for s in lifecycle[:4]],
            "stages": [],
            "exclusions": [],
        },
    ]
    assert json.loads(json.dumps(record)) == record  # plain JSON values


def test_settings_record_of_a_small_config() -> None:
    config = parse_config(
        "version: 3\nstages: [browse, buy]\ndrop_off: {default_timeout: 2d, timeouts: {buy: 90m}}\n"
        "sessions: {inactivity_gap: 10m, max_duration: 2h}\nchurn: {outcomes: [], inactivity: 30d}\n"
        "path_cleaning: {collapse_repeats: false, ignore_touchpoints: [ping], max_path_length: 5}\n"
    )
    record = config.settings_record()
    del record["config_fingerprint"]
    assert record == {
        "config_version": 3,
        "stages": ["browse", "buy"],
        "drop_off_timeouts_in_s": {"browse": 2 * DAY, "buy": 5_400},
        "inactivity_gap_in_s": 600,
        "max_duration_in_s": 7_200,
        "allowed_lateness_in_s": 3 * DAY,
        "id_retention_in_s": 400 * DAY,
        "idle_after_in_s": 3_600,
        "attachment_window_in_s": 7 * DAY,
        "cycle_outcomes": ["purchase", "renewal"],
        "churn_outcomes": [],
        "churn_inactivity_in_s": 30 * DAY,
        "churn_not_activity": [],  # none of the company-sent defaults is a touchpoint here
        "collapse_repeats": False,
        "ignore_touchpoints": ["ping"],
        "max_path_length": 5,
        "path_summary_steps": 6,
        # No `paths` key: no alias, no anchor (the default file's anchors are the file's).
        "path_alias_patterns": [],
        "path_aliases": [],
        "path_anchor_names": [],
        "path_anchor_kinds": [],
        "path_anchor_points": [],
        "path_anchor_directions": [],
        "path_anchor_steps": [],
        "path_anchor_tops": [],
        "reporting_timezone": "UTC",
        "funnels": "[]",  # none configured
    }
    mapped = parse_config("stages: [a]\ntouchpoints: {invoice: a, visit: a}\n").settings_record()
    assert mapped["churn_not_activity"] == ["invoice"]  # the defaults this configuration maps
    explicit_only = parse_config("stages: [a]\nchurn: {inactivity: null}\n").settings_record()
    assert explicit_only["churn_inactivity_in_s"] is None


BASE = "stages: [a, b]\ntouchpoints: {x: a, y: b}\nsessions: {inactivity_gap: 30m}\n"


@pytest.mark.parametrize(
    "same",
    [
        pytest.param(
            "# a comment\nstages: [a, b]   # the lifecycle\ntouchpoints: {x: a, y: b}\n"
            "sessions: {inactivity_gap: 30m}\n",
            id="comments",
        ),
        pytest.param(
            "stages:\n  - a\n  - b\ntouchpoints:\n  x: a\n  y: b\nsessions:\n  inactivity_gap: 30m\n", id="block style"
        ),
        pytest.param(
            "sessions: {inactivity_gap: 30m}\nstages: [a, b]\ntouchpoints: {x: a, y: b}\n", id="sections reordered"
        ),
        pytest.param("stages: [a, b]\ntouchpoints: {x: a, y: b}\nsessions: {inactivity_gap: PT30M}\n", id="ISO 8601"),
        pytest.param("stages: [a, b]\ntouchpoints: {x: a, y: b}\nsessions: {inactivity_gap: 1800}\n", id="seconds"),
        pytest.param("stages: [a, b]\ntouchpoints: {x: a, y: b}\n", id="default stated vs omitted"),
        pytest.param(BASE + "version: 1\ningest: {batch_size: 500000}\n", id="more defaults stated"),
        pytest.param(
            "stages: [a, b]\ntouchpoints: {y: b, x: a}\nsessions: {inactivity_gap: 30m}\n", id="mapping reordered"
        ),
    ],
)
def test_the_fingerprint_does_not_change_when_the_rules_do_not(same: str) -> None:
    assert parse_config(same).fingerprint == parse_config(BASE).fingerprint


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(BASE.replace("30m", "31m"), id="gap"),
        pytest.param(BASE.replace("{x: a, y: b}", "{x: b, y: b}"), id="mapping"),
        pytest.param(BASE.replace("{x: a, y: b}", "{x: a, y: b, z: b}"), id="one more touchpoint"),
        pytest.param(BASE.replace("[a, b]", "[b, a]"), id="stage order"),
        pytest.param(BASE + "version: 2\n", id="version"),
        pytest.param(BASE + "ingest: {allowed_lateness: 2d}\n", id="lateness"),
        pytest.param(BASE + "drop_off: {timeouts: {a: 3d}}\n", id="drop-off timeout"),
        pytest.param(BASE + "path_cleaning: {ignore_touchpoints: [x]}\n", id="ignored touchpoint"),
    ],
)
def test_the_fingerprint_changes_when_a_rule_changes(changed: str) -> None:
    assert parse_config(changed).fingerprint != parse_config(BASE).fingerprint


# -- `parcours config` through the real CLI -------------------------------------------------------


def parcours(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "parcours.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
        check=False,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], expected_start: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {expected_start}"), result.stderr


def test_config_init_writes_the_documented_default_and_check_accepts_it(tmp_path: Path, default: JourneyConfig) -> None:
    result = parcours("config", "init", "journey.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "wrote journey.yaml\n"
    assert (tmp_path / "journey.yaml").read_text(encoding="utf-8") == default_config_text()

    checked = parcours("config", "check", "journey.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == f"journey.yaml: valid (version 1, fingerprint {default.fingerprint})\n"


def test_config_init_does_not_overwrite_without_force(tmp_path: Path) -> None:
    (tmp_path / "journey.yaml").write_text("stages: [mine]\n", encoding="utf-8")
    result = parcours("config", "init", "journey.yaml", cwd=tmp_path)
    assert_one_error_line(result, "journey.yaml exists (use --force to overwrite)")
    assert (tmp_path / "journey.yaml").read_text(encoding="utf-8") == "stages: [mine]\n"

    forced = parcours("config", "init", "journey.yaml", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "journey.yaml").read_text(encoding="utf-8") == default_config_text()


def test_config_show_prints_the_effective_configuration(tmp_path: Path, default: JourneyConfig) -> None:
    shown = parcours("config", "show", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document == json.loads(default.model_dump_json())
    assert document["stages"] == list(STAGES)
    assert document["sessions"] == {"inactivity_gap": "PT30M", "max_duration": "P1D"}
    assert document["ingest"]["batch_size"] == 500_000

    (tmp_path / "mine.yaml").write_text("stages: [a]\nsessions: {inactivity_gap: 10m}\n", encoding="utf-8")
    mine = parcours("config", "show", "--config", "mine.yaml", cwd=tmp_path)
    assert mine.returncode == 0, mine.stderr
    document = json.loads(mine.stdout)
    assert document["stages"] == ["a"]
    assert document["sessions"] == {"inactivity_gap": "PT10M", "max_duration": "P1D"}  # the default filled in
    assert document["touchpoints"] == {}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            "stages: [a]\nsessions:\n  inactivity_gapp: 30m\n",
            "bad.yaml: sessions.inactivity_gapp: unknown setting",
            id="unknown key",
        ),
        pytest.param(
            "stages: [a, b]\ntouchpoints: {checkout: c}\n",
            "bad.yaml: touchpoints.checkout: unknown stage 'c' (stages: ['a', 'b'])",
            id="unknown stage",
        ),
        pytest.param(
            "stages: [a]\nsessions: {inactivity_gap: 0s}\n",
            "bad.yaml: sessions: inactivity_gap must be a positive duration",
            id="zero duration",
        ),
        pytest.param("- a\n", "bad.yaml: expected a mapping of settings at the top level", id="top-level list"),
        pytest.param("stages: [a\n", "bad.yaml: not valid YAML: ", id="bad YAML"),
        pytest.param(
            "stages: [a]\ntouchpoints: {x: '[b]c'}\n",
            "bad.yaml: touchpoints.x: unknown stage '[b]c'",
            id="brackets in a value",
        ),
        pytest.param(
            "stages: [a]\ntouchpoints: {x: '[/]'}\n",
            "bad.yaml: touchpoints.x: unknown stage '[/]'",
            id="closing tag in a value",
        ),
    ],
)
def test_config_check_names_the_bad_key_in_one_line(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "bad.yaml").write_text(content, encoding="utf-8")
    assert_one_error_line(parcours("config", "check", "bad.yaml", cwd=tmp_path), expected)


def test_config_check_and_show_on_a_missing_file(tmp_path: Path) -> None:
    expected = "nope.yaml: cannot read the configuration (No such file or directory)"
    assert_one_error_line(parcours("config", "check", "nope.yaml", cwd=tmp_path), expected)
    assert_one_error_line(parcours("config", "show", "--config", "nope.yaml", cwd=tmp_path), expected)


def test_the_settings_views_hold_every_rule_of_the_record() -> None:
    from datetime import timedelta

    import duckdb

    from parcours.warehouse import settings_views_sql

    text = (
        default_config_text()
        .replace("inactivity_gap: 30m", "inactivity_gap: 45m")
        .replace("inactivity: 180d", "inactivity: null")
        .replace("ignore_touchpoints: []", "ignore_touchpoints: [newsletter_open]")
    )
    record = parse_config(text).settings_record()
    del record["path_summary_steps"]  # as in a manifest written before the setting existed
    with duckdb.connect() as con:
        for statement in settings_views_sql(record):
            con.execute(statement)
        row = con.execute(
            "select inactivity_gap, churn_inactivity, ignore_touchpoints, collapse_repeats, path_summary_steps, "
            "max_path_length from parcours_settings"
        ).fetchone()
        stages = con.execute("select stage, stage_rank, drop_off_timeout from parcours_stages order by 2").fetchall()
    assert row == (timedelta(minutes=45), None, ["newsletter_open"], True, 6, 200)
    assert stages[:3] == [
        ("discovery", 0, timedelta(days=14)),
        ("consideration", 1, timedelta(days=21)),
        ("purchase", 2, timedelta(days=7)),
    ]
    assert len(stages) == 7
