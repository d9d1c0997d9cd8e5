"""Integration tests of `hm_train` that need separate processes: the CLI end to end, kill-and-resume (SIGKILL, SIGINT),
bad input through the CLI, and `torchrun` DDP with 2 CPU processes (gloo). Small settings: the whole file runs in
well under 3 minutes on 2 cores. The notebook nbs/11_train.ipynb holds the fast in-process tests."""
import contextlib, json, os, signal, subprocess, sys, tempfile, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'PYTHONHASHSEED': '0', 'MPLBACKEND': 'Agg'}
# tiny model, tiny batches, 0.5 MB of the stdlib corpus: seconds per run
SMALL = ['--preset', 'tiny', '--batch_size', '2', '--seq_len', '32', '--warmup', '2', '--eval_batches', '1',
         '--max_corpus_mb', '0.5', '--no-progress']
# hm_train with every optimizer step slowed down (lr_factor is looked up at each step), so that a signal can be
# delivered while it runs; everything else is the real console-script path.
SLOW = ("import sys, time, hypermnemosyne.train.loop as T; f = T.lr_factor; "
        "T.lr_factor = lambda *a, **k: (time.sleep(float(sys.argv[1])), f(*a, **k))[1]; sys.exit(T.hm_train(sys.argv[2:]))")

def hm_train(*args, timeout=240):
    return run_group(['hm_train', *args], timeout=timeout)

def _tree(pid):
    "`pid` and every process below it (Linux /proc), parents before children."
    out, todo = [], [pid]
    while todo:
        q = todo.pop(0); out.append(q)
        with contextlib.suppress(OSError):
            for t in os.listdir(f'/proc/{q}/task'):
                todo += [int(c) for c in Path(f'/proc/{q}/task/{t}/children').read_text().split()]
    return out

def run_group(cmd, timeout=300):
    """`subprocess.run(cmd)` with its output in files, every process below it killed on a timeout. torchrun starts each
    worker in a session of its own, so killing torchrun's process group alone left a hung worker running, and a pipe
    it held open kept the test waiting past any timeout (seen once: a gloo worker that did not exit)."""
    with tempfile.TemporaryFile('w+') as fo, tempfile.TemporaryFile('w+') as fe:
        p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=fo, stderr=fe, text=True, start_new_session=True)
        try: p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in reversed(_tree(p.pid)):
                with contextlib.suppress(OSError): os.kill(q, signal.SIGKILL)
            p.wait(); raise
        fo.seek(0); fe.seek(0)
        return subprocess.CompletedProcess(cmd, p.returncode, fo.read(), fe.read())

def metrics(run):
    rows = [json.loads(l) for l in (Path(run) / 'metrics.jsonl').read_text().splitlines() if l.strip()]
    return {r['step']: r for r in rows if 'loss' in r}, {r['step']: r for r in rows if 'val_loss' in r}

def ckpt_steps(run):
    d = Path(run) / 'ckpt'
    return sorted(int(p.name.split('_')[1]) for p in d.glob('step_*') if (p / 'meta.json').exists()) if d.exists() else []

def wait_for(pred, proc, timeout=120):
    t = time.time()
    while not pred():
        assert proc.poll() is None, f'process ended early (rc {proc.returncode}): {proc.stderr.read() if proc.stderr else ""}'
        assert time.time() - t < timeout, 'timed out waiting'
        time.sleep(0.02)

def test_cli_end_to_end_and_bad_input(tmp_path):
    run = tmp_path / 'run'
    r = hm_train(*SMALL, '--out', str(run), '--steps', '4', '--eval_every', '2', '--ckpt_every', '2')
    assert r.returncode == 0, r.stderr
    assert 'status=completed' in r.stdout
    tr, ev = metrics(run)
    assert sorted(tr) == [1, 2, 3, 4] and sorted(ev) == [2, 4]
    assert all(0 < ev[s]['val_bpb'] < 20 and ev[s]['val_loss'] > 0 for s in ev)
    assert tr[4]['lr_muon'] < tr[2]['lr_muon']  # cosine decay after the 2-step warmup
    assert ckpt_steps(run) == [2, 4]
    cfg = json.loads((run / 'config.json').read_text())
    assert cfg['train']['batch_size'] == 2 and cfg['train']['preset'] == 'tiny' and 'vocab_size' in cfg['model']
    summ = json.loads((run / 'summary.json').read_text())
    assert summ['status'] == 'completed' and summ['step'] == 4
    # load_run gives a working model with the tokenizer
    code = ("import sys, torch; from hypermnemosyne.train.checkpoint import load_run; m, tok, c = load_run(sys.argv[1]); "
            "ids = torch.tensor([tok.encode('def f(x):')]); out = m(ids); "
            "assert out.logits.shape == (1, ids.shape[1], c.vocab_size), out.logits.shape; print('ok')")
    r2 = subprocess.run([sys.executable, '-c', code, str(run)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert r2.returncode == 0 and 'ok' in r2.stdout, r2.stderr
    # bad input: exit status 2, a message, no traceback, nothing overwritten
    before = {p: p.read_bytes() for p in (run / 'ckpt').rglob('*') if p.is_file()}
    cases = [(['--preset', 'nope', '--out', str(tmp_path / 'x')], 'unknown preset'),
             (['--out', str(run / 'config.json')], 'is a file'),
             (['--out', str(run)], 'already holds checkpoints'),
             (['--out', str(run), '--resume', '--seed', '1'], 'seed: checkpoint=0, now=1'),
             (['--out', str(run), '--resume', '--model', 'd_model=96'], 'd_model: checkpoint='),
             (['--out', str(run), '--schedule', 'linear'], 'unknown schedule')]
    for extra, msg in cases:
        args = [a for a in SMALL if a not in ('--preset', 'tiny')] if '--preset' in extra else SMALL
        r = hm_train(*args, *extra, '--steps', '6')
        assert r.returncode == 2 and msg in r.stderr and 'Traceback' not in r.stderr, (extra, r.stderr)
    # a corrupt checkpoint: clear error on resume, nothing overwritten
    f = run / 'ckpt' / 'step_000004' / 'model.safetensors'
    good = f.read_bytes(); f.write_bytes(good[:len(good) // 2])
    r = hm_train(*SMALL, '--out', str(run), '--resume', '--steps', '6')
    assert r.returncode == 2 and 'corrupt or truncated' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert ckpt_steps(run) == [2, 4]
    after = {p: p.read_bytes() for p in (run / 'ckpt').rglob('*') if p.is_file()}
    assert after.keys() == before.keys() and all(after[p] == before[p] for p in after if p != f)

def test_sigkill_and_sigint_then_resume_equal_uninterrupted(tmp_path):
    args = [*SMALL, '--steps', '8', '--eval_every', '4', '--ckpt_every', '2', '--keep_last', '0']
    a, b = tmp_path / 'a', tmp_path / 'b'
    r = hm_train(*args, '--out', str(a)); assert r.returncode == 0, r.stderr
    ref, ref_ev = metrics(a)
    # 1) SIGKILL right after the step-2 checkpoint is complete (no handler can run)
    p = subprocess.Popen([sys.executable, '-c', SLOW, '0.4', *args, '--out', str(b)], cwd=ROOT, env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: 2 in ckpt_steps(b), p)
    p.kill(); p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    k = ckpt_steps(b)[-1]; assert 2 <= k < 8
    # 2) resume (slowed), then SIGINT: it finishes the step, checkpoints, exits 130 without a traceback
    p = subprocess.Popen([sys.executable, '-c', SLOW, '0.4', *args, '--out', str(b), '--resume'], cwd=ROOT, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (b / 'metrics.jsonl').exists() and max(metrics(b)[0]) > k, p)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and 'Traceback' not in err, err
    summ = json.loads((b / 'summary.json').read_text())
    assert summ['status'] == 'interrupted' and summ['step'] in ckpt_steps(b) and summ['step'] < 8, summ
    # 3) resume to the end: every step after the first checkpoint, and the final evaluation, equal the uninterrupted run
    r = hm_train(*args, '--out', str(b), '--resume'); assert r.returncode == 0, r.stderr
    got, got_ev = metrics(b)
    rows = [json.loads(l) for l in (b / 'metrics.jsonl').read_text().splitlines() if l.strip()]
    assert [r['step'] for r in rows if 'loss' in r] == list(range(1, 9))  # rows logged after the kill were dropped
    for s in range(1, 9): assert got[s]['loss'] == ref[s]['loss'], (s, got[s]['loss'], ref[s]['loss'])
    assert got_ev[8]['val_loss'] == ref_ev[8]['val_loss']

def test_torchrun_ddp_two_cpu_processes(tmp_path):
    run = tmp_path / 'ddp'
    cmd = ['torchrun', '--standalone', '--nproc_per_node', '2', '--no-python', 'hm_train', *SMALL, '--out', str(run),
           '--steps', '4', '--eval_every', '2', '--ckpt_every', '2', '--rank_logs']
    r = run_group(cmd)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'cpu x2' in r.stdout and r.stdout.count('status=completed') == 1  # rank 0 alone reports
    logs = [[json.loads(l) for l in (run / f'rank{i}.jsonl').read_text().splitlines()] for i in (0, 1)]
    steps = [[x for x in lg if 'local_loss' in x] for lg in logs]
    tr, ev = metrics(run)
    assert [x['step'] for x in steps[0]] == [x['step'] for x in steps[1]] == [1, 2, 3, 4]
    for x0, x1 in zip(*steps):
        assert x0['logged_loss'] == x1['logged_loss']                                   # both ranks agree
        assert abs(x0['logged_loss'] - (x0['local_loss'] + x1['local_loss']) / 2) < 1e-5  # it is the mean over ranks
        assert tr[x0['step']]['loss'] == x0['logged_loss']                              # and what rank 0 logged
    assert any(x0['local_loss'] != x1['local_loss'] for x0, x1 in zip(*steps))          # ranks saw different shards
    sums = [[x['param_sum'] for x in lg if 'param_sum' in x][-1] for lg in logs]
    assert sums[0] == sums[1]                                                           # weights stayed in sync
    assert sorted(ev) == [2, 4] and ckpt_steps(run) == [2, 4]
    # DDP resume: stop after 2 steps, resume under torchrun: the same losses as the uninterrupted DDP run
    run2 = tmp_path / 'ddp2'
    base = [a if a != str(run) else str(run2) for a in cmd if a != '--rank_logs']
    r = run_group(base + ['--stop_after', '2'])
    assert r.returncode == 0 and ckpt_steps(run2) == [2], r.stderr[-3000:]
    r = run_group(base + ['--resume'])
    assert r.returncode == 0, r.stderr[-3000:]
    tr2, ev2 = metrics(run2)
    assert {s: x['loss'] for s, x in tr2.items()} == {s: x['loss'] for s, x in tr.items()}
    assert ev2[4]['val_loss'] == ev[4]['val_loss']
