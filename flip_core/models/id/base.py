"""The interface every ID-based CTR backbone implements, plus HF-style save/load.

An `IDModel` maps a batch of field ids `[B, F]` to an `IDModelOutput`:
`logits [B]` (click logit), `row_repr [B, H]` (the row representation FLIP aligns with the
language model, `H == model.repr_dim`) and `field_embeddings [B, F, E]`
(`E == model.embedding_dim`).
Passing `labels` adds the binary cross-entropy `loss`, so the trainer can call `model(**batch)`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from flip_core.config import IDModelConfig
from flip_core.models.layers import FieldEmbedding
from flip_core.models.saving import load_weights, read_model_config, write_model_dir


@dataclass
class IDModelOutput:
    """What an ID model returns; `loss` is set only when labels were given."""

    logits: Tensor
    row_repr: Tensor
    field_embeddings: Tensor
    loss: Tensor | None = None


class IDModel(nn.Module):
    """Base class: owns the field embedding, the options check, the loss and save/load.

    Subclasses set `name`, `default_options`, build their layers in `__init__` (after calling
    `super().__init__`), set `self.repr_dim`, and implement `encode(field_ids, embeddings)` which
    returns `(logits [B], row_repr [B, repr_dim])`.
    """

    name: ClassVar[str] = ""
    default_options: ClassVar[dict[str, Any]] = {}
    repr_dim: int

    def __init__(self, vocab_sizes: list[int], config: IDModelConfig) -> None:
        super().__init__()
        self.config = config
        self.vocab_sizes = [int(v) for v in vocab_sizes]
        self.options = self._resolve_options(config.options)
        self.embedding = FieldEmbedding(self.vocab_sizes, config.embedding_dim)

    @classmethod
    def _resolve_options(cls, given: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(cls.default_options))
        if unknown:
            known = ", ".join(sorted(cls.default_options)) or "none"
            raise ValueError(
                f"{cls.name}: unknown option(s) {', '.join(unknown)}; known options: {known}"
            )
        return {**cls.default_options, **given}

    @property
    def num_fields(self) -> int:
        """Number of fields F."""
        return len(self.vocab_sizes)

    @property
    def embedding_dim(self) -> int:
        """Width E of each field embedding."""
        return self.config.embedding_dim

    def encode(self, field_ids: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """Backbone body: `(logits [B], row_repr [B, repr_dim])`."""
        raise NotImplementedError

    def forward(self, field_ids: Tensor, labels: Tensor | None = None) -> IDModelOutput:
        """Score a batch of rows; `labels` (0/1 floats, `[B]`) add the BCE loss."""
        embeddings = self.embedding(field_ids)
        logits, row_repr = self.encode(field_ids, embeddings)
        loss = None
        if labels is not None:
            loss = nn.functional.binary_cross_entropy_with_logits(
                logits.float(), labels.to(torch.float32)
            )
        return IDModelOutput(
            logits=logits, row_repr=row_repr, field_embeddings=embeddings, loss=loss
        )

    # -- HF-style persistence -------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the architecture (written to config.json)."""
        return {
            "model_type": "id_model",
            "backbone": self.name,
            "vocab_sizes": self.vocab_sizes,
            "id_model": self.config.model_dump(mode="json"),
        }

    def save_pretrained(self, directory: Path | str, feature_map: Path | str | None = None) -> Path:
        """Write config.json + model.safetensors (+ a copy of feature_map.json) to `directory`."""
        return write_model_dir(
            self, directory, json.dumps(self.config_dict(), indent=2), feature_map
        )

    @classmethod
    def from_pretrained(cls, directory: Path | str, map_location: str = "cpu") -> Self:
        """Load a model written by `save_pretrained` (the backbone is read from config.json)."""
        meta = read_model_config(directory, "ID model")
        config = IDModelConfig.model_validate(meta["id_model"])
        model = build_id_model(meta["backbone"], meta["vocab_sizes"], config)
        if not isinstance(model, cls):
            raise TypeError(f"{directory} holds a {type(model).__name__}, not a {cls.__name__}")
        load_weights(model, directory, map_location)
        return model


def backbones() -> dict[str, type[IDModel]]:
    """Every named `IDModel` subclass by name (the package's `__init__` imports the built-in
    ones, through `registry`)."""
    found: dict[str, type[IDModel]] = {}
    pending = list(IDModel.__subclasses__())
    while pending:
        sub = pending.pop()
        if sub.name:
            found[sub.name] = sub
        pending.extend(sub.__subclasses__())
    return found


def build_id_model(
    name: str, vocab_sizes: Sequence[int], config: IDModelConfig | None = None
) -> IDModel:
    """Build backbone `name` over fields with `vocab_sizes` (reserved ids included)."""
    known = backbones()
    key = name.lower()
    if key not in known:
        raise ValueError(f"unknown ID model '{name}'; known: {', '.join(sorted(known))}")
    cfg = (config or IDModelConfig()).model_copy(update={"backbone": key})
    return known[key](list(vocab_sizes), cfg)
