#!/usr/bin/env bash
# Snakemake runs this in envs/augbench.yaml's environment once it is created: faiss with GPU
# support in place of the faiss-cpu that pyproject.toml brings (this machine and CI keep that
# one). Both install the same `faiss` module, so one must go before the other comes.
# `faiss-gpu` is Meta's own GPU wheel on PyPI (CUDA 12 runtime from PyPI's nvidia-* packages);
# on a node without a GPU it searches on the CPU (augbench.search). See docs/cluster.md.
set -euo pipefail
python -m pip uninstall --yes faiss-cpu
python -m pip install "faiss-gpu>=1.15"
