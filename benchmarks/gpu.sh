#!/usr/bin/env bash
# GPU throughputs at the study's sizes (benchmarks/gpu.py), on a CUDA machine with the
# project installed (make .venv/.installed). Writes benchmarks/gpu-<card>.json and, from
# it, the 10% ImageNet preset's GPU hours on that card (benchmarks/gpu-<card>-cost.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
card=$($PYTHON -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_'))")
out=${1:-benchmarks/gpu-${card}.json}
HF_HUB_OFFLINE=1 $PYTHON benchmarks/gpu.py --out "$out"
echo "wrote $out"
$PYTHON benchmarks/cost_model.py --gpu "$out" --config configs/imagenet10.yaml > "${out%.json}-cost.md"
echo "wrote ${out%.json}-cost.md"
