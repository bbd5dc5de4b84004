"""The dataset registry: every dataset the warehouse stores, its Arrow schema and partition column.

Landed datasets (written by ingestion), marker datasets (rows that only say which rows of another
dataset are superseded) and the materialised marts and rollups each register their spec here;
`write_parquet` checks every table against it, and the views give each dataset a typed view.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from parcours.schemas.contracts import DEAD_LETTER_ARROW, SURVEY_ARROW, TOUCHPOINT_ARROW, UTC_MICROS


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """A dataset stored as hive-partitioned Parquet.

    `partition_column` is a date32 column (int32 when `partition_type` says so: the id index's
    hash buckets) of the tables handed to `write_parquet`; it is not stored inside the files but
    as the directory name, where DuckDB reads it back as a DATE (an INTEGER).
    """

    name: str
    arrow_schema: pa.Schema
    partition_column: str
    partition_type: pa.DataType = field(default_factory=pa.date32)
    # The columns whose Parquet statistics (min/max per row group) are written; None: all. A
    # dataset read only through some columns skips the cost of the others' (strings mostly).
    statistics: tuple[str, ...] | None = None
    # The codec of the files a batch writes (`write_parquet`); rewrites (`write_stream`: compaction)
    # always use zstd.
    batch_compression: str = "zstd"

    @property
    def by_date(self) -> bool:
        return self.partition_type.equals(pa.date32())


def _extend(schema: pa.Schema, *fields: pa.Field) -> pa.Schema:
    return pa.schema([*schema, *fields])


_LINEAGE = (
    pa.field("source", pa.string()),  # topic name or file path
    pa.field("source_partition", pa.int32()),
    pa.field("source_offset", pa.int64()),
)
_BATCH = (pa.field("batch_seq", pa.int64()), pa.field("ingested_at", UTC_MICROS))
_STRINGS = pa.list_(pa.string())

# The columns of the models `int_sessions_aggregated` / `int_journeys_aggregated`, as DuckDB
# returns them (a test checks they agree, so a model change that forgets this fails loudly).
SESSION_ARROW = pa.schema(
    [
        pa.field("session_id", pa.string()),
        pa.field("customer_id", pa.string()),
        pa.field("started_at", UTC_MICROS),
        pa.field("ended_at", UTC_MICROS),
        pa.field("started_date", pa.date32()),
        pa.field("duration_in_s", pa.int64()),
        pa.field("n_events", pa.int64()),
        pa.field("channels", _STRINGS),
        pa.field("n_channels", pa.int64()),
        pa.field("is_omnichannel", pa.bool_()),
        pa.field("first_touchpoint", pa.string()),
        pa.field("last_touchpoint", pa.string()),
        pa.field("first_stage", pa.string()),
        pa.field("last_stage", pa.string()),
        pa.field("journey_cycle", pa.int32()),
        pa.field("revenue", pa.float64()),
        pa.field("segment", pa.string()),
        pa.field("product_line", pa.string()),
    ]
)
JOURNEY_ARROW = pa.schema(
    [
        pa.field("customer_id", pa.string()),
        pa.field("journey_cycle", pa.int32()),
        pa.field("cycle_type", pa.string()),
        pa.field("started_at", UTC_MICROS),
        pa.field("ended_at", UTC_MICROS),
        pa.field("duration_in_s", pa.int64()),
        pa.field("n_events", pa.int64()),
        pa.field("n_sessions", pa.int64()),
        pa.field("n_channels", pa.int64()),
        pa.field("channels", _STRINGS),
        pa.field("path", _STRINGS),
        pa.field("stage_path", _STRINGS),
        pa.field("channel_path", _STRINGS),
        pa.field("path_length", pa.int64()),
        pa.field("n_loops", pa.int64()),
        pa.field("n_back_and_forth", pa.int64()),
        pa.field("last_stage", pa.string()),
        pa.field("last_touchpoint", pa.string()),
        pa.field("last_outcome", pa.string()),
        pa.field("last_activity_at", UTC_MICROS),
        pa.field("last_activity_stage", pa.string()),
        pa.field("is_converted", pa.bool_()),
        pa.field("is_churned", pa.bool_()),
        pa.field("revenue", pa.float64()),
        pa.field("segment", pa.string()),
        pa.field("product_line", pa.string()),
        pa.field("churn_kind", pa.string()),
        pa.field("churned_at", UTC_MICROS),
        pa.field("churn_stage", pa.string()),
        pa.field("churn_status", pa.string()),
    ]
)

# One row per churned journey cycle (pipelines/cycles.py `churn_rows`).
CHURN_ARROW = pa.schema(
    [
        pa.field("customer_id", pa.string()),
        pa.field("journey_cycle", pa.int32()),
        pa.field("churn_kind", pa.string()),
        pa.field("churned_at", UTC_MICROS),
        pa.field("churn_stage", pa.string()),
        pa.field("last_activity_at", UTC_MICROS),
        pa.field("churn_status", pa.string()),
    ]
)

# The columns of the model `int_customer_transitions_paired`: one step of a customer's path, from
# a touchpoint to the next (ordered by occurred_at, event_id), `(start)` before the first and
# `(end)` after the latest.
TRANSITION_ARROW = pa.schema(
    [
        pa.field("customer_id", pa.string()),
        pa.field("journey_cycle", pa.int32()),  # the from-event's (the first event's for `(start)`)
        pa.field("from_event_id", pa.string()),  # null for `(start)`
        pa.field("to_event_id", pa.string()),  # null for `(end)`
        pa.field("from_touchpoint", pa.string()),
        pa.field("to_touchpoint", pa.string()),
        pa.field("from_at", UTC_MICROS),  # the from-event's time (the first event's for `(start)`)
        pa.field("gap_in_s", pa.int64()),  # null for `(start)` and `(end)`
        pa.field("segment", pa.string()),  # the from-event's (the first event's for `(start)`)
    ]
)

# The columns of the Python model `funnel_rows` (pipelines/funnels.py): a customer's best attempt
# at one funnel.
FUNNEL_ARROW = pa.schema(
    [
        pa.field("customer_id", pa.string()),
        pa.field("funnel", pa.string()),
        pa.field("n_steps", pa.int32()),
        pa.field("best_step", pa.int32()),  # the furthest step of the best attempt (1..n_steps)
        pa.field("entered_at", UTC_MICROS),  # its step-1 event's time: the period it counts in
        pa.field("reached_at", pa.list_(UTC_MICROS)),  # its step k's time at [k], k = 1..best_step
        pa.field("windows_close_at", UTC_MICROS),  # when the last window the customer opened closes
        pa.field("is_excluded", pa.bool_()),
        pa.field("entry_event_id", pa.string()),
        pa.field("journey_cycle", pa.int32()),  # the step-1 event's
        pa.field("channel", pa.string()),  # of the step-1 event: the breakdowns' attribution
        pa.field("segment", pa.string()),
        pa.field("product_line", pa.string()),
    ]
)

# The columns of the model `int_survey_answers_attached`: each answer with the touchpoint it rates
# and the customer's attributes when it answered (docs/analytics-core.md §2, the survey attachment).
SURVEY_ATTACHMENT_ARROW = pa.schema(
    [
        pa.field("response_id", pa.string()),
        pa.field("customer_id", pa.string()),
        pa.field("answered_at", UTC_MICROS),
        pa.field("event_id", pa.string()),  # the attached touchpoint, null when unattached
        pa.field("event_occurred_at", UTC_MICROS),
        pa.field("touchpoint", pa.string()),  # the answer's own, else the attached touchpoint's
        pa.field("stage", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("journey_cycle", pa.int32()),
        pa.field("channel", pa.string()),  # as of answered_at, `unknown` when nothing says
        pa.field("segment", pa.string()),
        pa.field("product_line", pa.string()),
        pa.field("attached_by", pa.string()),  # event_id | nearest_preceding | unattached
    ]
)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "touchpoints",
            _extend(
                TOUCHPOINT_ARROW,
                pa.field("stage_source", pa.string()),
                pa.field("session_id", pa.string()),
                pa.field("session_started_at", UTC_MICROS),
                pa.field("journey_cycle", pa.int32()),
                pa.field("cycle_type", pa.string()),
                pa.field("step_index", pa.int32()),
                # What the cycle and churn rules (pipelines/cycles.py) carry from event to event.
                pa.field("cycle_started_at", UTC_MICROS),
                pa.field("is_activity", pa.bool_()),
                pa.field("previous_activity_at", UTC_MICROS),
                pa.field("previous_activity_stage", pa.string()),
                pa.field("churn_deadline", UTC_MICROS),
                *_LINEAGE,
                *_BATCH,
            ),
            "event_date",
        ),
        DatasetSpec("survey_answers", _extend(SURVEY_ARROW, *_LINEAGE, *_BATCH), "answered_date"),
        DatasetSpec("dead_letters", _extend(DEAD_LETTER_ARROW, *_BATCH), "ingested_date"),
        DatasetSpec(
            "rewrites",
            pa.schema(
                [
                    pa.field("customer_id", pa.string()),
                    pa.field("from_at", UTC_MICROS),
                    pa.field("batch_seq", pa.int64()),
                ]
            ),
            "batch_date",
        ),
        # Per customer touched by a batch, its latest event after that batch: what the next
        # events continue (session, cycle). The row of the highest batch_seq is current.
        DatasetSpec(
            "customer_state",
            pa.schema(
                [
                    pa.field("customer_id", pa.string()),
                    pa.field("event_id", pa.string()),
                    pa.field("occurred_at", UTC_MICROS),
                    pa.field("stage", pa.string()),
                    pa.field("session_id", pa.string()),
                    pa.field("session_started_at", UTC_MICROS),
                    pa.field("journey_cycle", pa.int32()),
                    pa.field("cycle_type", pa.string()),
                    pa.field("step_index", pa.int32()),
                    pa.field("outcome", pa.string()),
                    pa.field("cycle_started_at", UTC_MICROS),
                    pa.field("is_activity", pa.bool_()),
                    pa.field("previous_activity_at", UTC_MICROS),
                    pa.field("previous_activity_stage", pa.string()),
                    # The due index: when the customer is silently churned if nothing else happens.
                    pa.field("churn_deadline", UTC_MICROS),
                    pa.field("batch_seq", pa.int64()),
                ]
            ),
            "batch_date",
        ),
        # Materialised marts: rows of the models `int_sessions_aggregated` and
        # `int_journeys_aggregated`, recomputed for the groups each batch touched. Which rows are
        # current is said by `refreshes`, read by `stg_parcours__sessions` / `__journeys`.
        DatasetSpec("sessions", _extend(SESSION_ARROW, pa.field("batch_seq", pa.int64())), "batch_date"),
        DatasetSpec("journeys", _extend(JOURNEY_ARROW, pa.field("batch_seq", pa.int64())), "batch_date"),
        # Per churned journey cycle: pipelines/cycles.py `churn_rows`, landed by the refresher for
        # the customers touched or due; superseded like journeys (the marker's journey cycle).
        DatasetSpec("churns", _extend(CHURN_ARROW, pa.field("batch_seq", pa.int64())), "batch_date"),
        # One row per step of a customer's path (pipelines' directly-follows graph): recomputed
        # from the journeys' recompute cycle on, superseded like journeys (the from-event's cycle).
        DatasetSpec("customer_transitions", _extend(TRANSITION_ARROW, pa.field("batch_seq", pa.int64())), "batch_date"),
        # Per customer and funnel they entered: pipelines/funnels.py `funnel_rows`, recomputed over
        # every event of the customers a pass touched; `refreshes.funnels_from_at` supersedes.
        DatasetSpec("customer_funnels", _extend(FUNNEL_ARROW, pa.field("batch_seq", pa.int64())), "batch_date"),
        # One row per survey answer, recomputed for the customers a batch touched (new answers,
        # new or late touchpoints); `refreshes.survey_attachments_from_at` supersedes the older.
        DatasetSpec(
            "survey_attachments",
            _extend(SURVEY_ATTACHMENT_ARROW, pa.field("batch_seq", pa.int64())),
            "batch_date",
        ),
        # Per customer whose marts a batch refreshed: from which session start, which journey
        # cycle and which answer time on its rows were recomputed (null: that dataset was not).
        # They supersede that customer's older rows from there.
        DatasetSpec(
            "refreshes",
            pa.schema(
                [
                    pa.field("customer_id", pa.string()),
                    pa.field("sessions_from_at", UTC_MICROS),
                    pa.field("journeys_from_cycle", pa.int32()),
                    # answered_at from which the customer's survey attachments were recomputed
                    pa.field("survey_attachments_from_at", UTC_MICROS),
                    # the customer's earliest new event when its funnels were recomputed (over
                    # all its events: every older `customer_funnels` row of the customer is superseded)
                    pa.field("funnels_from_at", UTC_MICROS),
                    pa.field("batch_seq", pa.int64()),
                ]
            ),
            "batch_date",
        ),
    )
}
# Rollups: the marts at the grain dashboards chart them at (per day or ISO week), landed by the
# marts refresh for the days and weeks it touched, one file per partition: a refresh replaces a
# partition's file (the manifest removes the old one), so every live row is current. Their
# columns are the models `int_*_counted_*` (a test checks they agree).
_ROLLUP_KEYS = {
    "from_touchpoint": pa.string(),
    "to_touchpoint": pa.string(),
    "segment": pa.string(),
    "product_line": pa.string(),
    "cycle_type": pa.string(),
    "channel": pa.string(),
    "stage": pa.string(),
    "touchpoint": pa.string(),
}


def _rollup(name: str, partition_column: str, keys: tuple[str, ...], *measures: pa.Field) -> DatasetSpec:
    columns = [pa.field(key, _ROLLUP_KEYS[key]) for key in keys]
    return DatasetSpec(name, pa.schema([*columns, *measures, pa.field("batch_seq", pa.int64())]), partition_column)


_COUNT = pa.int64()
ROLLUPS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _rollup(
            "sessions_daily",
            "started_date",
            ("channel", "segment", "product_line"),
            pa.field("n_sessions", _COUNT),
            pa.field("n_omnichannel_sessions", _COUNT),
            pa.field("n_customers", _COUNT),
            pa.field("n_events", _COUNT),
            pa.field("total_duration_in_s", _COUNT),
            pa.field("revenue", pa.float64()),
        ),
        _rollup(
            "touchpoints_daily",
            "event_date",
            ("stage", "channel", "touchpoint", "segment", "product_line"),
            pa.field("n_events", _COUNT),
            pa.field("n_customers", _COUNT),
            pa.field("revenue", pa.float64()),
        ),
        _rollup(
            "journey_stages_weekly",
            "started_week",
            ("stage", "cycle_type", "segment", "product_line"),
            pa.field("n_journeys", _COUNT),
            pa.field("n_customers", _COUNT),
            pa.field("n_converted", _COUNT),
            pa.field("n_churned", _COUNT),
        ),
        _rollup(
            "transitions",
            "from_week",
            ("segment", "from_touchpoint", "to_touchpoint"),
            pa.field("n_transitions", _COUNT),
        ),
        DatasetSpec(
            "journey_paths_weekly",
            pa.schema(
                [
                    pa.field("first_steps", _STRINGS),
                    pa.field("cycle_type", pa.string()),
                    pa.field("is_converted", pa.bool_()),
                    pa.field("is_churned", pa.bool_()),
                    pa.field("n_journeys", _COUNT),
                    pa.field("n_events", _COUNT),
                    pa.field("revenue", pa.float64()),
                    pa.field("batch_seq", pa.int64()),
                ]
            ),
            "started_week",
        ),
    )
}
DATASETS.update(ROLLUPS)
# Summaries over all time, recomputed whole (`invalidation: whole`) when what they read changed:
# their new files replace every old one, so every live row is current. The columns of the model
# `int_transitions_summarised`: the grouping sets (overall, segment) of every pair of touchpoints.
DATASETS["transitions_summary"] = DatasetSpec(
    "transitions_summary",
    pa.schema(
        [
            pa.field("breakdown", pa.string()),
            pa.field("segment", pa.string()),
            pa.field("from_touchpoint", pa.string()),
            pa.field("to_touchpoint", pa.string()),
            pa.field("n_transitions", _COUNT),
            pa.field("n_customers", _COUNT),
            pa.field("median_gap_in_s", pa.float64()),  # null from `(start)` and into `(end)`
            pa.field("batch_seq", pa.int64()),
        ]
    ),
    "through_date",
)

_RATE = pa.float64()
# The funnels' steps per week of entry and breakdown, recomputed whole by each pass (it reads the
# finality point: who is in progress changes with time alone). Every row current, as a rollup's.
FUNNEL_STEPS = DatasetSpec(
    "funnel_steps",
    pa.schema(
        [
            pa.field("funnel", pa.string()),
            pa.field("mode", pa.string()),
            pa.field("step_index", pa.int32()),
            pa.field("step", pa.string()),
            pa.field("n_steps", pa.int32()),
            pa.field("breakdown", pa.string()),
            pa.field("channel", pa.string()),
            pa.field("segment", pa.string()),
            pa.field("product_line", pa.string()),
            pa.field("n_reached", _COUNT),
            pa.field("n_moved_on", _COUNT),  # = the next step's n_reached, so each row reads alone
            pa.field("n_in_progress", _COUNT),
            pa.field("n_not_converted", _COUNT),
            pa.field("n_excluded", _COUNT),
            pa.field("n_settled", _COUNT),
            pa.field("n_settled_previous", _COUNT),
            pa.field("n_settled_start", _COUNT),
            pa.field("conversion_from_previous", _RATE),
            pa.field("conversion_from_previous_low", _RATE),
            pa.field("conversion_from_previous_high", _RATE),
            pa.field("conversion_from_start", _RATE),
            pa.field("conversion_from_start_low", _RATE),
            pa.field("conversion_from_start_high", _RATE),
            pa.field("median_time_to_convert_in_s", pa.float64()),
            pa.field("batch_seq", pa.int64()),
        ]
    ),
    "period_start",
)
DATASETS[FUNNEL_STEPS.name] = FUNNEL_STEPS
# Path analytics over the ended journey cycles, recomputed whole (invalidation `whole`): when the
# journeys change or the finality point moves. Partitioned by the finality point's date, one file
# a refresh. The columns of the models `int_journey_variants_counted` / `int_path_edges_counted`.
PATH_VARIANT_ARROW = pa.schema(
    [
        pa.field("cycle_type", pa.string()),
        pa.field("variant", _STRINGS),
        pa.field("is_truncated", pa.bool_()),
        pa.field("n_steps", _COUNT),
        pa.field("n_journeys", _COUNT),
        pa.field("n_converted", _COUNT),
        pa.field("n_churned", _COUNT),
        pa.field("n_dropped_off", _COUNT),
        pa.field("n_ended", _COUNT),
        pa.field("n_open", _COUNT),
        pa.field("share", pa.float64()),
        pa.field("share_low", pa.float64()),
        pa.field("share_high", pa.float64()),
        pa.field("median_duration_in_s", pa.float64()),
        pa.field("as_of", UTC_MICROS),
    ]
)
PATH_EDGE_ARROW = pa.schema(
    [
        pa.field("anchor", pa.string()),
        pa.field("direction", pa.string()),
        pa.field("step", _COUNT),
        pa.field("source", pa.string()),
        pa.field("target", pa.string()),
        pa.field("n_journeys", _COUNT),
        pa.field("n_journeys_at_step", _COUNT),
        pa.field("as_of", UTC_MICROS),
    ]
)
PATH_DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("paths", _extend(PATH_VARIANT_ARROW, pa.field("batch_seq", pa.int64())), "as_of_date"),
        DatasetSpec("path_edges", _extend(PATH_EDGE_ARROW, pa.field("batch_seq", pa.int64())), "as_of_date"),
    )
}
DATASETS.update(PATH_DATASETS)

# The id index: every event_id and response_id landed, with where its row came from, so that an
# id is one row whatever customer or partition carries it (`pipelines/deduplicate.py`).
# Partitioned by a hash of the id: a micro-batch looks each of its ids up in one bucket's files.
ID_INDEX = DatasetSpec(
    "id_index",
    pa.schema(
        [
            pa.field("kind", pa.string()),  # touchpoints | surveys
            pa.field("record_id", pa.string()),  # the event_id or response_id
            pa.field("id_hash", pa.uint64()),  # XXH3-64 of record_id; a file's rows are sorted by it
            pa.field("payload_hash", pa.uint64()),
            pa.field("customer_id", pa.string()),
            *_LINEAGE,
            *_BATCH,
        ]
    ),
    "id_bucket",
    pa.int32(),
    statistics=("id_hash",),  # look-ups select by hash; the strings' min/max would cost ~30 % of the write
    # Uncompressed until the nightly compaction rewrites each bucket in zstd: half the cost of
    # the write, for 78 instead of 38 bytes an id meanwhile.
    batch_compression="none",
)
DATASETS[ID_INDEX.name] = ID_INDEX

# Datasets whose rows only say which rows of other datasets are superseded. Once a compaction
# has dropped the rows they supersede, they have nothing left to say and are removed whole.
MARKER_DATASETS = ("rewrites", "refreshes")


def _spec(dataset: str) -> DatasetSpec:
    try:
        return DATASETS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r} (known: {sorted(DATASETS)})") from None
