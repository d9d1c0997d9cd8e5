"The length study (experiments/length): a CPU miniature of the runner read by the verdict code, and the memory diagnostics."
import importlib.util, json, math, os, subprocess, sys
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / 'experiments' / 'length' / 'run.py'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
from hypermnemosyne.model import HyperMnemosyne
from hypermnemosyne.data import passkey


def _load(name):
    "A script of experiments/length by path (each study names its scripts run.py and analysis.py)."
    spec = importlib.util.spec_from_file_location(f'length_{name}', RUNNER.parent / f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

analysis = _load('analysis')


def runner(*args):
    return subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, env=ENV, timeout=300)


def test_arms_are_the_issue_models():
    run = _load('run')
    lay = {a: run.arm_config(a).block_layout() for a in analysis.ARMS}
    assert lay['ssd'] == ['mamba2'] * 8
    assert lay['ssd+memory'] == ['mamba2'] * 3 + ['memory+mamba2'] + ['mamba2'] * 3 + ['memory+mamba2']
    assert lay['ssd+swa'][3] == lay['ssd+swa'][7] == 'attention' and run.arm_config('ssd+swa').attn_window == 128
    assert lay['ssd+swa+memory'][3] == 'memory+attention' and run.arm_config('ssd+swa+memory').mem_chunk == 64
    hy = run.arm_config('hybrid')
    assert hy.attn_window == 0 and hy.memory_layers == (3,) and hy.jepa_weight == 0


def test_task_rows_mix_passkey_and_mqar_or_passkey_only():
    import numpy as np
    run = _load('run')
    q = b'What is the pass key? The pass key is '
    is_pk = lambda row: q in bytes(int(t) for t in row if int(t) < 256)
    both, m, n = run.task_rows(4, 256, np.random.default_rng(0))
    only, m2, n2 = run.task_rows(4, 256, np.random.default_rng(0), tasks='passkey')
    assert [is_pk(r) for r in both] == [True, False, True, False] and all(is_pk(r) for r in only)
    assert (m2.sum(1) == 5).all() and (m2[:, -5:]).all()                 # the 5 answer digits at the end of each row
    assert n[1].sum() == n[3].sum() == 0 and (n2.sum(1) > 0).all()       # needle masks: passkey rows only
    for row, nd in zip(only, n2):                                          # the needle holds the answer's digits
        text = bytes(int(t) for t in row[nd]).decode()
        key = bytes(int(t) for t in row[-5:]).decode()
        assert text.startswith('The pass key is ' + key) and text.endswith(key + ' is the pass key. ')
    for row, mk in zip(both[1::2], m[1::2]):          # MQAR rows (the default: Zoology's layout): every key queried once
        pos = mk.nonzero()[:, 0].tolist()
        assert len(pos) in run.mqar_pairs_for(256)
        kv = {int(row[i]): int(row[i + 1]) for i in range(0, 2 * len(pos), 2)}   # the pairs open the document
        assert len(kv) == len(pos) and all(k < 128 <= v for k, v in kv.items())
        assert all(kv[int(row[t - 1])] == int(row[t]) for t in pos)            # each answer is its query key's value
        assert min(pos) < 200                          # power-law gaps: queries soon after the pairs, not all at the end
    end, m3, _ = run.task_rows(4, 256, np.random.default_rng(0), tasks='passkey,mqar')
    assert m3[1, -1] and m3[1, :-64].sum() == 0                          # the package's layout: answers at the end
    try: run.task_rows(2, 256, np.random.default_rng(0), tasks='mqar'); raise AssertionError('accepted')
    except ValueError as e: assert 'passkey,zmqar' in str(e)


def test_miniature_writes_complete_jsons_that_the_verdicts_read(tmp_path):
    r = runner('--preset', 'tiny', '--arms', 'ssd,ssd+memory', '--steps', '2', '--batch_size', '3', '--seq_len', '128',
               '--eval_every', '1', '--curve_n', '2', '--eval_n', '2', '--eval_batch', '2', '--mem_chunk', '16',
               '--window', '32', '--max_corpus_mb', '0.2', '--out', str(tmp_path / 'mini'))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    recs = analysis.load_results(tmp_path)
    assert sorted(x['arm'] for x in recs) == ['ssd', 'ssd+memory'] and all(x['smoke'] and x['set'] == 'mini' for x in recs)
    for x in recs:
        assert x['complete'] and x['steps_done'] == 2 and x['skipped'] == 0 and [c['step'] for c in x['curve']] == [1, 2]
        blocks = {str(i) for i in x['model']['memory_layers']}
        assert all(set(c.get('gates', {})) == blocks and all(0 < g['out_gate'] < 1 for g in c.get('gates', {}).values())
                   for c in x['curve'])                           # memory arms: the gates at every curve point
        assert x['eval']['passkey']['lengths'] == [128, 512, 2048] and '--arms ssd,ssd+memory' in x['command']
        assert all(0 <= analysis.passkey_acc(x, m) <= 1 for m in (1, 4, 16)) and len(x['commit']) >= 7
    mem = next(x for x in recs if x['arm'] == 'ssd+memory')
    assert analysis.passkey_acc(mem, 16, ttl=False) is not None and analysis.mqar_acc(mem, ttl=False) is not None
    assert mem['eval']['mqar']['layout'] == 'zoology' and mem['eval']['mqar_end']['layout'] == 'end'
    assert len(mem['eval']['mqar']['acc']['ttl_off']) == len(mem['eval']['mqar']['n_pairs']) == 4   # 4-32 pairs at 128
    assert set(mem['diagnostics']) == {'store', 'read', 'grads', 'surprise', 'gates'} and 'diagnostics' not in next(x for x in recs if x['arm'] == 'ssd')
    assert analysis.table(recs).count('| mini |') == 2
    v = {x['goal']: x['status'] for x in analysis.verdicts(recs)}
    assert len(v) == 4 and set(v.values()) <= {'missed', 'too few seeds'}


def _rec(arm, seed, p1, p4, p16, p16_off=None):
    acc = dict(ttl_on=[p1, p4, p16]); acc.update({} if p16_off is None else dict(ttl_off=[p1, p4, p16_off]))
    return dict(arm=arm, seed=seed, seq_len=1024, eval=dict(passkey=dict(lengths=[1024, 4096, 16384], acc=acc),
                                                             mqar=dict(acc={})))


def test_verdicts_need_every_seed_and_three_of_them():
    good = [_rec('ssd+memory', s, 1.0, 0.97, 0.92, 0.3) for s in range(3)] + [_rec('ssd', s, 1.0, 0.6, 0.05) for s in range(3)]
    assert [v['status'] for v in analysis.verdicts(good)] == ['met'] * 4
    two = [r for r in good if r['seed'] < 2]
    assert [v['status'] for v in analysis.verdicts(two)] == ['too few seeds'] * 4
    one_bad = good[:2] + [_rec('ssd+memory', 2, 1.0, 0.97, 0.85, 0.3)] + good[3:]
    st = [v['status'] for v in analysis.verdicts(one_bad)]
    assert st[1] == 'missed' and st[3] == 'met'                    # 16x 0.85 < 0.90 on one seed; on - off is still 0.55
    close = [_rec('ssd+memory', s, 1.0, 0.97, 0.92, 0.7) for s in range(3)] + good[3:]
    assert analysis.verdicts(close)[3]['status'] == 'missed'       # ttl on - off = 0.22 < 0.3
    assert [v['status'] for v in analysis.verdicts([])] == ['missing'] * 4
    # a later, longer run of the same arm and seed (another set) replaces a short one, in either order of the sets
    short = [dict(r, steps_done=50) for r in one_bad]
    for recs in (short + good, good + short):
        assert [v['status'] for v in analysis.verdicts([dict(r, steps_done=r.get('steps_done', 500)) for r in recs])] \
            == ['met'] * 4


def test_diagnostics_find_the_needle_and_measure_the_memory():
    run = _load('run')
    torch.manual_seed(0)
    model = HyperMnemosyne(run.arm_config('ssd+memory', 'tiny', mem_chunk=16)).eval()
    doc = passkey(256, 0.5, seed=3)
    a, b = analysis.needle_span(doc.tokens[0].tolist())
    assert bytes(doc.tokens[0, a:b].tolist()).startswith(b'The pass key is ') and bytes(doc.tokens[0, a:b].tolist()).endswith(b'is the pass key. ')
    d = analysis.diagnostics(model, doc.tokens, doc.mask)
    blocks = [str(i) for i in model.config.memory_layers]
    assert sorted(d['store']) == sorted(d['read']) == sorted(blocks)
    for blk in blocks:
        s = d['store'][blk]
        assert all(-1 <= s[k] <= 1 for k in ('needle', 'needle_init', 'random', 'filler'))
        assert s['needle'] > s['random'] + 0.1                    # writing the document moves M(k) towards v
        assert d['read'][blk]['question'] > 0 and d['grads'][blk]['W_K'] > 0 and d['grads'][blk]['gate_lr'] > 0
        assert len(d['surprise'][blk]) == 256 and all(math.isfinite(x) for x in d['surprise'][blk])
        gv, mem = d['gates'][blk], model.blocks[int(blk)].memory.memory
        assert 0 < gv['out_gate'] < 1 and 0 < gv['theta'] < mem.max_lr and 0 < gv['eta'] < 1 and 0 < gv['alpha'] < 1
    assert sum(d['surprise']['needle']) == b - a and d['grads']['rest_rms'] > 0 and d['grads']['rest_median'] > 0
    assert all(p.grad is None for p in model.parameters())        # the gradient probe leaves no gradients behind
    with torch.no_grad(): model.blocks[int(blocks[0])].memory.gate.bias.fill_(-20.0)   # a memory turned down shows
    assert analysis.memory_gates(model, doc.tokens)[blocks[0]]['out_gate'] < 1e-6 < d['gates'][blocks[0]]['out_gate']
    try: analysis.needle_span([65] * 50); raise AssertionError('needle_span accepted a document without a needle')
    except ValueError: pass


def test_runner_rejects_bad_arguments_with_one_line():
    for args, word in ((['--arms', 'lstm'], '--arms'), (['--seq_len', '64'], '--seq_len'), (['--task_frac', '1.5'], '--task_frac'),
                       (['--seeds', 'a'], '--seeds'), (['--preset', 'huge'], '--preset')):
        r = runner(*args, '--out', '/tmp/never-written-length')
        assert r.returncode == 2 and word in r.stderr and 'Traceback' not in r.stderr, r.stderr
