"""Study B of issue 16: length extrapolation (Titans protocol), one JSON per (arm, seed).

    python experiments/length/run.py --arms ssd,ssd+memory,ssd+swa,ssd+swa+memory,hybrid --seeds 0 --steps 2000 \
        --deadline 540 --out experiments/length/results/<set>

`small`-width models of the package (`HMConfig.preset`) trained at `--seq_len` tokens on the package's built-in corpus,
with passkey and MQAR documents in `--task_frac` of every batch from the first step; then passkey at 1x/4x/16x the
training length and MQAR at 1x, test-time learning on and off (`ablations.memory_tasks`), and the memory diagnostics
(`analysis.diagnostics`) on a passkey document. Every (arm, seed) is its own child process, all at once on one GPU; the
deadline stops training early enough to leave time for the evaluation (`--eval_reserve`).
"""
from __future__ import annotations
import argparse, importlib.util, json, math, os, shlex, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hypermnemosyne.core import source_commit
from hypermnemosyne.model import HMConfig, HyperMnemosyne, lm_loss
from hypermnemosyne.data import load_corpus, ByteTokenizer, tokenize_corpus, TokenLoader, TaskBatch, passkey, mqar
from hypermnemosyne.optim import MuonWithAdamW
from hypermnemosyne.layers.memory import NeuralMemory

sys.path.insert(0, str(Path(__file__).resolve().parent))
import analysis  # noqa: E402

def _load(name: str, path: Path):
    "Import a study's script by path (every study names its runner run.py)."
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); return mod

# the task evaluation (passkey at several lengths, MQAR, test-time learning on and off) is the ablation study's
_abl = _load('ablations_run', Path(__file__).resolve().parents[1]/'ablations'/'run.py')
memory_tasks, mqar_pairs_for = _abl.memory_tasks, _abl.mqar_pairs_for
passkey_batch, task_logits, answer_accuracy = _abl.passkey_batch, _abl.task_logits, _abl.answer_accuracy
# Zoology's MQAR layout (queries at power-law gaps after the pairs) is the recall study's generator
_recall = _load('recall_run', Path(__file__).resolve().parents[1]/'recall'/'run.py')
TASKS = ('passkey,zmqar', 'passkey,mqar', 'passkey')

ARMS = analysis.ARMS
ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------------------- models
def arm_config(arm: str, preset: str = 'small', window: int = 128, mem_chunk: int = 64) -> HMConfig:
    """The arm's `HMConfig`: the preset's widths, no JEPA. `ssd`: Mamba-2 in every block; `+swa`: the preset's attention
    blocks (every `attn_every`-th) with a `window`-token sliding window; `+memory`: a memory sublayer (chunk `mem_chunk`)
    in the last block of each half; `hybrid`: the preset unchanged (full attention, its one memory block and chunk)."""
    if arm not in ARMS: raise ValueError(f'unknown arm {arm!r}; use one of {", ".join(ARMS)}')
    base = HMConfig.preset(preset, jepa_weight=0.0)
    if arm == 'hybrid': return base
    n = base.n_layers
    kw = dict(attn_every=base.attn_every if 'swa' in arm else 0, attn_window=window if 'swa' in arm else 0,
              memory_layers=(n // 2 - 1, n - 1) if 'memory' in arm else (), mem_chunk=mem_chunk)
    return HMConfig.preset(preset, jepa_weight=0.0, **kw)


# ----------------------------------------------------------------------------------------------------------- data
def corpus_tokens(max_mb: float, cache_dir) -> np.ndarray:
    "The built-in corpus's train split, byte-tokenized (cached), at most `max_mb` MB of text (0: all)."
    split = load_corpus('stdlib')['train']
    if max_mb:
        n, total = 0, 0
        for t in split['text']:
            total += len(t); n += 1
            if total > max_mb * 1e6: break
        split = split.select(range(n))
    return np.asarray(tokenize_corpus(split, ByteTokenizer(), cache_dir))


def zmqar(pairs: int, seq_len: int, seed: int, n: int = 1) -> TaskBatch:
    """`n` MQAR documents in Zoology's layout over the byte vocabulary (keys in [1, 128), values in [128, 256), random
    filler), as a `TaskBatch`: the mask marks each value that follows its query key (the token to predict)."""
    inputs, labels = _recall.mqar(n, seq_len, pairs, seed, vocab=256)
    mask = torch.zeros_like(inputs, dtype=torch.bool)
    mask[:, 1:] = labels[:, :-1] != -100
    return TaskBatch(inputs, mask)


def task_rows(n: int, seq_len: int, rng, tasks: str = TASKS[0]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`n` task documents of `seq_len` tokens, alternately passkey (random depth) and MQAR (random pair count; `zmqar`:
    Zoology's layout, `mqar`: the package's, every query at the end), or passkey only (`tasks='passkey'`); their answer
    masks and needle masks (the needle sentence of a passkey row)."""
    if tasks not in TASKS: raise ValueError(f'tasks must be one of {", ".join(TASKS)}, got {tasks!r}')
    toks, masks, needles, pairs = [], [], [], (mqar_pairs_for(seq_len) if 'mqar' in tasks else [])
    for j in range(n):
        s = int(rng.integers(1 << 30))
        pk = j % 2 == 0 or not pairs
        p = int(rng.choice(pairs)) if not pk else 0
        tb = (passkey(seq_len, float(rng.uniform(0.05, 0.95)), seed=s) if pk else
              zmqar(p, seq_len, s) if 'zmqar' in tasks else mqar(p, p, 256, seq_len=seq_len, seed=s))
        nd = torch.zeros_like(tb.mask)
        if pk:
            a, b = analysis.needle_span(tb.tokens[0].tolist()); nd[:, a:b] = True
        toks.append(tb.tokens); masks.append(tb.mask); needles.append(nd)
    return torch.cat(toks), torch.cat(masks), torch.cat(needles)


def zmqar_eval(model, seq_len: int, n: int, batch_size: int, seed: int = 20_000) -> dict:
    """MQAR in Zoology's layout at the training length, token accuracy per pair count, test-time learning on and (for
    a memory model) off: the same structure as `memory_tasks`' `mqar` entry, with `layout: 'zoology'`."""
    out = dict(layout='zoology', n_pairs=mqar_pairs_for(seq_len), acc={})
    for p in out['n_pairs']:
        tb = zmqar(p, seq_len, seed + p, n)
        for ttl in ((True, False) if model.config.memory_layers else (True,)):
            lg = task_logits(model, tb.tokens, ttl, batch_size)
            out['acc'].setdefault('ttl_on' if ttl else 'ttl_off', []).append(answer_accuracy(lg, tb.tokens, tb.mask)[1])
    return out


def mixed_loss(model, ids, mask, n_lm: int, needle=None):
    """LM cross-entropy over the first `n_lm` rows plus answer cross-entropy over the task rows (equal weight); with a
    `needle` mask, plus the cross-entropy over the needle sentences (a short-range copy: the key appears twice in it)."""
    logits = model(ids).logits
    lm = lm_loss(logits[:n_lm], ids[:n_lm], model.config.pad_id)
    ce = lambda m: F.cross_entropy(logits[n_lm:, :-1][m].float(), ids[n_lm:, 1:][m]) if m.any() else lm * 0
    task = ce(mask[n_lm:, 1:])
    extra = ce(needle[n_lm:, 1:]) if needle is not None else 0
    return lm + task + extra, lm.detach(), task.detach()


# ------------------------------------------------------------------------------------------------------- training
def passkey_1x(model, seq_len: int, n: int, seed: int = 777) -> float:
    "Passkey accuracy at the training length on `n` documents (test-time learning on): the curve's recall point."
    tb = passkey_batch(seq_len, n, seed=seed)
    was = model.training; model.eval()
    acc = answer_accuracy(task_logits(model, tb.tokens, True, batch_size=n), tb.tokens, tb.mask)[0]
    model.train(was)
    return acc


def progress(step: int, steps: int, t_start: float, stop_at: float | None) -> float:
    "Share of the run done: of the steps, or of the time to `stop_at` when that is further along (the lr schedule's clock)."
    p = step / steps
    if stop_at is not None: p = max(p, (time.time() - t_start) / max(1e-9, stop_at - t_start))
    return min(1.0, p)


def curve_gates(model, doc) -> dict:
    "`analysis.memory_gates` of `model` on `doc` [1, t] in eval mode (then back to the mode it was in)."
    was = model.training; model.eval()
    try: return analysis.memory_gates(model, doc)
    finally: model.train(was)


def train_run(spec: dict, tokens: np.ndarray, stop_at: float | None = None, log=print, save=None) -> tuple[dict, HyperMnemosyne]:
    "Train one (arm, seed); returns (record without provenance, model). `save(rec)`, if given, is called after the evaluation too."
    t0 = time.time()
    dev = torch.device(spec['device'])
    torch.manual_seed(spec['seed'])
    cfg = arm_config(spec['arm'], spec['preset'], spec['window'], spec['mem_chunk'])
    model = HyperMnemosyne(cfg).to(dev)
    for m in model.modules():
        if isinstance(m, NeuralMemory): m.fast = bool(spec['mem_compile'])
    opt = MuonWithAdamW(model, muon_lr=spec['muon_lr'], adamw_lr=spec['adamw_lr'])
    base = [g['lr'] for g in opt.param_groups]
    B, T = spec['batch_size'], spec['seq_len']
    n_task = max(1, round(spec['task_frac'] * B)) if spec['task_frac'] > 0 else 0
    loader = TokenLoader(tokens, B - n_task, T - 1, seed=spec['seed'])
    rng = np.random.default_rng(spec['seed'] + 4242)
    curve, sums, done, t_train, skipped, first_bad = [], [0.0, 0.0, 0], 0, time.time(), 0, None
    gate_doc = passkey(T, 0.5, seed=31337).tokens           # the diagnostics' document, for the gates along the curve
    model.train()
    for step in range(spec['steps']):
        p = progress(step, spec['steps'], t_train, stop_at)
        if p >= 1: break
        f = (step + 1) / spec['warmup'] if step < spec['warmup'] else 0.1 + 0.45 * (1 + math.cos(math.pi * p))
        for g, b in zip(opt.param_groups, base): g['lr'] = b * f
        lm_ids = next(loader)
        empty = torch.empty(0, T, dtype=torch.bool)
        tk, tm, tn = task_rows(n_task, T, rng, spec['tasks']) if n_task else (empty.long(), empty, empty)
        ids = torch.cat([lm_ids, tk]).to(dev)
        no = torch.zeros(len(lm_ids), T, dtype=torch.bool)
        mask, needle = torch.cat([no, tm]).to(dev), torch.cat([no, tn]).to(dev)
        loss, lm, task = mixed_loss(model, ids, mask, len(lm_ids), needle if spec.get('needle_loss') else None)
        opt.zero_grad(set_to_none=True)
        done = step + 1
        if torch.isfinite(loss):
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if not torch.isfinite(loss) or not torch.isfinite(gn):        # a non-finite gradient would poison the weights
            skipped += 1; first_bad = first_bad or done
            if skipped <= 3: log(f'step {done}: non-finite loss or gradient, update skipped')
            if skipped >= spec['max_skips']: log(f'{skipped} updates skipped: training stopped'); break
            continue
        opt.step()
        sums[0] += lm.item(); sums[1] += task.item(); sums[2] += 1
        last = progress(done, spec['steps'], t_train, stop_at) >= 1
        if spec['eval_every'] and sums[2] and (done % spec['eval_every'] == 0 or last):
            pk = passkey_1x(model, T, spec['curve_n'])
            curve.append(dict(step=done, lm_loss=sums[0] / sums[2], task_loss=sums[1] / sums[2], passkey_1x=pk))
            if cfg.memory_layers: curve[-1]['gates'] = curve_gates(model, gate_doc)   # is the memory turned down?
            log(f"{spec['arm']} s{spec['seed']} step {done}: lm {sums[0] / sums[2]:.3f} task {sums[1] / sums[2]:.3f} passkey1x {pk:.2f}")
            sums = [0.0, 0.0, 0]
    train_s = time.time() - t_train
    model.eval()
    rec = dict(steps_done=done, complete=done == spec['steps'], skipped=skipped, first_skipped=first_bad, curve=curve, train_s=train_s, s_per_step=train_s / max(1, done),
               model=cfg.to_dict(), layout=cfg.block_layout(), params=sum(p.numel() for p in model.parameters()))
    rec['eval'] = memory_tasks(model, T, n=spec['eval_n'], batch_size=spec['eval_batch'])
    if 'zmqar' in spec['tasks']:          # MQAR as trained; the end-of-sequence layout is kept as the harder variant
        rec['eval']['mqar_end'] = dict(rec['eval']['mqar'], layout='end')
        rec['eval']['mqar'] = zmqar_eval(model, T, spec['eval_n'], spec['eval_batch'])
    rec['wall_s'] = time.time() - t0
    if save and cfg.memory_layers: save(rec)                   # the results are safe before the diagnostics run
    if cfg.memory_layers:
        doc = passkey(T, 0.5, seed=31337)
        rec['diagnostics'] = analysis.diagnostics(model, doc.tokens, doc.mask)
    rec['wall_s'] = time.time() - t0
    return rec, model


def run_name(s: dict) -> str: return f"{s['arm'].replace('+', '-')}_s{s['seed']}_n{s['steps']}"


def write_json(path: Path, obj: dict):
    tmp = path.with_name(path.name + f'.tmp{os.getpid()}')
    tmp.write_text(json.dumps(obj, indent=1) + '\n')
    os.replace(tmp, path)


# -------------------------------------------------------------------------------------------------------- the CLI
def parser():
    p = argparse.ArgumentParser(description='Length extrapolation (issue 16, study B): one JSON per arm and seed.')
    p.add_argument('--arms', default=','.join(ARMS), help=f'comma list of {",".join(ARMS)}')
    p.add_argument('--seeds', default='0', help='comma list of seeds')
    p.add_argument('--preset', default='small', help="HMConfig preset ('small'; 'tiny' for CPU smoke runs)")
    p.add_argument('--steps', type=int, default=2000)
    p.add_argument('--batch_size', type=int, default=16)
    p.add_argument('--seq_len', type=int, default=1024, help='training length (passkey is evaluated at 1x, 4x, 16x of it)')
    p.add_argument('--task_frac', type=float, default=1 / 3, help='share of each batch that is passkey/MQAR documents')
    p.add_argument('--needle_loss', action='store_true', help="also train on the passkey rows' needle sentences")
    p.add_argument('--tasks', default=TASKS[0], choices=TASKS, help="the task documents in the batch: passkey and "
                   "MQAR in Zoology's layout (zmqar), or in the package's with every query at the end (mqar), or passkey only")
    p.add_argument('--window', type=int, default=128, help='sliding window of the swa arms')
    p.add_argument('--mem_chunk', type=int, default=64, help='memory chunk of the +memory arms (hybrid keeps its preset)')
    p.add_argument('--mem_compile', action='store_true', help="the memory's chunk write through torch.compile (CUDA)")
    p.add_argument('--muon_lr', type=float, default=0.02)
    p.add_argument('--adamw_lr', type=float, default=3e-3)
    p.add_argument('--warmup', type=int, default=50)
    p.add_argument('--max_skips', type=int, default=50, help='stop training after this many non-finite steps')
    p.add_argument('--eval_every', type=int, default=100, help='curve point (LM loss, passkey at 1x) every K steps')
    p.add_argument('--curve_n', type=int, default=16, help='passkey documents per curve point')
    p.add_argument('--eval_n', type=int, default=16, help='documents per final evaluation (each length, each MQAR size)')
    p.add_argument('--eval_batch', type=int, default=4)
    p.add_argument('--max_corpus_mb', type=float, default=0, help='>0: only this many MB of the corpus (CPU smoke runs)')
    p.add_argument('--deadline', type=float, default=0, help='seconds from the start by which every run has written its JSON (0: none)')
    p.add_argument('--eval_reserve', type=float, default=120, help='seconds before the deadline at which training stops')
    p.add_argument('--device', default='auto')
    p.add_argument('--out', required=True, help='result folder, e.g. experiments/length/results/<set>')
    p.add_argument('--_child', help=argparse.SUPPRESS)
    p.add_argument('--_stop_at', type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument('--_tokens', help=argparse.SUPPRESS)
    return p


def fail(msg: str):
    print(f'run.py: error: {msg}', file=sys.stderr)
    sys.exit(2)


def validate(a):
    a.arms = [x for x in a.arms.split(',') if x]
    bad = [x for x in a.arms if x not in ARMS]
    if bad or not a.arms: fail(f'--arms: unknown {", ".join(bad) or "(none)"}; use {", ".join(ARMS)}')
    try: a.seeds = [int(s) for s in a.seeds.split(',') if s]
    except ValueError: fail(f'--seeds: expected comma-separated integers, got {a.seeds!r}')
    for name in ('steps', 'max_skips', 'batch_size', 'window', 'mem_chunk', 'eval_n', 'eval_batch', 'curve_n'):
        if getattr(a, name) < 1: fail(f'--{name} must be >= 1, got {getattr(a, name)}')
    if a.seq_len < 128: fail(f'--seq_len {a.seq_len}: a passkey document needs at least 128 tokens')
    if not 0 <= a.task_frac < 1: fail(f'--task_frac {a.task_frac}: must be in [0, 1)')
    if a.task_frac and round(a.task_frac * a.batch_size) >= a.batch_size: fail('--task_frac leaves no language-model row in the batch')
    if a.deadline < 0 or a.eval_reserve < 0: fail('--deadline and --eval_reserve must be >= 0')
    try: HMConfig.preset(a.preset)
    except ValueError as e: fail(f'--preset: {e}')
    if a.device == 'auto': a.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    elif a.device.startswith('cuda') and not torch.cuda.is_available(): fail(f'--device {a.device}: no CUDA device here; use cpu or auto')


def child_main(a):
    spec = json.loads(a._child)
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    tokens = np.load(a._tokens, mmap_mode='r')
    def save(rec):
        full = dict(spec, **rec, commit=source_commit(ROOT), command=os.environ.get('HM_LENGTH_COMMAND', ''),
                    gpu=torch.cuda.get_device_name(0) if spec['device'].startswith('cuda') else 'CPU', torch=torch.__version__,
                    finished=time.strftime('%Y-%m-%dT%H:%M:%S'))
        write_json(Path(a.out) / (run_name(spec) + '.json'), full)
    rec, _ = train_run(spec, tokens, a._stop_at, log=lambda m: print(m, flush=True), save=save)
    save(rec)


def parent_main(a, argv):
    t0 = time.time()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix='hm_length_'))
    np.save(tmp / 'tokens.npy', corpus_tokens(a.max_corpus_mb, tmp / 'cache'))
    specs = [dict(arm=arm, seed=s, preset=a.preset, steps=a.steps, batch_size=a.batch_size, seq_len=a.seq_len,
                  task_frac=a.task_frac, tasks=a.tasks, needle_loss=a.needle_loss, window=a.window, mem_chunk=a.mem_chunk, mem_compile=a.mem_compile,
                  muon_lr=a.muon_lr, adamw_lr=a.adamw_lr, warmup=a.warmup, max_skips=a.max_skips, eval_every=a.eval_every, curve_n=a.curve_n,
                  eval_n=a.eval_n, eval_batch=a.eval_batch, corpus='stdlib', max_corpus_mb=a.max_corpus_mb,
                  device=a.device, loss='LM CE on LM rows + answer CE on task rows', optimizer='MuonWithAdamW', schedule='linear warmup, cosine to 0.1x over the steps or the time to the training stop, whichever ends first')
             for arm in a.arms for s in a.seeds]
    todo = [s for s in specs if not (out / (run_name(s) + '.json')).exists()]
    print(f'{len(specs)} runs, {len(specs) - len(todo)} already done, {len(todo)} to run at once on {a.device} '
          f'(corpus ready after {time.time() - t0:.0f} s)', flush=True)
    cmd = ' '.join(shlex.quote(x) for x in [sys.executable, *argv])
    env = dict(os.environ, HM_LENGTH_COMMAND=cmd, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    env.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // max(1, len(todo)))))
    stop = t0 + a.deadline - a.eval_reserve if a.deadline else None
    procs = []
    for s in todo:
        args = [sys.executable, __file__, '--out', str(out), '--_child', json.dumps(s), '--_tokens', str(tmp / 'tokens.npy')]
        if stop: args += ['--_stop_at', str(stop)]
        log = open(out / f'{run_name(s)}.log', 'w')
        procs.append((subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, text=True), s, log))
    failed = 0
    for p, s, log in procs:
        p.wait(); log.close()
        ok = p.returncode == 0 and (out / (run_name(s) + '.json')).exists()
        failed += not ok
        print(f"{run_name(s)}: {'ok' if ok else 'FAILED (see ' + run_name(s) + '.log)'}", flush=True)
    print(f'done in {time.time() - t0:.0f} s, {failed} failed', flush=True)
    return 1 if failed else 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    a = parser().parse_args(argv)
    if a._child: return child_main(a)
    validate(a)
    return parent_main(a, [__file__, *argv])


if __name__ == '__main__':
    sys.exit(main() or 0)
