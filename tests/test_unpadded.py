"""Padding-free encoder forward: same token states and gradients as the stock forward."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, DistilBertConfig

from flip_core.models import unpadded
from flip_core.models.unpadded import supports_unpadded, unpadded_forward
from tests.flip_tiny import make_tokenizer, tiny_plm

torch.set_num_threads(1)

TEXTS = ["user is user5 . age is age4 .", "user is user3 .", "gender is F . title is movie7 ."]


def _set_dropout(encoder: torch.nn.Module, p: float) -> None:
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p


def _batch(kind: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    tok = make_tokenizer(kind)  # type: ignore[arg-type]
    enc = tiny_plm(kind, tok).eval()  # type: ignore[arg-type]
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding"
    return enc.encoder, batch["input_ids"], batch["attention_mask"]


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_unpadded_matches_stock_forward_and_gradients(kind: str) -> None:
    encoder, ids, mask = _batch(kind)
    assert supports_unpadded(encoder)
    real = mask.bool()
    stock = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    ours = unpadded_forward(encoder, ids, mask)
    torch.testing.assert_close(ours[real], stock[real], rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(ours[~real]) == 0

    params = [p for p in encoder.parameters() if p.requires_grad]
    probe = torch.randn_like(stock[real])  # a loss that weighs every real state differently
    g_stock = torch.autograd.grad((stock[real] * probe).sum(), params, allow_unused=True)
    g_ours = torch.autograd.grad((ours[real] * probe).sum(), params, allow_unused=True)
    compared = 0
    for a, b in zip(g_ours, g_stock, strict=True):
        if a is None or b is None:
            assert a is None or torch.count_nonzero(a) == 0
            continue
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        compared += 1
    assert compared >= len(params) - 2  # only unused embedding rows may lack a gradient


def test_batch_without_padding_matches_too() -> None:
    encoder, ids, mask = _batch("bert")
    ids, mask = ids[:, :4], torch.ones_like(mask[:, :4])
    stock = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(unpadded_forward(encoder, ids, mask), stock, rtol=1e-5, atol=1e-5)


def test_plm_encoder_runs_unpadded_by_default_and_can_opt_out() -> None:
    tok = make_tokenizer("bert")
    enc = tiny_plm("bert", tok).eval()
    assert enc.unpad
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        fast = enc(batch["input_ids"], batch["attention_mask"])
        enc.unpad = False
        stock = enc(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(fast.pooled, stock.pooled, rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(stock.hidden_states[~batch["attention_mask"].bool()]) > 0


def test_other_architectures_keep_the_stock_forward() -> None:
    config = DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    assert not supports_unpadded(AutoModel.from_config(config))


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_training_mode_attention_path_matches_stock_without_dropout(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In training mode attention runs as an explicit softmax (for the cheap dropout); with the
    dropout itself switched off it must give the stock forward's states and gradients."""
    encoder, ids, mask = _batch(kind)
    real = mask.bool()
    stock = encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # eval: no dropout
    _set_dropout(encoder, 0.1)  # takes the explicit-softmax path ...
    monkeypatch.setattr(unpadded, "dropout", lambda x, p: x)  # ... with the dropout switched off
    layers = encoder.get_submodule("encoder")
    layers.train()  # layers in training mode; the embeddings stay in eval mode
    ours = unpadded_forward(encoder, ids, mask)
    torch.testing.assert_close(ours[real], stock[real], rtol=1e-5, atol=1e-5)
    params = list(layers.parameters())
    probe = torch.randn_like(stock[real])
    g_stock = torch.autograd.grad((stock[real] * probe).sum(), params)
    g_ours = torch.autograd.grad((ours[real] * probe).sum(), params)
    for a, b in zip(g_ours, g_stock, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_cheap_dropout_rate_and_scale() -> None:
    torch.manual_seed(0)
    x = torch.ones(400_000)
    y = unpadded.dropout(x, 0.1)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - 0.1) < 0.003  # 4.6 standard errors of a 400k-draw share
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - 3277 / 32768)))
    assert unpadded.dropout(x, 0.0) is x


def test_training_mode_applies_dropout() -> None:
    encoder, ids, mask = _batch("bert")
    _set_dropout(encoder, 0.1)
    real = mask.bool()
    with torch.no_grad():
        stock = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        encoder.train()
        torch.manual_seed(1)
        a = unpadded_forward(encoder, ids, mask)
        torch.manual_seed(2)
        b = unpadded_forward(encoder, ids, mask)
    assert torch.isfinite(a).all()
    assert not torch.allclose(a[real], stock[real], atol=1e-3)
    assert not torch.allclose(a[real], b[real], atol=1e-3)
