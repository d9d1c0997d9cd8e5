# Source this on the GPU machine (no network needed), from the repository root: installs the wheels that
# tools/gpu_wheels.sh put in .whl/ (the notebook runner, datasets, ipywidgets, mamba-ssm, titans-pytorch) into
# /tmp/site without touching the machine's own torch and triton, and makes the package importable from the tree.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || return 1
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
python3 - <<'PY'
import torch, triton
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
print('torch', torch.__version__, 'triton', triton.__version__, gpu)
PY
