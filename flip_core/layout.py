"""Every folder under a data root, named in one place.

<root>/lake/<dataset>/<table>/ingest_date=YYYY-MM-DD/*.parquet   the validated lake
<root>/quarantine/<dataset>/<table>/ingest_date=.../*.parquet     rejected rows
<root>/features/<dataset>/<protocol>/<key>/                       splits, prompts, vocab
<root>/work/<step>/<key>/                                         a training step's outputs
<root>/.locks/<name>.lock                                         cross-process locks
<root>/.flip-cache-salt                                           the cache salt
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataLayout:
    """The folders of the data root `root`."""

    root: Path

    def lake(self, dataset: str) -> Path:
        """`<root>/lake/<dataset>`."""
        return Path(self.root) / "lake" / dataset

    def lake_table_glob(self, dataset: str, table: str) -> str:
        """Glob of every Parquet file of one lake table, for `read_parquet(?,
        hive_partitioning=true)` (DuckDB reads `ingest_date` as DATE from the folder names)."""
        return str(self.lake(dataset) / table / "ingest_date=*" / "*.parquet")

    def quarantine(self, dataset: str) -> Path:
        """`<root>/quarantine/<dataset>`."""
        return Path(self.root) / "quarantine" / dataset

    def features(self, dataset: str) -> Path:
        """`<root>/features/<dataset>`; builds live in `<protocol>/<key>/` below it."""
        return Path(self.root) / "features" / dataset

    def work(self, step: str, key: str) -> Path:
        """`<root>/work/<step>/<key>` (the first 16 characters of the key)."""
        return Path(self.root) / "work" / step / key[:16]

    def lock(self, name: str) -> Path:
        """`<root>/.locks/<name>.lock`."""
        return Path(self.root) / ".locks" / f"{name}.lock"

    @property
    def cache_salt(self) -> Path:
        """`<root>/.flip-cache-salt`."""
        return Path(self.root) / ".flip-cache-salt"
