"""Typed flow parameters -> one resolved `FlipConfig` (shared by every flow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flip_core.config import FlipConfig, load_config


def named_overrides(**named: Any) -> list[str]:
    """`--set`-style overrides for the flow parameters that are set (None means "keep").

    Keys are dotted config keys, e.g. `named_overrides(**{"paths.data_root": Path("x")})`.
    Values are written as JSON (a subset of YAML), so paths and lists survive unchanged.
    """
    out: list[str] = []
    for key, value in named.items():
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value)
        out.append(f"{key}={json.dumps(value)}")
    return out


def flow_config(
    config_file: Path | None,
    overrides: list[str] | None = None,
    **named: Any,
) -> FlipConfig:
    """Defaults, then the YAML file, then `overrides`, then the typed flow parameters."""
    return load_config(config_file, [*(overrides or []), *named_overrides(**named)])
