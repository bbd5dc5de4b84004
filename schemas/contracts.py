"""The event contracts, in their three forms, kept in one place so they cannot drift apart.

* the JSON Schema files beside this module are the contract for producers;
* the msgspec structs below decode and check a whole micro-batch in C (~1 µs a record),
  where a pure-Python JSON Schema validator would be the bottleneck of the pipeline;
* the Arrow schemas are what lands in Parquet.

`tests/test_contracts.py` runs the same valid and invalid payloads through the JSON Schema
(with `jsonschema`) and through `decode_batch`, so a change to one form that is not made to
the other fails there.

A payload that cannot be used becomes a `Reject` with a reason code, never an exception and
never a silent drop: one record never stops a batch. JSON nested too deeply for the decoder is
`too_deeply_nested`, an object with a key twice is `malformed_json`, and any unexpected exception
while decoding or checking a record is caught for that record alone (`internal_error`, with the
exception's class and message) while the rest of the batch is decoded as usual. Checks that
need run context (event time against the watermark or the wall clock, duplicates, the configured
stages) are made later by the pipeline; this module checks each record alone.
"""

from __future__ import annotations

import json
import operator
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

SCHEMA_VERSION = 1

CHANNELS = ("web", "app", "store", "call_center", "email", "sms", "social", "chat", "other")
SURVEYS = ("nps", "csat", "ces", "cxi", "kano", "importance")

# (survey, scale) -> inclusive score range; `None` scale means "the survey's default".
SCALE_RANGES: dict[tuple[str, str], tuple[int, int]] = {
    ("nps", "0-10"): (0, 10),
    ("csat", "1-5"): (1, 5),
    ("ces", "1-5"): (1, 5),
    ("ces", "1-7"): (1, 7),
    ("cxi", "1-5"): (1, 5),
    ("importance", "1-5"): (1, 5),
    ("kano", "1-5"): (1, 5),
}
DEFAULT_SCALES = {
    "nps": "0-10",
    "csat": "1-5",
    "ces": "1-7",
    "cxi": "1-5",
    "importance": "1-5",
    "kano": "1-5",
}


class Reason:
    """Dead-letter reason codes. Stable strings: dashboards and alerts filter on them."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_VERSION = "unsupported_schema_version"
    SCHEMA_VIOLATION = "schema_violation"
    UNKNOWN_ENUM = "unknown_enum_value"
    OUT_OF_RANGE = "out_of_range"
    FUTURE_TIMESTAMP = "timestamp_in_future"
    TOO_LATE = "later_than_allowed_lateness"
    BEFORE_EARLIEST = "before_earliest_date"
    DUPLICATE_CONFLICT = "duplicate_id_conflict"
    KEY_MISMATCH = "key_not_customer_id"
    TOO_DEEPLY_NESTED = "too_deeply_nested"
    UNKNOWN_STAGE = "unknown_stage"
    RESERVED_VALUE = "reserved_value"  # a segment or product line spelt as a word the views reserve
    # Not a data reason: parcours itself failed on this record (a bug). Counted apart, and a run
    # stops when too many records of a batch hit it (`pipelines.run.TooManyInternalErrors`).
    INTERNAL_ERROR = "internal_error"


# JSON nesting the decoders accept: msgspec and the `json` module recurse once per level, under
# Python's recursion limit. `decode_batch` keeps this much headroom above the caller's stack, so
# the limit is the same in a test, a Beam worker or a Prefect task.
MAX_NESTING = 1000
# Characters of an exception's message kept in an `internal_error` detail.
_ERROR_CHARS = 1000


Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Name = Annotated[str, msgspec.Meta(max_length=128)]
# RFC 3339 with an offset, checked as text (the same pattern as the JSON Schema files) and then
# parsed: msgspec's own datetime type also takes offsets without a colon, which RFC 3339 does not.
RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})(?!\n)$"
Timestamp = Annotated[str, msgspec.Meta(pattern=RFC3339)]


# gc=False: a batch creates one struct per record, none holds a reference cycle, so the cyclic
# collector need not track them (measured: decoding 1.6x faster in a busy worker).
class TouchpointV1(msgspec.Struct, frozen=True, gc=False):
    schema_version: int
    event_id: Id
    customer_id: Id
    occurred_at: Timestamp
    channel: Literal["web", "app", "store", "call_center", "email", "sms", "social", "chat", "other"]
    touchpoint: Id
    stage: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    product_line: Name | None = None
    segment: Name | None = None
    outcome: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    revenue: float | None = None
    properties: dict[str, Any] | None = None


class SurveyAnswerV1(msgspec.Struct, frozen=True, gc=False):
    schema_version: int
    response_id: Id
    customer_id: Id
    answered_at: Timestamp
    survey: Literal["nps", "csat", "ces", "cxi", "kano", "importance"]
    question_id: Id
    score: int
    scale: Literal["0-10", "1-5", "1-7"] | None = None
    dysfunctional_score: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    touchpoint: Name | None = None
    stage: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    event_id: Name | None = None
    verbatim: Annotated[str, msgspec.Meta(max_length=10000)] | None = None
    language: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*(?!\n)$")] | None = None


UTC_MICROS = pa.timestamp("us", tz="UTC")

TOUCHPOINT_ARROW = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("occurred_at", UTC_MICROS, nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("touchpoint", pa.string(), nullable=False),
        pa.field("stage", pa.string()),
        pa.field("product_line", pa.string()),
        pa.field("segment", pa.string()),
        pa.field("outcome", pa.string()),
        pa.field("revenue", pa.float64()),
        pa.field("properties", pa.string()),  # JSON text
        pa.field("extra", pa.string()),  # JSON text: fields added within the major version
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("payload_hash", pa.uint64(), nullable=False),  # duplicate vs conflict
    ]
)

SURVEY_ARROW = pa.schema(
    [
        pa.field("response_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("answered_at", UTC_MICROS, nullable=False),
        pa.field("survey", pa.string(), nullable=False),
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("score", pa.int16(), nullable=False),
        pa.field("scale", pa.string(), nullable=False),  # resolved: the survey default when absent
        pa.field("dysfunctional_score", pa.int16()),
        pa.field("touchpoint", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("event_id", pa.string()),
        pa.field("verbatim", pa.string()),
        pa.field("language", pa.string()),
        pa.field("extra", pa.string()),
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("payload_hash", pa.uint64(), nullable=False),
    ]
)

DEAD_LETTER_ARROW = pa.schema(
    [
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # topic name or file path
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("record_id", pa.string()),  # event_id / response_id when it could be read
        pa.field("customer_id", pa.string()),
        pa.field("payload", pa.binary(), nullable=False),
        pa.field("payload_text", pa.string()),  # the payload as UTF-8, invalid bytes replaced
    ]
)


@dataclass(frozen=True, slots=True)
class Contract:
    name: str
    struct: type[msgspec.Struct]
    arrow: pa.Schema
    id_field: str
    time_field: str
    schema_file: str

    @property
    def known_fields(self) -> frozenset[str]:
        return frozenset(self.struct.__struct_fields__)

    def json_schema(self) -> dict[str, Any]:
        return json.loads(resources.files("parcours.schemas").joinpath(self.schema_file).read_text("utf-8"))


TOUCHPOINT = Contract("touchpoint", TouchpointV1, TOUCHPOINT_ARROW, "event_id", "occurred_at", "touchpoint.v1.json")
SURVEY_ANSWER = Contract(
    "survey_answer", SurveyAnswerV1, SURVEY_ARROW, "response_id", "answered_at", "survey_answer.v1.json"
)


# What the fast decoder's structs hold for an optional field left out of the object, told apart
# from one sent as `null` (None) so that the keys of each object can be counted (`_key_check`).
# None of them can come from JSON that passes the contract: a text with a NUL (after the
# vectorised check it becomes null: a producer sending this very text sees its record take the
# careful path, see `_key_check`), NaN (not JSON), -1 (below `dysfunctional_score`'s range).
_ABSENT_TEXT = "\x00absent\x00"
_ABSENT_NUMBER = {"revenue": float("nan"), "dysfunctional_score": -1}


def _strict(contract_struct: type[msgspec.Struct], name: str, **fields: tuple) -> type[msgspec.Struct]:
    """The fast decoder's struct: no unknown field, and a left-out optional field marked."""
    optional = [
        (f.name, f.type, _ABSENT_NUMBER.get(f.name, _ABSENT_TEXT))
        for f in msgspec.structs.fields(contract_struct)
        if f.default is None and f.name not in fields
    ]
    extra = [(field_name, *spec) for field_name, spec in fields.items()]
    return msgspec.defstruct(
        name, optional + extra, bases=(contract_struct,), forbid_unknown_fields=True, frozen=True, gc=False
    )


# `properties` is kept as the JSON text it arrived as (checked to be an object or null below):
# decoding it into a dict only to encode it again cost more than the rest of the record. Left
# out, it is empty text.
_NO_PROPERTIES = msgspec.Raw(b"")
_StrictTouchpointV1 = _strict(TouchpointV1, "_StrictTouchpointV1", properties=(msgspec.Raw, _NO_PROPERTIES))
_StrictSurveyAnswerV1 = _strict(SurveyAnswerV1, "_StrictSurveyAnswerV1")


class _PropertiesText(msgspec.Struct):
    properties: msgspec.Raw = msgspec.Raw(b"null")


_STRICT_DECODERS = {
    "touchpoint": msgspec.json.Decoder(_StrictTouchpointV1),
    "survey_answer": msgspec.json.Decoder(_StrictSurveyAnswerV1),
}
_PROPERTIES_TEXT = msgspec.json.Decoder(_PropertiesText)
# Payloads decoded per list comprehension on the fast path; a part holding any record the
# fast decoder refuses is decoded record by record.
_FAST_PART = 512


@dataclass(frozen=True, slots=True)
class Reject:
    index: int  # position of the payload in the batch
    reason: str
    detail: str
    record_id: str | None = None
    customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    table: pa.Table  # valid records, in input order, with the contract's Arrow schema
    valid_index: list[int]  # input position of each row of `table`
    rejects: list[Reject]


def _classify(error: msgspec.ValidationError) -> str:
    message = str(error)
    if message.startswith("Invalid enum value"):
        return Reason.UNKNOWN_ENUM
    if message.startswith(("Expected `int` >=", "Expected `int` <=")):
        return Reason.OUT_OF_RANGE
    return Reason.SCHEMA_VIOLATION


def _given(value: Any) -> Any:
    """A field's value as sent, None when it was left out (the fast structs mark it)."""
    if value is _ABSENT_TEXT or (type(value) is int and value == -1):
        return None
    return value


def _check_survey(answer: SurveyAnswerV1) -> tuple[str, str] | None:
    scale = _given(answer.scale) or DEFAULT_SCALES[answer.survey]
    dysfunctional = _given(answer.dysfunctional_score)
    bounds = SCALE_RANGES.get((answer.survey, scale))
    if bounds is None:
        allowed = sorted(s for (survey, s) in SCALE_RANGES if survey == answer.survey)
        return (
            Reason.SCHEMA_VIOLATION,
            f"scale '{scale}' is not allowed for {answer.survey} (allowed: {allowed}) - at `$.scale`",
        )
    low, high = bounds
    if not low <= answer.score <= high:
        return (
            Reason.OUT_OF_RANGE,
            f"score {answer.score} is outside {answer.survey} scale {scale} - at `$.score`",
        )
    if answer.survey == "kano" and dysfunctional is None:
        return (
            Reason.SCHEMA_VIOLATION,
            "kano answers carry the pair: `dysfunctional_score` is required - at `$.dysfunctional_score`",
        )
    if answer.survey != "kano" and dysfunctional is not None:
        return (
            Reason.SCHEMA_VIOLATION,
            "`dysfunctional_score` is only for kano answers - at `$.dysfunctional_score`",
        )
    return None


def _json_or_none(value: Any) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


def _repeated_key(payload: bytes) -> str | None:
    """The first key that the top-level object holds twice, if any.

    msgspec (like most JSON parsers) keeps the last value of a repeated key; which value the
    producer meant cannot be known, so the record is refused. Only the top-level object is
    checked: its keys are the contract's fields, while `properties` is free producer JSON.
    """
    try:
        pairs = json.loads(payload, object_pairs_hook=list)  # every object as its list of pairs
    except ValueError:  # msgspec read it; the json module has no more to say
        return None
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None


def _decode_one(contract: Contract, index: int, payload: bytes) -> tuple[msgspec.Struct, str | None] | Reject:
    """The careful path: classify what is wrong, and keep fields added within the version."""
    try:
        return _decode_one_checked(contract, index, payload)
    except RecursionError:
        return _too_deep(index)


def _too_deep(index: int) -> Reject:
    detail = f"JSON nested more than about {MAX_NESTING} levels deep (arrays and objects): refused unread"
    return Reject(index, Reason.TOO_DEEPLY_NESTED, detail)


def _decode_one_checked(contract: Contract, index: int, payload: bytes) -> tuple[msgspec.Struct, str | None] | Reject:
    try:
        obj = msgspec.json.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Reject(index, Reason.MALFORMED_JSON, str(exc))
    if not isinstance(obj, dict):
        return Reject(index, Reason.NOT_AN_OBJECT, f"expected a JSON object, got {type(obj).__name__}")
    repeated = _repeated_key(payload)
    if repeated is not None:
        detail = f"JSON object has the key {repeated!r} more than once: which value is meant is unknown - at `$`"
        return Reject(index, Reason.MALFORMED_JSON, detail)
    record_id, customer_id = obj.get(contract.id_field), obj.get("customer_id")
    record_id = record_id if isinstance(record_id, str) else None
    customer_id = customer_id if isinstance(customer_id, str) else None
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        detail = f"schema_version {version!r} is not {SCHEMA_VERSION} - at `$.schema_version`"
        return Reject(index, Reason.UNSUPPORTED_VERSION, detail, record_id, customer_id)
    try:
        record = msgspec.convert(obj, contract.struct)
    except msgspec.ValidationError as exc:
        return Reject(index, _classify(exc), str(exc), record_id, customer_id)
    if contract is TOUCHPOINT:  # the text as sent, as on the fast path
        record = msgspec.structs.replace(record, properties=_PROPERTIES_TEXT.decode(payload).properties)
    unknown = obj.keys() - contract.known_fields
    return record, (_json_or_none({key: obj[key] for key in sorted(unknown)}) if unknown else None)


class _Careful(Exception):
    """A part of the batch that the fast path does not take as it is."""


def _fast_part(contract: Contract, payloads: Sequence[bytes], max_payload_bytes: int) -> list[msgspec.Struct]:
    decode = _STRICT_DECODERS[contract.name].decode
    if max(map(len, payloads)) > max_payload_bytes:
        raise _Careful
    records = [decode(payload) for payload in payloads]
    if set(map(_VERSION_OF, records)) != {SCHEMA_VERSION}:
        raise _Careful
    return records


_VERSION_OF = operator.attrgetter("schema_version")
# Errors that send a part of the batch to the careful path, which says what is wrong per record.
_NOT_FAST = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError, _Careful)


def decode_batch(contract: Contract, payloads: Sequence[bytes], max_payload_bytes: int = 65536) -> DecodedBatch:
    """Decode and check a micro-batch of raw payloads against one contract.

    Fast path: one typed decode in C per payload that refuses unknown fields, a list
    comprehension over each part of the batch, then every column checked and converted at
    once (timestamps parsed by Arrow, `properties` kept as the JSON text it arrived as, keys
    counted). A part holding anything the fast path does not accept (a bad record, another
    version, or a field added within the version) takes the careful path record by record,
    which says precisely what is wrong or keeps the new fields in `extra`.

    One record never stops the batch: should anything raise unexpectedly, the batch is decoded
    again part by part, then record by record in the part that raised, and each record that
    still raises becomes an `internal_error` dead letter.
    """
    with _nesting_headroom():
        try:
            return _decode_all(contract, payloads, max_payload_bytes)
        except Exception:  # isolated below, record by record
            return _decode_isolated(contract, payloads, max_payload_bytes)


class _nesting_headroom:  # a context manager, named like one
    """Python's recursion limit raised (never lowered) to MAX_NESTING above the current stack."""

    def __enter__(self) -> None:
        depth, frame = 0, sys._getframe()
        while frame is not None:
            depth, frame = depth + 1, frame.f_back
        if sys.getrecursionlimit() < depth + MAX_NESTING + 50:
            sys.setrecursionlimit(depth + MAX_NESTING + 50)

    def __exit__(self, *exc: object) -> None:
        return None


def _decode_isolated(contract: Contract, payloads: Sequence[bytes], max_payload_bytes: int) -> DecodedBatch:
    """The batch again, a part then a record at a time, to find the records that raise."""
    pieces: list[tuple[int, DecodedBatch]] = []
    for start in range(0, len(payloads), _FAST_PART):
        part = payloads[start : start + _FAST_PART]
        try:
            pieces.append((start, _decode_all(contract, part, max_payload_bytes)))
            continue
        except Exception:  # one record at a time below
            pass
        for index, payload in enumerate(part, start):
            try:
                pieces.append((index, _decode_all(contract, [payload], max_payload_bytes)))
            except RecursionError:
                pieces.append((index, _only_reject(contract, _too_deep(0))))
            except Exception as exc:  # a bug: kept as a dead letter with its cause
                message = str(exc)[:_ERROR_CHARS]
                detail = f"{type(exc).__name__}: {message} (an error in parcours, not in the record)"
                pieces.append((index, _only_reject(contract, Reject(0, Reason.INTERNAL_ERROR, detail))))
    tables = [piece.table for _, piece in pieces]
    valid_index = [start + i for start, piece in pieces for i in piece.valid_index]
    rejects = [
        Reject(start + r.index, r.reason, r.detail, r.record_id, r.customer_id)
        for start, piece in pieces
        for r in piece.rejects
    ]
    table = pa.concat_tables(tables) if tables else contract.arrow.empty_table()
    return DecodedBatch(table, valid_index, rejects)


def _only_reject(contract: Contract, reject: Reject) -> DecodedBatch:
    return DecodedBatch(contract.arrow.empty_table(), [], [reject])


def _decode_all(contract: Contract, payloads: Sequence[bytes], max_payload_bytes: int) -> DecodedBatch:
    records: list[msgspec.Struct] = []
    extras: list[str | None] = []
    valid_index: list[int] = []
    rejects: list[Reject] = []
    # Rows decoded by the fast structs, whose keys are still to be counted (the careful path
    # checks its own records for repeated keys).
    counted: list[bool] = []
    for start in range(0, len(payloads), _FAST_PART):
        part = payloads[start : start + _FAST_PART]
        try:
            fast = _fast_part(contract, part, max_payload_bytes)
        except _NOT_FAST:
            _careful_part(contract, part, start, max_payload_bytes, records, extras, valid_index, rejects, counted)
        else:
            records += fast
            extras += [None] * len(fast)
            valid_index += range(start, start + len(fast))
            counted += [True] * len(fast)
    columns = _transpose(contract, records)
    suspects = _key_check(contract, payloads, valid_index, records, columns, counted)
    columns = _absent_to_null(contract, columns)
    keep = np.ones(len(records), bool)
    if contract is TOUCHPOINT:
        properties, not_objects = _properties_text(columns["properties"])
        columns["properties"] = properties
        for position in not_objects:
            rejects.append(_reject_careful(contract, valid_index[position], payloads[valid_index[position]]))
            keep[position] = False
    sent_as_absent: dict[str, dict[int, Any]] = {}
    for position in suspects:
        if keep[position]:  # a key may be there twice: the careful path says
            outcome = _decode_one(contract, valid_index[position], payloads[valid_index[position]])
            if isinstance(outcome, Reject):
                rejects.append(outcome)
                keep[position] = False
                continue
            for name in _OPTIONAL[contract.name]:  # a producer who sent the very marker text
                if name != "properties" and getattr(outcome[0], name) == _ABSENT_TEXT:
                    sent_as_absent.setdefault(name, {})[position] = _ABSENT_TEXT
    for name, values in sent_as_absent.items():
        column = columns[name].to_pylist()
        for position, value in values.items():
            column[position] = value
        columns[name] = pa.array(column, pa.string())
    times = _parse_times(columns[contract.time_field])
    if times is None or contract is SURVEY_ANSWER:  # record by record: an impossible date, or survey rules
        parsed: list[datetime | None] = []
        for position, record in enumerate(records):
            outcome = _check_record(contract, record, valid_index[position]) if keep[position] else None
            if isinstance(outcome, Reject):
                rejects.append(outcome)
                keep[position] = False
                outcome = None
            parsed.append(outcome)
        times = pa.array(parsed, UTC_MICROS)
    columns[contract.time_field] = times
    hashes = (
        list(map(xxhash.xxh3_64_intdigest, payloads))
        if len(valid_index) == len(payloads)
        else [payload_hash(payloads[i]) for i in valid_index]
    )
    if not keep.all():  # rare: drop the rows rejected by a column check before converting
        mask, flags = pa.array(keep), keep.tolist()
        columns = {
            name: values.filter(mask) if isinstance(values, pa.Array) else _kept(values, flags)
            for name, values in columns.items()
        }
        extras, hashes, valid_index = _kept(extras, flags), _kept(hashes, flags), _kept(valid_index, flags)
    table = _to_arrow(contract, columns, extras, hashes)
    rejects.sort(key=lambda r: r.index)
    return DecodedBatch(table, valid_index, rejects)


def _kept(values: Sequence, flags: list[bool]) -> list:
    return [value for value, kept in zip(values, flags, strict=True) if kept]


def _absent_to_null(contract: Contract, columns: dict[str, Sequence]) -> dict[str, Sequence]:
    """Optional columns as Arrow arrays, a field left out null as a field sent as null."""
    for name, absent in _OPTIONAL[contract.name].items():
        if name == "properties":
            continue  # Raw text: `_properties_text`
        values = pa.array(columns[name], contract.arrow.field(name).type)
        if isinstance(absent, float):
            left_out = pc.fill_null(pc.is_nan(values), False)
        else:
            left_out = pc.fill_null(pc.equal(values, pa.scalar(absent, values.type)), False)
        columns[name] = pc.if_else(left_out, pa.scalar(None, values.type), values)
    return columns


_OPTIONAL = {
    contract.name: {
        f.name: _ABSENT_NUMBER.get(f.name, _ABSENT_TEXT)
        for f in msgspec.structs.fields(contract.struct)
        if f.default is None
    }
    for contract in (TOUCHPOINT, SURVEY_ANSWER)
}
# Fields that are JSON strings (the time fields too); `properties` is counted from its text.
_TEXT_FIELDS = {
    contract.name: tuple(
        name
        for name in contract.struct.__struct_fields__
        if name not in ("schema_version", "revenue", "score", "dysfunctional_score", "properties")
    )
    for contract in (TOUCHPOINT, SURVEY_ANSWER)
}


def _key_check(
    contract: Contract,
    payloads: Sequence[bytes],
    valid_index: list[int],
    records: list[msgspec.Struct],
    columns: dict[str, Sequence],
    counted: list[bool],
) -> list[int]:
    """Rows of the fast structs that may hold a key twice; none, nearly always.

    The typed decoder in C keeps the last of two values of a key without a word. Instead of a
    second parse, the quote characters are counted: in JSON text a `"` byte only delimits a
    string or is escaped (`\\"`) inside one, so an object whose keys are all known fields holds
    exactly 2 per key, plus 2 and the quotes it contains per string value, plus those of
    `properties` (kept as text). A repeated key adds at least its own 2. The only way a decoded
    quote has no `"` byte is the escape `\\u0022`: a payload holding that text is checked on the
    careful path too. Sums over the batch first, each a pass in C; rows only when they differ.
    """
    rows = [i for i, by_fast in enumerate(counted) if by_fast] if not all(counted) else None
    if rows is not None:
        if not rows:
            return []
        pick = operator.itemgetter(*rows) if len(rows) > 1 else (lambda values: (values[rows[0]],))
        columns = {name: pick(values) for name, values in columns.items()}
        texts = b"".join(payloads[valid_index[i]] for i in rows)
    else:
        texts = (
            b"".join(payloads)
            if len(valid_index) == len(payloads)
            else b"".join(map(payloads.__getitem__, valid_index))
        )
    escapes = b"\\" in texts  # one memchr; most batches hold no escape at all
    if escapes and b"\\u0022" in texts:
        return _rows_that_may_repeat_a_key(contract, payloads, valid_index, records, rows)
    n = len(records) if rows is None else len(rows)
    optional = _OPTIONAL[contract.name]
    left_out = {
        name: columns[name].count(_NO_PROPERTIES if name == "properties" else absent)
        for name, absent in optional.items()
    }
    keys = len(contract.struct.__struct_fields__) * n - sum(left_out.values())
    strings = sum(
        n - left_out[name] - columns[name].count(None) if name in optional else n
        for name in _TEXT_FIELDS[contract.name]
    )
    quotes = 2 * keys + 2 * strings
    if contract is TOUCHPOINT:
        quotes += b"".join(columns["properties"]).count(b'"')
    if escapes and b'\\"' in texts:  # quotes inside string values (else there are none)
        quotes += sum("".join(filter(None, columns[name])).count('"') for name in _TEXT_FIELDS[contract.name])
    if texts.count(b'"') == quotes:
        return []
    return _rows_that_may_repeat_a_key(contract, payloads, valid_index, records, rows)


def _rows_that_may_repeat_a_key(
    contract: Contract, payloads: Sequence[bytes], valid_index: list[int], records: list, rows: list[int] | None
) -> list[int]:
    return [
        position
        for position in (range(len(records)) if rows is None else rows)
        if _may_repeat_a_key(contract, payloads[valid_index[position]], records[position])
    ]


def _may_repeat_a_key(contract: Contract, payload: bytes, record: msgspec.Struct) -> bool:
    """`_key_check` for one record of the fast structs."""
    optional = _OPTIONAL[contract.name]
    quotes = 0
    for name in contract.struct.__struct_fields__:
        value = getattr(record, name)
        if name == "properties":
            quotes += 0 if value is _NO_PROPERTIES else 2 + bytes(value).count(b'"')
        elif name not in optional or not (value is optional[name] or value == _ABSENT_TEXT):
            quotes += 2 + (2 + value.count('"') if isinstance(value, str) else 0)
    return payload.count(b'"') != quotes or b"\\u0022" in payload


def _properties_text(raws: Sequence[msgspec.Raw]) -> tuple[pa.Array, list[int]]:
    """`properties` as the JSON text it arrived as (null for JSON null or left out), and where
    it is no object."""
    texts = pa.array(list(map(bytes, raws)), pa.binary())
    if not len(texts):
        return texts.cast(pa.string()), []
    is_null = pc.or_(pc.equal(texts, pa.scalar(b"null", pa.binary())), pc.equal(pc.binary_length(texts), 0))
    is_object = pc.equal(pc.binary_slice(texts, 0, 1), pa.scalar(b"{", pa.binary()))
    not_objects = pc.indices_nonzero(pc.invert(pc.or_(is_null, is_object))).to_pylist()
    return pc.if_else(is_null, pa.scalar(None, pa.binary()), texts).cast(pa.string()), not_objects


def _reject_careful(contract: Contract, index: int, payload: bytes) -> Reject:
    outcome = _decode_one(contract, index, payload)
    if isinstance(outcome, Reject):
        return outcome
    record = outcome[0]
    detail = "Expected `object | null` - at `$.properties`"
    return Reject(index, Reason.SCHEMA_VIOLATION, detail, *_ids(contract, record))


def _careful_part(
    contract: Contract,
    part: Sequence[bytes],
    start: int,
    max_payload_bytes: int,
    records: list,
    extras: list,
    valid_index: list[int],
    rejects: list[Reject],
    counted: list[bool],
) -> None:
    fast = _STRICT_DECODERS[contract.name]
    for index, payload in enumerate(part, start):
        if len(payload) > max_payload_bytes:
            rejects.append(Reject(index, Reason.PAYLOAD_TOO_LARGE, f"{len(payload)} bytes > {max_payload_bytes}"))
            continue
        extra, by_fast = None, True
        try:
            record = fast.decode(payload)
            if record.schema_version != SCHEMA_VERSION:
                raise ValueError("careful path")
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError, ValueError):
            outcome = _decode_one(contract, index, payload)
            if isinstance(outcome, Reject):
                rejects.append(outcome)
                continue
            (record, extra), by_fast = outcome, False
        records.append(record)
        extras.append(extra)
        valid_index.append(index)
        counted.append(by_fast)


def _parse_times(texts: Sequence[str]) -> pa.Array | None:
    """Every record's event time, parsed by Arrow at once; None if any is not a real instant.

    The text already matched the RFC 3339 pattern; Arrow takes the same shapes once in capitals
    (`T`, `Z`) and with at most 6 fractional digits, and gives the same instants (compared on
    edge cases: offsets, leap days, 24:00, leap seconds, year 1 and 9999). Anything else (an
    impossible date, year 0, nanoseconds) is left to the record-by-record check, which says
    what is wrong or parses it.
    """
    texts = pa.array(texts, pa.string())
    if pc.any(pc.starts_with(texts, "0000")).as_py():  # Arrow takes year 0, Python (and RFC 3339 in practice) not
        return None
    try:
        return pc.utf8_upper(texts).cast(UTC_MICROS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _check_record(contract: Contract, record: msgspec.Struct, index: int) -> datetime | Reject:
    """The record's event time, or why the record is rejected (time, or the survey rules)."""
    text = getattr(record, contract.time_field)
    try:
        # fromisoformat takes "T"/"Z" in capitals only; the pattern already vetted the shape.
        when = datetime.fromisoformat(text.upper())
    except ValueError as exc:
        detail = f"{text!r} is not a valid date-time ({exc}) - at `$.{contract.time_field}`"
        return Reject(index, Reason.SCHEMA_VIOLATION, detail, *_ids(contract, record))
    if contract is SURVEY_ANSWER:
        problem = _check_survey(record)
        if problem is not None:
            return Reject(index, problem[0], problem[1], record.response_id, record.customer_id)
    return when


def _ids(contract: Contract, record: msgspec.Struct) -> tuple[str, str]:
    return getattr(record, contract.id_field), record.customer_id


def payload_hash(payload: bytes) -> int:
    """A stable 64-bit hash of the raw payload: tells a resent duplicate from a conflicting one.

    XXH3 is specified and stable across versions and platforms (hashes are stored and compared
    across runs), and ~5x faster than blake2b here.
    """
    return xxhash.xxh3_64_intdigest(payload)


def _transpose(contract: Contract, records: list) -> dict[str, Sequence]:
    """Field name -> the records' values, in one transposition in C (astuple + zip)."""
    names = contract.struct.__struct_fields__
    if not records:
        return {name: () for name in names}
    return dict(zip(names, zip(*map(msgspec.structs.astuple, records), strict=True), strict=True))


def _to_arrow(contract: Contract, by_name: dict[str, Sequence], extras: list, hashes: list) -> pa.Table:
    columns = {name: by_name[name] for name in contract.arrow.names if name in by_name}
    if contract is SURVEY_ANSWER:
        surveys = pa.array(by_name["survey"], pa.string())
        defaults = pc.take(pa.array(DEFAULT_SCALES.values()), pc.index_in(surveys, value_set=pa.array(DEFAULT_SCALES)))
        columns["scale"] = pc.coalesce(pa.array(by_name["scale"], pa.string()), defaults)
    columns["extra"] = extras
    columns["schema_version"] = pa.repeat(pa.scalar(SCHEMA_VERSION, pa.int16()), len(hashes))
    columns["payload_hash"] = hashes
    return pa.table(columns, schema=contract.arrow)
