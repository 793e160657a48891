"""FLIP pretraining step throughput and model FLOP utilisation (MFU), against a naive baseline.

Ours: pre-tokenized feature rows (FeatureDataset + FlipCollate), dynamic padding, the encoder's
token-wise layers on real tokens only (`flip_core.models.unpadded`), MLM logits only at masked
positions. Naive baseline, same model and objectives in the same run: each row is tokenized in
`__getitem__` (field spans recomputed from character offsets), every row is padded to 100 tokens,
the stock Hugging Face encoder forward runs over every position, and the MLM head scores the full
vocabulary at every position.

MFU = FLOPs of the needed work per second / peak matmul FLOP/s measured here in the same run
(best of a reading before and one after the steps). Ours and the baseline alternate step by
step, so a change of machine load affects both alike.
Needed work: the encoder passes the configuration requires (two per row, or one with
--single-pass) over real (non-padding) tokens, plus the MLM head at masked positions only;
training counts 3x the forward FLOPs (forward + backward). ID model, MTM and ICL heads are not
counted (they are small).

Usage:
  python benchmarks/pretrain_throughput.py [--features DIR] [--batch-size 64] [--steps 6]
      [--device cpu|cuda] [--bf16] [--size minilm|base] [--single-pass] [--threads N]
Without --features a synthetic MovieLens-shaped feature folder is built in a temp dir.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import BertConfig, PreTrainedTokenizerBase

from flip_core.config import MASK_RATIO, FlipConfig, IDModelConfig, ObjectivesConfig, load_config
from flip_core.data.collate import IGNORE_INDEX, FlipCollate
from flip_core.data.dataset import FeatureDataset
from flip_core.data.loaders import load_feature_map
from flip_core.models.flip import FlipForPretraining, FlipModelConfig, make_masks_disjoint
from flip_core.models.heads import HeadResult, MLMHead
from flip_core.models.plm import PLMEncoder, load_tokenizer
from flip_core.spec import load_dataset_spec, resolve_spec_path

NAIVE_LENGTH = 100

# The ml-1m spec's fields: this benchmark runs on MovieLens-shaped features.
FIELDS = load_dataset_spec(resolve_spec_path("configs/datasets/ml-1m.yaml")).field_names


# ---------------------------------------------------------------- naive baseline pieces


class NaiveTextDataset(Dataset[dict[str, Any]]):
    """Rows whose prompt is tokenized on every access; spans from character offsets."""

    def __init__(self, path: Path, tokenizer: PreTrainedTokenizerBase, max_rows: int) -> None:
        table = pq.read_table(path, columns=[*FIELDS, "label", "text", "char_spans"])
        table = table.slice(0, max_rows)
        self.field_ids = np.stack([table[f].to_numpy() for f in FIELDS], 1).astype(np.int64)
        self.labels = table["label"].to_numpy().astype(np.float32)
        self.texts = table["text"].to_pylist()
        self.char_spans = table["char_spans"].to_pylist()
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        enc = self.tokenizer(
            self.texts[i],
            padding="max_length",
            truncation=True,
            max_length=NAIVE_LENGTH,
            return_offsets_mapping=True,
        )
        spans = []
        chars = self.char_spans[i]
        for f in range(len(FIELDS)):
            lo, hi = chars[2 * f], chars[2 * f + 1]
            toks = [
                t for t, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < hi and b > lo
            ]
            spans.append([toks[0], toks[-1] + 1] if toks else [0, 0])
        return {
            "field_ids": self.field_ids[i],
            "label": self.labels[i],
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "spans": spans,
            "index": i,
        }


class NaiveCollate:
    """Stacks fixed-length rows and draws the same kind of whole-field masks as FlipCollate."""

    def __init__(self, mask_token_id: int, ratio: float = MASK_RATIO, seed: int = 0) -> None:
        self.mask_token_id = mask_token_id
        self.ratio = ratio
        self.rng = np.random.default_rng(seed)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([r["input_ids"] for r in rows])
        field_ids = torch.tensor(np.stack([r["field_ids"] for r in rows]))
        spans = torch.tensor([r["spans"] for r in rows])
        n, f = field_ids.shape
        k = max(1, round(self.ratio * f))
        mlm_ids, mlm_labels = ids.clone(), torch.full_like(ids, IGNORE_INDEX)
        mtm_ids, mtm_labels = field_ids.clone(), torch.full_like(field_ids, IGNORE_INDEX)
        for i in range(n):
            for fld in self.rng.choice(f, k, replace=False):
                a, b = spans[i, fld].tolist()
                mlm_labels[i, a:b] = ids[i, a:b]
                mlm_ids[i, a:b] = self.mask_token_id
            for fld in self.rng.choice(f, k, replace=False):
                mtm_labels[i, fld] = field_ids[i, fld]
                mtm_ids[i, fld] = 1
        return {
            "field_ids": field_ids,
            "labels": torch.tensor([r["label"] for r in rows]),
            "input_ids": ids,
            "attention_mask": torch.tensor([r["attention_mask"] for r in rows]),
            "field_spans": spans,
            "mlm_input_ids": mlm_ids,
            "mlm_labels": mlm_labels,
            "mtm_field_ids": mtm_ids,
            "mtm_labels": mtm_labels,
        }


class FullVocabMLMHead(MLMHead):
    """The naive MLM head: fuse and score the whole vocabulary at every position."""

    def forward(
        self, hidden: torch.Tensor, row_repr: torch.Tensor, labels: torch.Tensor
    ) -> HeadResult:
        fused = self.text_proj(hidden) + self.row_proj(row_repr).unsqueeze(1)
        logits = self.decoder(self.norm(nn.functional.gelu(fused)))  # [B, T, V]
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        sel = labels != IGNORE_INDEX
        acc = (logits.detach().argmax(-1)[sel] == labels[sel]).float().mean()
        return HeadResult(loss, acc)


# ---------------------------------------------------------------- FLOPs


def encoder_flops(cfg: Any, lengths: torch.Tensor) -> float:
    """Forward FLOPs of one encoder pass over sequences of the given real lengths."""
    d, ff, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    tokens = float(lengths.sum())
    dense = 2.0 * (4 * d * d + 2 * d * ff) * tokens
    attention = 2.0 * 2.0 * d * float((lengths.float() ** 2).sum())
    return layers * (dense + attention)


def needed_step_flops(cfg: Any, batch: dict[str, torch.Tensor], passes: int) -> float:
    """Training FLOPs (3x forward) of the needed work in one step."""
    lengths = batch["attention_mask"].sum(1)
    masked = float((batch["mlm_labels"] != IGNORE_INDEX).sum())
    d, v = cfg.hidden_size, cfg.vocab_size
    mlm = 2.0 * (d * d + d * v) * masked
    return 3.0 * (passes * encoder_flops(cfg, lengths) + mlm)


def peak_matmul_flops(device: torch.device, dtype: torch.dtype, size: int = 2048) -> float:
    """Best FLOP/s of a square matmul over a few repetitions."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = 0.0
    for _ in range(6):
        _sync(device)
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        _sync(device)
        best = max(best, 4 * 2.0 * size**3 / (time.perf_counter() - t))
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------- runs


def build_model(
    features: Path, plm_name: str, size: str, single_pass: bool, tokenizer: PreTrainedTokenizerBase
) -> FlipForPretraining:
    """A FLIP pretraining model with DCNv2 over the feature folder's fields."""
    fmap = load_feature_map(features)
    cfg = FlipModelConfig(
        field_names=fmap.field_names,
        vocab_sizes=fmap.vocab_sizes,
        id_model=IDModelConfig(embedding_dim=16, hidden_units=[256, 128], dropout=0.0),
        objectives=ObjectivesConfig(single_pass=single_pass),
    )
    if size == "base":  # RoBERTa-base-sized encoder (random init) over the same tokenizer
        bert = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            pad_token_id=tokenizer.pad_token_id,
        )
        plm = PLMEncoder.from_config(bert)
    else:
        plm = PLMEncoder.from_name(plm_name, tokenizer=tokenizer)
    model = FlipForPretraining(cfg, plm=plm)
    model.set_noise_counts([fmap.counts(f) for f in fmap.field_names])
    return model


class StepTimer:
    """Times training steps of one model (one optimizer), batch loading included."""

    def __init__(self, model: FlipForPretraining, device: torch.device, bf16: bool) -> None:
        self.model = model
        self.device = device
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
        )

    def step(self, batches: Iterator[dict[str, torch.Tensor]]) -> tuple[float, dict[str, Any]]:
        """One step: (seconds, the batch)."""
        _sync(self.device)
        t = time.perf_counter()
        batch = {k: v.to(self.device) for k, v in next(batches).items()}
        with self.autocast():
            loss = self.model(**batch).loss
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        _sync(self.device)
        return time.perf_counter() - t, batch


def _forever(loader: DataLoader[Any]) -> Iterator[dict[str, torch.Tensor]]:
    while True:
        yield from loader


def synthetic_features(tmp: Path, plm_name: str) -> Path:
    """Build a small synthetic feature folder with the PLM's tokenizer."""
    from flip_core.data.build import build_splits_from_config, dataset_spec, render_from_config
    from flip_core.data.synth import write_synthetic_movielens
    from flip_core.lake import ingest_dataset

    raw = tmp / "raw"
    write_synthetic_movielens(raw, users=100, movies=200, ratings_per_user=30, seed=0)
    cfg: FlipConfig = load_config(None, [f"paths.data_root={tmp}", f"plm.name={plm_name}"])
    lake = ingest_dataset(raw, tmp, dataset_spec(cfg)).lake_dir
    splits = build_splits_from_config(cfg, lake)
    return render_from_config(cfg, splits.splits_dir).features_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=Path, default=None)
    ap.add_argument("--plm", default="minilm-l6")
    ap.add_argument("--size", choices=["minilm", "base"], default="minilm")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--single-pass", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.plm)
    with tempfile.TemporaryDirectory() as tmp:
        features = args.features or synthetic_features(Path(tmp), args.plm)
        result = run(args, device, tokenizer, features)
    print(json.dumps(result))


def run(
    args: argparse.Namespace,
    device: torch.device,
    tokenizer: PreTrainedTokenizerBase,
    features: Path,
) -> dict[str, Any]:
    """Peak matmul, then ours and the naive baseline step by step in alternation (so a change
    of machine load hits both alike), then the peak matmul again; return the JSON record.

    The peak is the best of the two readings, so a burst of load during one of them cannot
    inflate the MFU.
    """
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    peak_before = peak_matmul_flops(device, dtype)
    print(f"peak matmul before: {peak_before / 1e9:.1f} GFLOP/s ({dtype})", flush=True)
    passes = 1 if args.single_pass else 2
    rows = args.batch_size * (args.steps + args.warmup)
    model = build_model(features, args.plm, args.size, args.single_pass, tokenizer).to(device)
    model.train()  # dropout on, as in the trainer (from_pretrained leaves the encoder in eval)
    assert model.plm is not None and model.mlm_head is not None
    ours_collate: Any = FlipCollate(
        pad_token_id=int(tokenizer.pad_token_id),
        mask_token_id=tokenizer.mask_token_id,
        mlm=True,
        mtm=True,
    )
    if args.single_pass:
        inner = ours_collate
        ours_collate = lambda b: make_masks_disjoint(inner(b))  # noqa: E731
    ours = _forever(
        DataLoader(
            FeatureDataset(features / "train.parquet", with_text=True, max_rows=rows),
            batch_size=args.batch_size,
            shuffle=True,
            collate_fn=ours_collate,
        )
    )
    naive = _forever(
        DataLoader(
            NaiveTextDataset(features / "train.parquet", tokenizer, rows),
            batch_size=args.batch_size,
            shuffle=True,
            collate_fn=NaiveCollate(int(tokenizer.mask_token_id)),
        )
    )
    timer = StepTimer(model, device, args.bf16)
    head_class = type(model.mlm_head)
    unpad = model.plm.unpad
    totals = {"ours": [0.0, 0, 0.0], "naive": [0.0, 0, 0.0]}  # seconds, rows, needed FLOPs
    for i in range(args.warmup + args.steps):
        for name in ("ours",) if args.skip_baseline else ("ours", "naive"):
            # same weights; only the forward differs (real tokens vs all, masked positions vs all)
            model.mlm_head.__class__ = head_class if name == "ours" else FullVocabMLMHead
            model.plm.unpad = unpad and name == "ours"
            seconds, batch = timer.step(ours if name == "ours" else naive)
            if i >= args.warmup:
                total = totals[name]
                total[0] += seconds
                total[1] += batch["field_ids"].shape[0]
                total[2] += needed_step_flops(model.plm.config, batch, passes)
    model.mlm_head.__class__ = head_class
    model.plm.unpad = unpad
    sps = totals["ours"][1] / totals["ours"][0]
    flops = totals["ours"][2] / totals["ours"][0]
    print(f"ours: {sps:.1f} samples/s, needed {flops / 1e9:.1f} GFLOP/s", flush=True)
    base_sps: float | None = None
    if not args.skip_baseline:
        base_sps = totals["naive"][1] / totals["naive"][0]
        print(f"naive baseline: {base_sps:.1f} samples/s", flush=True)
    peak_after = peak_matmul_flops(device, dtype)
    print(f"peak matmul after: {peak_after / 1e9:.1f} GFLOP/s ({dtype})", flush=True)
    peak = max(peak_before, peak_after)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "benchmark": "pretrain",
        "samples_per_s": round(sps, 2),
        "baseline_samples_per_s": None if base_sps is None else round(base_sps, 2),
        "ratio": None if base_sps is None else round(sps / base_sps, 2),
        "mfu": round(flops / peak, 4),
        "peak_gflops": round(peak / 1e9, 1),
        "device": f"{name} x{torch.get_num_threads()} threads" if name == "cpu" else name,
        "plm": args.plm if args.size == "minilm" else "base-sized (768x12)",
        "batch_size": args.batch_size,
        "passes": passes,
        "unpadded": unpad,
    }


if __name__ == "__main__":
    main()
