"""The benchmark flow: models x seeds on one protocol, table rewritten in place, reruns cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.benchmark import (
    BEGIN,
    END,
    REPO_ROOT,
    RunResult,
    aggregate,
    benchmark,
    benchmark_command,
    write_results,
)


def test_aggregate_and_write_keep_the_prose(tmp_path: Path):
    results = [
        RunResult(model="a", seed=0, metrics={"test_auc": 0.70, "test_logloss": 0.60}),
        RunResult(model="a", seed=1, metrics={"test_auc": 0.72, "test_logloss": 0.58}),
        RunResult(model="b", seed=0, metrics={"test_auc": 0.65, "test_logloss": 0.66}),
    ]
    rows = aggregate(results)
    assert [r["model"] for r in rows] == ["a", "b"]
    mean, std = rows[0]["test_auc"]
    assert mean == pytest.approx(0.71) and std == pytest.approx(0.0141421, rel=1e-4)
    assert rows[1]["test_auc"] == (pytest.approx(0.65), 0.0)

    path = tmp_path / "results.md"
    path.write_text("# Results\n\nWritten by people.\n", encoding="utf-8")
    write_results(path, "table one\n")
    write_results(path, "table two\n")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Results\n\nWritten by people.\n")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "table two" in text and "table one" not in text


@pytest.mark.usefixtures("prefect_api")
def test_benchmark_flow_trains_every_pair_and_reruns_from_cache(tmp_path: Path):
    results = tmp_path / "results.md"
    kwargs: dict[str, Any] = {
        "data_root": tmp_path / "data",
        "models": ["dcnv2", "deepfm"],
        "seeds": [0, 1],
        "results_path": results,
        "overrides": [
            "synth.enabled=true",
            "paths.dataset=configs/datasets/synth-ml-1m.yaml",
            "synth.users=60",
            "synth.items=40",
            "synth.events_per_user=20",
            "training.epochs=1",
            "training.batch_size=128",
        ],
    }
    rows = benchmark(**kwargs)
    assert [(r["model"], r["seeds"]) for r in rows] == [("dcnv2", 2), ("deepfm", 2)]
    for row in rows:
        auc, _ = row["test_auc"]
        logloss, _ = row["test_logloss"]
        assert 0.0 < auc < 1.0 and logloss > 0.0
    text = results.read_text(encoding="utf-8")
    assert "| dcnv2 | 2 |" in text and "| deepfm | 2 |" in text
    assert (
        "flip benchmark --dataset configs/datasets/synth-ml-1m.yaml --protocol ml1m-time-811 "
        "--models dcnv2,deepfm --seeds 0,1 --set synth.enabled=true --set synth.users=60" in text
    )

    state = benchmark(**kwargs, return_state=True)
    assert state.is_completed()
    assert state.result() == rows  # identical numbers: every pair came from the cache


@pytest.mark.usefixtures("prefect_api")
def test_benchmark_flow_runs_flip_variants_after_one_pretraining(
    tmp_path: Path, tiny_plm_dir: Path
):
    results = tmp_path / "results.md"
    rows = benchmark(
        data_root=tmp_path / "data",
        models=[],
        variants=["flip_id", "flip"],
        seeds=[0, 1],
        results_path=results,
        overrides=[
            "synth.enabled=true",
            "paths.dataset=configs/datasets/synth-ml-1m.yaml",
            "synth.users=40",
            "synth.items=30",
            "synth.events_per_user=15",
            f"plm.name={tiny_plm_dir}",
            f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            "training.epochs=1",
            "training.max_steps=3",
            "training.batch_size=64",
            "training.progress=false",
            "pretrain.mtm_num_negatives=8",
        ],
    )
    names = [(r["model"], r["seeds"]) for r in rows]
    assert names == [
        (f"FLIP flip_id (dcnv2, {tiny_plm_dir})", 2),
        (f"FLIP flip (dcnv2, {tiny_plm_dir})", 2),
    ]
    for row in rows:
        auc, _ = row["test_auc"]
        assert 0.0 < auc < 1.0
    pretrain_dirs = list((tmp_path / "data" / "work" / "pretrain").iterdir())
    assert len(pretrain_dirs) == 1  # one pretraining serves every variant and seed
    assert "--variants flip_id,flip" in results.read_text(encoding="utf-8")


@pytest.mark.usefixtures("prefect_api")
def test_benchmark_flow_writes_the_evidence_of_every_arm(tmp_path: Path, tiny_plm_dir: Path):
    """Arms x seeds after one FLIP and one control pretraining; evidence.json has the keys the
    results tables are rendered from, with intervals around the seed-mean differences."""
    import json

    from flows.evidence import BEGIN as EV_BEGIN
    from flows.evidence import END as EV_END
    from flows.evidence import render_evidence

    results = tmp_path / "results.md"
    results.write_text("# Results\n\nProse.\n", encoding="utf-8")
    arms = ["flip_id", "control", "scratch", "flip", "plm_only", "id_only"]
    benchmark(
        data_root=tmp_path / "data",
        models=[],
        variants=arms,
        seeds=[0, 1],
        results_path=results,
        overrides=[
            "synth.enabled=true",
            "paths.dataset=configs/datasets/synth-ml-1m.yaml",
            "synth.users=40",
            "synth.items=30",
            "synth.events_per_user=15",
            f"plm.name={tiny_plm_dir}",
            "plm.num_layers=1",
            f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            "training.epochs=1",
            "training.max_steps=3",
            "training.batch_size=64",
            "training.progress=false",
            "pretrain.mtm_num_negatives=8",
            "pretrain.max_rows=200",
            'benchmark.plm_side=["finetune.max_rows=120", "finetune.fusion_learning_rate=0.05"]',
            "benchmark.plm_side_seeds=[3]",
            "benchmark.bootstrap=50",
        ],
    )
    pretrain_dirs = list((tmp_path / "data" / "work" / "pretrain").iterdir())
    assert len(pretrain_dirs) == 2  # FLIP and the shuffled-text control, shared by all arms
    evidence = json.loads((tmp_path / "evidence.json").read_text(encoding="utf-8"))
    for key in (
        "flip_id_minus_scratch",
        "flip_id_minus_control",
        "flip_minus_plm_only",
        "flip_minus_id_only",
    ):
        d = evidence[key]
        assert d["low"] <= d["high"] and {"mean", "low", "high"} <= set(d)
        assert set(evidence["slices"][key]) == {"overall", "warm", "cold", "long_tail"}
    assert evidence["seeds"] == [0, 1] and evidence["plm_side_seeds"] == [3]
    assert evidence["pretrain_rows"] == 200 and evidence["plm_layers"] == 1
    assert evidence["plm_side_train_rows"] == 120
    assert evidence["arms"]["flip_id"]["seeds"] == [0, 1]
    assert evidence["arms"]["flip"]["seeds"] == [3]
    assert 0 < evidence["dcnv2_test_auc"] < 1  # from the scratch arm (no models were run)
    assert evidence["device"].startswith("cpu")
    text = results.read_text(encoding="utf-8")
    assert text.startswith("# Results\n\nProse.\n")
    assert BEGIN not in text  # arms alone leave the ID-model table alone
    block = text.split(EV_BEGIN, 1)[1].split(EV_END, 1)[0]
    assert block.strip() == render_evidence(evidence).strip()
    assert "--variants flip_id,control,scratch,flip,plm_only,id_only" in block


def test_the_recorded_command_has_no_machine_paths(tmp_path: Path):
    command = benchmark_command(
        REPO_ROOT / "configs/experiments/flip-evidence-cpu.yaml",
        tmp_path / "raw" / "ml-1m",
        "ml1m-time-811",
        [],
        [0, 1],
        [
            "plm.num_layers=1",
            f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            f"paths.data_root={tmp_path}",
            "paths.dataset=configs/datasets/ml-1m.yaml",  # recorded as --dataset
            "benchmark.plm_side=[a, b]",
        ],
        ["flip_id", "scratch"],
        dataset=Path("configs/datasets/ml-1m.yaml"),
    )
    assert command == (
        "flip benchmark --config configs/experiments/flip-evidence-cpu.yaml "
        "--dataset configs/datasets/ml-1m.yaml --raw-dir DATA/ml-1m --protocol ml1m-time-811 "
        "--models '' --seeds 0,1 --variants flip_id,scratch --set plm.num_layers=1 "
        "--set 'benchmark.plm_side=[a, b]'"
    )
    assert str(tmp_path) not in command
    outside = benchmark_command(tmp_path / "x.yaml", None, "p", ["dcnv2"], [0], None)
    assert outside == "flip benchmark --config CONFIG/x.yaml --protocol p --models dcnv2 --seeds 0"
    raw_by_set = benchmark_command(
        None, tmp_path / "ml-1m", "p", ["dcnv2"], [0], [f"paths.raw_dir={tmp_path}/ml-1m"]
    )
    assert raw_by_set == "flip benchmark --raw-dir DATA/ml-1m --protocol p --models dcnv2 --seeds 0"
