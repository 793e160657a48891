"""The Parquet lake: raw log ingestion (MovieLens or a dataset spec), validation, quarantine."""

from flip_core.lake.ingest import (
    BadShareError,
    IngestError,
    IngestResult,
    SourceReport,
    ingest_raw_dir,
    read_quarantine,
)
from flip_core.lake.manifest import (
    LakeManifest,
    lake_dir,
    lake_table_glob,
    load_manifest,
    quarantine_dir,
)
from flip_core.lake.schemas import LAKE_TABLES, MoviesModel, RatingsModel, UsersModel
from flip_core.lake.spec_ingest import ingest_spec_dir
from flip_core.lake.spec_validate import validate_spec_lake

__all__ = [
    "LAKE_TABLES",
    "BadShareError",
    "IngestError",
    "IngestResult",
    "LakeManifest",
    "MoviesModel",
    "RatingsModel",
    "SourceReport",
    "UsersModel",
    "ingest_raw_dir",
    "ingest_spec_dir",
    "lake_dir",
    "lake_table_glob",
    "load_manifest",
    "quarantine_dir",
    "read_quarantine",
    "validate_spec_lake",
]
