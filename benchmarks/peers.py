"""Benchmark our DCNv2 against DeepCTR-Torch's DCN-M (DCNv2) on the same split and features.

The peer runs in its own virtual environment (never a project dependency)::

    python3 -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install torch==2.13.0 deepctr-torch requests pyarrow scikit-learn

    .venv/bin/python benchmarks/peers.py --features <feature folder> --peer-python \
        /tmp/peers-venv/bin/python --epochs 2 --threads 1

Both sides: the same parquet files (field ids from our FeatureMap, so identical features), 8
sparse fields with 16-wide embeddings, a 3-layer full-rank cross network in parallel with an MLP
(256, 128), dropout 0.1, Adam(lr 1e-3), no weight decay, batch 1024, the same epochs and torch
threads, the epoch with the best valid AUC kept, test AUC of that epoch reported. Samples/s
counts training rows over time spent in training epochs only (no evaluation). The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

FIELDS = ["user_id", "gender", "age", "occupation", "zip", "movie_id", "title", "genres"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, help="Folder with train/valid/test.parquet.")
    parser.add_argument("--peer-python", default="/tmp/peers-venv/bin/python")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/flip-peers"))
    parser.add_argument("--peer-worker", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- peer side: runs in the peer venv, imports only torch/deepctr_torch/pyarrow/sklearn ----------


def peer_worker(spec_path: Path) -> None:
    """Train DeepCTR-Torch DCN (matrix cross = DCNv2) and print one JSON line."""
    import numpy as np
    import pyarrow.parquet as pq
    import torch
    from deepctr_torch.inputs import SparseFeat
    from deepctr_torch.models import DCN
    from sklearn.metrics import log_loss, roc_auc_score

    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    np.random.seed(spec["seed"])

    def load(split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        table = pq.read_table(
            Path(spec["data_dir"]) / f"{split}.parquet", columns=[*FIELDS, "label"]
        )
        x = {f: table[f].to_numpy().astype(np.int64) for f in FIELDS}
        return x, table["label"].to_numpy().astype(np.float32)

    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (load(s) for s in ("train", "valid", "test"))
    columns = [
        SparseFeat(f, vocabulary_size=v, embedding_dim=16)
        for f, v in zip(FIELDS, spec["vocab_sizes"], strict=True)
    ]
    model = DCN(
        columns,
        columns,
        cross_num=3,
        cross_parameterization="matrix",
        dnn_hidden_units=(256, 128),
        l2_reg_linear=0.0,
        l2_reg_embedding=0.0,
        l2_reg_cross=0.0,
        l2_reg_dnn=0.0,
        dnn_dropout=0.1,
        seed=spec["seed"],
        task="binary",
        device="cpu",
    )
    model.compile(torch.optim.Adam(model.parameters(), lr=1e-3), "binary_crossentropy")
    best_auc, best_state, train_seconds = -1.0, None, 0.0
    for _ in range(spec["epochs"]):
        start = time.perf_counter()
        model.fit(x_tr, y_tr, batch_size=spec["batch_size"], epochs=1, verbose=0, shuffle=True)
        train_seconds += time.perf_counter() - start
        auc = roc_auc_score(y_va, model.predict(x_va, batch_size=4096).ravel())
        if auc > best_auc:
            best_auc = float(auc)
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    pred = model.predict(x_te, batch_size=4096).ravel()
    import deepctr_torch

    print(
        json.dumps(
            {
                "peer": f"deepctr-torch {deepctr_torch.__version__} DCN(matrix)",
                "valid_auc": best_auc,
                "test_auc": float(roc_auc_score(y_te, pred)),
                "test_logloss": float(log_loss(y_te, np.clip(pred, 1e-7, 1 - 1e-7))),
                "samples_per_s": len(y_tr) * spec["epochs"] / train_seconds,
            }
        )
    )


# -- our side --------------------------------------------------------------------------------


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    """Our DCNv2 through the production training path (`train_id_model`)."""
    from flip_core.config import load_config
    from flip_core.training.id_training import train_id_model

    overrides = [
        "id_model.embedding_dim=16",
        "id_model.hidden_units=[256, 128]",
        "id_model.dropout=0.1",
        "id_model.options={structure: parallel, cross_layers: 3}",
        f"training.batch_size={args.batch_size}",
        "training.learning_rate=0.001",
        "training.weight_decay=0.0",
        "training.grad_clip_norm=null",
        f"training.epochs={args.epochs}",
        "training.early_stopping_patience=0",
        f"training.num_threads={args.threads}",
        "training.progress=false",
        "training.checkpoint_every_steps=100000",
    ]
    config = load_config(None, overrides)
    report = train_id_model(args.features, args.out / "ours", config, "dcnv2", args.seed)
    return {
        "valid_auc": report.valid["valid_auc"],
        "test_auc": report.test["test_auc"],
        "test_logloss": report.test["test_logloss"],
        "samples_per_s": report.samples_per_s,
    }


def run_peer(args: argparse.Namespace) -> dict[str, Any]:
    """Start the peer worker in the peer venv and parse its JSON line."""
    from flip_core.data.feature_map import FeatureMap
    from flip_core.training.id_training import locate_features

    data_dir, feature_map = locate_features(args.features)
    fmap = FeatureMap.load(feature_map)
    if fmap.field_names != FIELDS:
        raise SystemExit(f"unexpected fields {fmap.field_names}")
    args.out.mkdir(parents=True, exist_ok=True)
    spec_path = args.out / "peer_spec.json"
    spec = {
        "data_dir": str(data_dir),
        "vocab_sizes": fmap.vocab_sizes,
        "epochs": args.epochs,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "seed": args.seed,
    }
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    cmd = [args.peer_python, str(Path(__file__).resolve()), "--peer-worker", str(spec_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"peer failed: {proc.stderr.strip().splitlines()[-1:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> None:
    """Run both sides, print a comparison and the JSON summary line."""
    args = parse_args(argv)
    if args.peer_worker is not None:
        peer_worker(args.peer_worker)
        return
    if args.features is None:
        raise SystemExit("--features is required")
    if not Path(args.peer_python).is_file():
        raise SystemExit(f"peer python {args.peer_python} not found; see the module docstring")
    peer = run_peer(args)
    ours = run_ours(args)
    ratio = ours["samples_per_s"] / peer["samples_per_s"]
    print(f"ours: {json.dumps(ours)}")
    print(f"peer: {json.dumps(peer)}")
    print(
        f"AUC target (ours >= peer - 0.001): {ours['test_auc'] >= peer['test_auc'] - 0.001}; "
        f"speed target (ratio >= 2): {ratio >= 2.0}"
    )
    summary = {
        "benchmark": "peers",
        "peer": peer["peer"],
        "auc": round(ours["test_auc"], 5),
        "peer_auc": round(peer["test_auc"], 5),
        "samples_per_s": round(ours["samples_per_s"], 1),
        "peer_samples_per_s": round(peer["samples_per_s"], 1),
        "ratio": round(ratio, 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
