"""Building blocks shared by the ID-based CTR backbones.

Every block takes and returns plain tensors; shapes use B = batch, F = fields, E = embedding width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn


class FieldEmbedding(nn.Module):
    """One embedding table per field, stored as a single table with per-field offsets.

    `vocab_sizes[f]` counts every id of field f, the reserved PAD/MASK/OOV ids included; the PAD
    row (id 0 of each field) starts at zero but is trained like any other row.
    """

    offsets: Tensor

    def __init__(self, vocab_sizes: Sequence[int], dim: int, init_std: float = 1e-2) -> None:
        super().__init__()
        if not vocab_sizes or min(vocab_sizes) < 1:
            raise ValueError(f"vocab_sizes must be non-empty and positive, got {list(vocab_sizes)}")
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        self.dim = dim
        offsets = torch.tensor([0, *self.vocab_sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.table = nn.Embedding(sum(self.vocab_sizes), dim)
        nn.init.normal_(self.table.weight, std=init_std)

    @property
    def num_fields(self) -> int:
        """How many fields (F)."""
        return len(self.vocab_sizes)

    def forward(self, field_ids: Tensor) -> Tensor:
        """Map `[B, F]` ids to `[B, F, E]` embeddings."""
        rows = field_ids + self.offsets
        weight = self.table.weight
        if rows.device.type == "cpu" and weight.requires_grad and torch.is_grad_enabled():
            out: Tensor = _CpuGather.apply(rows, weight)
            return out
        return self.table(rows)


class _CpuGather(torch.autograd.Function):
    """`weight[rows]` whose backward is one `index_add_` into a zero table (on CPU several times
    faster than `embedding_dense_backward`, and deterministic)."""

    @staticmethod
    def forward(ctx: Any, rows: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(rows)
        ctx.num_rows = weight.shape[0]
        return nn.functional.embedding(rows, weight)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:
        (rows,) = ctx.saved_tensors
        dim = grad.shape[-1]
        table = grad.new_zeros((ctx.num_rows, dim))
        return None, table.index_add_(0, rows.reshape(-1), grad.reshape(-1, dim))


class LinearTerms(nn.Module):
    """First-order terms: one learned weight per (field, id) plus a bias; returns `[B]`."""

    def __init__(self, vocab_sizes: Sequence[int]) -> None:
        super().__init__()
        self.weights = FieldEmbedding(vocab_sizes, 1, init_std=0.0)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, field_ids: Tensor) -> Tensor:
        """Sum of the ids' weights plus the bias."""
        return self.weights(field_ids).sum(dim=(1, 2)) + self.bias


class MLP(nn.Module):
    """Linear -> (BatchNorm) -> ReLU -> Dropout blocks; `out_dim` is the last hidden width."""

    def __init__(
        self,
        in_dim: int,
        hidden_units: Sequence[int],
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for units in hidden_units:
            layers.append(nn.Linear(width, units))
            if batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        self.net = nn.Sequential(*layers)
        self.out_dim = width
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        """`[B, in_dim]` -> `[B, out_dim]` (identity when there are no hidden layers).

        In training with dropout, each ReLU + Dropout pair runs as one `relu_dropout`.
        """
        if not (self.training and self.dropout > 0):
            return self.net(x)
        layers = list(self.net)
        i = 0
        while i < len(layers):
            if isinstance(layers[i], nn.ReLU):
                x = relu_dropout(x, self.dropout)
                i += 2  # the Dropout right after it is folded in
            else:
                x = layers[i](x)
                i += 1
        return x


def dropout_scale(p: float) -> float:
    """`1 / (1 - q)`, the inverted-dropout factor for `q`, `p` rounded to a multiple of 2**-15."""
    return 1.0 / (1.0 - round(p * 32768) / 32768)


def dropout_keep_scale(
    shape: Sequence[int], p: float, device: torch.device, out: Tensor | None = None
) -> Tensor:
    """Float32 inverted-dropout factors: `1 / (1 - q)` with probability `1 - q`, else 0, where
    `q` is `p` rounded to a multiple of 2**-15. Written into `out` (float32, contiguous) when
    given.

    Draws 63 random bits per 4 elements (one int64 `random_`, split into four 16-bit lanes),
    several times cheaper on CPU than `bernoulli_`; the lanes become factors through float
    arithmetic only (CPU kernels that write bool tensors are several times slower).
    """
    numel = math.prod(shape)
    bits = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device).random_()
    # random_ gives [0, 2**63): shifted left by one, the three upper 16-bit lanes are uniform on
    # [-2**15, 2**15) and the lowest lane uniform on the even numbers of that range
    lanes = bits.bitwise_left_shift_(1).view(torch.int16)[:numel]
    threshold = 2 * round(p * 32768) - 32768
    factors = torch.empty(shape, dtype=torch.float32, device=device) if out is None else out
    if factors.dtype != torch.float32 or not factors.is_contiguous():
        raise ValueError("dropout_keep_scale: out must be a contiguous float32 tensor")
    factors.view(-1).copy_(lanes)
    # integer-valued lanes: lane >= threshold <=> lane - (threshold - 1) >= 1, so clamping that
    # difference to [0, 1] gives the keep bit
    return factors.sub_(threshold - 1).clamp_(0.0, 1.0).mul_(dropout_scale(p))


def relu_dropout_into(x: Tensor, p: float, out: Tensor, grad_factor: Tensor) -> None:
    """Training-mode `dropout(relu(x), p)` into `out`, and into `grad_factor` what its backward
    multiplies the incoming gradient by (`(out > 0) / (1 - q)`). `x` is left as it was."""
    if p > 0:
        # the factors need float32 (16-bit lanes do not survive bf16); else a scratch tensor
        usable = grad_factor.dtype == torch.float32 and grad_factor.is_contiguous()
        factors = dropout_keep_scale(x.shape, p, x.device, out=grad_factor if usable else None)
        torch.clamp_min(x, 0.0, out=out).mul_(factors)
        torch.sign(out, out=grad_factor).mul_(dropout_scale(p))
    else:
        torch.clamp_min(x, 0.0, out=out)
        torch.sign(out, out=grad_factor)


class _ReluDropout(torch.autograd.Function):
    """ReLU then inverted dropout: `relu(x) * keep / (1 - q)`."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float) -> Tensor:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        grad_factor = torch.empty_like(out)
        relu_dropout_into(x, p, out, grad_factor)
        ctx.save_for_backward(grad_factor)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (grad_factor,) = ctx.saved_tensors
        return grad * grad_factor, None


def relu_dropout(x: Tensor, p: float) -> Tensor:
    """`dropout(relu(x), p)` in training mode, with `p` rounded to a multiple of 2**-15 (see
    `dropout_keep_scale`); float elementwise ops forward, one multiply backward."""
    out: Tensor = _ReluDropout.apply(x, p)
    return out


class CrossNetV2(nn.Module):
    """DCN-v2 cross network: x_{l+1} = x0 * (W_l x_l + b_l) + x_l, full rank or low rank."""

    def __init__(self, dim: int, num_layers: int, low_rank: int | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(num_layers):
            if low_rank is None:
                self.layers.append(nn.Linear(dim, dim))
            else:
                self.layers.append(
                    nn.Sequential(nn.Linear(dim, low_rank, bias=False), nn.Linear(low_rank, dim))
                )
        for layer in self.modules():
            if isinstance(layer, nn.Linear) and layer.bias is not None:
                nn.init.zeros_(layer.bias)
        self.out_dim = dim

    def forward(self, x0: Tensor) -> Tensor:
        """`[B, D]` -> `[B, D]`."""
        x = x0
        for layer in self.layers:
            x = torch.addcmul(x, x0, layer(x))
        return x


def fm_interaction(embeddings: Tensor) -> Tensor:
    """Factorization-machine pairwise term per embedding coordinate: `[B, F, E]` -> `[B, E]`.

    Summing the result over E gives sum_{i<j} <e_i, e_j>.
    """
    square_of_sum = embeddings.sum(dim=1).pow(2)
    sum_of_square = embeddings.pow(2).sum(dim=1)
    return 0.5 * (square_of_sum - sum_of_square)


class SelfAttentionLayer(nn.Module):
    """AutoInt interacting layer: multi-head self-attention over fields, residual projection."""

    def __init__(
        self, in_dim: int, head_dim: int, num_heads: int, use_residual: bool = True
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        out_dim = head_dim * num_heads
        self.qkv = nn.Linear(in_dim, 3 * out_dim, bias=False)
        self.residual = nn.Linear(in_dim, out_dim, bias=False) if use_residual else None
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        """`[B, F, in_dim]` -> `[B, F, heads * head_dim]`."""
        batch, fields, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        shape = (batch, fields, self.num_heads, self.head_dim)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        attended = nn.functional.scaled_dot_product_attention(q, k, v)
        out = attended.transpose(1, 2).reshape(batch, fields, self.out_dim)
        if self.residual is not None:
            out = out + self.residual(x)
        return torch.relu(out)


class CompressedInteraction(nn.Module):
    """xDeepFM compressed interaction network (CIN) with sum pooling per feature map."""

    def __init__(self, num_fields: int, layer_sizes: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        prev = num_fields
        for size in layer_sizes:
            self.convs.append(nn.Conv1d(prev * num_fields, size, kernel_size=1))
            prev = size
        self.out_dim = sum(layer_sizes)

    def forward(self, x0: Tensor) -> Tensor:
        """`[B, F, E]` -> `[B, sum(layer_sizes)]`."""
        batch, _, dim = x0.shape
        pooled = []
        h = x0
        for conv in self.convs:
            outer = torch.einsum("bhe,bfe->bhfe", h, x0).reshape(batch, -1, dim)
            h = torch.relu(conv(outer))
            pooled.append(h.sum(dim=2))
        return torch.cat(pooled, dim=1)


class SqueezeExcitation(nn.Module):
    """FiBiNET SENET: re-weight each field's embedding by a learned gate from all fields."""

    def __init__(self, num_fields: int, reduction: int = 3) -> None:
        super().__init__()
        hidden = max(1, num_fields // reduction)
        self.gate = nn.Sequential(
            nn.Linear(num_fields, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, num_fields, bias=False),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        """`[B, F, E]` -> `[B, F, E]`."""
        weights = self.gate(x.mean(dim=2))
        return x * weights.unsqueeze(-1)


class BilinearInteraction(nn.Module):
    """FiBiNET bilinear interaction: p_ij = (v_i W) * v_j for all i < j ("field-all" W)."""

    rows: Tensor
    cols: Tensor

    def __init__(self, num_fields: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim, bias=False)
        rows, cols = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.num_pairs = int(rows.numel())

    def forward(self, x: Tensor) -> Tensor:
        """`[B, F, E]` -> `[B, F*(F-1)/2, E]`."""
        return self.proj(x)[:, self.rows] * x[:, self.cols]
