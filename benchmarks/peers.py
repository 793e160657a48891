"""Benchmark our DCNv2 against DeepCTR-Torch's DCN-M (DCNv2) on the same split and features.

The peer runs in its own virtual environment (never a project dependency)::

    python3 -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install torch==2.13.0 deepctr-torch requests pyarrow scikit-learn

    .venv/bin/python benchmarks/peers.py --features <feature folder> --peer-python \
        /tmp/peers-venv/bin/python --epochs 2 --threads 1

Both sides: the same parquet files (field ids from our FeatureMap, so identical features), 8
sparse fields with 16-wide embeddings, a 3-layer full-rank cross network in parallel with an MLP
(256, 128), dropout 0.1, Adam(lr 1e-3), no weight decay, batch 1024, the same epochs and torch
threads, the epoch with the best valid AUC kept, test AUC of that epoch reported.

Speed on a shared machine: the two sides run their epochs alternately (peer epoch 1, our epoch 1,
peer epoch 2, ...; the peer is a long-lived subprocess that trains one epoch per request), and
the whole comparison is repeated `--repeats` times, so a load swing hits both sides alike.
Samples/s counts training rows over wall-clock time spent in training epochs only (no
evaluation, no data loading from disk). `ratio` is the median over all (repeat, epoch) pairs of
our epoch's samples/s over the peer's epoch run just before it; `samples_per_s` and
`peer_samples_per_s` are totals over every repeat. The `cpu_` figures are the same over each
process's CPU time (not inflated while the process waits for a core on a loaded machine; ours
also counts the epoch's DataLoader setup and per-step callbacks). The last line printed is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
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
    parser.add_argument(
        "--repeats", type=int, default=3, help="Whole comparisons to run (median ratio)."
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/flip-peers"))
    parser.add_argument("--peer-worker", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- peer side: runs in the peer venv, imports only torch/deepctr_torch/pyarrow/sklearn ----------


def peer_worker(spec_path: Path) -> None:
    """Train DeepCTR-Torch DCN (matrix cross = DCNv2), one epoch per "epoch" line on stdin (one
    JSON line back each), then, on "finish" or end of input, the best epoch's test metrics."""
    import numpy as np
    import pyarrow.parquet as pq
    import torch
    from deepctr_torch.inputs import SparseFeat  # type: ignore[import-not-found]
    from deepctr_torch.models import DCN  # type: ignore[import-not-found]
    from sklearn.metrics import log_loss, roc_auc_score

    reply = sys.stdout
    sys.stdout = sys.stderr  # DeepCTR prints progress; keep stdout for the JSON replies
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
    import deepctr_torch  # type: ignore[import-not-found]

    best_auc, best_state = -1.0, None
    for line in sys.stdin:  # one request per line: "epoch" or "finish"
        if line.strip() == "finish":
            break
        start, cpu_start = time.perf_counter(), time.process_time()
        model.fit(x_tr, y_tr, batch_size=spec["batch_size"], epochs=1, verbose=0, shuffle=True)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        auc = float(roc_auc_score(y_va, model.predict(x_va, batch_size=4096).ravel()))
        if auc > best_auc:
            best_auc = auc
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        epoch = {
            "rows": len(y_tr),
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "valid_auc": auc,
        }
        reply.write(json.dumps(epoch) + "\n")
        reply.flush()
    assert best_state is not None
    model.load_state_dict(best_state)
    pred = model.predict(x_te, batch_size=4096).ravel()
    result = {
        "peer": f"deepctr-torch {deepctr_torch.__version__} DCN(matrix)",
        "valid_auc": best_auc,
        "test_auc": float(roc_auc_score(y_te, pred)),
        "test_logloss": float(log_loss(y_te, np.clip(pred, 1e-7, 1 - 1e-7))),
    }
    reply.write(json.dumps(result) + "\n")
    reply.flush()


class PeerProcess:
    """The peer worker as a subprocess that trains one epoch per `epoch()` call."""

    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        from flip_core.data.feature_map import FeatureMap
        from flip_core.training.id_training import locate_features

        data_dir, feature_map = locate_features(args.features)
        fmap = FeatureMap.load(feature_map)
        if fmap.field_names != FIELDS:
            raise SystemExit(f"unexpected fields {fmap.field_names}")
        out.mkdir(parents=True, exist_ok=True)
        spec_path = out / "peer_spec.json"
        spec = {
            "data_dir": str(data_dir),
            "vocab_sizes": fmap.vocab_sizes,
            "threads": args.threads,
            "batch_size": args.batch_size,
            "seed": args.seed,
        }
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        cmd = [args.peer_python, str(Path(__file__).resolve()), "--peer-worker", str(spec_path)]
        self.stderr = (out / "peer_stderr.txt").open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True
        )
        self.epochs: list[dict[str, float]] = []

    def _ask(self, request: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise SystemExit(f"peer failed (exit {self.proc.returncode}); see {self.stderr.name}")
        return dict(json.loads(line))

    def epoch(self) -> None:
        """Train the peer for one epoch (timed inside the worker)."""
        self.epochs.append(self._ask("epoch"))

    def finish(self) -> dict[str, Any]:
        """Test metrics of the peer's best epoch; ends the subprocess."""
        result = self._ask("finish")
        self.proc.wait()
        self.stderr.close()
        return result


# -- our side --------------------------------------------------------------------------------


def alternating_clock(peer: PeerProcess, epochs: int) -> Any:
    """A trainer callback that runs one peer epoch before each of our epochs and records our
    per-epoch training seconds and rows (our clock is stopped while the peer trains), plus our
    process CPU seconds from the end of the peer's epoch to our epoch's last step."""
    from flip_core.training.callbacks import TrainerCallback, TrainerState

    class Alternate(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.rows: list[int] = []
            self.cpu_seconds: list[float] = []
            self._seconds, self._rows = 0.0, 0
            self._cpu_start = self._cpu_last = 0.0

        def on_train_begin(self, state: TrainerState) -> None:
            peer.epoch()
            self._cpu_start = time.process_time()

        def on_step(self, state: TrainerState, logs: dict[str, float]) -> None:
            self._cpu_last = time.process_time()

        def on_epoch_end(self, state: TrainerState, metrics: dict[str, float]) -> None:
            self.seconds.append(state.train_seconds - self._seconds)
            self.rows.append(state.samples_seen - self._rows)
            self.cpu_seconds.append(self._cpu_last - self._cpu_start)
            self._seconds, self._rows = state.train_seconds, state.samples_seen
            if state.epoch < epochs:
                peer.epoch()
                self._cpu_start = time.process_time()

    return Alternate()


def run_pair(args: argparse.Namespace, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """One comparison: our DCNv2 through the production training path (`train_id_model`),
    its epochs alternating with the peer's."""
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
    peer = PeerProcess(args, out)
    clock = alternating_clock(peer, args.epochs)
    report = train_id_model(args.features, out / "ours", config, "dcnv2", args.seed, [clock])
    peer_result = peer.finish()
    ours = {
        "valid_auc": report.valid["valid_auc"],
        "test_auc": report.test["test_auc"],
        "test_logloss": report.test["test_logloss"],
        "epoch_seconds": clock.seconds,
        "epoch_rows": clock.rows,
        "epoch_cpu_seconds": clock.cpu_seconds,
    }
    peer_result["epoch_seconds"] = [e["seconds"] for e in peer.epochs]
    peer_result["epoch_cpu_seconds"] = [e["cpu_seconds"] for e in peer.epochs]
    peer_result["epoch_rows"] = [e["rows"] for e in peer.epochs]
    return ours, peer_result


Pair = tuple[dict[str, Any], dict[str, Any]]


def paired_rates(runs: list[Pair], key: str) -> tuple[list[float], float, float]:
    """Over `key` seconds (`epoch_seconds` or `epoch_cpu_seconds`): each (our epoch, the peer
    epoch before it) pair's ratio of samples/s, and our and the peer's total samples/s."""
    ratios: list[float] = []
    rows, seconds = [0, 0], [0.0, 0.0]
    for pair in runs:
        ours, peer = pair
        ratios += [
            (my_rows / mine) / (their_rows / theirs)
            for mine, my_rows, theirs, their_rows in zip(
                ours[key], ours["epoch_rows"], peer[key], peer["epoch_rows"], strict=True
            )
        ]
        for side, epochs in enumerate(pair):
            rows[side] += sum(epochs["epoch_rows"])
            seconds[side] += sum(epochs[key])
    return ratios, round(rows[0] / seconds[0], 1), round(rows[1] / seconds[1], 1)


def summarize(runs: list[Pair]) -> dict[str, Any]:
    """Median paired ratios (wall clock and CPU time), total samples/s per side, median AUCs."""
    wall, ours_rate, peer_rate = paired_rates(runs, "epoch_seconds")
    cpu, ours_cpu_rate, peer_cpu_rate = paired_rates(runs, "epoch_cpu_seconds")
    return {
        "benchmark": "peers",
        "peer": runs[0][1]["peer"],
        "auc": round(statistics.median(o["test_auc"] for o, _ in runs), 5),
        "peer_auc": round(statistics.median(p["test_auc"] for _, p in runs), 5),
        "samples_per_s": ours_rate,
        "peer_samples_per_s": peer_rate,
        "ratio": round(statistics.median(wall), 3),
        "ratio_min": round(min(wall), 3),
        "ratio_max": round(max(wall), 3),
        "cpu_samples_per_s": ours_cpu_rate,
        "peer_cpu_samples_per_s": peer_cpu_rate,
        "cpu_ratio": round(statistics.median(cpu), 3),
        "pairs": len(wall),
    }


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
    if args.repeats < 1 or args.epochs < 1:
        raise SystemExit("--repeats and --epochs must be at least 1")
    runs = []
    for rep in range(args.repeats):
        ours, peer = run_pair(args, args.out / f"repeat-{rep}")
        print(f"repeat {rep} ours: {json.dumps(ours)}")
        print(f"repeat {rep} peer: {json.dumps(peer)}")
        runs.append((ours, peer))
    summary = summarize(runs)
    print(
        f"AUC target (ours >= peer - 0.001): {summary['auc'] >= summary['peer_auc'] - 0.001}; "
        f"speed target (median ratio >= 2): {summary['ratio'] >= 2.0}"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
