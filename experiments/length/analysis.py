"""Study B of issue 16 (length extrapolation): the memory diagnostics (run on a model), and the reading of the runs' JSONs
(table, verdicts, figures). Used by `run.py` (diagnostics at the end of each run), `nbs/16_length.ipynb` and the CPU
miniature test `tests/test_experiments_length.py`."""
from __future__ import annotations
import json
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from hypermnemosyne.layers.memory import MemoryLayer, mlp_apply

ARMS = ('ssd', 'ssd+memory', 'ssd+swa', 'ssd+swa+memory', 'hybrid')
MEMORY_ARMS = ('ssd+memory', 'ssd+swa+memory', 'hybrid')
PAIRS = (('ssd+memory', 'ssd'), ('ssd+swa+memory', 'ssd+swa'))       # (with memory, the same model without)
FIELDS = ('arm', 'seed', 'preset', 'seq_len', 'steps', 'steps_done', 'batch_size', 'task_frac', 'model', 'curve', 'eval',
          'wall_s', 's_per_step', 'commit', 'command', 'gpu', 'torch', 'complete')
NEEDLE_HEAD = b'The pass key is '
NEEDLE_TAIL = b' is the pass key. '


# ----------------------------------------------------------------------------------------------- the passkey layout
def needle_span(ids) -> tuple[int, int]:
    """(start, end) token positions of the needle sentence in a byte-tokenized passkey document (the first
    'The pass key is ...' up to and including '... is the pass key. '). ValueError when there is none."""
    raw = bytes(int(i) for i in ids if int(i) < 256)
    if len(raw) != len(ids): raise ValueError('needle_span reads byte-tokenized documents (ids < 256) only')
    a = raw.find(NEEDLE_HEAD)
    b = raw.find(NEEDLE_TAIL, a + 1) if a >= 0 else -1
    if a < 0 or b < 0: raise ValueError('no needle sentence in this document')
    return a, b + len(NEEDLE_TAIL)


def memory_layers(model) -> list[tuple[int, MemoryLayer]]:
    "(block index, MemoryLayer) of every memory sublayer of `model` (any model whose blocks are `model.blocks`)."
    return [(i, m) for i, b in enumerate(model.blocks) for m in b.modules() if isinstance(m, MemoryLayer)]


def capture(model, forward) -> dict:
    """Run `forward()` (a forward pass of `model`, no gradient) with hooks on every memory sublayer; returns
    {block: (layer input x, layer output y, the layer's state after the call: fast weights, surprise)}."""
    seen, hooks = {}, []
    for i, layer in memory_layers(model):
        hooks.append(layer.register_forward_hook(
            lambda m, a, out, i=i: seen.__setitem__(i, (a[0].detach(), out[0].detach(), out[1]))))
    try:
        with torch.no_grad(): forward()
    finally:
        for h in hooks: h.remove()
    return seen


def _run_with_hooks(model, ids, ttl: bool = True) -> dict:
    "`capture` of a `HyperMnemosyne` forward of `ids` [b, t] from a fresh state (test-time learning `ttl`)."
    st = model.init_state(ids.shape[0])
    st.ttl = ttl
    return capture(model, lambda: model(ids.to(next(model.parameters()).device), state=st))


# ----------------------------------------------------------------------------------------------------- diagnostics
def memory_input(layer: MemoryLayer, x):
    "What the layer's `NeuralMemory` reads from its input `x` [b, t, d]: x through the layer's RMSNorm, in fp32."
    return F.rms_norm(x.float(), layer.norm.normalized_shape, layer.norm.weight.float(), layer.norm.eps)


def store_cosines(layer: MemoryLayer, x, state, pos, ref_pos=None, n_random: int = 64, seed: int = 0) -> dict:
    """How well the fast weights in `state` (after the whole sequence) recall what was written at token positions `pos`
    (the same for every row of `x` [b, t, d], the layer's input): mean cosine of M(k) and v there (`stored`), the same
    at the memory's initial weights (`init`: before anything was written), of M(k_random) against those v for random
    unit keys (`random`), and of M(k) and v at `ref_pos` (`reference`, None without). Stored shows stored > init and
    stored > random."""
    mem, g = layer.memory, torch.Generator().manual_seed(seed)
    h = memory_input(layer, x)
    with torch.no_grad():
        q, k, v, _, _ = mem.project(h, mem.init_state(h.shape[0], h.device, torch.float32))
        ws = [w.float() for w in state.weights]
        w0 = [w.float().unsqueeze(0) for w in mem.init_weights]
        cos = lambda W, kk, vv: F.cosine_similarity(mlp_apply(W, kk), vv, dim=-1).mean().item()
        pos = torch.as_tensor(pos, device=k.device)
        kn, vn = k[:, :, pos], v[:, :, pos]
        kr = F.normalize(torch.randn(k.shape[0], k.shape[1], n_random, k.shape[-1], generator=g).to(k), dim=-1)
        vr = vn[:, :, torch.randint(len(pos), (n_random,), generator=g).to(k.device)]
        ref = None if ref_pos is None or len(ref_pos) == 0 else cos(ws, k[:, :, ref_pos], v[:, :, ref_pos])
        return dict(stored=cos(ws, kn, vn), init=cos(w0, kn, vn), random=cos(ws, kr, vr), reference=ref)


def read_ratio(x, y, ask) -> dict:
    """Is the memory read? The memory sublayer's output norm over its input norm (mean over tokens) where the bool mask
    `ask` [b, t] is True (`question`) and elsewhere (`other`)."""
    r = (y.float().norm(dim=-1) / x.float().norm(dim=-1).clamp(min=1e-6)).cpu()
    ask = ask.cpu()
    return dict(question=r[ask].mean().item(), other=r[~ask].mean().item())


def grad_norms(model, loss_fn) -> dict:
    """Does the outer loop train the memory's projections? One backward of `loss_fn()` (a training forward of
    `model`); per memory block the gradient norms of W_Q, W_K, W_V (the rows of `qkv`), the three gates (learning rate,
    momentum, decay), out_proj and the initial fast weights; `rest_rms` and `rest_median`: the mean and the median
    per-parameter gradient norm of the model's other matrices, for scale (one large gradient can carry the mean)."""
    was = model.training; model.train(); model.zero_grad(set_to_none=True)
    loss_fn().backward()
    nrm = lambda t: 0.0 if t is None else t.float().norm().item()
    out, mem_ids = {}, set()
    for i, layer in memory_layers(model):
        m = layer.memory
        mem_ids |= {id(p) for p in layer.parameters()}
        gq = m.qkv.weight.grad
        gq, gk, gv = (None, None, None) if gq is None else gq.chunk(3, 0)
        gg = m.gates.weight.grad
        gl = [None] * 3 if gg is None else gg.view(3, m.n_heads, -1).unbind(0)
        out[str(i)] = dict(W_Q=nrm(gq), W_K=nrm(gk), W_V=nrm(gv), gate_lr=nrm(gl[0]), gate_momentum=nrm(gl[1]),
                           gate_decay=nrm(gl[2]), out_proj=nrm(m.out_proj.weight.grad),
                           init_weights=sum(nrm(w.grad) ** 2 for w in m.init_weights) ** 0.5)
    rest = [nrm(p.grad) for p in model.parameters() if id(p) not in mem_ids and p.ndim == 2 and p.grad is not None]
    out['rest_rms'] = sum(rest) / max(1, len(rest))
    out['rest_median'] = sorted(rest)[len(rest) // 2] if rest else 0.0
    model.zero_grad(set_to_none=True); model.train(was)
    return out


def needle_store(model, ids, n_random: int = 64, seed: int = 0) -> dict:
    """Does the memory store the needle? After reading the passkey document `ids` [1, t] (memory writing on), per memory
    block, `store_cosines` over the needle's tokens (`needle`, `needle_init`, `random`) and over as many filler tokens
    before the needle (`filler`)."""
    a, b = needle_span(ids[0].tolist())
    seen = _run_with_hooks(model, ids)
    out = {}
    for i, layer in memory_layers(model):
        c = store_cosines(layer, seen[i][0], seen[i][2], list(range(a, b)), list(range(max(0, a - (b - a)), a)),
                          n_random, seed)
        out[str(i)] = dict(needle=c['stored'], needle_init=c['init'], random=c['random'], filler=c['reference'])
    return out


def memory_read(model, ids, mask) -> dict:
    """Is the memory read? Per memory block, `read_ratio` at the question's answer positions (where `mask` [b, t] is
    True: the tokens predicted from there) and elsewhere."""
    seen = _run_with_hooks(model, ids)
    ask = torch.zeros_like(mask); ask[:, :-1] = mask[:, 1:]          # the positions whose next token is the answer
    return {str(i): read_ratio(seen[i][0], seen[i][1], ask) for i, _ in memory_layers(model)}


def gate_values(layer: MemoryLayer, x) -> dict:
    """Is the memory turned down? From the layer's input `x` [b, t, d], means over tokens of its output gate
    sigmoid(gate(norm(x))) (`out_gate`, in (0, 1): what reaches the stream) and of the memory's inner learning rate θ
    (`theta`, up to `max_lr`), momentum η (`eta`) and forgetting α (`alpha`), as `NeuralMemory.project` computes them."""
    mem = layer.memory
    h = memory_input(layer, x)
    with torch.no_grad():
        gate = torch.sigmoid(F.linear(h, layer.gate.weight.float(), layer.gate.bias.float()))
        g = mem.project(h.to(mem.qkv.weight.dtype), mem.init_state(h.shape[0], h.device, torch.float32))[3]
    return dict(out_gate=gate.mean().item(), theta=g[..., 0].mean().item(), eta=g[..., 1].mean().item(),
                alpha=g[..., 2].mean().item())


def memory_gates(model, ids) -> dict:
    "`gate_values` of every memory block over the document `ids` [1, t] (the inputs each block gets, writing on)."
    seen = _run_with_hooks(model, ids)
    return {str(i): gate_values(layer, seen[i][0]) for i, layer in memory_layers(model)}


def memory_grad_norms(model, ids, mask) -> dict:
    "`grad_norms` of the answer cross-entropy of the passkey document `ids` with answer `mask` (no state)."
    dev = next(model.parameters()).device
    ids, mask = ids.to(dev), mask.to(dev)
    def loss():
        logits = model(ids).logits
        return F.cross_entropy(logits[:, :-1][mask[:, 1:]].float(), ids[:, 1:][mask[:, 1:]])
    return grad_norms(model, loss)


def surprise_trace(model, ids) -> dict:
    """The memory's surprise (inner loss ‖M(k_t) − v_t‖², mean over heads) at every token of `ids` [1, t], per memory
    block, and the needle mask: is the needle more surprising than the filler it interrupts?"""
    a, b = needle_span(ids[0].tolist())
    seen = _run_with_hooks(model, ids)
    needle = [a <= t < b for t in range(ids.shape[1])]
    return dict(needle=needle, **{str(i): seen[i][2].surprise[0].float().cpu().tolist() for i, _ in memory_layers(model)})


def diagnostics(model, doc, mask) -> dict:
    "The four diagnostics and the gate values on one passkey document `doc` [1, t] with its answer `mask` [1, t]."
    return dict(store=needle_store(model, doc), read=memory_read(model, doc, mask),
                grads=memory_grad_norms(model, doc, mask), surprise=surprise_trace(model, doc),
                gates=memory_gates(model, doc))


# ------------------------------------------------------------------------------------------------- reading the JSONs
def load_results(root) -> list[dict]:
    "Every run JSON under `root/<set>/` (with its `set` name and `smoke` flag: run on the CPU); ValueError for a foreign one."
    out = []
    for p in sorted(Path(root).glob('*/*.json')):
        r = json.loads(p.read_text())
        missing = [f for f in FIELDS if f not in r]
        if missing: raise ValueError(f'{p}: not a length-run JSON (missing {", ".join(missing)})')
        out.append(dict(r, set=p.parent.name, smoke=r['gpu'] == 'CPU', path=str(p)))
    return out


def passkey_acc(r: dict, mult: int, ttl: bool = True) -> float | None:
    "Passkey sequence accuracy of run `r` at `mult` x its training length (None when not measured)."
    pk = r['eval']['passkey']
    L = mult * r['seq_len']
    if L not in pk['lengths']: return None
    acc = pk['acc'].get('ttl_on' if ttl else 'ttl_off')
    return None if acc is None else acc[pk['lengths'].index(L)]


def mqar_acc(r: dict, ttl: bool = True) -> float | None:
    "MQAR token accuracy at the training length, mean over the pair counts measured."
    acc = r['eval']['mqar']['acc'].get('ttl_on' if ttl else 'ttl_off')
    return None if not acc else sum(acc) / len(acc)


def table(records: list[dict]) -> str:
    "Markdown: one row per run, passkey at 1x/4x/16x (ttl on / off) and MQAR at 1x."
    def f(x): return '–' if x is None else f'{x:.2f}'
    head = ('| set | arm | seed | steps | passkey 1x | 4x | 16x | 16x ttl off | MQAR 1x | MQAR ttl off | s/step |\n'
            '|---|---|---|---|---|---|---|---|---|---|---|')
    rows = [f"| {r['set']} | {r['arm']} | {r['seed']} | {r['steps_done']}/{r['steps']} | {f(passkey_acc(r, 1))} | "
            f"{f(passkey_acc(r, 4))} | {f(passkey_acc(r, 16))} | {f(passkey_acc(r, 16, False))} | {f(mqar_acc(r))} | "
            f"{f(mqar_acc(r, False))} | {r['s_per_step']:.2f} |"
            for r in sorted(records, key=lambda r: (r['set'], ARMS.index(r['arm']) if r['arm'] in ARMS else 99, r['seed']))]
    return '\n'.join([head, *rows])


def _by_arm(records):
    "{arm: {seed: record}}; where sets repeat an arm and seed, the run with the most finite steps (`steps_done`) counts."
    d = defaultdict(dict)
    for r in records:
        old = d[r['arm']].get(r['seed'])
        if old is None or (r.get('steps_done') or 0) >= (old.get('steps_done') or 0): d[r['arm']][r['seed']] = r
    return d


def verdicts(records: list[dict], min_seeds: int = 3) -> list[dict]:
    """The issue's goals for study B. Each: `status` in met / missed / too few seeds / missing, and `detail`.
    1. every arm solves passkey at 1x (>= 0.95, every seed) - the precondition of the rest;
    2. with memory, passkey >= 0.95 at 4x and >= 0.90 at 16x on every seed (best memory arm);
    3. the same model without memory falls away: its 16x accuracy below its memory twin's on every seed;
    4. test-time learning on beats off by >= 0.3 at 16x (memory arms, every seed)."""
    arms = _by_arm(records)
    def status(ok, seeds):
        if ok is None: return 'missing'
        if not ok: return 'missed'
        return 'met' if seeds >= min_seeds else 'too few seeds'
    out = []
    if not records: return [dict(goal=g, status='missing', detail='no runs') for g in
                            ('passkey >= 0.95 at 1x in every arm', 'memory: passkey >= 0.95 at 4x and >= 0.90 at 16x',
                             'without memory it falls away at 16x', 'ttl on - off >= 0.3 at 16x')]
    one = {a: [passkey_acc(r, 1) for r in rs.values()] for a, rs in arms.items()}
    ok1 = all(x is not None and x >= 0.95 for v in one.values() for x in v)
    out.append(dict(goal='passkey >= 0.95 at 1x in every arm', status=status(ok1, min(len(v) for v in one.values())),
                    detail='; '.join(f"{a}: {'/'.join(f'{x:.2f}' for x in v)}" for a, v in one.items())))
    mem = {a: rs for a, rs in arms.items() if a in MEMORY_ARMS}
    best, det = None, []
    for a, rs in mem.items():
        p4, p16 = [passkey_acc(r, 4) for r in rs.values()], [passkey_acc(r, 16) for r in rs.values()]
        ok = all(x is not None and x >= 0.95 for x in p4) and all(x is not None and x >= 0.90 for x in p16)
        det.append(f"{a}: 4x {'/'.join(f'{x:.2f}' for x in p4)}, 16x {'/'.join(f'{x:.2f}' for x in p16)}")
        if ok and (best is None or len(rs) > best): best = len(rs)
    out.append(dict(goal='memory: passkey >= 0.95 at 4x and >= 0.90 at 16x',
                    status=status(None if not mem else best is not None, best or 0), detail='; '.join(det) or 'no memory arm'))
    det, oks, n = [], [], []
    for w, wo in PAIRS:
        if w not in arms or wo not in arms: continue
        common = sorted(set(arms[w]) & set(arms[wo]))
        d = [(passkey_acc(arms[w][s], 16), passkey_acc(arms[wo][s], 16)) for s in common]
        oks.append(bool(d) and all(a is not None and b is not None and b < a for a, b in d)); n.append(len(d))
        det.append(f"{wo} vs {w} at 16x: " + ', '.join(f'{b:.2f} vs {a:.2f}' for a, b in d))
    out.append(dict(goal='without memory it falls away at 16x', status=status(any(oks) if oks else None, max(n, default=0)),
                    detail='; '.join(det) or 'no memory / no-memory pair'))
    det, oks, n = [], [], []
    for a, rs in mem.items():
        d = [(passkey_acc(r, 16), passkey_acc(r, 16, False)) for r in rs.values()]
        d = [(x, y) for x, y in d if x is not None and y is not None]
        if d: oks.append(all(x - y >= 0.3 for x, y in d)); n.append(len(d))
        det.append(f"{a}: " + ', '.join(f'{x:.2f} on / {y:.2f} off' for x, y in d))
    out.append(dict(goal='ttl on - off >= 0.3 at 16x', status=status(any(oks) if oks else None, max(n, default=0)),
                    detail='; '.join(det) or 'no memory arm'))
    return out


# ---------------------------------------------------------------------------------------------------------- figures
def plot_passkey(records: list[dict], title: str = ''):
    "Passkey accuracy against context length (x training length), one line per run, dashed: test-time learning off."
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for r in records:
        pk = r['eval']['passkey']
        x = [L / r['seq_len'] for L in pk['lengths']]
        for key, ls in (('ttl_on', 'o-'), ('ttl_off', 'x--')):
            if key in pk['acc']: ax.plot(x, pk['acc'][key], ls, label=f"{r['arm']} s{r['seed']}" + (' (ttl off)' if key == 'ttl_off' else ''))
    ax.set(xscale='log', xlabel='context / training length', ylabel='passkey accuracy', ylim=(-0.03, 1.03), title=title)
    ax.grid(alpha=0.3); ax.legend(fontsize=7, loc='center left', bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def plot_curves(records: list[dict], title: str = ''):
    "Training: LM loss and passkey accuracy at the training length against steps, one line per run."
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(1, 2, figsize=(9, 3))
    for r in records:
        c = r['curve']
        axs[0].plot([p['step'] for p in c], [p['lm_loss'] for p in c], label=f"{r['arm']} s{r['seed']}")
        pts = [p for p in c if p.get('passkey_1x') is not None]
        axs[1].plot([p['step'] for p in pts], [p['passkey_1x'] for p in pts], 'o-', label=f"{r['arm']} s{r['seed']}")
    axs[0].set(xlabel='step', ylabel='LM loss (nats/byte)'); axs[1].set(xlabel='step', ylabel='passkey acc at 1x', ylim=(-0.03, 1.03))
    for ax in axs: ax.grid(alpha=0.3)
    axs[1].legend(fontsize=7, loc='center left', bbox_to_anchor=(1.01, 0.5))
    if title: fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_diagnostics(r: dict, title: str | None = None):
    """The memory diagnostics of one run (its `diagnostics` field): store, read, gradients and, where recorded, surprise.
    Works for both studies' records (the store panel shows whichever cosines the run recorded)."""
    import matplotlib.pyplot as plt
    dg = r['diagnostics']
    blocks = sorted(dg['store'], key=int)
    keys = [k for k in dg['store'][blocks[0]] if any(dg['store'][b][k] is not None for b in blocks)]
    fig, axs = plt.subplots(1, 4 if 'surprise' in dg else 3, figsize=(15 if 'surprise' in dg else 11.5, 3))
    w = 0.8 / len(keys)
    for j, key in enumerate(keys):
        axs[0].bar([i + j * w for i in range(len(blocks))], [dg['store'][b][key] or 0 for b in blocks], w, label=key)
    axs[0].set(xticks=[i + (len(keys) - 1) * w / 2 for i in range(len(blocks))], xticklabels=[f'block {b}' for b in blocks],
               ylabel='cos(M(k), v)', title='store: is it written?'); axs[0].legend(fontsize=7)
    for j, key in enumerate(('question', 'other')):
        axs[1].bar([i + j * 0.4 for i in range(len(blocks))], [dg['read'][b][key] for b in blocks], 0.4, label=key)
    axs[1].set(xticks=[i + 0.2 for i in range(len(blocks))], xticklabels=[f'block {b}' for b in blocks], yscale='log',
               ylabel='|memory out| / |in|', title='read: used at the question?'); axs[1].legend(fontsize=7)
    names = ('W_Q', 'W_K', 'W_V', 'gate_lr', 'gate_momentum', 'gate_decay', 'out_proj', 'init_weights')
    for j, b in enumerate(blocks):
        axs[2].bar([i + j * 0.4 for i in range(len(names))], [dg['grads'][b][n] for n in names], 0.4, label=f'block {b}')
    axs[2].axhline(dg['grads']['rest_rms'], color='k', ls=':', lw=1, label='other matrices (mean)')
    if 'rest_median' in dg['grads']:
        axs[2].axhline(dg['grads']['rest_median'], color='k', ls='--', lw=1, label='other matrices (median)')
    axs[2].set(xticks=range(len(names)), yscale='log', title='outer-loop gradient norms'); axs[2].legend(fontsize=7)
    axs[2].set_xticklabels(names, rotation=60, fontsize=7)
    if 'surprise' in dg:
        nd = dg['surprise']['needle']
        for b in blocks:
            s = dg['surprise'][b]
            axs[3].scatter([t for t in range(len(s)) if not nd[t]], [s[t] for t in range(len(s)) if not nd[t]], s=2, c='0.6')
            axs[3].scatter([t for t in range(len(s)) if nd[t]], [s[t] for t in range(len(s)) if nd[t]], s=4, c='C3')
        axs[3].set(xlabel='token', ylabel='surprise ‖M(k)−v‖²', title='surprise: needle (red) vs filler (grey)')
    fig.suptitle(title or f"{r.get('arm') or r.get('mixer')} seed {r['seed']} ({r['set']})")
    fig.tight_layout()
    return fig
