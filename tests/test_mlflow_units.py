"""Fast checks of the pieces behind tracking and scoring (no server)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Run, RunData, RunInfo, RunTag

from flip_core.config import FlipConfig
from flip_core.data.feature_map import OOV_ID, FeatureMap, FieldVocab
from flip_core.model_card import ModelCardInfo, render_model_card
from flip_core.plots import reliability_bins
from flip_core.scoring import RAW_FIELDS, ScoringError, encode_rows, iter_raw_chunks
from tasks import tracking


def _fmap() -> FeatureMap:
    values = {
        "user_id": ["1", "2"], "gender": ["F", "M"], "age": ["25", "1"], "occupation": ["10"],
        "zip": ["01234"], "movie_id": ["7"], "title": ["A (1999)"], "genres": ["Drama"],
    }  # fmt: skip
    return FeatureMap([FieldVocab(n, v, [1] * len(v)) for n, v in values.items()])


def test_encode_rows_maps_unseen_missing_and_float_ids() -> None:
    fmap = _fmap()
    frame = pd.DataFrame(
        {
            "user_id": [1.0, 2.0, 99.0],
            "gender": ["F", None, "X"],
            "age": [25, 1, 25],
            "occupation": [10, 10, 3],
            "zip": ["01234", "01234", "1234"],
            "movie_id": [7, 8, 7],
            "title": ["A (1999)"] * 3,
            "genres": ["Drama"] * 3,
        }
    )
    ids = encode_rows(fmap, frame)
    assert ids.shape == (3, 8) and ids.dtype == np.int64
    assert ids[:, 0].tolist() == [3, 4, OOV_ID]  # 1.0 -> "1"; unseen user -> OOV
    assert ids[:, 1].tolist() == [3, OOV_ID, OOV_ID]  # missing and unseen gender
    assert ids[:, 4].tolist() == [3, 3, OOV_ID]  # zip is a string: "1234" != "01234"
    with pytest.raises(ScoringError, match="zip"):
        encode_rows(fmap, frame.drop(columns=["zip"]))


def test_csv_chunks_keep_zip_strings(tmp_path: Path) -> None:
    frame = pd.DataFrame({name: ["1"] * 5 for name in RAW_FIELDS})
    frame["zip"] = ["01234", "00001", "99999", "12345", "00000"]
    frame.to_csv(tmp_path / "raw.csv", index=False)
    chunks = list(iter_raw_chunks(tmp_path / "raw.csv", chunk_rows=2))
    joined = pd.concat(chunks, ignore_index=True)
    assert joined["zip"].tolist() == frame["zip"].tolist()
    assert joined["user_id"].dtype == np.int64
    with pytest.raises(ScoringError, match="unsupported format"):
        list(iter_raw_chunks(_touch(tmp_path / "raw.txt"), 2))
    with pytest.raises(ScoringError, match="does not exist"):
        list(iter_raw_chunks(tmp_path / "nope.parquet", 2))


def _touch(path: Path) -> Path:
    path.write_text("x")
    return path


def test_reliability_bins() -> None:
    labels = np.array([0, 0, 1, 1, 1, 0])
    probs = np.array([0.05, 0.15, 0.95, 0.85, 0.91, 0.99])
    pred, observed, counts = reliability_bins(labels, probs, n_bins=2)
    assert counts.tolist() == [2, 4]
    assert pred[0] == pytest.approx(0.10) and observed[0] == 0.0
    assert observed[1] == pytest.approx(0.75)


def test_model_card_and_flat_config() -> None:
    card = render_model_card(
        ModelCardInfo("flip-ctr", "flip_id", "ml1m-time-811", "abc", "deadbeef", {"test_auc": 0.8})
    )
    assert card.startswith("# Model card: flip-ctr (flip_id)")
    assert "| test_auc | 0.80000 |" in card and "`abc`" in card
    flat = tracking.flatten_config(FlipConfig())
    assert flat["gate.min_valid_auc_gain"] == "0.001"
    assert flat["mlflow.experiment"] == "flip-ctr"


def _run(tags: dict[str, str], age_h: float) -> Run:
    start = int((time.time() - age_h * 3600) * 1000)
    info = RunInfo("r", "0", "u", "RUNNING", start, None, "active", artifact_uri="file:///x")
    return Run(info, RunData(tags=[RunTag(k, v) for k, v in tags.items()]))


def test_stale_reason() -> None:
    host = socket.gethostname()
    me = str(os.getpid())
    alive = {tracking.TAG_HOST: host, tracking.TAG_PID: me}
    alive[tracking.TAG_PROC_START] = tracking.process_start_time(os.getpid()) or ""
    assert tracking.stale_reason(_run(alive, 100), 24) is None  # our own process: never stale
    reused = {**alive, tracking.TAG_PROC_START: "1"}  # same pid, another process start
    assert "gone" in (tracking.stale_reason(_run(reused, 0), 24) or "")
    remote = {tracking.TAG_HOST: "elsewhere", tracking.TAG_PID: "1"}
    assert tracking.stale_reason(_run(remote, 1), 24) is None
    assert "RUNNING for" in (tracking.stale_reason(_run(remote, 30), 24) or "")
