"""The feature map of a built feature folder."""

from __future__ import annotations

from pathlib import Path

from flip_core.data.feature_map import FEATURE_MAP_FILE, FeatureMap


def load_feature_map(features_dir: Path | str) -> FeatureMap:
    """The `FeatureMap` of a built feature folder."""
    return FeatureMap.load(Path(features_dir) / FEATURE_MAP_FILE)
