"""Build README.md from nbs/index.ipynb (nbdev 2 renders README through Quarto, which is not available here).

Usage: python tools/readme.py          # write README.md (and images/readme_*.png for plot outputs)
       python tools/readme.py --check  # exit 1 if README.md is stale
Rules: markdown cells verbatim; code cells without `#| hide` become ```python blocks (directive lines dropped);
their text outputs become plain blocks and their PNG outputs images under images/.
"""
import base64, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NB, OUT, IMG = ROOT/'nbs'/'index.ipynb', ROOT/'README.md', ROOT/'images'

def _src(cell): return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']

def render(nb_path=NB):
    "Return (markdown text, {relative image path: png bytes}) for the notebook."
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    parts, images = [], {}
    for cell in nb['cells']:
        src = _src(cell)
        if cell['cell_type'] == 'markdown': parts.append(src.strip()); continue
        if cell['cell_type'] != 'code': continue
        lines = src.splitlines()
        directives = [l for l in lines if l.strip().startswith('#|')]
        if any(d.replace(' ', '') in ('#|hide', '#|exporti') for d in directives): continue
        code = '\n'.join(l for l in lines if not l.strip().startswith('#|')).strip()
        if code: parts.append('```python\n' + code + '\n```')
        for out in cell.get('outputs', []):
            data = out.get('data', {})
            if out.get('output_type') == 'stream': text = ''.join(out.get('text', ''))
            elif 'image/png' in data:
                name = f'images/readme_{len(images)}.png'
                images[name] = base64.b64decode(data['image/png'])
                parts.append(f'![]({name})'); continue
            elif 'text/markdown' in data: parts.append(''.join(data['text/markdown']).strip()); continue
            elif 'text/plain' in data: text = ''.join(data['text/plain'])
            else: continue
            if text.strip(): parts.append('```\n' + text.rstrip() + '\n```')
    header = '<!-- generated from nbs/index.ipynb by tools/readme.py; edit the notebook, not this file -->\n\n'
    return header + '\n\n'.join(p for p in parts if p) + '\n', images

def main(argv=sys.argv[1:]):
    text, images = render()
    if '--check' in argv:
        stale = [] if OUT.exists() and OUT.read_text(encoding='utf-8') == text else ['README.md']
        stale += [n for n, b in images.items() if not (ROOT/n).exists() or (ROOT/n).read_bytes() != b]
        if stale:
            print(f'stale: {", ".join(stale)} -- run `python tools/readme.py` and commit the result'); return 1
        print('README.md is current with nbs/index.ipynb'); return 0
    OUT.write_text(text, encoding='utf-8')
    if images: IMG.mkdir(exist_ok=True)
    for n, b in images.items(): (ROOT/n).write_bytes(b)
    print(f'wrote README.md ({len(text)} chars, {len(images)} images)'); return 0

if __name__ == '__main__': sys.exit(main())
