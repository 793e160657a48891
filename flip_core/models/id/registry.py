"""Name -> backbone class registry and the `build_id_model` factory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from flip_core.config import IDModelConfig
from flip_core.models.id.base import IDModel

_REGISTRY: dict[str, type[IDModel]] = {}
_M = TypeVar("_M", bound=type[IDModel])


def register_id_model(name: str) -> Callable[[_M], _M]:
    """Class decorator: make a backbone buildable by `name`."""

    def decorate(cls: _M) -> _M:
        if name in _REGISTRY:
            raise ValueError(f"ID model '{name}' is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def known_id_models() -> list[str]:
    """Registered backbone names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def build_id_model(
    name: str, vocab_sizes: Sequence[int], config: IDModelConfig | None = None
) -> IDModel:
    """Build backbone `name` over fields with `vocab_sizes` (reserved ids included)."""
    _load_builtin()
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown ID model '{name}'; known: {', '.join(sorted(_REGISTRY))}")
    cfg = (config or IDModelConfig()).model_copy(update={"backbone": key})
    return _REGISTRY[key](list(vocab_sizes), cfg)


def _load_builtin() -> None:
    # Importing the modules runs their @register_id_model decorators.
    from flip_core.models.id import (  # noqa: F401
        autoint,
        dcnv2,
        deepfm,
        fibinet,
        wide_deep,
        xdeepfm,
    )
