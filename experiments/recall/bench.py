"""Time one training step of each recall model alone (no concurrency): which runs fit a 10-minute device call.

    python experiments/recall/bench.py --points 256:16:128,512:64:256 --mixers attention,ssd,memory --steps 10

Prints one line per (mixer, point): ms per optimizer step (fwd + bwd + AdamW, bf16 autocast on CUDA, Zoology's batch)
and the peak GPU memory. Variants of the memory: --mem_chunks 16,32,64 and --mem_compile.
"""
import argparse, sys, time
from pathlib import Path
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import MIXERS, build_model, mqar, zoology_batch_size, _points   # noqa: E402


def step_ms(mixer, seq, pairs, d, device, steps, mem_chunk, mem_compile, warmup=3):
    from hypermnemosyne.core import autocast_ctx
    bs = zoology_batch_size(seq)
    x, y = (t.to(device) for t in mqar(bs, seq, pairs, seed=0))
    model = build_model(mixer, d, mem_chunk=mem_chunk, mem_compile=mem_compile).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    where = y != -100
    def one():
        with autocast_ctx(device):
            loss = F.cross_entropy(model(x, where).float(), y[where])
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    for _ in range(warmup): one()
    sync()
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(steps): one()
    sync()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == 'cuda' else float('nan')
    return 1000 * (time.perf_counter() - t) / steps, peak


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--points', type=_points, default=[(256, 16, 128), (512, 64, 256)])
    p.add_argument('--mixers', default=','.join(MIXERS))
    p.add_argument('--mem_chunks', default='16')
    p.add_argument('--mem_compile', action='store_true')
    p.add_argument('--steps', type=int, default=10)
    a = p.parse_args()
    dev = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    for seq, pairs, d in a.points:
        for m in a.mixers.split(','):
            for c in ([int(c) for c in a.mem_chunks.split(',')] if 'memory' in m else [16]):
                ms, gb = step_ms(m, seq, pairs, d, dev, a.steps, c, a.mem_compile)
                tag = f' chunk {c}' + (' compiled' if a.mem_compile else '') if 'memory' in m else ''
                print(f'{m}{tag} {seq}/{pairs} d{d}: {ms:.1f} ms/step, peak {gb:.1f} GiB', flush=True)


if __name__ == '__main__':
    main()
