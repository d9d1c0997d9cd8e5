"""`#| cuda` cells on a machine without a GPU: a real Jupyter kernel runs a notebook through a GPU cell (Run All goes on,
the cell shows its recorded GPU output), and the records in nbs/gpu_records.json belong to cells that still exist."""
import json, subprocess, sys
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'tools'))

def _cell(src): return dict(cell_type='code', execution_count=None, id=f'c{abs(hash(src)) % 10**8}', metadata={}, outputs=[], source=src)

@pytest.mark.skipif(torch.cuda.is_available(), reason='on a GPU the cuda cell runs for real')
def test_run_all_goes_past_a_cuda_cell_in_a_real_kernel(tmp_path):
    import nbformat
    from nbclient import NotebookClient
    from hypermnemosyne.core import cell_key
    gpu_src = "#| cuda\nraise RuntimeError('GPU code ran on a CPU')"
    (tmp_path/'gpu_records.json').write_text(json.dumps({'cells': {cell_key(gpu_src): {
        'notebook': 'demo.ipynb', 'source': gpu_src, 'gpu': 'NVIDIA TestGPU', 'commit': 'abc1234', 'command': 'demo',
        'outputs': [{'output_type': 'stream', 'name': 'stdout', 'text': ['| recorded | table |\n']}]}}}))
    nb = nbformat.from_dict(dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
                                 cells=[_cell('import torch, hypermnemosyne.core\nprint(torch.get_num_threads())'), _cell(gpu_src),
                                        _cell('#| cuda\nraise RuntimeError("an unrecorded GPU cell")'), _cell("print('after')")]))
    NotebookClient(nb, timeout=120, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}}).execute()
    text = lambda c: ''.join(o.get('text', '') for o in c.outputs)
    assert text(nb.cells[1]).splitlines()[0].startswith('[no CUDA GPU here') and 'NVIDIA TestGPU' in text(nb.cells[1])
    assert '| recorded | table |' in text(nb.cells[1])
    assert 'no GPU output is recorded' in text(nb.cells[2])
    assert text(nb.cells[3]) == 'after\n'
    assert all(o.output_type != 'error' for c in nb.cells for o in c.outputs)

def test_gpu_records_are_live_and_say_where_they_come_from():
    import gpu_records
    recs = gpu_records.load()
    assert recs, 'nbs/gpu_records.json is missing or empty'
    assert gpu_records.stale(recs) == [], 'records of edited or removed cuda cells: run `python tools/gpu_records.py check`'
    home = {gpu_records.cell_key(s): gpu_records._nb_name(nb) for nb in (ROOT/'nbs').rglob('*.ipynb')
            for s, _ in gpu_records.cuda_cells(nb)}
    moved = {k: (r['notebook'], home[k]) for k, r in recs.items() if r['notebook'] != home[k]}
    assert not moved, f'records naming another notebook than the one their cell is in (recorded, now): {moved}'
    for k, r in recs.items():
        assert r['gpu'] and r['commit'] and r['command'] and 'outputs' in r, f'record {k} of {r["notebook"]} lacks its GPU, commit or command'
        assert not gpu_records._has_error(r['outputs'])
        assert gpu_records.clean_outputs(r['outputs']) == r['outputs'], f'record {k}: a warning with a machine path'
