"""Protocol splits and vocabularies: sizes, time order, train-only vocab, caching, FeatureMap."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from flip_core.data.feature_map import MASK_ID, OOV_ID, PAD_ID, FeatureMap
from flip_core.data.features import build_splits
from flip_core.spec import ProtocolSpec
from tests.conftest import SHARED_DATA
from tests.features_support import ingest, ml1m_protocol, ml1m_spec
from tests.support.encoding import encode_rows

FIELDS = ml1m_spec().field_names
PROTOCOLS = [p.name for p in ml1m_spec().protocols]


def _build(lake_dir: Path, out: Path, protocol: ProtocolSpec, min_count: int = 1):
    return build_splits(lake_dir, out, ml1m_spec(), protocol, min_count)


@pytest.fixture(scope="module")
def lake(synthetic_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ingest(synthetic_raw, tmp_path_factory.mktemp("features-lake"))


def _split(build_dir: Path, split: str):
    return pq.read_table(build_dir / "splits" / f"{split}.parquet")


def _check_time_protocol(lake_dir: Path, out: Path) -> dict:
    build = _build(lake_dir, out, ml1m_protocol("ml1m-time-811"))
    tables = {s: _split(build.splits_dir, s) for s in ("train", "valid", "test")}
    sizes = {s: t.num_rows for s, t in tables.items()}
    total = sum(sizes.values())
    for split, share in (("train", 0.8), ("valid", 0.1), ("test", 0.1)):
        assert abs(sizes[split] - share * total) <= 1, (split, sizes)
    train_max = max(tables["train"]["timestamp"].to_pylist())
    for split in ("valid", "test"):
        assert min(tables[split]["timestamp"].to_pylist()) >= train_max
    assert max(tables["valid"]["timestamp"].to_pylist()) <= min(
        tables["test"]["timestamp"].to_pylist()
    )
    _check_vocab_from_train_only(build.splits_dir, tables)
    return {"sizes": sizes, "summary": json.loads((build.splits_dir / "splits.json").read_text())}


def _check_vocab_from_train_only(splits_dir: Path, tables: dict) -> None:
    fmap = FeatureMap.load(splits_dir / "feature_map.json")
    assert fmap.field_names == list(FIELDS)
    for i, field in enumerate(FIELDS):
        train_counts = Counter(str(v) for v in tables["train"][f"{field}_raw"].to_pylist())
        assert set(fmap.fields[i].values) == set(train_counts), field
        counts = fmap.counts(field)
        assert len(counts) == fmap.vocab_sizes[i]
        assert sum(counts) == sum(train_counts.values())
        assert all(counts[fmap.encode(field, v)] == c for v, c in train_counts.items())
        for split in ("valid", "test"):
            raw = [str(v) for v in tables[split][f"{field}_raw"].to_pylist()]
            ids = tables[split][field].to_pylist()
            for value, value_id in zip(raw, ids, strict=True):
                seen = value in train_counts
                assert value_id == (fmap.encode(field, value) if seen else OOV_ID)
                assert (value_id == OOV_ID) == (not seen)


def test_time_protocol_on_synthetic_lake(lake: Path, tmp_path: Path):
    result = _check_time_protocol(lake, tmp_path / "features")
    # synthetic users arrive over time: later splits hold users never seen in train
    assert result["summary"]["splits"]["test"]["oov_rate"]["user_id"] > 0.5
    assert result["summary"]["splits"]["train"]["oov_rate"]["user_id"] == 0.0


@pytest.mark.slow
def test_time_protocol_on_real_ml1m(tmp_path: Path, synthetic_raw: Path):
    """The must-show on ../shared/data/ml-1m (synthetic data when it is absent)."""
    raw = SHARED_DATA / "ml-1m"
    raw = raw if (raw / "users.dat").is_file() else synthetic_raw
    lake_dir = ingest(raw, tmp_path / "data")
    result = _check_time_protocol(lake_dir, tmp_path / "features")
    if raw != synthetic_raw:
        assert result["sizes"] == {"train": 390_120, "valid": 48_765, "test": 48_765}


def test_random_protocol_is_seeded_and_mixes_time(lake: Path, tmp_path: Path):
    protocol = ml1m_protocol("ml1m-random-811")
    first = _build(lake, tmp_path / "a", protocol)
    second = _build(lake, tmp_path / "b", protocol)
    a, b = _split(first.splits_dir, "test"), _split(second.splits_dir, "test")
    assert a.equals(b)
    train = _split(first.splits_dir, "train")
    assert min(a["timestamp"].to_pylist()) < max(train["timestamp"].to_pylist())
    total = sum(_split(first.splits_dir, s).num_rows for s in ("train", "valid", "test"))
    assert abs(train.num_rows - 0.8 * total) <= 1


def test_reference_protocol_is_file_order_and_leaky(lake: Path, tmp_path: Path):
    protocol = ml1m_protocol("ml1m-ref-9010")
    assert protocol.leaky and "LEAKY" in protocol.description
    assert protocol.splits == ("train", "test")
    build = _build(lake, tmp_path, protocol)
    assert not (build.splits_dir / "splits" / "valid.parquet").exists()
    train, test = _split(build.splits_dir, "train"), _split(build.splits_dir, "test")
    assert abs(train.num_rows - 0.9 * (train.num_rows + test.num_rows)) <= 1
    ratings = pq.read_table(lake / "ratings").sort_by(
        [("source_file", "ascending"), ("line_number", "ascending")]
    )
    in_file_order = list(
        zip(
            ratings["user_id"].to_pylist(),
            ratings["movie_id"].to_pylist(),
            ratings["timestamp"].to_pylist(),
            strict=True,
        )
    )
    split_rows = [
        (u, m, t)
        for table in (train, test)
        for u, m, t in zip(
            table["user_id_raw"].to_pylist(),
            table["movie_id_raw"].to_pylist(),
            table["timestamp"].to_pylist(),
            strict=True,
        )
    ]
    assert split_rows == in_file_order
    rows = train["row_number"].to_pylist() + test["row_number"].to_pylist()
    assert rows == list(range(1, len(rows) + 1))


def test_min_count_sends_rare_values_to_oov(lake: Path, tmp_path: Path):
    build = _build(lake, tmp_path, ml1m_protocol("ml1m-time-811"), min_count=30)
    fmap = FeatureMap.load(build.splits_dir / "feature_map.json")
    train = _split(build.splits_dir, "train")
    movies = train["movie_id_raw"].to_pylist()
    rare = {m for m in set(movies) if movies.count(m) < 30}
    assert rare, "fixture should have rare movies"
    assert all(fmap.encode("movie_id", m) == OOV_ID for m in rare)
    assert fmap.counts("movie_id")[OOV_ID] == sum(movies.count(m) for m in rare)
    assert all(c >= 30 for c in fmap.counts("movie_id")[3:])
    ids = train["movie_id"].to_pylist()
    assert all((i == OOV_ID) == (m in rare) for m, i in zip(movies, ids, strict=True))


def test_split_build_is_cached_by_content(lake: Path, tmp_path: Path):
    protocol = ml1m_protocol("ml1m-time-811")
    first = _build(lake, tmp_path, protocol)
    again = _build(lake, tmp_path, protocol)
    assert not first.cached and again.cached and again.splits_dir == first.splits_dir
    other = _build(lake, tmp_path, protocol, min_count=2)
    assert other.splits_dir != first.splits_dir


def test_feature_map_round_trip_and_reserved_ids(lake: Path, tmp_path: Path):
    build = _build(lake, tmp_path, ml1m_protocol("ml1m-time-811"))
    fmap = FeatureMap.load(build.splits_dir)
    saved = fmap.save(tmp_path / "copy.json")
    again = FeatureMap.load(saved)
    assert again == fmap
    assert (PAD_ID, MASK_ID, OOV_ID) == (0, 1, 2)
    assert fmap.counts("gender")[:2] == [0, 0]
    assert fmap.encode("age", 25) == fmap.encode("age", "25") >= 3
    assert fmap.encode("user_id", 10**9) == OOV_ID
    assert fmap.encode("gender", None) == OOV_ID
    assert fmap.decode("age", fmap.encode("age", 25)) == "25"
    row = pd.DataFrame([{column: None for column in fmap.columns} | {"gender": "F"}])
    ids = encode_rows(fmap, row)[0].tolist()  # one row, in field order, missing -> OOV
    assert ids[1] == fmap.encode("gender", "F")
    assert ids == [fmap.encode("gender", "F") if f == "gender" else OOV_ID for f in FIELDS]
    with pytest.raises(KeyError, match="unknown field"):
        fmap.encode("nope", 1)


def test_unknown_protocol_lists_known():
    with pytest.raises(ValueError, match="has no protocol 'ml1m-nope'; known: ") as info:
        ml1m_protocol("ml1m-nope")
    assert all(name in str(info.value) for name in PROTOCOLS)


def test_missing_lake_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no ingested Parquet"):
        _build(tmp_path / "lake" / "ml-1m", tmp_path, ml1m_protocol("ml1m-time-811"))
