"""The conventions every analytics view follows, generated from the dataset's declaration.

An analytics view is read by BI tools and by people who did not write it; each reads it the
same way because these are not left to each model (README, "Reading the analytics views"):

* **Rolled-up rows.** A dataset that holds totals beside its breakdowns declares its
  `grouping_sets` (`[[], [segment], [stage, segment]]`). Its model writes `{{ breakdown }}` in
  its select list and `group by {{ grouping_sets }}`; the registry expands them into a
  `breakdown` column naming the broken-out dimensions of the row (`overall`, `segment`,
  `stage×segment`), each dimension rolled up in that row reading `all`, a real null reading
  `unknown` (a dimension present in every set is left as the model gives it), and the SQL
  grouping sets (the period column, if declared, in every set). Every
  aggregate is then computed per grouping set from the rows themselves, so a distinct count
  is right in each breakdown and is never a sum; sums are valid within one `breakdown` only.
  Columns listed in `additive` add up to the same total in every breakdown: the grain checks
  verify it.
* **Periods.** A dataset bucketed in time declares its `period`: the column holding it, its
  `unit` (`day` or `week`: ISO weeks, starting on Monday) and the timestamp that puts a row in
  it (`by`). `{{ period }}` is that timestamp's day or week in `reporting.timezone` (UTC unless
  set); `{{ is_complete }}`, in the view, is true once the period is over at the finality point
  (`parcours_finality`), false before, and false while nothing has landed. It is computed when
  the view is read, never stored: a period completes with no row changing.
* **Small numbers.** `min_n` and `rates` (`{n_journeys: [conversion_rate, ...]}`): in the view,
  `{{ rates }}` gives each listed rate column, null where its `n` column is below `min_n`; the
  `n` column itself is shown as it is.

The expansions are plain SQL (no macro, no UDF): a DuckDB 1.x client opening the views file
reads them as any view. The reserved words (`all`, `unknown`...) are refused as stage and
touchpoint names by the configuration, and dead-lettered as producer-sent segments
(`pipelines/validate.py`), so `all` and `unknown` in a view only ever mean what is said here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.abc import Traversable
from typing import Any

import yaml

OVERALL, ALL, UNKNOWN = "overall", "all", "unknown"
BREAKDOWN = "breakdown"
SEPARATOR = "×"
PERIOD_UNITS = {"day": "1 day", "week": "7 days"}
FIELDS = ("grouping_sets", "additive", "period", "min_n", "rates")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
TIMEZONE = "(select reporting_timezone from parcours_settings)"
FINALITY_POINT = "(select finality_point from parcours_finality)"


class ConventionError(ValueError):
    """A declaration's conventions, or a model's use of them, that cannot be generated."""


@dataclass(frozen=True, slots=True)
class Period:
    column: str  # the dataset's column holding the period (`started_week`)
    unit: str  # `day` or `week`
    by: str  # the timestamp that puts a row in its period (`started_at`)
    timezone: str = ""  # fixed for this dataset (`UTC`: storage days); empty: `reporting.timezone`

    @property
    def zone(self) -> str:
        return _literal(self.timezone) if self.timezone else TIMEZONE


@dataclass(frozen=True, slots=True)
class Conventions:
    """What one dataset's declaration says of the conventions (all optional)."""

    grouping_sets: tuple[tuple[str, ...], ...] = ()
    additive: tuple[str, ...] = ()
    period: Period | None = None
    min_n: int | None = None
    rates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Every dimension of the grouping sets, in the order they first appear."""
        return tuple(dict.fromkeys(d for s in self.grouping_sets for d in s))

    @property
    def broken_out(self) -> tuple[str, ...]:
        """The dimensions some grouping set rolls up: the ones `breakdown` names."""
        return tuple(d for d in self.dimensions if not all(d in s for s in self.grouping_sets))

    def breakdown_of(self, grouping_set: tuple[str, ...]) -> str:
        return SEPARATOR.join(d for d in grouping_set if d in self.broken_out) or OVERALL

    @property
    def breakdowns(self) -> tuple[str, ...]:
        return tuple(self.breakdown_of(s) for s in self.grouping_sets)

    @property
    def columns(self) -> tuple[str, ...]:
        """The dataset columns the conventions name (checked against its schema)."""
        named = [*self.dimensions, *self.additive]
        if self.grouping_sets:
            named.append(BREAKDOWN)
        if self.period:
            named.append(self.period.column)
        for n, rates in self.rates.items():
            named += [n, *rates]
        return tuple(dict.fromkeys(named))


NO_CONVENTIONS = Conventions()


def parse(body: Mapping[str, Any], source: str) -> Conventions:
    """The conventions of one declaration (its parsed YAML); a `ConventionError` naming
    `source` for anything that cannot be generated."""

    def fail(message: str) -> ConventionError:
        return ConventionError(f"{source}: {message}")

    def names(value: Any, what: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise fail(f"{what} must be a list of column names")
        return tuple(value)

    sets: tuple[tuple[str, ...], ...] = ()
    if "grouping_sets" in body:
        raw = body["grouping_sets"]
        if not isinstance(raw, list) or len(raw) < 2:
            raise fail("grouping_sets must list at least two grouping sets (a single one rolls nothing up)")
        sets = tuple(names(s, "each grouping set") for s in raw)
        if len(set(map(frozenset, sets))) != len(sets):
            raise fail("grouping_sets lists a grouping set twice")
    conventions = Conventions(grouping_sets=sets)
    if len(set(conventions.breakdowns)) != len(sets):
        raise fail(f"grouping sets that differ only by always-present columns: {list(conventions.breakdowns)}")
    additive = names(body.get("additive", []), "additive")
    if additive and not sets:
        raise fail("additive needs grouping_sets: it says which totals are equal in every breakdown")
    period = None
    if "period" in body:
        raw = body["period"]
        if not isinstance(raw, Mapping) or sorted(set(raw) - {"timezone"}) != ["by", "column", "unit"]:
            raise fail("period states exactly column, unit and by (and maybe timezone)")
        if raw["unit"] not in PERIOD_UNITS:
            raise fail(f"period.unit {raw['unit']!r}: one of {sorted(PERIOD_UNITS)}")
        zone = str(raw.get("timezone") or "")
        if zone:
            _check_timezone(zone, fail)
        period = Period(str(raw["column"]), str(raw["unit"]), str(raw["by"]), zone)
        if period.column in conventions.dimensions:
            raise fail(f"the period column {period.column!r} is in every grouping set already: do not list it")
    min_n = body.get("min_n")
    rates: dict[str, tuple[str, ...]] = {}
    if min_n is not None or "rates" in body:
        if not isinstance(min_n, int) or isinstance(min_n, bool) or min_n < 1:
            raise fail("min_n must be a positive integer, with rates")
        raw = body.get("rates")
        if not isinstance(raw, Mapping) or not raw:
            raise fail("rates must map each n column to the rate columns it supports")
        rates = {str(n): names(list(r), f"rates.{n}") for n, r in raw.items()}
    return Conventions(sets, additive, period, min_n, rates)


def render(text: str, conventions: Conventions, source: str) -> str:
    """`text` with its convention placeholders expanded; an unknown placeholder, or one whose
    field the declaration lacks, is an error naming `source`."""

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in _EXPANSIONS:
            raise ConventionError(f"{source}: unknown placeholder {{{{ {name} }}}} (known: {sorted(_EXPANSIONS)})")
        return _EXPANSIONS[name](conventions, source)

    return PLACEHOLDER.sub(expand, text)


def placeholders(text: str) -> frozenset[str]:
    return frozenset(m.group(1) for m in PLACEHOLDER.finditer(text))


def _need(conventions: Conventions, what: str, source: str, placeholder: str) -> None:
    if not getattr(conventions, what):
        raise ConventionError(f"{source}: {{{{ {placeholder} }}}} needs `{what}` in the declaration")


def _breakdown(c: Conventions, source: str) -> str:
    """The select list of a rolled-up row: its breakdown, then each dimension."""
    _need(c, "grouping_sets", source, "breakdown")
    broken = c.broken_out
    width = len(broken)
    cases = []
    for grouping_set, name in zip(c.grouping_sets, c.breakdowns, strict=True):
        # grouping(a, b, ...) has a bit per argument, the first the highest, set when rolled up.
        mask = sum(1 << (width - 1 - i) for i, d in enumerate(broken) if d not in grouping_set)
        cases.append(f"when {mask} then {_literal(name)}")
    items = [f"case grouping({', '.join(broken)}) {' '.join(cases)} end as {BREAKDOWN}"]
    if c.period:
        items.append(c.period.column)
    for d in c.dimensions:
        if d in broken:  # a category: rolled up reads `all`, a real null `unknown`
            unknown = f"coalesce(cast({d} as VARCHAR), {_literal(UNKNOWN)})"
            items.append(f"case when grouping({d}) = 1 then {_literal(ALL)} else {unknown} end as {d}")
        else:  # in every grouping set: as the model gives it
            items.append(d)
    return ",\n        ".join(items)


def _grouping_sets(c: Conventions, source: str) -> str:
    _need(c, "grouping_sets", source, "grouping_sets")
    always = (c.period.column,) if c.period else ()
    return "grouping sets (" + ", ".join("(" + ", ".join((*always, *s)) + ")" for s in c.grouping_sets) + ")"


def _period(c: Conventions, source: str) -> str:
    _need(c, "period", source, "period")
    assert c.period is not None
    return f"cast(date_trunc({_literal(c.period.unit)}, timezone({c.period.zone}, {c.period.by})) as DATE)"


def _is_complete(c: Conventions, source: str) -> str:
    _need(c, "period", source, "is_complete")
    assert c.period is not None
    end = f"cast({c.period.column} + interval {PERIOD_UNITS[c.period.unit]} as DATE)"
    reached = f"cast(timezone({c.period.zone}, {FINALITY_POINT}) as DATE)"
    return f"coalesce({end} <= {reached}, false) as is_complete"


def _rates(c: Conventions, source: str) -> str:
    _need(c, "rates", source, "rates")
    return ",\n        ".join(
        f"case when {n} >= {int(c.min_n or 0)} then {rate} end as {rate}"
        for n, rates in c.rates.items()
        for rate in rates
    )


_EXPANSIONS = {
    "breakdown": _breakdown,
    "grouping_sets": _grouping_sets,
    "period": _period,
    "is_complete": _is_complete,
    "rates": _rates,
}


def _check_timezone(zone: str, fail) -> None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise fail(f"period.timezone {zone!r} is not an IANA time zone") from None


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@functools.cache
def by_model(sql_dir: Traversable, layers: tuple[str, ...]) -> dict[str, tuple[Conventions, str]]:
    """model or view name -> (its dataset's conventions, the declaration file), for every
    declaration under `sql_dir`: a declaration's conventions apply to its model and its view."""
    found: dict[str, tuple[Conventions, str]] = {}
    for layer in layers:
        folder = sql_dir.joinpath(layer)
        if not folder.is_dir():
            continue
        for item in sorted(folder.iterdir(), key=lambda i: i.name):
            if not item.name.endswith(".yml"):
                continue
            source = f"{layer}/{item.name}"
            body = yaml.safe_load(item.read_text("utf-8")) or {}
            conventions = parse(body, source)
            for name in {item.name.removesuffix(".yml"), str(body.get("view", ""))} - {""}:
                found[name] = (conventions, source)
    return found


def render_model(sql_dir: Traversable, layers: tuple[str, ...], names: tuple[str, ...], text: str, source: str) -> str:
    """A model's text as the views file and the refresher run it: its placeholders expanded from
    the declaration naming it (`names`: its file's stem and the view name it declares) as its
    model or its view. A model with placeholders and no declaration is an error."""
    if not PLACEHOLDER.search(text):
        return text
    known = by_model(sql_dir, layers)
    declared = next((known[n] for n in names if n in known), None)
    if declared is None:
        raise ConventionError(f"{source}: convention placeholders, but no declaration names this model or view")
    return render(text, declared[0], f"{source} (declared in {declared[1]})")
