"""The package's shape (issue: one module, one idea): short functions, short lines, imports at the top, no benchmark or
experiment inside a component module, nothing pointing outside the repository. Each check names every offender."""
import ast, re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT/'hypermnemosyne'
MAX_FUNC, MAX_LINE = 60, 120
OPTIONAL = {'triton', 'mamba_ssm', 'titans_pytorch', 'causal_conv1d'}   # imported only where they are used, in a try
COMPONENTS = ('core', 'ops', 'layers', 'optim', 'data', 'model', 'train', 'generate')

def _modules():
    return [p for p in sorted(PKG.rglob('*.py')) if p.name != '_modidx.py']

def _is_kernel(fn):
    "A Triton kernel (`@triton.jit` or `@triton.autotune`): its length is the algorithm's, left alone."
    return any('triton' in ast.unparse(d) for d in fn.decorator_list)

def _functions(tree):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]

def test_functions_are_short():
    long = [f'{p.relative_to(ROOT)}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)'
            for p in _modules() for f in _functions(ast.parse(p.read_text()))
            if f.end_lineno - f.lineno + 1 > MAX_FUNC and not _is_kernel(f)]
    assert not long, f'functions over {MAX_FUNC} lines:\n' + '\n'.join(long)

def test_lines_are_short():
    "nbdev's own `__all__ = [...]` line is exempt: it wraps the names at 120 without counting its prefix."
    wide = [f'{p.relative_to(ROOT)}:{i} ({len(l)} chars)' for p in _modules()
            for i, l in enumerate(p.read_text().splitlines(), 1) if len(l) > MAX_LINE and not l.startswith('__all__ = ')]
    assert not wide, f'lines over {MAX_LINE} characters:\n' + '\n'.join(wide)

def test_imports_at_the_top():
    "Imports inside functions hide a module's dependencies; only the optional GPU peers may be imported late."
    late = []
    for p in _modules():
        for f in _functions(ast.parse(p.read_text())):
            for n in ast.walk(f):
                if isinstance(n, ast.Import): mods = [a.name for a in n.names]
                elif isinstance(n, ast.ImportFrom): mods = [n.module or '.']
                else: continue
                late += [f'{p.relative_to(ROOT)}:{n.lineno} {f.name} imports {m}' for m in mods
                         if m.split('.')[0] not in OPTIONAL]
    assert not late, 'imports inside functions:\n' + '\n'.join(late)

def test_components_hold_no_benchmark_or_experiment():
    found = []
    for p in _modules():
        rel = p.relative_to(PKG).as_posix()
        if not rel.startswith(COMPONENTS): continue
        for f in ast.parse(p.read_text()).body:
            if isinstance(f, (ast.FunctionDef, ast.ClassDef)) and re.match(r'_?(bench|run_ablation|probe_)', f.name):
                found.append(f'{rel}: {f.name}')
    assert not found, 'benchmarks or experiment runners in component modules (they belong in bench/ or experiments/):\n' \
        + '\n'.join(found)

def test_nothing_points_outside_the_repository():
    pat = re.compile(r'TOOLCHAIN\.md|\.\./shared|/work/shared')
    files = [*PKG.rglob('*.py'), *(ROOT/'nbs').rglob('*.ipynb'), *(ROOT/'tools').rglob('*'), *(ROOT/'tests').glob('*.py'),
             *(ROOT/'experiments').rglob('*.py'), *(ROOT/'experiments').rglob('*.md'), ROOT/'README.md']
    bad = [str(p.relative_to(ROOT)) for p in files if p.is_file() and p != Path(__file__)
           and p.suffix in ('.py', '.ipynb', '.md', '.sh', '') and pat.search(p.read_text(errors='ignore'))]
    assert not bad, 'files that refer to paths outside the repository:\n' + '\n'.join(bad)

def test_root_api_resolves():
    "Every public name the package root lists is importable from it (a moved name must move its line too)."
    import hypermnemosyne as hm
    missing = [n for n in hm._WHERE if not hasattr(hm, n)]
    assert not missing, f'hypermnemosyne lists names it cannot import: {missing}'
