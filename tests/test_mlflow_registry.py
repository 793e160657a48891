"""Registry against a real `mlflow server`: log, register, alias, gate, load by alias, predict."""

from __future__ import annotations

import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from mlflow.tracking import MlflowClient

from flip_core.config import FlipConfig, GateConfig, load_config
from flip_core.data.feature_map import OOV_ID, FeatureMap
from flip_core.scoring import RawRowScorer, example_rows, field_values
from tasks import registry, tracking
from tasks.pyfunc import OUTPUT_COLUMN
from tests.ctr_models import TrainedModel, raw_source, read_raw_rows, train_flip_id
from tests.support.encoding import encode_rows

GATE = GateConfig(min_valid_auc_gain=0.01, max_test_logloss_increase=0.005)


def _cand(
    auc: float, logloss: float, protocol: str = "p1", dataset: str | None = None
) -> registry.Candidate:
    return registry.Candidate(protocol, auc, logloss, version="1", dataset=dataset)


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "why"),
    [
        (_cand(0.70, 0.60), None, True, "no champion yet"),
        (_cand(0.705, 0.50), _cand(0.70, 0.60), False, "AUC gain below margin"),
        (_cand(0.72, 0.606), _cand(0.70, 0.60), False, "logloss worse beyond tolerance"),
        (_cand(0.72, 0.604), _cand(0.70, 0.60), True, "promoted"),
        (_cand(0.72, 0.50), _cand(0.70, 0.60), True, "promoted"),
        (_cand(0.90, 0.10, "p2"), _cand(0.70, 0.60), False, "not comparable"),
        (
            _cand(0.9, 0.1, dataset="ml-1m"),
            _cand(0.7, 0.6, dataset="synth-ml-1m"),
            False,
            "dataset",
        ),
        (_cand(0.9, 0.1, dataset="ml-1m"), _cand(0.7, 0.6), False, "not comparable"),
        (_cand(0.9, 0.1, dataset="ml-1m"), _cand(0.7, 0.6, dataset="ml-1m"), True, "promoted"),
    ],
)
def test_gate_decision(
    challenger: registry.Candidate,
    champion: registry.Candidate | None,
    promote: bool,
    why: str,
) -> None:
    decision = registry.gate_decision(challenger, champion, GATE)
    assert decision.promote is promote
    assert why in decision.reason


def test_gate_across_protocols_when_allowed() -> None:
    gate = GATE.model_copy(update={"same_protocol_only": False})
    assert registry.gate_decision(_cand(0.9, 0.1, "p2"), _cand(0.7, 0.6), gate).promote
    other = _cand(0.9, 0.1, "p2", dataset="a")
    assert not registry.gate_decision(other, _cand(0.7, 0.6, dataset="b"), gate).promote


def test_models_of_other_datasets_or_protocols_are_never_compared() -> None:
    """The gate rescores and compares only a champion of the same dataset and protocol."""
    ml, synth = _cand(0.9, 0.1, dataset="ml-1m"), _cand(0.7, 0.6, dataset="synth-ml-1m")
    assert not registry.comparable(ml, synth, GATE)
    assert not registry.gate_decision(ml, synth, GATE).promote
    assert not registry.comparable(_cand(0.9, 0.1, "p2"), _cand(0.7, 0.6), GATE)
    assert registry.comparable(ml, _cand(0.7, 0.6, dataset="ml-1m"), GATE)


def test_model_metrics_are_evaluation_metrics_only() -> None:
    metrics = {
        "valid_auc": 0.7, "valid_logloss": 0.6, "test_auc": 0.71, "test_logloss": 0.59,
        "test_cold_auc": 0.6, "valid_warm_logloss": 0.5, "step": 40.0, "valid_loss": 0.6,
        "valid_rows": 100.0, "test_cold_rows": 7.0, "best_valid_auc": 0.7, "samples_per_s": 9.0,
    }  # fmt: skip
    assert set(registry.model_metrics(metrics)) == {
        "valid_auc", "valid_logloss", "test_auc", "test_logloss", "test_cold_auc",
        "valid_warm_logloss",
    }  # fmt: skip


@pytest.fixture(scope="module")
def rows(synthetic_raw: Path) -> pd.DataFrame:
    return read_raw_rows(raw_source(synthetic_raw))


@pytest.fixture(scope="module")
def models(rows: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> list[TrainedModel]:
    """A trained FLIP_ID, an untrained one (worse), and one trained longer."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("flip-id")
    return [
        train_flip_id(rows, root / "trained", steps=100, seed=0),
        train_flip_id(rows, root / "untrained", steps=0, seed=1),
        train_flip_id(rows, root / "longer", steps=200, seed=2),
    ]


def _config(uri: str) -> FlipConfig:
    tag = uuid.uuid4().hex[:8]
    return load_config(
        overrides=[
            f"mlflow.tracking_uri={uri}",
            f"mlflow.experiment=registry-{tag}",
            f"mlflow.registered_model=flip-{tag}",
            "gate.min_valid_auc_gain=0.001",
            "gate.max_test_logloss_increase=0.01",
        ]
    )


def _publish(
    cfg: FlipConfig,
    model: TrainedModel,
    name: str,
    dataset: str | None = None,
    splits_dir: Path | None = None,
) -> registry.Publication:
    with tracking.tracked_run(cfg, name, flow_run_id=f"flow-{name}") as run:
        metrics = {"valid_auc": model.valid_auc, "test_logloss": model.test_logloss}
        run.log_metrics(metrics)
        return registry.publish_model(
            cfg,
            run.run_id,
            model.model_dir,
            metrics,
            "p1",
            "hash-1",
            dataset=dataset,
            splits_dir=splits_dir,
        )


def _raw_splits(out: Path, fmap: FeatureMap, rows: pd.DataFrame, drop: str = "") -> Path:
    """A split build's `splits/{valid,test}.parquet` (raw field values + label), as the features
    stage writes them: the rows the gate rescores models on (`drop`: a field left out)."""
    n = len(rows)
    (out / "splits").mkdir(parents=True)
    for split, frame in (("valid", rows[n * 8 // 10 : n * 9 // 10]), ("test", rows[n * 9 // 10 :])):
        raw = field_values(fmap, frame)
        columns = {f"{name}_raw": values for name, values in raw.items() if name != drop}
        columns["label"] = pa.array(frame["label"].to_numpy())
        pq.write_table(pa.table(columns), out / "splits" / f"{split}.parquet")
    return out


def _unseen_rows(rows: pd.DataFrame, model_dir: Path) -> pd.DataFrame:
    """Raw rows with the model's input columns (those of its input example); 3 of them unseen."""
    columns = list(example_rows(FeatureMap.load(model_dir)).columns)
    unseen = rows.tail(3)[columns].copy()
    unseen["user_id"] = [10_000_001, 10_000_002, 10_000_003]
    unseen["movie_id"] = [20_000_001, 20_000_002, 20_000_003]
    unseen["zip"] = ["zz-1", "zz-2", "zz-3"]
    return pd.concat([rows.head(5)[columns], unseen], ignore_index=True)


@pytest.mark.integration
@pytest.mark.slow
def test_register_alias_gate_load_and_predict(
    mlflow_server: str, models: list[TrainedModel], rows: pd.DataFrame
) -> None:
    trained, untrained, longer = models
    assert trained.valid_auc > untrained.valid_auc + 0.05  # the trained model really is better
    cfg = _config(mlflow_server)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    name = cfg.mlflow.registered_model

    first = _publish(cfg, trained, "trained")
    assert first.champion and first.reason == "no champion yet"
    assert client.get_model_version_by_alias(name, "champion").version == first.version

    worse = _publish(cfg, untrained, "untrained")
    assert not worse.champion
    assert client.get_model_version_by_alias(name, "champion").version == first.version
    assert client.get_model_version_by_alias(name, "challenger").version == worse.version
    version = client.get_model_version(name, worse.version)
    assert version.tags["gate.decision"] == "rejected"
    assert version.tags["protocol"] == "p1" and version.tags["data_hash"] == "hash-1"
    assert version.tags["code_version"]
    assert float(version.tags["valid_auc"]) == pytest.approx(untrained.valid_auc, abs=1e-6)
    assert version.run_id is not None
    run = client.get_run(version.run_id)
    assert "AUC gain below margin" in run.data.tags["gate.reason"]
    assert run.info.status == "FINISHED"

    third = _publish(cfg, longer, "longer")
    expected = registry.gate_decision(
        registry.Candidate("p1", longer.valid_auc, longer.test_logloss),
        registry.Candidate("p1", trained.valid_auc, trained.test_logloss, first.version),
        cfg.gate,
    )
    assert third.champion is expected.promote
    live = client.get_model_version_by_alias(name, "champion").version
    assert live == (third.version if expected.promote else first.version)

    # load by alias and score raw rows, unseen ids included
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert loaded.metadata.get_input_schema().input_names()[:2] == ["user_id", "gender"]
    assert loaded.metadata.saved_input_example_info is not None
    live_dir = (longer if expected.promote else trained).model_dir
    frame = _unseen_rows(rows, live_dir)
    out = loaded.predict(frame)
    probs = out[OUTPUT_COLUMN].to_numpy()
    assert probs.shape == (len(frame),)
    assert np.all((probs > 0) & (probs < 1))
    local = RawRowScorer.from_pretrained(live_dir)
    np.testing.assert_allclose(probs, local.predict_proba(frame), rtol=1e-6)
    fmap = FeatureMap.load(live_dir)
    ids = encode_rows(fmap, frame)
    assert (ids[-3:, fmap.field_names.index("user_id")] == OOV_ID).all()
    assert (ids[-3:, fmap.field_names.index("movie_id")] == OOV_ID).all()


@pytest.mark.integration
@pytest.mark.slow
def test_a_model_of_other_data_never_becomes_champion(
    mlflow_server: str, models: list[TrainedModel]
) -> None:
    trained, untrained, longer = models
    cfg = _config(mlflow_server)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    name = cfg.mlflow.registered_model

    # the registered model is created for the first model's dataset
    first = _publish(cfg, untrained, "real", dataset="ml-1m")
    assert first.champion
    assert client.get_registered_model(name).tags["dataset"] == "ml-1m"

    # a better model of other (synthetic) data is refused before anything is registered
    with pytest.raises(registry.RegistryDatasetError, match="holds models of dataset 'ml-1m'"):
        _publish(cfg, trained, "synthetic", dataset="synth-ml-1m")
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    assert dict(client.get_registered_model(name).aliases) == {"champion": "1", "challenger": "1"}

    # a champion of another dataset (a mislabelled or legacy version) is never replaced silently
    client.set_model_version_tag(name, "1", "dataset", "other-data")
    refused = _publish(cfg, longer, "real-2", dataset="ml-1m")
    assert not refused.champion
    assert "dataset 'other-data'" in refused.reason and "champion kept" in refused.reason
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version(name, refused.version).tags["gate.decision"] == "rejected"


@pytest.mark.integration
@pytest.mark.slow
def test_gate_rescores_the_champion_on_the_current_rows(
    mlflow_server: str, models: list[TrainedModel], rows: pd.DataFrame, tmp_path: Path
) -> None:
    """A champion whose stored metrics are stale (here: far too good) is compared on its fresh
    scores on the current valid/test rows; without them the stale numbers would keep it."""
    trained, untrained, longer = models
    cfg = _config(mlflow_server)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    name = cfg.mlflow.registered_model
    fmap = FeatureMap.load(trained.model_dir)
    current = _raw_splits(tmp_path / "build", fmap, rows)

    assert _publish(cfg, untrained, "old-champion").champion
    client.set_model_version_tag(name, "1", "valid_auc", "0.990000")  # stale: yesterday's data
    client.set_model_version_tag(name, "1", "test_logloss", "0.010000")
    fresh = _publish(cfg, trained, "challenger", splits_dir=current)
    assert fresh.champion, fresh.reason
    assert "champion on current rows" in fresh.reason
    assert "both rescored on the current rows" in fresh.reason
    assert "stored valid AUC 0.99000" in fresh.reason
    assert fresh.rescored_champion is not None and fresh.rescored_challenger is not None
    assert fresh.rescored_champion["valid_auc"] < fresh.rescored_challenger["valid_auc"] < 0.99
    assert client.get_model_version_by_alias(name, "champion").version == fresh.version

    # the same stale numbers, compared as stored (no current rows): the champion would stay
    client.set_model_version_tag(name, fresh.version, "valid_auc", "0.990000")
    stale = _publish(cfg, longer, "no-rows")
    assert not stale.champion and "champion on stored metrics" in stale.reason
    assert stale.rescored_champion is None

    # a champion that cannot be rescored (the rows lack a field it reads): stored metrics, and why
    lacking = _raw_splits(tmp_path / "lacking", fmap, rows, drop="zip")
    unscored = _publish(cfg, longer, "lacking", splits_dir=lacking)
    assert not unscored.champion
    assert f"champion v{fresh.version} could not be rescored" in unscored.reason
    assert "lacks the raw values of field(s) zip" in unscored.reason
    assert "champion on stored metrics" in unscored.reason


@pytest.mark.integration
@pytest.mark.slow
def test_version_has_model_card_and_evaluation_metric_tags(
    mlflow_server: str, models: list[TrainedModel]
) -> None:
    cfg = _config(mlflow_server)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    trained = models[0]
    metrics = {
        "valid_auc": trained.valid_auc, "test_logloss": trained.test_logloss, "test_auc": 0.7,
        "step": 100.0, "valid_loss": 0.6, "valid_rows": 500.0, "test_cold_rows": 12.0,
    }  # fmt: skip
    with tracking.tracked_run(cfg, "card", flow_run_id="flow-card") as run:
        result = registry.publish_model(
            cfg, run.run_id, trained.model_dir, metrics, "p1", "h", variant="flip_id"
        )
    version = client.get_model_version(cfg.mlflow.registered_model, result.version)
    assert version.tags["dataset"] == "ml-1m" and version.tags["variant"] == "flip_id"
    assert version.tags["protocol"] == "p1" and len(version.tags["dataset_spec_hash"]) == 64
    assert {"valid_auc", "test_logloss", "test_auc"} <= set(version.tags)
    assert not {"step", "valid_loss", "valid_rows", "test_cold_rows"} & set(version.tags)
    card = version.description
    assert card is not None
    assert card.startswith(f"# Model card: {cfg.mlflow.registered_model} v{result.version}")
    assert "| valid_auc |" in card and "dataset: `ml-1m`" in card and "valid_rows" not in card
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert registry.MODEL_CARD in artifacts
    local = mlflow.artifacts.download_artifacts(
        run_id=run.run_id, artifact_path=registry.MODEL_CARD, tracking_uri=mlflow_server
    )
    assert Path(local).read_text(encoding="utf-8") == card


@pytest.mark.integration
@pytest.mark.slow
def test_a_registered_model_without_dataset_tag_is_not_adopted(
    mlflow_server: str, models: list[TrainedModel]
) -> None:
    cfg = _config(mlflow_server)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    name = cfg.mlflow.registered_model
    first = _publish(cfg, models[0], "legacy")
    client.delete_registered_model_tag(name, "dataset")  # as made before datasets were tagged
    with pytest.raises(registry.RegistryDatasetError, match=f"in {mlflow_server} has versions"):
        _publish(cfg, models[2], "after-upgrade")
    client.set_registered_model_tag(name, "dataset", "ml-1m")  # what the error says to do
    assert _publish(cfg, models[2], "after-tagging").version != first.version


@pytest.mark.integration
@pytest.mark.slow
def test_publish_is_idempotent_for_a_run(mlflow_server: str, models: list[TrainedModel]) -> None:
    cfg = _config(mlflow_server)
    trained = models[0]
    metrics = {"valid_auc": trained.valid_auc, "test_logloss": trained.test_logloss}
    with tracking.tracked_run(cfg, "retry", flow_run_id="flow-retry") as run:
        a = registry.publish_model(cfg, run.run_id, trained.model_dir, metrics, "p1", "h")
        b = registry.publish_model(cfg, run.run_id, trained.model_dir, metrics, "p1", "h")
    assert a.version == b.version
    with pytest.raises(ValueError, match="test_logloss"):
        registry.publish_model(cfg, run.run_id, trained.model_dir, {"valid_auc": 0.7}, "p1", "h")


def _write_split(path: Path, fmap: FeatureMap, frame: pd.DataFrame) -> None:
    ids = encode_rows(fmap, frame)
    table = {name: ids[:, j] for j, name in enumerate(fmap.field_names)}
    pd.DataFrame({**table, "label": frame["label"].to_numpy()}).to_parquet(path, index=False)


@pytest.mark.integration
@pytest.mark.slow
def test_trainer_logs_to_a_tracked_stage(
    mlflow_server: str, models: list[TrainedModel], rows: pd.DataFrame, tmp_path: Path
) -> None:
    """The real trainer with `MLflowCallback`: curves per objective, ROC/calibration from the
    per-row predictions finetuning writes, card."""
    from flip_core.data.collate import FlipCollate
    from flip_core.data.dataset import FeatureDataset
    from flip_core.flip_stages import write_predictions
    from flip_core.model_card import ModelCardInfo
    from flip_core.models.flip import FlipForCTR
    from flip_core.training import Trainer

    trained = models[0]
    fmap = FeatureMap.load(trained.model_dir)
    n = len(rows)
    splits = {"train": rows[: n * 8 // 10], "valid": rows[n * 8 // 10 : n * 9 // 10]}
    splits["test"] = rows[n * 9 // 10 :]
    for split, frame in splits.items():
        _write_split(tmp_path / f"{split}.parquet", fmap, frame)
    fmap.save(tmp_path / "feature_map.json")  # a feature folder: the datasets read its fields
    settings = {
        "epochs": 2, "max_steps": 30, "batch_size": 256, "log_every_steps": 5,
        "eval_every_steps": 10, "progress": False, "device": "cpu", "num_threads": 1,
    }  # fmt: skip
    cfg = _config(mlflow_server)
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update=settings)})
    model = FlipForCTR.from_pretrained(trained.model_dir)
    collate = FlipCollate(with_text=False)
    with tracking.tracked_stage(cfg, "finetune-flip_id", {"data_hash": "h"}) as (run, callback):
        trainer = Trainer(
            model,
            cfg.training,
            FeatureDataset(tmp_path / "train.parquet", with_text=False),
            FeatureDataset(tmp_path / "valid.parquet", with_text=False),
            output_dir=tmp_path / "out",
            collate_fn=collate,
            callbacks=[callback],
        )
        trainer.train()
        scored = {
            s: FeatureDataset(tmp_path / f"{s}.parquet", with_text=False) for s in ("valid", "test")
        }
        user_column = fmap.field_names.index("user_id")
        expected = write_predictions(trainer, scored, user_column, tmp_path / "predictions")
        metrics = tracking.log_predictions(run, tmp_path / "predictions")
        tracking.log_model_card(
            run, ModelCardInfo("flip", "flip_id", "p1", "h", tracking.code_version(), metrics)
        )
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    data = client.get_run(run.run_id)
    assert data.info.status == "FINISHED"
    assert len(client.get_metric_history(run.run_id, "train/loss")) >= 2
    assert len(client.get_metric_history(run.run_id, "valid/auc")) >= 2
    assert {"valid_auc", "valid_logloss", "test_auc", "test_logloss"} <= set(metrics)
    finite = {k: v for k, v in expected.items() if np.isfinite(v)}  # NaN AUC: one class only
    assert {"valid_auc", "test_auc", "valid_warm_rows"} <= set(finite)
    for key, value in finite.items():  # the same numbers the finetuning stage reports
        assert metrics[key] == pytest.approx(value, rel=1e-9), key
        assert data.data.metrics[key] == pytest.approx(value, rel=1e-9), key
    assert metrics["valid_warm_rows"] + metrics["valid_cold_rows"] == len(splits["valid"])
    plots = {f.path for f in client.list_artifacts(run.run_id, "plots")}
    assert {"plots/curve_loss.png", "plots/curve_auc.png", "plots/roc_test.png"} <= plots
    assert "plots/calibration_valid.png" in plots
