"""The Parquet lake: raw files described by a dataset spec -> validated lake and quarantine."""

from flip_core.lake.ingest import ingest_dataset
from flip_core.lake.manifest import LakeManifest, load_manifest
from flip_core.lake.reports import (
    BadShareError,
    EmptyTableError,
    IngestError,
    IngestResult,
    RejectedRunError,
    SourceReport,
    read_quarantine,
)
from flip_core.lake.spec_validate import LakeValidationError, validate_spec_lake

__all__ = [
    "BadShareError",
    "EmptyTableError",
    "IngestError",
    "IngestResult",
    "LakeManifest",
    "LakeValidationError",
    "RejectedRunError",
    "SourceReport",
    "ingest_dataset",
    "load_manifest",
    "read_quarantine",
    "validate_spec_lake",
]
