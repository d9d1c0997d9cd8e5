"""The ablation study: does each idea earn its place? One JSON per (arm, seed).

    python experiments/ablations/run.py --preset tiny --arms all --seeds 0,1 --steps 120 --jobs 2 \
        --out experiments/ablations/results/<set>

Every question compares arms that differ in one setting from a common base (`mhc`: no memory, mHC on, JEPA off, Muon +
AdamW): residual vs HC vs mHC (and a deep, high-learning-rate variant), Titans memory on vs off, LLM-JEPA on vs off,
Muon vs AdamW; same data order, token budget and seeds. The parent plans the (arm, seed) jobs and runs each as its own
worker process, `--jobs` at a time on one device (sharing changes a run's speed, never its steps, data or seed).
"""
from __future__ import annotations
import argparse, json, math, os, shlex, shutil, subprocess, sys, tempfile, time, traceback
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from hypermnemosyne.core import device_name, get_device, run_cli
from hypermnemosyne.data import ByteTokenizer, TaskBatch, load_corpus, load_tokenizer, mqar, passkey, tokenize_corpus
from hypermnemosyne.data import view_pairs
from hypermnemosyne.layers.jepa import make_view_batch
from hypermnemosyne.layers.mhc import HyperConnection, composite_gain
from hypermnemosyne.model import HMConfig, HyperMnemosyne
from hypermnemosyne.optim import MuonWithAdamW
from hypermnemosyne.train.checkpoint import read_metrics
from hypermnemosyne.train.loop import NonFiniteLoss, TrainConfig, lr_factor, train

QUESTIONS = {
    'hyper-connections': dict(arms=('residual', 'hc', 'mhc'), baseline='residual',
                              text='Residual vs HC vs mHC: validation bits per byte and composite gain over depth'),
    'deep': dict(arms=('deep_residual', 'deep_hc', 'deep_mhc'), baseline='deep_residual',
                 text='Deep (>= 48 sublayers) at a high learning rate: stability of residual, HC and mHC'),
    'memory': dict(arms=('mhc', 'memory'), baseline='mhc',
                   text='Titans memory on vs off: val bpb, passkey at 1x/4x/16x the training length, MQAR, ttl on/off'),
    'jepa': dict(arms=('mhc', 'jepa'), baseline='mhc',
                 text='LLM-JEPA on vs off: val bpb and docstring -> code retrieval'),
    'optimizer': dict(arms=('adamw', 'mhc'), baseline='adamw', text='Muon (+AdamW for the rest) vs AdamW only'),
}
ARMS = ('residual', 'hc', 'mhc', 'deep_residual', 'deep_hc', 'deep_mhc', 'memory', 'jepa', 'adamw')
HERE = Path(__file__).resolve().parent
RESULTS = HERE / 'results'

# The recorded GPU sets (results/gpu-small: run once per seed, --seeds 0 then --seeds 1; results/gpu-small-task400:
# the memory question with a 4x longer task phase, cosine decay and half the learning rates). Run from the repository
# root; the `--work` run directories (checkpoints, logs) stay out of the results.
GPU_COMMAND = ('python experiments/ablations/run.py --preset small --arms all --seeds 0 --steps 300 --deep_steps 150 '
               '--deadline_s 275 --batch_size 16 --seq_len 256 --jobs 9 '
               '--task_steps 100 --task_n 16 --retrieval_n 200 --eval_batches 16 --n_evals 6 '
               '--out experiments/ablations/results/gpu-small')
GPU_TASK_COMMAND = ('python experiments/ablations/run.py --preset small --arms memory,mhc --seeds 0,1 --steps 300 '
                    '--deadline_s 450 --batch_size 16 --seq_len 256 --jobs 4 '
                    '--task_steps 400 --task_schedule cosine --task_lr_mult 0.5 --task_n 32 --retrieval_n 200 '
                    '--eval_batches 16 --n_evals 3 --out experiments/ablations/results/gpu-small-task400')


# ------------------------------------------------------------------------------------------------------------ arms
def arm_questions(arm: str) -> list[str]:
    "The questions an arm takes part in."
    return [q for q, d in QUESTIONS.items() if arm in d['arms']]


def arm_spec(arm: str, preset: str, deep_layers: int = 24, deep_lr_mult: float = 4.0) -> dict:
    """What defines `arm`: `model` (HMConfig overrides), `train` (TrainConfig overrides) and `lr_mult`.
    Unknown arms raise a `ValueError` listing the known ones."""
    if arm not in ARMS: raise ValueError(f'unknown arm {arm!r}; choose from {ARMS}')
    model, train_over, lr_mult = dict(memory_layers=[], mhc_mode='mhc'), {}, 1.0
    if arm in ('residual', 'hc'): model['mhc_mode'] = arm
    if arm.startswith('deep_'):
        if deep_layers < 24:
            raise ValueError(f'deep_layers={deep_layers}: the deep arms need >= 24 blocks (>= 48 sublayers)')
        model.update(mhc_mode=arm[5:], n_layers=deep_layers); lr_mult = deep_lr_mult
    if arm == 'memory':
        base = HMConfig.preset(preset)
        model['memory_layers'] = list(base.memory_layers) or [base.n_layers // 2]
    if arm == 'jepa': train_over['jepa'] = True
    if arm == 'adamw': train_over['optimizer'] = 'adamw'
    return dict(model=model, train=train_over, lr_mult=lr_mult)


# ----------------------------------------------------------------------------------------------------- evaluations
def _view_states(model, pairs, tokenizer, max_len, batch_size):
    "Final hidden states: Pred(doc) at the last `<pred>`, Enc(doc) at the doc's last token, Enc(code) at its last."
    dev = next(model.parameters()).device
    E_doc, P_doc, E_code = [], [], []
    for i in range(0, len(pairs), batch_size):
        vb = make_view_batch(pairs[i:i + batch_size], tokenizer, k_pred=model.config.jepa_k_pred, max_len=max_len)
        P = vb.n_pairs
        h = model(vb.ids.to(dev), return_hidden=True).hidden.float()
        ar = torch.arange(P, device=dev)
        P_doc.append(h[ar, vb.pred_pos.to(dev)])
        E_doc.append(h[ar, (vb.pred_pos - vb.k_pred).to(dev)])
        E_code.append(h[P + ar, vb.enc_pos.to(dev)])
    return (F.normalize(torch.cat(x), dim=-1) for x in (E_doc, P_doc, E_code))


def _topk_hits(queries, keys) -> tuple[float, float]:
    "Share of queries whose own key (same row) is the nearest by cosine, and among the 5 nearest."
    sim = queries @ keys.T
    rank = (sim > sim.diagonal()[:, None]).sum(1)          # how many keys beat the true one
    return float((rank < 1).float().mean()), float((rank < 5).float().mean())


@torch.no_grad()
def retrieval_accuracy(model, pairs, tokenizer, max_len: int, batch_size: int = 32) -> dict:
    """Docstring -> code retrieval from embeddings: top-1/top-5 accuracy of cosine nearest neighbours among the N pairs,
    for Enc(doc) (hidden state at its last token) and Pred(doc) (at its last `<pred>` token). `pairs`: (doc, code)
    strings, each view cut to its first `max_len` tokens (docstrings to `max_len - k_pred`)."""
    if len(pairs) < 2: raise ValueError(f'retrieval needs at least 2 pairs, got {len(pairs)}')
    was = model.training; model.eval()
    try: E_doc, P_doc, E_code = _view_states(model, pairs, tokenizer, max_len, batch_size)
    finally: model.train(was)
    (e1, e5), (p1, p5) = _topk_hits(E_doc, E_code), _topk_hits(P_doc, E_code)
    n = E_code.shape[0]
    return dict(n=n, chance=1 / n, enc_top1=e1, enc_top5=e5, pred_top1=p1, pred_top5=p5)


@torch.no_grad()
def composite_gains(model, ids: torch.Tensor) -> dict | None:
    "`mhc.composite_gain` over depth of `model` on `ids` (`{'mean': {...}, 'max': {...}}`), None for a residual model."
    hcs = [m for m in model.modules() if isinstance(m, HyperConnection) and m.mode != 'residual']
    if not hcs: return None
    was = model.training; model.eval()
    for m in hcs: m.record = True
    try:
        model(ids.to(next(model.parameters()).device))
        return {red: composite_gain(hcs, reduce=red) for red in ('mean', 'max')}
    finally:
        for m in hcs: m.record, m.last = False, None
        model.train(was)


@torch.no_grad()
def task_logits(model, ids: torch.Tensor, ttl: bool = True, batch_size: int = 4) -> torch.Tensor:
    "fp32 logits of `ids` run through a fresh `ModelState` (the memory writes iff `ttl`), in batches, on the CPU."
    dev = next(model.parameters()).device
    outs = []
    for i in range(0, ids.shape[0], batch_size):
        x = ids[i:i + batch_size].to(dev)
        state = model.init_state(x.shape[0]); state.ttl = ttl
        outs.append(model(x, state=state).logits.float().cpu())
    return torch.cat(outs)


def answer_accuracy(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """`(sequence accuracy, token accuracy)` of teacher-forced argmax predictions on the `mask`ed answer tokens.
    A row whose logits are not all finite counts as wrong everywhere (argmax of NaN would pick an arbitrary token)."""
    if logits.shape[:2] != tokens.shape or mask.shape != tokens.shape:
        raise ValueError(f'logits {tuple(logits.shape)}, tokens {tuple(tokens.shape)} and mask {tuple(mask.shape)} '
                         'must agree on [batch, seq]')
    fin = torch.isfinite(logits).flatten(1).all(1)
    pred = logits[:, :-1].argmax(-1); tgt, m = tokens[:, 1:], mask[:, 1:]
    hit = (pred == tgt) & fin[:, None]
    ok = hit | ~m
    return float(ok.all(1).float().mean()), float((hit & m).sum() / m.sum().clamp(min=1))


def passkey_batch(length: int, n: int, seed: int, tokenizer=None) -> TaskBatch:
    "`n` passkey rows of `length` tokens, depths spread evenly over [0.05, 0.95], keys drawn from `seed`."
    depths = np.linspace(0.05, 0.95, n) if n > 1 else [0.5]
    bs = [passkey(length, float(d), seed=seed * 1000 + i, tokenizer=tokenizer) for i, d in enumerate(depths)]
    return TaskBatch(torch.cat([b.tokens for b in bs]), torch.cat([b.mask for b in bs]))


def mqar_pairs_for(seq_len: int) -> list[int]:
    "Numbers of key-value pairs that fit MQAR (all keys queried) at `seq_len` over the byte vocabulary."
    return [p for p in (4, 8, 16, 32, 64) if 4 * p <= seq_len]


def task_kind(step: int, seq_len: int) -> str:
    "The task of task-phase step `step`: passkey on even steps, MQAR on odd ones (when MQAR fits `seq_len`)."
    return 'passkey' if step % 2 == 0 or not mqar_pairs_for(seq_len) else 'mqar'


def _task_batch(step: int, seq_len: int, batch_size: int, rng) -> TaskBatch:
    if task_kind(step, seq_len) == 'passkey':
        return passkey_batch(seq_len, batch_size, seed=int(rng.integers(1 << 30)))
    p = int(rng.choice(mqar_pairs_for(seq_len)))
    return mqar(p, p, 256, seq_len=seq_len, batch_size=batch_size, seed=int(rng.integers(1 << 30)))


def task_finetune(model, steps: int, seq_len: int, batch_size: int, seed: int, muon_lr: float, adamw_lr: float,
                  schedule: str = 'constant') -> list[float]:
    """The task phase: `steps` of answer-only CE on alternating passkey / MQAR batches at `seq_len` (Muon + AdamW, 10%
    warmup, then `schedule` as in `lr_factor`: 'constant', or 'cosine' which decays to 10%). Returns the losses; a
    non-finite loss or gradient skips its update and is logged as NaN."""
    if steps <= 0: return []
    dev = next(model.parameters()).device
    opt = MuonWithAdamW(model, muon_lr=muon_lr, adamw_lr=adamw_lr)
    base = [g['lr'] for g in opt.param_groups]
    rng = np.random.default_rng(seed + 12345)
    model.train(); losses = []
    for s in range(steps):
        f = lr_factor(s, steps, warmup=max(1, steps // 10), schedule=schedule)
        for g, b in zip(opt.param_groups, base): g['lr'] = b * f
        tb = _task_batch(s, seq_len, batch_size, rng)
        ids, m = tb.tokens.to(dev), tb.mask.to(dev)
        loss = F.cross_entropy(model(ids).logits[:, :-1][m[:, 1:]].float(), ids[:, 1:][m[:, 1:]])
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]): continue
        loss.backward()
        if torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)): opt.step()
        else: losses[-1] = float('nan')
    model.eval()
    return losses


def _nonfinite_rows(logits) -> int: return int((~torch.isfinite(logits).flatten(1).all(1)).sum())


def _max_finite_diff(a, b) -> float | None:
    d = (a - b).abs()
    return float(d[torch.isfinite(d)].max()) if torch.isfinite(d).any() else None


def memory_tasks(model, seq_len: int, n: int = 16, seed: int = 10_000, batch_size: int = 4) -> dict:
    """Passkey at 1x/4x/16x `seq_len` and MQAR vs pairs at `seq_len`, with test-time learning on and (for a memory
    model) off; `ttl_logit_diff`: how far switching it off moves the logits. Seeds are disjoint from the task
    phase's."""
    has_mem = bool(model.config.memory_layers)
    settings = (True, False) if has_mem else (True,)
    out = dict(passkey=dict(lengths=[], acc={}, digit_acc={}), mqar=dict(n_pairs=mqar_pairs_for(seq_len), acc={}),
               ttl_logit_diff=None, nonfinite_rows=0)
    for mult in (1, 4, 16):
        tb = passkey_batch(mult * seq_len, n, seed=seed + mult)
        out['passkey']['lengths'].append(mult * seq_len)
        for ttl in settings:
            lg = task_logits(model, tb.tokens, ttl, batch_size)
            a, d = answer_accuracy(lg, tb.tokens, tb.mask)
            k = 'ttl_on' if ttl else 'ttl_off'
            out['nonfinite_rows'] += _nonfinite_rows(lg)
            out['passkey']['acc'].setdefault(k, []).append(a); out['passkey']['digit_acc'].setdefault(k, []).append(d)
            if ttl and has_mem and mult == 4:
                out['ttl_logit_diff'] = _max_finite_diff(lg[:2], task_logits(model, tb.tokens[:2], False, batch_size))
    for p in out['mqar']['n_pairs']:
        tb = mqar(p, p, 256, seq_len=seq_len, batch_size=n, seed=seed + p)
        for ttl in settings:
            lg = task_logits(model, tb.tokens, ttl, batch_size)
            out['nonfinite_rows'] += _nonfinite_rows(lg)
            acc = answer_accuracy(lg, tb.tokens, tb.mask)[1]
            out['mqar']['acc'].setdefault('ttl_on' if ttl else 'ttl_off', []).append(acc)
    return out


# ----------------------------------------------------------------------------------------------- one arm, one seed
def _thin(rows, key, k):
    "`[step, row[key]]` of every k-th row, plus the last row."
    pts = [[r['step'], r[key]] for r in rows[::k]]
    return pts + ([[rows[-1]['step'], rows[-1][key]]] if rows and (len(rows) - 1) % k else [])


def read_curve(run_dir, max_points: int = 300) -> dict:
    """The logged curves of a run directory, thinned to about `max_points`: `train` [step, loss], `val` [step, loss,
    bpb], `grad_norm`, and for the JEPA arm its loss `jepa` and collapse monitor `mean_pairwise_cos`."""
    try: tr, ev = read_metrics(run_dir)
    except ValueError: return dict(train=[], val=[])
    k = max(1, math.ceil(len(tr) / max_points))
    c = dict(train=_thin(tr, 'loss', k), val=[[r['step'], r['val_loss'], r['val_bpb']] for r in ev],
             grad_norm=[[r['step'], r['grad_norm']] for r in tr[::k]])
    for key in ('jepa', 'mean_pairwise_cos'):
        if tr and key in tr[0]: c[key] = _thin(tr, key, k)
    return c


def _train_config(arm, spec, a, seed, run_dir, n_steps, m_lr, a_lr, dev) -> TrainConfig:
    eval_every = max(1, n_steps // a.n_evals) if a.n_evals > 0 else a.eval_every
    return TrainConfig(preset=a.preset, model={**spec['model'], 'mem_max_grad_norm': a.mem_max_grad_norm or None},
                       out=str(run_dir), steps=n_steps, batch_size=a.batch_size, seq_len=a.seq_len, muon_lr=m_lr,
                       adamw_lr=a_lr, warmup=max(1, n_steps // 10), eval_every=eval_every,
                       eval_batches=a.eval_batches, ckpt_every=0, keep_last=1, seed=seed, corpus=a.corpus,
                       max_corpus_mb=a.max_corpus_mb, device=str(dev), progress=False, **spec['train'])


def _evaluate(model, res, write, a, cfg, run_dir, seed):
    "The evaluations of a trained arm; one that raises is recorded as `<key>_error`, the others still run."
    tok = ByteTokenizer() if cfg.tokenizer == 'byte' else load_tokenizer(run_dir / 'tokenizer')
    ds = load_corpus(a.corpus)
    val = tokenize_corpus(ds['validation'], tok)
    ids = torch.from_numpy(np.asarray(val[:2 * a.seq_len], dtype=np.int64)).view(2, a.seq_len)
    def safe(key, fn):
        try: res[key] = fn()
        except Exception as e: res[f'{key}_error'] = f'{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}'
        write()
    safe('composite_gain', lambda: composite_gains(model, ids))
    pairs = view_pairs(ds['validation'])
    pairs = [pairs[i] for i in np.random.default_rng(0).permutation(len(pairs))[:a.retrieval_n]]
    safe('retrieval', lambda: retrieval_accuracy(model, pairs, tok, max_len=a.seq_len) if len(pairs) >= 2 else None)
    if 'memory' in res['questions'] and a.task_steps > 0:
        safe('tasks', lambda: _task_phase(model, a, seed, res['muon_lr'], res['adamw_lr']))


def _task_phase(model, a, seed, m_lr, a_lr) -> dict:
    tl = task_finetune(model, a.task_steps, a.seq_len, a.batch_size, seed, m_lr * a.task_lr_mult,
                       a_lr * a.task_lr_mult, schedule=a.task_schedule)
    curve = {k: [[s, x] for s, x in enumerate(tl) if task_kind(s, a.seq_len) == k] for k in ('passkey', 'mqar')}
    return dict(task_steps=a.task_steps, task_schedule=a.task_schedule, task_lr_mult=a.task_lr_mult,
                task_curve={k: c[::max(1, len(c) // 50)] for k, c in curve.items()},   # [step, loss] per task
                task_nonfinite_steps=sum(not math.isfinite(x) for x in tl),
                **memory_tasks(model, a.seq_len, n=a.task_n))


def run_arm(arm: str, seed: int, a: argparse.Namespace) -> dict:
    """Train and evaluate one arm with one seed (settings: the parsed CLI arguments `a`); returns the result and writes
    it to `a.out/<arm>_seed<seed>.json`. A run whose loss turns non-finite is recorded as `status: "diverged"` with
    its curve up to there (for the deep arms that is a result, not an error)."""
    spec = arm_spec(arm, a.preset, a.deep_layers, a.deep_lr_mult)
    out, run_dir = Path(a.out), Path(a.work) / f'{arm}_seed{seed}'
    out.mkdir(parents=True, exist_ok=True)
    n_steps = (a.deep_steps or a.steps) if arm.startswith('deep_') else a.steps
    dev, defaults = get_device(a.device), TrainConfig()
    m_lr, a_lr = defaults.muon_lr * spec['lr_mult'], defaults.adamw_lr * spec['lr_mult']
    res = dict(arm=arm, seed=seed, preset=a.preset, questions=arm_questions(arm), device=device_name(dev),
               steps=n_steps, batch_size=a.batch_size, seq_len=a.seq_len, tokens=n_steps * a.batch_size * a.seq_len,
               model_overrides=spec['model'], train_overrides=spec['train'], muon_lr=m_lr, adamw_lr=a_lr,
               mem_max_grad_norm=(a.mem_max_grad_norm or None) if spec['model'].get('memory_layers') else None,
               status='ok', reason='', created=time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))
    path = out / f'{arm}_seed{seed}.json'
    def write():
        tmp = path.with_suffix('.tmp'); tmp.write_text(json.dumps(res, indent=1)); os.replace(tmp, path)
        return res
    if run_dir.exists(): shutil.rmtree(run_dir)
    cfg = _train_config(arm, spec, a, seed, run_dir, n_steps, m_lr, a_lr, dev)
    keep, t0 = {}, time.time()
    try: s = train(cfg, callback=lambda step, row, model: keep.update(model=model))
    except NonFiniteLoss as e:
        res.update(status='diverged', reason=str(e), curve=read_curve(run_dir), train_wall_s=round(time.time() - t0, 2))
        return write()
    res.update(train_wall_s=round(time.time() - t0, 2), val_loss=s.get('val_loss'), val_bpb=s.get('val_bpb'),
               final_train_loss=s.get('loss'), params=s.get('params'), tokens_per_s=s.get('tokens_per_s'),
               curve=read_curve(run_dir))
    t1 = time.time()
    _evaluate(keep['model'].eval(), res, write, a, cfg, run_dir, seed)
    res['eval_wall_s'] = round(time.time() - t1, 2)
    return write()


# ---------------------------------------------------------------------------------------------------------- probes
def _probe_model(arm, preset, batch_size, seq_len, dev, deep_layers, deep_lr_mult):
    "A model of `arm`, its optimizer and one optimizer step on random tokens (JEPA: with 4 random view pairs)."
    spec = arm_spec(arm, preset, deep_layers, deep_lr_mult)
    torch.manual_seed(0)
    over = dict(spec['model'], **({'jepa_weight': 1.0} if spec['train'].get('jepa') else {}))
    model = HyperMnemosyne(HMConfig.preset(preset, **over)).to(dev).train()
    opt = (torch.optim.AdamW(model.parameters(), lr=1e-3) if spec['train'].get('optimizer') == 'adamw'
           else MuonWithAdamW(model, muon_lr=0.01, adamw_lr=1e-3))
    ids = torch.randint(0, 256, (batch_size, seq_len + 1), device=dev)
    views = None
    if spec['train'].get('jepa'):
        pairs = [(torch.randint(0, 256, (seq_len,)).tolist(), torch.randint(0, 256, (seq_len,)).tolist())
                 for _ in range(4)]
        views = model.make_views(pairs, max_len=seq_len).to(dev)
    def one_step():
        loss, _ = model.loss(ids, views)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        if dev.type == 'cuda': torch.cuda.synchronize(dev)
    return one_step


def _timed(step) -> tuple[float, float]:
    t0 = time.time(); step(); return t0, time.time()


def probe_step_time(arm: str, preset: str, batch_size: int, seq_len: int, device=None, n: int = 6,
                    deep_layers: int = 24, deep_lr_mult: float = 4.0, window: tuple | None = None) -> float:
    """Seconds per optimizer step (fwd + bwd + optimizer step) of `arm` on random tokens, median of `n` after 2 warm-up
    steps. `window=(start_at, end_at)` (`time.time()` values), for probes in several processes at once: after its
    warm-up the probe keeps stepping until `end_at` and returns the median of the steps wholly inside the window; a
    probe not warmed up by `start_at` raises (it would have measured a less crowded device)."""
    step = _probe_model(arm, preset, batch_size, seq_len, get_device(device), deep_layers, deep_lr_mult)
    for _ in range(2): step()                               # warm-up (kernel compilation, allocator)
    if window is None: return float(np.median([t1 - t0 for t0, t1 in (_timed(step) for _ in range(n))]))
    start_at, end_at = window
    if time.time() > start_at:
        late = time.time() - start_at
        raise RuntimeError(f'{arm}: probe warmed up {late:.1f} s after the common start: raise lead_s')
    ts = []
    while True:
        t0, t1 = _timed(step)
        if t1 > end_at: break
        if t0 >= start_at: ts.append(t1 - t0)
    if not ts: raise RuntimeError(f'{arm}: no step fitted in the {end_at - start_at:.0f} s window: raise window_s')
    return float(np.median(ts))


def probe_concurrent(arms: list, preset: str, batch_size: int, seq_len: int, device=None, threads: int = 1,
                     lead_s: float = 60.0, window_s: float = 20.0, deep_layers: int = 24,
                     deep_lr_mult: float = 4.0) -> list[float]:
    """Step times measured in several processes at once (fresh interpreters, as the workers are), one per entry of
    `arms` (say the first wave's jobs, so the mix of heavy and light arms is the real one). All time the same window,
    from `lead_s` to `lead_s + window_s` seconds after launch, stepping all the while."""
    start_at = time.time() + lead_s
    common = ['--preset', preset, '--batch_size', str(batch_size), '--seq_len', str(seq_len), '--threads', str(threads),
              '--deep_layers', str(deep_layers), '--deep_lr_mult', str(deep_lr_mult),
              '--probe_window', f'{start_at},{start_at + window_s}'] + (['--device', device] if device else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    ps = [subprocess.Popen([sys.executable, __file__, '--probe', arm, *common], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=env) for arm in arms]
    out = []
    for p in ps:
        txt = p.communicate()[0]
        lines = [l for l in txt.splitlines() if l.startswith('STEP ')]
        if p.returncode or not lines:
            raise RuntimeError(f'a concurrent probe failed (exit {p.returncode}):\n{txt[-2000:]}')
        out.append(float(lines[-1].split()[1]))
    return out


# ------------------------------------------------------------------------------------------------------ the runner
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='experiments/ablations/run.py',
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description='Run the ablation arms (same data, token budget and seeds per question); '
                                            'one JSON per arm and seed.')
    p.add_argument('--preset', default='tiny')
    p.add_argument('--arms', default='all', help=f'comma list from {",".join(ARMS)}, or "all"')
    p.add_argument('--seeds', default='0,1', help='comma list of seeds')
    p.add_argument('--out', default=str(RESULTS / 'run'), help='directory for the result JSONs and plan.json')
    p.add_argument('--work', default=None, help='run directories and worker logs (default: a folder in the temp dir)')
    p.add_argument('--budget_s', type=float, default=60.0, help='seconds per arm (alone) when --steps is 0')
    p.add_argument('--steps', type=int, default=0, help='optimizer steps per arm (0: from --budget_s by a probe)')
    p.add_argument('--deep_steps', type=int, default=0, help='steps of the deep arms (0: from --budget_s by a probe)')
    p.add_argument('--fill', type=float, default=0.6, help='share of budget_s for training (the rest: startup, eval)')
    p.add_argument('--slowdown', type=float, default=1.0,
                   help='step time with --jobs workers at once / alone, for budget mode (0: measure it by a probe)')
    p.add_argument('--deadline_s', type=float, default=0.0,
                   help='>0: kill running workers and skip pending jobs this many seconds after the start')
    p.add_argument('--batch_size', type=int, default=8)
    p.add_argument('--seq_len', type=int, default=128)
    p.add_argument('--jobs', type=int, default=1, help='worker processes at a time')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads per worker')
    p.add_argument('--device', default=None)
    p.add_argument('--deep_layers', type=int, default=24)
    p.add_argument('--deep_lr_mult', type=float, default=4.0)
    p.add_argument('--eval_batches', type=int, default=4)
    p.add_argument('--eval_every', type=int, default=0, help='validation every k steps (0: at the end only)')
    p.add_argument('--n_evals', type=int, default=0, help='>0: this many validations spread over the run')
    p.add_argument('--task_steps', type=int, default=0, help='task-phase steps of the memory-question arms (0: none)')
    p.add_argument('--task_n', type=int, default=16, help='sequences per passkey length / MQAR size')
    p.add_argument('--task_schedule', default='constant', choices=('constant', 'cosine'),
                   help='task-phase learning rate after the 10%% warmup')
    p.add_argument('--task_lr_mult', type=float, default=1.0, help="task-phase lr as a multiple of the arm's")
    p.add_argument('--retrieval_n', type=int, default=64)
    p.add_argument('--max_corpus_mb', type=float, default=0.0)
    p.add_argument('--corpus', default='stdlib')
    p.add_argument('--mem_max_grad_norm', type=float, default=1.0,
                   help="clip of the memory's per-token inner gradient (0: no clip, which diverged on the CPU)")
    p.add_argument('--worker', default=None, help=argparse.SUPPRESS)          # ARM:SEED, run by the scheduler
    p.add_argument('--probe', default=None, help=argparse.SUPPRESS)           # ARM, run by probe_concurrent
    p.add_argument('--probe_window', default=None, help=argparse.SUPPRESS)
    return p

RUN_KEYS = ('preset', 'steps', 'batch_size', 'seq_len', 'device', 'deep_layers', 'deep_lr_mult', 'deep_steps',
            'eval_batches', 'eval_every', 'n_evals', 'task_steps', 'task_n', 'task_schedule', 'task_lr_mult',
            'retrieval_n', 'max_corpus_mb', 'corpus', 'mem_max_grad_norm')


def check_args(a) -> tuple[list[str], list[int]]:
    "The arms and seeds of the parsed arguments `a`; a `ValueError` naming the argument for anything that cannot run."
    arms = list(ARMS) if a.arms == 'all' else [x.strip() for x in a.arms.split(',') if x.strip()]
    bad = [x for x in arms if x not in ARMS]
    if bad or not arms: raise ValueError(f'--arms: unknown {bad or "(empty)"}; choose from {",".join(ARMS)} or "all"')
    try: seeds = [int(s) for s in str(a.seeds).split(',') if s.strip()]
    except ValueError: raise ValueError(f'--seeds {a.seeds!r}: expected a comma list of integers, e.g. 0,1') from None
    if not seeds: raise ValueError('--seeds: give at least one seed, e.g. --seeds 0,1')
    if a.jobs < 1: raise ValueError(f'--jobs {a.jobs}: must be >= 1')
    if a.steps < 0 or a.deep_steps < 0: raise ValueError('--steps/--deep_steps must be >= 0 (0: from --budget_s)')
    if (a.steps == 0 or (a.deep_steps == 0 and any(x.startswith('deep_') for x in arms))) and not a.budget_s > 0:
        raise ValueError('--budget_s must be > 0 when --steps or --deep_steps is 0')
    return arms, seeds


def _cost(arm: str) -> int:
    "Rough relative cost of an arm's job, so that the longest start first (deep: 3x the blocks; memory, JEPA: 2x)."
    return (3 if arm.startswith('deep_') else 1) * (2 if arm in ('memory', 'jepa') else 1)


def _probe(a, arm) -> float:
    return probe_step_time(arm, a.preset, a.batch_size, a.seq_len, a.device, deep_layers=a.deep_layers,
                           deep_lr_mult=a.deep_lr_mult)


def size_steps(a, arms: list, jobs: list) -> dict:
    """Budget mode: set `a.steps` (and `a.deep_steps`) from probes when they are 0, so that the slowest arm of each
    group (base arms, deep arms) trains `budget_s * fill` seconds; with `--slowdown 0` the slowdown of `--jobs` workers
    sharing the device is measured too. Returns the probed step times."""
    probes = {}
    need_deep = any(x.startswith('deep_') for x in arms) and a.deep_steps == 0
    group = [x for x in ('mhc', 'memory', 'jepa', 'adamw', 'hc', 'residual') if x in arms] if a.steps == 0 else []
    for x in group + (['deep_mhc', 'deep_hc'] if need_deep else []):
        probes[x] = _probe(a, x); print(f'probe {x}: {probes[x]:.4f} s/step alone', flush=True)
    if (group or need_deep) and a.slowdown == 0:
        wave = [x for x, _ in jobs[:a.jobs]]                # the first wave as it will run
        for x in wave: probes.setdefault(x, _probe(a, x))
        conc = probe_concurrent(wave, a.preset, a.batch_size, a.seq_len, a.device, a.threads,
                                deep_layers=a.deep_layers, deep_lr_mult=a.deep_lr_mult)
        a.slowdown = max(1.0, float(np.median([c / probes[x] for x, c in zip(wave, conc)])))
        probes['concurrent'] = dict(zip([f'{x}#{i}' for i, x in enumerate(wave)], conc))
        print(f'probe: {len(wave)} processes at once: slowdown {a.slowdown:.2f}', flush=True)
    a.slowdown = a.slowdown or 1.0
    if group: a.steps = max(10, int(a.budget_s * a.fill / (max(probes[x] for x in group) * a.slowdown)))
    if need_deep:
        t = max(probes['deep_mhc'], probes['deep_hc'])
        a.deep_steps = max(10, int(a.budget_s * a.fill / (t * a.slowdown)))
    a.deep_steps = a.deep_steps or a.steps
    return probes


def _write_not_run(a, arm, seed, reason):
    res = dict(arm=arm, seed=seed, preset=a.preset, status='not_run', reason=reason, questions=arm_questions(arm))
    (Path(a.out) / f'{arm}_seed{seed}.json').write_text(json.dumps(res, indent=1))


def _finish(a, key, p, started, t0):
    "Report a finished worker; a worker that wrote no JSON gets one with status 'failed' and its log's tail."
    arm, s = key
    f, log = Path(a.out) / f'{arm}_seed{s}.json', Path(a.work) / f'{arm}_seed{s}.log'
    if f.exists(): st = json.loads(f.read_text()).get('status')
    else:
        st = f'failed (exit {p.returncode}; see {log})'
        f.write_text(json.dumps(dict(arm=arm, seed=s, preset=a.preset, status='failed', reason=log.read_text()[-3000:],
                                     questions=arm_questions(arm)), indent=1))
    print(f'[{time.time() - t0:6.1f}s] {arm} seed {s}: {st} ({time.time() - started:.1f}s)', flush=True)


def schedule(a, jobs: list, t_start: float):
    "Run `jobs` ((arm, seed) pairs) as worker processes, `a.jobs` at a time, until done or `a.deadline_s`."
    work = Path(a.work)
    cmd = [sys.executable, __file__, '--out', a.out, '--work', a.work, '--threads', str(a.threads)]
    cmd += [x for k in RUN_KEYS if getattr(a, k) is not None for x in (f'--{k}', str(getattr(a, k)))]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), PYTHONUNBUFFERED='1')
    pending, running, t0 = list(jobs), {}, time.time()
    deadline = t_start + a.deadline_s if a.deadline_s > 0 else None
    while pending or running:
        if deadline is not None and time.time() > deadline:
            for (arm, s), (p, log, _) in running.items():
                p.kill(); p.wait(); log.write(f'\nkilled at the deadline ({a.deadline_s} s)\n'.encode())
            for arm, s in pending:
                _write_not_run(a, arm, s, f'not started before the deadline ({a.deadline_s} s)')
                print(f'{arm} seed {s}: not started (deadline)', flush=True)
            pending = []
        while pending and len(running) < a.jobs:
            arm, s = pending.pop(0)
            log = open(work / f'{arm}_seed{s}.log', 'wb')
            p = subprocess.Popen(cmd + ['--worker', f'{arm}:{s}'], stdout=log, stderr=subprocess.STDOUT, env=env)
            running[(arm, s)] = (p, log, time.time())
        time.sleep(0.5)
        for key, (p, log, started) in list(running.items()):
            if p.poll() is None: continue
            log.close(); del running[key]
            _finish(a, key, p, started, t0)


def run_ablations(a: argparse.Namespace, argv: list) -> dict:
    "Plan the (arm, seed) jobs, size their steps, run them; returns the plan (also written to `out/plan.json`)."
    arms, seeds = check_args(a)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    a.work = a.work or str(Path(tempfile.gettempdir()) / f'ablation-runs-{out.name}')
    Path(a.work).mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    jobs = sorted([(arm, s) for arm in arms for s in seeds], key=lambda j: (seeds.index(j[1]), -_cost(j[0])))
    probes = size_steps(a, arms, jobs)
    plan = {k: getattr(a, k) for k in RUN_KEYS + ('budget_s', 'slowdown', 'fill', 'threads', 'deadline_s')}
    plan.update(probe_s=round(time.time() - t_start, 1), arms=arms, seeds=seeds, jobs=[f'{x}:{s}' for x, s in jobs],
                jobs_parallel=a.jobs, probes_s_per_step=probes, argv=list(argv),
                command=shlex.join(['python', 'experiments/ablations/run.py', *argv]),
                device_name=device_name(get_device(a.device)))
    (out / 'plan.json').write_text(json.dumps(plan, indent=1))
    print(f'ablations: {len(jobs)} jobs, {a.jobs} at a time; steps {a.steps} (deep {a.deep_steps}) x batch '
          f'{a.batch_size} x seq {a.seq_len}', flush=True)
    t0 = time.time()
    schedule(a, jobs, t_start)
    plan['wall_s'] = round(time.time() - t0, 1)
    (out / 'plan.json').write_text(json.dumps(plan, indent=1))
    print(f'ablations: done in {plan["wall_s"]}s -> {out}', flush=True)
    return plan


def _main(a, argv) -> int:
    torch.set_num_threads(a.threads)
    if a.probe:
        window = tuple(float(x) for x in a.probe_window.split(',')) if a.probe_window else None
        print('STEP', probe_step_time(a.probe, a.preset, a.batch_size, a.seq_len, a.device, deep_layers=a.deep_layers,
                                      deep_lr_mult=a.deep_lr_mult, window=window), flush=True)
    elif a.worker:
        arm, seed = a.worker.split(':')
        run_arm(arm, int(seed), a)
    else: run_ablations(a, argv)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_cli(parser(), lambda a: _main(a, argv), argv)


if __name__ == '__main__':
    sys.exit(main())
