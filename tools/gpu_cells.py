"""Run only the `#| cuda` cells of a notebook, after importing its exported module, without its CPU cells (those are
covered by CI). Used on the GPU machine when a notebook's CPU cells would eat the time one device call has:
    python tools/gpu_cells.py nbs/08_train.ipynb hypermnemosyne.train
Prints each cell's output; exits non-zero if any cell raised."""
import sys, traceback, json

def main(nb_path, module):
    ns = {}
    exec('import math, tempfile, numpy as np, torch\nfrom pathlib import Path\nimport matplotlib.pyplot as plt\n'
         f'from hypermnemosyne.core import *\nfrom {module} import *', ns)
    cells = [''.join(c['source']) for c in json.load(open(nb_path))['cells'] if c['cell_type'] == 'code']
    rc = 0
    for src in cells:
        if not any(l.strip().startswith('#|') and 'cuda' in l for l in src.splitlines()): continue
        print('>>> ' + src.splitlines()[1][:100], flush=True)
        try: exec(compile(src, nb_path, 'exec'), ns)
        except Exception: traceback.print_exc(); rc = 1
    return rc

if __name__ == '__main__': sys.exit(main(*sys.argv[1:3]))
