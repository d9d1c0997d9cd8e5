"""Turn a percent-format draft (`# %%` code cells, `# %% [markdown]` markdown cells) into a notebook.

Drafting aid only: the notebook in nbs/ is the source of truth, drafts are not committed.
Usage: python tools/py2nb.py DRAFT.py nbs/NN_name.ipynb [--execute [--flags "cuda slow"]]
Markdown cells are written as comment lines (`# text`); their leading `# ` is removed.
With --execute the notebook is then run by tools/run_nb.py (outputs kept, flagged cells skipped).
"""
import re, sys, subprocess
from pathlib import Path
from execnb.nbio import new_nb, mk_cell, write_nb

def parse(text):
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        src = '\n'.join(buf).strip('\n')
        if kind == 'markdown': src = '\n'.join(re.sub(r'^# ?', '', l) for l in src.splitlines())
        if src.strip(): cells.append((kind, src))
    for line in text.splitlines():
        m = re.match(r'^# %%(.*)$', line)
        if m:
            flush(); kind = 'markdown' if '[markdown]' in m.group(1) else 'code'; buf = []
        else: buf.append(line)
    flush()
    return cells

def main(argv=sys.argv[1:]):
    src, dest = Path(argv[0]), Path(argv[1])
    cells = [mk_cell(s, cell_type=k) for k, s in parse(src.read_text(encoding='utf-8'))]
    nb = new_nb(cells, meta={'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}})
    write_nb(nb, dest)
    print(f'wrote {dest} ({len(cells)} cells)')
    if '--execute' in argv:
        extra = argv[argv.index('--flags'):argv.index('--flags')+2] if '--flags' in argv else []
        return subprocess.call([sys.executable, str(Path(__file__).parent/'run_nb.py'), str(dest), *extra])
    return 0

if __name__ == '__main__': sys.exit(main())
