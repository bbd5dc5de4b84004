"""Derived datasets declared beside their models: what the declarations say, what is read from the
models, and the errors a wrong declaration gets."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from parcours.config import load_config
from parcours.refresh.declarations import (
    CUSTOMERS,
    DeclarationError,
    declarations,
    fingerprint,
    load_arguments,
    load_python,
    resolve,
)
from parcours.warehouse import DATASETS, ROLLUPS

SQL = resources.files("parcours.sql")


def header_grain(layer: str, model: str) -> tuple[str, ...]:
    """The `-- grain: one row per (...)` header of a model, read independently of the harness."""
    text = SQL.joinpath(layer, f"{model}.sql").read_text("utf-8")
    match = re.search(r"^-- grain: one row per \(?([^)\n]+)\)?$", text, re.M)
    assert match, f"{layer}/{model}.sql has no grain header"
    return tuple(part.strip() for part in match.group(1).split(","))


def test_every_materialised_dataset_is_declared_once_beside_its_model():
    declared = {d.name: d for d in declarations()}
    assert sorted(declared) == sorted(
        [
            "sessions",
            "journeys",
            "churns",
            "survey_attachments",
            "customer_transitions",
            "transitions_summary",
            "customer_funnels",
            "funnel_steps",
            "paths",
            "path_edges",
            *ROLLUPS,
        ]
    )
    for d in declared.values():
        assert DATASETS[d.name].partition_column == d.partition
        # The grain a reader finds in the headers of the model and of its view is the declared one.
        assert header_grain("marts", d.view) == d.grain
        if d.python:  # a Python model: its rows are the grain of the dataset's Arrow schema
            assert load_python(d).__module__.startswith("parcours.pipelines.")
            assert load_arguments(d).__module__ == load_python(d).__module__
            continue
        assert SQL.joinpath(d.layer, f"{d.model}.sql").is_file()
        assert header_grain(d.layer, d.model) == d.grain


def test_dependencies_and_settings_are_read_from_the_models():
    declared = {d.name: d for d in declarations()}
    assert declared["sessions_daily"].depends_on == ("sessions",)
    assert declared["journey_stages_weekly"].depends_on == ("journeys",)
    assert declared["journey_paths_weekly"].depends_on == ("journeys",)
    assert declared["sessions"].depends_on == declared["churns"].depends_on == ()
    assert declared["journeys"].depends_on == ("churns",)  # it reads stg_parcours__churns
    assert declared["touchpoints_daily"].depends_on == ()
    order = [d.name for d in declarations()]
    for d in declarations():
        assert all(order.index(dep) < order.index(d.name) for dep in d.depends_on)
    # By hand from the SQL: int_journeys_aggregated reads cycle_outcomes and max_path_length,
    # int_journey_steps_cleaned (which it reads) ignore_touchpoints and collapse_repeats.
    assert set(declared["journeys"].reads_config) == {
        "cycle_outcomes",
        "max_path_length",
        "ignore_touchpoints",
        "collapse_repeats",
    }
    # Its `{{ period }}` is the journey's week in `reporting.timezone`: a setting it reads too.
    assert declared["journey_paths_weekly"].reads_config == ("path_summary_steps", "reporting_timezone")
    assert declared["sessions"].reads_config == ()
    assert declared["journeys"].invalidation.kind == CUSTOMERS
    # The path datasets: whole, over journeys, judged at the finality point; the rules they read
    # by hand from int_journey_paths_aliased (the anchors too, for the edges).
    for name in ("paths", "path_edges"):
        assert declared[name].invalidation.kind == "whole"
        assert declared[name].depends_on == ("journeys",)
        assert declared[name].reads_clock
    assert set(declared["paths"].reads_config) == {
        "path_alias_patterns",
        "path_aliases",
        "collapse_repeats",
        "max_path_length",
        "drop_off_timeout",  # parcours_stages: the drop-off rule that ends a cycle
    }
    assert set(declared["path_edges"].reads_config) == set(declared["paths"].reads_config) | {
        "path_anchor_names",
        "path_anchor_kinds",
        "path_anchor_points",
        "path_anchor_directions",
        "path_anchor_steps",
        "path_anchor_tops",
    }
    # The Python model states what it reads in its declaration.
    assert set(declared["churns"].reads_config) == {
        "churn_outcomes",
        "churn_inactivity",
        "churn_not_activity",
        "allowed_lateness",
    }


def test_a_fingerprint_moves_with_the_settings_a_dataset_reads_only():
    declared = {d.name: d for d in declarations()}
    settings = load_config().settings_record()
    longer = {**settings, "max_path_length": settings["max_path_length"] + 1}
    assert fingerprint(declared["journeys"], longer) != fingerprint(declared["journeys"], settings)
    assert fingerprint(declared["sessions"], longer) == fingerprint(declared["sessions"], settings)
    assert fingerprint(declared["journey_paths_weekly"], longer) == fingerprint(
        declared["journey_paths_weekly"], settings
    )


TEXTS = {
    "stg_a": ("staging", "select * from raw_touchpoints"),
    "int_a": ("intermediate", "select * from stg_a"),
    "stg_b": ("staging", "select * from raw_sessions"),
    "int_b": ("intermediate", "select x from stg_b cross join parcours_settings s where s.max_path_length > 1"),
    "sessions": ("marts", "select * from raw_sessions"),
    "sessions_daily": ("marts", "select * from int_b"),
}
SESSIONS = {
    "dataset": "sessions",
    "view": "sessions",
    "grain": ["session_id"],
    "partition": "batch_date",
    "cadence": "every_pass",
    "invalidation": {
        "kind": "customers",
        "from": "session_started_at",
        "marker": "sessions_from_at",
        "supersedes": "started_at",
    },
}
DAILY = {
    "dataset": "sessions_daily",
    "view": "sessions_daily",
    "grain": ["started_date", "channel"],
    "partition": "started_date",
    "cadence": "every_pass",
    "invalidation": {"kind": "partitions", "source": "sessions", "source_partition": "started_date"},
}


def test_resolve_orders_by_what_the_models_read():
    resolved = resolve(
        [("intermediate", "int_b.yml", DAILY), ("intermediate", "int_a.yml", SESSIONS)], TEXTS, ["max_path_length"]
    )
    assert [d.name for d in resolved] == ["sessions", "sessions_daily"]
    assert resolved[1].depends_on == ("sessions",) and resolved[1].reads_config == ("max_path_length",)
    assert resolved[1].reads == {"int_b", "stg_b"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cadence": "weekly"}, r"int_a.yml: cadence 'weekly'"),
        ({"grain": ["nope"]}, r"int_a.yml: columns \['nope'\] are not in dataset 'sessions'"),
        ({"partition": "started_date"}, r"int_a.yml: partition 'started_date', but the dataset is partitioned by"),
        ({"dataset": "nowhere"}, r"int_a.yml: dataset 'nowhere' is not registered"),
        ({"colour": "red"}, r"int_a.yml: unknown fields \['colour'\]"),
        ({"view": "missing_view"}, r"int_a.yml: view 'missing_view' is no model"),
        (
            {
                "invalidation": {
                    "kind": "customers",
                    "from": "nope",
                    "marker": "sessions_from_at",
                    "supersedes": "started_at",
                }
            },
            r"invalidation.from 'nope' is not a touchpoints column",
        ),
        (
            {
                "invalidation": {
                    "kind": "customers",
                    "from": "session_started_at",
                    "marker": "x",
                    "supersedes": "started_at",
                }
            },
            r"invalidation.marker 'x' is not a column of `refreshes`",
        ),
        ({"invalidation": {"kind": "sometimes"}}, r"invalidation.kind must be one of"),
    ],
)
def test_a_wrong_declaration_is_refused_naming_its_file(change, message):
    with pytest.raises(DeclarationError, match=message):
        resolve([("intermediate", "int_a.yml", {**SESSIONS, **change})], TEXTS, [])


def test_a_partition_source_the_model_does_not_read_is_refused():
    wrong = {**DAILY, "invalidation": {"kind": "partitions", "source": "journeys", "source_partition": "x"}}
    with pytest.raises(DeclarationError, match=r"int_b.yml: invalidation source 'journeys' is neither"):
        resolve([("intermediate", "int_b.yml", wrong), ("intermediate", "int_a.yml", SESSIONS)], TEXTS, [])


def test_a_declaration_needs_its_model_and_a_dataset_is_declared_once():
    with pytest.raises(DeclarationError, match=r"staging/int_a.yml: no model staging/int_a.sql beside it"):
        resolve([("staging", "int_a.yml", SESSIONS)], TEXTS, [])
    with pytest.raises(DeclarationError, match=r"datasets declared twice: \['sessions'\]"):
        resolve([("intermediate", "int_a.yml", SESSIONS), ("intermediate", "int_b.yml", SESSIONS)], TEXTS, [])


def test_datasets_that_read_each_other_are_refused():
    # sessions' model reads the raw rows of sessions_daily, whose model reads sessions'.
    texts = {
        **TEXTS,
        "int_a": ("intermediate", "select * from raw_sessions_daily"),
        "int_b": ("intermediate", "select * from raw_sessions"),
    }
    with pytest.raises(DeclarationError, match=r"derived datasets read each other in a cycle: .*sessions"):
        resolve([("intermediate", "int_a.yml", SESSIONS), ("intermediate", "int_b.yml", DAILY)], texts, [])
