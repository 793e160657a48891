"""A map-style dataset over one built feature file, with batched row fetches.

Columns are loaded once into numpy arrays. `__getitems__` (used by `DataLoader` when batching)
gathers a whole batch at once; `with_text=False` skips the prompt columns entirely, which is the
cheap path for ID-only models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from torch.utils.data import Dataset

from flip_core.data.feature_map import FEATURE_MAP_FILE, FeatureMap
from flip_core.data.sampling import Sample, subset_rows


@dataclass
class RowBatch:
    """Rows gathered from a `FeatureDataset` (numpy; the collate turns them into tensors)."""

    index: np.ndarray  # [B] int64 row numbers in the file (seed the masks)
    field_ids: np.ndarray  # [B, F] int64
    labels: np.ndarray  # [B] float32
    tokens: list[np.ndarray] | None = None  # B arrays of token ids
    token_spans: np.ndarray | None = None  # [B, F, 2] int64

    @staticmethod
    def concat(parts: Sequence[RowBatch]) -> RowBatch:
        """One batch from several (e.g. single rows from `__getitem__`)."""
        if len(parts) == 1:
            return parts[0]
        with_text = parts[0].tokens is not None
        return RowBatch(
            index=np.concatenate([p.index for p in parts]),
            field_ids=np.concatenate([p.field_ids for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            tokens=[t for p in parts for t in (p.tokens or [])] if with_text else None,
            token_spans=(
                np.concatenate([p.token_spans for p in parts if p.token_spans is not None])
                if with_text
                else None
            ),
        )


class FeatureDataset(Dataset[RowBatch]):
    """Rows of one `{train,valid,test}.parquet` feature file.

    The fields (in order) are those of the `feature_map.json` beside the file, unless given.
    `max_rows` caps the rows to a seeded random sample (`sample="random"`, the default) or to the
    first rows (`sample="first"`); `rows` holds the kept row numbers of the file.
    """

    def __init__(
        self,
        path: Path | str,
        with_text: bool = True,
        max_rows: int | None = None,
        sample: Sample = "random",
        seed: int = 0,
        fields: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.with_text = with_text
        names = list(fields) if fields is not None else _fields_beside(self.path)
        columns = [*names, "label"] + (["input_ids", "token_spans"] if with_text else [])
        table = pq.read_table(self.path, columns=columns)
        self.rows = subset_rows(table.num_rows, max_rows, sample, seed)
        if len(self.rows) < table.num_rows:
            table = table.take(self.rows)
        n = table.num_rows
        self.field_ids = np.stack(
            [table[f].to_numpy().astype(np.int64) for f in names], axis=1
        ).reshape(n, len(names))
        self.labels = table["label"].to_numpy().astype(np.float32)
        self.token_values: np.ndarray | None = None
        self.token_offsets: np.ndarray | None = None
        self.token_spans: np.ndarray | None = None
        if with_text:
            ids = table["input_ids"].combine_chunks()
            offsets = np.asarray(ids.offsets, dtype=np.int64)
            self.token_offsets = offsets - offsets[0]
            self.token_values = np.asarray(ids.flatten(), dtype=np.int64)
            spans = np.asarray(table["token_spans"].combine_chunks().flatten(), dtype=np.int64)
            self.token_spans = spans.reshape(n, len(names), 2)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> RowBatch:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> RowBatch:
        """A batch of rows in one gather."""
        idx = np.asarray(indices, dtype=np.int64)
        tokens = None
        spans = None
        if self.token_values is not None and self.token_offsets is not None:
            starts, ends = self.token_offsets[idx], self.token_offsets[idx + 1]
            tokens = [self.token_values[s:e] for s, e in zip(starts, ends, strict=True)]
            spans = self.token_spans[idx] if self.token_spans is not None else None
        return RowBatch(idx, self.field_ids[idx], self.labels[idx], tokens, spans)


def _fields_beside(path: Path) -> list[str]:
    """Field names of the `feature_map.json` in the file's folder (or the one above it)."""
    for folder in (path.parent, path.parent.parent):
        if (folder / FEATURE_MAP_FILE).is_file():
            return FeatureMap.load(folder).field_names
    raise FileNotFoundError(f"no feature_map.json beside {path} (nor in the folder above)")
