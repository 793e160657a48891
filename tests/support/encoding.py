"""Encoding raw rows for tests: pandas frames through the product's per-field path."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flip_core.data.feature_map import FeatureMap
from flip_core.scoring import encode_fields, field_values


def encode_rows(feature_map: FeatureMap, frame: pd.DataFrame) -> np.ndarray:
    """Field ids `[N, F]` (int64) of raw rows; unseen or missing values become OOV."""
    return encode_fields(feature_map, field_values(feature_map, frame))
