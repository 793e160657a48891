"""The Parquet lake: raw log ingestion, validation, quarantine, and the GroupLens downloader."""

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
    "lake_dir",
    "lake_table_glob",
    "load_manifest",
    "quarantine_dir",
    "read_quarantine",
]
