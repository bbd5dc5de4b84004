"""Validate: raw payloads -> contract-checked Arrow rows, and dead letters with a reason.

Each raw batch is decoded in one pass (msgspec, in C) by `parcours.schemas.decode_batch`;
the time checks that need run context are vectorised here:
* `timestamp_in_future`: event time beyond the wall clock plus a small tolerance;
* `before_earliest_date`: before the configured earliest valid date;
* `later_than_allowed_lateness`: older than the event-time watermark of what has already
  landed minus the allowed lateness. The watermark is the minimum, across the source's
  partitions, of each partition's latest landed event time (kept in the manifest), never
  the wall clock: a backfill of old data into an empty warehouse is not late.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import apache_beam as beam
import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from parcours.config import RESERVED_NAMES, IngestRules
from parcours.pipelines.coders import TABLE_ELEMENT
from parcours.pipelines.record_loops import paused_gc
from parcours.pipelines.redact import redact_rows
from parcours.schemas.contracts import (
    DEAD_LETTER_ARROW,
    SURVEY_ANSWER,
    TOUCHPOINT,
    UTC_MICROS,
    Contract,
    Reason,
    decode_batch,
)

CONTRACTS: dict[str, Contract] = {"touchpoints": TOUCHPOINT, "surveys": SURVEY_ANSWER}
# Where a phone number written without +/00 is read as national (the `surveys.phone_region` default).
PHONE_REGION = "FR"
# Strings of personal data replaced in a row (its verbatim, or a dead letter's payload and detail):
# a column of the batch's tables until they land, summed into the batch's report.
N_REDACTED = "n_redacted"
FUTURE_TOLERANCE = timedelta(minutes=5)
# Producer-sent dimensions the views break rows out by: none may be spelt as a reserved name.
RESERVED_FIELDS = ("segment", "product_line")


def dead_letters(
    raw: pa.Table,
    index: list[int],
    reasons: list[str],
    details: list[str],
    record_ids: list[str | None],
    customer_ids: list[str | None],
    *,
    redact: bool,
    region: str = PHONE_REGION,
) -> pa.Table:
    """Dead-letter rows for the raw rows at `index`, keeping payload and provenance.

    With `redact` (survey answers: they carry verbatims), personal data is redacted
    (`pipelines/redact.py`) from the payload and the detail: a rejected record may not parse, so
    where its verbatim is cannot be known, and the whole text is redacted. A payload with nothing
    to redact is kept byte for byte; one with something is the redacted text (a payload that was
    not UTF-8 then keeps its replacement characters). Touchpoints carry no free text and keep
    their payload whole (a 5 MB one would cost seconds to scan). `N_REDACTED` counts the strings
    replaced per row, for the batch's report; landing drops it."""
    picked = raw.take(pa.array(index, pa.int64())) if index else raw.slice(0, 0)
    payloads = picked.column("payload").to_pylist()
    texts = pa.array([p.decode("utf-8", errors="replace") for p in payloads], pa.string())
    detail = pa.array(details, pa.string())
    in_payload = in_detail = pa.array(np.zeros(len(payloads), np.int32))
    if redact:
        texts, in_payload, _ = redact_rows(texts, region)
        detail, in_detail, _ = redact_rows(detail, region)
    replaced = in_payload.to_numpy(zero_copy_only=False)
    payload = [
        text.encode("utf-8") if n else original
        for original, text, n in zip(payloads, texts.to_pylist(), replaced.tolist(), strict=True)
    ]
    table = pa.table(
        {
            "reason": pa.array(reasons, pa.string()),
            "detail": detail,
            "source": picked.column("source"),
            "partition": picked.column("source_partition"),
            "offset": picked.column("source_offset"),
            "record_id": pa.array(record_ids, pa.string()),
            "customer_id": pa.array(customer_ids, pa.string()),
            "payload": pa.array(payload, pa.binary()),
            "payload_text": texts,
        },
        schema=DEAD_LETTER_ARROW,
    )
    counted = replaced + in_detail.to_numpy(zero_copy_only=False)
    return table.append_column(N_REDACTED, pa.array(counted.astype("int32"), pa.int32()))


def check_batch(
    kind: str,
    raw: pa.Table,
    rules: IngestRules,
    watermark: datetime | None,
    now: datetime,
    *,
    check_key: bool = False,
    stages: tuple[str, ...] | None = None,
    region: str = PHONE_REGION,
) -> tuple[pa.Table, pa.Table]:
    """Split one raw batch into (valid rows with provenance, dead letters). Pure: tested alone.

    `check_key`: the Kafka key must be the record's customer_id (the topic contract), else the
    record may sit in another partition than the rest of its customer's events.
    `stages`: the configured stages; a touchpoint's own `stage` must be one of them
    (`unknown_stage`: else it would land as a stage of its own, outside the lifecycle). The
    pipeline's `unmapped` is not one of them: a producer may not send it either.
    A `segment` or `product_line` equal to one of `RESERVED_NAMES` (exactly: `All` is a segment
    of its own) is `reserved_value`.
    Personal data is redacted here, before anything lands (`pipelines/redact.py`): from a valid
    answer's `verbatim` and from every dead letter; `region` reads national phone numbers.
    Both tables carry `N_REDACTED`, the strings replaced per row.
    """
    contract = CONTRACTS[kind]
    with paused_gc():
        decoded = decode_batch(contract, raw.column("payload").to_pylist(), rules.max_payload_bytes)
    valid = decoded.table
    all_valid = len(decoded.valid_index) == raw.num_rows
    # The raw payload travels with each row until deduplication, which may dead-letter it.
    provenance = raw.select(["source", "source_partition", "source_offset", "source_key", "payload"])
    if not all_valid:
        provenance = provenance.take(pa.array(decoded.valid_index, pa.int64()))
    for name in ("source", "source_partition", "source_offset", "payload"):
        valid = valid.append_column(name, provenance.column(name))

    dead_index = [r.index for r in decoded.rejects]
    reasons = [r.reason for r in decoded.rejects]
    details = [r.detail for r in decoded.rejects]
    record_ids = [r.record_id for r in decoded.rejects]
    customer_ids = [r.customer_id for r in decoded.rejects]

    times = valid.column(contract.time_field).combine_chunks()
    earliest = datetime.combine(rules.earliest_event_date, datetime.min.time(), tzinfo=UTC)
    checks = [
        (
            Reason.FUTURE_TIMESTAMP,
            pc.greater(times, pa.scalar(now + FUTURE_TOLERANCE, UTC_MICROS)),
            f"after the current time {now.isoformat()} (+{FUTURE_TOLERANCE})",
        ),
        (
            Reason.BEFORE_EARLIEST,
            pc.less(times, pa.scalar(earliest, UTC_MICROS)),
            f"before the earliest valid date {rules.earliest_event_date.isoformat()}",
        ),
    ]
    if watermark is not None:
        horizon = watermark - rules.allowed_lateness
        checks.append(
            (
                Reason.TOO_LATE,
                pc.less(times, pa.scalar(horizon, UTC_MICROS)),
                f"older than the watermark {watermark.isoformat()} minus the allowed lateness {rules.allowed_lateness}",
            )
        )
    rejected = pa.array([False] * valid.num_rows, pa.bool_())

    def reject(mask: pa.Array, reason: str, detail_of: Callable[[pa.Table, pa.Array], list[str]]) -> None:
        """Dead-letter the valid rows of `mask` not rejected yet, each with `detail_of(rows, hits)`."""
        nonlocal rejected
        mask = pc.and_(pc.fill_null(mask, False), pc.invert(rejected))
        hits = pc.indices_nonzero(mask)
        if not len(hits):
            return
        rows = valid.take(hits)
        dead_index.extend(decoded.valid_index[i] for i in hits.to_pylist())
        reasons.extend([reason] * len(hits))
        details.extend(detail_of(rows, hits))
        record_ids.extend(rows.column(contract.id_field).to_pylist())
        customer_ids.extend(rows.column("customer_id").to_pylist())
        rejected = pc.or_(rejected, mask)

    if not valid.num_rows:  # pyarrow compute on a column of zero chunks crashes: nothing to check
        return _redacted(valid, region), dead_letters(
            raw, dead_index, reasons, details, record_ids, customer_ids, redact=contract is SURVEY_ANSWER, region=region
        )
    if check_key:
        keys = provenance.column("source_key")
        reject(
            pc.fill_null(pc.not_equal(keys, valid.column("customer_id").cast(pa.binary())), True),
            Reason.KEY_MISMATCH,
            lambda _rows, hits: [
                f"the Kafka key {key!r} is not the customer_id: every event of a customer must be keyed by "
                f"its customer_id, so that they share a partition (resend it keyed, or set "
                f"ingest.keyed_by_customer: false)"
                for key in keys.take(hits).to_pylist()
            ],
        )
    if stages is not None and contract is TOUCHPOINT:
        stage = valid.column("stage")
        listed = ", ".join(stages)
        reject(
            pc.and_(pc.is_valid(stage), pc.invert(pc.is_in(stage, value_set=pa.array(stages, pa.string())))),
            Reason.UNKNOWN_STAGE,
            lambda rows, _hits: [
                f"stage {value!r} is not a configured stage ({listed}) - at `$.stage`"
                for value in rows.column("stage").to_pylist()
            ],
        )
    # A segment or product line the views would read as one of their own words (`all` for a
    # rolled-up row, `unknown` for a null...): it would merge into those rows, so it is refused.
    for column in (c for c in RESERVED_FIELDS if c in valid.column_names):
        reject(
            pc.is_in(valid.column(column), value_set=pa.array(RESERVED_NAMES, pa.string())),
            Reason.RESERVED_VALUE,
            lambda rows, _hits, column=column: [
                f"{column} {value!r} is a name the views reserve ({', '.join(RESERVED_NAMES)}) - at `$.{column}`"
                for value in rows.column(column).to_pylist()
            ],
        )
    for reason, mask, why in checks:
        reject(
            mask,
            reason,
            lambda rows, _hits, why=why: [
                f"{contract.time_field} {v.isoformat()} is {why}" for v in rows.column(contract.time_field).to_pylist()
            ],
        )
    valid = valid.filter(pc.invert(rejected))
    return _redacted(valid, region), dead_letters(
        raw, dead_index, reasons, details, record_ids, customer_ids, redact=contract is SURVEY_ANSWER, region=region
    )


def _redacted(valid: pa.Table, region: str) -> pa.Table:
    """Valid rows with their verbatims redacted and `N_REDACTED` counting what was replaced. The
    raw payload they carry to deduplication keeps its personal data: it lands only as a dead
    letter, which `dead_letters` redacts."""
    if "verbatim" not in valid.column_names:
        return valid
    texts, replaced, _ = redact_rows(valid.column("verbatim"), region)
    valid = valid.set_column(valid.schema.get_field_index("verbatim"), valid.schema.field("verbatim"), texts)
    return valid.append_column(N_REDACTED, replaced)


class ValidateFn(beam.DoFn):
    def __init__(
        self,
        rules: IngestRules,
        watermarks: dict[str, datetime | None],
        now: datetime,
        check_key: bool,
        stages: tuple[str, ...] | None = None,
        region: str = PHONE_REGION,
    ) -> None:
        self._rules = rules
        self._watermarks = watermarks
        self._now = now
        self._check_key = check_key
        self._stages = stages
        self._region = region

    def process(self, element: tuple[str | tuple[str, int], pa.Table]) -> Iterator:
        key, raw = element  # kind, or (kind, shard) when the source is already split by customer
        kind = key if isinstance(key, str) else key[0]
        watermark = self._watermarks.get(kind)
        valid, dead = check_batch(
            kind,
            raw,
            self._rules,
            watermark,
            self._now,
            check_key=self._check_key,
            stages=self._stages,
            region=self._region,
        )
        if valid.num_rows:
            yield key, valid
        if dead.num_rows:
            yield beam.pvalue.TaggedOutput("dead", dead)


class Validate(beam.PTransform):
    """(key, raw table) -> (key, valid rows) as main output, dead-letter tables as `dead`.

    The key is the kind, or (kind, shard); `check_key` checks each Kafka key against the
    record's customer_id, `stages` a touchpoint's own stage against the configured ones,
    `region` the country whose national phone numbers verbatims are redacted of (see
    `check_batch`).
    """

    def __init__(
        self,
        rules: IngestRules,
        watermarks: dict[str, datetime | None],
        now: datetime,
        check_key: bool = False,
        stages: tuple[str, ...] | None = None,
        region: str = PHONE_REGION,
    ) -> None:
        super().__init__()
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if stages is not None and not stages:
            raise ValueError("stages must not be empty")
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {region!r} (an ISO 3166 alpha-2 code such as 'FR')")
        self._fn = ValidateFn(rules, watermarks, now, check_key, stages, region)

    def expand(self, raw):
        check = beam.ParDo(self._fn).with_output_types(TABLE_ELEMENT, dead=pa.Table)
        return raw | "CheckContracts" >> check.with_outputs("dead", main="valid")
