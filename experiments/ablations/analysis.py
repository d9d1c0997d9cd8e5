"""Reading the ablation study's JSONs: result sets, per-arm summaries, seed-paired differences, tables and figures.
Used by `nbs/14_ablations.ipynb` and by `tests/test_experiments_ablations.py`; it computes numbers, the notebook's
markdown says what they mean."""
from __future__ import annotations
import json, math
from pathlib import Path
import numpy as np
import matplotlib.pyplot as plt

ARMS = ('residual', 'hc', 'mhc', 'deep_residual', 'deep_hc', 'deep_mhc', 'memory', 'jepa', 'adamw')
STATUSES = ('ok', 'diverged', 'not_run', 'failed')
# (question, arm a, arm b, metric name, lower is better): the comparisons the study makes, a against b on each seed
COMPARISONS = (('hyper-connections', 'mhc', 'residual', 'val_bpb', True),
               ('hyper-connections', 'hc', 'residual', 'val_bpb', True),
               ('hyper-connections', 'mhc', 'hc', 'val_bpb', True),
               ('deep', 'deep_mhc', 'deep_residual', 'val_bpb', True),
               ('deep', 'deep_mhc', 'deep_hc', 'val_bpb', True),
               ('deep', 'deep_hc', 'deep_residual', 'val_bpb', True),
               ('deep', 'deep_mhc', 'deep_residual', 'loss_spike', True),
               ('deep', 'deep_hc', 'deep_residual', 'loss_spike', True),
               ('memory', 'memory', 'mhc', 'val_bpb', True),
               ('memory', 'memory', 'mhc', 'passkey_1x', False),
               ('memory', 'memory', 'mhc', 'passkey_4x', False),
               ('memory', 'memory', 'mhc', 'passkey_16x', False),
               ('memory', 'memory', 'mhc', 'mqar', False),
               ('jepa', 'jepa', 'mhc', 'val_bpb', True),
               ('jepa', 'jepa', 'mhc', 'enc_top1', False),
               ('jepa', 'jepa', 'mhc', 'pred_top1', False),
               ('jepa', 'jepa', 'mhc', 'enc_top5', False),
               ('jepa', 'jepa', 'mhc', 'pred_top5', False),
               ('optimizer', 'mhc', 'adamw', 'val_bpb', True))


def load_results(root) -> dict[str, list[dict]]:
    "`{set name: [result dicts]}` from `root/<set>/*_seed*.json` (sets sorted by name; a missing root: {})."
    root, out = Path(root), {}
    if not root.is_dir(): return out
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        rs = [json.loads(f.read_text()) for f in sorted(d.glob('*_seed*.json'))]
        if rs: out[d.name] = rs
    return out


def loss_spike(r: dict) -> float | None:
    "Largest rise of the training loss above its running minimum (0 for a loss that never goes back up)."
    y = np.array([x[1] for x in r['curve']['train']], dtype=float)
    return float(np.max(y - np.minimum.accumulate(y))) if len(y) else None


def _passkey(i):
    return lambda r: r['tasks']['passkey']['acc']['ttl_on'][i]


def _all_tasks(r, ttl):
    "Mean of every passkey and MQAR accuracy of a run with test-time learning `ttl` ('ttl_on' or 'ttl_off')."
    return float(np.mean(r['tasks']['passkey']['acc'][ttl] + r['tasks']['mqar']['acc'][ttl]))


# name -> function of one result; a KeyError/TypeError/IndexError means "not measured in this run"
METRICS = {
    'val_bpb': lambda r: r['val_bpb'],
    'loss_spike': loss_spike,
    'max_grad_norm': lambda r: max(x[1] for x in r['curve']['grad_norm']),
    'composite_gain': lambda r: max(r['composite_gain']['max']['bwd']),
    'passkey_1x': _passkey(0), 'passkey_4x': _passkey(1), 'passkey_16x': _passkey(2),
    'mqar': lambda r: float(np.mean(r['tasks']['mqar']['acc']['ttl_on'])),
    'tasks_ttl_on': lambda r: _all_tasks(r, 'ttl_on'), 'tasks_ttl_off': lambda r: _all_tasks(r, 'ttl_off'),
    'ttl_logit_diff': lambda r: r['tasks']['ttl_logit_diff'],
    **{k: (lambda k: lambda r: r['retrieval'][k])(k) for k in ('enc_top1', 'pred_top1', 'enc_top5', 'pred_top5')},
    'collapse_first': lambda r: r['curve']['mean_pairwise_cos'][0][1],
    'collapse_last': lambda r: r['curve']['mean_pairwise_cos'][-1][1],
}


def _value(fn, r):
    try: x = fn(r)
    except (KeyError, TypeError, IndexError): return None
    return x if x is not None and math.isfinite(x) else None


def _mean_spread(vals) -> tuple:
    "`(mean, spread, n)`, spread = (max - min) / 2: with two seeds half their difference, with one 0."
    if not vals: return None, None, 0
    return float(np.mean(vals)), float((max(vals) - min(vals)) / 2), len(vals)


def arm_metric(rs: list[dict], arm: str, fn) -> tuple:
    "`(mean, spread, n)` of `fn(result)` over the finished (`ok`) seeds of `arm` (missing, non-finite values skipped)."
    vals = [_value(fn, r) for r in rs if r.get('arm') == arm and r.get('status') == 'ok']
    return _mean_spread([v for v in vals if v is not None])


def paired_diff(rs: list[dict], a: str, b: str, fn) -> tuple:
    """`(mean, spread, diffs)` of `fn(a) - fn(b)` over the seeds where both arms finished: arms of one question share
    each seed's data order and initialisation, so the per-seed difference removes the seed-to-seed spread."""
    ok = lambda arm: {r['seed']: r for r in rs if r.get('arm') == arm and r.get('status') == 'ok'}
    ra, rb = ok(a), ok(b)
    ds = []
    for sd in sorted(set(ra) & set(rb)):
        x, y = _value(fn, ra[sd]), _value(fn, rb[sd])
        if x is not None and y is not None: ds.append(x - y)
    m, sp, _ = _mean_spread(ds)
    return m, sp, ds


def seeds_agree(diffs: list[float], lower_better: bool = True) -> str:
    "'a better', 'b better' when at least two seeds all favour the same arm, else 'mixed' (or 'one seed', 'none')."
    if not diffs: return 'none'
    if len(diffs) < 2: return 'one seed'
    if all((d < 0) == lower_better and d != 0 for d in diffs): return 'a better'
    if all((d > 0) == lower_better and d != 0 for d in diffs): return 'b better'
    return 'mixed'


def compare(rs: list[dict], question: str | None = None) -> list[dict]:
    """The study's comparisons (`COMPARISONS`, or those of `question`) present in one result set: per arm mean ±
    spread over seeds, the seed-paired difference a - b, each seed's difference, and whether the seeds agree."""
    rows = []
    for q, a, b, metric, lower in COMPARISONS:
        if question not in (None, q): continue
        fn = METRICS[metric]
        (ma, sa, na), (mb, sb, nb) = arm_metric(rs, a, fn), arm_metric(rs, b, fn)
        if not na or not nb: continue
        d, sd, ds = paired_diff(rs, a, b, fn)
        rows.append(dict(question=q, metric=metric, a=a, b=b, mean_a=ma, spread_a=sa, mean_b=mb, spread_b=sb,
                         diff=d, diff_spread=sd, diffs=ds, seeds=seeds_agree(ds, lower)))
    return rows


def within_chance(acc: float, n: int, k: int = 1) -> bool:
    """Is a top-`k` retrieval accuracy over `n` pairs within chance + 2 binomial standard deviations? Such an accuracy
    is a count of a few hits, indistinguishable from guessing."""
    p = min(1.0, k / n)
    return acc <= p + 2 * math.sqrt(p * (1 - p) / n)


def status_counts(rs: list[dict], arm: str) -> str:
    "e.g. '2 ok' or '1 ok, 1 diverged'."
    st = [r.get('status') for r in rs if r.get('arm') == arm]
    return ', '.join(f'{st.count(k)} {k}' for k in STATUSES if st.count(k))


def _fmt(m, s, d=3) -> str: return '' if m is None else f'{m:.{d}f} ± {s:.{d}f}'


def summarize(results: dict) -> list[dict]:
    "One row per (set, arm): seeds ok/diverged/not run, val bpb, retrieval, passkey and MQAR (mean ± spread)."
    rows = []
    for name, rs in results.items():
        for arm in [a for a in ARMS if any(r.get('arm') == a for r in rs)]:
            first = next(r for r in rs if r.get('arm') == arm)
            row = dict(set=name, arm=arm, device=first.get('device', '?'), steps=first.get('steps'),
                       tokens=first.get('tokens'), seeds=status_counts(rs, arm))
            row['val_bpb'] = _fmt(*arm_metric(rs, arm, METRICS['val_bpb'])[:2])
            for k in ('enc_top1', 'pred_top1', 'enc_top5', 'pred_top5'):
                row[k] = _fmt(*arm_metric(rs, arm, METRICS[k])[:2], 2)
            if any('tasks' in r for r in rs if r.get('arm') == arm):
                for k in ('passkey_1x', 'passkey_4x', 'passkey_16x', 'mqar'):
                    row[k] = _fmt(*arm_metric(rs, arm, METRICS[k])[:2], 2)
            rows.append(row)
    return rows


def markdown_table(rows: list[dict], cols: list[str] | None = None) -> str:
    "A list of dicts as a markdown table (columns: `cols`, or every key in order of first appearance)."
    if not rows: return ''
    cols = cols or list(dict.fromkeys(k for r in rows for k in r))
    cell = lambda v: f'{v:.3f}' if isinstance(v, float) else ('' if v is None else str(v))
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    return '\n'.join(lines + ['| ' + ' | '.join(cell(r.get(c)) for c in cols) + ' |' for r in rows])


def comparison_table(rows: list[dict], digits: int = 3) -> str:
    "`compare`'s rows as a markdown table: a and b (mean ± spread), the paired difference and each seed's."
    f = lambda x: f'{x:+.{digits}f}'
    out = [dict(question=r['question'], metric=r['metric'], a=f"{r['a']} {_fmt(r['mean_a'], r['spread_a'], digits)}",
                b=f"{r['b']} {_fmt(r['mean_b'], r['spread_b'], digits)}",
                **{'a - b (paired)': '' if r['diff'] is None else f"{f(r['diff'])} ± {r['diff_spread']:.{digits}f}",
                   'per seed': ', '.join(map(f, r['diffs'])), 'seeds': r['seeds']}) for r in rows]
    return markdown_table(out)


def sets_with(results: dict, *arms) -> dict:
    "The result sets in which at least one of `arms` finished."
    return {n: rs for n, rs in results.items() if any(r.get('arm') in arms and r.get('status') == 'ok' for r in rs)}


def step_counts(rs: list[dict]) -> str:
    "Step counts of the base arms and (if any) of the deep arms, e.g. '120 steps (deep arms 40)'."
    get = lambda deep: '/'.join(map(str, sorted({r['steps'] for r in rs if r.get('steps')
                                                 and r.get('arm', '').startswith('deep_') == deep})))
    return f'{get(False) or "?"} steps' + (f' (deep arms {get(True)})' if get(True) else '')


# ----------------------------------------------------------------------------------------------------------- figures
def _no_data(ax):
    if ax.lines: ax.legend(fontsize=8)
    else: ax.text(0.5, 0.5, 'not run in this set', ha='center', va='center', transform=ax.transAxes)


def _val_curve(rs, arm):
    cs = [np.array(r['curve']['val']) for r in rs
          if r.get('arm') == arm and r.get('status') == 'ok' and r.get('curve', {}).get('val')]
    if not cs: return None
    n = min(len(c) for c in cs)
    return cs[0][:n, 0], np.mean([c[:n, 2] for c in cs], 0)


def plot_val_curves(sets: dict):
    "Validation bpb over training per arm (mean over seeds), one row per set, one panel per question group."
    groups = [('hyper-connections', ('residual', 'hc', 'mhc')), ('deep', ('deep_residual', 'deep_hc', 'deep_mhc')),
              ('memory / JEPA', ('mhc', 'memory', 'jepa'))]
    fig, axes = plt.subplots(len(sets), 3, figsize=(13, 3.2 * len(sets)), dpi=60, squeeze=False)
    for row, (name, rs) in zip(axes, sets.items()):
        for ax, (title, arms) in zip(row, groups):
            for arm in arms:
                c = _val_curve(rs, arm)
                if c is not None: ax.plot(c[0], c[1], 'o-', ms=3, label=arm)
            ax.set(title=f'{name}: {title}', xlabel='step', ylabel='val bits per byte')
            _no_data(ax)
    fig.tight_layout()
    return fig


def plot_composite_gain(sets: dict):
    "Composite backward gain over depth, HC vs mHC (dashed: the deep arms), seed 0 of each set."
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 3.2), dpi=70, squeeze=False)
    for ax, (name, rs) in zip(axes[0], sets.items()):
        for arm, ls in (('hc', '-'), ('mhc', '-'), ('deep_hc', '--'), ('deep_mhc', '--')):
            r = next((r for r in rs if r.get('arm') == arm and r.get('status') == 'ok'
                      and (r.get('composite_gain') or {}).get('max')), None)
            if r: ax.plot(range(1, len(r['composite_gain']['max']['bwd']) + 1), r['composite_gain']['max']['bwd'], ls,
                          label=arm)
        ax.set(title=f'{name}: composite backward gain', xlabel='sublayer depth l', ylabel='max column sum',
               yscale='log')
        if ax.lines: ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def series(rs: list[dict], arm: str, key: str) -> list[tuple]:
    "`[(seed, steps, values)]` of the logged series `curve[key]` of every finished seed of `arm`."
    return [(r['seed'], *np.array(r['curve'][key]).T) for r in rs
            if r.get('arm') == arm and r.get('status') == 'ok' and r.get('curve', {}).get(key)]


def plot_stability(sets: dict):
    "Deep arms' training loss and gradient norm, and the JEPA collapse monitor; seed 0 solid, seed 1 dashed."
    fig, axes = plt.subplots(len(sets), 3, figsize=(13, 3.2 * len(sets)), dpi=70, squeeze=False)
    for (a1, a2, a3), (name, rs) in zip(axes, sets.items()):
        for i, arm in enumerate(('deep_residual', 'deep_hc', 'deep_mhc')):
            for ax, key in ((a1, 'train'), (a2, 'grad_norm')):
                for sd, x, y in series(rs, arm, key):
                    ax.plot(x, y, '-' if sd == 0 else '--', color=f'C{i}', label=arm if sd == 0 else None)
        for sd, x, y in series(rs, 'jepa', 'mean_pairwise_cos'):
            a3.plot(x, y, '-' if sd == 0 else '--', color='C3', label=f'jepa seed {sd}')
        a1.set(title=f'{name}: deep arms, training loss', xlabel='step', ylabel='train loss (nats/byte)')
        a2.set(title=f'{name}: deep arms, gradient norm', xlabel='step', ylabel='global grad norm', yscale='log')
        a3.set(title=f'{name}: JEPA embedding collapse', xlabel='step', ylabel='mean pairwise cosine',
               ylim=(-0.05, 1.05))
        for ax in (a1, a2, a3): _no_data(ax)
    fig.tight_layout()
    return fig


def task_curve(rs: list[dict], arm: str, what: str, ttl: str, key: str = 'acc'):
    "Mean over finished seeds of `tasks[what][key][ttl]` (passkey per length or MQAR per pair count), or None."
    acc = [r['tasks'][what][key][ttl] for r in rs if r.get('arm') == arm and r.get('status') == 'ok'
           and 'tasks' in r and ttl in r['tasks'][what][key]]
    return np.mean(acc, 0) if acc else None


def plot_tasks(sets: dict):
    "Passkey accuracy against length (dashed: per digit) and MQAR accuracy against pairs: memory off, on, on frozen."
    arms = (('mhc', 'ttl_on', 'memory off'), ('memory', 'ttl_on', 'memory on, ttl on'),
            ('memory', 'ttl_off', 'memory on, ttl off'))
    fig, axes = plt.subplots(len(sets), 2, figsize=(11, 3.2 * len(sets)), dpi=60, squeeze=False)
    for (a1, a2), (name, rs) in zip(axes, sets.items()):
        for arm, ttl, lab in arms:
            pk, mq = task_curve(rs, arm, 'passkey', ttl), task_curve(rs, arm, 'mqar', ttl)
            dg = task_curve(rs, arm, 'passkey', ttl, 'digit_acc')
            r0 = next((r for r in rs if r.get('arm') == arm and 'tasks' in r), None)
            if pk is not None: a1.plot([1, 4, 16], pk, 'o-', label=lab)
            if dg is not None: a1.plot([1, 4, 16], dg, 'x--', color=a1.lines[-1].get_color(), label=f'{lab} (digit)')
            if mq is not None: a2.plot(r0['tasks']['mqar']['n_pairs'], mq, 'o-', label=lab)
        a1.set(title=f'{name}: passkey', xlabel='length / training length', ylabel='accuracy', xscale='log',
               ylim=(-0.05, 1.05))
        a1.set_xticks([1, 4, 16], ['1x', '4x', '16x']); a1.axhline(0.1, color='gray', lw=0.5, ls=':')
        a2.set(title=f'{name}: MQAR at the training length', xlabel='key-value pairs', ylabel='answer accuracy',
               xscale='log', ylim=(-0.05, 1.05))
        for a in (a1, a2):
            if a.lines: a.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot_task_loss(ax, r, i, arm):
    "One run's task-phase loss: `task_curve` (passkey and MQAR apart), or the older `task_loss` (every k-th step)."
    ls, t, first = '-' if r['seed'] == 0 else '--', r['tasks'], r['seed'] == 0
    if 'task_curve' in t:
        for k, lw, alpha in (('passkey', 1.5, 1.0), ('mqar', 0.8, 0.5)):
            if t['task_curve'][k]:
                x, y = np.array(t['task_curve'][k]).T
                ax.plot(x, y, ls, lw=lw, alpha=alpha, color=f'C{i}', label=f'{arm} {k}' if first else None)
    else:
        tl, n = t['task_loss'], t['task_steps']
        ax.plot(np.arange(len(tl)) * max(1, n // 50), tl, ls, color=f'C{i}', label=arm if first else None)


def plot_task_loss(sets: dict):
    "Training loss of the task phase (answer tokens only), memory vs mHC, seed 0 solid, seed 1 dashed."
    fig, axes = plt.subplots(1, len(sets), figsize=(4.4 * len(sets), 3.2), dpi=70, squeeze=False)
    for ax, (name, rs) in zip(axes[0], sets.items()):
        for i, arm in enumerate(('mhc', 'memory')):
            for r in (r for r in rs if r.get('arm') == arm and 'tasks' in r): _plot_task_loss(ax, r, i, arm)
        sched = next((r['tasks'].get('task_schedule', 'constant') for r in rs if 'tasks' in r), '?')
        ax.set(title=f'{name}\ntask phase ({sched} lr)', xlabel='task step', ylabel='answer CE (nats)', ylim=(0, 4.5))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def diagnostics(rs: list[dict]) -> list[dict]:
    """Per arm of one set (mean ± spread over finished seeds): largest composite backward gain, largest training-loss
    spike and gradient norm, the JEPA collapse monitor at the first and last step, and for the memory question the
    mean task accuracy with test-time learning on and off and how far the switch moves the logits."""
    keys = ('composite_gain', 'loss_spike', 'max_grad_norm', 'collapse_first', 'collapse_last', 'tasks_ttl_on',
            'tasks_ttl_off', 'ttl_logit_diff')
    rows = []
    for arm in [a for a in ARMS if any(r.get('arm') == a for r in rs)]:
        vals = {k: arm_metric(rs, arm, METRICS[k]) for k in keys}
        rows.append(dict(arm=arm, seeds=status_counts(rs, arm),
                         **{k: f'{m:.3g} ± {s:.2g}' if m is not None else '' for k, (m, s, _) in vals.items()}))
    return rows
