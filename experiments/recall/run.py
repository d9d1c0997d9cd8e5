"""Study A of issue 16: the Zoology recall sweep (MQAR only), one JSON per run.

    python experiments/recall/run.py --mixers attention,ssd --widths 64,128 --settings 256:16 --lrs 1e-3,3e-3 \
        --seeds 0 --steps 2000 --workers 8 --deadline 540 --out experiments/recall/results/<set>

The parent process expands the grid, skips runs whose JSON exists, and runs each remaining run as its own child process
(`--workers` at a time, on the same GPU). Each child writes its JSON atomically when it ends; a child still training
when the deadline nears stops, evaluates and writes `<name>.partial.json` instead (not counted as done, so the run is
repeated by a later call). The generator, the models and the training loop live here (not in the package) because
they belong to this study only.
"""
from __future__ import annotations
import argparse, json, math, os, shlex, subprocess, sys, tempfile, time
from pathlib import Path

VOCAB = 8192
MIXERS = ('attention', 'ssd', 'ssd+memory', 'memory', 'swa')
ZOOLOGY_SETTINGS = ((64, 4), (128, 8), (256, 16), (512, 64))
ZOOLOGY_LRS = (1e-4, 4.6e-4, 2.2e-3, 1e-2)
COST = {'attention': 1, 'swa': 1, 'ssd': 2, 'memory': 4, 'ssd+memory': 5}   # rough relative step cost, for ordering
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------------------- data
def zoology_batch_size(seq: int) -> int:
    "Zoology's batch size for a sequence length: 512 up to 128 tokens, 256 at 256, 128 beyond."
    return 512 if seq <= 128 else 256 if seq <= 256 else 128


def check_setting(seq: int, pairs: int, vocab: int = VOCAB):
    "ValueError unless (seq, pairs) fits Zoology's layout: even length, room for the pairs and one query slot per pair."
    if seq % 2 or pairs < 1 or 4 * pairs > seq:
        raise ValueError(f'setting {seq}:{pairs}: need an even seq >= 4*pairs and pairs >= 1 (e.g. 256:16)')
    if vocab // 2 - 1 < pairs: raise ValueError(f'vocab {vocab} has fewer than {pairs} keys')


def _distinct(n: int, lo: int, hi: int, k: int, g):
    """n rows of k distinct integers from [lo, hi), uniform over such rows: draw, redraw every row with a repeat. When k
    is large for the range (k² > 4(hi − lo), e.g. 32 of 127 byte keys), a row would almost never come out distinct:
    then each row is the first k of a random permutation instead (the same distribution; Zoology's settings over
    8,192 tokens keep the redraw, so their data sets are unchanged)."""
    import torch
    if k * k > 4 * (hi - lo): return torch.rand(n, hi - lo, generator=g).argsort(-1)[:, :k] + lo
    out, rows = torch.randint(lo, hi, (n, k), generator=g), torch.arange(n)
    while len(rows):
        srt = out[rows].sort(-1).values
        rows = rows[(srt[:, 1:] == srt[:, :-1]).any(-1)]
        out[rows] = torch.randint(lo, hi, (len(rows), k), generator=g)
    return out


def mqar(n: int, seq: int, pairs: int, seed: int, vocab: int = VOCAB, power_a: float = 0.01, filler: str = 'random'):
    """Zoology's MQAR layout: `pairs` (key, value) pairs first (keys distinct in [1, V/2), values distinct in [V/2, V)),
    then every key queried once in the query region, at slot `gap` (position 2*pairs + 2*gap), gaps drawn without
    replacement with P(gap = i) ∝ (i+1)^(power_a-1) (power_a = 0.01: most queries come soon after the pairs). The value
    follows its query key in the input; the label sits at the query key's position (the next-token prediction there is
    the value), -100 elsewhere. Filler: 'random' tokens from [0, V) (Zoology's `random_non_queries`) or 'zero'.
    Returns int64 `inputs, labels` of shape [n, seq]."""
    import torch
    check_setting(seq, pairs, vocab)
    if filler not in ('random', 'zero'): raise ValueError(f"filler must be 'random' or 'zero', got {filler!r}")
    g = torch.Generator().manual_seed(seed)
    keys = _distinct(n, 1, vocab // 2, pairs, g)
    vals = _distinct(n, vocab // 2, vocab, pairs, g)
    space = (seq - 2 * pairs) // 2
    logp = (power_a - 1) * torch.arange(1, space + 1, dtype=torch.float64).log()
    gumbel = -torch.empty(n, space, dtype=torch.float64).exponential_(generator=g).log()
    gaps = (logp + gumbel).topk(pairs, -1).indices                  # Gumbel top-k = sampling without replacement ∝ p
    inputs = (torch.randint(vocab, (n, seq), generator=g) if filler == 'random' else torch.zeros(n, seq, dtype=torch.long))
    inputs[:, 0:2 * pairs:2], inputs[:, 1:2 * pairs:2] = keys, vals
    qpos = 2 * pairs + 2 * gaps
    inputs.scatter_(1, qpos, keys)
    inputs.scatter_(1, qpos + 1, vals)
    labels = torch.full((n, seq), -100, dtype=torch.long).scatter_(1, qpos, vals)
    return inputs, labels


def dataset_seed(seq: int, pairs: int, split: str) -> int:
    "Fixed data seed per setting and split: every mixer, width, lr and seed sees the same train and test sets."
    return 1_000_003 * seq + 1009 * pairs + {'train': 0, 'test': 1}[split]


# --------------------------------------------------------------------------------------------------------- model
def build_model(mixer: str, d_model: int, vocab: int = VOCAB, n_layers: int = 2, head_dim: int = 64, window: int = 32,
                d_state: int = 64, mem_heads: int = 4, mem_chunk: int = 16, mem_compile: bool = False):
    "The recall model: embedding, `n_layers` pre-norm residual blocks (no MLP), final RMSNorm, tied LM head."
    import torch
    from torch import nn
    from hypermnemosyne.layers.ssd import Mamba2Mixer
    from hypermnemosyne.layers.attention import AttentionMixer
    from hypermnemosyne.layers.memory import MemoryLayer
    if mixer not in MIXERS: raise ValueError(f'unknown mixer {mixer!r}; use one of {", ".join(MIXERS)}')

    class Block(nn.Module):
        "[x + MemoryLayer(x)] then [x + mixer(RMSNorm(x))]: the memory before the mixer, as in the package's HMBlock."
        def __init__(self):
            super().__init__()
            self.memory = (MemoryLayer(d_model, n_heads=mem_heads, chunk_size=mem_chunk, max_grad_norm=1.0,
                                       fast=mem_compile)
                           if 'memory' in mixer else None)
            heads = max(1, d_model // head_dim)
            self.mixer = {'attention': lambda: AttentionMixer(d_model, heads),
                          'swa': lambda: AttentionMixer(d_model, heads, window=window),
                          'ssd': lambda: Mamba2Mixer(d_model, d_state=d_state, chunk_size=64),
                          'ssd+memory': lambda: Mamba2Mixer(d_model, d_state=d_state, chunk_size=64),
                          'memory': lambda: None}[mixer]()
            self.norm = nn.RMSNorm(d_model) if self.mixer is not None else None

        def forward(self, x):
            if self.memory is not None: x = x + self.memory(x)[0]
            if self.mixer is not None: x = x + self.mixer(self.norm(x))
            return x

    class RecallLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, d_model)
            nn.init.normal_(self.embed.weight, std=0.02)
            self.blocks = nn.ModuleList(Block() for _ in range(n_layers))
            self.norm = nn.RMSNorm(d_model)

        def forward(self, ids, where=None):
            "Logits [b, t, vocab], or only at the positions where the bool mask `where` [b, t] is True ([n, vocab])."
            x = self.embed(ids)
            for b in self.blocks: x = b(x)
            x = self.norm(x)
            if where is not None: x = x[where]
            return x @ self.embed.weight.to(x.dtype).T

    return RecallLM()


# ------------------------------------------------------------------------------------------------------ training
def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    "Linear warmup for `warmup` steps, then cosine from lr to 0 at `steps`."
    if step < warmup: return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def evaluate(model, inputs, labels, device, batch: int) -> tuple[float, float]:
    "(accuracy, mean loss) over all labelled positions: accuracy = share whose argmax is the value."
    import torch
    import torch.nn.functional as F
    from hypermnemosyne.core import autocast_ctx
    model.eval()
    right = total = 0; loss = 0.0
    with torch.no_grad():
        for i in range(0, len(inputs), batch):
            x, y = inputs[i:i + batch].to(device), labels[i:i + batch].to(device)
            where = y != -100
            with autocast_ctx(device):
                logits = model(x, where).float()
            t = y[where]
            right += (logits.argmax(-1) == t).sum().item(); total += t.numel()
            loss += F.cross_entropy(logits, t, reduction='sum').item()
    model.train()
    return right / total, loss / total


def param_groups(model, wd: float):
    "AdamW groups: weight decay on matrices, none on vectors (norms, biases, SSD's A/D/dt) or the embedding."
    decay, no = [], []
    for n, p in model.named_parameters():
        (no if p.ndim < 2 or getattr(p, '_no_weight_decay', False) or n.startswith('embed') else decay).append(p)
    return [dict(params=decay, weight_decay=wd), dict(params=no, weight_decay=0.0)]


def train_run(spec: dict, deadline_at: float | None = None, log=None) -> dict:
    "Train one run of `spec` (see `run_specs`) and return its record (without the provenance fields)."
    import torch
    import torch.nn.functional as F
    from hypermnemosyne.core import autocast_ctx
    t0 = time.time()
    dev = torch.device(spec['device'])
    seq, pairs = spec['seq'], spec['pairs']
    xtr, ytr = mqar(spec['n_train'], seq, pairs, dataset_seed(seq, pairs, 'train'), filler=spec['filler'])
    xte, yte = mqar(spec['n_test'], seq, pairs, dataset_seed(seq, pairs, 'test'), filler=spec['filler'])
    xtr, ytr = xtr.to(dev), ytr.to(dev)                             # the whole train set on the device: no copy per step
    torch.manual_seed(spec['seed'])
    model = build_model(spec['mixer'], spec['d_model'], window=spec['window'], mem_chunk=spec['mem_chunk'],
                        mem_compile=spec.get('mem_compile', False)).to(dev)
    opt = torch.optim.AdamW(param_groups(model, spec['wd']), lr=spec['lr'], betas=(0.9, 0.98))
    g = torch.Generator().manual_seed(spec['seed'])
    steps, bs, warm = spec['steps'], spec['batch_size'], spec['warmup']
    order, pos, epoch = torch.randperm(len(xtr), generator=g), 0, 0
    curve, run_loss, n_loss, done, t_train = [], 0.0, 0, 0, time.time()
    for step in range(steps):
        if deadline_at is not None and time.time() > deadline_at: break
        if pos + bs > len(order): order, pos, epoch = torch.randperm(len(xtr), generator=g), 0, epoch + 1
        idx = order[pos:pos + bs].to(dev); pos += bs
        x, y = xtr[idx], ytr[idx]
        for grp in opt.param_groups: grp['lr'] = lr_at(step, steps, spec['lr'], warm)
        where = y != -100
        with autocast_ctx(dev):
            loss = F.cross_entropy(model(x, where).float(), y[where])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run_loss += loss.item(); n_loss += 1; done = step + 1
        if not math.isfinite(run_loss): break
        if spec['eval_every'] and done % spec['eval_every'] == 0 and done < steps:
            acc, tl = evaluate(model, xte[:spec['eval_n']], yte[:spec['eval_n']], dev, spec['eval_batch'])
            curve.append(dict(step=done, train_loss=run_loss / n_loss, test_acc=acc, test_loss=tl, eval_n=spec['eval_n']))
            if log: log(f'step {done}: train loss {run_loss / n_loss:.3f}, test acc {acc:.3f}')
            run_loss, n_loss = 0.0, 0
    train_s = time.time() - t_train
    acc, tl = evaluate(model, xte, yte, dev, spec['eval_batch']) if math.isfinite(run_loss) else (0.0, float('nan'))
    curve.append(dict(step=done, train_loss=run_loss / max(1, n_loss), test_acc=acc, test_loss=tl, eval_n=len(xte)))
    diag = (memory_diagnostics(model, xte[:32].to(dev), yte[:32].to(dev), pairs)
            if 'memory' in spec['mixer'] and math.isfinite(run_loss) else None)
    return dict(diagnostics=diag, test_acc=acc, test_loss=tl, steps_done=done, complete=done == steps and math.isfinite(run_loss),
                diverged=not math.isfinite(run_loss), epochs=done * bs / len(xtr), curve=curve,
                params=sum(p.numel() for p in model.parameters()), wall_s=time.time() - t0,
                train_s=train_s, s_per_step=train_s / max(1, done))


def memory_diagnostics(model, x, y, pairs: int) -> dict:
    """Issue 16's checks of a trained memory-bearing model on MQAR sequences `x` with labels `y` (on the model's device),
    per memory block: `store`: do the fast weights after the sequence recall the pairs (`store_cosines` at the pairs'
    value tokens, whose conv window holds the key); `read`: the memory branch's size at the query keys against
    elsewhere; `grads`: the outer loop's gradient norms reaching W_Q, W_K, W_V, the gates and the initial weights."""
    import torch.nn.functional as F
    la = _length_analysis()
    seen = la.capture(model, lambda: model(x))
    pos = list(range(1, 2 * pairs, 2))
    where, layers = y != -100, la.memory_layers(model)
    return dict(store={str(i): la.store_cosines(layer, seen[i][0], seen[i][2], pos) for i, layer in layers},
                read={str(i): la.read_ratio(seen[i][0], seen[i][1], where) for i, _ in layers},
                grads=la.grad_norms(model, lambda: F.cross_entropy(model(x, where).float(), y[where])))


def _length_analysis():
    "Study B's analysis module (the memory diagnostics), imported by path."
    import importlib.util
    spec = importlib.util.spec_from_file_location('length_analysis', ROOT / 'experiments' / 'length' / 'analysis.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); return mod


# ---------------------------------------------------------------------------------------------------- provenance
def gpu_name(device: str) -> str:
    import torch
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith('cuda') else 'CPU'


def run_name(s: dict) -> str:
    "File stem of a run: every field that makes it a different run."
    chunk = f"_c{s['mem_chunk']}" if 'memory' in s['mixer'] and s['mem_chunk'] != 16 else ''
    return (f"{s['mixer'].replace('+', '-')}_d{s['d_model']}_L{s['seq']}_p{s['pairs']}_lr{s['lr']:g}_s{s['seed']}"
            f"_n{s['steps']}{chunk}")


def write_json(path: Path, obj: dict):
    "Write atomically: a temporary file in the same folder, then rename."
    tmp = path.with_name(path.name + f'.tmp{os.getpid()}')
    tmp.write_text(json.dumps(obj, indent=1) + '\n')
    os.replace(tmp, path)


# -------------------------------------------------------------------------------------------------------- the CLI
def _list(kind, s):
    try: return [kind(v) for v in s.split(',') if v.strip()]
    except ValueError: raise argparse.ArgumentTypeError(f'expected a comma-separated list of {kind.__name__}, got {s!r}')


def _int_tuples(n, example):
    "An argparse type: a comma list of `n` colon-separated integers each, such as `example`."
    def parse(s):
        try: out = [tuple(int(a) for a in v.split(':')) for v in s.split(',') if v.strip()]
        except ValueError: out = None
        if not out or any(len(t) != n for t in out):
            raise argparse.ArgumentTypeError(f'expected a comma list like {example}, got {s!r}')
        return out
    return parse


_settings = _int_tuples(2, '256:16,512:64 (seq:pairs)')
_points = _int_tuples(3, '256:16:128,512:64:256 (seq:pairs:d_model)')


def parser():
    p = argparse.ArgumentParser(description='Zoology MQAR recall sweep (issue 16, study A): one JSON per run.')
    p.add_argument('--mixers', type=lambda s: _list(str, s), default=list(MIXERS), help=f'comma list of {",".join(MIXERS)}')
    p.add_argument('--widths', type=lambda s: _list(int, s), default=[64, 128, 256, 512], help='d_model values')
    p.add_argument('--settings', type=_settings, default=list(ZOOLOGY_SETTINGS), help='seq:pairs list, e.g. 256:16,512:64')
    p.add_argument('--points', type=_points, default=None,
                   help='seq:pairs:d_model list, e.g. 256:16:128,512:64:256 (instead of --settings x --widths)')
    p.add_argument('--lrs', type=lambda s: _list(float, s), default=list(ZOOLOGY_LRS), help='learning rates')
    p.add_argument('--seeds', type=lambda s: _list(int, s), default=[0], help='model seeds (init and data order)')
    p.add_argument('--steps', type=int, default=2000, help='optimizer steps per run')
    p.add_argument('--batch_size', type=int, default=0, help="0: Zoology's (512 for L<=128, 256 for 256, 128 for 512)")
    p.add_argument('--warmup', type=float, default=0.05, help='warmup: a fraction of the steps (< 1) or a step count')
    p.add_argument('--wd', type=float, default=0.1, help='AdamW weight decay')
    p.add_argument('--n_train', type=int, default=100_000)
    p.add_argument('--n_test', type=int, default=3_000)
    p.add_argument('--filler', choices=('random', 'zero'), default='random', help="tokens between queries (Zoology: random)")
    p.add_argument('--window', type=int, default=32, help='sliding window of the swa mixer')
    p.add_argument('--mem_chunk', type=int, default=16, help='chunk of the Titans memory (a token reads earlier chunks only)')
    p.add_argument('--mem_compile', action='store_true', help="the memory's chunk write through torch.compile (CUDA)")
    p.add_argument('--eval_every', type=int, default=250, help='curve point every K steps (0: final evaluation only)')
    p.add_argument('--eval_n', type=int, default=1000, help='test examples per curve point (the final one uses all)')
    p.add_argument('--workers', type=int, default=1, help='runs at once, each its own process')
    p.add_argument('--deadline', type=float, default=0, help='seconds from start: no new run is launched when a run '
                   'would not finish in time, running ones stop and save (.partial.json) before it (0: none)')
    p.add_argument('--device', default='auto', help="'auto' (cuda if available), 'cuda', 'cuda:1', 'cpu'")
    p.add_argument('--out', required=True, help='result folder, e.g. experiments/recall/results/<set>')
    p.add_argument('--dry_run', action='store_true', help='list the runs that would start, start none')
    p.add_argument('--_child', help=argparse.SUPPRESS)
    p.add_argument('--_deadline_at', type=float, default=None, help=argparse.SUPPRESS)
    return p


def fail(msg: str):
    print(f'run.py: error: {msg}', file=sys.stderr)
    sys.exit(2)


def validate(a):
    bad = [m for m in a.mixers if m not in MIXERS]
    if bad: fail(f'--mixers: unknown {", ".join(bad)}; use {", ".join(MIXERS)}')
    if a.points: a.settings, a.widths = sorted({p[:2] for p in a.points}), sorted({p[2] for p in a.points})
    for d in a.widths:
        if d < 32 or d % 32: fail(f'--widths: {d} must be a multiple of 32 (Mamba-2 heads of 64 need 2*d_model % 64 == 0)')
    for seq, pairs in a.settings:
        try: check_setting(seq, pairs)
        except ValueError as e: fail(f'--settings: {e}')
    for name in ('steps', 'n_train', 'n_test', 'workers', 'window', 'mem_chunk'):
        if getattr(a, name) < 1: fail(f'--{name} must be >= 1, got {getattr(a, name)}')
    if any(lr <= 0 for lr in a.lrs): fail('--lrs must all be > 0')
    if a.batch_size < 0 or a.eval_every < 0 or a.deadline < 0 or a.warmup < 0: fail('--batch_size, --eval_every, --deadline, --warmup must be >= 0')
    if a.batch_size and a.batch_size > a.n_train: fail(f'--batch_size {a.batch_size} exceeds --n_train {a.n_train}')


def resolve_device(name: str) -> str:
    import torch
    if name == 'auto': return 'cuda' if torch.cuda.is_available() else 'cpu'
    if name.startswith('cuda') and not torch.cuda.is_available(): fail(f'--device {name}: no CUDA device here; use cpu or auto')
    if name != 'cpu' and not name.startswith('cuda'): fail(f"--device {name}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return name


def run_specs(a, device: str) -> list[dict]:
    "The grid, most expensive first (long runs start early, short ones fill the gaps at the end)."
    specs = []
    for seq, pairs in a.settings:
        bs = a.batch_size or min(zoology_batch_size(seq), a.n_train)
        for mixer in a.mixers:
            for d in a.widths:
                if a.points and (seq, pairs, d) not in a.points: continue
                for lr in a.lrs:
                    for seed in a.seeds:
                        specs.append(dict(mixer=mixer, d_model=d, seq=seq, pairs=pairs, lr=lr, seed=seed, steps=a.steps,
                                          batch_size=bs, warmup=int(a.warmup * a.steps) if a.warmup < 1 else int(a.warmup),
                                          wd=a.wd, n_train=a.n_train, n_test=a.n_test, vocab=VOCAB, filler=a.filler,
                                          window=a.window, mem_chunk=a.mem_chunk, mem_compile=a.mem_compile, n_layers=2, eval_every=a.eval_every,
                                          eval_n=min(a.eval_n, a.n_test), eval_batch=bs, device=device,
                                          optimizer='AdamW(betas=(0.9, 0.98)), cosine to 0, clip 1.0'))
    return sorted(specs, key=lambda s: -COST[s['mixer']] * s['seq'] * s['d_model'])


def child_main(a):
    "One run in this process: train, then write its JSON (or .partial.json when the deadline cut it short)."
    import torch
    from hypermnemosyne.core import source_commit
    spec = json.loads(a._child)
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    rec = train_run(spec, a._deadline_at)
    rec = dict(spec, **rec, commit=source_commit(ROOT), command=os.environ.get('HM_RECALL_COMMAND', ''), gpu=gpu_name(spec['device']),
               torch=torch.__version__, python=sys.version.split()[0], finished=time.strftime('%Y-%m-%dT%H:%M:%S'))
    out = Path(a.out)
    write_json(out / (run_name(spec) + ('.json' if rec['complete'] or rec['diverged'] else '.partial.json')), rec)


def progress(i: int, n: int, spec: dict, path: Path) -> str:
    if not path.exists(): return f"[{i}/{n}] {run_name(spec)}: FAILED (no JSON)"
    r = json.loads(path.read_text())
    tag = '' if r['complete'] else (' DIVERGED' if r['diverged'] else f" PARTIAL {r['steps_done']}/{r['steps']} steps")
    return (f"[{i}/{n}] {r['mixer']} d{r['d_model']} L{r['seq']}/{r['pairs']} lr {r['lr']:g} seed {r['seed']}: "
            f"acc {r['test_acc']:.3f}{tag} ({r['wall_s']:.0f} s, {1000 * r['s_per_step']:.0f} ms/step)")


def parent_main(a, argv):
    device = resolve_device(a.device)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    specs = run_specs(a, device)
    todo = [s for s in specs if not (out / (run_name(s) + '.json')).exists()]
    print(f'{len(specs)} runs, {len(specs) - len(todo)} already done, {len(todo)} to run with {a.workers} workers on '
          f'{device}', flush=True)
    if a.dry_run:
        for s in todo: print(run_name(s))
        return 0
    t0, cmd = time.time(), ' '.join(shlex.quote(x) for x in [sys.executable, *argv])
    end = t0 + a.deadline if a.deadline else None
    env = dict(os.environ, HM_RECALL_COMMAND=cmd, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    env.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // a.workers)))
    running, walls, n_done, failed, n_todo = {}, {}, 0, 0, len(todo)
    while todo or running:
        while todo and len(running) < a.workers and _may_launch(todo[0], walls, end):
            s = todo.pop(0)
            args = [sys.executable, __file__, '--out', str(out), '--_child', json.dumps(s)]
            if end: args += ['--_deadline_at', str(end - 20)]
            log = tempfile.TemporaryFile('w+')       # a file, not a pipe: a chatty child can never block on it
            running[subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)] = (s, log)
        if todo and not running:
            print(f'deadline: {len(todo)} runs not started', flush=True); break
        time.sleep(0.5)
        for proc in [p for p in running if p.poll() is not None]:
            (s, log), n_done = running.pop(proc), n_done + 1
            log.seek(0); err = log.read(); log.close()
            path = out / (run_name(s) + '.json')
            if not path.exists() and (out / (run_name(s) + '.partial.json')).exists(): path = out / (run_name(s) + '.partial.json')
            print(progress(n_done, n_todo, s, path), flush=True)
            if proc.returncode != 0:
                failed += 1; print(err[-3000:], file=sys.stderr, flush=True)
            elif path.suffix == '.json' and path.exists():
                walls.setdefault(_cost_key(s), []).append(json.loads(path.read_text())['wall_s'])
    print(f'done in {time.time() - t0:.0f} s: {n_done} runs ended, {failed} failed', flush=True)
    return 1 if failed else 0


def _cost_key(s): return (s['mixer'], s['d_model'], s['seq'], s['steps'])


def _may_launch(s, walls, end) -> bool:
    "Launch unless a deadline is set and the run would not finish: by the longest finished run of its kind, else 60 s left."
    if end is None: return True
    left = end - time.time()
    w = walls.get(_cost_key(s))
    return left > (max(w) + 20 if w else 60)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    a = parser().parse_args(argv)
    if a._child: return child_main(a)
    validate(a)
    return parent_main(a, [__file__, *argv])


if __name__ == '__main__':
    sys.exit(main() or 0)
