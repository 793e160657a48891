"""The GPU script's CPU dry run: pack a tiny feature folder, run `benchmarks/gpu_run.sh` on it
(Python + torch only), and check the pieces it rebuilds against the project's own."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from transformers import BertModel

from flip_core.config import load_config
from flip_core.data.build import build_splits_from_config, render_from_config
from tests.features_support import ingest

REPO = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def packed(
    synthetic_raw: Path, tiny_plm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gpu-pack")
    cfg = load_config(None, [f"paths.data_root={root}", f"plm.name={tiny_plm_dir}"])
    splits = build_splits_from_config(cfg, ingest(synthetic_raw, root))
    features = render_from_config(cfg, splits.splits_dir).features_dir
    _module("gpu_pack").pack(features, root / "pack", str(tiny_plm_dir), None)
    return features, root / "pack"


def test_the_script_needs_only_torch_and_the_standard_library() -> None:
    tree = ast.parse((REPO / "benchmarks" / "gpu_flip.py").read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) == {"torch"}


def test_rebuilt_prompts_and_encoder_match_the_project(
    packed: tuple[Path, Path], tiny_plm_dir: Path
) -> None:
    features, pack = packed
    gpu = _module("gpu_flip")
    splits, _, encoder = gpu.load_pack(pack, torch.device("cpu"))
    for name in ("train", "test"):
        table = pq.read_table(features / f"{name}.parquet", columns=["input_ids", "token_spans"])
        stored = table["input_ids"].to_pylist()
        split = splits[name]
        assert split.lengths.tolist() == [len(t) for t in stored]
        rebuilt = [
            row[:n] for row, n in zip(split.tokens.tolist(), split.lengths.tolist(), strict=True)
        ]
        assert rebuilt == stored
        spans = np.array(table["token_spans"].to_pylist()).reshape(split.spans.shape)
        assert np.array_equal(split.spans.numpy(), spans)
    hf = BertModel.from_pretrained(tiny_plm_dir, add_pooling_layer=False).eval()
    ours = gpu.Bert(encoder["config"])
    ours.load_state_dict({k: v.float() for k, v in encoder["state_dict"].items()})
    ours.eval()
    batch = splits["test"].batch(torch.arange(6))
    with torch.no_grad():
        want = hf(input_ids=batch["tokens"], attention_mask=batch["mask"].long()).last_hidden_state
        got = ours(batch["tokens"], batch["mask"])
    real = batch["mask"]
    torch.testing.assert_close(got[real], want[real], atol=2e-3, rtol=2e-3)  # fp16 weights


def test_gpu_run_dry_run_on_cpu(packed: tuple[Path, Path], tmp_path: Path) -> None:
    _, pack = packed
    out = tmp_path / "out"
    cmd = [
        "sh", str(REPO / "benchmarks" / "gpu_run.sh"), str(pack), str(out),
        "--device", "cpu", "--max-steps", "4", "--seeds", "0,1", "--plm-seeds", "0",
        "--pretrain-rows", "256", "--plm-rows", "128", "--pretrain-batch", "32",
        "--plm-batch", "32", "--id-batch", "256", "--eval-rows", "300", "--log-every", "1",
        "--threads", "1",
    ]  # fmt: skip
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "flip_gpu_results.json").read_text(encoding="utf-8"))
    arms = [(r["arm"], r["seed"]) for r in result["runs"]]
    assert arms == [
        ("flip_id", 0), ("flip_id", 1), ("control", 0), ("control", 1), ("scratch", 0),
        ("scratch", 1), ("flip", 0), ("flip_plm", 0), ("plm_only", 0), ("id_only", 0),
    ]  # fmt: skip
    assert set(result["timings"]) >= {"pretrain_flip_s", "pretrain_control_s"}
    for run in result["runs"]:
        assert 0.0 <= run["test_auc"] <= 1.0 and len(run["test_probs"]) == 300
        if run["arm"] in ("flip", "flip_plm", "plm_only", "id_only"):
            assert run["train_rows"] == 128  # the PLM side's random sample
    flip = next(r for r in result["runs"] if r["arm"] == "flip")
    assert len(flip["fusion_trajectory"]) == 4 and 0 < flip["fusion_a"] < 1
    assert len(result["test_labels"]) == len(result["test_users"]) == 300
    assert {k for k in result["pretrain_logs"]["flip"][0]} >= {"mlm", "mtm", "icl", "loss"}

    report = _module("gpu_report")
    evidence = report.gpu_evidence(result, draws=20)
    for key in ("flip_id_minus_scratch", "flip_id_minus_control", "flip_minus_plm_only"):
        assert evidence[key]["low"] <= evidence[key]["high"]
    assert evidence["arms"]["flip_id"]["seeds"] == [0, 1]
    markdown = report.render(evidence, "python benchmarks/gpu_report.py x.json")
    assert "| flip_id_minus_control |" in markdown
