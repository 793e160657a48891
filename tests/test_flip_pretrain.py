"""FlipForPretraining with tiny BERT and RoBERTa encoders and a small DCNv2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from flip_core.config import FlipConfig
from flip_core.models.flip import FlipForPretraining, FlipModelConfig, make_masks_disjoint
from tests.flip_tiny import (
    FIELDS,
    VOCAB_SIZES,
    make_batch,
    make_rows,
    make_tokenizer,
    tiny_config,
    tiny_plm,
)

torch.set_num_threads(1)


def _model(kind: str = "bert", seed: int = 0, **overrides: Any) -> FlipForPretraining:
    torch.manual_seed(seed)
    tok = make_tokenizer(kind)  # type: ignore[arg-type]
    return FlipForPretraining(tiny_config(**overrides), plm=tiny_plm(kind, tok))  # type: ignore[arg-type]


def _batch(kind: str = "bert", n: int = 16, **kwargs: bool) -> dict[str, torch.Tensor]:
    return make_batch(make_tokenizer(kind), make_rows(n), **kwargs)  # type: ignore[arg-type]


ONLY: dict[str, dict[str, Any]] = {
    "mlm": {"mlm": True, "mtm": False, "icl": False},
    "mtm": {"mlm": False, "mtm": True, "icl": False},
    "icl": {"mlm": False, "mtm": False, "icl": True},
}


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("objective", ["mlm", "mtm", "icl"])
def test_each_objective_alone_learns_a_fixed_batch(kind: str, objective: str) -> None:
    model = _model(kind, **ONLY[objective])
    batch = _batch(kind)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    first = model(**batch)
    for _ in range(30):
        out = model(**batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        last = model(**batch)
    loss0, loss1 = getattr(first, f"{objective}_loss"), getattr(last, f"{objective}_loss")
    acc = float(getattr(last, f"{objective}_accuracy"))
    assert model.plm is not None
    chance = {"mlm": 1 / model.plm.vocab_size, "mtm": 1 / min(VOCAB_SIZES), "icl": 1 / 16}
    assert float(loss1) < 0.5 * float(loss0), (objective, float(loss0), float(loss1))
    assert acc >= 0.6 > 3 * chance[objective], (objective, acc)
    for other in set(ONLY) - {objective}:  # switched-off objectives report nothing
        assert getattr(last, f"{other}_loss") is None


def _grad_names(model: FlipForPretraining, batch: dict[str, torch.Tensor]) -> set[str]:
    model.zero_grad()
    model(**batch).loss.backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def _mask_row_grad(model: FlipForPretraining) -> float:
    """Gradient on the ID model's MASK-id embedding rows (only the masked row uses them)."""
    emb = model.id_model.embedding  # type: ignore[union-attr]
    grad = emb.table.weight.grad
    assert grad is not None
    return float(grad[emb.offsets + 1].abs().sum())


def test_ablation_switches_change_which_parameters_get_gradients() -> None:
    batch = _batch()
    full = _grad_names(_model(), batch)
    heads = {"mlm": "mlm_head.", "mtm": "mtm_head.", "icl": "icl_head."}
    for prefix in heads.values():
        assert any(n.startswith(prefix) for n in full), prefix
    assert any(n.startswith("plm.") for n in full) and any(n.startswith("id_model.") for n in full)
    for objective, prefix in heads.items():
        off: dict[str, Any] = {objective: False}
        ablated = _grad_names(_model(**off), batch)
        assert not any(n.startswith(prefix) for n in ablated), objective
        assert ablated < full, objective
        only = _grad_names(_model(**ONLY[objective]), batch)
        others = set(heads.values()) - {prefix}
        assert any(n.startswith(prefix) for n in only)
        assert not any(n.startswith(p) for n in only for p in others), objective
        # every objective trains both towers (that is the alignment)
        assert any(n.startswith("plm.encoder.") for n in only), objective
        assert any(n.startswith("id_model.embedding") for n in only), objective
        # the ID model's click head is never trained by pretraining
        assert not any(n.startswith("id_model.head") for n in only), objective


def test_mtm_alone_reads_the_masked_row_mlm_and_icl_the_unmasked_row() -> None:
    batch = _batch()
    for objective, uses_mask_id in (("mlm", False), ("mtm", True), ("icl", False)):
        model = _model(**ONLY[objective])
        _grad_names(model, batch)
        assert (_mask_row_grad(model) > 0) == uses_mask_id, objective


def test_weights_scale_their_loss() -> None:
    batch = _batch()
    model = _model()
    model.eval()
    with torch.no_grad():
        base = model(**batch)
        weights = model.config.objectives.model_copy(update={"mtm_weight": 3.0, "icl_weight": 0.0})
        model.config = model.config.model_copy(update={"objectives": weights})
        scaled = model(**batch)
    assert base.mlm_loss is not None and base.mtm_loss is not None
    expected = base.mlm_loss + 3.0 * base.mtm_loss
    torch.testing.assert_close(scaled.loss, expected)


def _count_plm_passes(model: FlipForPretraining, batch: dict[str, torch.Tensor]) -> int:
    calls: list[int] = []
    handle = model.plm.register_forward_hook(lambda *_: calls.append(1))  # type: ignore[union-attr]
    with torch.no_grad():
        model(**batch)
    handle.remove()
    return len(calls)


def test_single_pass_runs_the_plm_once_and_reads_only_the_masked_text() -> None:
    batch = _batch(disjoint=True)
    assert _count_plm_passes(_model(), batch) == 2
    single = _model(single_pass=True).eval()
    assert _count_plm_passes(single, batch) == 1
    other = dict(batch, input_ids=torch.randint_like(batch["input_ids"], 5, 20))
    with torch.no_grad():
        a, b = single(**batch), single(**other)
    torch.testing.assert_close(a.loss, b.loss)  # clean text unused in single-pass mode


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_save_and_load_give_identical_outputs(kind: str, tmp_path: Path) -> None:
    model = _model(kind, mtm_loss="nce").eval()
    counts = [list(range(v)) for v in VOCAB_SIZES]
    model.set_noise_counts(counts)
    batch = _batch(kind)
    tok = make_tokenizer(kind)  # type: ignore[arg-type]
    model.save_pretrained(tmp_path / "m", tokenizer=tok)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in (tmp_path / "m").iterdir()
    }
    loaded = FlipForPretraining.from_pretrained(tmp_path / "m").eval()
    assert loaded.config == model.config
    assert loaded.mlm_head.decoder.weight is loaded.plm.input_embeddings().weight  # type: ignore[union-attr]
    assert loaded.plm.pad_token_id == tok.pad_token_id  # type: ignore[union-attr]
    torch.testing.assert_close(loaded.mtm_head.log_noise_0, model.mtm_head.log_noise_0)  # type: ignore[union-attr]
    with torch.no_grad():
        a, b = model(**batch), loaded(**batch)
    assert a.metrics() == b.metrics()


def test_config_from_pipeline_config_and_all_off_is_an_error() -> None:
    cfg = FlipConfig()
    cfg.pretrain.icl = False
    cfg.pretrain.single_pass = True
    model_cfg = FlipModelConfig.from_flip_config(cfg, FIELDS, VOCAB_SIZES)
    objectives = model_cfg.objectives
    assert not objectives.icl and objectives.single_pass and model_cfg.id_backbone == "dcnv2"
    assert objectives.mlm_field_ratio == cfg.pretrain.mlm_field_ratio  # saved with the model
    with pytest.raises(ValueError, match="at least one"):
        _model(mlm=False, mtm=False, icl=False)


def test_make_masks_disjoint_moves_mtm_off_mlm_fields() -> None:
    batch = _batch(n=64)  # independent draws: some rows mask the same field twice
    spans, mlm = batch["field_spans"], batch["mlm_labels"] != -100
    pos = torch.arange(mlm.shape[1])
    text_masked = (((pos >= spans[..., :1]) & (pos < spans[..., 1:])) & mlm[:, None]).any(-1)
    overlap = (batch["mtm_labels"] != -100) & text_masked
    assert overlap.any()
    fixed = make_masks_disjoint(batch)
    chosen = fixed["mtm_labels"] != -100
    assert not (chosen & text_masked).any()
    assert chosen.any(1).all()
    torch.testing.assert_close(fixed["mtm_labels"][chosen], batch["field_ids"][chosen])
    assert (fixed["mtm_field_ids"][chosen] == 1).all()
    assert (fixed["mtm_field_ids"][~chosen] == batch["field_ids"][~chosen]).all()


def test_the_metrics_callback_keeps_running_means_per_mode() -> None:
    from flip_core.flip_stages import PretrainMetricsCallback

    model = _model()
    tracker = PretrainMetricsCallback(model)
    batch = _batch()
    model(**batch)
    model(**batch)
    model.eval()
    with torch.no_grad():
        model(**batch)
    train, valid = tracker.pop("train"), tracker.pop("eval")
    assert {"mlm_accuracy", "mtm_loss", "icl_loss"} <= set(train) and set(train) == set(valid)
    assert tracker.pop("train") == {}


def test_a_config_json_saved_with_flat_objective_keys_still_loads() -> None:
    saved = tiny_config(icl=False, mtm_weight=2.0).model_dump(mode="json")
    flat = {**{k: v for k, v in saved.items() if k != "objectives"}, **saved["objectives"]}
    assert FlipModelConfig.model_validate(flat) == FlipModelConfig.model_validate(saved)
    assert FlipModelConfig.model_validate(flat).objectives.mtm_weight == 2.0
