"""Render the sections into one HTML page and write it atomically.

Charts reach the page as JSON in `<script type="application/json" data-chart="ID">` elements and
are drawn from them by a small inline script: what a test reads from the page is exactly what
the chart was built from. The file is written under a temporary name in the same folder and
renamed, so a reader never sees half a report; the previous one is kept as `*.previous.html`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import jinja2

from parcours.report.labels import OKABE_ITO, SMALL_N_COLOUR, label, text
from parcours.report.sections import SECTIONS, SMALL_N, STALE_AFTER, Context, Message, Table, latest_ingestion
from parcours.report.views import Filters, Views


@dataclass(frozen=True, slots=True)
class ReportResult:
    path: Path
    bytes: int
    previous: Path | None


def _asset(name: str) -> str:
    return resources.files("parcours.report").joinpath("assets", name).read_text("utf-8")


def _script_json(value: object) -> str:
    """JSON safe inside a <script> element: no `</script>` or `<!--` can end or confuse it."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")


def _reference_time(views: Views) -> tuple[datetime | None, str]:
    """What the stale banner compares with: the finality point once `parcours_watermark` has
    one, else the latest ingestion."""
    if views.has("parcours_watermark", "finality_point"):
        point = views.scalar("select max(finality_point) from parcours_watermark")
        if point is not None:
            return point, "parcours_watermark.finality_point"
    return latest_ingestion(views), "max(ingested_at)"


def build_report(db_path: Path, filters: Filters | None = None, lang: str = "fr", now: datetime | None = None) -> str:
    """The report's HTML, from the views file at `db_path` (opened read-only)."""
    if lang not in ("fr", "en"):
        raise ValueError(f"lang must be 'fr' or 'en', not {lang!r}")
    filters = filters or Filters()
    now = now or datetime.now(UTC)
    with Views(db_path) as views:
        ctx = Context(views, filters, lang, now)
        sections = [build(ctx) for build in SECTIONS]
        reference, reference_source = _reference_time(views)
    stale = reference is not None and now - reference > STALE_AFTER
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("parcours.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["script_json"] = _script_json
    env.tests["message"] = lambda item: isinstance(item, Message)
    env.tests["table"] = lambda item: isinstance(item, Table)
    template = env.get_template("report.html.j2")
    config = {"palette": OKABE_ITO, "small_n_colour": SMALL_N_COLOUR, "small_n": SMALL_N, "lang": lang}
    return template.render(
        lang=lang,
        t=lambda key, **values: text(lang, key, **values),
        label=lambda code: label(lang, code),
        sections=sections,
        filters=filters,
        generated_at=now.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        stale=stale,
        reference=reference.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if reference else None,
        reference_source=reference_source,
        stale_days=STALE_AFTER.days,
        config=config,
        echarts_js=_asset("echarts.min.js"),
        report_js=_asset("report.js"),
        report_css=_asset("report.css"),
    )


def write_report(
    db_path: Path,
    out: Path,
    filters: Filters | None = None,
    lang: str = "fr",
    now: datetime | None = None,
) -> ReportResult:
    """Write the report to `out` atomically, keeping the one it replaces as `<stem>.previous.html`."""
    html = build_report(db_path, filters, lang, now).encode("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    previous = out.with_name(f"{out.stem}.previous{out.suffix or '.html'}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(html)
            handle.flush()
            os.fsync(handle.fileno())
        kept = None
        if out.exists():
            # A second name for the old report, then the new one over `out`: `out` is never absent.
            link = previous.with_name(f".{previous.name}.{os.getpid()}.tmp")
            link.unlink(missing_ok=True)
            os.link(out, link)
            os.replace(link, previous)
            kept = previous
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return ReportResult(out, len(html), kept)
