"""The saved-model directory format shared by every model: config.json + model.safetensors
(+ a copy of the feature map), as Hugging Face `save_pretrained` folders are laid out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from torch import nn

from flip_core.data.feature_map import FEATURE_MAP_FILE

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def write_model_dir(
    model: nn.Module, directory: Path | str, config_json: str, feature_map: Path | str | None
) -> Path:
    """Write `config_json` as config.json, the weights as model.safetensors and, when given, a
    copy of `feature_map` (a feature_map.json or a folder holding one); returns the folder."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(config_json, encoding="utf-8")
    save_weights(model, out)
    if feature_map is not None:
        source = Path(feature_map)
        source = source / FEATURE_MAP_FILE if source.is_dir() else source
        if source.resolve() != (out / FEATURE_MAP_FILE).resolve():
            shutil.copyfile(source, out / FEATURE_MAP_FILE)
    return out


def read_model_config(directory: Path | str, what: str) -> dict[str, Any]:
    """The config.json of a saved `what` model (clear error when the folder is not one)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {CONFIG_FILE}; not a saved {what} directory")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def save_weights(model: nn.Module, directory: Path) -> None:
    """`directory/model.safetensors` from `model`'s state."""
    save_model(model, str(directory / WEIGHTS_FILE))


def load_weights(model: nn.Module, directory: Path | str, device: str = "cpu") -> None:
    """Load `directory/model.safetensors` into `model` (strict)."""
    load_model(model, str(Path(directory) / WEIGHTS_FILE), device=device)


def has_weights(directory: Path) -> bool:
    """Whether `directory` holds a model.safetensors."""
    return (directory / WEIGHTS_FILE).is_file()
