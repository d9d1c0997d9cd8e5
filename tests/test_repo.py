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
    for nb in sorted((ROOT/'nbs').rglob('*.ipynb')):
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

def test_ci_builds_a_fresh_virtual_environment():
    ci = (ROOT/'.ci'/'run').read_text()
    assert '-m venv' in ci and 'source "$venv/bin/activate"' in ci, '.ci/run must install into a fresh venv, not the machine\'s Python'
    assert ci.index('-m venv') < ci.index(TEST_CMD)

DIST_OF = {'IPython': 'ipython', 'PIL': 'pillow', 'yaml': 'pyyaml'}   # import name -> distribution name, where they differ

def _dists(cfg, *keys) -> set:
    "Distribution names (normalised to import spelling) listed under these settings.ini keys."
    declared = ' '.join(cfg['DEFAULT'].get(k, '') for k in keys)
    return {re.split(r"[<>=;' ]", t.strip("'"))[0].lower().replace('-', '_') for t in declared.split()}

def _is_local(mod: str, where: Path) -> bool:
    "The package, tools/ and its scripts, or a script beside the importing file (a study's run.py importing analysis)."
    return (mod in ('hypermnemosyne', 'tools') or (ROOT/'tools'/f'{mod}.py').exists()
            or (where.parent/f'{mod}.py').exists())

def _imports(src):
    "(module, inside_try) for each absolute import in `src` (cells' magics and directives dropped)."
    import ast
    src = '\n'.join(l for l in src.splitlines() if not l.lstrip().startswith(('%', '!', '#|')))
    try: tree = ast.parse(src)
    except SyntaxError: return []
    guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) for b in t.body for n in ast.walk(b)}
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import): out += [(a.name.split('.')[0], id(n) in guarded) for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module: out.append((n.module.split('.')[0], id(n) in guarded))
    return out

def test_every_test_dependency_is_declared():
    "Imports of the package, notebooks, tests and tools outside the standard library are declared in settings.ini."
    import configparser
    cfg = configparser.ConfigParser(); cfg.read(ROOT/'settings.ini')
    names = _dists(cfg, 'requirements', 'dev_requirements')
    optional = _dists(cfg, 'cuda_requirements', 'refs_requirements')   # GPU peers and references: only inside a `try`
    srcs = [(nb, ''.join(c['source'])) for nb in (ROOT/'nbs').rglob('*.ipynb') for c in json.loads(nb.read_text())['cells']
            if c['cell_type'] == 'code']
    srcs += [(p, p.read_text()) for d in ('hypermnemosyne', 'tests', 'tools', 'experiments') for p in (ROOT/d).rglob('*.py')]
    problems = set()
    for where, src in srcs:
        rel = where.relative_to(ROOT)
        for mod, in_try in _imports(src):
            if mod in sys.stdlib_module_names or _is_local(mod, where): continue
            dist = DIST_OF.get(mod, mod).lower()
            if dist in optional:
                if not in_try: problems.add(f'{mod} (optional, imported outside a try in {rel})')
            elif dist not in names: problems.add(f'{mod} (in {rel})')
    assert not problems, f'imported but not declared in settings.ini: {sorted(problems)}'

def test_jupyter_save_hook_cleans_notebooks():
    "With `nbdev_install_hooks`, JupyterLab's save runs nbdev's clean_jupyter: it must act for this repository (jupyter_hooks)."
    from nbdev.clean import clean_jupyter
    model = dict(type='notebook', content=dict(nbformat=4, nbformat_minor=5, metadata={'widgets': {}, 'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}},
                 cells=[dict(cell_type='code', execution_count=7, id='x', metadata={'execution': {'a': 1}}, outputs=[], source='1')]))
    clean_jupyter(path=ROOT/'nbs'/'index.ipynb', model=model)
    c = model['content']['cells'][0]
    assert c['execution_count'] is None and c['metadata'] == {}

def test_saved_outputs_hold_no_machine_paths():
    "Absolute paths of the machine that ran a notebook (home, site-packages, temp dirs) do not belong in saved outputs."
    pat = re.compile(r'(/root/|/home/\w+/|site-packages|/tmp/tmp\w+|/work/)')
    for nb in sorted((ROOT/'nbs').rglob('*.ipynb')):
        for i, c in enumerate(json.loads(nb.read_text())['cells']):
            for o in c.get('outputs', []):
                text = ''.join(o.get('text', [])) + ''.join(o.get('data', {}).get('text/plain', []))
                m = pat.search(text)
                assert m is None, f'{nb.name} cell {i}: saved output shows a machine path ...{text[max(0, m.start() - 40):m.end() + 40]!r}...'
