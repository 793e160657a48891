"""Wide & Deep: a wide linear model over the ids plus a deep MLP over their embeddings."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from flip_core.config import IDModelConfig
from flip_core.models.id.base import IDModel
from flip_core.models.layers import MLP, LinearTerms


class WideDeep(IDModel):
    """Logit = wide(ids) + head(MLP(embeddings)). Options: `batch_norm`."""

    name: ClassVar[str] = "wide_deep"

    default_options: ClassVar[dict[str, Any]] = {"batch_norm": False}

    def __init__(self, vocab_sizes: list[int], config: IDModelConfig) -> None:
        super().__init__(vocab_sizes, config)
        self.wide = LinearTerms(vocab_sizes)
        in_dim = self.num_fields * config.embedding_dim
        self.mlp = MLP(in_dim, config.hidden_units, config.dropout, self.options["batch_norm"])
        self.repr_dim = self.mlp.out_dim
        self.head = nn.Linear(self.repr_dim, 1)

    def encode(self, field_ids: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """Wide and deep parts summed."""
        row = self.mlp(embeddings.flatten(1))
        return self.wide(field_ids) + self.head(row).squeeze(-1), row
