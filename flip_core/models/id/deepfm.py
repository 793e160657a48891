"""DeepFM: first-order terms + factorization machine + MLP over the shared embeddings."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flip_core.config import IDModelConfig
from flip_core.models.id.base import IDModel
from flip_core.models.layers import MLP, LinearTerms, fm_interaction


class DeepFM(IDModel):
    """Logit = linear + sum(FM vector) + MLP head. Row representation: [MLP hidden, FM vector].

    Options: `batch_norm`.
    """

    name: ClassVar[str] = "deepfm"

    default_options: ClassVar[dict[str, Any]] = {"batch_norm": False}

    def __init__(self, vocab_sizes: list[int], config: IDModelConfig) -> None:
        super().__init__(vocab_sizes, config)
        self.linear = LinearTerms(vocab_sizes)
        in_dim = self.num_fields * config.embedding_dim
        self.mlp = MLP(in_dim, config.hidden_units, config.dropout, self.options["batch_norm"])
        self.deep_head = nn.Linear(self.mlp.out_dim, 1)
        self.repr_dim = self.mlp.out_dim + config.embedding_dim

    def encode(self, field_ids: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """Sum the three parts."""
        fm = fm_interaction(embeddings)
        deep = self.mlp(embeddings.flatten(1))
        logits = self.linear(field_ids) + fm.sum(dim=1) + self.deep_head(deep).squeeze(-1)
        return logits, torch.cat([deep, fm], dim=1)
