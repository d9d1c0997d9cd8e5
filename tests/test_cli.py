"The console scripts end to end, as a user runs them: exit status, output, files, and clear errors for bad input."
import json, subprocess, sys, os
from pathlib import Path

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}

def run(*args, cwd=None):
    return subprocess.run(list(args), capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600)

def test_hm_bench_quick_exits_zero_and_writes_json(tmp_path):
    r = run('hm_bench', '--quick', '--only', 'data', '--out', str(tmp_path / 'b.json'))
    assert r.returncode == 0, r.stderr[-2000:]
    assert '| component' in r.stdout and 'hm_bench --quick --only data' in r.stdout
    rows = json.loads((tmp_path / 'b.json').read_text())['rows']
    assert rows and all(r['ours'] > 0 for r in rows)

def test_hm_generate_continues_a_prompt_and_rejects_bad_input(tmp_path):
    run_dir = tmp_path / 'run'
    t = run('hm_train', '--preset', 'tiny', '--out', str(run_dir), '--steps', '2', '--warmup', '0', '--batch_size', '2', '--seq_len', '32',
            '--eval_every', '0', '--eval_batches', '1', '--max_corpus_mb', '0.2', '--no-progress')
    assert t.returncode == 0, t.stdout[-2000:] + t.stderr[-2000:]
    g = run('hm_generate', str(run_dir), '--prompt', 'def ', '--max_new_tokens', '8', '--temperature', '0')
    assert g.returncode == 0, g.stderr[-2000:]
    assert g.stdout.startswith('def ') and len(g.stdout.rstrip('\n')) > len('def ')
    assert '[8 tokens; mean memory surprise' in g.stderr   # tiny has a memory layer: surprise is reported
    missing = run('hm_generate', str(tmp_path / 'nope'), '--prompt', 'x')
    assert missing.returncode == 2 and 'no run directory' in missing.stderr and 'Traceback' not in missing.stderr
    bad_p = run('hm_generate', str(run_dir), '--top_p', '1.5')
    assert bad_p.returncode == 2 and 'top_p' in bad_p.stderr and 'Traceback' not in bad_p.stderr
    no_gpu = run('hm_generate', str(run_dir), '--graph', '--device', 'cpu')
    assert no_gpu.returncode == 2 and '--graph needs a CUDA device' in no_gpu.stderr and 'Traceback' not in no_gpu.stderr
