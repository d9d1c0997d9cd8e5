#!/usr/bin/env bash
# Build .whl/ on a CPU machine with the package index, for a GPU machine without network access (Python 3.12, its own
# CUDA torch and triton): the notebook runner (nbdev 2, execnb, fastcore, ipython), datasets, ipywidgets, mamba-ssm and
# titans-pytorch. Carry .whl/ to the GPU machine and `source tools/gpu_setup.sh` there (tools/README.md).
# mamba-ssm has no wheel on the index; its setup.py imports torch and needs `wheel`, so it is built in a throwaway
# venv that sees this Python's packages; torch is installed into that venv only if this Python lacks it: TORCH (default
# `torch`) from TORCH_INDEX if set (e.g. the CPU wheel index the README names; plain `torch` is a CUDA build of GBs).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
venv="$tmp/venv"
python3 -m venv --system-site-packages "$venv"
py="$venv/bin/python"
"$py" -m pip install -q wheel setuptools packaging
"$py" -c 'import torch' 2>/dev/null ||
  "$py" -m pip install -q "${TORCH:-torch}" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
"$py" -m pip download -q "${plat[@]}" -d "$tmp/dl" "nbdev==2.4.14" "fastcore<2" "execnb<0.2" ipython datasets ipywidgets
# keep only what the GPU image lacks (its own torch, numpy, pandas, pyarrow, huggingface-hub, ... stay)
for p in nbdev fastcore execnb ipython ipython_pygments_lexers jedi parso pexpect ptyprocess prompt_toolkit wcwidth \
         stack_data asttokens executing pure_eval traitlets matplotlib_inline astunparse ghapi watchdog datasets dill \
         multiprocess ipywidgets comm jupyterlab_widgets widgetsnbextension; do cp "$tmp/dl/${p}"-*.whl .whl/; done
# mamba-ssm as a pure-Python wheel: its Triton SSD kernels need no compiled extension
MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE "$py" -m pip wheel -q --no-deps --no-build-isolation \
  mamba-ssm==2.3.2.post1 -w .whl
# titans-pytorch and its pure-Python dependencies, for the memory benchmark's peer comparison
"$py" -m pip download -q --no-deps "${plat[@]}" -d .whl titans-pytorch==0.5.5 accelerated-scan==0.3.1 \
  assoc-scan==0.0.6 axial-positional-embedding==0.3.12 einx==0.4.3 frozendict==2.5.1 hyper-connections==0.4.11 \
  loguru==0.7.3 pyvers==0.2.3 rotary-embedding-torch==0.9.1 tensordict==0.15.3 torch-einops-utils==0.2.0 \
  x-transformers==2.31.10
ls .whl | grep -q '^mamba_ssm-.*-none-any\.whl$' ||
  { echo 'mamba-ssm did not build as a pure-Python wheel' >&2; exit 1; }
du -sh .whl
