"""The journey configuration: lifecycle stages, touchpoint mapping, session and lateness rules.

Loaded once at the edge (CLI, flows) into frozen, validated objects and passed down, so a
transform never reads a file or a global. A bad file fails at load with a message that names
the bad key (``sessions.inactivity_gap: ...``), never later in the middle of a run.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

UNMAPPED_STAGE = "unmapped"
# Values the analytics views give a meaning of their own (a rolled-up dimension, a null, an
# answer attached to no touchpoint, the ends of a path, the rest of a top-N): never a stage or
# a touchpoint name, compared exactly (case-sensitive) as the views compare them.
# The outcomes that close a journey cycle as converted (a purchase, a renewal): fixed, not configured.
CYCLE_OUTCOMES = ("purchase", "renewal")
RESERVED_NAMES = ("all", "unknown", "unattached", "(start)", "(end)", "(ended)", "(other)")
# What the company sends rather than what the customer does: not activity for drop-off or churn.
COMPANY_SENT = ("invoice", "renewal_reminder", "welcome_email", "newsletter_open")

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class ConfigError(ValueError):
    """A journey configuration that cannot be used; the message names the file and the key."""


def parse_duration(value: Any) -> Any:
    """Accept "30m"/"24h"/"3d"/"2w" besides what pydantic takes (seconds, ISO 8601 "PT30M")."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _positive(name: str, value: timedelta | None) -> None:
    if value is not None and value <= timedelta(0):
        raise ValueError(f"{name} must be a positive duration, got {value.total_seconds():g} s")


class _Strict(BaseModel):
    # extra="forbid": a misspelt key is an error naming that key, not a silently ignored default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionRules(_Strict):
    inactivity_gap: Duration = timedelta(minutes=30)
    max_duration: Duration = timedelta(hours=24)

    @model_validator(mode="after")
    def _check(self) -> SessionRules:
        _positive("inactivity_gap", self.inactivity_gap)
        _positive("max_duration", self.max_duration)
        if self.max_duration < self.inactivity_gap:
            raise ValueError("max_duration must be at least inactivity_gap")
        return self


class DropOffRules(_Strict):
    default_timeout: Duration = timedelta(days=30)
    timeouts: dict[str, Duration] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> DropOffRules:
        _positive("default_timeout", self.default_timeout)
        for stage, timeout in self.timeouts.items():
            _positive(f"timeouts.{stage}", timeout)
        return self

    def timeout_for(self, stage: str) -> timedelta:
        return self.timeouts.get(stage, self.default_timeout)


class ChurnRules(_Strict):
    outcomes: tuple[str, ...] = ("cancellation",)
    inactivity: Duration | None = timedelta(days=180)
    # Touchpoints that are not activity for drop-off and inactivity churn. Given in the file, each
    # must be a configured touchpoint; by default, those of COMPANY_SENT the configuration maps.
    not_activity: tuple[str, ...] = COMPANY_SENT

    @model_validator(mode="after")
    def _check(self) -> ChurnRules:
        _positive("inactivity", self.inactivity)
        if not self.outcomes and self.inactivity is None:
            raise ValueError("churn needs at least one outcome or an inactivity duration")
        return self


class IngestRules(_Strict):
    allowed_lateness: Duration = timedelta(days=3)
    earliest_event_date: date = date(2020, 1, 1)
    max_payload_bytes: int = Field(default=65536, ge=256, le=16 * 1024 * 1024)
    batch_size: int = Field(default=500_000, ge=1, le=10_000_000)
    keyed_by_customer: bool = True
    # How long (ingestion time) an id stays in the id index: a record re-using it within this
    # time is a duplicate or a conflict, whatever customer or partition carries it.
    id_retention: Duration = timedelta(days=400)
    # Wall-clock time after which a source partition read to its end, that delivered nothing
    # since, no longer holds the watermark back (`parcours.warehouse.time`).
    idle_after: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _check(self) -> IngestRules:
        if self.allowed_lateness < timedelta(0):
            raise ValueError("allowed_lateness must not be negative")
        _positive("id_retention", self.id_retention)
        _positive("idle_after", self.idle_after)
        if self.id_retention < self.allowed_lateness:
            raise ValueError(
                f"id_retention ({self.id_retention}) must be at least allowed_lateness ({self.allowed_lateness}): "
                "an id forgotten while its event may still arrive could land twice"
            )
        return self


class SurveyRules(_Strict):
    attachment_window: Duration = timedelta(days=7)
    # Where a phone number written without +/00 in a verbatim is read as national, to redact it.
    phone_region: str = "FR"

    @field_validator("phone_region")
    @classmethod
    def _region(cls, value: str) -> str:
        import phonenumbers

        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a phone region (an ISO 3166 alpha-2 code such as FR, BE, CH)")
        return value

    @model_validator(mode="after")
    def _check(self) -> SurveyRules:
        _positive("attachment_window", self.attachment_window)
        return self


class ReportingRules(_Strict):
    # Days and ISO weeks of the analytics views: UTC unless set (an IANA name, `Europe/Paris`).
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Paris)") from None
        return value


class PathCleaning(_Strict):
    collapse_repeats: bool = True
    ignore_touchpoints: tuple[str, ...] = ()
    max_path_length: int = Field(default=200, ge=1)
    summary_steps: int = Field(default=6, ge=1)


FUNNEL_MODES = ("furthest", "ordered", "strict", "any_order")


class FunnelStep(_Strict):
    """A step of a funnel: a lifecycle stage or a touchpoint. Written as a plain name in the
    file, it is the stage of that name, else the touchpoint."""

    WHAT: ClassVar[str] = "a step"
    stage: str | None = None
    touchpoint: str | None = None

    @model_validator(mode="after")
    def _check(self) -> FunnelStep:
        if (self.stage is None) == (self.touchpoint is None):
            raise ValueError(f"{self.WHAT} names exactly one of stage or touchpoint")
        return self

    @property
    def kind(self) -> str:
        return "stage" if self.stage is not None else "touchpoint"

    @property
    def name(self) -> str:
        return self.stage if self.stage is not None else str(self.touchpoint)


def _step(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class FunnelExclusion(FunnelStep):
    """An event that removes a customer from the funnel when it lies between two steps of their
    best attempt (after step `after_step`'s event, before step `before_step`'s; an attempt that
    did not reach `before_step`: before its window closes)."""

    WHAT: ClassVar[str] = "an exclusion"
    after_step: int = Field(default=1, ge=1)
    before_step: int | None = None  # default: the last step


class Funnel(_Strict):
    steps: tuple[Annotated[Any, BeforeValidator(_step)], ...]
    mode: str = "ordered"
    window: Duration = timedelta(days=30)
    exclusions: tuple[FunnelExclusion, ...] = ()

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in FUNNEL_MODES:
            raise ValueError(f"mode {value!r} is not one of {list(FUNNEL_MODES)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> Funnel:
        _positive("window", self.window)
        if not 2 <= len(self.steps) <= 32:
            raise ValueError(f"a funnel has 2 to 32 steps, got {len(self.steps)}")
        for exclusion in self.exclusions:
            before = exclusion.before_step or len(self.steps)
            if not exclusion.after_step < before <= len(self.steps):
                raise ValueError(
                    f"exclusion {exclusion.name!r}: after_step {exclusion.after_step} must come before "
                    f"before_step {before}, within the {len(self.steps)} steps"
                )
        return self


class PathAlias(_Strict):
    """One path-cleaning rule: every match of `pattern` (an RE2 regular expression, as DuckDB
    reads it) in a touchpoint name is replaced by `alias` (`\\1` names a group)."""

    pattern: str
    alias: str

    @model_validator(mode="after")
    def _check(self) -> PathAlias:
        _check_regex(self.pattern, self.alias)
        return self


ANCHOR_DIRECTIONS = ("from", "to")


class PathAnchor(_Strict):
    """A point paths are drawn from (`from`: the steps after it) or to (`to`: the steps before
    it): the first step of a journey at that stage or touchpoint."""

    name: str
    stage: str | None = None
    touchpoint: str | None = None
    direction: str = "from"
    steps: int = Field(default=5, ge=1, le=50)
    top: int = Field(default=5, ge=1, le=100)

    @model_validator(mode="after")
    def _check(self) -> PathAnchor:
        if not self.name.strip():
            raise ValueError("an anchor needs a name")
        if (self.stage is None) == (self.touchpoint is None):
            raise ValueError(f"anchor {self.name!r}: give exactly one of stage or touchpoint")
        if self.direction not in ANCHOR_DIRECTIONS:
            raise ValueError(f"anchor {self.name!r}: direction must be from or to, got {self.direction!r}")
        if self.touchpoint in RESERVED_NAMES:
            raise ValueError(f"anchor {self.name!r}: {self.touchpoint!r} is reserved, not a touchpoint")
        return self

    @property
    def kind(self) -> str:
        return "stage" if self.stage is not None else "touchpoint"

    @property
    def point(self) -> str:
        return self.stage if self.stage is not None else str(self.touchpoint)


class PathRules(_Strict):
    # Applied in order to every touchpoint name of a cleaned path, each to the previous one's
    # result (PostHog's path cleaning): the `paths` and `path_edges` datasets read them.
    aliases: tuple[PathAlias, ...] = ()
    anchors: tuple[PathAnchor, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> PathRules:
        names = [anchor.name for anchor in self.anchors]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"anchors: {', '.join(repeated)} named more than once")
        return self


def _check_regex(pattern: str, alias: str) -> None:
    """Refuse at load a pattern DuckDB's RE2 cannot compile (RE2 has no look-around nor
    back-references: Python's `re` would accept what the views then fail on)."""
    import duckdb

    try:
        duckdb.execute("select regexp_replace('', ?, ?, 'g')", [pattern, alias]).fetchall()
    except duckdb.Error as exc:
        message = " ".join(str(exc).split())
        raise ValueError(f"pattern {pattern!r} is not a regular expression RE2 reads: {message}") from None


class JourneyConfig(_Strict):
    version: int = Field(default=1, ge=1)
    stages: tuple[str, ...]
    touchpoints: dict[str, str] = Field(default_factory=dict)
    sessions: SessionRules = SessionRules()
    drop_off: DropOffRules = DropOffRules()
    churn: ChurnRules = ChurnRules()
    ingest: IngestRules = IngestRules()
    surveys: SurveyRules = SurveyRules()
    path_cleaning: PathCleaning = PathCleaning()
    paths: PathRules = PathRules()
    reporting: ReportingRules = ReportingRules()
    funnels: dict[str, Funnel] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> JourneyConfig:
        if not self.stages:
            raise ValueError("stages must list at least one stage")
        repeated = sorted({stage for stage in self.stages if self.stages.count(stage) > 1})
        if repeated:
            raise ValueError(f"stages: {', '.join(repeated)} listed more than once")
        if UNMAPPED_STAGE in self.stages:
            raise ValueError(f"stages: '{UNMAPPED_STAGE}' is reserved for touchpoints with no stage")
        known = set(self.stages)
        for touchpoint, stage in self.touchpoints.items():
            if stage not in known:
                raise ValueError(f"touchpoints.{touchpoint}: unknown stage '{stage}' (stages: {list(self.stages)})")
        for stage in self.drop_off.timeouts:
            if stage not in known:
                raise ValueError(f"drop_off.timeouts.{stage}: unknown stage (stages: {list(self.stages)})")
        for key, names in (("stages", self.stages), ("touchpoints", self.touchpoints)):
            reserved = sorted(set(names) & set(RESERVED_NAMES))
            if reserved:
                raise ValueError(
                    f"{key}: {', '.join(map(repr, reserved))} reserved (the views give "
                    f"{', '.join(RESERVED_NAMES)} a meaning of their own)"
                )
        for anchor in self.paths.anchors:
            if anchor.stage is not None and anchor.stage not in known:
                raise ValueError(
                    f"paths.anchors.{anchor.name}: unknown stage '{anchor.stage}' (stages: {list(self.stages)})"
                )
        if "not_activity" in self.churn.model_fields_set:
            unknown = sorted(set(self.churn.not_activity) - set(self.touchpoints))
            if unknown:
                raise ValueError(f"churn.not_activity: {unknown} are not configured touchpoints")
        object.__setattr__(self, "funnels", {name: self._resolved(name, f) for name, f in self.funnels.items()})
        return self

    def _resolved(self, name: str, funnel: Funnel) -> Funnel:
        """`funnel` with each plain step name resolved to a stage or a touchpoint, checked."""
        steps = []
        for index, raw in enumerate(funnel.steps, start=1):
            where = f"funnels.{name}.steps.{index}"
            if isinstance(raw, FunnelStep):
                step = raw
            elif isinstance(raw, dict) and "name" in raw and set(raw) == {"name"}:
                plain = str(raw["name"])
                if plain in self.stages and plain in self.touchpoints:
                    raise ValueError(
                        f"{where}: {plain!r} is both a stage and a touchpoint: write stage: or touchpoint:"
                    )
                if plain in self.stages:
                    step = FunnelStep(stage=plain)
                elif plain in self.touchpoints:
                    step = FunnelStep(touchpoint=plain)
                else:
                    raise ValueError(f"{where}: {plain!r} is neither a stage nor a configured touchpoint")
            else:
                try:
                    step = FunnelStep.model_validate(raw)
                except ValidationError as exc:
                    raise ValueError(f"{where}: {_describe(exc)}") from None
            steps.append(step)
        for step in (*steps, *funnel.exclusions):
            known = self.stages if step.kind == "stage" else self.touchpoints
            if step.name not in known:
                raise ValueError(f"funnels.{name}: unknown {step.kind} {step.name!r}")
        if funnel.mode == "furthest":
            ranks = [self.stage_rank(s.name) if s.kind == "stage" else -1 for s in steps]
            if min(ranks) < 0 or ranks != sorted(set(ranks)):
                raise ValueError(
                    f"funnels.{name}: a furthest funnel's steps are stages in lifecycle order "
                    "(a step is reached by that stage or any later one)"
                )
        return funnel.model_copy(update={"steps": tuple(steps)})

    @property
    def not_activity(self) -> tuple[str, ...]:
        """The configured touchpoints that are not activity (see `ChurnRules.not_activity`)."""
        return tuple(t for t in self.churn.not_activity if t in self.touchpoints)

    def stage_of(self, touchpoint: str) -> str:
        return self.touchpoints.get(touchpoint, UNMAPPED_STAGE)

    def stage_rank(self, stage: str) -> int:
        """Position in the lifecycle; `unmapped` and unknown stages rank before the first."""
        try:
            return self.stages.index(stage)
        except ValueError:
            return -1

    def settings_record(self) -> dict[str, Any]:
        """The rules the SQL models need, as plain JSON values (durations in seconds).

        Written into every manifest, so the views are rebuilt from the rules that produced the
        data, by any command, even one that was not given the configuration file.
        """
        seconds = lambda d: None if d is None else int(d.total_seconds())  # noqa: E731
        return {
            "config_version": self.version,
            "config_fingerprint": self.fingerprint,
            "stages": list(self.stages),
            "drop_off_timeouts_in_s": {s: seconds(self.drop_off.timeout_for(s)) for s in self.stages},
            "inactivity_gap_in_s": seconds(self.sessions.inactivity_gap),
            "max_duration_in_s": seconds(self.sessions.max_duration),
            "allowed_lateness_in_s": seconds(self.ingest.allowed_lateness),
            "id_retention_in_s": seconds(self.ingest.id_retention),
            "idle_after_in_s": seconds(self.ingest.idle_after),
            "attachment_window_in_s": seconds(self.surveys.attachment_window),
            "cycle_outcomes": list(CYCLE_OUTCOMES),
            "churn_outcomes": list(self.churn.outcomes),
            "churn_inactivity_in_s": seconds(self.churn.inactivity),
            "churn_not_activity": list(self.not_activity),
            "collapse_repeats": self.path_cleaning.collapse_repeats,
            "ignore_touchpoints": list(self.path_cleaning.ignore_touchpoints),
            "max_path_length": self.path_cleaning.max_path_length,
            "path_summary_steps": self.path_cleaning.summary_steps,
            # Parallel lists (the settings views hold lists of scalars): rule i is element i.
            "path_alias_patterns": [rule.pattern for rule in self.paths.aliases],
            "path_aliases": [rule.alias for rule in self.paths.aliases],
            "path_anchor_names": [anchor.name for anchor in self.paths.anchors],
            "path_anchor_kinds": [anchor.kind for anchor in self.paths.anchors],
            "path_anchor_points": [anchor.point for anchor in self.paths.anchors],
            "path_anchor_directions": [anchor.direction for anchor in self.paths.anchors],
            "path_anchor_steps": [anchor.steps for anchor in self.paths.anchors],
            "path_anchor_tops": [anchor.top for anchor in self.paths.anchors],
            "reporting_timezone": self.reporting.timezone,
            "funnels": json.dumps(self.funnels_record(), sort_keys=True),
        }

    def funnels_record(self) -> list[dict[str, Any]]:
        """The funnels as plain values, in name order: what the funnel model and views read
        (`parcours_settings.funnels`, JSON)."""
        return [
            {
                "name": name,
                "mode": funnel.mode,
                "window_in_s": int(funnel.window.total_seconds()),
                "steps": [{"kind": s.kind, "name": s.name} for s in funnel.steps],
                # a furthest funnel reads the lifecycle's order: a later stage reaches a step too
                "stages": list(self.stages) if funnel.mode == "furthest" else [],
                "exclusions": [
                    {
                        "kind": e.kind,
                        "name": e.name,
                        "after_step": e.after_step,
                        "before_step": e.before_step or len(funnel.steps),
                    }
                    for e in funnel.exclusions
                ],
            }
            for name, funnel in sorted(self.funnels.items())
        ]

    @property
    def fingerprint(self) -> str:
        """A short hash of the effective rules, written into manifests beside `version`."""
        # Sorted keys: two files that differ only in the order of a mapping are the same rules.
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def default_config_text() -> str:
    return resources.files("parcours").joinpath("journey.yaml").read_text(encoding="utf-8")


def load_config(path: str | Path | None = None) -> JourneyConfig:
    """Load and validate a journey configuration; `None` loads the documented default."""
    if path is None:
        source, text = "default journey.yaml", default_config_text()
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the configuration ({exc.strerror})") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start}): save the file as UTF-8") from None
    return parse_config(text, source)


def parse_config(text: str, source: str = "<config>") -> JourneyConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    except ValueError as exc:  # PyYAML builds dates itself: 2020-13-01 fails while loading
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    try:
        return JourneyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling against the default journey.yaml)"
        problems.append(f"{key}: {message}" if key else message)
    return "; ".join(problems)
