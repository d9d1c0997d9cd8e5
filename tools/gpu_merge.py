"""Copy the outputs of `#| cuda` cells from a notebook that came back from the GPU machine into the local one.
    python tools/gpu_merge.py /tmp/r1/nbs/12_generate.ipynb nbs/12_generate.ipynb [--keep-errors]
A cell is matched by its exact source, so a cell edited here since the GPU run keeps its old output (reported as
unmatched) instead of receiving output that another source produced. Outputs holding an error (a traceback) are not
copied unless --keep-errors. Every other cell of the local notebook is left untouched. Prints what it did; exits 1 if
a cuda cell could not be merged."""
import json, sys
from pathlib import Path

def _src(c): return ''.join(c['source'])
def _is_cuda(c): return c['cell_type'] == 'code' and any(l.strip().startswith('#|') and 'cuda' in l for l in _src(c).splitlines())
def _has_error(outs):
    text = ''.join(''.join(o.get('text', [])) for o in outs)
    return any(o.get('output_type') == 'error' for o in outs) or 'Traceback (most recent call last)' in text

def merge(returned, local, keep_errors=False) -> int:
    got = {_src(c): c for c in json.loads(Path(returned).read_text())['cells'] if _is_cuda(c)}
    nb = json.loads(Path(local).read_text())
    bad = 0
    for c in nb['cells']:
        if not _is_cuda(c): continue
        head = _src(c).splitlines()[1][:70] if len(_src(c).splitlines()) > 1 else _src(c)[:70]
        r = got.get(_src(c))
        if r is None: print(f'unmatched (source changed since the GPU run): {head}'); bad = 1; continue
        outs = r.get('outputs', [])
        if not outs: print(f'no output came back: {head}'); bad = 1; continue
        if _has_error(outs) and not keep_errors: print(f'error output, not copied: {head}'); bad = 1; continue
        c['outputs'] = [{k: v for k, v in o.items() if k != 'execution_count'} for o in outs]
        c['execution_count'] = None
        print(f'merged: {head}')
    Path(local).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return bad

if __name__ == '__main__':
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    sys.exit(merge(args[0], args[1], keep_errors='--keep-errors' in sys.argv))
