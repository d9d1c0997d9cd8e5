"""mamba-ssm's Triton SSD kernels with `seq_idx` (packed documents), run in Triton's interpreter on a CPU, against the
package's reference `ssd_chunked(seq_idx=)`: outputs, final state and every gradient, fp32.

The GPU path of packed documents (`HMConfig.jepa_pack`, the default) hands mamba-ssm a `seq_idx` through
`layers.ssd._fast_ssd`; this checks what those kernels compute with it, without a GPU. Compiled kernels round
differently but compute the same thing; their bf16 check is the `cuda` cell of 03_ssd. Needs mamba-ssm's
pure-Python package (the wheel `tools/gpu_wheels.sh` builds) and einops. Three stand-ins let its CUDA-only wrappers
run on CPU tensors: no CUDA device context, an H200's SM count for its split sizes, and the first of each kernel's
autotune configs (the interpreter has no driver to benchmark with).
Usage: python tools/mamba_ssm_interpret.py .whl/mamba_ssm-2.3.2.post1-py3-none-any.whl"""
import contextlib, os, sys, tempfile, types, zipfile

if len(sys.argv) != 2 or not sys.argv[1].endswith('.whl') or not os.path.exists(sys.argv[1]):
    sys.exit('usage: python tools/mamba_ssm_interpret.py PATH/mamba_ssm-*.whl (build it with tools/gpu_wheels.sh)')
os.environ['TRITON_INTERPRET'] = '1'
_site = tempfile.mkdtemp()
zipfile.ZipFile(sys.argv[1]).extractall(_site)
sys.modules.setdefault('selective_scan_cuda', types.ModuleType('selective_scan_cuda'))   # a Mamba-1 extension
_pkg = types.ModuleType('mamba_ssm'); _pkg.__path__ = [os.path.join(_site, 'mamba_ssm')]
sys.modules['mamba_ssm'] = _pkg          # skip its __init__, which imports the language-model code (transformers)

import torch, triton
torch.cuda.device = lambda *a, **k: contextlib.nullcontext()
torch.cuda.get_device_properties = lambda *a, **k: types.SimpleNamespace(multi_processor_count=132)
_autotune = triton.autotune
triton.autotune = lambda configs, key, **kw: _autotune(configs=configs[:1], key=key, **kw)

from hypermnemosyne.layers.ssd import ssd_chunked, _fast_ssd, fast_ssd_fn


def main() -> int:
    if fast_ssd_fn() is None: sys.exit('mamba-ssm did not import from the wheel')
    torch.manual_seed(0)
    b, t, h, p, g, n, cs = 2, 64, 4, 8, 2, 8, 16
    lens = [[20, 5, 1, 2, 16, 20], [64]]       # boundaries mid-chunk, at a chunk start, 1- and 2-token documents
    seq_idx = torch.tensor([sum(([i] * k for i, k in enumerate(r)), []) for r in lens])
    x, dt, A = torch.randn(b, t, h, p), torch.rand(b, t, h) * 0.5 + 0.05, -torch.rand(h) - 0.5
    B, C, D = torch.randn(b, t, g, n), torch.randn(b, t, g, n), torch.randn(h)
    gy, gs = torch.randn(b, t, h, p), torch.randn(b, h, p, n)

    def run(fn):
        ts = [z.clone().requires_grad_() for z in (x, dt, A, B, C, D)]
        y, s = fn(*ts)
        return [y.detach(), s.detach(), *torch.autograd.grad((y * gy).sum() + (s * gs).sum(), ts)]

    ref = run(lambda *ts: ssd_chunked(*ts, cs, seq_idx=seq_idx))
    fast = run(lambda x, dt, A, B, C, D: _fast_ssd(x, dt, A, B, C, cs, D, None, seq_idx))
    plain = run(lambda x, dt, A, B, C, D: _fast_ssd(x, dt, A, B, C, cs, D, None))
    rel = lambda a, r: ((a - r).norm() / r.norm()).item()
    errs = {k: rel(a, r) for k, a, r in zip('y state dx ddt dA dB dC dD'.split(), fast, ref)}
    print('mamba-ssm (interpreted) vs ssd_chunked, packed documents, relative error:',
          ', '.join(f'{k} {v:.1e}' for k, v in errs.items()))
    print(f'control: without seq_idx its output is {rel(plain[0], ref[0]):.2f} away from the packed reference')
    ok = max(errs.values()) < 1e-4 and rel(plain[0], ref[0]) > 0.05
    print('OK' if ok else 'FAILED'); return 0 if ok else 1


if __name__ == '__main__': sys.exit(main())
