"""A built feature folder: checking it and reading its feature map."""

from __future__ import annotations

from pathlib import Path

from flip_core.data.feature_map import FEATURE_MAP_FILE, FeatureMap

FEATURE_FOLDER_FILES = ("train.parquet", FEATURE_MAP_FILE, "manifest.json")


def check_feature_folder(features_dir: Path) -> None:
    """Raise `FileNotFoundError` naming the first file a built feature folder must hold."""
    for name in FEATURE_FOLDER_FILES:
        if not (features_dir / name).is_file():
            raise FileNotFoundError(
                f"{features_dir} is not a built feature folder (no {name}); run `flip features`"
            )


def load_feature_map(features_dir: Path | str) -> FeatureMap:
    """The `FeatureMap` of a built feature folder."""
    return FeatureMap.load(Path(features_dir) / FEATURE_MAP_FILE)
