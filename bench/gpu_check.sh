#!/usr/bin/env bash
# Issue 21's GPU checks in one go, for a short GPU slot (about 15 minutes, the machine's start included):
#   bash bench/gpu_check.sh [MODE]        (MODE: reduce-overhead by default; results under $OUT or /tmp)
# 1. the batch-32 table of the six cores, raw eager / project eager / project with model.compile=MODE /
#    the book's loop (bench/gpu_check.py, rows in gpu_check.json);
# 2. the 100-step loss equality of model.compile=reduce-overhead against eager (tests/gpu/test_gpu.py).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
MODE="${1:-reduce-overhead}"
DEST="${OUT:-/tmp}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
date -u
timeout 420 python bench/gpu_check.py --mode "$MODE" --seconds 1 --repeats 2 --out "$DEST/gpu_check.json" \
  2>&1 | tee "$DEST/gpu_check.txt" | grep -v -i warn
timeout 240 python -m pytest -q -p no:cacheprovider tests/gpu/test_gpu.py -k reduce_overhead 2>&1 | tail -15 \
  | tee "$DEST/gpu_equality.txt"
