"""DCN-v2: a cross network of explicit feature crosses with a deep MLP, stacked or parallel."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flip_core.config import IDModelConfig
from flip_core.models.fused import WorkspacePool, can_fuse_parallel_dcn, parallel_dcn
from flip_core.models.id.base import IDModel
from flip_core.models.layers import MLP, CrossNetV2


class DCNv2(IDModel):
    """Options: `structure` ("stacked": cross then MLP; "parallel": cross beside MLP),
    `cross_layers`, `low_rank` (None for full-rank cross matrices), `batch_norm`.

    Training the parallel structure on CPU takes the fused path of `flip_core.models.fused`
    (same arithmetic, one autograd node); everything else runs the modules below."""

    name: ClassVar[str] = "dcnv2"

    default_options: ClassVar[dict[str, Any]] = {
        "structure": "parallel",
        "cross_layers": 3,
        "low_rank": None,
        "batch_norm": False,
    }

    def __init__(self, vocab_sizes: list[int], config: IDModelConfig) -> None:
        super().__init__(vocab_sizes, config)
        opts = self.options
        if opts["structure"] not in ("stacked", "parallel"):
            raise ValueError(
                f"dcnv2: structure must be 'stacked' or 'parallel', got {opts['structure']!r}"
            )
        in_dim = self.num_fields * config.embedding_dim
        self.cross = CrossNetV2(in_dim, int(opts["cross_layers"]), opts["low_rank"])
        mlp_in = self.cross.out_dim if opts["structure"] == "stacked" else in_dim
        self.mlp = MLP(mlp_in, config.hidden_units, config.dropout, bool(opts["batch_norm"]))
        if opts["structure"] == "stacked":
            self.repr_dim = self.mlp.out_dim
        else:
            self.repr_dim = self.cross.out_dim + self.mlp.out_dim
        self.head = nn.Linear(self.repr_dim, 1)
        self.workspaces = WorkspacePool()

    def encode(self, field_ids: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """Cross and deep parts over the flattened embeddings."""
        x0 = embeddings.flatten(1)
        if self.options["structure"] == "parallel" and can_fuse_parallel_dcn(
            self.cross, self.mlp, x0
        ):
            return parallel_dcn(x0, self.cross, self.mlp, self.head, self.workspaces)
        if self.options["structure"] == "stacked":
            row = self.mlp(self.cross(x0))
        else:
            row = torch.cat([self.cross(x0), self.mlp(x0)], dim=1)
        return self.head(row).squeeze(-1), row
