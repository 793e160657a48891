"""Pretrain -> finetune (all three variants) end to end on synthetic data with a tiny local PLM,
through the CLI, the real feature build and the one trainer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors import safe_open
from transformers import BertConfig, BertModel
from typer.testing import CliRunner

from flip_core.config import FlipConfig, load_config
from flip_core.data.build import build_splits_from_config, render_from_config
from flip_core.metrics import binary_auc
from flip_core.models.flip import FlipForCTR, FlipForPretraining
from flows.cli import app
from tests.features_support import ingest, minilm_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_plm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT over MiniLM's vocabulary, saved as a local PLM folder."""
    out = tmp_path_factory.mktemp("tiny-plm")
    tok = minilm_tokenizer()
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _overrides(data_root: Path, plm_dir: Path) -> list[str]:
    return [
        f"paths.data_root={data_root}",
        f"plm.name={plm_dir}",
        "id_model.embedding_dim=8",
        "id_model.hidden_units=[32]",
        "training.batch_size=32",
        "training.max_steps=8",
        "training.epochs=1",
        "training.num_threads=1",
        "training.progress=false",
        "training.log_every_steps=2",
        "training.eval_every_steps=4",
        "training.learning_rate=0.003",
        "plm.learning_rate=0.001",
        "pretrain.max_rows=256",
        "pretrain.mtm_num_negatives=16",
        "pretrain.mtm_full_softmax_max_vocab=64",
        "finetune.max_rows=256",
    ]


@pytest.fixture(scope="module")
def features(
    synthetic_raw: Path, tiny_plm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("flip-stages")
    overrides = _overrides(root, tiny_plm_dir)
    cfg = load_config(None, overrides)
    lake = ingest(synthetic_raw, root)
    splits = build_splits_from_config(cfg, lake)
    built = render_from_config(cfg, splits.splits_dir)
    return built.features_dir, overrides


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_pretrain_then_finetune_every_variant(
    features: tuple[Path, list[str]], tmp_path: Path
) -> None:
    features_dir, overrides = features
    sets = [a for o in overrides for a in ("--set", o)]
    out = _cli("pretrain", "--features", str(features_dir), "--out", str(tmp_path / "pre"), *sets)
    assert "valid_loss" in out
    pre_dir = tmp_path / "pre" / "model"
    names = {p.name for p in pre_dir.iterdir()}
    assert {"config.json", "model.safetensors", "feature_map.json", "tokenizer.json"} <= names
    history = (tmp_path / "pre" / "history.json").read_text()
    for key in ("train_mlm_accuracy", "train_mtm_accuracy", "valid_icl_loss"):
        assert key in history
    pre = FlipForPretraining.from_pretrained(pre_dir)
    init = FlipForCTR.from_pretraining(pre_dir, "flip")
    for name, tensor in pre.state_dict().items():  # towers carried over, heads dropped
        if name.startswith(("id_model.", "plm.")):
            torch.testing.assert_close(init.state_dict()[name], tensor)
    assert not any(k.startswith(("mlm_head", "mtm_head", "icl_head")) for k in init.state_dict())

    for variant in ("flip_id", "flip_plm", "flip"):
        run_dir = tmp_path / variant
        out = _cli(
            "finetune", "--variant", variant, "--features", str(features_dir),
            "--pretrained", str(pre_dir), "--out", str(run_dir), *sets,
        )  # fmt: skip
        assert "test_auc" in out
        _check_predictions(run_dir, features_dir)
        model = FlipForCTR.from_pretrained(run_dir / "model")
        assert model.variant == variant
        with safe_open(str(run_dir / "model" / "model.safetensors"), "pt") as f:
            keys = list(f.keys())
        has_plm = any(k.startswith("plm.") for k in keys)
        assert has_plm == (variant != "flip_id")
        if variant == "flip_id":  # servable without the PLM: no text in, no PLM weights
            assert model.plm is None and model.config.plm_config is None
            assert not (run_dir / "model" / "tokenizer.json").exists()
            rows = torch.full((2, len(model.config.vocab_sizes)), 3)
            assert model(field_ids=rows).logits.shape == (2,)


def _check_predictions(run_dir: Path, features_dir: Path) -> None:
    """The saved per-row predictions match the split, and the reported metrics are theirs."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("valid", "test"):
        preds = pq.read_table(run_dir / "predictions" / f"{split}.parquet").to_pandas()
        labels = pq.read_table(features_dir / f"{split}.parquet", columns=["label"])["label"]
        assert preds["label"].tolist() == labels.to_pylist()
        assert preds["prob"].between(0, 1).all()
        assert metrics[f"{split}_auc"] == pytest.approx(binary_auc(preds["label"], preds["prob"]))
        cold = preds["user_cold"]
        assert metrics[f"{split}_cold_rows"] == cold.sum()
        if cold.any() and (~cold).any():
            warm = preds[~cold]
            assert metrics[f"{split}_warm_auc"] == pytest.approx(
                binary_auc(warm["label"], warm["prob"]), nan_ok=True
            )


def test_from_scratch_baselines_and_bad_input(
    features: tuple[Path, list[str]], tmp_path: Path
) -> None:
    features_dir, overrides = features
    cfg: FlipConfig = load_config(None, overrides)
    from flip_core.flip_stages import build_ctr_model

    scratch = build_ctr_model(cfg, features_dir, "flip_id", None)
    assert scratch.plm is None and scratch.id_model is not None
    plm_only = build_ctr_model(cfg, features_dir, "flip_plm", None)
    assert plm_only.id_model is None and plm_only.plm is not None
    sets = [a for o in overrides for a in ("--set", o)]
    result = CliRunner().invoke(
        app,
        ["finetune", "--variant", "flip_id", "--features", str(features_dir), "--out",
         str(tmp_path), "--pretrained", str(tmp_path / "missing"), *sets],
    )  # fmt: skip
    assert result.exit_code == 2 and "not a saved FLIP pretraining folder" in result.output


def test_finetuning_is_reproducible_per_seed(
    features: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """Same seed -> the same model (initial weights included); another seed -> another model."""
    from flip_core.flip_stages import run_finetuning

    features_dir, overrides = features

    def probs(seed: int, name: str) -> list[float]:
        cfg = load_config(None, [*overrides, f"training.seed={seed}"])
        run_finetuning(cfg, features_dir, tmp_path / name, "flip_id")
        return pq.read_table(tmp_path / name / "predictions" / "test.parquet")["prob"].to_pylist()

    first = probs(7, "a")
    assert probs(7, "b") == first
    assert probs(8, "c") != first


def test_capped_splits_are_seeded_random_samples(features: tuple[Path, list[str]]) -> None:
    """A random cap covers many users (the first rows of a time-sorted split cover few);
    the same seed gives the same rows, another seed other rows."""
    from flip_core.data.dataset import FeatureDataset
    from flip_core.data.sampling import subset_rows

    features_dir, _ = features
    path = features_dir / "train.parquet"
    total = pq.read_metadata(path).num_rows
    first = FeatureDataset(path, with_text=False, max_rows=200, sample="first")
    rand = FeatureDataset(path, with_text=False, max_rows=200, seed=3)
    again = FeatureDataset(path, with_text=False, max_rows=200, sample="random", seed=3)
    other = FeatureDataset(path, with_text=False, max_rows=200, seed=4)
    assert first.rows.tolist() == list(range(200))
    assert len(rand) == 200 and rand.rows.tolist() == sorted(set(rand.rows.tolist()))
    assert rand.rows.max() > total // 2
    assert again.rows.tolist() == rand.rows.tolist()
    assert other.rows.tolist() != rand.rows.tolist()
    users_first = len(set(first.field_ids[:, 0].tolist()))
    users_random = len(set(rand.field_ids[:, 0].tolist()))
    assert users_random > 2 * users_first, (users_random, users_first)
    ids = pq.read_table(path, columns=["user_id"])["user_id"].to_numpy()
    assert rand.field_ids[:, 0].tolist() == ids[rand.rows].tolist()  # row i is file row rows[i]
    assert subset_rows(10, None).tolist() == list(range(10))
    assert subset_rows(10, 50).tolist() == list(range(10))


def test_control_arm_takes_each_rows_text_from_another_row(
    features: tuple[Path, list[str]], tmp_path: Path
) -> None:
    from flip_core.data.dataset import FeatureDataset
    from flip_core.flip_stages import TextFromOtherRows, run_pretraining

    features_dir, overrides = features
    data = FeatureDataset(features_dir / "train.parquet", max_rows=300)
    control = TextFromOtherRows(data, seed=5)
    assert sorted(control.text_of.tolist()) == list(range(300))  # a permutation...
    assert not (control.text_of == np.arange(300)).any()  # ...that moves every row
    assert TextFromOtherRows(data, seed=5).text_of.tolist() == control.text_of.tolist()
    idx = [0, 17, 299]
    mixed, own = control.__getitems__(idx), data.__getitems__(idx)
    partner = data.__getitems__(control.text_of[idx].tolist())
    assert (mixed.field_ids == own.field_ids).all() and (mixed.labels == own.labels).all()
    assert mixed.tokens is not None and partner.tokens is not None
    assert all(np.array_equal(a, b) for a, b in zip(mixed.tokens, partner.tokens, strict=True))
    assert np.array_equal(mixed.token_spans, partner.token_spans)  # type: ignore[arg-type]

    cfg = load_config(None, [*overrides, "pretrain.shuffle_text=true", "training.max_steps=2"])
    result = run_pretraining(cfg, features_dir, tmp_path / "control")
    assert (result.model_dir / "model.safetensors").is_file()


def test_fusion_weight_has_its_own_lr_and_a_logged_trajectory(
    features: tuple[Path, list[str]], tmp_path: Path
) -> None:
    from flip_core.flip_stages import _optimizer_factory, build_ctr_model, run_finetuning

    features_dir, overrides = features
    cfg = load_config(None, [*overrides, "finetune.fusion_learning_rate=0.5"])
    model = build_ctr_model(cfg, features_dir, "flip", None)
    opt = _optimizer_factory(model, cfg)([])
    fusion_groups = [g for g in opt.param_groups if any(p is model.mix_logit for p in g["params"])]
    assert len(fusion_groups) == 1 and fusion_groups[0]["lr"] == 0.5
    assert len(fusion_groups[0]["params"]) == 1

    def run(name: str, lr: float) -> list[float]:
        sets = [*overrides, f"finetune.fusion_learning_rate={lr}", "finetune.max_test_rows=50"]
        result = run_finetuning(load_config(None, sets), features_dir, tmp_path / name, "flip")
        lines = (tmp_path / name / "fusion.jsonl").read_text().splitlines()
        trajectory = [json.loads(line)["fusion_a"] for line in lines]
        assert len(trajectory) == 4  # log_every_steps=2, max_steps=8
        assert 0.0 < result.metrics["fusion_a"] < 1.0
        return trajectory

    slow, fast = run("slow", 1e-4), run("fast", 0.3)
    assert max(abs(a - 0.5) for a in fast) > 10 * max(abs(a - 0.5) for a in slow)
    preds = pq.read_table(tmp_path / "fast" / "predictions" / "test.parquet").to_pandas()
    assert len(preds) == 50 and preds["user"].str.len().gt(0).all()
    assert (preds["item_train_count"] >= 0).all() and preds["item_train_count"].max() > 0
