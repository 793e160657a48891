"""Building blocks shared by the ID-based CTR backbones.

Every block takes and returns plain tensors; shapes use B = batch, F = fields, E = embedding width.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        return self.table(field_ids + self.offsets)


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

    def forward(self, x: Tensor) -> Tensor:
        """`[B, in_dim]` -> `[B, out_dim]` (identity when there are no hidden layers)."""
        return self.net(x)


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
            x = x0 * layer(x) + x
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
