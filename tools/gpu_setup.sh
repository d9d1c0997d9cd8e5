# Source this on the lent GPU machine (no network): installs the carried wheels (.whl/, built by the lead:
# nbdev 2 + execnb<0.2 + fastcore<2 + ipython for the notebook runner, datasets, fastprogress, ipywidgets, and the
# pure-Python mamba-ssm wheel) into /tmp/site and makes the package importable without touching the image's torch.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
python3 - <<'PY'
import torch, triton, sys
print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')
PY
