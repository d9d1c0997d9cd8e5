"""Fail if `nbdev_export` would change hypermnemosyne/ (the library must be generated from nbs/, never edited by hand).

Snapshots the package, runs nbdev_export, compares, and reports every file that changed, appeared or vanished.
The exported result is left in place, so after a failure the tree holds what the notebooks say.
"""
import subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT/'hypermnemosyne'

def snapshot(pkg=PKG): return {p.relative_to(pkg).as_posix(): p.read_bytes() for p in sorted(pkg.rglob('*.py'))}

def main():
    before = snapshot()
    r = subprocess.run(['nbdev_export'], cwd=ROOT, capture_output=True, text=True)
    if r.returncode: print(r.stdout, r.stderr); print('nbdev_export failed'); return 2
    after = snapshot()
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    added, removed = sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys())
    if changed or added or removed:
        for kind, names in (('changed', changed), ('added', added), ('removed', removed)):
            for n in names: print(f'{kind}: hypermnemosyne/{n}')
        print('hypermnemosyne/ is out of sync with nbs/: run `nbdev_export` and commit the result'); return 1
    print(f'hypermnemosyne/ is in sync with nbs/ ({len(after)} files)'); return 0

if __name__ == '__main__': sys.exit(main())
