"""Small scripted edits to notebooks, outputs kept (for notebooks whose outputs took long to make):
    insert_after(nb, marker, source, cell_type='code'): add a cell after the first cell whose source contains `marker`
    replace(nb, old, new): replace text in the one cell that contains `old` (outputs kept)
    patch(nb, draft, pairs) / patch_md(nb, draft, pairs): the same replacements in a notebook and its draft
        (code / markdown)
Used from Python: `from tools.nb_edit import insert_after, replace` (run from the repository root)."""
import json, uuid
from pathlib import Path

def _load(p): return json.loads(Path(p).read_text())
def _save(p, nb): Path(p).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')

def _cell(source, cell_type):
    c = dict(cell_type=cell_type, id=uuid.uuid4().hex[:8], metadata={}, source=source.splitlines(keepends=True))
    if cell_type == 'code': c.update(execution_count=None, outputs=[])
    return c

def insert_after(path, marker, source, cell_type='code'):
    nb = _load(path)
    hits = [i for i, c in enumerate(nb['cells']) if marker in ''.join(c['source'])]
    if len(hits) != 1: raise ValueError(f'{path}: marker {marker!r} found in {len(hits)} cells, need exactly 1')
    nb['cells'].insert(hits[0] + 1, _cell(source, cell_type)); _save(path, nb)

def replace(path, old, new):
    nb = _load(path)
    hits = [c for c in nb['cells'] if old in ''.join(c['source'])]
    if len(hits) != 1: raise ValueError(f'{path}: text {old[:60]!r} found in {len(hits)} cells, need exactly 1')
    c = hits[0]; c['source'] = ''.join(c['source']).replace(old, new).splitlines(keepends=True); _save(path, nb)

def patch(nb_path, draft_path, pairs, markdown=False):
    """Apply (old, new) replacements to a notebook's cells and to its percent-format draft (if it exists), so the
    two stay in step. Each `old` must occur in exactly one cell (and once in the draft); nothing is written unless all
    do.
    `markdown=True`: only markdown cells match, and the draft holds the text as comment lines (`_as_comment`)."""
    nb, d = _load(nb_path), Path(draft_path)
    s = d.read_text() if d.exists() else None
    conv = _as_comment if markdown else (lambda t: t)
    for old, new in pairs:
        hits = [c for c in nb['cells']
                if (not markdown or c['cell_type'] == 'markdown') and old in ''.join(c['source'])]
        if len(hits) != 1: raise ValueError(f'{nb_path}: {old[:60]!r} found in {len(hits)} cells, need exactly 1')
        hits[0]['source'] = ''.join(hits[0]['source']).replace(old, new).splitlines(keepends=True)
        if s is not None:
            o, n = conv(old), conv(new)
            if s.count(o) != 1: raise ValueError(f'{draft_path}: {old[:60]!r} found {s.count(o)} times, need exactly 1')
            s = s.replace(o, n)
    _save(nb_path, nb)
    if s is not None: d.write_text(s)

def patch_md(nb_path, draft_path, pairs): return patch(nb_path, draft_path, pairs, markdown=True)

def move_after(path, marker, after_marker):
    "Move the one cell containing `marker` (outputs kept) to just after the one cell containing `after_marker`."
    nb = _load(path)
    find = lambda m: [i for i, c in enumerate(nb['cells']) if m in ''.join(c['source'])]
    a, b = find(marker), find(after_marker)
    if len(a) != 1 or len(b) != 1:
        raise ValueError(f'{path}: markers found in {len(a)} and {len(b)} cells, need exactly 1 each')
    cell = nb['cells'].pop(a[0])
    nb['cells'].insert(find(after_marker)[0] + 1, cell); _save(path, nb)

def _as_comment(text):
    "Markdown text as it sits in a percent-format draft: every line after the first prefixed by '# ' ('#' when empty)."
    first, *rest = text.split('\n')
    return '\n'.join([first] + [('# ' + l) if l else '#' for l in rest])
