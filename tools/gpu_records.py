"""The saved outputs of the notebooks' `#| cuda` cells, kept in nbs/gpu_records.json so that a Run All on a machine
without a GPU shows them (see `show_gpu_record` in nbs/00_core.ipynb) instead of replacing them with a traceback.

    python tools/gpu_records.py add NB.ipynb [...] --gpu NAME --commit SHA --command CMD
        file the outputs of NB's cuda cells (a notebook that ran on a GPU with
        `python tools/run_nb.py NB --flags cuda --only-flagged --keep-going`, which runs every cell) under each
        cell's source hash; cells whose output holds an error are refused, a cell with no output is recorded as having
        run silently (its assertions held), and warnings lose the machine paths they print. On the GPU machine --gpu
        defaults to torch's device name. `bash tools/gpu_run.sh cells NB...` does both steps.
    python tools/gpu_records.py merge OTHER.json      add the records of another records file (one from a GPU machine)
    python tools/gpu_records.py check                  exit 1 if a record's cell no longer exists (edited or removed)
    python tools/gpu_records.py prune                  drop those records
A record: notebook, source, outputs (nbformat outputs), gpu, commit, command, date."""
import argparse, datetime, json, re, sys
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT/'nbs'/'gpu_records.json'
sys.path.insert(0, str(ROOT))
from hypermnemosyne.core import cell_key, is_cuda_cell   # noqa: E402  (one definition of the key and of a cuda cell)

ABOUT = ('Outputs of the `#| cuda` cells, filed under a hash of each cell\'s source; shown on machines without a GPU. '
         'Written by tools/gpu_records.py; do not edit by hand.')


def _src(cell) -> str: return ''.join(cell['source'])

def _has_error(outs) -> bool:
    "Does a cell's output hold an error (an error output, or a traceback printed to a stream)?"
    text = ''.join(''.join(o.get('text', [])) for o in outs)
    return any(o.get('output_type') == 'error' for o in outs) or 'Traceback (most recent call last)' in text

_WARN = re.compile(r'^\S+\.py:\d+: (\w*Warning: .*)$')

def clean_outputs(outs):
    "Outputs without execution counts and without the machine paths that library warnings print (the message is kept)."
    res = []
    for o in outs:
        o = {k: v for k, v in o.items() if k not in ('execution_count', 'metadata')}
        if o.get('output_type') == 'stream':
            lines = ''.join(o.get('text', [])).splitlines(keepends=True)
            lines = [_WARN.sub(r'\1', l) for l in lines if l.strip() != 'warnings.warn(']
            if not ''.join(lines).strip(): continue
            o['text'] = lines
        res.append(o)
    return res

def load(path=RECORDS) -> dict:
    return json.loads(Path(path).read_text())['cells'] if Path(path).exists() else {}

def save(cells: dict, path=RECORDS):
    body = {'about': ABOUT, 'cells': dict(sorted(cells.items(), key=lambda kv: (kv[1]['notebook'], kv[0])))}
    Path(path).write_text(json.dumps(body, indent=1, ensure_ascii=False) + '\n')

def cuda_cells(nb_path):
    "(source, outputs) of each `#| cuda` cell of a notebook."
    nb = json.loads(Path(nb_path).read_text())
    return [(_src(c), c.get('outputs', [])) for c in nb['cells'] if c['cell_type'] == 'code' and is_cuda_cell(_src(c))]

def _nb_name(nb) -> str:
    "A notebook as the records name it: its path under nbs/ (`13_bench/memory.ipynb`), or its file name elsewhere."
    p = Path(nb).resolve()
    return p.relative_to(ROOT/'nbs').as_posix() if p.is_relative_to(ROOT/'nbs') else p.name

def add(nb_paths, gpu, commit, command, date=None) -> int:
    cells, bad = load(), 0
    for nb in nb_paths:
        name = _nb_name(nb)
        for src, outs in cuda_cells(nb):
            head = src.strip().splitlines()[1][:70] if len(src.strip().splitlines()) > 1 else src[:70]
            if _has_error(outs): print(f'{name}: error output, refused: {head}'); bad = 1; continue
            outs = clean_outputs(outs)     # empty: the cell ran and printed nothing (its assertions held)
            cells[cell_key(src)] = dict(notebook=name, source=src, outputs=outs, gpu=gpu, commit=commit,
                                        command=command, date=date or datetime.date.today().isoformat())
            print(f'{name}: recorded: {head}')
    save(cells)
    return bad

def stale(cells=None) -> list:
    "Keys of records whose cell is no longer in its notebook (edited or removed)."
    cells = load() if cells is None else cells
    live = {cell_key(s) for nb in (ROOT/'nbs').rglob('*.ipynb') for s, _ in cuda_cells(nb)}
    return [k for k in cells if k not in live]

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('action', choices=['add', 'merge', 'check', 'prune'])
    ap.add_argument('paths', nargs='*')
    ap.add_argument('--gpu'); ap.add_argument('--commit', default='?'); ap.add_argument('--command', default='?')
    a = ap.parse_args(argv)
    if a.action == 'add':
        if not a.paths: ap.error('add needs at least one notebook')
        gpu = a.gpu
        if gpu is None:
            if not torch.cuda.is_available(): ap.error('--gpu NAME is required off a GPU machine')
            gpu = torch.cuda.get_device_name()
        return add(a.paths, gpu, a.commit, a.command)
    if a.action == 'merge':
        cells = load()
        for p in a.paths: cells.update(load(p))
        save(cells); return 0
    old = stale()
    if a.action == 'check':
        for k in old: print(f'stale record {k} ({load()[k]["notebook"]}): its cell was edited or removed; '
                            'run it on a GPU and `add` it, or `prune`')
        return int(bool(old))
    cells = load(); save({k: v for k, v in cells.items() if k not in old}); print(f'pruned {len(old)}'); return 0

if __name__ == '__main__':
    sys.exit(main())
