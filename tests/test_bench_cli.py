"hm_bench refuses a bad --out before running any benchmark: one line on stderr, exit status 2, no traceback."
import subprocess, os

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}

def bench(*args):
    return subprocess.run(['hm_bench', '--quick', *args], capture_output=True, text=True, env=ENV, timeout=300)

def check_refused(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('hm_bench: error: --out'), r.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert 'Traceback' not in r.stderr and r.stdout == ''   # no benchmark ran: no timing lines, no table

def test_missing_folder_is_refused_before_running(tmp_path):
    out = tmp_path / 'missing' / 'b.json'
    r = bench('--out', str(out))
    check_refused(r, str(out.parent), 'does not exist')
    assert not out.parent.exists()

def test_folder_and_file_parent_are_refused(tmp_path):
    r = bench('--out', str(tmp_path))
    check_refused(r, 'is a folder')
    (tmp_path / 'f').write_text('x')
    r = bench('--out', str(tmp_path / 'f' / 'b.json'))
    check_refused(r, 'is a file, not a folder')
    assert (tmp_path / 'f').read_text() == 'x'
