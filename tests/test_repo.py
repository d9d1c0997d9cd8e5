"Repository-level checks: the README's commands, CI calling the test command verbatim, notebook hygiene, the sync check itself."
import json, re, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_CMD = 'pip install -e ".[dev]" && bash tools/test_all.sh'

def test_readme_has_both_commands_and_ci_runs_the_test_one():
    readme = (ROOT/'README.md').read_text()
    assert TEST_CMD in readme.splitlines()
    assert any(l.startswith('pip install -e . && hm_train') for l in readme.splitlines())
    ci = (ROOT/'.ci'/'run').read_text().splitlines()
    assert TEST_CMD in ci, '.ci/run must call the README test command verbatim'

def test_readme_is_current():
    r = subprocess.run([sys.executable, 'tools/readme.py', '--check'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout

def test_notebooks_small_and_clean():
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        assert nb.stat().st_size < 2_000_000, f'{nb.name} is over 2 MB'
        js = json.loads(nb.read_text())
        for c in js['cells']:
            assert 'execution' not in c.get('metadata', {}), f'{nb.name}: run nbdev_clean'

def test_sync_check_catches_hand_edits(tmp_path):
    for d in ('nbs', 'hypermnemosyne', 'tools'): shutil.copytree(ROOT/d, tmp_path/d, ignore=shutil.ignore_patterns('__pycache__', '*.egg-info'))
    shutil.copy(ROOT/'settings.ini', tmp_path)
    ok = subprocess.run([sys.executable, 'tools/check_export.py'], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    core = tmp_path/'hypermnemosyne'/'core.py'
    core.write_text(core.read_text() + '\nHAND_EDIT = 1\n')
    bad = subprocess.run([sys.executable, 'tools/check_export.py'], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 1 and 'changed: hypermnemosyne/core.py' in bad.stdout
    assert 'HAND_EDIT' not in core.read_text()  # the export restored what the notebook says
