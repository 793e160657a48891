"""ID model zoo: interface, registry errors, overfitting a tiny batch, save/load round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flip_core.config import IDModelConfig
from flip_core.models import IDModel, IDModelOutput, build_id_model, known_id_models

torch.set_num_threads(1)  # tiny tensors: extra threads only add contention on shared CI cores

VOCAB = [12, 5, 9, 30, 7, 25, 25, 11]
BACKBONES = [
    ("dcnv2", {"structure": "stacked"}),
    ("dcnv2", {"structure": "parallel", "low_rank": 8}),
    ("deepfm", {}),
    ("autoint", {}),
    ("autoint", {"use_mlp": True}),
    ("xdeepfm", {"cin_layers": [16, 16]}),
    ("fibinet", {}),
    ("wide_deep", {}),
]


def _batch(rows: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randint(3, v, (rows,), generator=gen) for v in VOCAB], dim=1)
    labels = torch.randint(0, 2, (rows,), generator=gen).float()
    return ids, labels


def _config(options: dict[str, object], **kw: object) -> IDModelConfig:
    return IDModelConfig(embedding_dim=8, hidden_units=[32, 16], dropout=0.0, options=options, **kw)


def test_registry_lists_every_backbone() -> None:
    assert known_id_models() == ["autoint", "dcnv2", "deepfm", "fibinet", "wide_deep", "xdeepfm"]


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown ID model 'dcn3'.*autoint.*xdeepfm"):
        build_id_model("dcn3", VOCAB, _config({}))


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"unknown option.*cross_layer.*known options"):
        build_id_model("dcnv2", VOCAB, _config({"cross_layer": 2}))
    with pytest.raises(ValueError, match="structure"):
        build_id_model("dcnv2", VOCAB, _config({"structure": "diagonal"}))


@pytest.mark.parametrize(("name", "options"), BACKBONES)
def test_output_interface(name: str, options: dict[str, object]) -> None:
    model = build_id_model(name, VOCAB, _config(options))
    ids, labels = _batch(6)
    out = model(ids)
    assert isinstance(out, IDModelOutput) and isinstance(model, IDModel)
    assert out.loss is None
    assert out.logits.shape == (6,)
    assert out.row_repr.shape == (6, model.repr_dim)
    assert out.field_embeddings.shape == (6, len(VOCAB), model.embedding_dim)
    with_loss = model(field_ids=ids, labels=labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(with_loss.logits, labels)
    assert with_loss.loss is not None
    torch.testing.assert_close(with_loss.loss, expected)


@pytest.mark.parametrize(("name", "options"), BACKBONES)
def test_overfits_tiny_batch(name: str, options: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = build_id_model(name, VOCAB, _config(options))
    ids, labels = _batch(32, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss = model(ids, labels).loss
        assert loss is not None
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        out = model(ids, labels)
    assert out.loss is not None
    assert first is not None and first > 0.6  # random labels start near log(2)
    assert float(out.loss) < 0.05
    assert bool(((out.logits > 0).float() == labels).all())


@pytest.mark.parametrize(("name", "options"), BACKBONES[:3])
def test_save_and_load_round_trip(tmp_path: Path, name: str, options: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = build_id_model(name, VOCAB, _config(options)).eval()
    feature_map = tmp_path / "feature_map.json"
    feature_map.write_text(json.dumps({"fields": ["a"]}), encoding="utf-8")
    out_dir = model.save_pretrained(tmp_path / "model", feature_map=feature_map)
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "config.json",
        "feature_map.json",
        "model.safetensors",
    ]
    loaded = IDModel.from_pretrained(out_dir).eval()
    assert type(loaded) is type(model)
    assert loaded.options == model.options
    ids, _ = _batch(5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_from_pretrained_rejects_non_model_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a saved ID model"):
        IDModel.from_pretrained(tmp_path)
