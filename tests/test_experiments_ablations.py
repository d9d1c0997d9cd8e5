"""The ablation study (experiments/ablations): arm definitions, the evaluations, the runner end to end on a few CPU
steps, the probes, and the analysis that the notebook renders (including the recorded result sets)."""
import importlib.util, json, math, os, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest, torch
from hypermnemosyne.data import ByteTokenizer, passkey
from hypermnemosyne.model import HMConfig, HyperMnemosyne
from hypermnemosyne.train.loop import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / 'experiments' / 'ablations'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1', 'MPLBACKEND': 'Agg'}


def _load(name):
    spec = importlib.util.spec_from_file_location(f'ablations_{name}', HERE / f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

run, A = _load('run'), _load('analysis')


def runner(*args, timeout=300):
    return subprocess.run([sys.executable, str(HERE / 'run.py'), *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def test_each_arm_differs_from_the_base_in_its_question_only():
    base = run.arm_spec('mhc', 'tiny')
    for arm in ('residual', 'hc', 'memory', 'jepa', 'adamw'):
        s = run.arm_spec(arm, 'tiny')
        diff = {k for k in set(s['model']) | set(base['model']) if s['model'].get(k) != base['model'].get(k)}
        assert len(diff | set(s['train'])) == 1, (arm, s)
    assert run.arm_spec('memory', 'tiny')['model']['memory_layers'] == list(HMConfig.preset('tiny').memory_layers)
    assert TrainConfig(**run.arm_spec('adamw', 'tiny')['train']).optimizer == 'adamw'
    d = run.arm_spec('deep_hc', 'tiny')
    assert HMConfig.preset('tiny', **d['model']).n_sublayers >= 48 and d['lr_mult'] > 1
    with pytest.raises(ValueError, match='unknown arm'): run.arm_spec('bogus', 'tiny')
    with pytest.raises(ValueError, match='>= 24 blocks'): run.arm_spec('deep_mhc', 'tiny', deep_layers=8)
    assert all(set(q['arms']) <= set(run.ARMS) for q in run.QUESTIONS.values()) and A.ARMS == run.ARMS


def test_answer_accuracy_scores_shifted_masked_tokens_and_fails_nan_rows():
    tb = passkey(160, 0.5, seed=0, batch_size=2)
    perfect = torch.full((2, 160, 260), -10.0)
    perfect[:, :-1].scatter_(2, tb.tokens[:, 1:, None], 10.0)               # logits at i predict token i+1
    assert run.answer_accuracy(perfect, tb.tokens, tb.mask) == (1.0, 1.0)
    assert run.answer_accuracy(perfect.roll(1, dims=1), tb.tokens, tb.mask)[0] == 0.0
    nan_row = perfect.clone(); nan_row[1, 3, 7] = float('nan')
    assert run.answer_accuracy(nan_row, tb.tokens, tb.mask) == (0.5, 0.5)
    with pytest.raises(ValueError, match='must agree'): run.answer_accuracy(perfect[:, :10], tb.tokens, tb.mask)
    assert run.mqar_pairs_for(128) == [4, 8, 16, 32]
    pk = run.passkey_batch(256, 4, seed=1)
    assert pk.tokens.shape == (4, 256) and int(pk.mask.sum()) == 4 * 5
    assert [run.task_kind(s, 128) for s in range(3)] == ['passkey', 'mqar', 'passkey']
    assert [run.task_kind(s, 12) for s in range(3)] == ['passkey'] * 3        # no MQAR size fits 12 tokens


def test_retrieval_finds_identical_views_and_not_mismatched_ones():
    torch.manual_seed(0)
    tiny = HyperMnemosyne(HMConfig.preset('tiny', memory_layers=())).eval()
    texts = [f'def f{i}(x):\n    return x * {i} + {i * i} - len("{"ab" * i}")\n' for i in range(12)]
    same = run.retrieval_accuracy(tiny, [(t, t) for t in texts], ByteTokenizer(), max_len=128, batch_size=5)
    assert same['enc_top1'] == 1.0 and same['n'] == 12 and math.isclose(same['chance'], 1 / 12)
    shifted = [(t, texts[(i + 1) % 12]) for i, t in enumerate(texts)]
    assert run.retrieval_accuracy(tiny, shifted, ByteTokenizer(), max_len=128)['enc_top1'] < 0.5
    with pytest.raises(ValueError, match='at least 2 pairs'):
        run.retrieval_accuracy(tiny, texts[:1], ByteTokenizer(), 64)


def test_composite_gain_is_one_for_mhc_and_absent_for_residual():
    torch.manual_seed(0)
    tiny = HyperMnemosyne(HMConfig.preset('tiny', memory_layers=())).eval()
    ids = torch.randint(0, 256, (2, 32))
    residual = HyperMnemosyne(HMConfig.preset('tiny', mhc_mode='residual', memory_layers=()))
    assert run.composite_gains(residual, ids) is None
    g = run.composite_gains(tiny, ids)
    assert len(g['mean']['fwd']) == tiny.config.n_sublayers
    assert np.allclose(g['max']['fwd'], 1.0, atol=1e-4)
    assert max(g['max']['bwd']) < 1.05 and min(g['max']['min_col']) > 0.95, g['max']
    assert all(not m.record and m.last is None for m in tiny.modules() if hasattr(m, 'record'))   # left clean


def test_ttl_off_freezes_the_memory_after_the_first_chunk():
    torch.manual_seed(0)
    mem = HyperMnemosyne(HMConfig.preset('tiny')).eval()
    c = mem.config.mem_chunk
    x = torch.randint(0, 256, (2, 4 * c))
    on, off = run.task_logits(mem, x, ttl=True), run.task_logits(mem, x, ttl=False)
    assert (on[:, c:] - off[:, c:]).abs().max() > 1e-4                      # the switch changes what the memory reads
    assert torch.allclose(on[:, :c], off[:, :c], atol=1e-5)                 # no write reaches the first chunk
    with torch.no_grad(): assert torch.allclose(on, mem(x).logits, atol=1e-4)   # ttl on == the stateless forward
    clipped = HyperMnemosyne(HMConfig.preset('tiny', mem_max_grad_norm=0.5))
    assert [b.memory.memory.max_grad_norm for b in clipped.blocks if b.has_memory] == [0.5]


def test_bad_arguments_fail_with_one_line_before_anything_runs(tmp_path, capsys):
    r = runner('--arms', 'mhc,nope', '--out', str(tmp_path / 'never'))
    assert r.returncode == 2 and '--arms: unknown' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / 'never').exists()
    cases = ((['--seeds', 'a,b'], '--seeds'), (['--jobs', '0'], '--jobs'),
             (['--steps', '0', '--budget_s', '0'], '--budget_s'))
    for args, word in cases:
        assert run.main([*args, '--out', str(tmp_path / 'never')]) == 2
        err = capsys.readouterr().err
        assert word in err and len(err.strip().splitlines()) == 1 and not (tmp_path / 'never').exists(), err


def test_runner_end_to_end_writes_well_formed_results(tmp_path):
    out = tmp_path / 'smoke'
    r = runner('--preset', 'tiny', '--arms', 'mhc,memory', '--seeds', '0', '--steps', '3', '--batch_size', '2',
               '--seq_len', '128', '--jobs', '2', '--task_steps', '2', '--task_n', '2', '--retrieval_n', '8',
               '--eval_batches', '1', '--max_corpus_mb', '0.3', '--task_schedule', 'cosine', '--out', str(out),
               '--work', str(tmp_path / 'work'))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    got = {f.name.split('_seed')[0]: json.loads(f.read_text()) for f in out.glob('*_seed0.json')}
    assert sorted(got) == ['memory', 'mhc']
    for arm, res in got.items():
        assert res['status'] == 'ok' and res['tokens'] == 3 * 2 * 128
        assert np.isfinite(res['val_bpb']) and len(res['curve']['train']) == 3 and res['curve']['val'][-1][0] == 3
        n_sub = HMConfig.preset('tiny', **res['model_overrides']).n_sublayers
        assert len(res['composite_gain']['mean']['bwd']) == n_sub
        assert 0 <= res['retrieval']['enc_top1'] <= 1 and res['tasks']['passkey']['lengths'] == [128, 512, 2048]
    assert sorted(got['memory']['tasks']['passkey']['acc']) == ['ttl_off', 'ttl_on']
    tc = got['memory']['tasks']['task_curve']     # step 0 trained on passkey, step 1 on MQAR, each logged apart
    assert ([s for s, _ in tc['passkey']], [s for s, _ in tc['mqar']]) == ([0], [1])
    assert all(math.isfinite(x) and x > 0 for c in tc.values() for _, x in c), tc
    plan = json.loads((out / 'plan.json').read_text())
    assert (plan['steps'], plan['task_schedule'], plan['jobs']) == (3, 'cosine', ['memory:0', 'mhc:0'])
    assert plan['command'].startswith('python experiments/ablations/run.py --preset tiny')
    assert [r['arm'] for r in A.summarize(A.load_results(tmp_path))] == ['mhc', 'memory']


def test_concurrent_probes_time_one_window():
    conc = run.probe_concurrent(['residual', 'mhc'], 'tiny', 2, 64, 'cpu', lead_s=10, window_s=2)
    assert len(conc) == 2 and all(0 < c < 2 for c in conc), conc
    with pytest.raises(RuntimeError, match='raise lead_s'):
        run.probe_step_time('residual', 'tiny', 2, 64, 'cpu', window=(time.time() - 1, time.time() + 5))


def _fake(arm, seed, bpb, status='ok'):
    return dict(arm=arm, seed=seed, status=status, val_bpb=bpb, device='cpu', steps=1, tokens=1,
                retrieval=dict(enc_top1=0.5, pred_top1=0.25))


def test_summaries_pair_seeds_and_skip_unfinished_runs():
    rs = [_fake('mhc', 0, 2.0), _fake('mhc', 1, 2.2), _fake('residual', 0, 3.0), _fake('residual', 1, None, 'diverged')]
    assert np.allclose(A.arm_metric(rs, 'mhc', A.METRICS['val_bpb'])[:2], (2.1, 0.1))
    rows = {r['arm']: r for r in A.summarize({'x': rs})}
    assert rows['mhc']['val_bpb'] == '2.100 ± 0.100' and rows['residual']['seeds'] == '1 ok, 1 diverged'
    assert A.load_results('/nonexistent/dir') == {}
    pd = A.paired_diff([_fake('a', 0, 1.0), _fake('b', 0, 1.5), _fake('a', 1, 2.0)], 'a', 'b', A.METRICS['val_bpb'])
    assert np.allclose(pd[2], [-0.5])                                        # seed 1 has no partner: left out
    big_spread = [_fake('mhc', 0, 2.0), _fake('mhc', 1, 2.4), _fake('residual', 0, 2.05), _fake('residual', 1, 2.45)]
    row = A.compare(big_spread, 'hyper-connections')[0]                      # paired: agrees despite the seed spread
    assert (row['a'], row['b'], row['seeds']) == ('mhc', 'residual', 'a better') and np.allclose(row['diffs'], -0.05)
    mixed = [_fake('mhc', 0, 2.0), _fake('mhc', 1, 2.2), _fake('residual', 0, 1.95), _fake('residual', 1, 2.3)]
    assert A.compare(mixed, 'hyper-connections')[0]['seeds'] == 'mixed'
    assert A.seeds_agree([0.1]) == 'one seed' and A.seeds_agree([0.2, 0.1], lower_better=False) == 'a better'
    assert A.loss_spike(dict(curve=dict(train=[[1, 5.], [2, 3.], [3, 4.5], [4, 2.]]))) == 1.5
    assert A.loss_spike(dict(curve=dict(train=[[1, 5.], [2, 3.], [3, 2.]]))) == 0.0
    assert A.within_chance(2 / 200, 200) and not A.within_chance(0.05, 200) and A.within_chance(0.047, 200, k=5)


def test_recorded_result_sets_load_and_render():
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    res = A.load_results(HERE / 'results')
    assert {k: len(v) for k, v in res.items()} == {'cpu-tiny': 18, 'gpu-small': 18, 'gpu-small-task400': 4,
                                                    'gpu-small-task400-constlr': 4}
    mu = {(r['a'], r['b']): r for r in A.compare(res['gpu-small'], 'optimizer')}[('mhc', 'adamw')]
    assert mu['seeds'] == 'a better' and np.allclose(mu['diffs'], [-0.107, -0.096], atol=1e-3)
    assert '| cpu-tiny | residual |' in A.markdown_table(A.summarize(res))
    for fig in (A.plot_val_curves(A.sets_with(res, 'residual')), A.plot_composite_gain(A.sets_with(res, 'hc')),
                A.plot_stability(A.sets_with(res, 'deep_hc', 'jepa')), A.plot_tasks(A.sets_with(res, 'memory')),
                A.plot_task_loss(A.sets_with(res, 'memory'))):
        assert fig.axes and any(ax.lines for ax in fig.axes); plt.close(fig)
