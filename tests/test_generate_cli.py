"`hm_generate` as a person at a terminal meets it: bad settings and Ctrl-C give one line on stderr, no traceback."
import os, signal, subprocess, sys, time
from pathlib import Path
import pytest

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}

def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True, env=ENV, timeout=300)

@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    "An untrained `tiny` run (2 steps): enough for hm_generate to load and decode."
    out = tmp_path_factory.mktemp('gen') / 'run'
    t = run('hm_train', '--preset', 'tiny', '--steps', '2', '--batch_size', '2', '--seq_len', '32', '--warmup', '1',
            '--eval_batches', '1', '--max_corpus_mb', '0.2', '--no-progress', '--device', 'cpu', '--out', str(out))
    assert t.returncode == 0, t.stdout[-2000:] + t.stderr[-2000:]
    return out

def one_line_error(r, *words):
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert 'Traceback' not in r.stderr and len(err.splitlines()) == 1, r.stderr
    assert err.startswith('hm_generate: ') and all(w in err for w in words), err
    assert r.stdout == '', r.stdout           # nothing generated: the error comes before any work

@pytest.mark.parametrize('flags, words', [
    (('--max_new_tokens', '-1'), ('--max_new_tokens', '-1')),
    (('--temperature', 'nan'), ('--temperature', 'nan')),
    (('--temperature', 'inf'), ('--temperature',)),
    (('--max_repeat', '-3'), ('--max_repeat',)),
    (('--device', 'tpu9'), ('--device', 'tpu9')),
    (('--device', 'cuda:7'), ('--device', 'cuda:7')),      # a real device type this machine lacks (CI has no GPU)
    (('--device', 'cpu', '--graph'), ('--graph', 'CUDA')),  # the graph asked for where there is none
    (('--device', 'cpu', '--fused_decode'), ('--fused_decode', 'CUDA')),   # Triton kernels where they cannot run
])
def test_bad_settings_give_one_line_naming_the_flag(tiny_run, flags, words):
    if flags[-1] == 'cuda:7':
        import torch
        if torch.cuda.device_count() > 7: pytest.skip('this machine has a cuda:7')
    one_line_error(run('hm_generate', str(tiny_run), '--prompt', 'def ', *flags), *words)

def test_no_graph_decodes_eagerly_and_the_default_runs_on_the_cpu(tiny_run):
    "`--no_graph` forces eager decoding; without either flag the CPU decodes eagerly too (the graph is CUDA's default)."
    outs = [run('hm_generate', str(tiny_run), '--prompt', 'def ', '--max_new_tokens', '5', '--temperature', '0',
                '--device', 'cpu', *flag) for flag in ((), ('--no_graph',))]
    assert all(r.returncode == 0 for r in outs), [r.stderr[-1000:] for r in outs]
    assert outs[0].stdout == outs[1].stdout and outs[0].stdout.startswith('def ')

def _sigint_default():
    "Ctrl-C's default action in the child: a test run from a background shell (`cmd &`) inherits SIGINT ignored."
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def test_ctrl_c_keeps_the_text_and_exits_130(tiny_run):
    p = subprocess.Popen(['hm_generate', str(tiny_run), '--prompt', 'def ', '--max_new_tokens', '100000', '--device', 'cpu'],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, preexec_fn=_sigint_default)
    try:
        got = b''
        while len(got) < len('def ') + 20:            # wait until tokens stream out: generation is under way
            b = os.read(p.stdout.fileno(), 4096)
            assert b, p.stderr.read().decode()[-2000:]
            got += b
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None: p.kill()
    out, err = (got + out).decode('utf-8', 'replace'), err.decode()
    assert p.returncode == 130, (p.returncode, err[-2000:])
    assert 'Traceback' not in err and 'KeyboardInterrupt' not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('hm_generate: interrupted') and 'tokens' in lines[0], err
    n = int(lines[0].split(' after ')[1].split()[0])
    assert out.startswith("def ") and 0 < n < 100000, (n, out[:200])
