"""AutoInt: stacked multi-head self-attention over fields (AutoInt+ adds a parallel MLP)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flip_core.config import IDModelConfig
from flip_core.models.id.base import IDModel
from flip_core.models.layers import MLP, SelfAttentionLayer


class AutoInt(IDModel):
    """Options: `attention_layers`, `num_heads`, `head_dim` (None: embedding_dim),
    `use_residual`, `use_mlp` (AutoInt+: add an MLP over the raw embeddings beside attention)."""

    name: ClassVar[str] = "autoint"

    default_options: ClassVar[dict[str, Any]] = {
        "attention_layers": 3,
        "num_heads": 2,
        "head_dim": None,
        "use_residual": True,
        "use_mlp": False,
    }

    def __init__(self, vocab_sizes: list[int], config: IDModelConfig) -> None:
        super().__init__(vocab_sizes, config)
        opts = self.options
        head_dim = int(opts["head_dim"] or config.embedding_dim)
        width = config.embedding_dim
        layers = []
        for _ in range(int(opts["attention_layers"])):
            layer = SelfAttentionLayer(
                width, head_dim, int(opts["num_heads"]), opts["use_residual"]
            )
            layers.append(layer)
            width = layer.out_dim
        self.attention = nn.Sequential(*layers)
        self.repr_dim = self.num_fields * width
        self.mlp: MLP | None = None
        if opts["use_mlp"]:
            self.mlp = MLP(
                self.num_fields * config.embedding_dim, config.hidden_units, config.dropout
            )
            self.repr_dim += self.mlp.out_dim
        self.head = nn.Linear(self.repr_dim, 1)

    def encode(self, field_ids: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """Attend across fields, flatten, (concat MLP), project to the logit."""
        row = self.attention(embeddings).flatten(1)
        if self.mlp is not None:
            row = torch.cat([row, self.mlp(embeddings.flatten(1))], dim=1)
        return self.head(row).squeeze(-1), row
