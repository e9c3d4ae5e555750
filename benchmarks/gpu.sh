#!/usr/bin/env bash
# GPU check: SD-1.5/SD-2.1-sized random weights at 512x512 (fp16, bf16): ours vs the faithful official
# step (alternated), peak memory default and low-memory, a 200-step run, and fp32 CPU-vs-CUDA
# agreement of one guided step. Writes gpu-report.json and gpu-report.md into OUT (default: .).
# Needs no network (nothing is downloaded); about 4-8 minutes on one GPU.
#
#   benchmarks/gpu.sh [OUT]             # on a machine with a CUDA GPU
#   benchmarks/gpu.sh --dry-run [OUT]   # CPU smoke test with a tiny model (seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# the interpreter: $PYTHON, else the project's .venv (what `make demo` builds), else python3 on the PATH
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY="$(command -v python3 || command -v python || echo python3)"
fi
DRY=()
if [[ "${1:-}" == "--dry-run" ]]; then DRY=(--dry-run); shift; fi
OUT="${1:-.}"
exec timeout 480 "$PY" benchmarks/gpu_report.py "${DRY[@]}" --out "$OUT"
