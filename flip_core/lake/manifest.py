"""The lake manifest (which sources went in, with their content hashes).

`<lake>/_manifest.json` beside the table folders (`flip_core.layout.DataLayout` names them).
A Parquet file in the lake that no manifest entry lists is an orphan of a crashed run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, Field

MANIFEST_NAME = "_manifest.json"
STAGING_PREFIX = ".staging-"


class SourceEntry(BaseModel):
    """One ingested raw file."""

    table: str
    path: str
    sha256: str
    rows: int = Field(description="Rows added to the lake from this file.")
    quarantined: int
    duplicates: int = Field(description="Rows repeated inside the file, kept once.")
    already_in_lake: int = Field(description="Rows the lake held already, not added again.")
    ingest_date: str
    run_id: str
    files: list[str] = Field(description="Lake files written, relative to the dataset folder.")
    partial: bool = Field(
        default=False,
        description="The gzip stream was truncated: only its complete lines went in; a later "
        "file of the same name is taken as its completion.",
    )
    completes: str | None = Field(
        default=None, description="sha256 of the partial source (same name) this file completes."
    )


class LakeManifest(BaseModel):
    """Everything that went into one dataset's lake."""

    dataset: str
    sources: list[SourceEntry] = []

    def has_source(self, table: str, sha256: str) -> bool:
        """Whether a file with this content went into `table` already."""
        return any(s.table == table and s.sha256 == sha256 for s in self.sources)

    def partial_source(self, table: str, name: str) -> SourceEntry | None:
        """The partial (truncated) source of `table` called `name` no later file completed."""
        completed = {s.completes for s in self.sources if s.completes}
        for source in self.sources:
            if (
                source.table == table
                and source.partial
                and Path(source.path).name == name
                and source.sha256 not in completed
            ):
                return source
        return None

    def listed_files(self) -> set[str]:
        """Every lake file (relative path) the manifest accounts for."""
        return {f for s in self.sources for f in s.files}

    def rows(self, table: str) -> int:
        """Rows the manifest says `table` holds."""
        return sum(s.rows for s in self.sources if s.table == table)


def load_manifest(root: Path, dataset: str) -> LakeManifest:
    """The manifest at `root/_manifest.json`, or an empty one."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return LakeManifest(dataset=dataset)
    return LakeManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))


def save_manifest(root: Path, manifest: LakeManifest) -> None:
    """Write the manifest atomically (temp file + rename)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{MANIFEST_NAME}.tmp-{os.getpid()}"
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(root / MANIFEST_NAME)


def table_files(root: Path, table: str) -> list[Path]:
    """Committed Parquet files of one table (orphans included; see `remove_orphans`)."""
    return sorted((root / table).glob("ingest_date=*/*.parquet"))


def remove_orphans(root: Path, manifest: LakeManifest) -> list[str]:
    """Delete staging folders and lake files no manifest entry lists; return what went."""
    removed: list[str] = []
    if not root.is_dir():
        return removed
    listed = manifest.listed_files()
    for table_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if table_dir.name.startswith(STAGING_PREFIX):
            _rmtree(table_dir)
            removed.append(table_dir.name)
            continue
        for part in sorted(table_dir.glob("ingest_date=*/*.parquet")):
            rel = part.relative_to(root).as_posix()
            if rel not in listed:
                part.unlink()
                removed.append(rel)
    return removed


def _rmtree(path: Path) -> None:
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir():
            child.rmdir()
        else:
            child.unlink()
    path.rmdir()
