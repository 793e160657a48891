"""Small FLIP_ID click models trained in seconds on raw MovieLens-shaped rows (for MLflow tests).

Raw rows come from `../shared/data/ml-1m-sample` when present, else from the synthetic generator.
The vocabulary is fitted on the first 80% of rows by time, as the protocol does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from flip_core.config import IDModelConfig
from flip_core.data.feature_map import FeatureMap, FieldVocab
from flip_core.models.flip import FlipForCTR, FlipModelConfig
from flip_core.scoring import RawRowScorer
from tests.features_support import ml1m_spec
from tests.support.encoding import encode_rows

SHARED_SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ml-1m-sample"


def read_raw_rows(raw_dir: Path) -> pd.DataFrame:
    """Join ratings, users and movies into raw log rows with a click label, time-ordered."""

    def read(name: str, cols: list[str]) -> pd.DataFrame:
        path = next(p for p in sorted(raw_dir.glob(f"{name}*")) if p.is_file())
        return pd.read_csv(
            path, sep="::", engine="python", names=cols, encoding="latin-1", dtype=str
        )

    ratings = read("ratings", ["user_id", "movie_id", "rating", "timestamp"])
    users = read("users", ["user_id", "gender", "age", "occupation", "zip"])
    movies = read("movies", ["movie_id", "title", "genres"])
    rows = ratings.merge(users, on="user_id").merge(movies, on="movie_id")
    for col in ("user_id", "movie_id", "age", "occupation", "rating", "timestamp"):
        rows[col] = rows[col].astype("int64")
    rows["label"] = (rows["rating"] >= 4).astype("float32")
    rows = rows.sort_values(["timestamp", "user_id", "movie_id"], kind="stable")
    return rows[[*ml1m_spec().input_columns(), "label"]].reset_index(drop=True)


def raw_source(synthetic_raw: Path) -> Path:
    """The real sample when the shared data folder is there, else the synthetic folder."""
    return SHARED_SAMPLE if (SHARED_SAMPLE / "users.dat").is_file() else synthetic_raw


def fit_feature_map(train: pd.DataFrame) -> FeatureMap:
    """Per-field vocabulary of the training rows (most frequent first), with the ml-1m spec's
    field entries, input columns and prompt (its fields read one raw column each)."""
    spec = ml1m_spec()
    vocabs = []
    for field in spec.fields:
        (column,) = field.source_columns
        counts = train[column].astype(str).value_counts(sort=True)
        values, numbers = list(counts.index), [int(c) for c in counts.values]
        vocabs.append(FieldVocab(field.name, values, numbers, spec=field))
    return FeatureMap(vocabs, dataset=spec.name, prompt=spec.prompt, columns=spec.input_columns())


@dataclass
class TrainedModel:
    """A saved FLIP_ID model directory and its measured gate metrics."""

    model_dir: Path
    valid_auc: float
    test_logloss: float


def train_flip_id(
    rows: pd.DataFrame, out_dir: Path, steps: int, seed: int = 0, embedding_dim: int = 8
) -> TrainedModel:
    """Train FLIP_ID (DCNv2) for `steps` Adam steps on the first 80%; evaluate on the rest."""
    from sklearn.metrics import log_loss, roc_auc_score

    n = len(rows)
    train, valid, test = rows[: n * 8 // 10], rows[n * 8 // 10 : n * 9 // 10], rows[n * 9 // 10 :]
    fmap = fit_feature_map(train)
    torch.manual_seed(seed)
    id_cfg = IDModelConfig(embedding_dim=embedding_dim, hidden_units=[32], dropout=0.0)
    config = FlipModelConfig(
        kind="ctr",
        field_names=fmap.field_names,
        vocab_sizes=fmap.vocab_sizes,
        id_model=id_cfg,
        variant="flip_id",
    )
    model = FlipForCTR(config)
    ids = torch.from_numpy(encode_rows(fmap, train))
    labels = torch.tensor(train["label"].to_numpy())
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        pick = torch.randint(0, len(ids), (256,), generator=gen)
        loss = model(field_ids=ids[pick], labels=labels[pick]).loss
        assert loss is not None
        optim.zero_grad()
        loss.backward()
        optim.step()
    out_dir.mkdir(parents=True, exist_ok=True)
    fmap.save(out_dir)
    model.save_pretrained(out_dir, feature_map=out_dir / "feature_map.json")
    scorer = RawRowScorer.from_pretrained(out_dir)
    valid_p = scorer.predict_proba(valid)
    test_p = np.clip(scorer.predict_proba(test), 1e-7, 1 - 1e-7)
    return TrainedModel(
        out_dir,
        valid_auc=float(roc_auc_score(valid["label"], valid_p)),
        test_logloss=float(log_loss(test["label"], test_p, labels=[0, 1])),
    )
