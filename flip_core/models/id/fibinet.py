"""FiBiNET: SENET field re-weighting and bilinear interactions, fed to an MLP."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flip_core.config import IDModelConfig
from flip_core.models.id.base import IDModel
from flip_core.models.layers import MLP, BilinearInteraction, LinearTerms, SqueezeExcitation


class FiBiNET(IDModel):
    """Logit = linear + head(MLP([bilinear(E), bilinear(SENET(E))])). Options: `reduction`
    (SENET squeeze ratio)."""

    name: ClassVar[str] = "fibinet"

    default_options: ClassVar[dict[str, Any]] = {"reduction": 3}

    def __init__(self, vocab_sizes: list[int], config: IDModelConfig) -> None:
        super().__init__(vocab_sizes, config)
        if self.num_fields < 2:
            raise ValueError("fibinet needs at least two fields")
        self.linear = LinearTerms(vocab_sizes)
        self.senet = SqueezeExcitation(self.num_fields, int(self.options["reduction"]))
        self.bilinear_raw = BilinearInteraction(self.num_fields, config.embedding_dim)
        self.bilinear_se = BilinearInteraction(self.num_fields, config.embedding_dim)
        in_dim = 2 * self.bilinear_raw.num_pairs * config.embedding_dim
        self.mlp = MLP(in_dim, config.hidden_units, config.dropout)
        self.repr_dim = self.mlp.out_dim
        self.head = nn.Linear(self.repr_dim, 1)

    def encode(self, field_ids: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """Bilinear pairs of raw and SENET-weighted embeddings, then the MLP."""
        pairs = torch.cat(
            [self.bilinear_raw(embeddings), self.bilinear_se(self.senet(embeddings))], dim=1
        )
        row = self.mlp(pairs.flatten(1))
        return self.linear(field_ids) + self.head(row).squeeze(-1), row
