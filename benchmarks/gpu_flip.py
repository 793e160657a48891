"""FLIP at full scale on one GPU, with nothing but Python 3.11 and torch (a bare CUDA machine).

Reads the pack of `benchmarks/gpu_pack.py` (ids, labels, value texts, template pieces; a BERT
encoder's weights), rebuilds every row's prompt tokens on the device, then runs the experiment:

1. FLIP pretraining (MLM + MTM + ICL, two encoder passes per step) on all (or a seeded random
   sample of) train rows; with `--control`, a second pretraining where each row's text comes
   from another row (seeded derangement), everything else equal.
2. Finetuning arms, each selected on valid AUC (test is scored once, on the selected weights):
   ID side x `--seeds`: flip_id (from FLIP pretraining), control (from the control pretraining),
   scratch (random init). PLM side x `--plm-seeds`: flip (ID model + encoder fused,
   a = sigmoid(scalar) with its own learning rate), flip_plm, plm_only (encoder's original
   weights), id_only (random init, the PLM side's rows and recipe).
3. One JSON file with the settings, timings, every run's valid/test AUC (overall, warm users,
   cold users, long-tail items) and its test probabilities, for the user-level bootstrap done
   by `benchmarks/gpu_report.py` where numpy is available.

This file is a second, self-contained implementation of the models in `flip_core` (BERT encoder,
DCNv2, the three objectives, the three variants): the bare machine has no transformers, numpy or
pyarrow, and the upload limit leaves no room for their wheels next to the encoder. The encoder's
parameter names follow Hugging Face BERT, so its weights load unchanged.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import platform
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

MASK_ID, OOV_ID = 1, 2  # reserved ids of every field vocabulary (0 is padding)

# ---------------------------------------------------------------- BERT (HF parameter names)


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)


class _Dense(nn.Module):
    def __init__(self, d_in: int, d_out: int, eps: float | None) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        if eps is not None:
            self.LayerNorm = nn.LayerNorm(d_out, eps=eps)


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, eps: float) -> None:
        super().__init__()
        self.add_module("self", _SelfAttention(hidden, heads))
        self.output = _Dense(hidden, hidden, eps)


class _Layer(nn.Module):
    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        h, eps = c["hidden_size"], c["layer_norm_eps"]
        self.attention = _Attention(h, c["num_attention_heads"], eps)
        self.intermediate = _Dense(h, c["intermediate_size"], None)
        self.output = _Dense(c["intermediate_size"], h, eps)

    def forward(self, x: Tensor, keep: Tensor, dropout: float) -> Tensor:
        sa: Any = self.attention._modules["self"]
        b, t, h = x.shape
        d = h // sa.heads

        def split(m: nn.Linear) -> Tensor:
            return m(x).view(b, t, sa.heads, d).transpose(1, 2)

        att = F.scaled_dot_product_attention(
            split(sa.query), split(sa.key), split(sa.value), attn_mask=keep, dropout_p=dropout
        )
        att = att.transpose(1, 2).reshape(b, t, h)
        out = self.attention.output
        x = out.LayerNorm(x + F.dropout(out.dense(att), dropout, self.training))
        mid = F.gelu(self.intermediate.dense(x))
        return self.output.LayerNorm(x + F.dropout(self.output.dense(mid), dropout, self.training))


class _Embeddings(nn.Module):
    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        h = c["hidden_size"]
        self.word_embeddings = nn.Embedding(c["vocab_size"], h)
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], h)
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], h)
        self.LayerNorm = nn.LayerNorm(h, eps=c["layer_norm_eps"])


class _Stack(nn.Module):
    def __init__(self, c: dict[str, Any]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c["num_hidden_layers"]))


class Bert(nn.Module):
    """A BERT encoder whose state dict matches Hugging Face `BertModel` (no pooler)."""

    def __init__(self, c: dict[str, Any], dropout: float = 0.1) -> None:
        super().__init__()
        self.config = c
        self.dropout = dropout
        self.embeddings = _Embeddings(c)
        self.encoder = _Stack(c)

    @property
    def hidden(self) -> int:
        return int(self.config["hidden_size"])

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Token states [B, T, H] of `ids` [B, T]; `mask` [B, T] is True on real tokens."""
        e = self.embeddings
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = e.word_embeddings(ids) + e.position_embeddings(pos) + e.token_type_embeddings.weight[0]
        x = F.dropout(e.LayerNorm(x), self.dropout, self.training)
        keep = mask[:, None, None, :]
        p = self.dropout if self.training else 0.0
        for layer in self.encoder.layer:
            x = layer(x, keep, p)
        return x


# ---------------------------------------------------------------- DCNv2 (parallel)


class DCNv2(nn.Module):
    """Field embeddings -> full-rank cross layers in parallel with an MLP; row repr + logit."""

    def __init__(
        self, vocab_sizes: list[int], emb: int, hidden: list[int], cross: int, dropout: float
    ) -> None:
        super().__init__()
        offsets = torch.tensor([0, *vocab_sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.embedding = nn.Embedding(sum(vocab_sizes), emb)
        nn.init.normal_(self.embedding.weight, std=1e-2)
        d = len(vocab_sizes) * emb
        self.cross = nn.ModuleList(nn.Linear(d, d) for _ in range(cross))
        layers: list[nn.Module] = []
        width = d
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        self.mlp = nn.Sequential(*layers)
        self.repr_dim = d + width
        self.head = nn.Linear(self.repr_dim, 1)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        x0 = self.embedding(ids + self.offsets).flatten(1)
        x = x0
        for layer in self.cross:
            x = x0 * layer(x) + x
        row = torch.cat([x, self.mlp(x0)], dim=1)
        return row, self.head(row).squeeze(-1)


# ---------------------------------------------------------------- data on the device


class Split:
    """One split on the device: field ids, labels, prompt tokens, value spans, user keys."""

    def __init__(self, raw: dict[str, Tensor], pieces: Pieces, device: torch.device) -> None:
        self.field_ids = raw["field_ids"].to(device=device, dtype=torch.long)
        self.labels = raw["labels"].to(device=device, dtype=torch.float32)
        value_idx = raw["value_idx"].to(device=device, dtype=torch.long)
        self.tokens, self.lengths, self.spans = pieces.assemble(value_idx)
        self.users = value_idx[:, pieces.user_field]  # raw user key (cold users differ too)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, rows: Tensor) -> Split:
        out = object.__new__(Split)
        for name in ("field_ids", "labels", "tokens", "lengths", "spans", "users"):
            setattr(out, name, getattr(self, name)[rows])
        return out

    def batch(self, rows: Tensor) -> dict[str, Tensor]:
        t = int(self.lengths[rows].max())
        tokens = self.tokens[rows, :t]
        return {
            "field_ids": self.field_ids[rows],
            "labels": self.labels[rows],
            "tokens": tokens,
            "mask": torch.arange(t, device=tokens.device)[None, :] < self.lengths[rows, None],
            "spans": self.spans[rows],
        }


class Pieces:
    """Per-field value token tables and the template's constant pieces (from the pack)."""

    def __init__(self, data: dict[str, Any], device: torch.device) -> None:
        self.user_field = int(data["meta"]["user_field"])
        self.pad = int(data["meta"]["pad_token_id"])
        self.glue = [torch.tensor(g, dtype=torch.long, device=device) for g in data["glue"]]
        self.values = []
        for table in data["values"]:
            width = max(1, max(len(v) for v in table))
            padded = torch.full((len(table), width), self.pad, dtype=torch.long)
            for i, v in enumerate(table):
                padded[i, : len(v)] = torch.tensor(v, dtype=torch.long)
            lengths = torch.tensor([len(v) for v in table], dtype=torch.long)
            self.values.append((padded.to(device), lengths.to(device)))

    def assemble(self, value_idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Tokens [N, T] (padded), lengths [N], value spans [N, F, 2] of every row."""
        n, device = value_idx.shape[0], value_idx.device
        parts: list[tuple[Tensor, Tensor]] = []
        for f, (table, lens) in enumerate(self.values):
            g = self.glue[f]
            parts.append((g.expand(n, -1), torch.full((n,), g.numel(), device=device)))
            parts.append((table[value_idx[:, f]], lens[value_idx[:, f]]))
        tail = self.glue[-1]
        parts.append((tail.expand(n, -1), torch.full((n,), tail.numel(), device=device)))
        lengths = torch.stack([p[1] for p in parts], dim=1)
        starts = lengths.cumsum(1) - lengths
        total = lengths.sum(1)
        out = torch.full((n, int(total.max())), self.pad, dtype=torch.long, device=device)
        for (tok, length), start in zip(parts, starts.unbind(1), strict=True):
            if tok.shape[1] == 0:
                continue
            pos = start[:, None] + torch.arange(tok.shape[1], device=device)[None, :]
            keep = torch.arange(tok.shape[1], device=device)[None, :] < length[:, None]
            rows = torch.arange(n, device=device)[:, None].expand_as(pos)
            out[rows[keep], pos[keep]] = tok[keep]
        value_starts = starts[:, 1:-1:2]
        spans = torch.stack([value_starts, value_starts + lengths[:, 1:-1:2]], dim=-1)
        return out, total, spans


def load_pack(pack: Path, device: torch.device) -> tuple[dict[str, Split], dict[str, Any], Any]:
    """Splits on the device, the pack's meta and the encoder pack."""
    with gzip.open(pack / "data.pt.gz", "rb") as f:
        data = torch.load(io.BytesIO(f.read()), weights_only=True)
    pieces = Pieces(data, device)
    splits = {name: Split(raw, pieces, device) for name, raw in data["splits"].items()}
    encoder = torch.load(pack / "encoder.pt", weights_only=True)
    return splits, data["meta"], encoder


# ---------------------------------------------------------------- pretraining


def choose_fields(shape: tuple[int, int], ratio: float, device: torch.device) -> Tensor:
    """[B, F] bool: a share `ratio` of each row's fields, at least one."""
    r = torch.rand(shape, device=device)
    chosen = r < ratio
    lowest = r == r.min(dim=1, keepdim=True).values
    return chosen | lowest


class Pretrainer(nn.Module):
    """ID model + encoder with the MLM, MTM and ICL heads."""

    def __init__(self, idm: DCNv2, bert: Bert, vocab_sizes: list[int], mask_token: int) -> None:
        super().__init__()
        self.idm, self.bert, self.mask_token = idm, bert, mask_token
        h, r = bert.hidden, idm.repr_dim
        self.mlm_row = nn.Linear(r, h)
        self.mlm_norm = nn.LayerNorm(h)
        self.mlm_bias = nn.Parameter(torch.zeros(bert.config["vocab_size"]))
        self.mtm_query = nn.Linear(r, h)
        self.mtm_field = nn.Parameter(torch.randn(len(vocab_sizes), h) * 0.02)
        self.mtm_out = nn.ModuleList(nn.Linear(h, v) for v in vocab_sizes)
        self.icl_row = nn.Linear(r, 128)
        self.icl_text = nn.Linear(h, 128)
        self.icl_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, b: dict[str, Tensor], ratio: float = 0.15) -> dict[str, Tensor]:
        ids, tokens, mask, spans = b["field_ids"], b["tokens"], b["mask"], b["spans"]
        device = ids.device
        row, _ = self.idm(ids)
        # MLM: every token of the chosen fields' values -> [MASK]; predict from states + row
        pos = torch.arange(tokens.shape[1], device=device)
        inside = (pos >= spans[..., :1]) & (pos < spans[..., 1:])  # [B, F, T]
        mlm_at = (inside & choose_fields(ids.shape, ratio, device)[..., None]).any(1)
        masked = self.bert(tokens.masked_fill(mlm_at, self.mask_token), mask)
        fused = self.mlm_norm(F.gelu(masked + self.mlm_row(row)[:, None, :]))[mlm_at]
        logits = fused @ self.bert.embeddings.word_embeddings.weight.T + self.mlm_bias
        mlm = F.cross_entropy(logits.float(), tokens[mlm_at])
        # MTM: masked row's query attends over the clean text; predict the masked ids
        clean = self.bert(tokens, mask)
        chosen = choose_fields(ids.shape, ratio, device)
        masked_row, _ = self.idm(ids.masked_fill(chosen, MASK_ID))
        query = self.mtm_query(masked_row)[:, None, :] + self.mtm_field[None]  # [B, F, H]
        ctx = F.scaled_dot_product_attention(query, clean, clean, attn_mask=mask[:, None, :])
        mtm_terms = []
        for f, head in enumerate(self.mtm_out):
            rows = chosen[:, f]
            if rows.any():
                mtm_terms.append(
                    F.cross_entropy(head(ctx[rows, f]).float(), ids[rows, f], reduction="sum")
                )
        mtm = torch.stack(mtm_terms).sum() / chosen.sum()
        # ICL: InfoNCE between the row and its text (in-batch negatives), both directions
        zr = F.normalize(self.icl_row(row).float(), dim=-1)
        zt = F.normalize(self.icl_text(clean[:, 0]).float(), dim=-1)
        sim = zr @ zt.T * self.icl_scale.exp().clamp(max=100.0)
        target = torch.arange(ids.shape[0], device=device)
        icl = (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2
        return {"loss": mlm + mtm + icl, "mlm": mlm, "mtm": mtm, "icl": icl}


# ---------------------------------------------------------------- CTR variants


class CTR(nn.Module):
    """flip_id (ID model), flip_plm (encoder + linear head), flip (both, fused)."""

    def __init__(self, idm: DCNv2 | None, bert: Bert | None) -> None:
        super().__init__()
        self.idm, self.bert = idm, bert
        self.plm_head = nn.Linear(bert.hidden, 1) if bert is not None else None
        self.mix = nn.Parameter(torch.zeros(())) if idm is not None and bert is not None else None

    def forward(self, b: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        branches = []
        if self.idm is not None:
            branches.append(self.idm(b["field_ids"])[1])
        if self.bert is not None and self.plm_head is not None:
            text = self.bert(b["tokens"], b["mask"])[:, 0]
            branches.append(self.plm_head(text).squeeze(-1))
        if self.mix is not None:
            a = torch.sigmoid(self.mix)
            return a * branches[0] + (1 - a) * branches[1], branches
        return branches[0], []


# ---------------------------------------------------------------- metrics


def auc(labels: Tensor, scores: Tensor) -> float:
    """Exact ROC AUC with average ranks for ties; NaN when one class is absent."""
    y = labels.double()
    pos = float(y.sum())
    neg = y.numel() - pos
    if pos == 0 or neg == 0:
        return float("nan")
    _, inverse, counts = torch.unique(scores.double(), return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = (ends - (counts.double() - 1) / 2)[inverse]
    return float(((ranks * y).sum() - pos * (pos + 1) / 2) / (pos * neg))


# ---------------------------------------------------------------- training


class Runner:
    """Shared settings and the loops."""

    def __init__(self, args: argparse.Namespace, splits: dict[str, Split], meta: dict[str, Any],
                 encoder: dict[str, Any]) -> None:  # fmt: skip
        self.args = args
        self.device = splits["train"].labels.device
        self.splits = splits
        self.meta = meta
        self.encoder = encoder
        self.use_bf16 = self.device.type == "cuda" and args.precision == "bf16"
        train = splits["train"]
        item = int(meta["item_field"])
        counts = torch.bincount(train.field_ids[:, item], minlength=meta["vocab_sizes"][item])
        self.item_counts = counts.clone()
        self.item_counts[OOV_ID] = 0  # OOV items had fewer than min-count train ratings
        self.timings: dict[str, float] = {}

    def autocast(self) -> AbstractContextManager[Any]:
        if self.use_bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def new_bert(self) -> Bert:
        bert = Bert(self.encoder["config"])
        bert.load_state_dict({k: v.float() for k, v in self.encoder["state_dict"].items()})
        return bert.to(self.device)

    def new_idm(self) -> DCNv2:
        a = self.args
        hidden = [int(h) for h in a.id_hidden.split("x")]
        return DCNv2(self.meta["vocab_sizes"], a.id_emb, hidden, a.id_cross, a.id_dropout).to(
            self.device
        )

    def sample(self, split: Split, rows: int | None, seed: int) -> Split:
        if rows is None or rows >= len(split):
            return split
        g = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(split), generator=g)[:rows].sort().values
        return split.take(keep.to(self.device))

    def pretrain(self, shuffle_text: bool) -> tuple[dict[str, Tensor], list[dict[str, float]]]:
        a = self.args
        torch.manual_seed(a.pretrain_seed)
        data = self.sample(self.splits["train"], a.pretrain_rows, a.sample_seed)
        if shuffle_text:  # each row's text from another row (derangement)
            g = torch.Generator().manual_seed(a.pretrain_seed + 1)
            order = torch.randperm(len(data), generator=g).to(self.device)
            partner = torch.empty_like(order)
            partner[order] = order.roll(-1)
            data = data.take(torch.arange(len(data), device=self.device))
            data.tokens, data.lengths, data.spans = (
                data.tokens[partner], data.lengths[partner], data.spans[partner]
            )  # fmt: skip
        model = Pretrainer(self.new_idm(), self.new_bert(), self.meta["vocab_sizes"],
                           self.meta["mask_token_id"]).to(self.device)  # fmt: skip
        plm_ids = {id(p) for p in model.bert.parameters()}
        opt = torch.optim.AdamW(
            [
                {"params": [p for p in model.parameters() if id(p) not in plm_ids]},
                {"params": list(model.bert.parameters()), "lr": a.plm_lr},
            ],
            lr=a.lr,
        )
        log: list[dict[str, float]] = []
        step = 0
        for _ in range(a.pretrain_epochs):
            model.train()
            for rows in torch.randperm(len(data), device=self.device).split(a.pretrain_batch):
                if len(rows) < 2:
                    continue
                with self.autocast():
                    out = model(data.batch(rows))
                opt.zero_grad(set_to_none=True)
                out["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                step += 1
                if step % a.log_every == 0:
                    log.append({"step": step, **{k: float(v) for k, v in out.items()}})
                if a.max_steps and step >= a.max_steps:
                    break
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return state, log

    def finetune(self, arm: str, seed: int, pretrained: dict[str, Tensor] | None,
                 plm_side: bool) -> dict[str, Any]:  # fmt: skip
        a = self.args
        torch.manual_seed(seed)
        variant = {"flip_id": "id", "control": "id", "scratch": "id", "id_only": "id",
                   "flip": "both", "flip_plm": "plm", "plm_only": "plm"}[arm]  # fmt: skip
        idm = self.new_idm() if variant in ("id", "both") else None
        bert = self.new_bert() if variant in ("plm", "both") else None
        if pretrained is not None:
            if idm is not None:
                idm.load_state_dict(
                    {k[4:]: v for k, v in pretrained.items() if k.startswith("idm.")}
                )
            if bert is not None:
                bert.load_state_dict(
                    {k[5:]: v for k, v in pretrained.items() if k.startswith("bert.")}
                )
        model = CTR(idm, bert).to(self.device)
        plm_ids = {id(p) for p in bert.parameters()} if bert is not None else set()
        mix_ids = {id(model.mix)} if model.mix is not None else set()
        groups: list[dict[str, Any]] = [
            {"params": [p for p in model.parameters() if id(p) not in plm_ids | mix_ids]}
        ]
        if bert is not None:
            groups.append({"params": list(bert.parameters()), "lr": a.plm_lr})
        if model.mix is not None:
            groups.append({"params": [model.mix], "lr": a.fusion_lr, "weight_decay": 0.0})
        opt = torch.optim.AdamW(groups, lr=a.lr, weight_decay=0.0)
        train = self.splits["train"]
        if plm_side:
            train = self.sample(train, a.plm_rows, a.sample_seed)
        batch = a.plm_batch if plm_side else a.id_batch
        epochs = a.plm_epochs if plm_side else a.id_epochs
        evals = a.plm_evals_per_epoch if plm_side else a.id_evals_per_epoch
        steps_per_epoch = math.ceil(len(train) / batch)
        eval_every = max(1, steps_per_epoch // evals)
        best: tuple[float, dict[str, Tensor] | None] = (-1.0, None)
        fusion: list[float] = []
        bad, step, stop = 0, 0, False
        for _ in range(epochs):
            model.train()
            for rows in torch.randperm(len(train), device=self.device).split(batch):
                b = train.batch(rows)
                with self.autocast():
                    logit, branches = model(b)
                loss = sum(
                    (F.binary_cross_entropy_with_logits(t.float(), b["labels"])
                     for t in [logit, *branches]),
                    torch.zeros((), device=self.device),
                )  # fmt: skip
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                step += 1
                if model.mix is not None and step % a.log_every == 0:
                    fusion.append(float(torch.sigmoid(model.mix)))
                if step % eval_every == 0 or (a.max_steps and step >= a.max_steps):
                    score = self.evaluate(model, self.splits["valid"])["auc"]
                    if score > best[0]:
                        best = (
                            score,
                            {k: v.detach().clone() for k, v in model.state_dict().items()},
                        )
                        bad = 0
                    else:
                        bad += 1
                    stop = bad > a.patience or bool(a.max_steps and step >= a.max_steps)
                if stop:
                    break
            if stop:
                break
        if best[1] is not None:
            model.load_state_dict(best[1])
        valid = self.evaluate(model, self.splits["valid"])
        test = self.evaluate(model, self.splits["test"], keep_probs=True)
        result: dict[str, Any] = {
            "arm": arm, "seed": seed, "steps": step, "train_rows": len(train),
            "valid_auc": valid["auc"], **{f"test_{k}": v for k, v in test.items()},
        }  # fmt: skip
        if model.mix is not None:
            result["fusion_a"] = float(torch.sigmoid(model.mix.detach()))
            result["fusion_trajectory"] = fusion
        return result

    @torch.no_grad()
    def evaluate(self, model: CTR, split: Split, keep_probs: bool = False) -> dict[str, Any]:
        model.eval()
        logits = []
        for rows in torch.arange(len(split), device=self.device).split(self.args.eval_batch):
            with self.autocast():
                logits.append(model(split.batch(rows))[0].float())
        model.train()
        score = torch.cat(logits)
        y = split.labels
        out: dict[str, Any] = {"auc": auc(y, score)}
        if keep_probs:
            cold = split.field_ids[:, self.meta["user_field"]] == OOV_ID
            tail = self.item_counts[split.field_ids[:, self.meta["item_field"]]] < 50
            for name, m in (("warm", ~cold), ("cold", cold), ("long_tail", tail)):
                out[f"{name}_auc"] = auc(y[m], score[m])
            out["probs"] = [round(float(p), 5) for p in torch.sigmoid(score).cpu()]
        return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults are the full-scale run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="auto", help="auto | cuda | cpu")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--plm-seeds", default="0,1")
    ap.add_argument("--arms", default="flip_id,control,scratch,flip,flip_plm,plm_only,id_only")
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--pretrain-seed", type=int, default=42)
    ap.add_argument("--pretrain-rows", type=int, default=None, help="None: all train rows")
    ap.add_argument("--pretrain-epochs", type=int, default=1)
    ap.add_argument("--pretrain-batch", type=int, default=256)
    ap.add_argument("--plm-rows", type=int, default=None, help="PLM-side train rows (None: all)")
    ap.add_argument("--plm-epochs", type=int, default=1)
    ap.add_argument("--plm-batch", type=int, default=256)
    ap.add_argument("--plm-evals-per-epoch", type=int, default=4)
    ap.add_argument("--id-epochs", type=int, default=6)
    ap.add_argument("--id-batch", type=int, default=1024)
    ap.add_argument("--id-evals-per-epoch", type=int, default=3)
    ap.add_argument("--id-emb", type=int, default=16)
    ap.add_argument("--id-hidden", default="400x400x400")
    ap.add_argument("--id-cross", type=int, default=3)
    ap.add_argument("--id-dropout", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--plm-lr", type=float, default=5e-5)
    ap.add_argument("--fusion-lr", type=float, default=1e-2)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--eval-batch", type=int, default=4096)
    ap.add_argument("--eval-rows", type=int, default=None, help="valid/test cap (dry runs)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--max-steps", type=int, default=0, help="cap per training run (dry runs)")
    ap.add_argument("--threads", type=int, default=0)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the experiment and write `<out>/flip_gpu_results.json`."""
    args = parse_args(argv)
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    splits, meta, encoder = load_pack(args.pack, device)
    runner = Runner(args, splits, meta, encoder)
    for name in ("valid", "test"):  # dry runs: a seeded random sample of the eval rows
        splits[name] = runner.sample(splits[name], args.eval_rows, args.sample_seed)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    plm_seeds = [int(s) for s in args.plm_seeds.split(",")]
    loaded = time.perf_counter()
    pre: dict[str, dict[str, Tensor]] = {}
    logs: dict[str, Any] = {}
    kinds = {"flip"} if {"flip_id", "flip", "flip_plm"} & set(arms) else set()
    kinds |= {"control"} if "control" in arms else set()
    for kind in sorted(kinds):
        t0 = time.perf_counter()
        pre[kind], logs[kind] = runner.pretrain(shuffle_text=kind == "control")
        runner.timings[f"pretrain_{kind}_s"] = time.perf_counter() - t0
    runs = []
    for arm in arms:
        plm_side = arm in ("flip", "flip_plm", "plm_only", "id_only")
        source = {"flip_id": "flip", "flip": "flip", "flip_plm": "flip", "control": "control"}
        t0 = time.perf_counter()
        for seed in plm_seeds if plm_side else seeds:
            runs.append(runner.finetune(arm, seed, pre.get(source.get(arm, "")), plm_side))
            brief = {
                k: v for k, v in runs[-1].items() if k not in ("test_probs", "fusion_trajectory")
            }
            print(json.dumps(brief), flush=True)
        runner.timings[f"finetune_{arm}_s"] = time.perf_counter() - t0
    test = splits["test"]
    result = {
        "script": "benchmarks/gpu_run.sh",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "device": torch.cuda.get_device_name(0)
        if device.type == "cuda"
        else f"cpu ({platform.machine()})",
        "torch": torch.__version__,
        "encoder": {k: v for k, v in encoder["config"].items()},
        "rows": {k: len(v) for k, v in splits.items()},
        "load_s": loaded - started,
        "timings": runner.timings,
        "wall_s": time.perf_counter() - started,
        "pretrain_logs": logs,
        "test_labels": [int(v) for v in test.labels.cpu()],
        "test_users": [int(v) for v in test.users.cpu()],
        "test_cold": [bool(v) for v in (test.field_ids[:, meta["user_field"]] == OOV_ID).cpu()],
        "test_item_train_count": [
            int(v) for v in runner.item_counts[test.field_ids[:, meta["item_field"]]].cpu()
        ],
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "flip_gpu_results.json").write_text(json.dumps(result), encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
