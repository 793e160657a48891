"""The built-in ID backbones by name and the `build_id_model` factory.

A backbone is an `IDModel` subclass with a class attribute `name`; adding one means adding its
class to `BACKBONES`.
"""

from __future__ import annotations

from collections.abc import Sequence

from flip_core.config import IDModelConfig
from flip_core.models.id.autoint import AutoInt
from flip_core.models.id.base import IDModel
from flip_core.models.id.dcnv2 import DCNv2
from flip_core.models.id.deepfm import DeepFM
from flip_core.models.id.fibinet import FiBiNET
from flip_core.models.id.wide_deep import WideDeep
from flip_core.models.id.xdeepfm import XDeepFM

BACKBONES: dict[str, type[IDModel]] = {
    cls.name: cls for cls in (AutoInt, DCNv2, DeepFM, FiBiNET, WideDeep, XDeepFM)
}


def known_id_models() -> list[str]:
    """Backbone names, sorted."""
    return sorted(BACKBONES)


def build_id_model(
    name: str, vocab_sizes: Sequence[int], config: IDModelConfig | None = None
) -> IDModel:
    """Build backbone `name` over fields with `vocab_sizes` (reserved ids included)."""
    key = name.lower()
    if key not in BACKBONES:
        raise ValueError(f"unknown ID model '{name}'; known: {', '.join(known_id_models())}")
    cfg = (config or IDModelConfig()).model_copy(update={"backbone": key})
    return BACKBONES[key](list(vocab_sizes), cfg)
