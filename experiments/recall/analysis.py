"""Reading the recall sweep's JSONs: best learning rate per point, the table, Zoology's figure and the issue-16 verdicts.
Used by `nbs/15_recall.ipynb` and by the CPU miniature test (one copy of the verdict code)."""
from __future__ import annotations
import json
from collections import defaultdict
from pathlib import Path

WIDTHS = (64, 128, 256, 512)
SETTINGS = ((64, 4), (128, 8), (256, 16), (512, 64))
MIXERS = ('attention', 'ssd', 'ssd+memory', 'memory', 'swa')
MEMORY_MIXERS = ('ssd+memory', 'memory')
FIELDS = ('mixer', 'd_model', 'seq', 'pairs', 'lr', 'seed', 'steps', 'batch_size', 'test_acc', 'curve', 'wall_s', 'commit',
          'command', 'gpu', 'torch', 'complete', 'steps_done')
# (name, mixers that may meet it, (seq, pairs), widths, threshold)
GOALS = (('attention >= 0.99 at every width', ('attention',), None, WIDTHS, 0.99),
         ('a memory-bearing mixer >= 0.95 at 256/16, d 128', MEMORY_MIXERS, (256, 16), (128,), 0.95),
         ('a memory-bearing mixer >= 0.90 at 512/64, d 256', MEMORY_MIXERS, (512, 64), (256,), 0.90))


def load_results(root) -> list[dict]:
    "Every finished run (`*.json`, not `*.partial.json`) under `root/<set>/`, each with its `set` name and `smoke` flag (CPU)."
    out = []
    for p in sorted(Path(root).glob('*/*.json')):
        if p.name.endswith('.partial.json'): continue
        r = json.loads(p.read_text())
        missing = [f for f in FIELDS if f not in r]
        if missing: raise ValueError(f'{p}: not a recall-run JSON (missing {", ".join(missing)})')
        out.append(dict(r, set=p.parent.name, smoke=r['gpu'] == 'CPU', path=str(p)))
    return out


def load_partial(root) -> list[dict]:
    "Runs a deadline cut short (`*.partial.json`): not results, but their curves show how far they got."
    return [dict(json.loads(p.read_text()), set=p.parent.name) for p in sorted(Path(root).glob('*/*.partial.json'))]


def partial_table(partial: list[dict]) -> str:
    "Markdown table of the cut-short runs: steps done of steps planned and the test accuracy at the cut."
    head = '| set | mixer | setting | d_model | lr | steps done | test acc at the cut |\n|---|---|---|---|---|---|---|'
    rows = [f"| {r['set']} | {r['mixer']} | {r['seq']}/{r['pairs']} | {r['d_model']} | {r['lr']:g} | "
            f"{r['steps_done']} of {r['steps']} | {r['test_acc']:.3f} |" for r in partial]
    return '\n'.join([head, *rows])


def _config(r) -> tuple:
    "What a run's seeds share apart from the seed (the best-lr choice is made among these)."
    return (r['lr'], r['steps'], r['batch_size'], r.get('n_train'), r.get('filler'), r.get('window'), r.get('mem_chunk'))


def best_points(records: list[dict]) -> list[dict]:
    """One row per (mixer, seq, pairs, d_model): the configuration (lr, steps, ...) with the highest mean test accuracy
    over its seeds (ties: more seeds). `min_acc` is its worst seed, `accs` every seed's accuracy, `lrs_tried` the sweep."""
    groups = defaultdict(lambda: defaultdict(dict))
    for r in records:
        groups[(r['mixer'], r['seq'], r['pairs'], r['d_model'])][_config(r)][r['seed']] = r['test_acc']
    rows = []
    for (mixer, seq, pairs, d), cfgs in groups.items():
        cfg, seeds = max(cfgs.items(), key=lambda kv: (sum(kv[1].values()) / len(kv[1]), len(kv[1])))
        accs = [seeds[s] for s in sorted(seeds)]
        rows.append(dict(mixer=mixer, seq=seq, pairs=pairs, d_model=d, lr=cfg[0], steps=cfg[1], n_seeds=len(accs),
                         mean_acc=sum(accs) / len(accs), min_acc=min(accs), accs=accs,
                         lrs_tried=sorted({c[0] for c in cfgs})))
    order = {m: i for i, m in enumerate(MIXERS)}
    return sorted(rows, key=lambda r: (r['seq'], r['pairs'], order.get(r['mixer'], 99), r['d_model']))


def verdicts(records: list[dict], min_seeds: int = 2) -> list[dict]:
    """The issue's goals against `records` (best lr per point; a goal is met only if every seed meets it).
    status: 'met', 'missed', 'too few seeds' (met on fewer than `min_seeds` seeds), 'incomplete' (every point present
    meets it, some are missing) or 'missing' (no result for it). `detail` names the numbers or the missing runs."""
    pts = {(p['mixer'], p['seq'], p['pairs'], p['d_model']): p for p in best_points(records)}
    return [_verdict(name, mixers, setting, widths, thr, pts, min_seeds) for name, mixers, setting, widths, thr in GOALS]


def _fmt(p) -> str:
    return f"{p['mixer']} {p['seq']}/{p['pairs']} d{p['d_model']}: {'/'.join(f'{a:.3f}' for a in p['accs'])} (lr {p['lr']:g})"


def _verdict(name, mixers, setting, widths, thr, pts, min_seeds) -> dict:
    v = dict(goal=name, threshold=thr)
    if setting is None:                                   # every (setting, width) point of the one mixer
        want = [(mixers[0], s, p, d) for s, p in SETTINGS for d in widths]
        have = [pts[k] for k in want if k in pts]
        lacking = [f'{m} {s}/{p} d{d}' for m, s, p, d in want if (m, s, p, d) not in pts]
        if not have: return dict(v, status='missing', detail='no runs: ' + ', '.join(lacking))
        bad = [p for p in have if p['min_acc'] < thr]
        few = [p for p in have if p['n_seeds'] < min_seeds]
        if bad: status, det = 'missed', '; '.join(_fmt(p) for p in bad)
        elif lacking: status, det = 'incomplete', 'met where run; missing: ' + ', '.join(lacking)
        elif few: status, det = 'too few seeds', f'met, but {len(few)} points have < {min_seeds} seeds'
        else: status, det = 'met', f'worst point {min(p["min_acc"] for p in have):.3f}'
        return dict(v, status=status, detail=det)
    cand = [pts[(m, *setting, d)] for m in mixers for d in widths if (m, *setting, d) in pts]
    if not cand:
        return dict(v, status='missing', detail='no runs: ' + ', '.join(f'{m} {setting[0]}/{setting[1]} d{d}'
                                                                        for m in mixers for d in widths))
    ok = [p for p in cand if p['min_acc'] >= thr]
    if any(p['n_seeds'] >= min_seeds for p in ok): status = 'met'
    elif ok: status = 'too few seeds'
    else: status = 'missed'
    return dict(v, status=status, detail='; '.join(_fmt(p) for p in cand))


def missing_runs(records: list[dict], mixers=MIXERS, settings=SETTINGS, widths=WIDTHS) -> list[str]:
    "Points of the full grid (mixer x setting x width) with no finished run."
    have = {(r['mixer'], r['seq'], r['pairs'], r['d_model']) for r in records}
    return [f'{m} {s}/{p} d{d}' for s, p in settings for m in mixers for d in widths if (m, s, p, d) not in have]


def table(records: list[dict]) -> str:
    "Markdown table of `best_points`."
    head = '| setting | mixer | d_model | best lr | steps | seeds | min acc | mean acc | lrs tried |\n|---|---|---|---|---|---|---|---|---|'
    rows = [f"| {p['seq']}/{p['pairs']} | {p['mixer']} | {p['d_model']} | {p['lr']:g} | {p['steps']} | {p['n_seeds']} | "
            f"{p['min_acc']:.3f} | {p['mean_acc']:.3f} | {', '.join(f'{x:g}' for x in p['lrs_tried'])} |"
            for p in best_points(records)]
    return '\n'.join([head, *rows])


def plot_zoology(records: list[dict], title: str = ''):
    "Zoology's figure: test accuracy vs d_model, one panel per (seq, pairs), one line per mixer (best lr, worst seed)."
    import matplotlib.pyplot as plt
    pts = best_points(records)
    settings = sorted({(p['seq'], p['pairs']) for p in pts})
    fig, axs = plt.subplots(1, len(settings), figsize=(3.2 * len(settings), 3), sharey=True, squeeze=False)
    for ax, (seq, pairs) in zip(axs[0], settings):
        for m in MIXERS:
            row = sorted((p['d_model'], p['min_acc'], p['mean_acc']) for p in pts if (p['mixer'], p['seq'], p['pairs']) == (m, seq, pairs))
            if row: ax.plot([r[0] for r in row], [r[1] for r in row], 'o-', label=m, color=f'C{MIXERS.index(m)}')
        ax.set(xscale='log', title=f'seq {seq}, {pairs} pairs', xlabel='d_model', ylim=(-0.03, 1.03))
        ax.set_xticks(sorted({p['d_model'] for p in pts}), [str(d) for d in sorted({p['d_model'] for p in pts})])
        ax.minorticks_off(); ax.grid(alpha=0.3)
    axs[0][0].set_ylabel('MQAR accuracy (worst seed)')
    handles = {h.get_label(): h for ax in axs[0] for h in ax.get_lines()}          # every mixer, from any panel
    axs[0][-1].legend([handles[m] for m in MIXERS if m in handles], [m for m in MIXERS if m in handles], fontsize=8)
    if title: fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(records: list[dict], title: str = ''):
    "Test accuracy against steps, one line per run (label: mixer, width, lr, seed)."
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3))
    for r in records:
        c = r['curve']
        ax.plot([p['step'] for p in c], [p['test_acc'] for p in c], '.-',      # a dot: a rebuilt record has one point
                label=f"{r['mixer']} d{r['d_model']} {r['seq']}/{r['pairs']} lr {r['lr']:g} s{r['seed']}")
    ax.set(xlabel='step', ylabel='test accuracy', ylim=(-0.03, 1.03), title=title)
    ax.grid(alpha=0.3); ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
