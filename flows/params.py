"""Typed flow parameters -> one resolved `FlipConfig` (shared by every flow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flip_core.config import FlipConfig, load_config


def flow_config(
    config_file: Path | None,
    overrides: list[str] | None = None,
    **named: Any,
) -> FlipConfig:
    """Defaults, then the YAML file, then `overrides`, then the typed flow parameters `named`
    (dotted config keys, e.g. `**{"paths.data_root": Path("x")}`; None means "keep")."""
    return load_config(config_file, overrides or [], named)
