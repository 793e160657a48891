"""The built-in ID backbones: importing this module defines them, so that
`flip_core.models.id.base.backbones()` finds them by their `name`.

A backbone is an `IDModel` subclass with a class attribute `name`; a new built-in one is a module
imported here.
"""

from __future__ import annotations

from flip_core.models.id import autoint, dcnv2, deepfm, fibinet, wide_deep, xdeepfm  # noqa: F401
from flip_core.models.id.base import backbones, build_id_model

__all__ = ["build_id_model", "known_id_models"]


def known_id_models() -> list[str]:
    """Backbone names, sorted."""
    return sorted(backbones())
