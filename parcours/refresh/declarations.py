"""Derived datasets, each declared once beside its model (docs/analytics-core.md §2).

A SQL model `sql/<layer>/<model>.sql` that the refresher materialises has a declaration
`sql/<layer>/<model>.yml` beside it, in the dbt convention:

    dataset: sessions                # the registered dataset its rows land in
    view: sessions                   # the view readers query, where the grain holds
    description: ...
    grain: [session_id]              # unique and not null in `view`
    nullable: [segment]              # grain columns where a null is a value of its own
    not_null: [customer_id, ...]
    identities: ["n_customers <= n_sessions", ...]  # true on every row of `view` (a window
                                     # over its rows may say what rows add up to)
    partition: batch_date            # the dataset's partition column
    cadence: every_pass              # or hourly, daily: when a refresh pass may refresh it
    invalidation:                    # what makes rows stale
      kind: customers                # touched by new events: recomputed per customer
      from: session_started_at       # touchpoints column: where a touched customer restarts
      marker: sessions_from_at       # the `refreshes` column recording that point
      supersedes: started_at         # this dataset's column: rows at or after the marker are stale
      answers_from: answered_at      # optional, a survey_answers column: customers with new
                                     # answers are touched too, restarting from there (and from
                                     # the answers naming one of the batch's events)
    # or
    invalidation:
      kind: partitions               # follows the changed partitions of an upstream dataset
      source: journeys
      source_partition: <SQL over the source's rows giving this dataset's partition, or "{{ period }}">
    # or
    invalidation:
      kind: family                   # q-values: a family's rows are recomputed together
      family: [started_date, channel]  # columns of the dataset, its partition column among them
      source: sessions
      source_family:                 # per family column, SQL over the source's changed rows
        started_date: started_date
        channel: unnest(channels)
    # or
    invalidation:
      kind: whole                    # recomputed whole when anything it reads changed
    # The conventions of analytics views (parcours.warehouse.conventions), all optional:
    grouping_sets: [[], [segment]]   # rolled-up rows: `breakdown`, `all`, `unknown`
    additive: [n_journeys]           # totals equal in every breakdown
    period: {column: started_week, unit: week, by: started_at}
    min_n: 30                        # with rates: {n_journeys: [conversion_rate]}

Cadence: an `every_pass` dataset is refreshed by every refresh pass that has work; an `hourly`
(`daily`) one by the first pass whose wall clock lies in a later UTC hour (day) than its last
refresh, for everything committed since (`parcours.refresh.refresher.catch_up`). A dataset is
never more frequent than a dataset it reads (refused here): a faster one would show its source
older than itself.

A `family` dataset is one where a row's value depends on other rows: a Benjamini-Hochberg q
adjusts every p-value of its family together, so one changed test changes every q of the
family. When any row of a family is invalidated (the source's changed rows map to families by
`source_family`), the whole family is recomputed. A family lies in one partition (its columns
must include the partition column), so its rows are replaced with the partition files holding
them, the other families' rows carried over unchanged. A `whole` dataset is recomputed whole,
replacing all its files, whenever a dataset its models read gained or lost a file since its
last refresh, or, when they read `parcours_finality` or `parcours_watermark`, when the finality
point moved.

What a declaration does not state is read from the models, so it cannot drift: the models a
dataset's model reads (transitively), the derived datasets it depends on (those whose raw
view a model of it reads: the dependency order), the registered datasets whose raw views they
read (what invalidates a `whole` dataset), whether they read the clock, the configuration keys
it reads (the settings columns named in those models), and from both its fingerprint.
"""

from __future__ import annotations

import dataclasses
import functools
import graphlib
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from parcours.warehouse import DATASETS, conventions
from parcours.warehouse.conventions import NO_CONVENTIONS, Conventions
from parcours.warehouse.views import MODEL_LAYERS, model_references

EVERY_PASS, HOURLY, DAILY = "every_pass", "hourly", "daily"
CADENCES = (EVERY_PASS, HOURLY, DAILY)  # from the most frequent to the least
CUSTOMERS, PARTITIONS, FAMILY, WHOLE = "customers", "partitions", "family", "whole"
# What a Python model is given after its events when its declaration names no `python_arguments`.
CHURN_ARGUMENTS = "parcours.pipelines.cycles:churn_arguments"
INVALIDATIONS = (CUSTOMERS, PARTITIONS, FAMILY, WHOLE)
# What a model reads of the clock: a dataset reading them changes when the finality point moves.
CLOCK_VIEWS = ("parcours_finality", "parcours_watermark")
_FIELDS = {
    "dataset",
    "view",
    "description",
    "grain",
    "nullable",
    "not_null",
    "identities",
    "partition",
    "cadence",
    "invalidation",
    "python",
    "python_arguments",
    "reads",
    "config",
    "intervals",
    *conventions.FIELDS,
}


class DeclarationError(ValueError):
    """A declaration that does not describe its dataset: the message names the file."""


@dataclass(frozen=True, slots=True)
class Invalidation:
    kind: str
    # customers
    from_column: str = ""  # the touchpoints column compared with the marker
    marker: str = ""
    from_expression: str = ""  # over a touched customer's batch rows: its minimum is the marker
    supersedes: str = ""
    answers_from: str = ""  # a survey_answers column: new answers touch their customer from there
    # `whole`: a touched customer is recomputed over every current event of theirs (a best
    # funnel attempt may lie anywhere in their history), its older rows all superseded
    history: str = "from_point"
    # partitions, family
    source: str = ""
    source_partition: str = ""
    # family: the dataset's columns naming a family (the partition column among them), and for
    # each, the SQL over the source's changed rows giving the families they invalidate
    family: tuple[str, ...] = ()
    source_family: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Derived:
    """One derived dataset: its declaration, and what its models say of it."""

    name: str
    model: str  # the model's name (`int_sessions_aggregated`)
    layer: str  # its folder under sql/
    view: str
    description: str
    grain: tuple[str, ...]
    nullable: tuple[str, ...]  # of the grain: a null there is a value (a segment not sent)
    not_null: tuple[str, ...]
    identities: tuple[str, ...]
    partition: str
    cadence: str
    invalidation: Invalidation
    source: str  # "intermediate/int_sessions_aggregated.yml", for messages
    reads: frozenset[str] = frozenset()  # every model its model reads, transitively, itself included
    depends_on: tuple[str, ...] = ()  # the derived datasets it reads, in name order
    reads_config: tuple[str, ...] = ()  # the settings columns its models name
    fingerprint: str = ""
    python: str = ""  # "module:function" of a Python model; empty for a SQL model
    # "module:function" (settings record, finality clock) -> the arguments after the events
    python_arguments: str = ""
    # Wilson intervals the refresher adds to the model's rows: (rate column, successes, trials);
    # each gives the columns rate, rate_low, rate_high (parcours/analytics/stats.py)
    intervals: tuple[tuple[str, str, str], ...] = ()
    conventions: Conventions = NO_CONVENTIONS  # grouping sets, period, small-n suppression
    reads_datasets: tuple[str, ...] = ()  # the registered datasets whose raw view its models read
    reads_clock: bool = False  # its models read the finality point or the watermark


def _python_model(body: Mapping[str, Any], source: str) -> str:
    """The text standing for a Python model among the SQL ones: the models and settings it
    declares it reads (what the dependency order and the fingerprint read), and the hash of its
    module's source (a change to the rules is a change of definition)."""
    import importlib
    import inspect

    target = str(body["python"])
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        getattr(module, function)
    except (ImportError, AttributeError) as exc:
        raise DeclarationError(f"{source}: python {target!r} cannot be imported ({exc})") from None
    digest = hashlib.sha256(inspect.getsource(module).encode()).hexdigest()[:16]
    reads = [str(r) for r in body.get("reads", []) or []]
    config = [str(c) for c in body.get("config", []) or []]
    lines = [f"-- python model {target}, source {digest}"]
    lines += [f"select * from {name}" for name in reads]
    lines += [f"select {name} from parcours_settings" for name in config]
    return "\n".join(lines) + "\n"


def load_python(derived: Derived):
    """The function of a Python model."""
    import importlib

    module_name, _, function = derived.python.partition(":")
    return getattr(importlib.import_module(module_name), function)


def load_arguments(derived: Derived):
    """The function giving a Python model its arguments after the events, from the settings
    record and the finality clock (`python_arguments`)."""
    import importlib

    module_name, _, function = derived.python_arguments.partition(":")
    return getattr(importlib.import_module(module_name), function)


def _texts() -> dict[str, tuple[str, str]]:
    """model name -> (layer, text) of every SQL model."""
    root = resources.files("parcours.sql")
    texts: dict[str, tuple[str, str]] = {}
    for layer in MODEL_LAYERS:
        folder = root.joinpath(layer)
        for item in sorted(folder.iterdir(), key=lambda i: i.name):
            if item.name.endswith(".sql"):
                texts[item.name.removesuffix(".sql")] = (layer, item.read_text("utf-8"))
    return texts


@functools.cache
def declarations() -> tuple[Derived, ...]:
    """Every declared derived dataset, in dependency order (a dataset after those it reads)."""
    root = resources.files("parcours.sql")
    found: list[tuple[str, str, Mapping[str, Any]]] = []
    texts = _texts()
    for layer in MODEL_LAYERS:
        for item in sorted(root.joinpath(layer).iterdir(), key=lambda i: i.name):
            if item.name.endswith(".yml"):
                body = yaml.safe_load(item.read_text("utf-8")) or {}
                if "python" in body:
                    texts[item.name.removesuffix(".yml")] = (layer, _python_model(body, f"{layer}/{item.name}"))
                found.append((layer, item.name, body))
    return resolve(found, texts, _settings_columns())


def _rendered(d: Derived, texts: Mapping[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """`texts` with the dataset's model and view expanded from its conventions (their words,
    and so the settings they read and the fingerprint, are those of the SQL that runs). A model
    declaring conventions must use them: the registry generates them, no model spells its own."""
    out = dict(texts)
    c = d.conventions
    wanted = {
        d.model: {"grouping_sets", "breakdown"} if c.grouping_sets else set(),
        d.view: ({"is_complete"} if c.period else set()) | ({"rates"} if c.rates else set()),
    }
    if d.model == d.view:
        wanted = {d.model: wanted[d.model] | wanted[d.view]}
    for name, needed in wanted.items():
        layer, text = texts[name]
        missing = sorted(needed - conventions.placeholders(text))
        if missing:
            raise DeclarationError(
                f"{d.source}: {layer}/{name}.sql does not use "
                + ", ".join(f"{{{{ {m} }}}}" for m in missing)
                + " (the declaration's conventions generate them)"
            )
        out[name] = (layer, conventions.render(text, c, f"{layer}/{name}.sql"))
    return out


def by_name() -> dict[str, Derived]:
    return {d.name: d for d in declarations()}


def resolve(
    found: Iterable[tuple[str, str, Mapping[str, Any]]],
    texts: Mapping[str, tuple[str, str]],
    settings_columns: Iterable[str],
) -> tuple[Derived, ...]:
    """Check the declarations `found` ((layer, file name, parsed YAML)) against the models
    `texts` and the dataset registry, complete them from the models, and order them. Pure:
    tested alone."""
    settings_columns = tuple(settings_columns)
    declared = [_parse(layer, name, body, texts) for layer, name, body in found]
    for d in declared:
        texts = _rendered(d, texts)
    names = [d.name for d in declared]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DeclarationError(f"datasets declared twice: {twice}")
    closure = {d.name: _closure(d.model, texts) for d in declared}
    complete: dict[str, Derived] = {}
    for d in declared:
        words = set().union(*(_words(texts[m][1]) for m in closure[d.name]))
        depends = tuple(sorted(o.name for o in declared if o.name != d.name and f"raw_{o.name}" in words))
        if d.invalidation.kind in (PARTITIONS, FAMILY) and d.invalidation.source not in (*depends, *_LANDED_SOURCES):
            raise DeclarationError(
                f"{d.source}: invalidation source {d.invalidation.source!r} is neither a landed dataset "
                f"({', '.join(_LANDED_SOURCES)}) nor a derived dataset its model reads ({list(depends)})"
            )
        reads_config = tuple(c for c in settings_columns if c in words)
        faster = [o.name for o in declared if o.name in depends and _slower(o.cadence, d.cadence)]
        if faster:
            raise DeclarationError(
                f"{d.source}: cadence {d.cadence!r} is more frequent than that of {faster}, which it reads: "
                "it would show them older than its own refresh (a dataset's cadence is at most as frequent "
                "as its sources')"
            )
        reads_datasets = tuple(sorted(n for n in DATASETS if f"raw_{n}" in words))
        reads_clock = any(v in words for v in CLOCK_VIEWS)
        digest = hashlib.sha256()
        for model in sorted(closure[d.name]):
            digest.update(f"{model}\n{texts[model][1]}\n".encode())
        digest.update(json.dumps([d.grain, d.partition, d.invalidation.__repr__()]).encode())
        if d.intervals:
            digest.update(json.dumps(d.intervals).encode())
        complete[d.name] = Derived(
            **{**_as_dict(d), "reads": closure[d.name], "depends_on": depends, "reads_config": reads_config},
            fingerprint=digest.hexdigest()[:16],
            reads_datasets=reads_datasets,
            reads_clock=reads_clock,
        )
    return tuple(complete[n] for n in _ordered(complete))


_LANDED_SOURCES = ("touchpoints", "survey_answers")


def _slower(cadence: str, than: str) -> bool:
    return CADENCES.index(cadence) > CADENCES.index(than)


def fingerprint(derived: Derived, settings: Mapping[str, Any]) -> str:
    """The dataset's fingerprint under `settings` (a settings record): its models' text, its
    declaration, and the values of the configuration keys its models read. Rows written under
    another fingerprint were defined differently: `parcours refresh --full` rebuilds them."""
    values = {column: _setting(settings, column) for column in derived.reads_config}
    return hashlib.sha256(
        f"{derived.fingerprint}{json.dumps(values, sort_keys=True, default=str)}".encode()
    ).hexdigest()[:16]


def _setting(settings: Mapping[str, Any], column: str) -> Any:
    for key in (column, f"{column}_in_s", f"{column}s", f"{column}s_in_s"):
        if key in settings:
            return settings[key]
    return None


def _parse(layer: str, name: str, body: Mapping[str, Any], texts: Mapping[str, tuple[str, str]]) -> Derived:
    source = f"{layer}/{name}"
    model = name.removesuffix(".yml")

    def fail(message: str) -> DeclarationError:
        return DeclarationError(f"{source}: {message}")

    if model not in texts or texts[model][0] != layer:
        raise fail(f"no model {layer}/{model}.sql beside it")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise fail(f"unknown fields {unknown} (known: {sorted(_FIELDS)})")
    missing = sorted(f for f in ("dataset", "view", "grain", "partition", "cadence", "invalidation") if f not in body)
    if missing:
        raise fail(f"missing {missing}")
    dataset = str(body["dataset"])
    spec = DATASETS.get(dataset)
    if spec is None:
        raise fail(f"dataset {dataset!r} is not registered (parcours/warehouse/datasets.py)")
    if body["partition"] != spec.partition_column:
        raise fail(f"partition {body['partition']!r}, but the dataset is partitioned by {spec.partition_column!r}")
    if body["cadence"] not in CADENCES:
        raise fail(f"cadence {body['cadence']!r}: one of {list(CADENCES)}")
    if str(body["view"]) not in texts:
        raise fail(f"view {body['view']!r} is no model")
    columns = set(spec.arrow_schema.names) | {spec.partition_column}
    try:
        declared_conventions = conventions.parse(body, source)
    except conventions.ConventionError as exc:
        raise DeclarationError(str(exc)) from None
    grain = _names(body["grain"], fail, "grain")
    not_null = _names(body.get("not_null", []), fail, "not_null")
    nullable = _names(body.get("nullable", []), fail, "nullable")
    if not set(nullable) <= set(grain):
        raise fail(f"nullable columns {sorted(set(nullable) - set(grain))} are not in the grain")
    absent = sorted(set(grain + not_null + declared_conventions.columns) - columns)
    if absent:
        raise fail(f"columns {absent} are not in dataset {dataset!r}")
    keyed = [conventions.BREAKDOWN, *declared_conventions.dimensions] if declared_conventions.grouping_sets else []
    keyed += [declared_conventions.period.column] if declared_conventions.period else []
    if not set(keyed) <= set(grain):
        raise fail(f"the grain must hold {sorted(set(keyed) - set(grain))}: a row is one period of one grouping set")
    return Derived(
        name=dataset,
        model=model,
        layer=layer,
        view=str(body["view"]),
        description=str(body.get("description", "")),
        grain=grain,
        nullable=nullable,
        not_null=not_null,
        identities=tuple(str(i) for i in body.get("identities", []) or []),
        partition=spec.partition_column,
        cadence=str(body["cadence"]),
        invalidation=_rendered_partition(
            _invalidation(body["invalidation"], fail, columns, spec.partition_column), declared_conventions, source
        ),
        source=source,
        python=str(body.get("python", "")),
        python_arguments=str(body.get("python_arguments") or (CHURN_ARGUMENTS if "python" in body else "")),
        intervals=_intervals(body.get("intervals"), fail, columns),
        conventions=declared_conventions,
    )


def _intervals(body: Any, fail, columns: set[str]) -> tuple[tuple[str, str, str], ...]:
    """`intervals: {rate: [successes, trials]}`: each rate a column of the dataset with its
    `_low` and `_high`, the counts columns of it too (the model computes them)."""
    if not body:
        return ()
    if not isinstance(body, Mapping):
        raise fail("intervals: a mapping of rate column -> [successes column, trials column]")
    out = []
    for rate, counts in body.items():
        if not (isinstance(counts, list) and len(counts) == 2):
            raise fail(f"intervals.{rate}: [successes column, trials column]")
        absent = sorted({rate, f"{rate}_low", f"{rate}_high", *map(str, counts)} - columns)
        if absent:
            raise fail(f"intervals.{rate}: columns {absent} are not in the dataset")
        out.append((str(rate), str(counts[0]), str(counts[1])))
    return tuple(out)


def _family(body: Mapping[str, Any], fail, columns: set[str], partition: str) -> Invalidation:
    """A dataset holding q-values: a family's rows are recomputed together. A family lies in one
    partition (the partition column is one of its columns), so its rows are replaced by rewriting
    the partitions holding an invalidated family: the other families' rows carried over as they
    were, the invalidated ones' recomputed by the model."""
    wanted = ("family", "source", "source_family")
    if sorted(set(body) - {"kind"}) != sorted(wanted):
        raise fail(f"a family invalidation states exactly {list(wanted)}")
    family = _names(body["family"], fail, "invalidation.family")
    if not family:
        raise fail("invalidation.family names no column")
    absent = sorted(set(family) - columns)
    if absent:
        raise fail(f"invalidation.family columns {absent} are not in the dataset")
    if partition not in family:
        raise fail(
            f"invalidation.family must include the partition column {partition!r}: a family's rows are "
            "replaced with the partition files that hold them"
        )
    mapping = body["source_family"]
    if not isinstance(mapping, Mapping) or sorted(mapping) != sorted(family):
        raise fail(f"invalidation.source_family maps each family column {list(family)} to SQL over the source's rows")
    return Invalidation(
        FAMILY,
        source=str(body["source"]),
        family=family,
        source_family=tuple((column, str(mapping[column])) for column in family),
    )


def _invalidation(body: Any, fail, columns: set[str], partition: str = "") -> Invalidation:
    if not isinstance(body, Mapping) or body.get("kind") not in INVALIDATIONS:
        raise fail(f"invalidation.kind must be one of {list(INVALIDATIONS)}")
    if body["kind"] == WHOLE:
        if set(body) != {"kind"}:
            raise fail("a whole invalidation states its kind only (what it reads is read from its models)")
        return Invalidation(WHOLE)
    if body["kind"] == FAMILY:
        return _family(body, fail, columns, partition)
    if body["kind"] == CUSTOMERS:
        history = str(body.get("history", "from_point"))
        if history not in ("from_point", "whole"):
            raise fail(f"invalidation.history {history!r}: from_point (the default) or whole")
        # A whole-history recompute supersedes every older row of the customer: nothing to compare.
        wanted = ("from", "marker") if history == "whole" else ("from", "marker", "supersedes")
        if sorted(set(body) - {"kind", "from_expression", "answers_from", "history"}) != sorted(wanted):
            raise fail(
                f"a customers invalidation states exactly {list(wanted)} (and maybe from_expression, answers_from, "
                "history)"
            )
        touchpoints, markers = set(DATASETS["touchpoints"].arrow_schema.names), DATASETS["refreshes"].arrow_schema
        if body["from"] not in touchpoints:
            raise fail(f"invalidation.from {body['from']!r} is not a touchpoints column")
        if body["marker"] not in markers.names:
            raise fail(f"invalidation.marker {body['marker']!r} is not a column of `refreshes`")
        if history != "whole" and body["supersedes"] not in columns:
            raise fail(f"invalidation.supersedes {body['supersedes']!r} is not a column of the dataset")
        answers_from = str(body.get("answers_from", ""))
        if answers_from and answers_from not in DATASETS["survey_answers"].arrow_schema.names:
            raise fail(f"invalidation.answers_from {answers_from!r} is not a survey_answers column")
        return Invalidation(
            CUSTOMERS,
            from_column=body["from"],
            marker=body["marker"],
            supersedes=str(body.get("supersedes", "")),
            from_expression=str(body.get("from_expression") or body["from"]),
            answers_from=answers_from,
            history=history,
        )
    wanted = ("source", "source_partition")
    if sorted(set(body) - {"kind"}) != sorted(wanted):
        raise fail(f"a partitions invalidation states exactly {list(wanted)}")
    return Invalidation(PARTITIONS, source=str(body["source"]), source_partition=str(body["source_partition"]))


def _rendered_partition(invalidation: Invalidation, declared: Conventions, source: str) -> Invalidation:
    """A `source_partition` may be `{{ period }}`: the source's rows fall in this dataset's
    periods by the same expression as the model's, time zone included."""
    if not invalidation.source_partition:
        return invalidation
    try:
        text = conventions.render(invalidation.source_partition, declared, f"{source} (source_partition)")
    except conventions.ConventionError as exc:
        raise DeclarationError(str(exc)) from None
    return dataclasses.replace(invalidation, source_partition=text)


def _names(value: Any, fail, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(f"{field} must be a list of column names")
    return tuple(value)


def _closure(model: str, texts: Mapping[str, tuple[str, str]]) -> frozenset[str]:
    seen: set[str] = set()
    todo = [model]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += model_references(texts[name][1], texts.keys() - {name})
    return frozenset(seen)


def _words(text: str) -> frozenset[str]:
    return model_references(text, _words_universe(text))


def _words_universe(text: str) -> set[str]:
    import re

    return {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)}


def _ordered(complete: Mapping[str, Derived]) -> list[str]:
    """Dataset names, each after the datasets it reads (by name among those ready at once)."""
    sorter = graphlib.TopologicalSorter({name: complete[name].depends_on for name in sorted(complete)})
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as exc:
        raise DeclarationError(f"derived datasets read each other in a cycle: {' -> '.join(exc.args[1])}") from None


def _as_dict(d: Derived) -> dict[str, Any]:
    return {
        f: getattr(d, f)
        for f in Derived.__slots__
        if f not in ("reads", "depends_on", "reads_config", "fingerprint", "reads_datasets", "reads_clock")
    }


def _settings_columns() -> tuple[str, ...]:
    """The columns of `parcours_settings` and `parcours_stages`, as the settings views name them."""
    from parcours.config import load_config

    columns = []
    for key, value in load_config().settings_record().items():
        if key == "stages":
            continue
        name = key.removesuffix("_in_s")
        columns.append(name.removesuffix("s") if isinstance(value, dict) else name)
    return tuple(columns)
