#!/bin/sh
# FLIP paper-scale experiment on one GPU (bf16): full encoder, pretraining on all train rows,
# FLIP / FLIP_PLM / PLM-only / FLIP_ID / control / scratch / ID-only, one results file.
#
#   benchmarks/gpu_run.sh PACK_DIR OUT_DIR [options of benchmarks/gpu_flip.py]
#
# Needs Python 3.11 and torch only. PACK_DIR comes from benchmarks/gpu_pack.py (data.pt.gz +
# encoder.pt, < 64 MiB); the results land in OUT_DIR/flip_gpu_results.json. On a CPU (tests,
# dry runs) add e.g. --device cpu --max-steps 3.
set -eu
if [ $# -lt 2 ]; then
  echo "usage: $0 PACK_DIR OUT_DIR [gpu_flip.py options]" >&2
  exit 2
fi
PACK=$1
OUT=$2
shift 2
PY=${PYTHON:-python3}
"$PY" -c 'import sys, torch; assert sys.version_info >= (3, 11), sys.version' || {
  echo "error: needs Python >= 3.11 with torch" >&2
  exit 2
}
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
exec "$PY" "$(dirname "$0")/gpu_flip.py" --pack "$PACK" --out "$OUT" "$@"
