"""The event contracts in their forms agree: the JSON Schema files producers validate against,
and `decode_batch`, which the pipeline runs on every micro-batch.

Every payload of the corpus goes through both. They must agree on valid / invalid; a rejected
payload must carry the exact reason code and a detail naming the wrong field, the same field the
JSON Schema error points at. Where the two forms differ on purpose, the difference is listed below
and asserted as a difference, so it cannot grow or vanish unnoticed. Expected values are written
by hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import msgspec
import pyarrow as pa
import pytest
from jsonschema import Draft202012Validator

from parcours.schemas import CHANNELS, SURVEY_ANSWER, SURVEYS, TOUCHPOINT, Contract, Reason, decode_batch
from parcours.schemas.contracts import SurveyAnswerV1, TouchpointV1

DROP = object()  # a value that removes the field from the payload
KANO: dict[str, Any] = {"survey": "kano", "question_id": "esim", "score": 1}

MINIMAL_TOUCHPOINT: dict[str, Any] = {
    "schema_version": 1,
    "event_id": "evt-1",
    "customer_id": "cus-1",
    "occurred_at": "2026-01-05T10:00:00+02:00",
    "channel": "web",
    "touchpoint": "product_page",
}
FULL_TOUCHPOINT: dict[str, Any] = {
    **MINIMAL_TOUCHPOINT,
    "stage": "consideration",
    "product_line": "fibre",
    "segment": "particulier",
    "outcome": "purchase",
    "revenue": 39.99,
    "properties": {"offer": "Fibre Power", "rating_seen": 4, "tags": ["promo", None]},
}
MINIMAL_SURVEY: dict[str, Any] = {
    "schema_version": 1,
    "response_id": "resp-1",
    "customer_id": "cus-1",
    "answered_at": "2026-01-05T10:00:00Z",
    "survey": "nps",
    "question_id": "nps_after_purchase",
    "score": 9,
}
FULL_SURVEY: dict[str, Any] = {
    **MINIMAL_SURVEY,
    "survey": "csat",
    "question_id": "csat_delivery",
    "score": 2,
    "scale": "1-5",
    "touchpoint": "delivery",
    "stage": "activation",
    "event_id": "evt-1",
    "verbatim": "Livraison en retard, colis abîmé.",
    "language": "fr-FR",
}


def touchpoint(base: dict[str, Any] = MINIMAL_TOUCHPOINT, **changes: Any) -> bytes:
    return _encode({**base, **changes})


def survey(base: dict[str, Any] = MINIMAL_SURVEY, **changes: Any) -> bytes:
    return _encode({**base, **changes})


def kano(**changes: Any) -> bytes:
    """A Kano answer: `score` is the functional answer of the pair."""
    return survey(**{**KANO, **changes})


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in record.items() if v is not DROP}, ensure_ascii=False).encode()


# -- the two forms, side by side ------------------------------------------------------------------

_VALIDATORS = {c.name: Draft202012Validator(c.json_schema()) for c in (TOUCHPOINT, SURVEY_ANSWER)}


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _json_instance(payload: bytes) -> tuple[bool, Any]:
    """What a producer's JSON Schema validator sees: RFC 8259 JSON text in UTF-8, or nothing."""
    try:
        return True, json.loads(payload.decode("utf-8"), parse_constant=_not_json)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return False, None


def schema_accepts(contract: Contract, payload: bytes) -> bool:
    parsed, instance = _json_instance(payload)
    return parsed and _VALIDATORS[contract.name].is_valid(instance)


def schema_error_fields(contract: Contract, payload: bytes) -> set[str]:
    """The JSONPaths the JSON Schema errors point at (a missing property: its own path)."""
    _, instance = _json_instance(payload)
    fields = set()
    for error in _VALIDATORS[contract.name].iter_errors(instance):
        if error.validator == "required":
            fields |= {f"$.{name}" for name in error.validator_value if name not in error.instance}
        else:
            fields.add(error.json_path)
    return fields


def names_field(detail: str, field: str) -> bool:
    """msgspec says `- at `$.score`` for a wrong value, ``missing required field `score` `` for none."""
    return f"`{field}`" in detail or detail == f"Object missing required field `{field.removeprefix('$.')}`"


@dataclass(frozen=True)
class Case:
    name: str
    contract: Contract
    payload: bytes
    reason: str | None = None  # None: a valid payload
    field: str | None = None  # the JSONPath both forms must name when it is invalid


def ok(name: str, contract: Contract, payload: bytes) -> Case:
    return Case(name, contract, payload)


def bad(name: str, contract: Contract, payload: bytes, reason: str, field: str | None) -> Case:
    return Case(name, contract, payload, reason, field)


TP, SV = TOUCHPOINT, SURVEY_ANSWER
V, ENUM, RANGE = Reason.SCHEMA_VIOLATION, Reason.UNKNOWN_ENUM, Reason.OUT_OF_RANGE

VALID = [
    ok("touchpoint minimal", TP, touchpoint()),
    ok("touchpoint full", TP, touchpoint(FULL_TOUCHPOINT)),
    ok(
        "touchpoint optional fields null",
        TP,
        touchpoint(stage=None, product_line=None, segment=None, outcome=None, revenue=None, properties=None),
    ),
    ok("touchpoint extra fields", TP, touchpoint(campaign="spring", ab_test={"variant": "B"})),
    ok("touchpoint integer revenue", TP, touchpoint(revenue=40)),
    ok("touchpoint refund", TP, touchpoint(revenue=-12.5, outcome="refund")),
    ok("touchpoint empty properties", TP, touchpoint(properties={})),
    *[ok(f"channel {channel}", TP, touchpoint(channel=channel)) for channel in CHANNELS],
    ok("offset +02:00", TP, touchpoint(occurred_at="2026-01-05T10:00:00+02:00")),
    ok("offset Z", TP, touchpoint(occurred_at="2026-01-05T10:00:00Z")),
    ok("offset -04:00", TP, touchpoint(occurred_at="2026-01-05T10:00:00-04:00")),
    ok("offset -00:00", TP, touchpoint(occurred_at="2026-01-05T10:00:00-00:00")),
    ok("lowercase t and z", TP, touchpoint(occurred_at="2026-01-05t10:00:00z")),
    ok("space instead of T", TP, touchpoint(occurred_at="2026-01-05 10:00:00+01:00")),
    ok("milliseconds", TP, touchpoint(occurred_at="2026-01-05T10:00:00.250+01:00")),
    ok("nanoseconds", TP, touchpoint(occurred_at="2026-01-05T10:00:00.123456789Z")),
    ok("ids of 128 two-byte characters", TP, touchpoint(event_id="é" * 128)),
    ok("survey minimal", SV, survey()),
    ok("survey full", SV, survey(FULL_SURVEY)),
    ok("survey extra fields", SV, survey(channel="email", campaign_id=42)),
    ok(
        "survey optional fields null",
        SV,
        survey(
            scale=None,
            dysfunctional_score=None,
            touchpoint=None,
            stage=None,
            event_id=None,
            verbatim=None,
            language=None,
        ),
    ),
    ok("language fr", SV, survey(language="fr")),
    ok("language zh-Hant-TW", SV, survey(language="zh-Hant-TW")),
    ok("verbatim of 10000 characters", SV, survey(verbatim="a" * 10_000)),
    ok("answered_at -04:00", SV, survey(answered_at="2026-07-14T18:30:00.5-04:00")),
    *[ok(f"kano pair ({f}, {d})", SV, kano(score=f, dysfunctional_score=d)) for f in (1, 5) for d in (1, 5)],
    ok("kano with scale 1-5", SV, kano(scale="1-5", dysfunctional_score=3)),
]

# Each survey with each of its scales (None = the default), and the inclusive score range by hand.
SCORE_RANGES = [
    ("nps", None, 0, 10),
    ("nps", "0-10", 0, 10),
    ("csat", None, 1, 5),
    ("csat", "1-5", 1, 5),
    ("ces", None, 1, 7),
    ("ces", "1-7", 1, 7),
    ("ces", "1-5", 1, 5),
    ("cxi", None, 1, 5),
    ("cxi", "1-5", 1, 5),
    ("importance", None, 1, 5),
    ("importance", "1-5", 1, 5),
    ("kano", None, 1, 5),
    ("kano", "1-5", 1, 5),
]
DISALLOWED_SCALES = [
    ("nps", "1-5"),
    ("nps", "1-7"),
    ("csat", "0-10"),
    ("csat", "1-7"),
    ("ces", "0-10"),
    ("cxi", "0-10"),
    ("cxi", "1-7"),
    ("importance", "0-10"),
    ("importance", "1-7"),
    ("kano", "0-10"),
    ("kano", "1-7"),
]


def _answer(name: str, scale: str | None, score: int) -> bytes:
    fields: dict[str, Any] = {"survey": name, "score": score, "scale": scale if scale else DROP}
    if name == "kano":
        fields["dysfunctional_score"] = 3
    return survey(**fields)


def _scale_cases() -> list[Case]:
    cases = []
    for name, scale, low, high in SCORE_RANGES:
        label = f"{name} {scale or 'default scale'}"
        cases += [
            ok(f"{label} score {low}", SV, _answer(name, scale, low)),
            ok(f"{label} score {high}", SV, _answer(name, scale, high)),
            bad(f"{label} score {low - 1}", SV, _answer(name, scale, low - 1), RANGE, "$.score"),
            bad(f"{label} score {high + 1}", SV, _answer(name, scale, high + 1), RANGE, "$.score"),
        ]
    for name, scale in DISALLOWED_SCALES:
        cases.append(bad(f"{name} with scale {scale}", SV, _answer(name, scale, 1), V, "$.scale"))
    return cases


def _length_cases() -> list[Case]:
    """String bounds read from the JSON Schema files, so a bound changed in one form only fails here."""
    cases = []
    for contract, make in ((TP, touchpoint), (SV, survey)):
        for name, spec in contract.json_schema()["properties"].items():
            if "pattern" in spec:
                continue  # timestamps and language tags have their own cases
            if "maxLength" in spec:
                longest = spec["maxLength"]
                cases.append(
                    ok(f"{contract.name}.{name} of {longest} characters", contract, make(**{name: "x" * longest}))
                )
                cases.append(
                    bad(
                        f"{contract.name}.{name} of {longest + 1} characters",
                        contract,
                        make(**{name: "x" * (longest + 1)}),
                        V,
                        f"$.{name}",
                    )
                )
            if spec.get("minLength") == 1:
                cases.append(bad(f"{contract.name}.{name} empty", contract, make(**{name: ""}), V, f"$.{name}"))
    return cases


INVALID = [
    # versioning
    bad("schema_version 2", TP, touchpoint(schema_version=2), Reason.UNSUPPORTED_VERSION, "$.schema_version"),
    bad("schema_version 0", SV, survey(schema_version=0), Reason.UNSUPPORTED_VERSION, "$.schema_version"),
    bad("schema_version missing", TP, touchpoint(schema_version=DROP), Reason.UNSUPPORTED_VERSION, "$.schema_version"),
    bad("schema_version '1'", TP, touchpoint(schema_version="1"), Reason.UNSUPPORTED_VERSION, "$.schema_version"),
    bad("schema_version true", SV, survey(schema_version=True), Reason.UNSUPPORTED_VERSION, "$.schema_version"),
    bad(
        "another version wins over other errors",
        TP,
        touchpoint(schema_version=2, channel="fax"),
        Reason.UNSUPPORTED_VERSION,
        "$.schema_version",
    ),
    # required fields
    *[
        bad(f"touchpoint without {f}", TP, touchpoint(**{f: DROP}), V, f"$.{f}")
        for f in ("event_id", "customer_id", "occurred_at", "channel", "touchpoint")
    ],
    *[
        bad(f"survey without {f}", SV, survey(**{f: DROP}), V, f"$.{f}")
        for f in ("response_id", "customer_id", "answered_at", "survey", "question_id", "score")
    ],
    bad("event_id null", TP, touchpoint(event_id=None), V, "$.event_id"),
    bad("customer_id a number", TP, touchpoint(customer_id=12), V, "$.customer_id"),
    bad("question_id a list", SV, survey(question_id=["q"]), V, "$.question_id"),
    # enums
    bad("channel fax", TP, touchpoint(channel="fax"), ENUM, "$.channel"),
    bad("channel Web (case matters)", TP, touchpoint(channel="Web"), ENUM, "$.channel"),
    bad("channel null", TP, touchpoint(channel=None), V, "$.channel"),
    bad("survey NPS (case matters)", SV, survey(survey="NPS"), ENUM, "$.survey"),
    bad("survey csi", SV, survey(survey="csi"), ENUM, "$.survey"),
    bad("scale 0-100", SV, survey(scale="0-100"), ENUM, "$.scale"),
    # timestamps
    bad("no offset", TP, touchpoint(occurred_at="2026-01-05T10:00:00"), V, "$.occurred_at"),
    bad("date only", TP, touchpoint(occurred_at="2026-01-05"), V, "$.occurred_at"),
    bad("no seconds", TP, touchpoint(occurred_at="2026-01-05T10:00Z"), V, "$.occurred_at"),
    bad("offset +02", TP, touchpoint(occurred_at="2026-01-05T10:00:00+02"), V, "$.occurred_at"),
    bad("offset UTC", TP, touchpoint(occurred_at="2026-01-05T10:00:00UTC"), V, "$.occurred_at"),
    bad("compact ISO 8601", TP, touchpoint(occurred_at="20260105T100000Z"), V, "$.occurred_at"),
    bad("comma decimals", TP, touchpoint(occurred_at="2026-01-05T10:00:00,5Z"), V, "$.occurred_at"),
    bad("epoch seconds", TP, touchpoint(occurred_at=1767607200), V, "$.occurred_at"),
    bad("answered_at without offset", SV, survey(answered_at="2026-01-05 10:00:00"), V, "$.answered_at"),
    bad("offset +0200 without colon", TP, touchpoint(occurred_at="2026-01-05T10:00:00+0200"), V, "$.occurred_at"),
    bad("offset -0400 without colon", SV, survey(answered_at="2026-01-05T10:00:00-0400"), V, "$.answered_at"),
    # other types and patterns
    bad("revenue as text", TP, touchpoint(revenue="12,50"), V, "$.revenue"),
    bad("revenue true", TP, touchpoint(revenue=True), V, "$.revenue"),
    bad("properties a list", TP, touchpoint(properties=["a"]), V, "$.properties"),
    bad("properties a string", TP, touchpoint(properties="{}"), V, "$.properties"),
    bad("score as text", SV, survey(score="9"), V, "$.score"),
    bad("score true", SV, survey(score=True), V, "$.score"),
    bad("score 10**30", SV, survey(score=10**30), RANGE, "$.score"),
    bad("language FR", SV, survey(language="FR"), V, "$.language"),
    bad("language fr_FR", SV, survey(language="fr_FR"), V, "$.language"),
    bad("language empty", SV, survey(language=""), V, "$.language"),
    # the kano pair
    bad("kano without dysfunctional_score", SV, kano(), V, "$.dysfunctional_score"),
    bad("kano dysfunctional_score null", SV, kano(dysfunctional_score=None), V, "$.dysfunctional_score"),
    bad("kano dysfunctional_score 0", SV, kano(dysfunctional_score=0), RANGE, "$.dysfunctional_score"),
    bad("kano dysfunctional_score 6", SV, kano(dysfunctional_score=6), RANGE, "$.dysfunctional_score"),
    bad("kano dysfunctional_score '3'", SV, kano(dysfunctional_score="3"), V, "$.dysfunctional_score"),
    bad("kano functional score 6", SV, kano(score=6, dysfunctional_score=2), RANGE, "$.score"),
    bad("dysfunctional_score on nps", SV, survey(dysfunctional_score=3), V, "$.dysfunctional_score"),
    bad(
        "dysfunctional_score on csat",
        SV,
        survey(survey="csat", score=4, dysfunctional_score=1),
        V,
        "$.dysfunctional_score",
    ),
    bad("dysfunctional_score 9 on nps", SV, survey(dysfunctional_score=9), RANGE, "$.dysfunctional_score"),
    # not an object, not JSON
    bad("array", TP, b"[" + touchpoint() + b"]", Reason.NOT_AN_OBJECT, None),
    bad("null", TP, b"null", Reason.NOT_AN_OBJECT, None),
    bad("string", SV, json.dumps(survey().decode()).encode(), Reason.NOT_AN_OBJECT, None),
    bad("number", SV, b"42", Reason.NOT_AN_OBJECT, None),
    bad("empty payload", TP, b"", Reason.MALFORMED_JSON, None),
    bad("truncated", TP, touchpoint()[:-5], Reason.MALFORMED_JSON, None),
    bad("trailing characters", TP, touchpoint() + b" x", Reason.MALFORMED_JSON, None),
    bad("single quotes", TP, b"{'schema_version': 1}", Reason.MALFORMED_JSON, None),
    bad("NaN revenue", TP, touchpoint()[:-1] + b', "revenue": NaN}', Reason.MALFORMED_JSON, None),
    bad("UTF-8 byte order mark", TP, b"\xef\xbb\xbf" + touchpoint(), Reason.MALFORMED_JSON, None),
    bad("Latin-1 outside a string", TP, b"\xe9" + touchpoint(), Reason.MALFORMED_JSON, None),
    *[
        bad(f"Latin-1 byte in {where}", contract, payload, Reason.MALFORMED_JSON, None)
        for where, contract, payload in (
            ("a known field", TP, touchpoint(touchpoint="caf\xe9").replace(b"caf\xc3\xa9", b"caf\xe9")),
            ("an unknown field", SV, survey(comment="caf\xe9").replace(b"caf\xc3\xa9", b"caf\xe9")),
        )
    ],
]

CORPUS = [*VALID, *_scale_cases(), *_length_cases(), *INVALID]


def _with_ids(cases: list) -> list:
    out = []
    for case in cases:
        if isinstance(case, Case):
            out.append(pytest.param(case, id=case.name))
        else:  # a pytest.param carrying marks
            out.append(pytest.param(*case.values, marks=case.marks, id=case.values[0].name))
    return out


@pytest.mark.parametrize("case", _with_ids(CORPUS))
def test_json_schema_and_decode_batch_agree(case: Case) -> None:
    decoded = decode_batch(case.contract, [case.payload])
    if case.reason is None:
        assert schema_accepts(case.contract, case.payload), sorted(schema_error_fields(case.contract, case.payload))
        assert decoded.rejects == []
        assert decoded.table.num_rows == 1 and decoded.valid_index == [0]
        return
    assert not schema_accepts(case.contract, case.payload)
    assert decoded.table.num_rows == 0
    [reject] = decoded.rejects
    assert (reject.index, reject.reason) == (0, case.reason), reject.detail
    if case.field is not None:
        assert names_field(reject.detail, case.field), reject.detail
        assert case.field in schema_error_fields(case.contract, case.payload)


# -- where the forms differ on purpose ------------------------------------------------------------

# The contract is stricter than JSON Schema can express: JSON Schema's "integer" is any number with
# a zero fractional part, and a `pattern` cannot know calendars. schemas/README.md says so.
STRICTER_THAN_JSON_SCHEMA = [
    bad("score 9.0", SV, survey(score=9.0), V, "$.score"),
    bad("dysfunctional_score 5.0", SV, kano(dysfunctional_score=5.0), V, "$.dysfunctional_score"),
    bad("schema_version 1.0", TP, touchpoint(schema_version=1.0), V, "$.schema_version"),
    bad("30 February", TP, touchpoint(occurred_at="2026-02-30T10:00:00Z"), V, "$.occurred_at"),
    bad("hour 25", TP, touchpoint(occurred_at="2026-01-05T25:00:00Z"), V, "$.occurred_at"),
    bad("second 60", TP, touchpoint(occurred_at="2026-12-31T23:59:60Z"), V, "$.occurred_at"),
    bad("offset +24:00", SV, survey(answered_at="2026-01-05T10:00:00+24:00"), V, "$.answered_at"),
    bad("year 0000", TP, touchpoint(occurred_at="0000-01-05T10:00:00Z"), V, "$.occurred_at"),
]
# Valid JSON text that Python's json reads and msgspec refuses: numbers beyond float64, lone
# UTF-16 surrogates. Neither can be stored; both are dead-lettered as malformed_json.
JSON_TEXT_EDGES = [
    bad("revenue 1e400", TP, touchpoint()[:-1] + b', "revenue": 1e400}', Reason.MALFORMED_JSON, None),
    bad("lone surrogate", TP, touchpoint()[:-1] + b', "segment": "\\ud800"}', Reason.MALFORMED_JSON, None),
    # Python's json keeps the last value of a repeated key, as msgspec would: parcours refuses it.
    bad("repeated key", TP, touchpoint()[:-1] + b', "event_id": "evt-2"}', Reason.MALFORMED_JSON, None),
]


@pytest.mark.parametrize("case", _with_ids(STRICTER_THAN_JSON_SCHEMA + JSON_TEXT_EDGES))
def test_documented_differences_json_schema_accepts_decode_batch_rejects(case: Case) -> None:
    assert schema_accepts(case.contract, case.payload)
    [reject] = decode_batch(case.contract, [case.payload]).rejects
    assert reject.reason == case.reason, reject.detail
    if case.field is not None:
        assert names_field(reject.detail, case.field), reject.detail


def test_a_final_newline_is_not_part_of_a_language_tag() -> None:
    [reject] = decode_batch(SURVEY_ANSWER, [survey(language="fr\n")]).rejects
    assert reject.reason == V and "`$.language`" in reject.detail


def test_the_corpus_covers_every_reason_decode_batch_can_give() -> None:
    """Reasons that need run context (time, ids seen before) belong to the pipeline's tests."""
    in_context = {
        Reason.FUTURE_TIMESTAMP,
        Reason.TOO_LATE,
        Reason.BEFORE_EARLIEST,
        Reason.DUPLICATE_CONFLICT,
        Reason.KEY_MISMATCH,
        Reason.UNKNOWN_STAGE,
        Reason.RESERVED_VALUE,  # Validate's, like the stage check: tests/test_pipeline_poison.py
    }
    every = {value for key, value in vars(Reason).items() if key.isupper()}
    covered = {case.reason for case in CORPUS if isinstance(case, Case) and case.reason}
    own_tests = {Reason.PAYLOAD_TOO_LARGE, Reason.TOO_DEEPLY_NESTED, Reason.INTERNAL_ERROR}  # below
    assert covered | own_tests == every - in_context


# -- the forms are the same contract ------------------------------------------------------------


@pytest.mark.parametrize("contract", [TOUCHPOINT, SURVEY_ANSWER], ids=lambda c: c.name)
def test_schema_files_are_valid_draft_2020_12_without_format(contract: Contract) -> None:
    schema = contract.json_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def keys(node: Any) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for value in node.values() for k in keys(value)}
        if isinstance(node, list):
            return {k for value in node for k in keys(value)}
        return set()

    # `format` is an annotation unless a validator opts in: timestamps are checked by `pattern`.
    assert "format" not in keys(schema)


@pytest.mark.parametrize(
    ("contract", "required"),
    [
        (TOUCHPOINT, {"schema_version", "event_id", "customer_id", "occurred_at", "channel", "touchpoint"}),
        (
            SURVEY_ANSWER,
            {"schema_version", "response_id", "customer_id", "answered_at", "survey", "question_id", "score"},
        ),
    ],
    ids=lambda v: v.name if isinstance(v, Contract) else "",
)
def test_schema_struct_and_arrow_have_the_same_fields(contract: Contract, required: set[str]) -> None:
    schema = contract.json_schema()
    struct_fields = set(contract.struct.__struct_fields__)
    assert set(schema["properties"]) == struct_fields
    assert set(schema["required"]) == required
    assert {f.name for f in msgspec.structs.fields(contract.struct) if f.required} == required
    assert schema["additionalProperties"] is True
    assert set(contract.arrow.names) == struct_fields | {"extra", "payload_hash"}
    assert {f.name for f in contract.arrow if not f.nullable} == required | {"payload_hash"} | (
        {"scale"} if contract is SURVEY_ANSWER else set()
    )


def _field_type(struct: type[msgspec.Struct], name: str) -> Any:
    return next(f.type for f in msgspec.structs.fields(struct) if f.name == name)


def test_enums_agree() -> None:
    tp_schema, sv_schema = TOUCHPOINT.json_schema(), SURVEY_ANSWER.json_schema()
    assert CHANNELS == ("web", "app", "store", "call_center", "email", "sms", "social", "chat", "other")
    assert tuple(tp_schema["properties"]["channel"]["enum"]) == CHANNELS
    assert get_args(_field_type(TouchpointV1, "channel")) == CHANNELS
    assert SURVEYS == ("nps", "csat", "ces", "cxi", "kano", "importance")
    assert tuple(sv_schema["properties"]["survey"]["enum"]) == SURVEYS
    assert get_args(_field_type(SurveyAnswerV1, "survey")) == SURVEYS
    assert sv_schema["properties"]["scale"]["enum"] == ["0-10", "1-5", "1-7", None]


def test_the_examples_in_the_contract_documentation_are_valid() -> None:
    """schemas/README.md shows producers two complete payloads per contract: they must pass both forms."""
    readme = (Path(__file__).resolve().parents[1] / "schemas" / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", readme, flags=re.DOTALL)
    examples = {TOUCHPOINT.name: 0, SURVEY_ANSWER.name: 0}
    for block in blocks:
        contract = SURVEY_ANSWER if '"response_id"' in block else TOUCHPOINT
        payload = json.dumps(json.loads(block), ensure_ascii=False).encode()
        assert schema_accepts(contract, payload), block
        assert decode_batch(contract, [payload]).rejects == [], block
        examples[contract.name] += 1
    assert examples == {TOUCHPOINT.name: 2, SURVEY_ANSWER.name: 2}


# -- what lands: columns, UTC instants, extra, resolved scale, payload hash ---------------------


@pytest.mark.parametrize(
    ("stamp", "utc"),
    [
        ("2026-01-05T10:00:00+02:00", datetime(2026, 1, 5, 8, 0, tzinfo=UTC)),
        ("2026-01-05T10:00:00Z", datetime(2026, 1, 5, 10, 0, tzinfo=UTC)),
        ("2026-01-05T22:30:00-04:00", datetime(2026, 1, 6, 2, 30, tzinfo=UTC)),
        ("2026-01-05T01:15:00+02:00", datetime(2026, 1, 4, 23, 15, tzinfo=UTC)),
        ("2026-03-29 03:30:00.123456+02:00", datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=UTC)),
        ("2026-01-05t10:00:00.5z", datetime(2026, 1, 5, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2026-01-05T10:00:00-00:00", datetime(2026, 1, 5, 10, 0, tzinfo=UTC)),
    ],
)
def test_timestamps_land_as_the_utc_instant(stamp: str, utc: datetime) -> None:
    table = decode_batch(TOUCHPOINT, [touchpoint(occurred_at=stamp)]).table
    assert table.schema.field("occurred_at").type == pa.timestamp("us", tz="UTC")
    assert table.column("occurred_at").to_pylist() == [utc]
    answers = decode_batch(SURVEY_ANSWER, [survey(answered_at=stamp)]).table
    assert answers.column("answered_at").to_pylist() == [utc]


def test_a_full_touchpoint_lands_column_by_column() -> None:
    payload = touchpoint(FULL_TOUCHPOINT)
    table = decode_batch(TOUCHPOINT, [payload]).table
    assert table.schema == TOUCHPOINT.arrow
    [row] = table.to_pylist()
    assert row.pop("payload_hash") > 0
    assert row == {
        "event_id": "evt-1",
        "customer_id": "cus-1",
        "occurred_at": datetime(2026, 1, 5, 8, 0, tzinfo=UTC),
        "channel": "web",
        "touchpoint": "product_page",
        "stage": "consideration",
        "product_line": "fibre",
        "segment": "particulier",
        "outcome": "purchase",
        "revenue": 39.99,
        "properties": '{"offer": "Fibre Power", "rating_seen": 4, "tags": ["promo", null]}',  # as sent
        "extra": None,
        "schema_version": 1,
    }


def test_a_full_survey_answer_lands_column_by_column() -> None:
    table = decode_batch(SURVEY_ANSWER, [survey(FULL_SURVEY)]).table
    assert table.schema == SURVEY_ANSWER.arrow
    [row] = table.to_pylist()
    del row["payload_hash"]
    assert row == {
        "response_id": "resp-1",
        "customer_id": "cus-1",
        "answered_at": datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
        "survey": "csat",
        "question_id": "csat_delivery",
        "score": 2,
        "scale": "1-5",
        "dysfunctional_score": None,
        "touchpoint": "delivery",
        "stage": "activation",
        "event_id": "evt-1",
        "verbatim": "Livraison en retard, colis abîmé.",
        "language": "fr-FR",
        "extra": None,
        "schema_version": 1,
    }


def test_unknown_fields_are_kept_as_json_in_extra_never_dropped() -> None:
    payloads = [
        touchpoint(zeta=1, alpha={"b": [1, 2.5]}, note=None, label="été"),
        touchpoint(),
        touchpoint(stage=None, revenue=None),  # known fields, explicitly null: nothing extra
        touchpoint(properties={"z": 1, "a": 2}),  # properties are known: not extra, order kept
    ]
    table = decode_batch(TOUCHPOINT, payloads).table
    assert table.column("extra").to_pylist() == [
        '{"alpha":{"b":[1,2.5]},"label":"été","note":null,"zeta":1}',
        None,
        None,
        None,
    ]
    assert table.column("properties").to_pylist() == [None, None, None, '{"z": 1, "a": 2}']
    answers = decode_batch(SURVEY_ANSWER, [kano(dysfunctional_score=4, wave=3)]).table
    assert answers.column("extra").to_pylist() == ['{"wave":3}']
    assert answers.column("dysfunctional_score").to_pylist() == [4]


def test_an_extra_field_takes_the_careful_path_to_the_same_row() -> None:
    """Payloads with unknown fields are decoded by a second code path: it must land the same values."""
    plain, extended = decode_batch(
        TOUCHPOINT, [touchpoint(FULL_TOUCHPOINT), touchpoint(FULL_TOUCHPOINT, new=1)]
    ).table.to_pylist()
    for row in (plain, extended):
        del row["payload_hash"]
    assert extended.pop("extra") == '{"new":1}'
    assert plain.pop("extra") is None
    assert extended == plain


def test_an_unknown_field_does_not_hide_a_wrong_known_one() -> None:
    [reject] = decode_batch(TOUCHPOINT, [touchpoint(channel="fax", new=1)]).rejects
    assert (reject.reason, reject.detail) == (ENUM, "Invalid enum value 'fax' - at `$.channel`")


@pytest.mark.parametrize(
    ("name", "scale", "resolved"),
    [
        ("nps", None, "0-10"),
        ("csat", None, "1-5"),
        ("ces", None, "1-7"),
        ("ces", "1-5", "1-5"),
        ("ces", "1-7", "1-7"),
        ("cxi", None, "1-5"),
        ("importance", None, "1-5"),
        ("kano", None, "1-5"),
    ],
)
def test_the_scale_column_holds_the_resolved_scale(name: str, scale: str | None, resolved: str) -> None:
    for given in (DROP, None) if scale is None else (scale,):
        fields: dict[str, Any] = {"survey": name, "score": 3, "scale": given}
        if name == "kano":
            fields["dysfunctional_score"] = 5
        table = decode_batch(SURVEY_ANSWER, [survey(**fields)]).table
        assert table.column("scale").to_pylist() == [resolved]


# The XXH3-64 of these exact bytes. Hashes are stored in Parquet and compared across runs to tell a
# resent duplicate from a conflict: the value must never change with a library or platform.
PINNED_PAYLOAD = (
    b'{"schema_version":1,"event_id":"e1","customer_id":"c1",'
    b'"occurred_at":"2026-01-05T10:00:00Z","channel":"web","touchpoint":"home_page"}'
)
PINNED_HASH = 6_358_257_305_849_017_405


def test_payload_hash_is_of_the_exact_bytes() -> None:
    same_record_other_bytes = json.dumps(json.loads(PINNED_PAYLOAD)).encode()  # spaces after separators
    assert same_record_other_bytes != PINNED_PAYLOAD
    table = decode_batch(TOUCHPOINT, [PINNED_PAYLOAD, PINNED_PAYLOAD, same_record_other_bytes]).table
    assert table.schema.field("payload_hash").type == pa.uint64()
    first, again, other = table.column("payload_hash").to_pylist()
    assert first == again == PINNED_HASH
    assert other != first
    survey_hashes = decode_batch(SURVEY_ANSWER, [survey(), survey(score=8)]).table.column("payload_hash").to_pylist()
    assert survey_hashes[0] != survey_hashes[1]


# -- record-level rejects: size, shape, batch positions ------------------------------------------


def _padded(size: int) -> bytes:
    """A valid touchpoint of exactly `size` bytes."""
    base = touchpoint(properties={"pad": ""})
    payload = touchpoint(properties={"pad": "x" * (size - len(base))})
    assert len(payload) == size
    return payload


def test_payload_too_large_is_checked_on_bytes_before_parsing() -> None:
    at_limit, over = _padded(300), _padded(301)
    decoded = decode_batch(TOUCHPOINT, [at_limit, over, b"{" * 301], max_payload_bytes=300)
    assert decoded.valid_index == [0]
    assert [(r.index, r.reason, r.detail, r.record_id) for r in decoded.rejects] == [
        (1, Reason.PAYLOAD_TOO_LARGE, "301 bytes > 300", None),
        (2, Reason.PAYLOAD_TOO_LARGE, "301 bytes > 300", None),
    ]
    # The default limit is the configuration's default, 64 KiB.
    assert decode_batch(TOUCHPOINT, [_padded(65_536)]).rejects == []
    [reject] = decode_batch(TOUCHPOINT, [_padded(65_537)]).rejects
    assert (reject.reason, reject.detail) == (Reason.PAYLOAD_TOO_LARGE, "65537 bytes > 65536")


def test_characters_not_bytes_are_counted_for_lengths() -> None:
    payload = touchpoint(event_id="€" * 128)  # 384 bytes of UTF-8, 128 characters
    assert decode_batch(TOUCHPOINT, [payload]).rejects == [] and schema_accepts(TOUCHPOINT, payload)


@pytest.mark.parametrize(
    ("payload", "kind"),
    [(b"[1, 2]", "list"), (b'"text"', "str"), (b"42", "int"), (b"1.5", "float"), (b"true", "bool")],
)
def test_not_an_object(payload: bytes, kind: str) -> None:
    [reject] = decode_batch(SURVEY_ANSWER, [payload]).rejects
    assert (reject.reason, reject.detail) == (Reason.NOT_AN_OBJECT, f"expected a JSON object, got {kind}")


@pytest.mark.parametrize("payload", [b"", b"{", b'{"a": }', b"{} {}", b"\xff", b'{"schema_version": 1,}'])
def test_malformed_json(payload: bytes) -> None:
    [reject] = decode_batch(TOUCHPOINT, [payload]).rejects
    assert reject.reason == Reason.MALFORMED_JSON
    assert (reject.record_id, reject.customer_id) == (None, None)


def test_a_mixed_batch_keeps_positions_and_the_ids_it_could_read() -> None:
    payloads = [
        touchpoint(event_id="e0"),
        touchpoint(event_id="e1", customer_id="c1", channel="fax"),
        touchpoint(event_id="e2"),
        b"not json",
        touchpoint(event_id="e4", schema_version=2, customer_id="c4"),
        touchpoint(event_id="e5", extra_field=True),
        touchpoint(event_id=7, customer_id=["c6"], revenue="x"),
    ]
    decoded = decode_batch(TOUCHPOINT, payloads)
    assert decoded.valid_index == [0, 2, 5]
    assert decoded.table.column("event_id").to_pylist() == ["e0", "e2", "e5"]
    assert [(r.index, r.reason, r.record_id, r.customer_id) for r in decoded.rejects] == [
        (1, ENUM, "e1", "c1"),
        (3, Reason.MALFORMED_JSON, None, None),
        (4, Reason.UNSUPPORTED_VERSION, "e4", "c4"),
        (6, V, None, None),
    ]


def test_an_empty_batch_is_an_empty_table_with_the_contract_schema() -> None:
    for contract in (TOUCHPOINT, SURVEY_ANSWER):
        decoded = decode_batch(contract, [])
        assert decoded.table.schema == contract.arrow and decoded.table.num_rows == 0
        assert (decoded.valid_index, decoded.rejects) == ([], [])


# -- one record never stops a batch -----------------------------------------------------------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_properties(depth: int) -> bytes:
    """A touchpoint whose `properties` holds arrays `depth` levels deep (the record: depth + 2)."""
    return touchpoint()[:-1] + b', "properties": {"deep": ' + nested(depth) + b"}}"


@pytest.mark.parametrize(
    ("contract", "payload"),
    [
        (TOUCHPOINT, nested(10000)),
        (SURVEY_ANSWER, nested(10000)),
        (TOUCHPOINT, deep_properties(10000)),
        (TOUCHPOINT, b'{"schema_version": 1, "deep": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}"),
        (SURVEY_ANSWER, survey()[:-1] + b', "campaign": ' + nested(2000) + b"}"),  # an unknown field
    ],
    ids=["bare array tp", "bare array sv", "in properties", "objects", "unknown field sv"],
)
def test_json_nested_too_deeply_is_a_dead_letter_and_the_batch_goes_on(contract: Contract, payload: bytes) -> None:
    good = [touchpoint(event_id=f"e{i}") if contract is TOUCHPOINT else survey(response_id=f"r{i}") for i in range(600)]
    payloads = [*good[:300], payload, *good[300:]]  # in the first fast part of 512
    decoded = decode_batch(contract, payloads)
    [reject] = decoded.rejects
    assert (reject.index, reject.reason) == (300, Reason.TOO_DEEPLY_NESTED), reject.detail
    assert "nested more than" in reject.detail
    assert decoded.table.num_rows == 600 and decoded.valid_index == [*range(300), *range(301, 601)]


def test_json_900_levels_deep_lands_whatever_the_callers_stack() -> None:
    payload = deep_properties(900)

    def at_depth(frames: int) -> Any:
        return decode_batch(TOUCHPOINT, [payload, touchpoint()]) if frames == 0 else at_depth(frames - 1)

    for frames in (0, 400):  # a Beam worker or a Prefect task calls from deep stacks
        decoded = at_depth(frames)
        assert decoded.rejects == [] and decoded.table.num_rows == 2
        assert json.loads(decoded.table.column("properties")[0].as_py()) == {"deep": json.loads(nested(900))}


REPEATED_KEYS = [
    ("event_id", touchpoint(event_id="first")[:-1] + b', "event_id": "second"}'),
    ("customer_id", touchpoint()[:-1] + b', "customer_id": "cus-2"}'),
    ("stage", touchpoint(stage=None)[:-1] + b', "stage": "purchase"}'),  # null, then a value
    ("revenue", touchpoint(revenue=1.0)[:-1] + b', "revenue": 2.0}'),
    ("properties", touchpoint(properties={"a": 1})[:-1] + b', "properties": {"a": 2}}'),
    ("event_id", touchpoint()[:-1] + b', "event\\u005fid": "escaped"}'),  # the same key, escaped
    ("schema_version", b'{"schema_version": 1, ' + touchpoint()[1:]),
]


@pytest.mark.parametrize(("key", "payload"), REPEATED_KEYS, ids=[f"{k} {i}" for i, (k, _) in enumerate(REPEATED_KEYS)])
def test_a_key_twice_in_the_object_is_malformed_json_on_both_paths(key: str, payload: bytes) -> None:
    good = [touchpoint(event_id=f"e{i}") for i in range(20)]
    for batch, index in (([payload], 0), ([*good, payload, *good], 20)):  # alone; on the fast path
        decoded = decode_batch(TOUCHPOINT, batch)
        [reject] = decoded.rejects
        assert (reject.index, reject.reason) == (index, Reason.MALFORMED_JSON), reject.detail
        assert f"the key '{key}' more than once" in reject.detail
        assert decoded.table.num_rows == len(batch) - 1
    careful = decode_batch(TOUCHPOINT, [payload, touchpoint(campaign="x")])  # a careful part
    assert [(r.index, r.reason) for r in careful.rejects] == [(0, Reason.MALFORMED_JSON)]


def test_a_key_twice_in_a_survey_answer_is_malformed_json() -> None:
    payload = survey(score=9)[:-1] + b', "score": 10}'
    decoded = decode_batch(SURVEY_ANSWER, [survey(response_id="a"), payload, survey(response_id="b")])
    assert [(r.index, r.reason) for r in decoded.rejects] == [(1, Reason.MALFORMED_JSON)]


def test_keys_repeated_inside_properties_are_the_producers_json_and_kept_as_sent() -> None:
    payload = touchpoint()[:-1] + b', "properties": {"a": 1, "a": 2}}'
    decoded = decode_batch(TOUCHPOINT, [payload])
    assert decoded.rejects == [] and decoded.table.column("properties").to_pylist() == ['{"a": 1, "a": 2}']


@pytest.mark.parametrize(
    "payload",
    [
        touchpoint(segment='say "hi"', properties={"q": 'a "b" c'}),  # quotes escaped as \"
        touchpoint()[:-1] + b', "segment": "\\u0022quoted\\u0022"}',  # quotes escaped as \u0022
        touchpoint(segment="\x00absent\x00", stage=None),  # the text the fast structs use for "left out"
        touchpoint(revenue=None, product_line=None, properties=None),  # nulls are keys too
    ],
    ids=["escaped quotes", "unicode-escaped quotes", "marker text", "nulls"],
)
def test_records_that_look_odd_to_the_key_count_land_exactly_as_sent(payload: bytes) -> None:
    batch = [touchpoint(event_id=f"e{i}") for i in range(10)] + [payload]
    decoded = decode_batch(TOUCHPOINT, batch)
    assert decoded.rejects == [] and decoded.table.num_rows == 11
    sent = json.loads(payload)
    row = decoded.table.slice(10).to_pylist()[0]
    for field in ("segment", "stage", "product_line", "revenue"):
        assert row[field] == sent.get(field)
    assert row["properties"] == (None if sent.get("properties") is None else json.dumps(sent["properties"]))


def test_an_unexpected_exception_on_one_record_is_an_internal_error_the_others_land(monkeypatch) -> None:
    from parcours.schemas import contracts

    transpose = contracts._transpose

    def breaks_on_boom(contract: Contract, records: list) -> dict:
        if any(r.event_id == "boom" for r in records):
            raise KeyError("a bug met by this record")
        return transpose(contract, records)

    monkeypatch.setattr(contracts, "_transpose", breaks_on_boom)
    payloads = [touchpoint(event_id=f"e{i}") for i in range(1200)]
    payloads[700] = touchpoint(event_id="boom", customer_id="cus-7")
    decoded = decode_batch(TOUCHPOINT, payloads)
    [reject] = decoded.rejects
    assert (reject.index, reject.reason) == (700, Reason.INTERNAL_ERROR)
    assert reject.detail.startswith("KeyError: 'a bug met by this record'")
    assert decoded.valid_index == [i for i in range(1200) if i != 700]
    assert decoded.table.column("event_id").to_pylist() == [f"e{i}" for i in range(1200) if i != 700]


def test_an_unexpected_exception_in_the_survey_rules_is_an_internal_error(monkeypatch) -> None:
    from parcours.schemas import contracts

    check = contracts._check_survey

    def breaks_on_boom(answer):
        if answer.question_id == "boom":
            return 1 / 0
        return check(answer)

    monkeypatch.setattr(contracts, "_check_survey", breaks_on_boom)
    decoded = decode_batch(SURVEY_ANSWER, [survey(response_id="a"), survey(question_id="boom"), survey(score=11)])
    assert [(r.index, r.reason) for r in decoded.rejects] == [(1, Reason.INTERNAL_ERROR), (2, Reason.OUT_OF_RANGE)]
    assert decoded.rejects[0].detail.startswith("ZeroDivisionError: division by zero")
    assert decoded.table.column("response_id").to_pylist() == ["a"]
