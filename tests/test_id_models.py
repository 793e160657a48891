"""ID model zoo: interface, registry errors, overfitting a tiny batch, save/load round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flip_core.config import IDModelConfig
from flip_core.models import IDModel, IDModelOutput, build_id_model, known_id_models
from flip_core.models.layers import MLP, FieldEmbedding, dropout_keep_scale, relu_dropout

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


def test_relu_dropout_keeps_the_right_share_and_scales() -> None:
    torch.manual_seed(0)
    x = torch.randn(1000, 403, requires_grad=True)  # 403000 elements: not a multiple of 4
    y = relu_dropout(x, 0.3)
    positive = x.detach() > 0
    kept = y.detach() != 0
    assert not bool((kept & ~positive).any())  # ReLU: nothing negative survives
    share = kept[positive].float().mean().item()
    assert abs(share - 0.7) < 0.005
    scale = 1.0 / (1.0 - round(0.3 * 32768) / 32768)
    torch.testing.assert_close(y[kept], x.detach()[kept] * scale)
    # each of the four 16-bit lanes of the random words keeps the same share
    lanes = kept.flatten()[: 4 * (kept.numel() // 4)].view(-1, 4).float()
    lane_pos = positive.flatten()[: lanes.numel()].view(-1, 4).float()
    per_lane = (lanes.sum(0) / lane_pos.sum(0)).tolist()
    assert all(abs(v - 0.7) < 0.01 for v in per_lane), per_lane
    grad = torch.randn_like(y)
    y.backward(grad)
    assert x.grad is not None
    torch.testing.assert_close(x.grad, grad * kept * scale)


def test_relu_dropout_in_bf16_keeps_the_float32_decisions() -> None:
    # the keep factors are computed in float32 whatever the input dtype: 16-bit lanes do not
    # survive a bf16 round trip, which would move the threshold
    x = torch.randn(64, 333)
    torch.manual_seed(5)
    ref = relu_dropout(x, 0.1)
    torch.manual_seed(5)
    low = relu_dropout(x.bfloat16(), 0.1)
    assert low.dtype == torch.bfloat16
    assert torch.equal(low != 0, ref != 0)
    torch.testing.assert_close(low.float(), ref, rtol=1e-2, atol=1e-2)


def test_dropout_keep_scale_refuses_an_unusable_out() -> None:
    for out in (torch.empty(4, 8, dtype=torch.bfloat16), torch.empty(8, 4).t()):
        with pytest.raises(ValueError, match="contiguous float32"):
            dropout_keep_scale(out.shape, 0.1, out.device, out=out)
    factors = dropout_keep_scale((4, 8), 0.5, torch.device("cpu"), out=torch.empty(4, 8))
    assert set(factors.unique().tolist()) <= {0.0, 2.0}


def test_mlp_dropout_is_seeded_and_off_in_eval() -> None:
    mlp = MLP(16, [32, 8], dropout=0.2)
    assert [k for k in mlp.state_dict()] == [
        "net.0.weight",
        "net.0.bias",
        "net.3.weight",
        "net.3.bias",
    ]
    x = torch.randn(64, 16)
    torch.manual_seed(3)
    first = mlp(x)
    torch.manual_seed(3)
    torch.testing.assert_close(mlp(x), first, rtol=0, atol=0)
    assert not torch.equal(mlp(x), first)  # a fresh mask
    mlp.eval()
    torch.testing.assert_close(mlp(x), mlp.net(x), rtol=0, atol=0)


def test_field_embedding_gradient_matches_nn_embedding() -> None:
    torch.manual_seed(0)
    emb = FieldEmbedding(VOCAB, 4)
    ids, _ = _batch(50)
    ids[0] = ids[1]  # repeated rows accumulate
    grad = torch.randn(50, len(VOCAB), 4)
    emb(ids).backward(grad)
    ours = emb.table.weight.grad
    assert ours is not None
    reference = emb.table.weight.detach().clone().requires_grad_()
    torch.nn.functional.embedding(ids + emb.offsets, reference).backward(grad)
    torch.testing.assert_close(ours, reference.grad, rtol=0, atol=1e-6)


def test_dcnv2_with_dropout_overfits_tiny_batch() -> None:
    torch.manual_seed(0)
    model = build_id_model("dcnv2", VOCAB, _config({}).model_copy(update={"dropout": 0.1}))
    ids, labels = _batch(32, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = model(ids, labels).loss
        assert loss is not None
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        out = model(ids, labels)
    assert out.loss is not None and float(out.loss) < 0.05
