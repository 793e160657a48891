"""xDeepFM: first-order terms + compressed interaction network (CIN) + MLP."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flip_core.config import IDModelConfig
from flip_core.models.id.base import IDModel
from flip_core.models.layers import MLP, CompressedInteraction, LinearTerms


class XDeepFM(IDModel):
    """Logit = linear + head([CIN pooled, MLP hidden]). Options: `cin_layers` (feature maps per
    CIN layer)."""

    name: ClassVar[str] = "xdeepfm"

    default_options: ClassVar[dict[str, Any]] = {"cin_layers": [64, 64]}

    def __init__(self, vocab_sizes: list[int], config: IDModelConfig) -> None:
        super().__init__(vocab_sizes, config)
        self.linear = LinearTerms(vocab_sizes)
        self.cin = CompressedInteraction(self.num_fields, list(self.options["cin_layers"]))
        self.mlp = MLP(self.num_fields * config.embedding_dim, config.hidden_units, config.dropout)
        self.repr_dim = self.cin.out_dim + self.mlp.out_dim
        self.head = nn.Linear(self.repr_dim, 1)

    def encode(self, field_ids: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """CIN and MLP side by side."""
        row = torch.cat([self.cin(embeddings), self.mlp(embeddings.flatten(1))], dim=1)
        return self.linear(field_ids) + self.head(row).squeeze(-1), row
