"""hm_bench as a person at a terminal meets it: a bad flag is refused before any benchmark runs (one line on stderr,
exit status 2, no traceback), and Ctrl-C stops the run, and the benchmark's own process with it, with status 130."""
import os, signal, subprocess, time
from pathlib import Path

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}

def bench(*args):
    return subprocess.run(['hm_bench', '--quick', *args], capture_output=True, text=True, env=ENV, timeout=300)

def check_refused(r, flag, *words):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'hm_bench: error: {flag}'), r.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert 'Traceback' not in r.stderr and r.stdout == ''   # no benchmark ran: no timing lines, no table

def test_missing_folder_is_refused_before_running(tmp_path):
    out = tmp_path / 'missing' / 'b.json'
    r = bench('--out', str(out))
    check_refused(r, '--out', str(out.parent), 'does not exist')
    assert not out.parent.exists()

def test_folder_and_file_parent_are_refused(tmp_path):
    r = bench('--out', str(tmp_path))
    check_refused(r, '--out', 'is a folder')
    (tmp_path / 'f').write_text('x')
    r = bench('--out', str(tmp_path / 'f' / 'b.json'))
    check_refused(r, '--out', 'is a file, not a folder')
    assert (tmp_path / 'f').read_text() == 'x'

def test_unknown_benchmark_and_bad_repeats_are_refused_before_running(tmp_path):
    out = tmp_path / 'b.json'
    check_refused(bench('--only', 'nope', '--out', str(out)), '--only', "'nope'", 'sinkhorn', 'generate')
    check_refused(bench('--repeats', '0', '--out', str(out)), '--repeats 0', 'must be >= 1')
    assert not out.exists()

def _benchmark_child(children: Path) -> int | None:
    "The pid of hm_bench's child that runs a benchmark (its command line unpickles the benchmark), None if none yet."
    for pid in children.read_text().split():
        try: cmd = Path(f'/proc/{pid}/cmdline').read_bytes()
        except FileNotFoundError: continue
        if b'pickle.load' in cmd: return int(pid)
    return None

def _sigint_default():
    "Ctrl-C's default action in the child: a test run from a background shell (`cmd &`) inherits SIGINT ignored."
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def test_ctrl_c_stops_the_run_and_its_benchmark_process(tmp_path):
    p = subprocess.Popen(['hm_bench', '--quick', '--only', 'model', '--repeats', '3', '--out', str(tmp_path / 'b.json')],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, start_new_session=True,
                         preexec_fn=_sigint_default)
    try:
        children, t0 = Path(f'/proc/{p.pid}/task/{p.pid}/children'), time.time()
        while not (kid := _benchmark_child(children)):   # wait until a benchmark runs in its own process
            assert p.poll() is None and time.time() - t0 < 120, p.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        os.killpg(p.pid, signal.SIGINT)                   # what Ctrl-C at a terminal sends: SIGINT to the foreground group
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None: p.kill()
    err = err.decode()
    assert p.returncode == 130, (p.returncode, err[-2000:])
    assert 'Traceback' not in err and err.strip().splitlines()[-1] == 'hm_bench: interrupted', err
    assert not Path(f'/proc/{kid}').exists()              # the benchmark's process did not outlive the run
    assert not (tmp_path / 'b.json').exists() and b'| component' not in out

def test_speed_check_writes_its_rows_with_their_provenance(tmp_path):
    "tools/speed_check.py's CPU check: the JSON holds the measured rows and the commit, device and command behind them."
    import json, sys
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / 'decode.json'
    r = subprocess.run([sys.executable, str(root / 'tools' / 'speed_check.py'), 'decode', '--quick', '--out', str(out)],
                       capture_output=True, text=True, env={**ENV, 'HM_COMMIT': 'abc1234'}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    j = json.loads(out.read_text())
    assert j['meta']['commit'] == 'abc1234' and j['meta']['device'].startswith('CPU') and 'decode --quick' in j['meta']['command']
    row, prof = j['rows']                                       # the CPU has no graph row
    assert row['component'] == 'generate 8 tokens after 64, batch 1' and row['ms'] > 0
    assert abs(row['tokens_per_s'] - 8e3 / row['ms']) < 1e-6 * row['tokens_per_s']
    assert prof['component'].startswith('eager decode step') and prof['launches'] is None   # counted on CUDA only
    assert prof['top_kernels'] and all(k['calls'] > 0 and k['label'] for k in prof['top_kernels'])
