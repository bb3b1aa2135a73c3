#!/usr/bin/env bash
# One prepared GPU measurement (issue 15): samples/s, MFU, peak memory and the SDPA kernel per
# regularizer vs transformers.Trainer, bf16, BERT-base-sized (random weights) and MiniLM.
# Under 8 minutes on one H100/H200 (the timeout below stops it at 7.5). Arguments go to
# benchmarks/gpu_bench.py (--dry: the CPU path with a tiny model, for tests; --json FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-.venv/bin/python}"
exec timeout 450 "$PY" benchmarks/gpu_bench.py "$@"
