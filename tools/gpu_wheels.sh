#!/usr/bin/env bash
# Build .whl/ here (CPU machine, with the registries) for the lent GPU machine (Python 3.12, no network), which lacks
# nbdev 2 + execnb<0.2 + fastcore<2 + ipython (notebook runner), datasets, ipywidgets, mamba-ssm and titans-pytorch.
# Then every device call: carry [".whl"] and start with `source tools/gpu_setup.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl /tmp/gpuwhl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
plat=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
python3 -m pip download -q "${plat[@]}" -d /tmp/gpuwhl "nbdev==2.4.14" "fastcore<2" "execnb<0.2" ipython datasets ipywidgets
# keep only what the GPU image lacks (its own torch, numpy, pandas, pyarrow, huggingface-hub, ... stay)
for p in nbdev fastcore execnb ipython ipython_pygments_lexers jedi parso pexpect ptyprocess prompt_toolkit wcwidth stack_data \
         asttokens executing pure_eval traitlets matplotlib_inline astunparse ghapi watchdog datasets dill multiprocess \
         ipywidgets comm jupyterlab_widgets widgetsnbextension; do cp /tmp/gpuwhl/${p}-*.whl .whl/; done
# mamba-ssm as a pure-Python wheel (its Triton SSD kernels need no compiled extension; see TOOLCHAIN.md)
MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE python3 -m pip wheel -q --no-deps --no-build-isolation mamba-ssm==2.3.2.post1 -w .whl
# titans-pytorch and its pure-Python dependencies, for the memory benchmark's peer comparison
python3 -m pip download -q --no-deps "${plat[@]}" -d .whl titans-pytorch==0.5.5 accelerated-scan==0.3.1 assoc-scan==0.0.6 \
  axial-positional-embedding==0.3.12 einx==0.4.3 frozendict==2.5.1 hyper-connections==0.4.11 loguru==0.7.3 pyvers==0.2.3 \
  rotary-embedding-torch==0.9.1 tensordict==0.15.3 torch-einops-utils==0.2.0 x-transformers==2.31.10
du -sh .whl
