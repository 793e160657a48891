"""The synthetic generator: real ML-1M file format, seeded, and labels with learnable signal."""

from pathlib import Path

import duckdb
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import OneHotEncoder
from typer.testing import CliRunner

from flip_core.data.synth import AGE_BUCKETS, GENRES, write_synthetic_movielens
from flows.cli import app


def _read(path: Path, names: list[str]) -> list[tuple]:
    query = (
        "SELECT * FROM read_csv(?, delim='::', header=false, encoding='latin-1', "
        "columns=?, quote='', escape='')"
    )
    columns = {name: "VARCHAR" for name in names}
    return duckdb.execute(query, [str(path), columns]).fetchall()


def test_cli_synth_writes_files_duckdb_reads_back(tmp_path: Path):
    out = tmp_path / "raw"
    result = CliRunner().invoke(app, ["data", "synth", "--users", "500", "--out", str(out)])
    assert result.exit_code == 0, result.output
    users = _read(out / "users.dat", ["user_id", "gender", "age", "occupation", "zip"])
    movies = _read(out / "movies.dat", ["movie_id", "title", "genres"])
    ratings = _read(out / "ratings.dat", ["user_id", "movie_id", "rating", "timestamp"])
    assert len(users) == 500
    assert len(movies) == 400
    assert f"{len(ratings)} ratings" in result.output
    assert len(ratings) > 500 * 30
    assert {u[1] for u in users} == {"M", "F"}
    assert {int(u[2]) for u in users} <= set(AGE_BUCKETS)
    assert all(0 <= int(u[3]) <= 20 for u in users)
    assert all(set(m[2].split("|")) <= set(GENRES) for m in movies)
    assert {int(r[2]) for r in ratings} <= {1, 2, 3, 4, 5}
    user_ids = {int(u[0]) for u in users}
    movie_ids = {int(m[0]) for m in movies}
    assert all(int(r[0]) in user_ids and int(r[1]) in movie_ids for r in ratings)
    # latin-1, not UTF-8: accented titles survive the round trip.
    assert any("é" in m[1] or "ñ" in m[1] or "Ü" in m[1] for m in movies)
    assert (out / "movies.dat").read_bytes().decode("latin-1").count("::") > 0


def test_seeded_and_seed_sensitive(tmp_path: Path):
    write_synthetic_movielens(tmp_path / "a", users=50, seed=3)
    write_synthetic_movielens(tmp_path / "b", users=50, seed=3)
    write_synthetic_movielens(tmp_path / "c", users=50, seed=4)
    a, b, c = ((tmp_path / d / "ratings.dat").read_bytes() for d in "abc")
    assert a == b
    assert a != c


def test_rejects_empty_sizes(tmp_path: Path):
    with pytest.raises(ValueError, match=">= 1"):
        write_synthetic_movielens(tmp_path, users=0)


def _load_clicks(raw: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = _read(raw / "ratings.dat", ["user_id", "movie_id", "rating", "timestamp"])
    ids = np.array([[r[0], r[1]] for r in rows])
    labels = np.array([int(r[2]) >= 4 for r in rows], dtype=int)
    return ids, labels


def test_labels_carry_learnable_user_item_signal(synthetic_raw: Path):
    ids, labels = _load_clicks(synthetic_raw)
    assert 0.3 < labels.mean() < 0.8
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    cut = int(0.8 * len(order))
    train, test = order[:cut], order[cut:]
    encoder = OneHotEncoder(handle_unknown="ignore").fit(ids[train])
    model = LogisticRegression(C=0.5, max_iter=500).fit(
        encoder.transform(ids[train]), labels[train]
    )
    trained_auc = roc_auc_score(
        labels[test], model.predict_proba(encoder.transform(ids[test]))[:, 1]
    )
    untrained_auc = roc_auc_score(labels[test], rng.normal(size=len(test)))
    assert trained_auc > 0.65, trained_auc
    assert abs(untrained_auc - 0.5) < 0.05, untrained_auc
