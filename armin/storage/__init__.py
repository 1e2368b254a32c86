"""Storage: the schema (models.py, the contract) and the database it lives in (db.py)."""

from armin.storage.db import BUSY_TIMEOUT_MS, Database, StorageError, utcnow
from armin.storage.models import (
    LOST_BY_DRIVER,
    SCHEMA_VERSION,
    STUDY_KINDS,
    STUDY_STATUSES,
    Base,
    Cost,
    CostProfile,
    CostSample,
    Meta,
    Metric,
    Study,
    Trial,
    TrialState,
    ValueKind,
    decode_value,
    encode_value,
)

__all__ = [
    "LOST_BY_DRIVER",
    "BUSY_TIMEOUT_MS",
    "SCHEMA_VERSION",
    "STUDY_KINDS",
    "STUDY_STATUSES",
    "Base",
    "Cost",
    "CostProfile",
    "CostSample",
    "Database",
    "Meta",
    "Metric",
    "StorageError",
    "Study",
    "Trial",
    "TrialState",
    "ValueKind",
    "decode_value",
    "encode_value",
    "utcnow",
]
