"""Run notebooks as Jupyter's "Run All" does: a real kernel, every cell in order (`#| slow` ones included; `#| cuda`
ones show their recorded GPU output when there is no GPU), stopping at the first error. Prints one line per
notebook with its wall time; exits 1 if any notebook raised.

    python tools/run_all.py nbs/02_mhc.ipynb [more.ipynb ...] [--write] [--timeout S]
--write saves the executed notebook back (outputs included, then nbdev_clean), as JupyterLab's save would; without it
the files are left untouched. --timeout is per cell (default 1800 s)."""
import argparse, subprocess, sys, time
from pathlib import Path

def run_one(path: Path, write: bool, timeout: int) -> tuple[float, str | None]:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    nb = nbformat.read(path, as_version=4)
    t, err = time.perf_counter(), None
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3',
                            resources={'metadata': {'path': str(path.parent)}})
    try: client.execute()
    except CellExecutionError as e: err = str(e).strip().splitlines()[-1][:300]
    dt = time.perf_counter() - t
    if write and err is None:
        nbformat.write(nb, path)
        subprocess.run(['nbdev_clean', '--fname', str(path)], check=True)
    return dt, err

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebooks', nargs='+', type=Path)
    ap.add_argument('--write', action='store_true')
    ap.add_argument('--timeout', type=int, default=1800)
    a = ap.parse_args(argv)
    bad = 0
    for p in a.notebooks:
        dt, err = run_one(p, a.write, a.timeout)
        print(f'{p.name:24s} {dt:7.1f} s  ' + ('ok' if err is None else f'ERROR: {err}'), flush=True)
        bad |= err is not None
    return bad

if __name__ == '__main__':
    sys.exit(main())
