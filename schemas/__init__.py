"""Event contracts: JSON Schema files for producers, msgspec structs for fast checks, Arrow for Parquet."""

from parcours.schemas.contracts import (
    CHANNELS,
    DEAD_LETTER_ARROW,
    SURVEY_ANSWER,
    SURVEYS,
    TOUCHPOINT,
    Contract,
    DecodedBatch,
    Reason,
    Reject,
    decode_batch,
)

__all__ = [
    "CHANNELS",
    "DEAD_LETTER_ARROW",
    "SURVEYS",
    "SURVEY_ANSWER",
    "TOUCHPOINT",
    "Contract",
    "DecodedBatch",
    "Reason",
    "Reject",
    "decode_batch",
]
