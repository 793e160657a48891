"""Dataset + collate: batch contract, whole-field MLM masks, MTM masks, seeds, loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flip_core.config import load_config
from flip_core.data.build import build_splits_from_config, render_from_config
from flip_core.data.collate import IGNORE_INDEX, FlipCollate
from flip_core.data.dataset import FeatureDataset, RowBatch
from flip_core.data.feature_map import MASK_ID
from flip_core.data.loaders import load_feature_map
from flip_core.data.render import read_manifest
from flip_core.data.tokenization import render_and_tokenize
from tests.features_support import field_tokenizer, ingest, ml1m_fields, ml1m_template
from tests.support.loaders import feature_dataloaders

SPECS = ml1m_fields()
FIELDS = [f.name for f in SPECS]
F = len(FIELDS)


@pytest.fixture(scope="module")
def features_dir(synthetic_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("collate")
    config = load_config(None, [f"paths.data_root={root}"])
    ingest(synthetic_raw, root)
    splits = build_splits_from_config(config)
    return render_from_config(config, splits.splits_dir, field_tokenizer("bert")).features_dir


def _batch(values: list[list[str]], name: str, max_length: int = 512) -> RowBatch:
    """A RowBatch straight from rendered rows (ids: a hash of each value)."""
    columns = {f: pa.array([row[i] for row in values]) for i, f in enumerate(FIELDS)}
    rows = render_and_tokenize(columns, SPECS, ml1m_template(), field_tokenizer(name), max_length)
    ids = np.array([[3 + (hash(v) % 50) for v in row] for row in values], dtype=np.int64)
    return RowBatch(
        index=np.arange(len(values), dtype=np.int64) * 7 + 11,
        field_ids=ids,
        labels=np.ones(len(values), dtype=np.float32),
        tokens=[np.asarray(t, dtype=np.int64) for t in rows.input_ids.to_pylist()],
        token_spans=rows.token_spans.astype(np.int64),
    )


def _collate(name: str, **kwargs) -> FlipCollate:
    tok = field_tokenizer(name).tokenizer
    defaults = {"with_text": True, "mlm": True, "mtm": True}
    return FlipCollate(tok.pad_token_id, tok.mask_token_id, **{**defaults, **kwargs})


_word = st.text(alphabet="abcdefxyz0123456789é-'(),.", min_size=1, max_size=6)
_row = st.lists(st.lists(_word, min_size=1, max_size=3).map(" ".join), min_size=F, max_size=F)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(_row, min_size=1, max_size=6),
    name=st.sampled_from(["bert", "roberta"]),
    mlm_ratio=st.floats(0.01, 1.0),
    mtm_ratio=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**31),
    max_length=st.sampled_from([512, 40]),
)
def test_masks_are_whole_fields_only_and_reproducible(
    values, name, mlm_ratio, mtm_ratio, seed, max_length
):
    batch = _batch(values, name, max_length)
    collate = _collate(name, mlm_ratio=mlm_ratio, mtm_ratio=mtm_ratio, seed=seed)
    out = collate(batch)
    mask_id = collate.mask_token_id
    assert mask_id is not None
    ids, mlm_ids, mlm_labels = out["input_ids"], out["mlm_input_ids"], out["mlm_labels"]
    assert ids.shape == mlm_ids.shape == out["attention_mask"].shape
    assert out["field_spans"].shape == (len(values), F, 2)
    for r in range(len(values)):
        spans = out["field_spans"][r].tolist()
        present = [e > s for s, e in spans]
        masked_tokens = torch.eq(mlm_ids[r], mask_id) & torch.ne(ids[r], mask_id)
        chosen = [
            bool(e > s and masked_tokens[s:e].all()) for s, e in spans
        ]  # a field is chosen when all its tokens are masked
        in_chosen = torch.zeros_like(masked_tokens)
        for (s, e), c in zip(spans, chosen, strict=True):
            if c:
                in_chosen[s:e] = True
        assert torch.equal(masked_tokens, in_chosen)  # the mask token there and nowhere else
        assert 1 <= sum(chosen) <= sum(present)
        assert sum(chosen) == max(1, min(sum(present), round(mlm_ratio * sum(present))))
        assert torch.equal(mlm_labels[r][in_chosen], ids[r][in_chosen])
        assert (mlm_labels[r][~in_chosen] == IGNORE_INDEX).all()
        assert torch.equal(mlm_ids[r][~in_chosen], ids[r][~in_chosen])
        # MTM: chosen fields' ids become MASK = 1, labels hold the originals there only
        mtm_chosen = out["mtm_labels"][r] != IGNORE_INDEX
        assert sum(mtm_chosen.tolist()) == max(1, min(F, round(mtm_ratio * F)))
        assert (out["mtm_field_ids"][r][mtm_chosen] == MASK_ID).all()
        assert torch.equal(out["mtm_labels"][r][mtm_chosen], out["field_ids"][r][mtm_chosen])
        assert torch.equal(out["mtm_field_ids"][r][~mtm_chosen], out["field_ids"][r][~mtm_chosen])
    again = _collate(name, mlm_ratio=mlm_ratio, mtm_ratio=mtm_ratio, seed=seed)(batch)
    assert all(torch.equal(out[k], again[k]) for k in out)


def test_masks_depend_on_seed_and_epoch_not_on_batch_company():
    values = [[f"v{r}{f}" for f in range(F)] for r in range(32)]
    batch = _batch(values, "bert")
    collate = _collate("bert", mlm_ratio=0.3, mtm_ratio=0.3, seed=1)
    first = collate(batch)
    other_seed = _collate("bert", mlm_ratio=0.3, mtm_ratio=0.3, seed=2)(batch)
    assert not torch.equal(first["mtm_labels"], other_seed["mtm_labels"])
    collate.set_epoch(1)
    assert not torch.equal(first["mlm_input_ids"], collate(batch)["mlm_input_ids"])
    collate.set_epoch(0)
    halves = [collate(part) for part in (_take(batch, range(16)), _take(batch, range(16, 32)))]
    assert torch.equal(torch.cat([h["mtm_labels"] for h in halves]), first["mtm_labels"])


def _take(batch: RowBatch, rows: range) -> RowBatch:
    idx = list(rows)
    assert batch.tokens is not None and batch.token_spans is not None
    return RowBatch(
        batch.index[idx],
        batch.field_ids[idx],
        batch.labels[idx],
        [batch.tokens[i] for i in idx],
        batch.token_spans[idx],
    )


def test_padding_and_attention_mask():
    batch = _batch([["a"] * F, ["a b c d e f"] * F], "roberta")
    tok = field_tokenizer("roberta").tokenizer
    out = FlipCollate(tok.pad_token_id, tok.mask_token_id)(batch)
    lengths = [len(t) for t in batch.tokens or []]
    assert out["input_ids"].shape == (2, max(lengths))
    assert out["attention_mask"].sum(1).tolist() == lengths
    assert (out["input_ids"][0, lengths[0] :] == tok.pad_token_id).all()
    assert set(out) == {"field_ids", "labels", "input_ids", "attention_mask", "field_spans"}


def test_id_only_path_skips_text(features_dir: Path):
    dataset = FeatureDataset(features_dir / "train.parquet", with_text=False)
    assert dataset.token_values is None
    out = FlipCollate(with_text=False)(dataset.__getitems__([0, 5, 9]))
    assert set(out) == {"field_ids", "labels"}
    assert out["field_ids"].dtype == torch.long and out["field_ids"].shape == (3, F)
    assert out["labels"].dtype == torch.float32
    with pytest.raises(ValueError, match="MLM masks need"):
        FlipCollate(with_text=False, mlm=True)


def test_dataloaders_for_a_feature_folder(features_dir: Path):
    manifest = read_manifest(features_dir)
    loaders = feature_dataloaders(features_dir, batch_size=64, with_text=True, masks=True, seed=3)
    assert set(loaders) == {"train", "valid", "test"}
    batch = next(iter(loaders["train"]))
    assert batch["input_ids"].shape[0] == 64
    assert batch["field_ids"].shape == (64, F)
    assert set(batch) >= {"mlm_input_ids", "mlm_labels", "mtm_field_ids", "mtm_labels"}
    fmap = load_feature_map(features_dir)
    sizes = torch.tensor(fmap.vocab_sizes)
    assert (batch["field_ids"] < sizes).all() and (batch["field_ids"] >= 2).all()
    assert (batch["mlm_input_ids"] == manifest["tokenizer"]["mask_token_id"]).any()
    total = sum(len(b["labels"]) for b in loaders["test"])
    assert total == manifest["splits"]["test"]["rows"]
    id_only = feature_dataloaders(features_dir, batch_size=128)
    assert set(next(iter(id_only["valid"]))) == {"field_ids", "labels"}
    again = next(iter(feature_dataloaders(features_dir, 64, True, True, seed=3)["train"]))
    assert torch.equal(again["mlm_input_ids"], batch["mlm_input_ids"])


def test_single_row_getitem_and_default_batching(features_dir: Path):
    dataset = FeatureDataset(features_dir / "valid.parquet", max_rows=10, sample="first")
    assert len(dataset) == 10
    rows = [dataset[i] for i in range(4)]
    out = FlipCollate()(rows)
    assert out["input_ids"].shape[0] == 4
    direct = FlipCollate()(dataset.__getitems__([0, 1, 2, 3]))
    assert all(torch.equal(out[k], direct[k]) for k in out)
    table = pq.read_table(features_dir / "valid.parquet").slice(0, 10)
    stored = table["input_ids"].to_pylist()
    fetched = dataset.__getitems__(list(range(10)))
    assert [t.tolist() for t in fetched.tokens or []] == stored
    spans = np.array(table["token_spans"].to_pylist()).reshape(10, F, 2)
    assert np.array_equal(np.asarray(fetched.token_spans), spans)
