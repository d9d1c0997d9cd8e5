"The recall sweep (experiments/recall): Zoology's MQAR generator, and a CPU miniature of the runner read by the verdict code."
import importlib.util, json, os, subprocess, sys
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / 'experiments' / 'recall' / 'run.py'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}


def _load(name):
    spec = importlib.util.spec_from_file_location(f'recall_{name}', ROOT / 'experiments' / 'recall' / f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

run_mod, analysis = _load('run'), _load('analysis')


def runner(*args):
    return subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, env=ENV, timeout=300)


def test_mqar_targets_are_the_paired_values_and_labels_sit_only_at_queries():
    V, seq, pairs = run_mod.VOCAB, 128, 8
    x, y = run_mod.mqar(200, seq, pairs, seed=3)
    assert x.shape == y.shape == (200, seq)
    keys, vals = x[:, 0:2 * pairs:2], x[:, 1:2 * pairs:2]
    assert ((keys >= 1) & (keys < V // 2)).all() and ((vals >= V // 2) & (vals < V)).all()
    assert all(len(set(k.tolist())) == pairs for k in keys)                       # distinct keys within a sequence
    assert (y[:, :2 * pairs] == -100).all()                                       # no label in the pairs region
    for i in range(200):
        pos = (y[i] != -100).nonzero().flatten()
        assert len(pos) == pairs and ((pos - 2 * pairs) % 2 == 0).all()           # one query per key, on a query slot
        table = dict(zip(keys[i].tolist(), vals[i].tolist()))
        assert sorted(x[i, pos].tolist()) == sorted(table)                        # each key queried exactly once
        for p in pos.tolist():
            assert y[i, p].item() == table[x[i, p].item()] == x[i, p + 1].item()  # target = its key's value, shown next


def test_mqar_gaps_follow_a_power_law_and_data_are_seeded():
    x, y = run_mod.mqar(2000, 256, 16, seed=0)
    slot = ((y != -100).nonzero()[:, 1] - 32) // 2
    near, far = (slot < 16).float().mean().item(), (slot >= 112 - 16).float().mean().item()
    assert near > 2 * far                                                          # early slots are much more likely
    x2, y2 = run_mod.mqar(2000, 256, 16, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, run_mod.mqar(2000, 256, 16, seed=1)[0])
    z, _ = run_mod.mqar(50, 64, 4, seed=0, filler='zero')
    assert (z[:, 8:] == 0).float().mean() > 0.5                                    # zero filler between the queries


def test_miniature_sweep_writes_complete_jsons_skips_finished_runs_and_feeds_the_verdicts(tmp_path):
    args = ['--mixers', 'attention,ssd+memory', '--widths', '32', '--settings', '64:4', '--lrs', '3e-3', '--seeds', '0',
            '--steps', '3', '--batch_size', '8', '--n_train', '64', '--n_test', '16', '--eval_every', '2',
            '--workers', '2', '--out', str(tmp_path / 'mini')]
    r = runner(*args)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    files = sorted((tmp_path / 'mini').glob('*.json'))
    assert [f.name for f in files] == ['attention_d32_L64_p4_lr0.003_s0_n3.json', 'ssd-memory_d32_L64_p4_lr0.003_s0_n3.json']
    assert r.stdout.count('acc ') == 2 and '2 runs, 0 already done' in r.stdout
    for f in files:
        j = json.loads(f.read_text())
        assert set(analysis.FIELDS) <= set(j)
        assert j['complete'] and j['steps_done'] == 3 and j['gpu'] == 'CPU' and j['torch'] == torch.__version__
        assert 0 <= j['test_acc'] <= 1 and j['wall_s'] > 0 and len(j['commit']) >= 7
        assert [c['step'] for c in j['curve']] == [2, 3] and j['curve'][-1]['test_acc'] == j['test_acc']
        assert '--mixers attention,ssd+memory' in j['command'] and str(tmp_path) in j['command']
        if 'memory' not in j['mixer']: assert j['diagnostics'] is None; continue
        dg = j['diagnostics']                                                       # issue 16's checks, per memory block
        assert sorted(dg['store']) == sorted(dg['read']) == ['0', '1'] and dg['grads']['rest_rms'] > 0
        for b in ('0', '1'):
            assert all(-1 <= dg['store'][b][k] <= 1 for k in ('stored', 'init', 'random'))
            assert dg['read'][b]['question'] > 0 and dg['grads'][b]['W_K'] > 0 and dg['grads'][b]['gate_lr'] > 0
        import matplotlib; matplotlib.use('Agg')
        fig = run_mod._length_analysis().plot_diagnostics(dict(j, set='mini'))          # the notebook's figure
        assert len(fig.axes) == 3 and len(fig.axes[0].patches) == 2 * 3                  # 2 blocks x stored/init/random
    again = runner(*args)
    assert again.returncode == 0 and '2 runs, 2 already done, 0 to run' in again.stdout and 'acc ' not in again.stdout
    recs = analysis.load_results(tmp_path)                                         # root/<set>/*.json, set 'mini'
    assert sorted(r['mixer'] for r in recs) == ['attention', 'ssd+memory'] and all(r['smoke'] and r['set'] == 'mini' for r in recs)
    pts = analysis.best_points(recs)
    assert {(p['mixer'], p['accs'][0]) for p in pts} == {(r['mixer'], r['test_acc']) for r in recs}
    assert analysis.table(recs).count('| 64/4 |') == 2
    assert [v['status'] for v in analysis.verdicts(recs)] == ['missing'] * 3       # d32 is off the grid the goals name


def test_verdicts_need_every_seed_and_enough_seeds():
    def rec(mixer, seq, pairs, d, lr, seed, acc):
        return dict(mixer=mixer, seq=seq, pairs=pairs, d_model=d, lr=lr, seed=seed, test_acc=acc, steps=100, batch_size=8)
    goal = 'a memory-bearing mixer >= 0.95 at 256/16, d 128'
    one = [rec('memory', 256, 16, 128, 1e-3, 0, 0.97)]
    assert {x['goal']: x for x in analysis.verdicts(one)}[goal]['status'] == 'too few seeds'
    two = one + [rec('memory', 256, 16, 128, 1e-3, 1, 0.94)]                    # one seed misses: not met
    assert {x['goal']: x for x in analysis.verdicts(two)}[goal]['status'] == 'missed'
    best = two + [rec('ssd+memory', 256, 16, 128, 3e-3, s, 0.96) for s in (0, 1)]
    assert {x['goal']: x for x in analysis.verdicts(best)}[goal]['status'] == 'met'
    lr_sweep = [rec('attention', 64, 4, 64, lr, s, a) for lr, a in ((1e-4, 0.1), (3e-3, 1.0)) for s in (0, 1)]
    p = analysis.best_points(lr_sweep)
    assert len(p) == 1 and p[0]['lr'] == 3e-3 and p[0]['lrs_tried'] == [1e-4, 3e-3] and p[0]['min_acc'] == 1.0
    att = {x['goal']: x for x in analysis.verdicts(lr_sweep)}['attention >= 0.99 at every width']
    assert att['status'] == 'incomplete' and 'attention 512/64 d512' in att['detail']


def test_runner_rejects_bad_arguments_with_one_line():
    for args, word in ((['--mixers', 'lstm'], '--mixers'), (['--settings', '250:100'], '--settings'), (['--points', '256:16'], '--points'),
                       (['--widths', '48'], '--widths'), (['--settings', 'x'], '--settings')):
        r = runner(*args, '--out', '/tmp/never-written-recall', '--dry_run')
        assert r.returncode == 2 and word in r.stderr and 'Traceback' not in r.stderr, r.stderr


def test_points_select_runs_and_the_deadline_saves_a_partial_run(tmp_path):
    dry = runner('--points', '256:16:128,512:64:256', '--mixers', 'attention', '--lrs', '1e-3,3e-3', '--out', str(tmp_path),
                 '--dry_run')
    assert dry.returncode == 0 and '4 runs, 0 already done' in dry.stdout
    assert set(dry.stdout.split()[-4:]) == {f'attention_d{d}_L{L}_p{p}_lr{lr}_s0_n2000' for L, p, d in ((256, 16, 128), (512, 64, 256))
                                            for lr in ('0.001', '0.003')}
    late = runner('--mixers', 'attention', '--widths', '32', '--settings', '64:4', '--lrs', '1e-3', '--deadline', '1',
                  '--out', str(tmp_path))
    assert late.returncode == 0 and 'deadline: 1 runs not started' in late.stdout and not list(tmp_path.glob('*.json'))
    spec = run_mod.run_specs(run_mod.parser().parse_args(['--mixers', 'attention', '--widths', '32', '--settings', '64:4',
                             '--lrs', '1e-3', '--steps', '50', '--n_train', '64', '--n_test', '16', '--out', 'x']), 'cpu')[0]
    out = tmp_path / 'set'; out.mkdir()
    cut = runner('--out', str(out), '--_child', json.dumps(spec), '--_deadline_at', '0')     # deadline long past
    assert cut.returncode == 0, cut.stderr[-2000:]
    part = json.loads((out / (run_mod.run_name(spec) + '.partial.json')).read_text())
    assert not part['complete'] and part['steps_done'] == 0 and part['curve'][-1]['eval_n'] == 16
    assert analysis.load_results(tmp_path) == []                                       # a partial run is no result


def test_from_log_rebuilds_finished_runs_only(tmp_path):
    fl = _load('from_log')
    log = ('2 runs, 0 already done, 2 to run with 2 workers on cuda\n'
           '[1/2] memory d128 L256/16 lr 0.003 seed 1: acc 0.019 (465 s, 299 ms/step)\n'
           '[2/2] memory d128 L256/16 lr 0.003 seed 0: acc 0.420 PARTIAL 900/1500 steps (400 s, 444 ms/step)\n')
    args = ['--mixers', 'memory', '--points', '256:16:128', '--lrs', '3e-3', '--seeds', '0,1', '--steps', '1500',
            '--out', str(tmp_path / 'set')]
    recs = fl.records_from_log(log, args, 'abc1234', 'NVIDIA H200', 'cmd')
    assert len(recs) == 1 and recs[0]['seed'] == 1 and recs[0]['test_acc'] == 0.019 and recs[0]['s_per_step'] == 0.299
    assert recs[0]['batch_size'] == 256 and recs[0]['source'] == 'progress log' and recs[0]['curve'][-1]['step'] == 1500
    (tmp_path / 'set').mkdir()
    run_mod.write_json(tmp_path / 'set' / (run_mod.run_name(recs[0]) + '.json'), recs[0])
    assert [r['test_acc'] for r in analysis.load_results(tmp_path)] == [0.019]
    try: fl.records_from_log(log.replace('d128', 'd64'), args, 'c', 'g', 'cmd'); raise AssertionError('unmatched line accepted')
    except ValueError as e: assert 'matches no run' in str(e)


def test_memory_diagnostics_see_what_the_memory_wrote():
    "`store` is higher after the pairs were written than at the initial weights; no memory mixer, no memory block."
    torch.manual_seed(0)
    x, y = run_mod.mqar(8, 64, 4, seed=5)
    model = run_mod.build_model('memory', 64, mem_chunk=8)
    dg = run_mod.memory_diagnostics(model, x, y, pairs=4)
    for b in ('0', '1'):
        s = dg['store'][b]
        assert s['stored'] > s['init'] + 0.1 and s['stored'] > s['random'] + 0.1, s
    la = run_mod._length_analysis()
    assert la.memory_layers(run_mod.build_model('attention', 64)) == []


def test_zoology_figure_keeps_one_colour_per_mixer_across_panels():
    import matplotlib; matplotlib.use('Agg')
    rec = lambda m, seq, pairs, d, acc: dict(mixer=m, seq=seq, pairs=pairs, d_model=d, lr=3e-3, seed=0, test_acc=acc,
                                             steps=10, batch_size=8)
    fig = analysis.plot_zoology([rec('ssd', 128, 8, 256, 0.8), rec('attention', 256, 16, 128, 1.0),
                                 rec('ssd', 256, 16, 128, 0.1)])
    colour = lambda ax, m: next(l.get_color() for l in ax.get_lines() if l.get_label() == m)
    a, b = fig.axes
    assert colour(a, 'ssd') == colour(b, 'ssd') != colour(b, 'attention')        # the lone ssd point is not drawn as attention
    assert [t.get_text() for t in b.get_legend().get_texts()] == ['attention', 'ssd']
