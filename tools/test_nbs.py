"""Test every notebook as nbdev_test does, but each in a fresh process (`nbdev_test --path NB --n_workers 0`), N at a
time. nbdev_test's own pool reuses its worker processes, so a notebook inherits what the notebooks before it in that
worker left behind: custom ops re-registered from a notebook's cells (a later notebook then calls the earlier
notebook's function, with that notebook's globals), compiled-graph caches, environment variables. A notebook is
meant to run in a fresh kernel; this runs it in one.
Usage: python tools/test_nbs.py [--n_workers 2] [--flags "cuda slow"]  (from the repository root)"""
import argparse, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from nbdev.config import get_config
from nbdev.doclinks import nbglob
from nbdev.test import _keep_file


def notebooks() -> list:
    "The notebooks nbdev_test would test, in its order."
    return [f.absolute() for f in sorted(nbglob(None, as_path=True)) if _keep_file(f, '.notest')]


def run_one(nb, flags: str, root) -> tuple:
    "Test one notebook in its own process: (name, passed, seconds, output)."
    name = str(nb.relative_to(root))
    print(f'Starting {name}', flush=True)
    start = time.time()
    cmd = ['nbdev_test', '--path', str(nb), '--n_workers', '0'] + (['--flags', flags] if flags else [])
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    secs = time.time() - start
    print(f'- {"Completed" if p.returncode == 0 else "FAILED"} {name} ({secs:.0f} s)', flush=True)
    return name, p.returncode == 0, secs, p.stdout + p.stderr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n_workers', type=int, default=2, help='notebooks tested at once')
    ap.add_argument('--flags', default='', help='space-separated test flags to run (as nbdev_test --flags)')
    args = ap.parse_args(argv)
    root = get_config().config_path
    nbs = notebooks()
    if not nbs: print('no notebooks to test'); return 1
    with ThreadPoolExecutor(max(1, args.n_workers)) as ex:
        results = list(ex.map(lambda nb: run_one(nb, args.flags, root), nbs))
    failed = [r for r in results if not r[1]]
    for name, _, _, out in failed: print(f'\n==== {name} failed:\n{out[-20000:]}')
    print('slowest: ' + ', '.join(f'{n} {s:.0f} s' for n, _, s, _ in sorted(results, key=lambda r: -r[2])[:5]))
    print(f'{len(results) - len(failed)} of {len(results)} notebooks passed')
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main())
