"""Issue 19's measurements in one short GPU call: training step time, tokens/s, peak memory, kernel launches and the top
kernels of `base` against the `transformer` preset with bf16 streams, gradient checkpointing and the same batch (eager
blocks; `--compile`: the compiled opt-ins), and batch-1 decoding through `generate` with and without the CUDA graph, after 1K and 32K tokens.

    python tools/speed_check.py train --out speed-train.json      # on a GPU; --quick: tiny models on the CPU
    python tools/speed_check.py decode --out speed-decode.json
    python tools/speed_check.py overheads --out speed-overheads.json   # mHC, memory, JEPA: `base` with and without

Each part is its own process (so a `timeout` around one cannot lose the other's results) and writes its JSON (rows,
device, torch, commit, command) as soon as each row is measured."""
from __future__ import annotations
import argparse, json, os, re, sys, time
from pathlib import Path

import torch

from hypermnemosyne.core import time_fn, print_table, device_name, source_commit
from hypermnemosyne.model import HMConfig, HyperMnemosyne
from hypermnemosyne.generate import generate
from hypermnemosyne.bench.model import _bench_step, _overhead_rows

ROOT = Path(__file__).resolve().parents[1]


_FUNCTORS = [re.compile(r) for r in (r'\w+_kernel_cuda', r'CUDAFunctor_\w+', r'\w+Functor\w*', r'\w+_kernel\w*')]
_GENERIC = ('elementwise_kernel', 'vectorized_elem', 'gpu_kernel_impl', 'unrolled_elementwise', 'BinaryFunctor',
            'UnaryFunctor', 'AUnaryFunctor', 'BUnaryFunctor')

def kernel_label(name: str) -> str:
    "A short name for a kernel: the functor or kernel inside an ATen elementwise template, else the name's start."
    if not name.startswith('void at::native::'): return name[:60]
    rest = name[17:]
    head = rest.split('<')[0].split('::')[-1]
    for pat in _FUNCTORS:
        found = [m for m in pat.findall(rest) if not m.startswith(_GENERIC) and m != head]
        if found: return f'{head}: {found[0]}'
    return head


def profile_step(step, top: int = 12) -> dict:
    "Device activities (kernels, copies, memsets) of one call of `step` and the `top` kernels by total device time."
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch.profiler.profile(activities=acts) as prof: step()
    cuda = torch.cuda.is_available()
    n = sum(e.device_type == torch.autograd.DeviceType.CUDA for e in prof.events()) if cuda else None
    key = 'device_time_total' if cuda else 'cpu_time_total'
    t = lambda a: getattr(a, key, 0) or 0
    avg = [a for a in prof.key_averages() if not cuda or a.device_type == torch.autograd.DeviceType.CUDA]  # kernels
    kern = [dict(label=kernel_label(a.key), calls=a.count, ms=t(a) / 1e3, name=a.key[:400])
            for a in sorted(avg, key=lambda a: -t(a))[:top]]
    return dict(launches=n, top_kernels=kern)


def train_row(name: str, cfg: HMConfig, batch: int, seq: int, dev, repeats: int) -> dict:
    "One fwd+bwd step of a fresh `cfg` model: median ms, tokens/s, peak GiB, launches and top kernels."
    torch.manual_seed(0)
    m = HyperMnemosyne(cfg).to(dev).train()
    ids = torch.randint(0, 256, (batch, seq), device=dev)
    def step():
        m.zero_grad(set_to_none=True); m.loss(ids)[0].backward()
        if dev.type == 'cuda': torch.cuda.synchronize(dev)
    t0 = time.time(); step(); step(); warm = time.time() - t0            # compilation and autotuning happen here
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
    ms = time_fn(step, warmup=1, repeats=repeats, device=dev)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == 'cuda' else None
    row = dict(component=f'train {name} b={batch} T={seq}', ms=ms, tokens_per_s=batch * seq / ms * 1e3, peak_gib=peak,
               warmup_s=warm, compiled=cfg.compiles_blocks(dev), mem_fast=cfg.mem_fast, stream_dtype=cfg.stream_dtype,
               grad_checkpoint=cfg.grad_checkpoint, **profile_step(step))
    del m
    return row


def decode_rows(cfg: HMConfig, dev, contexts: tuple[int, ...], n_new: int, repeats: int, compile: bool = False) -> list[dict]:
    """Greedy `generate` of `n_new` tokens at batch 1: eagerly after the first context, and (CUDA) through the graph
    (`graph=True`; with `compile` also the compiled step, 'compiled') after each context. Each row has the whole call's
    tokens/s (prefill and capture included: the goal's "through generate") and the per-token step time, from the
    difference of `n_new` and 1 generated tokens (prefill and capture cancel); `growth` is that step time against the
    first context's in the same mode; `agree_with_eager` the share of greedy tokens equal to eager decoding's (first
    context; under bf16 autocast near-ties may flip)."""
    torch.manual_seed(0)
    m, rows, eager_ids = HyperMnemosyne(cfg).to(dev).eval(), [], None
    modes = [False] + ([True] + (['compiled'] if compile else []) if dev.type == 'cuda' else [])
    for mode in modes:
        first = None
        for ctx in (contexts if mode else contexts[:1]):
            prompt = torch.randint(0, 256, (ctx,), generator=torch.Generator().manual_seed(ctx))   # same per context
            run = lambda n: generate(m, prompt, n, temperature=0, ttl=False, graph=mode)
            t0 = time.time(); ids = run(n_new).ids; warm = time.time() - t0        # compiles, autotunes, captures
            if ctx == contexts[0]: eager_ids = eager_ids if mode else ids          # the eager row runs first
            ms = time_fn(lambda: run(n_new), warmup=0, repeats=repeats, device=dev)
            ms1 = time_fn(lambda: run(1), warmup=0, repeats=repeats, device=dev)
            step_ms = (ms - ms1) / (n_new - 1)
            first = first or step_ms
            how = {False: '', True: ', cuda graph', 'compiled': ', cuda graph, compiled step'}[mode]
            how += ', fused decode kernels' if cfg.fused_decode else ''
            rows.append(dict(component=f'generate {n_new} tokens after {ctx}, batch 1' + how, ms=ms,
                             tokens_per_s=n_new / ms * 1e3, step_ms=step_ms, step_tokens_per_s=1e3 / step_ms,
                             growth=step_ms / first, context=ctx, graph=str(mode), warmup_s=warm,
                             agree_with_eager=(sum(a == b for a, b in zip(ids, eager_ids)) / n_new
                                               if ctx == contexts[0] else None)))
            print(rows[-1], flush=True)
    return rows + [decode_profile(m, torch.randint(0, 256, (contexts[0],)))]


def decode_profile(m, prompt, n: int = 8) -> dict:
    "Device activities per generated token of eager decoding: (profile of n + 1 tokens − of 1 token) / n; top kernels."
    one = profile_step(lambda: generate(m, prompt, 1, temperature=0, ttl=False))
    more = profile_step(lambda: generate(m, prompt, n + 1, temperature=0, ttl=False))
    per = (more['launches'] - one['launches']) / n if more['launches'] is not None else None
    return dict(component=f'eager decode step, device activities per token ({n + 1} vs 1 tokens)', launches=per,
                top_kernels=more['top_kernels'])


def overhead_rows(dev, quick: bool, save) -> list[dict]:
    """`base` (bf16 streams, checkpointing) against itself without mHC (plain residual), without memory, and with JEPA
    views, in one process (`bench.model`'s overhead rows); each row is saved as soon as it is measured."""
    b, t, reps = (2, 64, 2) if quick else (8, 4096, 5)
    base = HMConfig.preset('tiny' if quick else 'base', grad_checkpoint=True,
                           stream_dtype='bfloat16' if dev.type == 'cuda' else 'float32')
    run = lambda cfg, **kw: _bench_step(cfg, b, t, dev, warmup=2, repeats=reps, **kw)
    run(base)                                                                   # untimed: autotuning, clocks
    n_pairs, view_len = (2, 16) if quick else (4, 512)
    return _overhead_rows(run, base, run(base), device_name(dev), False, n_pairs, view_len, b * t, on_row=save)


def save(path: Path, rows: list[dict], dev, argv):
    meta = dict(device=device_name(dev), torch=torch.__version__, commit=source_commit(ROOT), time=time.strftime('%Y-%m-%d %H:%M:%S'),
                command='python tools/speed_check.py ' + ' '.join(argv))
    tmp = path.with_name(path.name + '.tmp'); tmp.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + '\n')
    os.replace(tmp, path)


def _ckpt(v: str):
    "`--grad_checkpoint`: all -> True, none -> False, K -> int K."
    if v in ('all', 'none'): return v == 'all'
    if v.isdigit(): return int(v)
    raise argparse.ArgumentTypeError(f'{v!r}: use all, none or a number of blocks')


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog='speed_check', description=__doc__.split('\n\n')[0])
    p.add_argument('part', choices=('train', 'decode', 'overheads'))
    p.add_argument('--out', required=True)
    p.add_argument('--quick', action='store_true', help='tiny models on the CPU: checks the script, measures nothing')
    p.add_argument('--compile', action='store_true', help='compiled blocks and memory writes (HMConfig compile=True, '
                   'mem_fast=None) for training, and the '
                   'compiled step for the graph (GraphedStep compile=True): the opt-ins, measured against the eager rows')
    p.add_argument('--mem_compile', action='store_true', help="train: only the memory's chunk write compiled "
                   '(mem_fast=None), blocks eager: that lever alone')
    p.add_argument('--fused_decode', action='store_true', help='decode: the fused decode kernels (HMConfig.fused_decode: '
                   "mHC's pre sides in 02_mhc, the SSD step in 03_ssd)")
    p.add_argument('--grad_checkpoint', type=_ckpt, default=True, metavar='all|none|K',
                   help='blocks recomputed in the backward: all (default), none, or the first K (HMConfig.grad_checkpoint)')
    p.add_argument('--contexts', type=lambda v: tuple(int(x) for x in v.split(',')), default=(1024, 32768),
                   metavar='N,N', help='decode: prompt lengths (the first is the eager row\'s; growth is against it)')
    a = p.parse_args(argv)
    dev = torch.device('cpu' if a.quick or not torch.cuda.is_available() else 'cuda')
    # bf16 streams need autocast; --compile also compiles the memory's chunk write, --mem_compile only that
    best = dict(grad_checkpoint=a.grad_checkpoint, stream_dtype='bfloat16' if dev.type == 'cuda' else 'float32',
                compile=a.compile, mem_fast=None if a.compile or a.mem_compile else False)
    rows, out = [], Path(a.out)
    if a.part == 'train':
        b, t, reps = (2, 64, 2) if a.quick else (8, 4096, 5)
        for name in ('base', 'transformer'):
            cfg = HMConfig.preset('tiny' if a.quick else name, **best)
            rows.append(train_row(name, cfg, b, t, dev, reps)); save(out, rows, dev, argv)
        rows.append(dict(component='base / transformer tokens/s', ratio=rows[0]['tokens_per_s'] / rows[1]['tokens_per_s'],
                         launches_ratio=(rows[0]['launches'] / rows[1]['launches']) if rows[0]['launches'] else None))
    elif a.part == 'overheads':
        rows = overhead_rows(dev, a.quick, lambda rs: save(out, rs, dev, argv))
    else:
        cfg = HMConfig.preset('tiny' if a.quick else 'base', fused_decode=a.fused_decode)
        rows += decode_rows(cfg, dev, (64, 256) if a.quick else a.contexts,
                            8 if a.quick else 256, 2 if a.quick else 3, a.compile)
    save(out, rows, dev, argv)
    print_table([{k: v for k, v in r.items() if k != 'top_kernels'} for r in rows])
    for r in rows:
        if r.get('top_kernels'):
            print(r['component']); print_table([{k: v for k, v in x.items() if k != 'name'} for x in r['top_kernels']])
    return 0


if __name__ == '__main__':
    sys.exit(main())
