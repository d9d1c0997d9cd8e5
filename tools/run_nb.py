"""Execute notebooks in place, keeping outputs, skipping cells whose flags (settings.ini `tst_flags`) are not asked for.

This is how the committed outputs (plots, tables) are produced; nbdev_test runs the same cells with IN_TEST=1.
Usage: python tools/run_nb.py nbs/01_sinkhorn.ipynb [more.ipynb ...] [--flags "cuda slow"] [--only-flagged]
--only-flagged runs every unflagged cell but writes back only the outputs of the flagged cells it ran
(used on the GPU machine, so CPU-made plots stay as they were and GPU tables are filled in).
--keep-going records a failing cell's error in its output and goes on (used on the GPU machine to see every failure).
Then runs nbdev_clean on each notebook.
"""
import os, sys, time, subprocess, configparser
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

ROOT = Path(__file__).resolve().parent.parent
# Triton reads this through its own getenv; set before any kernel so no notebook output carries its path-bearing warning
os.environ.setdefault('TRITON_DEFAULT_FP_FUSION', '1')

def tst_flags():
    cfg = configparser.ConfigParser(); cfg.read(ROOT/'settings.ini')
    return set(cfg['DEFAULT'].get('tst_flags', '').split())

def directives(src):
    heads = [l.strip()[2:].strip() for l in src.splitlines() if l.strip().startswith('#|')]
    return {h.split()[0] for h in heads if h}

def run(path, flags=(), only_flagged=False, keep_going=False):
    path = Path(path).resolve()
    skip = tst_flags() - set(flags)
    nb = read_nb(path)
    t0 = time.time()
    def no_eval(cell):
        if cell.cell_type != 'code': return True
        if 'nbdev_export' + '(' in cell.source: return True
        return bool(directives(cell.source) & skip)
    keep = {}
    if only_flagged:
        keep = {i: c.get('outputs', []) for i, c in enumerate(nb.cells)
                if c.cell_type == 'code' and not (directives(c.source) & set(flags))}
    def no_eval_logged(cell):   # a progress line per executed cell on stderr: a run killed by a timeout shows where
        skip_it = no_eval(cell)
        if not skip_it:
            sys.stderr.write(f'{path.name}: cell {nb.cells.index(cell)} starts at {time.time() - t0:.0f} s\n'); sys.stderr.flush()
        return skip_it
    for c in nb.cells:      # execnb leaves a cell's old outputs when the new run prints nothing: start each one empty
        if c.cell_type == 'code' and not no_eval(c): c['outputs'] = []
    shell = CaptureShell(path)
    t = time.time()
    cwd = os.getcwd(); os.chdir(path.parent)
    try: shell.run_all(nb, exc_stop=not keep_going, preproc=no_eval_logged)
    except Exception:
        sys.stderr.write(shell.prettytb(fname=path) + '\n'); return 1
    finally: os.chdir(cwd)
    errors = [i for i, c in enumerate(nb.cells)
              if c.cell_type == 'code' and any(o.get('output_type') == 'error' for o in c.get('outputs', []))]
    for i in errors:
        err = next(o for o in nb.cells[i]['outputs'] if o.get('output_type') == 'error')
        print(f'{path.name}: cell {i} failed: {err.get("ename")}: {str(err.get("evalue"))[:300]}')
    for i, outs in keep.items(): nb.cells[i]['outputs'] = outs
    for c in nb.cells:
        if c.cell_type == 'code' and no_eval(c) and not only_flagged and not c.get('outputs'): c['outputs'] = []
    write_nb(nb, path)
    subprocess.run(['nbdev_clean', '--fname', str(path)], check=False)
    print(f'{path.name}: ran in {time.time()-t:.1f} s' + (f', {len(errors)} failing cells' if errors else ''))
    return 1 if errors else 0

def main(argv=sys.argv[1:]):
    flags = argv[argv.index('--flags')+1].split() if '--flags' in argv else []
    only, keep = '--only-flagged' in argv, '--keep-going' in argv
    paths = [a for i, a in enumerate(argv) if a.endswith('.ipynb')]
    return max([run(p, flags, only, keep) for p in paths] or [0])

if __name__ == '__main__': sys.exit(main())
