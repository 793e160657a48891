"""DataLoaders for a built feature folder, in one call (tests only; the training stages build
their own loaders from the same `FeatureDataset` and `FlipCollate`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from flip_core.config import MASK_RATIO
from flip_core.data.collate import FlipCollate
from flip_core.data.dataset import FeatureDataset
from flip_core.data.render import read_manifest


def feature_dataloaders(
    features_dir: Path | str,
    batch_size: int,
    with_text: bool = False,
    masks: bool = False,
    mlm_ratio: float = MASK_RATIO,
    mtm_ratio: float = MASK_RATIO,
    seed: int = 0,
    splits: Sequence[str] = ("train", "valid", "test"),
    max_rows: int | None = None,
    eval_batch_size: int | None = None,
    num_workers: int = 0,
) -> dict[str, DataLoader[dict[str, torch.Tensor]]]:
    """Loaders for the splits present in `features_dir` (train shuffled with `seed`).

    `with_text` adds input_ids / attention_mask / field_spans; `masks` adds the MLM (needs
    text) and MTM masks. Each loader's `collate_fn` is a `FlipCollate`; call
    `loader.collate_fn.set_epoch(e)` for fresh masks each epoch. `max_rows` caps every split.
    """
    root = Path(features_dir)
    tokenizer = read_manifest(root)["tokenizer"]
    loaders: dict[str, DataLoader[dict[str, torch.Tensor]]] = {}
    for split in splits:
        path = root / f"{split}.parquet"
        if not path.is_file():
            continue
        dataset = FeatureDataset(path, with_text=with_text, max_rows=max_rows)
        collate = FlipCollate(
            pad_token_id=int(tokenizer["pad_token_id"] or 0),
            mask_token_id=tokenizer["mask_token_id"],
            with_text=with_text,
            mlm=masks and with_text,
            mtm=masks,
            mlm_ratio=mlm_ratio,
            mtm_ratio=mtm_ratio,
            seed=seed,
        )
        train = split == "train"
        loaders[split] = DataLoader(
            dataset,  # type: ignore[arg-type]
            batch_size=batch_size if train else (eval_batch_size or batch_size),
            shuffle=train,
            generator=torch.Generator().manual_seed(seed) if train else None,
            collate_fn=collate,
            num_workers=num_workers,
        )
    return loaders
