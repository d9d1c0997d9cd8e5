"""The generation widget in a real browser: JupyterLab on 127.0.0.1 with a fresh token, Debian's Chromium driven by
Playwright (no browser download), a notebook that builds a `tiny` model and the widget; we type a prompt, click
Generate, and check that surprise-coloured tokens and the surprise plot appear. Saves a screenshot.

Needs /usr/bin/chromium (`.ci/run` installs it). Without it the test is skipped on a developer machine and FAILS in CI."""
import json, os, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _notebook(path, run_dir=None):
    "A notebook that shows the widget for an untrained `tiny` model, or for a trained run (`HM_WIDGET_RUN`, for the docs screenshot)."
    if run_dir:
        build = [f"from hypermnemosyne.train import load_run\n", f"model, tok, _ = load_run({str(run_dir)!r})\n"]
    else:
        build = ["from hypermnemosyne.model import HMConfig, HyperMnemosyne\n", "from hypermnemosyne.data import ByteTokenizer\n",
                 "torch.manual_seed(0)\n", "model, tok = HyperMnemosyne(HMConfig.preset('tiny')).eval(), ByteTokenizer()\n"]
    src = ["import torch\n", *build, "from hypermnemosyne.generate import GenerationWidget\n",
           "w = GenerationWidget(model, tok, prompt='', max_new_tokens=48)\n", "w"]
    nb = dict(cells=[dict(cell_type='code', execution_count=None, id='c1', metadata={}, outputs=[], source=src)],
              metadata=dict(kernelspec=dict(display_name='Python 3', language='python', name='python3')), nbformat=4, nbformat_minor=5)
    path.write_text(json.dumps(nb))

@pytest.fixture
def lab(tmp_path):
    if not Path(CHROMIUM).exists():
        if os.environ.get('CI'): pytest.fail('chromium is missing in CI: .ci/run should have installed it')
        pytest.skip('Debian chromium not installed (apt-get install chromium)')
    port, token = _free_port(), secrets.token_hex(16)
    _notebook(tmp_path / 'widget_demo.ipynb', os.environ.get('HM_WIDGET_RUN'))
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(tmp_path / 'cfg'), 'JUPYTER_DATA_DIR': str(tmp_path / 'data'),
           'JUPYTER_RUNTIME_DIR': str(tmp_path / 'rt'), 'OMP_NUM_THREADS': '1'}
    proc = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
                             '--allow-root', f'--IdentityProvider.token={token}', '--ServerApp.password=',
                             f'--ServerApp.root_dir={tmp_path}'], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f'http://127.0.0.1:{port}/api?token={token}', timeout=1); break
            except Exception: time.sleep(0.5)
        else: pytest.fail('JupyterLab did not answer on /api within 60 s')
        yield f'http://127.0.0.1:{port}/lab/tree/widget_demo.ipynb?token={token}', tmp_path
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()

def test_widget_generates_coloured_tokens_in_a_browser(lab):
    from playwright.sync_api import sync_playwright
    url, tmp = lab
    shot = Path(os.environ.get('HM_WIDGET_SCREENSHOT', tmp / 'widget.png'))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                                          '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic'])
        page = browser.new_page(viewport={'width': 1200, 'height': 1000})
        page.goto(url)
        page.get_by_text('| Idle').first.wait_for(timeout=90_000)
        page.get_by_text('Run', exact=True).first.click()
        page.get_by_text('Run All Cells', exact=True).first.click()
        try: page.locator('.widget-button', has_text='Generate').wait_for(timeout=120_000)
        except Exception:
            page.screenshot(path=str(shot.with_name('widget_failed.png')), full_page=True)
            outs = page.locator('.jp-OutputArea-output').all_inner_texts()
            raise AssertionError(f'the widget did not render; cell outputs: {outs!r}; kernel status: '
                                 f'{page.locator(".jp-StatusBar-TextItem").all_inner_texts()!r}; screenshot {shot.with_name("widget_failed.png")}')
        box = page.locator('.widget-textarea textarea').first
        box.fill('def greet(name):')
        page.locator('.widget-button', has_text='Generate').click()
        page.locator('.widget-label', has_text='done:').wait_for(timeout=120_000)
        spans = page.locator('.widget-html span[style*="rgba"]')
        n = spans.count()
        assert n >= len('def greet(name):'), f'only {n} coloured tokens rendered'
        img = page.locator('.widget-image').first
        img.wait_for(timeout=30_000)
        assert img.evaluate('e => e.naturalWidth') > 100, 'the surprise plot did not render'
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
