"""Collate: `RowBatch` -> the batch contract's tensors, with seeded FLIP masks.

Masks are a pure function of (seed, epoch, row number, field), through a counter-based hash, so
they are reproducible, independent of batch composition and identical across DataLoader workers.
Call `set_epoch` between epochs to draw fresh masks.

- MLM: per row, `max(1, round(mlm_ratio * fields_in_text))` fields are chosen among the fields
  the prompt holds; every token of their values becomes the mask token and nothing else does.
- MTM: per row, `max(1, round(mtm_ratio * F))` fields are chosen; their ids become `MASK = 1`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from flip_core.config import MASK_RATIO, check_mask_ratio
from flip_core.data.dataset import RowBatch
from flip_core.data.feature_map import MASK_ID

IGNORE_INDEX = -100  # label of a position or field that no loss scores (torch's default)
_MLM_STREAM = 1
_MTM_STREAM = 2
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (vectorised, wrapping uint64 arithmetic)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def field_uniforms(
    index: np.ndarray, num_fields: int, seed: int, epoch: int, stream: int
) -> np.ndarray:
    """[B, F] uniforms in [0, 1) from (seed, epoch, stream, row, field)."""
    with np.errstate(over="ignore"):
        base = np.array([seed * 1_000_003 + epoch], dtype=np.uint64)
        key = _splitmix(_splitmix(base) ^ np.uint64(stream))
        rows = _splitmix(key ^ index.astype(np.uint64))
        fields = np.arange(num_fields, dtype=np.uint64)
        bits = _splitmix(rows[:, None] * np.uint64(0x100000001B3) + fields[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def choose_fields(uniforms: np.ndarray, present: np.ndarray, ratio: float) -> np.ndarray:
    """[B, F] bool: per row the `max(1, round(ratio * present))` present fields of lowest draw."""
    n_present = present.sum(axis=1)
    k = np.minimum(np.maximum(1, np.rint(ratio * n_present)), n_present)
    scores = np.where(present, uniforms, 2.0)
    ranks = np.argsort(np.argsort(scores, axis=1, kind="stable"), axis=1, kind="stable")
    return ranks < k[:, None]


@dataclass
class FlipCollate:
    """Builds batches; `with_text`, `mlm` and `mtm` switch the optional parts on."""

    pad_token_id: int = 0
    mask_token_id: int | None = None
    with_text: bool = True
    mlm: bool = False
    mtm: bool = False
    mlm_ratio: float = MASK_RATIO
    mtm_ratio: float = MASK_RATIO
    seed: int = 0
    epoch: int = 0

    def __post_init__(self) -> None:
        if self.mlm and (not self.with_text or self.mask_token_id is None):
            raise ValueError("MLM masks need with_text=True and a mask_token_id")
        check_mask_ratio(self.mlm_ratio)
        check_mask_ratio(self.mtm_ratio)

    def set_epoch(self, epoch: int) -> None:
        """Draw different masks in a new epoch (same seed + epoch -> same masks)."""
        self.epoch = epoch

    def __call__(self, batch: RowBatch | Sequence[RowBatch]) -> dict[str, torch.Tensor]:
        rows = batch if isinstance(batch, RowBatch) else RowBatch.concat(batch)
        out: dict[str, torch.Tensor] = {
            "field_ids": torch.from_numpy(rows.field_ids),
            "labels": torch.from_numpy(rows.labels),
        }
        if self.mtm:
            out.update(self._mtm(rows))
        if self.with_text:
            if rows.tokens is None or rows.token_spans is None:
                raise ValueError("with_text=True but the dataset was loaded without text")
            out.update(self._text(rows))
        return out

    def _mtm(self, rows: RowBatch) -> dict[str, torch.Tensor]:
        num_fields = rows.field_ids.shape[1]
        draws = field_uniforms(rows.index, num_fields, self.seed, self.epoch, _MTM_STREAM)
        chosen = choose_fields(draws, np.ones_like(draws, dtype=bool), self.mtm_ratio)
        return {
            "mtm_field_ids": torch.from_numpy(np.where(chosen, MASK_ID, rows.field_ids)),
            "mtm_labels": torch.from_numpy(np.where(chosen, rows.field_ids, IGNORE_INDEX)),
        }

    def _text(self, rows: RowBatch) -> dict[str, torch.Tensor]:
        assert rows.tokens is not None and rows.token_spans is not None
        lengths = np.array([len(t) for t in rows.tokens], dtype=np.int64)
        width = int(lengths.max()) if len(lengths) else 0
        ids = np.full((len(lengths), width), self.pad_token_id, dtype=np.int64)
        positions = np.arange(width)
        real = positions[None, :] < lengths[:, None]
        if len(lengths):
            ids[real] = np.concatenate(rows.tokens)
        out = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(real.astype(np.int64)),
            "field_spans": torch.from_numpy(rows.token_spans),
        }
        if self.mlm:
            out.update(self._mlm(rows, ids, positions))
        return out

    def _mlm(
        self, rows: RowBatch, ids: np.ndarray, positions: np.ndarray
    ) -> dict[str, torch.Tensor]:
        spans = rows.token_spans
        assert spans is not None and self.mask_token_id is not None
        present = spans[:, :, 1] > spans[:, :, 0]
        draws = field_uniforms(rows.index, spans.shape[1], self.seed, self.epoch, _MLM_STREAM)
        chosen = choose_fields(draws, present, self.mlm_ratio)
        inside = (positions[None, None, :] >= spans[:, :, :1]) & (
            positions[None, None, :] < spans[:, :, 1:]
        )
        masked = (inside & chosen[:, :, None]).any(axis=1)
        return {
            "mlm_input_ids": torch.from_numpy(np.where(masked, self.mask_token_id, ids)),
            "mlm_labels": torch.from_numpy(np.where(masked, ids, IGNORE_INDEX)),
        }
