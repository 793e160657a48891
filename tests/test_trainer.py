"""The shared trainer: exact resume after a kill, accumulation, selection, monitors, callbacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from flip_core.config import IDModelConfig, TrainingConfig
from flip_core.models import IDModel, build_id_model
from flip_core.training import (
    JsonlMetricsCallback,
    TensorDictDataset,
    Trainer,
    TrainerCallback,
    TrainerState,
    keep_batch,
    list_checkpoints,
    seed_everything,
)

torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parent.parent
VOCAB = [20, 6, 9, 40, 7, 50, 50, 12]


def make_data(rows: int, seed: int, flip_labels: bool = False) -> TensorDictDataset:
    """Learnable synthetic rows: labels from a fixed random logistic model over the ids."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randint(3, v, (rows,), generator=gen) for v in VOCAB], dim=1)
    weights = torch.randn(sum(VOCAB), generator=torch.Generator().manual_seed(123)) * 1.5
    offsets = torch.tensor([0, *VOCAB[:-1]]).cumsum(0)
    logits = weights[ids + offsets].sum(dim=1)
    labels = (torch.rand(rows, generator=gen) < torch.sigmoid(logits)).float()
    if flip_labels:
        labels = 1.0 - labels
    extra = torch.zeros(rows, 3, dtype=torch.long)  # a key no ID model accepts
    return TensorDictDataset({"field_ids": ids, "labels": labels, "input_ids": extra})


def make_model(seed: int = 0, dropout: float = 0.1) -> nn.Module:
    seed_everything(seed)
    cfg = IDModelConfig(embedding_dim=8, hidden_units=[32, 16], dropout=dropout)
    return build_id_model("dcnv2", VOCAB, cfg)


RESUME_CONFIG = TrainingConfig(
    batch_size=32,
    epochs=2,
    learning_rate=3e-3,
    scheduler="linear",
    warmup_steps=3,
    checkpoint_every_steps=5,
    eval_every_steps=4,
    early_stopping_patience=0,
    log_every_steps=1,
    num_threads=1,
    progress=False,
    seed=7,
)


def resume_trainer(out: Path) -> Trainer:
    return Trainer(
        make_model(),
        RESUME_CONFIG,
        make_data(512, seed=1),
        make_data(128, seed=2),
        output_dir=out,
        collate_fn=keep_batch,
    )


class _KillAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, state: TrainerState, logs: dict[str, float]) -> None:
        if state.step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def run_until_killed(out: str, kill_step: int) -> None:
    """Entry point for the subprocess: train and SIGKILL this process at `kill_step`."""
    trainer = resume_trainer(Path(out))
    trainer.callbacks.append(_KillAt(kill_step))
    trainer.train()


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path: Path) -> None:
    reference = resume_trainer(tmp_path / "full")
    full = reference.train()
    assert full.global_step == 32 and full.epochs_completed == 2

    killed_dir = tmp_path / "killed"
    code = (
        "from tests.test_trainer import run_until_killed; "
        f"run_until_killed({str(killed_dir)!r}, 13)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=False)
    assert proc.returncode == -signal.SIGKILL
    checkpoints = list_checkpoints(killed_dir / "checkpoints")
    assert [p.name for p in checkpoints] == ["checkpoint-5", "checkpoint-10"]

    resumed = resume_trainer(killed_dir)
    result = resumed.train(resume_from="latest")
    assert result.global_step == 32
    assert result.best_step == full.best_step
    assert result.best_metric == pytest.approx(full.best_metric, abs=1e-6)
    # The final (best-restored) weights agree with the uninterrupted run's.
    ref_state, new_state = _state(reference.model), _state(resumed.model)
    for key, value in ref_state.items():
        torch.testing.assert_close(new_state[key], value, rtol=0, atol=1e-6, msg=key)
    # So do the last training weights, saved in each run's final checkpoint.
    # keep_checkpoints=2 (the default): older checkpoints are deleted as new ones come
    kept = [p.name for p in list_checkpoints(tmp_path / "full" / "checkpoints")]
    assert kept == ["checkpoint-30", "checkpoint-32"]
    last_ref = list_checkpoints(tmp_path / "full" / "checkpoints")[-1]
    last_new = list_checkpoints(killed_dir / "checkpoints")[-1]
    assert last_ref.name == last_new.name == "checkpoint-32"
    from safetensors.torch import load_file

    a, b = load_file(last_ref / "model.safetensors"), load_file(last_new / "model.safetensors")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)
    # Loss logs after the resume point match too.
    ref_losses = {h["step"]: h["loss"] for h in full.history if "loss" in h}
    new_losses = {h["step"]: h["loss"] for h in result.history if "loss" in h}
    for step in range(11, 33):
        assert new_losses[step] == pytest.approx(ref_losses[step], abs=1e-6)


def _plain_config(**kw: object) -> TrainingConfig:
    base: dict[str, object] = {
        "batch_size": 32,
        "epochs": 1,
        "learning_rate": 3e-3,
        "log_every_steps": 1,
        "num_threads": 1,
        "progress": False,
        "checkpoint_every_steps": 1000,
    }
    base.update(kw)
    return TrainingConfig.model_validate(base)


def test_grad_accumulation_equals_larger_batch(tmp_path: Path) -> None:
    data = make_data(256, seed=3)
    big = Trainer(
        make_model(dropout=0.0),
        _plain_config(),
        data,
        output_dir=tmp_path / "a",
        collate_fn=keep_batch,
    )
    big.train()
    accum_cfg = _plain_config(batch_size=16, grad_accum_steps=2)
    small = Trainer(
        make_model(dropout=0.0), accum_cfg, data, output_dir=tmp_path / "b", collate_fn=keep_batch
    )
    result = small.train()
    assert result.global_step == 8
    for key, value in _state(big.model).items():
        torch.testing.assert_close(_state(small.model)[key], value, rtol=1e-5, atol=1e-6)


def test_compiled_training_matches_eager(tmp_path: Path) -> None:
    # training.compile=true: the same steps and weights as eager (no dropout, so no RNG in the
    # graph), and the saved model keeps the plain parameter names
    data = make_data(128, seed=6)
    states, losses = [], []
    for compiled in (False, True):
        cfg = _plain_config(compile=compiled, epochs=1)
        trainer = Trainer(
            make_model(dropout=0.0),
            cfg,
            data,
            make_data(64, seed=7),
            output_dir=tmp_path / str(compiled),
            collate_fn=keep_batch,
        )
        result = trainer.train()
        assert result.global_step == 4
        states.append(_state(trainer.model))
        losses.append([h["loss"] for h in result.history if "loss" in h])
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    for key, value in states[0].items():
        torch.testing.assert_close(states[1][key], value, rtol=1e-5, atol=1e-6, msg=key)
    saved = json.loads((tmp_path / "True" / "best" / "config.json").read_text(encoding="utf-8"))
    assert saved["backbone"] == "dcnv2"
    reloaded = IDModel.from_pretrained(tmp_path / "True" / "best")
    assert set(_state(reloaded)) == set(states[1])


def test_learns_and_selects_best_on_valid(tmp_path: Path) -> None:
    cfg = _plain_config(epochs=3, early_stopping_patience=5)
    trainer = Trainer(
        make_model(),
        cfg,
        make_data(2048, seed=4),
        make_data(512, seed=5),
        output_dir=tmp_path,
        collate_fn=keep_batch,
    )
    result = trainer.train()
    evals = [h for h in result.history if "valid_auc" in h]
    assert len(evals) == 3
    assert result.monitor == "valid_auc"
    assert result.best_metric == max(h["valid_auc"] for h in evals)
    assert result.best_metric > 0.75  # the synthetic signal is learnable
    assert (tmp_path / "best" / "config.json").is_file()
    # The model handed back holds the best weights.
    again = trainer.evaluate(make_data(512, seed=5))
    assert again["valid_auc"] == pytest.approx(result.best_metric, abs=1e-9)


def test_early_stopping_when_valid_gets_worse(tmp_path: Path) -> None:
    # Valid labels are the train labels' opposite: the more it learns, the worse valid AUC gets.
    cfg = _plain_config(epochs=5, eval_every_steps=4, early_stopping_patience=2)
    trainer = Trainer(
        make_model(),
        cfg,
        make_data(1024, seed=6),
        make_data(256, seed=7, flip_labels=True),
        output_dir=tmp_path,
        collate_fn=keep_batch,
    )
    result = trainer.train()
    evals = [h for h in result.history if "valid_auc" in h]
    assert result.stopped_early
    assert result.global_step < 5 * 32
    assert result.best_metric == max(h["valid_auc"] for h in evals)
    assert evals[-1]["valid_auc"] < result.best_metric


@dataclass
class _LossOnly:
    loss: Tensor


class _ReconstructIds(nn.Module):
    """A pretraining-like model: loss only, no logits (monitor falls back to valid loss)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(64, 8)
        self.out = nn.Linear(8, 64)

    def forward(self, field_ids: Tensor) -> _LossOnly:
        logits = self.out(self.embed(field_ids.clamp(max=63)))
        return _LossOnly(nn.functional.cross_entropy(logits.flatten(0, 1), field_ids.flatten()))


class _Recorder(TrainerCallback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_train_begin(self, state: TrainerState) -> None:
        self.events.append("begin")

    def on_step(self, state: TrainerState, logs: dict[str, float]) -> None:
        self.events.append("step")

    def on_eval(self, state: TrainerState, metrics: dict[str, float]) -> None:
        self.events.append("eval")

    def on_epoch_end(self, state: TrainerState, metrics: dict[str, float]) -> None:
        self.events.append("epoch")

    def on_checkpoint(self, state: TrainerState, path: Path) -> None:
        self.events.append("checkpoint")

    def on_train_end(self, state: TrainerState, metrics: dict[str, float]) -> None:
        self.events.append("end")


def test_loss_only_model_monitors_valid_loss_and_calls_callbacks(tmp_path: Path) -> None:
    recorder = _Recorder()
    jsonl = tmp_path / "metrics.jsonl"
    cfg = _plain_config(epochs=2, progress=True, learning_rate=3e-2)
    torch.manual_seed(0)
    trainer = Trainer(
        _ReconstructIds(),
        cfg,
        make_data(128, seed=8),
        make_data(64, seed=9),
        output_dir=tmp_path / "run",
        collate_fn=keep_batch,
        callbacks=[recorder, JsonlMetricsCallback(jsonl)],
    )
    result = trainer.train()
    evals = [h for h in result.history if "valid_loss" in h]
    assert result.monitor == "valid_loss" and "valid_auc" not in evals[0]
    assert result.best_metric == min(h["valid_loss"] for h in evals)
    assert evals[-1]["valid_loss"] < evals[0]["valid_loss"]
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    assert recorder.events[0] == "begin" and recorder.events[-1] == "end"
    assert recorder.events.count("step") == 8
    assert recorder.events.count("epoch") == 2 and recorder.events.count("checkpoint") == 2
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert {line["kind"] for line in lines} == {"step", "eval"}
    assert all(line["samples_per_s"] > 0 for line in lines if line["kind"] == "step")


def test_eval_on_an_epochs_last_step_runs_once(tmp_path: Path) -> None:
    """A periodic eval that lands on an epoch's last step is not repeated at the epoch end (a
    second, identical eval would count twice towards early stopping)."""
    recorder = _Recorder()
    cfg = _plain_config(epochs=3, eval_every_steps=4, early_stopping_patience=0)
    trainer = Trainer(
        make_model(),
        cfg,
        make_data(128, seed=8),  # 4 steps an epoch: every 4th step is an epoch's last
        make_data(64, seed=9),
        output_dir=tmp_path,
        collate_fn=keep_batch,
        callbacks=[recorder],
    )
    result = trainer.train()
    eval_steps = [h["step"] for h in result.history if "valid_auc" in h]
    assert eval_steps == [4.0, 8.0, 12.0]
    assert recorder.events.count("eval") == 3 and recorder.events.count("epoch") == 3


def test_bad_settings_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="bf16"):
        Trainer(
            make_model(),
            _plain_config(precision="bf16", device="cpu"),
            make_data(8, 0),
            output_dir=tmp_path,
        )
    trainer = Trainer(make_model(), _plain_config(), make_data(8, 0), output_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        trainer.train(resume_from=tmp_path / "nothing")


def _sample_raw(synthetic_raw: Path) -> Path:
    """The real ml-1m sample when ../shared/data is present, else the synthetic raw folder."""
    from tests.conftest import SHARED_DATA

    real = SHARED_DATA / "ml-1m-sample"
    return real if (real / "users.dat").is_file() else synthetic_raw


@pytest.mark.slow
def test_flip_train_cli_end_to_end(tmp_path: Path, synthetic_raw: Path) -> None:
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from flip_core.config import FlipConfig
    from flip_core.data.build import build_splits_from_config, dataset_spec
    from flip_core.lake import ingest_dataset
    from flip_core.models import IDModel
    from flows.cli import app

    config = FlipConfig.model_validate({"paths": {"data_root": str(tmp_path / "data")}})
    raw = _sample_raw(synthetic_raw)
    ingest_dataset(raw, config.paths.data_root, dataset_spec(config), config.ingest)
    splits = build_splits_from_config(config).splits_dir
    runner = CliRunner()
    bad = runner.invoke(app, ["train", "-f", str(splits), "-o", str(tmp_path / "x"), "-m", "dcn"])
    assert bad.exit_code == 2 and "unknown model 'dcn'" in bad.output
    args = ["train", "-f", str(splits), "-o", str(tmp_path / "run"), "-m", "deepfm", "--seed", "3"]
    sets = ["training.epochs=2", "training.num_threads=1", "training.batch_size=256"]
    result = runner.invoke(app, [*args, *[x for s in sets for x in ("--set", s)]])
    assert result.exit_code == 0, result.output
    assert "deepfm seed 3: valid AUC" in result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["valid"]["valid_auc"] > 0.55  # learnable signal in both real and synthetic data
    assert 0.0 < metrics["test"]["test_logloss"] < 1.0
    test_rows = pq.read_metadata(splits / "splits" / "test.parquet").num_rows
    assert metrics["test"]["test_warm_rows"] + metrics["test"]["test_cold_rows"] == test_rows
    model = IDModel.from_pretrained(tmp_path / "run" / "model")
    assert model.name == "deepfm"
    assert (tmp_path / "run" / "model" / "feature_map.json").is_file()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.usefixtures("prefect_api")
def test_train_id_model_task_trains_then_hits_the_cache(
    tmp_path: Path, synthetic_raw: Path
) -> None:
    from prefect import flow

    from flip_core.config import load_config
    from flip_core.data.build import build_splits_from_config, dataset_spec
    from flip_core.lake import ingest_dataset
    from flip_core.models import IDModel
    from tasks.train import train_id_model

    config = load_config(
        None,
        [
            f"paths.data_root={tmp_path / 'data'}",
            "training.epochs=1",
            "training.batch_size=256",
            "training.num_threads=1",
            "training.progress=false",
        ],
    )
    ingest_dataset(synthetic_raw, config.paths.data_root, dataset_spec(config), config.ingest)
    splits = build_splits_from_config(config).splits_dir

    @flow
    def twice() -> tuple[Any, Any]:
        first = train_id_model(config, splits, "wide_deep", 1)
        second = train_id_model(config, splits, "wide_deep", 1)
        return first, second

    first, second = twice()
    assert first == second  # the second call is served from the content cache
    assert first.backbone == "wide_deep" and first.seed == 1
    assert first.valid_auc > 0.55 and 0.0 < first.test_logloss < 1.0
    assert IDModel.from_pretrained(first.model_dir).name == "wide_deep"
    assert json.loads(first.metrics_path.read_text())["test"]["test_auc"] == first.test_auc
