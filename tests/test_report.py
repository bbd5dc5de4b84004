"""The journey report, opened in a real headless Chromium (Debian's chromium + chromium-driver).

The warehouse is built once for the module by the real command line (`parcours generate`, then
`parcours run --from`). Each report is opened from disk with DevTools network logging on: any
request other than the file itself or a data: URL fails the test, as does any console error.
Every plotted value is read twice from the page — from the chart's embedded JSON and from the
live ECharts instance — and compared with an independent read-only query of the views.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import unquote

import duckdb
import pytest
from selenium import webdriver

from parcours.report import Filters, write_report
from parcours.report.labels import SMALL_N_COLOUR
from parcours.report.render import _script_json
from parcours.report.sections import MAX_STEPS, SMALL_N
from tests.pipeline_helpers import parcours

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def query(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    data, wh = root / "data", root / "warehouse"
    for args in (
        ("generate", "--out", str(data), "--customers", "300", "--days", "60", "--seed", "7", "--invalid-rate", "0.01"),
        ("run", "--from", str(data), "--warehouse", str(wh)),
    ):
        done = parcours(*args)
        assert done.returncode == 0, done.stderr
    return wh


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):  # a missing browser fails the test: it is never skipped
        assert binary.exists(), f"{binary} is missing: apt-get install chromium chromium-driver (infra/test.sh does)"

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never look for a browser or driver
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


_READ_PAGE = """
const embedded = {};
document.querySelectorAll('script[data-chart]').forEach(e => {
  embedded[e.dataset.chart] = JSON.parse(e.textContent);
});
const live = {};
document.querySelectorAll('[data-chart-id]').forEach(div => {
  const option = echarts.getInstanceByDom(div).getOption();
  const axis = (option.yAxis || []).concat(option.xAxis || []).find(a => a.type === 'category');
  live[div.dataset.chartId] = {
    categories: axis ? axis.data : null,
    series: option.series.map(s => ({
      type: s.type,
      name: s.name,
      values: s.type === 'sankey' ? null : s.data.map(d => (d !== null && typeof d === 'object') ? d.value : d),
      colours: s.type === 'sankey' ? null : s.data.map(d => (d && d.itemStyle) ? d.itemStyle.color : null),
      nodes: s.type === 'sankey' ? s.data.map(d => d.name) : null,
      links: s.type === 'sankey' ? s.links.map(l => ({source: l.source, target: l.target, value: l.value})) : null,
    })),
  };
});
const messages = Array.from(document.querySelectorAll('p.message')).map(p => ({
  view: p.dataset.view, kind: p.classList.contains('missing') ? 'missing' : 'empty', text: p.textContent,
  visible: p.offsetParent !== null}));
const subtitles = {};
document.querySelectorAll('figure').forEach(f => {
  const id = f.id || (f.querySelector('[data-chart-id]') || {dataset: {}}).dataset.chartId;
  const s = f.querySelector('.subtitle');
  if (id && s) { subtitles[id] = s.textContent; }
});
const banner = document.getElementById('stale-banner');
return {embedded, live, messages, subtitles, banner: banner ? banner.textContent : null};
"""


def open_report(driver, path: Path) -> dict:
    """Load the report and return what it plots; fails on any request or console error."""
    driver.get_log("performance")  # drop what an earlier page logged
    driver.get_log("browser")
    url = path.resolve().as_uri()
    driver.get(url)
    page = driver.execute_script(_READ_PAGE)
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            requests.append(message["params"].get("request", {}).get("url") or message["params"].get("url"))
    assert requests, "the DevTools network log recorded nothing: the check would be blind"
    foreign = [u for u in requests if u != url and not u.startswith("data:")]
    assert foreign == [], f"the report made network requests: {foreign}"
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    return page


def stage_edges(paths: list[list[str]]) -> Counter:
    """The journey map's edges written out plainly: merge consecutive repeats, then count each
    (step, stage, next stage) over the first MAX_STEPS ranks."""
    edges: Counter = Counter()
    for path in paths:
        merged = [stage for i, stage in enumerate(path) if i == 0 or path[i - 1] != stage]
        for step in range(1, min(len(merged), MAX_STEPS)):
            edges[(step, merged[step - 1], merged[step])] += 1
    return edges


def links_as_edges(links: list[dict]) -> Counter:
    edges: Counter = Counter()
    for link in links:
        step, source = link["source"].split(":", 1)
        target_step, target = link["target"].split(":", 1)
        assert int(target_step) == int(step) + 1
        edges[(int(step), source, target)] += link["value"]
    return edges


def assert_live_matches_embedded(page: dict) -> None:
    """The drawn chart holds exactly the embedded data, every point."""
    for chart_id, data in page["embedded"].items():
        live = page["live"][chart_id]
        if data["kind"] == "sankey":
            assert live["series"][0]["links"] == data["links"]
            assert live["series"][0]["nodes"] == [n["name"] for n in data["nodes"]]
        elif data["kind"] == "bar":
            assert live["categories"] == data["labels"]
            assert [s["values"] for s in live["series"]] == [s["values"] for s in data["series"]]
        else:
            assert live["categories"] == data["x"]
            assert [s["values"] for s in live["series"]] == [s["values"] for s in data["series"]]


def test_report_plots_the_views_rows_offline(warehouse, browser, tmp_path):
    db = warehouse / "parcours.duckdb"
    out = tmp_path / "report.html"
    done = parcours("report", "--warehouse", str(warehouse), "--out", str(out), "--lang", "en")
    assert done.returncode == 0, done.stderr
    page = open_report(browser, out)
    assert_live_matches_embedded(page)
    charts = page["embedded"]

    # Journey map: the edges of the first `from` anchor of `path_edges` (the default
    # configuration's from_discovery), its first steps.
    edges = query(
        db,
        "select step, source, target, n_journeys from path_edges "
        "where anchor = 'from_discovery' and step < ? order by all",
        [MAX_STEPS],
    )
    assert edges and links_as_edges(charts["journey-map"]["links"]) == Counter({(s, a, b): n for s, a, b, n in edges})
    (at_anchor,) = query(db, "select n_journeys_at_step from path_edges where anchor = 'from_discovery' and step = 1")[
        0
    ]
    assert f"n = {at_anchor:,}" in page["subtitles"]["journey-map"]
    # With no edges (no anchor configured: here, emptied) the map falls back on the stage paths
    # of `journeys`, counted in Python.
    old = tmp_path / "before_paths.duckdb"
    shutil.copy(db, old)
    with duckdb.connect(str(old)) as con:
        con.execute("create or replace view path_edges as select * from raw_path_edges where false")
    write_report(old, tmp_path / "before_paths.html", lang="en")
    fallback = open_report(browser, tmp_path / "before_paths.html")
    paths = [row[0] or [] for row in query(db, "select stage_path from journeys")]
    assert links_as_edges(fallback["embedded"]["journey-map"]["links"]) == stage_edges(paths)
    assert f"n = {len(paths):,}" in fallback["subtitles"]["journey-map"]
    loops = [e for e in stage_edges(paths) if e[2] == "discovery" and e[0] > 1]
    assert loops, "generated journeys loop back; the map must show it"

    # The lifecycle funnel: per step, the customers whose best attempt reached it, counted here
    # from the customers' own rows, split into went on / in progress / not converted.
    best = [
        r[0] for r in query(db, "select best_step from customer_funnels where funnel = 'lifecycle' and not is_excluded")
    ]
    bars = charts["funnel"]
    assert bars["categories"] == ["discovery", "consideration", "purchase", "activation", "usage"]
    stacked = [sum(values) for values in zip(*(s["values"] for s in bars["series"]), strict=True)]
    assert stacked == bars["n"] == [sum(1 for b in best if b >= k) for k in range(1, 6)]
    assert bars["n"][0] > bars["n"][-1] > 0

    # Events per day, and dead letters by reason.
    daily = query(db, "select event_date, count(*) from touchpoints group by 1 order by 1")
    line = charts["events-daily"]
    assert list(zip(line["x"], line["series"][0]["values"], strict=True)) == [(d.isoformat(), n) for d, n in daily]
    # The days after the finality point's are not over: the chart says from which one.
    ((point,),) = query(db, "select cast(finality_point as DATE) from parcours_finality")
    first_open = min(d for d, _ in daily if d >= point)
    assert f"days from {first_open.isoformat()} on not over yet" in page["subtitles"]["events-daily"]
    letters = dict(query(db, "select reason, count(*) from dead_letters group by 1"))
    bars = charts["dead-letters"]
    assert letters and dict(zip(bars["categories"], bars["series"][0]["values"], strict=True)) == letters

    # Views that do not exist yet say so, each by name.
    missing = {m["view"] for m in page["messages"] if m["kind"] == "missing" and m["visible"]}
    assert {"dropoff_rates", "moments_of_truth", "scorecards", "verbatim_signals", "alerts"} <= missing
    assert "path_edges" not in missing  # the map is drawn from journeys instead
    assert all("all segments" in s and "all time" in s for s in page["subtitles"].values() if "n =" in s)
    assert page["banner"] is None  # just ingested

    # Each table exports as CSV from the page: the dead letters' table, as the link it builds.
    csv_url = browser.execute_script(
        "let href = null; const click = HTMLAnchorElement.prototype.click;"
        "HTMLAnchorElement.prototype.click = function () { href = this.href; };"
        "document.querySelector('button.csv[data-table=\"dead-letters-table\"]').click();"
        "HTMLAnchorElement.prototype.click = click; return href;"
    )
    prefix = "data:text/csv;charset=utf-8,"
    assert csv_url.startswith(prefix)
    lines = unquote(csv_url[len(prefix) :]).split("\r\n")
    assert lines[0] == "reason,n" and lines[-1] == ""
    assert {line.split(",")[0]: int(line.split(",")[1]) for line in lines[1:-1]} == letters

    shot = tmp_path / "report.png"
    browser.set_window_size(1280, 1000)
    browser.save_screenshot(str(shot))
    print(f"\nscreenshot: {shot}  report: {out} ({out.stat().st_size:,} bytes)")
    docs = os.environ.get("PARCOURS_REPORT_SCREENSHOTS")  # a folder: small PNGs for the README
    if docs:
        for figure in ("journey-map", "stages-reached", "events-daily"):
            element = browser.find_element("id", f"chart-{figure}")
            browser.execute_script("arguments[0].scrollIntoView()", element)
            element.screenshot(str(Path(docs) / f"report-{figure}.png"))


def test_filters_apply_where_the_view_has_the_dimension(warehouse, browser, tmp_path):
    # The journey map from `journeys` (no anchor configured: path_edges, which has no segment, is
    # emptied here).
    db = tmp_path / "parcours.duckdb"
    shutil.copy(warehouse / "parcours.duckdb", db)
    with duckdb.connect(str(db)) as con:
        con.execute("create or replace view path_edges as select * from raw_path_edges where false")
    since, until = date(2026, 1, 19), date(2026, 2, 22)
    out = tmp_path / "premium.html"
    write_report(db, out, Filters("premium", since, until), lang="en")
    page = open_report(browser, out)
    assert_live_matches_embedded(page)
    charts = page["embedded"]

    paths = [
        row[0] or []
        for row in query(
            db,
            "select stage_path from journeys where segment = 'premium' "
            "and cast(timezone('UTC', started_at) as DATE) between ? and ?",
            [since, until],
        )
    ]
    assert 0 < len(paths) < len(query(db, "select * from journeys"))
    assert links_as_edges(charts["journey-map"]["links"]) == stage_edges(paths)
    assert "segment premium" in page["subtitles"]["journey-map"]

    # The funnel: premium customers whose best attempt started in the weeks from `since` to
    # `until` (by the week's Monday), counted here from the customers' own rows.
    best = [
        r[0]
        for r in query(
            db,
            "select best_step from customer_funnels where funnel = 'lifecycle' and not is_excluded "
            "and segment = 'premium' and cast(date_trunc('week', timezone('UTC', entered_at)) as DATE) between ? and ?",
            [since, until],
        )
    ]
    bars = charts["funnel"]
    assert bars["n"] == [sum(1 for b in best if b >= k) for k in range(1, 6)] and bars["n"][0] > 0
    assert "segment premium" in page["subtitles"]["funnel"]
    # Small n is greyed: every bar under SMALL_N customers, and only those.
    colours = page["live"]["funnel"]["series"][0]["colours"]
    assert any(n < SMALL_N for n in bars["n"]), "the premium segment has small steps"
    assert [c == SMALL_N_COLOUR for c in colours] == [n < SMALL_N for n in bars["n"]]

    # Dead letters carry no segment and are counted whatever the event period: said so.
    assert "all segments" in page["subtitles"]["dead-letters"]
    assert "all time" in page["subtitles"]["dead-letters"]

    out = tmp_path / "nobody.html"
    write_report(db, out, Filters("no_such_segment"), lang="en")
    page = open_report(browser, out)
    empty = {m["view"] for m in page["messages"] if m["kind"] == "empty" and m["visible"]}
    assert {"journeys", "funnel_steps"} <= empty
    assert "journey-map" not in page["embedded"]


def test_analytics_views_once_they_exist_are_drawn_from(warehouse, browser, tmp_path):
    """path_edges, funnel_steps, parcours_datasets, parcours_watermark, quality_results and
    alerts, declared here with the columns their issues name, replace the fallbacks."""
    db = tmp_path / "parcours.duckdb"
    shutil.copy(warehouse / "parcours.duckdb", db)
    with duckdb.connect(str(db)) as con:
        con.execute(
            "create or replace view path_edges as select * from (values "
            "('discovery', 'from', 1, 'discovery', 'consideration', 120), "
            "('discovery', 'from', 1, 'discovery', '(ended)', 30), "
            "('discovery', 'from', 2, 'consideration', 'purchase', 70), "
            "('discovery', 'from', 2, 'consideration', 'discovery', 50), "
            "('discovery', 'from', 3, 'discovery', 'consideration', 20), "
            "('purchase', 'from', 1, 'purchase', 'activation', 999)"
            ") as t(anchor, direction, step, source, target, n_journeys)"
        )
        con.execute(  # in place of the warehouse's own, two weeks of known counts
            "create or replace view funnel_steps as select * from (values "
            "('lifecycle', 1, 'discovery', 'overall', 'all', date '2026-02-02', 150, 10, 30), "
            "('lifecycle', 1, 'discovery', 'overall', 'all', date '2026-02-09', 50, 0, 10), "
            "('lifecycle', 2, 'consideration', 'overall', 'all', date '2026-02-02', 150, 20, 60), "
            "('lifecycle', 3, 'purchase', 'overall', 'all', date '2026-02-02', 70, 5, 25), "
            "('lifecycle', 1, 'discovery', 'segment', 'b2c', date '2026-02-02', 999, 0, 0)"
            ") as t(funnel, step_index, step, breakdown, segment, period_start, n_reached, n_in_progress, "
            "n_not_converted)"
        )
        con.execute(
            "create or replace view parcours_datasets as "
            "select 'path_edges' as name, 'anchor, step' as grain, 6 as rows, "
            "timestamptz '2026-03-01 10:00:00+00' as refreshed_at, timestamptz '2026-02-27 00:00:00+00' as as_of, "
            "'f1' as fingerprint, 'hourly' as cadence"
        )
        con.execute(
            "create or replace view parcours_watermark as select timestamptz '2026-02-27 00:00:00+00' as finality_point"
        )
        con.execute(
            "create view quality_results as select 41 as batch_seq, 'expect_unique_event_id' as expectation, "
            "false as success, 'quarantined' as action"
        )
        con.execute(
            "create view alerts as select 'a1b2' as alert_id, 'renewal' as stage, 'firing' as state, "
            "date '2026-02-20' as period_start"
        )
    out = tmp_path / "report.html"
    write_report(db, out, lang="fr", now=datetime(2026, 3, 2, tzinfo=UTC))
    page = open_report(browser, out)
    assert_live_matches_embedded(page)
    charts = page["embedded"]

    edges = query(
        db,
        "select step, source, target, n_journeys from path_edges where anchor = 'discovery' and direction = 'from'",
    )
    assert links_as_edges(charts["journey-map"]["links"]) == Counter({(s, a, b): n for s, a, b, n in edges})
    assert "2026-02-27 00:00 UTC (parcours_datasets)" in page["subtitles"]["journey-map"]

    funnel = charts["funnel"]
    series = {s["key"]: s["values"] for s in funnel["series"]}
    assert funnel["categories"] == ["discovery", "consideration", "purchase"]
    assert series == {"went_on": [150, 70, 40], "n_in_progress": [10, 20, 5], "n_not_converted": [40, 60, 25]}
    assert page["banner"] is not None and "2026-02-27" in page["banner"]  # finality point 3 days old
    missing = {m["view"] for m in page["messages"] if m["kind"] == "missing"}
    assert not missing & {"path_edges", "funnel_steps", "parcours_watermark", "quality_results", "alerts"}
    assert "dropoff_rates" in missing


def test_write_is_atomic_and_keeps_the_previous_report(warehouse, tmp_path):
    db = warehouse / "parcours.duckdb"
    out = tmp_path / "reports" / "report.html"
    first = write_report(db, out, lang="fr", now=datetime(2026, 3, 1, tzinfo=UTC))
    assert first.previous is None
    old = out.read_bytes()
    second = write_report(db, out, lang="en", now=datetime(2026, 3, 2, tzinfo=UTC))
    assert second.previous == out.with_name("report.previous.html")
    assert second.previous.read_bytes() == old
    assert b'lang="en"' in out.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html", "report.previous.html"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--lang", "de"), "--lang must be fr or en"),
        (("--since", "2026-13-01"), "--since must be a date"),
        (("--since", "2026-03-01", "--until", "2026-02-01"), "is after --until"),
    ],
)
def test_bad_options_are_refused_with_one_line(tmp_path, args, says):
    done = parcours("report", "--warehouse", str(tmp_path / "none"), *args)
    assert done.returncode == 2 and says in done.stderr


def test_a_missing_warehouse_is_named(tmp_path):
    done = parcours("report", "--warehouse", str(tmp_path / "none"))
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_embedded_json_cannot_close_its_script_element():
    text = _script_json({"reason": "</script><script>alert(1)</script><!--"})
    assert "<" not in text and ">" not in text
    assert json.loads(text) == {"reason": "</script><script>alert(1)</script><!--"}
