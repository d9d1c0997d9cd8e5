"""Run only the `#| cuda` cells of a notebook, after importing its exported module, without its CPU cells (those are
covered by CI). Used on the GPU machine when a notebook's CPU cells would eat the time one device call has:
    python tools/gpu_cells.py nbs/11_train.ipynb hypermnemosyne.train.loop [--write]
Prints each cell's output; exits non-zero if any cell raised. With --write, each cell's printed output (and the
traceback of a cell that raised) is saved into the notebook as that cell's output, like a notebook run would; every
other cell is left as it was."""
import sys, io, traceback, json
from pathlib import Path
from gpu_merge import _is_cuda, _src     # (tools/ is on sys.path when run as a script)

class _Tee(io.TextIOBase):
    "Writes to the real stdout and keeps a copy."
    def __init__(self, out): self.out, self.buf = out, io.StringIO()
    def write(self, s): self.out.write(s); self.out.flush(); return self.buf.write(s)
    def flush(self): self.out.flush()

def main(nb_path, module, write=False):
    ns = {}
    exec('import math, tempfile, numpy as np, torch\nfrom pathlib import Path\nimport matplotlib.pyplot as plt\n'
         f'from hypermnemosyne.core import *\nfrom {module} import *', ns)
    nb = json.loads(Path(nb_path).read_text())
    rc = 0
    for cell in nb['cells']:
        if not _is_cuda(cell): continue
        src = _src(cell)
        print('>>> ' + src.splitlines()[1][:100], flush=True)
        tee, real = _Tee(sys.stdout), sys.stdout
        sys.stdout = tee
        try: exec(compile(src, nb_path, 'exec'), ns)
        except Exception: traceback.print_exc(file=tee); rc = 1
        finally: sys.stdout = real
        if write: cell['outputs'], cell['execution_count'] = [dict(name='stdout', output_type='stream',
                                                                   text=tee.buf.getvalue().splitlines(keepends=True))], None
    if write: Path(nb_path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return rc

if __name__ == '__main__':
    args = [a for a in sys.argv[1:] if a != '--write']
    sys.exit(main(args[0], args[1], write='--write' in sys.argv))
