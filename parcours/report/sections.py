"""The report's sections: each one a function of the views, returning what to draw.

A section reads the views it needs through one read-only query each and returns charts (their
data embedded in the page as JSON, so what is drawn is what was read) and tables (exportable as
CSV). A view that does not exist yet, or holds no row for the filters, gives a plain message
naming it instead: the report starts on today's views and grows as analytics views are added.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from parcours.report.labels import DEFINITIONS, label, text
from parcours.report.views import Applied, Filters, Views

MAX_STEPS = 6  # step ranks the journey map draws: past that a Sankey is unreadable
SMALL_N = 30  # figures resting on fewer journeys, customers or answers are greyed
TABLE_ROWS = 500  # rows a table of a not-yet-charted view shows (the CSV has the same rows)
STALE_AFTER = timedelta(days=2)  # default of `report.stale_after`, once the configuration has it


@dataclass
class Chart:
    id: str
    kind: str  # sankey | bar | line
    title: str
    subtitle: list[str]
    data: dict[str, Any]
    note: str = ""


@dataclass
class Table:
    id: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    subtitle: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class Message:
    text: str
    view: str
    kind: str  # missing | empty | note


@dataclass
class Section:
    id: str
    title: str
    items: list[Chart | Table | Message]


@dataclass
class Context:
    views: Views
    filters: Filters
    lang: str
    now: datetime

    def t(self, key: str, **values: object) -> str:
        return text(self.lang, key, **values)

    def label(self, code: str | None) -> str:
        return label(self.lang, code)

    def subtitle(self, view: str, n: int | None, applied: Applied | None) -> list[str]:
        """n, segment, period and as_of: what every chart and table states."""
        parts = [] if n is None else [self.t("n", n=f"{n:,}")]
        if applied is not None and applied.segment:
            parts.append(self.t("segment", segment=self.filters.segment))
        else:
            parts.append(self.t("all_segments"))
        if applied is not None and applied.period:
            since = self.filters.since.isoformat() if self.filters.since else self.t("open")
            until = self.filters.until.isoformat() if self.filters.until else self.t("open")
            parts.append(self.t("period", since=since, until=until))
        else:
            parts.append(self.t("all_time"))
        at, source = self.views.as_of(view)
        parts.append(self.t("as_of", at=_stamp(at), source=source))
        return parts

    def missing(self, view: str) -> Message:
        return Message(self.t("missing", view=view), view, "missing")

    def empty(self, view: str, applied: Applied | None = None) -> Message:
        filtered = applied is not None and (applied.segment or applied.period)
        return Message(self.t("empty", view=view, scope=self.t("for_filters") if filtered else ""), view, "empty")


def _stamp(at: datetime | None) -> str:
    if at is None:
        return "—"
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def cell(value: Any) -> Any:
    """A value as the page's JSON holds it."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, (list, tuple, dict)):
        return str(value)
    return value


# -- journey map --------------------------------------------------------------------------------


def journey_map(ctx: Context) -> Section:
    """A step-indexed Sankey: `path_edges` when it has edges, else the stage paths of `journeys`
    (a configuration with no anchor, or a warehouse from before `path_edges`)."""
    items: list[Chart | Table | Message] = []
    edges = ctx.views.has("path_edges", "step", "source", "target", "n_journeys")
    if edges and (ctx.views.count("path_edges") > 0 or not ctx.views.exists("journeys")):
        items.append(_map_from_path_edges(ctx))
    elif ctx.views.exists("journeys"):
        items.append(_map_from_journeys(ctx))
    else:
        items.append(ctx.missing("path_edges"))
    return Section("map", ctx.t("sec_map"), items)


def _sankey(ctx: Context, edges: list[tuple[int, str, str, int]]) -> dict[str, Any]:
    nodes: dict[str, dict[str, Any]] = {}
    links = []
    for step, source, target, n in edges:
        for rank, stage in ((step, source), (step + 1, target)):
            name = f"{rank}:{stage}"
            nodes.setdefault(name, {"name": name, "step": rank, "stage": stage, "label": ctx.label(stage)})
        links.append({"source": f"{step}:{source}", "target": f"{step + 1}:{target}", "value": int(n)})
    ordered = sorted(nodes.values(), key=lambda node: (node["step"], node["stage"]))
    return {"kind": "sankey", "nodes": ordered, "links": links, "small_n": SMALL_N}


def _map_from_path_edges(ctx: Context) -> Chart | Message:
    views = ctx.views
    if views.count("path_edges") == 0:
        return ctx.empty("path_edges")
    clauses, params = [f"step < {MAX_STEPS}"], []
    if views.has("path_edges", "anchor"):
        anchor = views.scalar("select min(anchor) from path_edges")
        clauses.append("anchor = ?")
        params.append(anchor)
    if views.has("path_edges", "direction"):
        clauses.append("direction = 'from'")
    edges = views.rows(
        f"select step, source, target, sum(n_journeys)::BIGINT from path_edges where {' and '.join(clauses)} "
        "group by all order by step, source, target",
        params,
    )
    if not edges:
        return ctx.empty("path_edges")
    data = _sankey(ctx, edges)
    n = sum(link["value"] for link in data["links"] if link["source"].startswith("1:"))
    return Chart(
        "journey-map",
        "sankey",
        ctx.t("map_stages", source="path_edges"),
        ctx.subtitle("path_edges", n, None),
        data,
        ctx.t("map_note", steps=MAX_STEPS),
    )


# Stage-level paths: consecutive steps at one stage merged, step ranks from 1. Each edge is the
# number of journeys whose rank-i stage is `source` and rank-(i + 1) stage is `target`.
_JOURNEY_EDGES = """
with paths as (
    select row_number() over () as journey, stage_path from journeys {where}
),
steps as (
    select journey, unnest(stage_path) as stage, generate_subscripts(stage_path, 1) as i from paths
),
marked as (
    select journey, i, stage, lag(stage) over (partition by journey order by i) as previous from steps
),
ranked as (
    select journey, stage, row_number() over (partition by journey order by i) as step
    from marked where previous is null or previous is distinct from stage
),
final as (
    select a.step, a.stage as source, b.stage as target, count(*) as n_journeys
    from ranked as a join ranked as b on a.journey = b.journey and b.step = a.step + 1
    where a.step < {max_steps}
    group by all
)
select step, source, target, n_journeys from final order by step, source, target
"""


def _map_from_journeys(ctx: Context) -> Chart | Message:
    applied = ctx.views.where("journeys", ctx.filters, date_column="started_at")
    n = int(ctx.views.scalar(f"select count(*) from journeys {applied.sql}", applied.params))
    if n == 0:
        return ctx.empty("journeys", applied)
    sql = _JOURNEY_EDGES.format(where=applied.sql, max_steps=MAX_STEPS)
    edges = ctx.views.rows(sql, applied.params)
    if not edges:
        return ctx.empty("journeys", applied)
    return Chart(
        "journey-map",
        "sankey",
        ctx.t("map_stages", source="journeys"),
        ctx.subtitle("journeys", n, applied),
        _sankey(ctx, edges),
        ctx.t("map_note", steps=MAX_STEPS),
    )


# -- lifecycle funnel ---------------------------------------------------------------------------


def lifecycle_funnel(ctx: Context) -> Section:
    """`funnel_steps` with in-progress and not-converted apart once it exists; until then the
    journeys that reached each stage, labelled as such."""
    if ctx.views.has("funnel_steps", "funnel", "step_index", "step", "n_reached", "n_in_progress", "n_not_converted"):
        items = _funnel_from_steps(ctx)
    elif ctx.views.exists("journey_stages_weekly"):
        items = _stages_reached(ctx)
    else:
        items = [ctx.missing("funnel_steps")]
    return Section("funnel", ctx.t("sec_funnel"), items)


def _funnel_from_steps(ctx: Context) -> list[Chart | Table | Message]:
    views = ctx.views
    funnels = [row[0] for row in views.rows("select distinct funnel from funnel_steps order by funnel")]
    if not funnels:
        return [ctx.empty("funnel_steps")]
    funnel = "lifecycle" if "lifecycle" in funnels else funnels[0]
    # The segment filter reads the segment breakdown's rows; the period, the weeks of entry.
    applied = views.where("funnel_steps", ctx.filters, date_column="period_start")
    clauses, params = ["funnel = ?"], [funnel]
    if views.has("funnel_steps", "breakdown"):
        clauses.append("breakdown = 'segment'" if applied.segment else "breakdown = 'overall'")
    rows = views.rows(
        "select step_index, step, sum(n_reached)::BIGINT, sum(n_in_progress)::BIGINT, sum(n_not_converted)::BIGINT "
        f"from (select * from funnel_steps {applied.sql}) as weekly where {' and '.join(clauses)} "
        "group by all order by step_index",
        [*applied.params, *params],
    )
    if not rows:
        return [ctx.empty("funnel_steps", applied)]
    steps = [row[1] for row in rows]
    went_on = [int(r[2] - r[3] - r[4]) for r in rows]
    data = {
        "kind": "bar",
        "horizontal": True,
        "stack": True,
        "categories": steps,
        "labels": [ctx.label(s) for s in steps],
        "n": [int(r[2]) for r in rows],
        "series": [
            {"key": "went_on", "name": ctx.t("went_on"), "values": went_on},
            {"key": "n_in_progress", "name": ctx.t("in_progress"), "values": [int(r[3]) for r in rows]},
            {"key": "n_not_converted", "name": ctx.t("not_converted"), "values": [int(r[4]) for r in rows]},
        ],
        "small_n": SMALL_N,
    }
    chart = Chart(
        "funnel",
        "bar",
        ctx.t("funnel_steps", funnel=funnel),
        ctx.subtitle("funnel_steps", int(rows[0][2]), applied),
        data,
    )
    table = Table(
        "funnel-table",
        ctx.t("funnel_steps", funnel=funnel),
        ["step_index", "step", "n_reached", "n_in_progress", "n_not_converted"],
        [[cell(v) for v in r] for r in rows],
        chart.subtitle,
    )
    return [chart, table]


def _stages_reached(ctx: Context) -> list[Chart | Table | Message]:
    applied = ctx.views.where("journey_stages_weekly", ctx.filters, date_column="started_week")
    rank = "coalesce(stages.stage_rank, 1000)" if ctx.views.exists("parcours_stages") else "1000"
    join = "left join parcours_stages as stages using (stage)" if ctx.views.exists("parcours_stages") else ""
    rows = ctx.views.rows(
        f"select weekly.stage, sum(n_journeys)::BIGINT, sum(n_converted)::BIGINT, sum(n_churned)::BIGINT "
        f"from (select * from journey_stages_weekly {applied.sql}) as weekly {join} "
        f"group by weekly.stage, {rank} order by {rank}, weekly.stage",
        applied.params,
    )
    if not rows:
        return [ctx.empty("journey_stages_weekly", applied)]
    stages = [r[0] for r in rows]
    reached = [int(r[1]) for r in rows]
    data = {
        "kind": "bar",
        "horizontal": True,
        "stack": False,
        "categories": stages,
        "labels": [ctx.label(s) for s in stages],
        "n": reached,
        "series": [{"key": "n_journeys", "name": ctx.t("journeys"), "values": reached}],
        "small_n": SMALL_N,
    }
    chart = Chart(
        "stages-reached",
        "bar",
        ctx.t("funnel_reached"),
        ctx.subtitle("journey_stages_weekly", None, applied),
        data,
        ctx.t("funnel_reached_note"),
    )
    table = Table(
        "stages-reached-table",
        ctx.t("funnel_reached"),
        ["stage", "n_journeys", "n_converted", "n_churned"],
        [[cell(v) for v in r] for r in rows],
        chart.subtitle,
    )
    return [chart, table]


# -- sections whose views come later: a table of the view's rows until they are charted ----------


def view_table(
    ctx: Context, view: str, *, date_column: str | None = "period_start", title: str | None = None
) -> Table | Message:
    """The rows of `view` (filtered where it carries the dimensions), or the message naming it."""
    if not ctx.views.exists(view):
        return ctx.missing(view)
    applied = ctx.views.where(view, ctx.filters, date_column=date_column)
    n = int(ctx.views.scalar(f'select count(*) from "{view}" {applied.sql}', applied.params))
    if n == 0:
        return ctx.empty(view, applied)
    cursor = ctx.views.con.execute(f'select * from "{view}" {applied.sql} limit {TABLE_ROWS}', applied.params)
    columns = [d[0] for d in cursor.description]
    rows = [[cell(v) for v in row] for row in cursor.fetchall()]
    note = "" if title else ctx.t("table_note")  # a titled table is the panel's own, not a stand-in
    note += f" ({len(rows):,} / {n:,})" if n > len(rows) else ""
    title = f"{title} ({view})" if title else ctx.t("table_of", view=view)
    return Table(f"table-{view}", title, columns, rows, ctx.subtitle(view, n, applied), note)


def _tables(section_id: str, title_key: str, views: list[str]) -> Callable[[Context], Section]:
    def build(ctx: Context) -> Section:
        return Section(section_id, ctx.t(title_key), [view_table(ctx, v) for v in views])

    build.__name__ = f"{section_id}_section"
    return build


dropoffs = _tables("dropoff", "sec_dropoff", ["dropoff_rates", "dropoff_signals"])
moments = _tables("moments", "sec_moments", ["moments_of_truth", "bad_experience_effect"])
signals = _tables("signals", "sec_signals", ["verbatim_signals"])
money = _tables("money", "sec_money", ["revenue_by_nps", "revenue_at_risk"])
alerts = _tables("alerts", "sec_alerts", ["alerts"])


def satisfaction(ctx: Context) -> Section:
    """Scorecards once they exist. Until then only how many answers each survey received per
    stage: the scores have one home, the scorecards view, and the report does not compute a
    second version of them."""
    items: list[Chart | Table | Message] = []
    if ctx.views.exists("scorecards"):
        items.append(view_table(ctx, "scorecards"))
    else:
        items.append(ctx.missing("scorecards"))
        items.extend(_answers_by_stage(ctx))
    items.extend(view_table(ctx, v) for v in ("importance_satisfaction", "kano"))
    return Section("satisfaction", ctx.t("sec_satisfaction"), items)


def _answers_by_stage(ctx: Context) -> list[Chart | Table | Message]:
    if not ctx.views.exists("survey_answers"):
        return [ctx.missing("survey_answers")]
    applied = ctx.views.where("survey_answers", ctx.filters, date_column="answered_at")
    rows = ctx.views.rows(
        "select survey, coalesce(stage, 'unattached') as stage, count(*)::BIGINT, count(distinct customer_id)::BIGINT "
        f"from {ctx.views.source('survey_answers')} {applied.sql} group by all order by survey, stage",
        applied.params,
    )
    if not rows:
        return [ctx.empty("survey_answers", applied)]
    subtitle = ctx.subtitle("survey_answers", sum(int(r[2]) for r in rows), applied)
    return [
        Table(
            "answers-by-stage",
            ctx.t("answers_by_stage"),
            ["survey", "stage", "n_answers", "n_respondents"],
            [[cell(v) for v in r] for r in rows],
            subtitle,
            ctx.t("answers_note"),
        )
    ]


# -- data panel ---------------------------------------------------------------------------------


def latest_ingestion(views: Views) -> datetime | None:
    """When the newest row reached the warehouse: the data's freshness until a finality point exists."""
    stamps = [views.ingestion(view)[0] for view in ("touchpoints", "survey_answers") if views.has(view, "ingested_at")]
    stamps = [s for s in stamps if s is not None]
    return max(stamps) if stamps else None


def data_panel(ctx: Context) -> Section:
    items: list[Chart | Table | Message] = [_freshness(ctx)]
    if ctx.views.exists("parcours_meta"):
        items.append(view_table(ctx, "parcours_meta", date_column=None, title=ctx.t("build")))
    items.append(_events_daily(ctx))
    items.extend(_dead_letters(ctx))
    items.append(view_table(ctx, "parcours_watermark", date_column=None, title=ctx.t("finality")))
    items.append(view_table(ctx, "quality_results", date_column=None, title=ctx.t("quarantine")))
    items.append(view_table(ctx, "parcours_datasets", date_column=None, title=ctx.t("datasets")))
    return Section("data", ctx.t("sec_data"), items)


def _freshness(ctx: Context) -> Table | Message:
    rows = []
    for view in ("touchpoints", "survey_answers", "dead_letters"):
        if ctx.views.has(view, "ingested_at"):
            latest, n = ctx.views.ingestion(view)
            rows.append([view, cell(latest), n])
    if not rows:
        return ctx.missing("touchpoints")
    return Table(
        "freshness",
        ctx.t("freshness"),
        ["view", "latest_ingested_at", "rows"],
        rows,
        ctx.subtitle("touchpoints", None, None),
    )


def _events_daily(ctx: Context) -> Chart | Message:
    if not ctx.views.exists("touchpoints_daily"):
        return ctx.missing("touchpoints_daily")
    applied = ctx.views.where("touchpoints_daily", ctx.filters, date_column="event_date")
    # A day not over at the finality point may still grow (the views' `is_complete`): said so.
    complete = "bool_and(is_complete)" if ctx.views.has("touchpoints_daily", "is_complete") else "true"
    rows = ctx.views.rows(
        f"select event_date, sum(n_events)::BIGINT, {complete} from touchpoints_daily {applied.sql} "
        "group by 1 order by 1",
        applied.params,
    )
    if not rows:
        return ctx.empty("touchpoints_daily", applied)
    values = [int(r[1]) for r in rows]
    subtitle = ctx.subtitle("touchpoints_daily", sum(values), applied)
    open_days = [r[0] for r in rows if not r[2]]
    if open_days:
        subtitle.append(ctx.t("open_from", day=min(open_days).isoformat()))
    data = {
        "kind": "line",
        "x": [r[0].isoformat() for r in rows],
        "series": [{"key": "n_events", "name": ctx.t("events"), "values": values}],
    }
    return Chart("events-daily", "line", ctx.t("events_daily"), subtitle, data)


def _dead_letters(ctx: Context) -> list[Chart | Table | Message]:
    if not ctx.views.exists("dead_letters"):
        return [ctx.missing("dead_letters")]
    # Rejected records are counted whatever the event period asked for: a rejection is about
    # ingestion, and a record that could not be read has no trustworthy event time.
    applied = ctx.views.where("dead_letters", ctx.filters, date_column=None)
    rows = ctx.views.rows(
        f"select reason, count(*)::BIGINT from dead_letters {applied.sql} group by 1 order by 2 desc, 1",
        applied.params,
    )
    if not rows:
        return [ctx.empty("dead_letters", applied)]
    reasons = [r[0] for r in rows]
    counts = [int(r[1]) for r in rows]
    subtitle = ctx.subtitle("dead_letters", sum(counts), applied)
    data = {
        "kind": "bar",
        "horizontal": True,
        "stack": False,
        "categories": reasons,
        "labels": reasons,
        "n": counts,
        "series": [{"key": "n", "name": "n", "values": counts}],
        "small_n": 0,  # a count of rejected records is exact whatever its size
    }
    chart = Chart("dead-letters", "bar", ctx.t("dead_letters"), subtitle, data)
    table = Table("dead-letters-table", ctx.t("dead_letters"), ["reason", "n"], [list(r) for r in rows], subtitle)
    return [chart, table]


# -- definitions --------------------------------------------------------------------------------


def definitions(ctx: Context) -> Section:
    rows = [[term, fr, en] for term, fr, en in DEFINITIONS]
    table = Table("definitions", "", ["", "français", "English"], rows)
    return Section("definitions", ctx.t("sec_definitions"), [table])


SECTIONS: list[Callable[[Context], Section]] = [
    journey_map,
    lifecycle_funnel,
    dropoffs,
    moments,
    satisfaction,
    signals,
    money,
    alerts,
    data_panel,
    definitions,
]
