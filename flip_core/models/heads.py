"""FLIP pretraining heads and losses: fused MLM head, attentive MTM head, ICL contrastive head.

The losses are plain functions so they can be tested on their own: `sampled_softmax_loss` and
`nce_loss` (log-Q corrected, noise from a field's unigram distribution) and `info_nce_loss`
(symmetric InfoNCE whose negatives are gathered across DDP ranks with gradients kept).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812
from torch import nn

from flip_core.data.collate import IGNORE_INDEX
from flip_core.data.feature_map import OOV_ID

RESERVED_IDS = OOV_ID  # PAD = 0 and MASK = 1 (the ids below OOV) are never targets; OOV can be

MTMLoss = Literal["sampled_softmax", "nce"]


# ---------------------------------------------------------------- sampled losses


def sampled_softmax_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    log_noise: torch.Tensor,
    num_negatives: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-row sampled softmax with log-Q correction over a vocabulary `weight` [V, d].

    `num_negatives` classes are drawn (with replacement, shared by the rows) from the noise
    distribution `exp(log_noise)`; every candidate logit is corrected by `-log(K * q)`, and a
    negative equal to a row's target is masked out (accidental hit). Returns [N] losses.
    """
    true_logit, neg_logit, true_lq, neg_lq, hits = _candidate_logits(
        hidden, targets, weight, bias, log_noise, num_negatives, generator
    )
    log_k = math.log(num_negatives)
    pos = true_logit - true_lq - log_k
    neg = (neg_logit - neg_lq - log_k).masked_fill(hits, float("-inf"))
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return -torch.log_softmax(logits, dim=1)[:, 0]


def nce_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    log_noise: torch.Tensor,
    num_negatives: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-row noise-contrastive estimation: data vs `num_negatives` noise draws, logit
    `s - log(K * q)`; at the optimum `s` is the (self-normalised) log-probability. Noise draws
    equal to the target are kept (removing them would bias the estimator). Returns [N]."""
    true_logit, neg_logit, true_lq, neg_lq, _ = _candidate_logits(
        hidden, targets, weight, bias, log_noise, num_negatives, generator
    )
    log_k = math.log(num_negatives)
    pos = F.logsigmoid(true_logit - true_lq - log_k)
    neg = F.logsigmoid(-(neg_logit - neg_lq - log_k))
    return -(pos + neg.sum(dim=1))


def _candidate_logits(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    log_noise: torch.Tensor,
    num_negatives: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    probs = log_noise.detach().float().exp()
    negatives = torch.multinomial(probs, num_negatives, replacement=True, generator=generator)
    negatives = negatives.to(targets.device)
    true_logit = (hidden * weight[targets]).sum(-1) + bias[targets]
    neg_logit = hidden @ weight[negatives].T + bias[negatives]
    hits = negatives.unsqueeze(0) == targets.unsqueeze(1)
    return true_logit, neg_logit, log_noise[targets], log_noise[negatives].unsqueeze(0), hits


def full_softmax_loss(
    hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """Per-row cross-entropy over the whole vocabulary (reserved PAD/MASK excluded). [N]."""
    return F.cross_entropy(vocab_logits(hidden, weight, bias), targets, reduction="none")


def vocab_logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Scores over a field's vocabulary with PAD and MASK ruled out. [N, V]."""
    logits = hidden @ weight.T + bias
    return torch.cat(
        [torch.full_like(logits[:, :RESERVED_IDS], float("-inf")), logits[:, RESERVED_IDS:]], 1
    )


def log_noise_from_counts(counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Add-one smoothed unigram log-distribution over a field's ids; PAD/MASK get -inf."""
    c = torch.as_tensor(counts, dtype=torch.float64).clamp_min(0) + 1.0
    c[:RESERVED_IDS] = 0.0
    return (c / c.sum()).log().float()


# ---------------------------------------------------------------- contrastive loss


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate `x` [n, d] from every DDP rank keeping gradients; returns (all, my offset).

    Ranks may hold different n (last batch): rows are padded to the largest n and trimmed.
    Without an initialised process group this is the identity with offset 0.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    counts = [int(s.item()) for s in sizes]
    padded = F.pad(x, (0, 0, 0, max(counts) - x.shape[0]))
    parts = all_gather(padded)
    rank = dist.get_rank()
    return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)]), sum(counts[:rank])


def info_nce_loss(
    a: torch.Tensor, b: torch.Tensor, temperature: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE between L2-normalised `a` [n, d] and `b` [n, d], row i matching row i.

    Negatives are every other row of the *global* batch (gathered across DDP ranks). Returns
    (loss, a->b top-1 accuracy).
    """
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    all_a, offset = gather_with_grad(a)
    all_b, _ = gather_with_grad(b)
    targets = torch.arange(a.shape[0], device=a.device) + offset
    logits_ab = a @ all_b.T / temperature
    logits_ba = b @ all_a.T / temperature
    loss = 0.5 * (F.cross_entropy(logits_ab, targets) + F.cross_entropy(logits_ba, targets))
    accuracy = (logits_ab.argmax(-1) == targets).float().mean()
    return loss, accuracy.detach()


# ---------------------------------------------------------------- heads


@dataclass
class HeadResult:
    """A head's mean loss over its targets and its top-1 reconstruction accuracy."""

    loss: torch.Tensor
    accuracy: torch.Tensor


class MLMHead(nn.Module):
    """Masked language modelling: token state fused with the unmasked row, scored over the
    tokenizer vocabulary only at masked positions."""

    def __init__(self, text_dim: int, row_dim: int, vocab_size: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.text_proj = nn.Linear(text_dim, text_dim)
        self.row_proj = nn.Linear(row_dim, text_dim, bias=False)
        self.norm = nn.LayerNorm(text_dim, eps=eps)
        self.decoder = nn.Linear(text_dim, vocab_size)

    def forward(
        self, hidden: torch.Tensor, row_repr: torch.Tensor, labels: torch.Tensor
    ) -> HeadResult:
        """`hidden` [B, T, D] of the masked text, `row_repr` [B, H], `labels` [B, T]."""
        rows, cols = (labels != IGNORE_INDEX).nonzero(as_tuple=True)
        targets = labels[rows, cols]
        fused = self.text_proj(hidden[rows, cols]) + self.row_proj(row_repr)[rows]
        logits = self.decoder(self.norm(F.gelu(fused)))
        return _classification(logits, targets)


class MTMHead(nn.Module):
    """Masked tabular modelling: per masked field, a query from the masked row attends over the
    text token states; the result is scored over that field's own vocabulary."""

    def __init__(
        self,
        row_dim: int,
        text_dim: int,
        vocab_sizes: Sequence[int],
        hidden_dim: int,
        loss: MTMLoss = "sampled_softmax",
        num_negatives: int = 256,
        full_softmax_max_vocab: int = 1024,
    ) -> None:
        super().__init__()
        self.loss_kind: MTMLoss = loss
        self.num_negatives = num_negatives
        self.full_softmax_max_vocab = full_softmax_max_vocab
        self.attn_dim = text_dim
        self.query = nn.Linear(row_dim, text_dim)
        self.field_query = nn.Parameter(torch.zeros(len(vocab_sizes), text_dim))
        self.key = nn.Linear(text_dim, text_dim)
        self.value = nn.Linear(text_dim, text_dim)
        self.mix = nn.Sequential(
            nn.Linear(text_dim + row_dim, hidden_dim), nn.GELU(), nn.LayerNorm(hidden_dim)
        )
        self.out_weight = nn.ParameterList(
            nn.Parameter(torch.randn(v, hidden_dim) * hidden_dim**-0.5) for v in vocab_sizes
        )
        self.out_bias = nn.ParameterList(nn.Parameter(torch.zeros(v)) for v in vocab_sizes)
        for i, v in enumerate(vocab_sizes):
            self.register_buffer(f"log_noise_{i}", log_noise_from_counts([1] * v))

    def set_noise_counts(self, field: int, counts: Sequence[int]) -> None:
        """Use a field's train counts (one per id) as its noise distribution."""
        buf = getattr(self, f"log_noise_{field}")
        if len(counts) != buf.numel():
            raise ValueError(f"field {field}: {len(counts)} counts for a {buf.numel()}-id vocab")
        buf.copy_(log_noise_from_counts(counts))

    def uses_sampling(self, field: int) -> bool:
        """Whether `field` is scored with the sampled loss (vocab above the full-softmax limit)."""
        return self.out_bias[field].numel() > self.full_softmax_max_vocab

    def encode(
        self,
        row_repr: torch.Tensor,
        text: torch.Tensor,
        attention_mask: torch.Tensor,
        rows: torch.Tensor,
        fields: torch.Tensor,
    ) -> torch.Tensor:
        """Hidden vector [N, hidden_dim] for each masked (row, field) pair."""
        q = self.query(row_repr)[rows] + self.field_query[fields]  # [N, D]
        k = self.key(text)[rows]  # [N, T, D]
        v = self.value(text)[rows]
        scores = torch.einsum("nd,ntd->nt", q, k) / math.sqrt(self.attn_dim)
        scores = scores.masked_fill(attention_mask[rows] == 0, float("-inf"))
        context = torch.einsum("nt,ntd->nd", scores.softmax(-1), v)
        return self.mix(torch.cat([context, row_repr[rows]], dim=-1))

    def forward(
        self,
        row_repr: torch.Tensor,
        text: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
    ) -> HeadResult:
        """`row_repr` [B, H] of the masked row, `text` [B, T, D], `labels` [B, F]."""
        rows, fields = (labels != IGNORE_INDEX).nonzero(as_tuple=True)
        hidden = self.encode(row_repr, text, attention_mask, rows, fields)
        losses, correct = [], []
        for f in fields.unique().tolist():
            sel = fields == f
            h, y = hidden[sel], labels[rows[sel], f]
            w, b = self.out_weight[f], self.out_bias[f]
            losses.append(self._field_loss(f, h, y, w, b))
            with torch.no_grad():
                correct.append(vocab_logits(h, w, b).argmax(-1) == y)
        if not losses:
            return _empty(row_repr)
        return HeadResult(torch.cat(losses).mean(), torch.cat(correct).float().mean())

    def _field_loss(
        self, f: int, h: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor
    ) -> torch.Tensor:
        if not self.training or not self.uses_sampling(f):
            return full_softmax_loss(h, y, w, b)
        log_noise = getattr(self, f"log_noise_{f}")
        fn = nce_loss if self.loss_kind == "nce" else sampled_softmax_loss
        return fn(h, y, w, b, log_noise, self.num_negatives)


class ICLHead(nn.Module):
    """Instance-level contrastive learning between projected row and text vectors."""

    def __init__(
        self, row_dim: int, text_dim: int, dim: int, temperature: float, learnable: bool
    ) -> None:
        super().__init__()
        self.row_proj = nn.Linear(row_dim, dim)
        self.text_proj = nn.Linear(text_dim, dim)
        log_t = torch.tensor(math.log(temperature))
        if learnable:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    @property
    def temperature(self) -> torch.Tensor:
        """Current temperature, clamped to [0.01, 1]."""
        return self.log_temperature.exp().clamp(0.01, 1.0)

    def forward(self, row_repr: torch.Tensor, text_pooled: torch.Tensor) -> HeadResult:
        """InfoNCE between the unmasked row [B, H] and its unmasked text [B, D]."""
        loss, acc = info_nce_loss(
            self.row_proj(row_repr), self.text_proj(text_pooled), self.temperature
        )
        return HeadResult(loss, acc)


def _classification(logits: torch.Tensor, targets: torch.Tensor) -> HeadResult:
    if targets.numel() == 0:
        return _empty(logits)
    loss = F.cross_entropy(logits, targets)
    acc = (logits.detach().argmax(-1) == targets).float().mean()
    return HeadResult(loss, acc)


def _empty(like: torch.Tensor) -> HeadResult:
    zero = like.sum() * 0.0
    return HeadResult(zero, zero.detach())
