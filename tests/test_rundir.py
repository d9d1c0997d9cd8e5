"""`hm_train` run directories as a careful user meets them (issue 17): one writer per directory, directories that are
not runs, resumes that cannot continue, stale tokenizers, crash leftovers, the NaN guard's advice, the lr schedule on
resume, damaged metrics, and bad arguments or files. Every refusal is one line on stderr, exit status 2, no traceback,
and leaves the files as they were. Tiny settings: each `hm_train` call takes seconds."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'PYTHONHASHSEED': '0', 'MPLBACKEND': 'Agg'}
COMMON = ['--preset', 'tiny', '--batch_size', '2', '--seq_len', '32', '--warmup', '5', '--eval_batches', '1', '--no-progress',
          '--device', 'cpu', '--max_corpus_mb', '0.5']
# hm_train with every optimizer step slowed down, so that a second process can meet it while it runs
SLOW = ("import sys, time, hypermnemosyne.train.loop as T; f = T.lr_factor; "
        "T.lr_factor = lambda *a, **k: (time.sleep(float(sys.argv[1])), f(*a, **k))[1]; sys.exit(T.hm_train(sys.argv[2:]))")

def run(*args, timeout=240):
    return subprocess.run(list(args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)

def hm_train(*args): return run('hm_train', *COMMON, *args)

def snap(d):
    "Every file under `d` (but the lock file) with its bytes."
    return {p: p.read_bytes() for p in sorted(Path(d).rglob('*')) if p.is_file() and p.name != 'hm_train.lock'}

def refused(r, *needles):
    "Exit status 2, one line on stderr that contains every needle, no traceback."
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert 'Traceback' not in r.stderr and len(err.splitlines()) == 1, r.stderr[-2000:]
    for n in needles: assert n in err, (n, err)

def rows(run_dir):
    return [json.loads(l) for l in (Path(run_dir) / 'metrics.jsonl').read_text().splitlines() if l.strip()]

def ckpt_steps(run_dir):
    return sorted(int(p.name[5:]) for p in (Path(run_dir) / 'ckpt').glob('step_*'))

@pytest.fixture(scope='module')
def done(tmp_path_factory):
    "A finished 6-step run with checkpoints at steps 2, 4, 6 (copy it before changing it)."
    d = tmp_path_factory.mktemp('done') / 'run'
    r = hm_train('--out', str(d), '--steps', '6', '--ckpt_every', '2', '--keep_last', '0')
    assert r.returncode == 0, r.stderr[-2000:]
    return d

def copy(done, tmp_path, name='run'):
    d = tmp_path / name; shutil.copytree(done, d); return d

def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / 'T3'
    p = subprocess.Popen([sys.executable, '-c', SLOW, '0.3', *COMMON, '--out', str(out), '--steps', '40', '--ckpt_every', '10',
                          '--seed', '1'], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t = time.time()
        while not (out / 'metrics.jsonl').exists():
            assert p.poll() is None and time.time() - t < 120, p.stderr.read() if p.poll() is not None else 'timed out'
            time.sleep(0.05)
        before = (out / 'config.json').read_bytes()
        for extra in (['--seed', '2', '--ckpt_every', '0'], ['--resume']):
            r = hm_train('--out', str(out), '--steps', '40', *extra)
            refused(r, f'is in use by another training process (pid {p.pid}')
        assert (out / 'config.json').read_bytes() == before and json.loads(before)['train']['seed'] == 1
        assert p.poll() is None  # the first run goes on undisturbed
    finally:
        p.kill(); p.wait()
    # the killed holder's lock went with it: the run can be resumed (from its last checkpoint, or started if it had none)
    r = hm_train('--out', str(out), '--steps', '12', '--ckpt_every', '0', '--seed', '1', *(['--resume'] if ckpt_steps(out) else []))
    assert r.returncode == 0, r.stderr[-2000:]

def test_a_directory_that_is_not_a_run_is_left_alone(tmp_path):
    u = tmp_path / 'u'; u.mkdir()
    (u / 'config.json').write_text('{"my": 1}'); (u / 'metrics.jsonl').write_text('x\n')
    before = snap(u)
    refused(hm_train('--out', str(u), '--steps', '6'), 'is a non-empty directory that is not a run', '--overwrite')
    assert snap(u) == before and sorted(p.name for p in u.iterdir()) == ['config.json', 'metrics.jsonl']
    r = hm_train('--out', str(u), '--steps', '6', '--overwrite')
    assert r.returncode == 0 and json.loads((u / 'config.json').read_text())['train']['steps'] == 6, r.stderr[-2000:]

def test_resume_without_a_checkpoint_is_refused_and_keeps_the_metrics(done, tmp_path):
    d = copy(done, tmp_path); shutil.rmtree(d / 'ckpt')
    before = snap(d)
    refused(hm_train('--out', str(d), '--steps', '8', '--resume'), 'has no complete checkpoint', 'drop --resume')
    assert snap(d) == before
    refused(hm_train('--out', str(tmp_path / 'typo'), '--steps', '8', '--resume'), 'does not exist')
    assert not (tmp_path / 'typo').exists()

def test_a_failed_attempt_leaves_no_tokenizer_and_a_stale_one_is_not_reused(tmp_path):
    out = tmp_path / 'tok'
    refused(hm_train('--out', str(out), '--steps', '6', '--seq_len', '1000000'), 'seq_len')
    assert not (out / 'tokenizer').exists()
    r = run(sys.executable, '-c', 'import sys; from hypermnemosyne.data import ByteTokenizer; ByteTokenizer().save(sys.argv[1])', str(out / 'tokenizer'))
    assert r.returncode == 0, r.stderr
    refused(hm_train('--out', str(out), '--steps', '6', '--tokenizer', 'bpe', '--vocab_size', '512'),
            f'{out / "tokenizer"} holds a ByteTokenizer', "tokenizer='bpe' with vocab_size=512 was asked for")

def test_a_finished_run_resumed_is_left_as_it_was(done, tmp_path):
    d = copy(done, tmp_path)
    before = snap(d)
    r = hm_train('--out', str(d), '--steps', '6', '--resume')
    assert r.returncode == 0 and 'nothing to do' in r.stdout and 'status=completed' in r.stdout, r.stderr[-2000:]
    assert snap(d) == before
    assert json.loads((d / 'summary.json').read_text())['loss'] is not None

def test_crash_leftovers_are_cleaned_and_a_half_pruned_checkpoint_is_not_used(done, tmp_path):
    d = copy(done, tmp_path)
    (d / 'ckpt' / 'step_000006' / 'model.safetensors').unlink()    # a prune killed half-way
    dead = subprocess.Popen([sys.executable, '-c', 'pass']); dead.wait()
    tmpdir = d / 'ckpt' / f'.tmp-step_000008-{dead.pid}'; tmpdir.mkdir()
    (tmpdir / 'model.safetensors').write_bytes(b'\0' * 1_000_000)   # a save killed half-way
    r = hm_train('--out', str(d), '--steps', '8', '--resume', '--ckpt_every', '2', '--keep_last', '2')
    assert r.returncode == 0, r.stderr[-2000:]
    assert not tmpdir.exists() and not list((d / 'ckpt').glob('.t*'))
    assert ckpt_steps(d) == [6, 8]                                 # resumed from 4; 6 written again, complete
    tr = [x for x in rows(d) if 'loss' in x]
    assert [x['step'] for x in tr] == list(range(1, 9))
    assert [x['step'] for x in rows(d) if x.get('event') == 'resume'] == [4]

def test_the_nan_guard_names_a_checkpoint_to_resume_from_with_lower_rates(tmp_path):
    out = tmp_path / 'hot'
    r = hm_train('--out', str(out), '--steps', '10', '--warmup', '8', '--ckpt_every', '1', '--eval_every', '0',
                 '--muon_lr', '100', '--adamw_lr', '100')
    err = r.stderr.strip()
    assert r.returncode == 3 and 'Traceback' not in r.stderr and len(err.splitlines()) == 1, r.stderr[-2000:]
    assert 'at step 5' in err and 'Last good checkpoint' in err and 'diverged-step_000004' in err, err
    good = err.split('Last good checkpoint: ')[1].split('. ')[0]
    assert Path(good).parent == out / 'ckpt' and int(Path(good).name[5:]) < 4
    r = hm_train('--out', str(out), '--steps', '10', '--warmup', '8', '--ckpt_every', '1', '--eval_every', '0',
                 '--muon_lr', '1e-3', '--adamw_lr', '1e-3', '--resume')
    assert r.returncode == 0 and 'status=completed' in r.stdout, r.stderr[-2000:]
    ev = [x for x in rows(out) if x.get('event') == 'resume']
    assert ev == [{'step': int(Path(good).name[5:]), 'event': 'resume', 'schedule_steps': 10,
                   'changed': {'muon_lr': [100.0, 0.001], 'adamw_lr': [100.0, 0.001]}}]
    g = run('hm_generate', str(out), '--prompt', 'def ', '--max_new_tokens', '4', '--temperature', '0', '--device', 'cpu')
    assert g.returncode == 0, g.stderr[-2000:]

def test_resume_with_more_steps_keeps_the_schedule_and_a_torn_metrics_line_is_dropped(done, tmp_path):
    d = copy(done, tmp_path)
    m = d / 'metrics.jsonl'; good = m.read_text()
    lines = good.splitlines(keepends=True)
    m.write_text(lines[0] + 'garbage\n' + ''.join(lines[1:]))
    before = snap(d)
    refused(hm_train('--out', str(d), '--steps', '8', '--resume'), f'{m}:2 is not a JSON object')
    assert snap(d) == before                                       # config.json was not rewritten either
    m.write_text(good + '{"step": 7, "lo')                         # a torn last line, as a kill leaves it
    r = hm_train('--out', str(d), '--steps', '8', '--resume')
    assert r.returncode == 0, r.stderr[-2000:]
    tr = {x['step']: x for x in rows(d) if 'loss' in x}
    assert sorted(tr) == list(range(1, 9))
    assert tr[7]['lr_muon'] == pytest.approx(0.02 * 0.1) and tr[8]['lr_muon'] == pytest.approx(0.02 * 0.1)  # at the floor
    assert [x for x in rows(d) if 'event' in x] == [{'step': 6, 'event': 'resume', 'schedule_steps': 6, 'changed': {'steps': [6, 8]}}]

def test_bad_arguments_name_the_argument(tmp_path):
    afile = tmp_path / 'afile'; afile.write_text('x')
    cases = [(['--device', 'tpu9'], "device='tpu9': unknown device"),
             (['--adamw_lr', 'inf'], 'adamw_lr=inf: must be a finite number'),
             (['--grad_clip', 'nan'], 'grad_clip=nan: must be a finite number'),
             (['--weight_decay', 'nan'], 'weight_decay=nan: must be a finite number'),
             (['--out', str(afile / 'run')], 'which is a file'),
             (['--resume', '--overwrite'], 'pass one of them')]
    for extra, msg in cases:
        refused(hm_train('--out', str(tmp_path / 'r'), '--steps', '6', *extra), msg)
    r = hm_train('--out', '/proc/hm_no_such_run', '--steps', '6')
    refused(r, "out='/proc/hm_no_such_run'")
    assert 'cannot be created' in r.stderr or 'is not writable' in r.stderr
    assert not (tmp_path / 'r').exists()

def test_damaged_run_files_are_named(done, tmp_path):
    d = copy(done, tmp_path)
    ck = d / 'ckpt' / 'step_000006'; meta = json.loads((ck / 'meta.json').read_text())
    gen = lambda: run('hm_generate', str(d), '--prompt', 'x', '--max_new_tokens', '2', '--device', 'cpu')
    (ck / 'train_state.pt').write_bytes(b'not a pickle: hm_generate does not read the optimizer state')
    assert gen().returncode == 0
    (ck / 'meta.json').write_text(json.dumps({k: v for k, v in meta.items() if k != 'model'}))
    refused(gen(), f'{ck / "meta.json"} has no "model" entry')
    (ck / 'meta.json').write_text(json.dumps({**meta, 'model': {**meta['model'], 'd_model': 2 * meta['model']['d_model']}}))
    refused(gen(), f'{ck / "model.safetensors"}: the weights do not fit')
    (ck / 'meta.json').write_text(json.dumps(meta))
    tok = d / 'tokenizer'
    (tok / 'hm_tokenizer.json').write_text('garbage')
    refused(gen(), f'{tok / "hm_tokenizer.json"} is not a readable tokenizer description')
    (tok / 'hm_tokenizer.json').write_text('{"kind": "bpe", "version": 1, "file": "tokenizer.json"}')
    refused(gen(), f'{tok / "tokenizer.json"} is missing')
    (tok / 'tokenizer.json').write_text('{"not": "a tokenizer"}')
    refused(gen(), f'{tok / "tokenizer.json"} is not a valid BPE tokenizer')
    # config.json disagreeing with the checkpoint: the resume is refused, naming it
    e = copy(done, tmp_path, 'e')
    rec = json.loads((e / 'config.json').read_text()); rec['train']['seed'] = 7; (e / 'config.json').write_text(json.dumps(rec))
    before = snap(e)
    refused(hm_train('--out', str(e), '--steps', '8', '--resume'), f'{e / "config.json"} disagrees with', 'seed: checkpoint=0, now=7')
    assert snap(e) == before
