"""The survey attachment, materialised: each rule of `int_survey_answers_attached` on small inputs
with rows written by hand, the supersession of its landed rows, and the refresher keeping it
current through the real pipeline (file backfills), survey-only batches and late events included.

Model fixture (T = Monday 2026-03-02 09:00 UTC, attachment window 7 days):

    c1  e1  T          checkout      web          purchase    s1  segment pro, fibre
        e2  T+1h       delivery      store        activation  s2  segment pro, fibre
        e3  T+20d      support_call  call_center  support     s3  segment particulier, mobile
    c2  e9  T          home_page     app          consideration s9  no segment nor product line
    c3  e5, e6  T      (the same instant)         s5
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from parcours.config import load_config
from parcours.pipelines.run import Ingestion
from parcours.refresh.declarations import by_name
from parcours.warehouse import DATASETS, Warehouse
from tests.harness import declared_grain, grain_problems, run_model
from tests.pipeline_helpers import parcours, query, write_jsonl

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H, D, M = timedelta(hours=1), timedelta(days=1), timedelta(minutes=1)
COLUMNS = [
    "response_id",
    "event_id",
    "touchpoint",
    "stage",
    "session_id",
    "channel",
    "segment",
    "product_line",
    "attached_by",
]


def tp(event_id, customer, at, touchpoint, channel, stage, session, segment="pro", product_line="fibre") -> dict:
    return {
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": at,
        "event_date": at.date(),
        "touchpoint": touchpoint,
        "channel": channel,
        "stage": stage,
        "session_id": session,
        "journey_cycle": 0,
        "segment": segment,
        "product_line": product_line,
        "batch_seq": 1,
    }


EVENTS = [
    tp("e1", "c1", T, "checkout", "web", "purchase", "s1"),
    tp("e2", "c1", T + H, "delivery", "store", "activation", "s2"),
    tp("e3", "c1", T + 20 * D, "support_call", "call_center", "support", "s3", "particulier", "mobile"),
    tp("e9", "c2", T, "home_page", "app", "consideration", "s9", None, None),
    tp("e5", "c3", T, "home_page", "web", "consideration", "s5"),
    tp("e6", "c3", T, "product_page", "app", "consideration", "s5"),
]


def answer(response_id, customer, at, **extra) -> dict:
    return {
        "response_id": response_id,
        "customer_id": customer,
        "answered_at": at,
        "answered_date": at.date(),
        "survey": "csat",
        "question_id": "q",
        "score": 4,
        "batch_seq": 1,
        **extra,
    }


def attach(answers: list[dict], events: list[dict] = EVENTS) -> list[dict]:
    return run_model(
        "int_survey_answers_attached",
        {"raw_touchpoints": events, "raw_survey_answers": answers},
        columns=COLUMNS,
        order_by="response_id",
    )


def row(response_id, event_id, touchpoint, stage, session_id, channel, segment, product_line, attached_by) -> dict:
    return dict(
        zip(
            COLUMNS,
            (response_id, event_id, touchpoint, stage, session_id, channel, segment, product_line, attached_by),
            strict=True,
        )
    )


def test_the_named_event_wins_over_a_nearer_one() -> None:
    rows = attach([answer("a", "c1", T + 90 * M, event_id="e1")])
    # e2 is 30 min before the answer, e1 90 min: the named one is attached.
    assert rows == [row("a", "e1", "checkout", "purchase", "s1", "web", "pro", "fibre", "event_id")]


def test_without_event_id_the_nearest_preceding_touchpoint_is_attached() -> None:
    rows = attach([answer("a", "c1", T + 90 * M), answer("b", "c1", T + H)])  # b: at e2's instant
    assert rows == [
        row("a", "e2", "delivery", "activation", "s2", "store", "pro", "fibre", "nearest_preceding"),
        row("b", "e2", "delivery", "activation", "s2", "store", "pro", "fibre", "nearest_preceding"),
    ]


def test_the_answers_own_touchpoint_and_stage_win() -> None:
    rows = attach([answer("a", "c1", T + 2 * H, touchpoint="app_session", stage="usage")])
    assert rows == [row("a", "e2", "app_session", "usage", "s2", "store", "pro", "fibre", "nearest_preceding")]


def test_the_window_is_inclusive_and_an_answer_beyond_it_is_unattached_with_the_latest_attributes() -> None:
    rows = attach([answer("at", "c1", T + H + 7 * D), answer("beyond", "c1", T + H + 7 * D + M)])
    assert rows == [
        row("at", "e2", "delivery", "activation", "s2", "store", "pro", "fibre", "nearest_preceding"),
        # Nothing attached, but the customer's latest touchpoint before it (e2) says who it was.
        row("beyond", None, None, None, None, "store", "pro", "fibre", "unattached"),
    ]


def test_an_answer_before_any_touchpoint_reads_unknown() -> None:
    rows = attach([answer("a", "c1", T - 5 * M), answer("b", "c4", T)])  # c4 has no event at all
    assert rows == [
        row("a", None, None, None, None, "unknown", "unknown", "unknown", "unattached"),
        row("b", None, None, None, None, "unknown", "unknown", "unknown", "unattached"),
    ]


def test_a_segment_the_producer_did_not_send_reads_unknown() -> None:
    rows = attach([answer("a", "c2", T + H)])
    assert rows == [
        row("a", "e9", "home_page", "consideration", "s9", "app", "unknown", "unknown", "nearest_preceding")
    ]


def test_an_answer_naming_an_event_not_landed_yet_is_unattached_then_attached_when_it_lands() -> None:
    named = answer("a", "c1", T + 20 * D + 2 * H, event_id="e-late")
    # e3 is 2 h before it, but the answer names another event: no fallback by time. Its
    # attributes are e3's (its latest touchpoint before the answer).
    assert attach([named]) == [row("a", None, None, None, None, "call_center", "particulier", "mobile", "unattached")]
    landed = tp("e-late", "c1", T + 20 * D + H, "app_session", "app", "usage", "s4", "pro", "mobile")
    assert attach([named], [*EVENTS, landed]) == [
        row("a", "e-late", "app_session", "usage", "s4", "app", "pro", "mobile", "event_id")
    ]


def test_an_event_of_another_customer_is_not_attached_by_its_id() -> None:
    rows = attach([answer("a", "c2", T + H, event_id="e1")])  # e1 is c1's
    assert rows == [row("a", None, None, None, None, "app", "unknown", "unknown", "unattached")]


def test_a_late_touchpoint_becomes_the_nearest_preceding_one() -> None:
    answers = [answer("a", "c1", T + 90 * M)]
    assert attach(answers)[0]["event_id"] == "e2"
    late = tp("e-late", "c1", T + 80 * M, "app_session", "app", "usage", "s2", "particulier", "mobile")
    assert attach(answers, [*EVENTS, late]) == [
        row("a", "e-late", "app_session", "usage", "s2", "app", "particulier", "mobile", "nearest_preceding")
    ]


def test_events_of_one_instant_attach_the_greatest_event_id() -> None:
    rows = attach([answer("a", "c3", T + M)])
    assert rows == [row("a", "e6", "product_page", "consideration", "s5", "app", "pro", "fibre", "nearest_preceding")]


def test_the_model_keeps_its_grain_and_its_columns_are_the_datasets() -> None:
    answers = [
        answer("a", "c1", T + 90 * M, event_id="e1"),
        answer("b", "c1", T + 90 * M),
        answer("c", "c1", T - M),
        answer("d", "c3", T + M),
        answer("e", "c2", T + 9 * D),
    ]
    rows = run_model("int_survey_answers_attached", {"raw_touchpoints": EVENTS, "raw_survey_answers": answers})
    assert len(rows) == 5 and grain_problems(rows, declared_grain("int_survey_answers_attached")) == []
    declared = by_name()["survey_attachments"]
    assert grain_problems(rows, declared.grain, not_null=declared.not_null) == []
    assert list(rows[0]) == [n for n in DATASETS["survey_attachments"].arrow_schema.names if n != "batch_seq"]


def test_a_refresh_supersedes_the_customers_rows_from_its_point_on() -> None:
    def attached(response_id, at, event_id, seq, customer="c1"):
        return {
            "response_id": response_id,
            "customer_id": customer,
            "answered_at": at,
            "event_id": event_id,
            "attached_by": "nearest_preceding",
            "batch_seq": seq,
        }

    rows = run_model(
        "stg_parcours__survey_attachments",
        {
            "raw_survey_attachments": [
                attached("before", T, "e1", 1),  # answered before the point: kept
                attached("after", T + 2 * H, "e2", 1),  # superseded by batch 3's row
                attached("after", T + 2 * H, "e-late", 3),
                attached("same", T + 3 * H, "e2", 2),  # after the point: superseded, batch 3 has no row
                attached("other", T + 3 * H, "e9", 2, "c2"),  # another customer's: kept
            ],
            "raw_refreshes": [
                {"customer_id": "c1", "survey_attachments_from_at": T + H, "batch_seq": 3},
                {"customer_id": "c1", "sessions_from_at": T, "batch_seq": 4},  # sessions only: no effect
                {"customer_id": "c9", "survey_attachments_from_at": T, "batch_seq": 5},
            ],
        },
        columns=["response_id", "event_id", "batch_seq"],
        order_by="response_id",
    )
    assert rows == [
        {"response_id": "after", "event_id": "e-late", "batch_seq": 3},
        {"response_id": "before", "event_id": "e1", "batch_seq": 1},
        {"response_id": "other", "event_id": "e9", "batch_seq": 2},
    ]


# -- through the real pipeline: file backfills, each run landing one batch and refreshing -----

CONFIG = load_config()


def land(data: Path, root: Path):
    warehouse = Warehouse(root)
    with warehouse.lock():
        return Ingestion(warehouse, CONFIG).run_files(data)


def event(event_id, customer, at, touchpoint, channel, segment="pro") -> dict:
    return {
        "schema_version": 1,
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": at.isoformat(),
        "channel": channel,
        "touchpoint": touchpoint,
        "segment": segment,
        "product_line": "fibre",
    }


def survey(response_id, customer, at, **extra) -> dict:
    return {
        "schema_version": 1,
        "response_id": response_id,
        "customer_id": customer,
        "answered_at": at.isoformat(),
        "survey": "csat",
        "question_id": "q",
        "score": 4,
        **extra,
    }


ATTACHED = (
    "select response_id, event_id, touchpoint, stage, channel, segment, attached_by, "
    "(select max(batch_seq) from stg_parcours__survey_attachments s where s.response_id = a.response_id) "
    "from survey_answers a order by response_id"
)


def test_the_refresher_keeps_attachments_current_as_answers_and_events_arrive(tmp_path):
    root, db = tmp_path / "w", tmp_path / "w" / "parcours.duckdb"
    write_jsonl(
        tmp_path / "b1" / "touchpoints.jsonl",
        [
            event("e1", "cust-a", T, "checkout", "web"),
            event("e2", "cust-a", T + H, "delivery", "store"),
            event("e3", "cust-a", T + 5 * H, "support_call", "call_center"),
            event("b1", "cust-b", T, "home_page", "app"),
        ],
    )
    write_jsonl(
        tmp_path / "b1" / "surveys.jsonl",
        [
            survey("r-near", "cust-a", T + 90 * M),
            survey("r-named", "cust-a", T + 3 * H, event_id="e-late"),  # its event lands in run 4
            survey("r-far", "cust-a", T + 5 * H + 8 * D),  # 8 days after e3: beyond the window
            survey("r-b", "cust-b", T + 10 * M),
        ],
    )
    land(tmp_path / "b1", root)  # seq 1 ingest, 2 refresh
    assert query(db, ATTACHED) == [
        ("r-b", "b1", "home_page", "consideration", "app", "pro", "nearest_preceding", 2),
        ("r-far", None, None, None, "call_center", "pro", "unattached", 2),
        ("r-named", "e-late", None, None, "store", "pro", "unattached", 2),  # the mart shows the named id
        ("r-near", "e2", "delivery", "activation", "store", "pro", "nearest_preceding", 2),
    ]

    # A survey-only batch: its customer is refreshed from its answer on, sessions untouched.
    write_jsonl(tmp_path / "b2" / "surveys.jsonl", [survey("r-new", "cust-a", T + 2 * H)])
    report = land(tmp_path / "b2", root).marts  # seq 3 ingest, 4 refresh
    assert report.rows["survey_attachments"] == 3  # r-new, and the answers after it: r-named, r-far
    assert report.sessions == report.journeys == 0
    assert query(db, ATTACHED) == [
        ("r-b", "b1", "home_page", "consideration", "app", "pro", "nearest_preceding", 2),
        ("r-far", None, None, None, "call_center", "pro", "unattached", 4),
        ("r-named", "e-late", None, None, "store", "pro", "unattached", 4),
        ("r-near", "e2", "delivery", "activation", "store", "pro", "nearest_preceding", 2),
        ("r-new", "e2", "delivery", "activation", "store", "pro", "nearest_preceding", 4),
    ]

    # A late touchpoint (before e3, landed already): nearer to r-near and r-new than e2, and the
    # latest before r-named, whose segment it changes.
    write_jsonl(
        tmp_path / "b3" / "touchpoints.jsonl",
        [event("e-mid", "cust-a", T + 80 * M, "app_session", "app", "particulier")],
    )
    land(tmp_path / "b3", root)  # seq 5 ingest (with its rewrite), 6 refresh: cust-a from T+80m
    assert query(db, ATTACHED) == [
        ("r-b", "b1", "home_page", "consideration", "app", "pro", "nearest_preceding", 2),
        ("r-far", None, None, None, "call_center", "pro", "unattached", 6),
        ("r-named", "e-late", None, None, "app", "particulier", "unattached", 6),
        ("r-near", "e-mid", "app_session", "usage", "app", "particulier", "nearest_preceding", 6),
        ("r-new", "e-mid", "app_session", "usage", "app", "particulier", "nearest_preceding", 6),
    ]

    # The event r-named names lands, after the answer (T+6h > T+3h): r-named is re-attached, and
    # every answer of cust-a from T+3h on is recomputed (r-far: e-late is now its latest before).
    write_jsonl(tmp_path / "b4" / "touchpoints.jsonl", [event("e-late", "cust-a", T + 6 * H, "installation", "web")])
    land(tmp_path / "b4", root)  # seq 7 ingest, 8 refresh
    assert query(db, ATTACHED) == [
        ("r-b", "b1", "home_page", "consideration", "app", "pro", "nearest_preceding", 2),
        ("r-far", None, None, None, "web", "pro", "unattached", 8),  # 7 d 23 h after e-late
        ("r-named", "e-late", "installation", "activation", "web", "pro", "event_id", 8),
        ("r-near", "e-mid", "app_session", "usage", "app", "particulier", "nearest_preceding", 6),
        ("r-new", "e-mid", "app_session", "usage", "app", "particulier", "nearest_preceding", 6),
    ]

    # Incremental = whole: the materialised rows are what the model computes over everything.
    attachment = ", ".join(n for n in DATASETS["survey_attachments"].arrow_schema.names if n != "batch_seq")
    materialised = f"select {attachment} from stg_parcours__survey_attachments"
    whole = f"select {attachment} from int_survey_answers_attached"
    assert query(db, f"{materialised} except all {whole}") == query(db, f"{whole} except all {materialised}") == []
    declared = by_name()["survey_attachments"]
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql(f"select * from {declared.view}").to_arrow_table()
    assert grain_problems(rows, declared.grain, not_null=declared.not_null) == []


def test_full_rebuilds_the_attachments_after_the_window_changed(tmp_path):
    root, db = tmp_path / "w", tmp_path / "w" / "parcours.duckdb"
    write_jsonl(
        tmp_path / "b1" / "touchpoints.jsonl",
        [event("e1", "cust-a", T, "checkout", "web"), event("b1", "cust-b", T, "home_page", "app")],
    )
    write_jsonl(
        tmp_path / "b1" / "surveys.jsonl",
        [survey("r-a", "cust-a", T + 2 * H), survey("r-b", "cust-b", T + 10 * M)],
    )
    land(tmp_path / "b1", root)
    # A later run under a one-hour window: the attachments' definition changed (their model reads
    # attachment_window); r-a (2 h after e1) stays attached until `--full`.
    hour = CONFIG.model_copy(update={"surveys": CONFIG.surveys.model_copy(update={"attachment_window": H})})
    write_jsonl(tmp_path / "b2" / "touchpoints.jsonl", [event("b2", "cust-b", T + D, "product_page", "app")])
    with Warehouse(root).lock():
        Ingestion(Warehouse(root), hour).run_files(tmp_path / "b2")
    assert dict(query(db, "select name, is_stale from parcours_datasets"))["survey_attachments"] is True
    assert query(db, "select response_id, attached_by from survey_answers order by 1") == [
        ("r-a", "nearest_preceding"),
        ("r-b", "nearest_preceding"),
    ]
    done = parcours("refresh", "--full", "-w", str(root))
    assert done.returncode == 0, done.stderr
    assert "survey_attachments" in done.stderr
    assert query(db, "select response_id, attached_by from survey_answers order by 1") == [
        ("r-a", "unattached"),
        ("r-b", "nearest_preceding"),  # 10 min after b1
    ]
    assert query(db, "select count(*) from parcours_datasets where is_stale") == [(0,)]
