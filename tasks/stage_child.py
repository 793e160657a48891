"""The torchrun child of a training task (`tasks.launch`): every rank runs one FLIP stage.

    python -m tasks.stage_child pretrain|finetune --config C --features F --out O
        --summary S --events E [--variant V] [--pretrained P] [--resume R]

The config file is the task's resolved config, written once by the task. Every rank records the
trainer's callback events into `--events` (only rank 0 writes) and rank 0 writes `--summary`;
the task reads both back. Nothing here talks to Prefect or MLflow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from flip_core.config import VARIANTS, load_config
from flip_core.data.loaders import check_feature_folder
from flip_core.flip_stages import StageResult, run_finetuning, run_pretraining
from flip_core.training import distributed as ddp
from flip_core.training.events import EventRecorder, StartStep


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tasks.stage_child")
    parser.add_argument("stage", choices=("pretrain", "finetune"))
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--summary", type=Path, required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--variant", choices=VARIANTS, default="flip_id")
    parser.add_argument("--pretrained", type=Path)
    parser.add_argument("--resume")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stage on this rank; returns the exit status."""
    args = _parser().parse_args(argv)
    check_feature_folder(args.features)
    config = load_config(args.config, [])
    start = StartStep(lambda text: print(text, flush=True))
    if os.environ.get("RANK", "0") == "0":  # before the process group exists
        args.events.unlink(missing_ok=True)  # this run's events only
    callbacks = [start, EventRecorder(args.events)]
    result: StageResult
    if args.stage == "pretrain":
        result = run_pretraining(config, args.features, args.out, callbacks, resume=args.resume)
    else:
        result = run_finetuning(
            config, args.features, args.out, args.variant, args.pretrained, callbacks, args.resume
        )
    if ddp.is_main_process():
        summary = {
            "model_dir": str(result.model_dir),
            "metrics": result.metrics,
            "global_step": result.train.global_step,
            "start_step": start.step,
            "world_size": ddp.world_size(),
        }
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if ddp.world_size() > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
