"""The event contracts, in their three forms, kept in one place so they cannot drift apart.

* the JSON Schema files beside this module are the contract for producers;
* the msgspec structs below decode and check a whole micro-batch in C (~1 µs a record),
  where a pure-Python JSON Schema validator would be the bottleneck of the pipeline;
* the Arrow schemas are what lands in Parquet.

`tests/test_contracts.py` runs the same valid and invalid payloads through the JSON Schema
(with `jsonschema`) and through `decode_batch`, so a change to one form that is not made to
the other fails there.

A payload that cannot be used becomes a `Reject` with a reason code, never an exception and
never a silent drop. Checks that need run context (event time against the watermark or the
wall clock, duplicates) are made later by the pipeline; this module checks each record alone.
"""

from __future__ import annotations

import json
import operator
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


class _StrictTouchpointV1(TouchpointV1, forbid_unknown_fields=True):
    # Kept as the JSON text it arrived as (checked to be an object or null below): decoding it
    # into a dict only to encode it again cost more than the rest of the record.
    properties: msgspec.Raw = msgspec.Raw(b"null")


class _PropertiesText(msgspec.Struct):
    properties: msgspec.Raw = msgspec.Raw(b"null")


class _StrictSurveyAnswerV1(SurveyAnswerV1, forbid_unknown_fields=True):
    pass


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


def _check_survey(answer: SurveyAnswerV1) -> tuple[str, str] | None:
    scale = answer.scale or DEFAULT_SCALES[answer.survey]
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
    if answer.survey == "kano" and answer.dysfunctional_score is None:
        return (
            Reason.SCHEMA_VIOLATION,
            "kano answers carry the pair: `dysfunctional_score` is required - at `$.dysfunctional_score`",
        )
    if answer.survey != "kano" and answer.dysfunctional_score is not None:
        return (
            Reason.SCHEMA_VIOLATION,
            "`dysfunctional_score` is only for kano answers - at `$.dysfunctional_score`",
        )
    return None


def _json_or_none(value: Any) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


def _decode_one(contract: Contract, index: int, payload: bytes) -> tuple[msgspec.Struct, str | None] | Reject:
    """The careful path: classify what is wrong, and keep fields added within the version."""
    try:
        obj = msgspec.json.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Reject(index, Reason.MALFORMED_JSON, str(exc))
    if not isinstance(obj, dict):
        return Reject(index, Reason.NOT_AN_OBJECT, f"expected a JSON object, got {type(obj).__name__}")
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


def decode_batch(contract: Contract, payloads: Sequence[bytes], max_payload_bytes: int = 65536) -> DecodedBatch:
    """Decode and check a micro-batch of raw payloads against one contract.

    Fast path: one typed decode in C per payload that refuses unknown fields, a list
    comprehension over each part of the batch, then every column checked and converted at
    once (timestamps parsed by Arrow, `properties` kept as the JSON text it arrived as).
    A part holding anything the fast path does not accept (a bad record, another version, or a
    field added within the version) takes the careful path record by record, which says
    precisely what is wrong or keeps the new fields in `extra`.
    """
    records: list[msgspec.Struct] = []
    extras: list[str | None] = []
    valid_index: list[int] = []
    rejects: list[Reject] = []
    for start in range(0, len(payloads), _FAST_PART):
        part = payloads[start : start + _FAST_PART]
        try:
            fast = _fast_part(contract, part, max_payload_bytes)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, _Careful):
            _careful_part(contract, part, start, max_payload_bytes, records, extras, valid_index, rejects)
        else:
            records += fast
            extras += [None] * len(fast)
            valid_index += range(start, start + len(fast))
    columns = _transpose(contract, records)
    keep = np.ones(len(records), bool)
    if contract is TOUCHPOINT:
        properties, not_objects = _properties_text(columns["properties"])
        columns["properties"] = properties
        for position in not_objects:
            rejects.append(_reject_careful(contract, valid_index[position], payloads[valid_index[position]]))
            keep[position] = False
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


def _properties_text(raws: Sequence[msgspec.Raw]) -> tuple[pa.Array, list[int]]:
    """`properties` as the JSON text it arrived as (null for JSON null), and where it is no object."""
    texts = pa.array(list(map(bytes, raws)), pa.binary())
    if not len(texts):
        return texts.cast(pa.string()), []
    is_null = pc.equal(texts, pa.scalar(b"null", pa.binary()))
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
) -> None:
    fast = _STRICT_DECODERS[contract.name]
    for index, payload in enumerate(part, start):
        if len(payload) > max_payload_bytes:
            rejects.append(Reject(index, Reason.PAYLOAD_TOO_LARGE, f"{len(payload)} bytes > {max_payload_bytes}"))
            continue
        extra = None
        try:
            record = fast.decode(payload)
            if record.schema_version != SCHEMA_VERSION:
                raise ValueError("careful path")
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, ValueError):
            outcome = _decode_one(contract, index, payload)
            if isinstance(outcome, Reject):
                rejects.append(outcome)
                continue
            record, extra = outcome
        records.append(record)
        extras.append(extra)
        valid_index.append(index)


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
        columns["scale"] = [
            scale or DEFAULT_SCALES[survey] for scale, survey in zip(by_name["scale"], by_name["survey"], strict=True)
        ]
    columns["extra"] = extras
    columns["schema_version"] = pa.repeat(pa.scalar(SCHEMA_VERSION, pa.int16()), len(hashes))
    columns["payload_hash"] = hashes
    return pa.table(columns, schema=contract.arrow)
