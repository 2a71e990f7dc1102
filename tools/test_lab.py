"""A real-browser test of JupyterLab (`python -m pytest -q tools/test_lab.py`, part of `make test` via `pytest tools/`).

It starts JupyterLab as `make lab` does (the project's environment, nbdev's pre-save hook, `--allow-root` as
root), on a free loopback port with a token, drives Debian's Chromium with Playwright for Python (through its
executable path: no browser is downloaded), opens a notebook through the file browser, runs all its cells,
saves it with Ctrl+S, and checks what a user would see: no error output, at least one image, no widget error,
no `TqdmWarning`, and the notebook file on disk byte-identical to before. A second test runs `10a_search`'s
`## Run it` section and types a title into the search widget (10 images, then ITM re-ranking). The server is
stopped by its pid. Skipped, with the install hint, when Chromium or Playwright is absent (a failure under CI).
"""
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
import pytest
from docs_check import find_chromium

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = 'nbs/01_eda.ipynb'  # fast (about 20 s of cells), with plots, a table and progress bars
SEARCH = 'nbs/10a_search.ipynb'  # the interactive search widget
RUN_TIMEOUT_S = 240  # Run All Cells must finish within this (2 shared cores)
BAD_TEXT = ('Traceback (most recent call last)', 'Error displaying widget', 'TqdmWarning', 'IProgress not found')
KERNEL_IDLE = ("[...document.querySelectorAll('.jp-StatusBar-TextItem')]"
               ".some(e => /\\| Idle/.test(e.textContent) && !/No Kernel/.test(e.textContent))")  # a kernel, idle
NO_WINDOWING = '{"windowingMode": "none"}'  # every cell in the DOM, so every output can be checked


def lab_options(makefile: Path = ROOT/'Makefile') -> list[str]:
    "The literal `--options` of the Makefile's `lab` recipe (what `make lab` passes besides `--allow-root`)."
    lines = makefile.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith('lab:'))
    recipe = next(ln for ln in lines[start + 1:] if ln.startswith('\t'))
    return [a for a in shlex.split(recipe) if a.startswith('--') and '$(' not in a]


def test_lab_options():
    "The options `make lab` passes: the notebook folder and the pre-save hook (clean saves, no outputs)."
    opts = lab_options()
    assert '--ContentsManager.pre_save_hook=aliret.testing.lab_pre_save' in opts, opts
    assert '--notebook-dir=.' in opts, opts


def _free_port() -> int:
    "A free TCP port on the loopback interface."
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90):
    "Wait until `url` answers (raise with the server's log if it dies or never answers)."
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f'jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}')
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f'jupyter lab did not answer {url} in {timeout} s:\n{log.read_text()[-3000:]}')


def start_lab(tmp: Path) -> tuple[subprocess.Popen, str, Path]:
    "Start JupyterLab as `make lab` does, on a free loopback port with a token: (process, base url with token, log)."
    jupyter = Path(sys.executable).parent/'jupyter'
    port, token = _free_port(), secrets.token_hex(16)
    settings = tmp/'settings'/'@jupyterlab'/'notebook-extension'
    settings.mkdir(parents=True)
    (settings/'tracker.jupyterlab-settings').write_text(NO_WINDOWING)
    args = [str(jupyter), 'lab', *lab_options(), '--no-browser', '--ServerApp.ip=127.0.0.1', f'--ServerApp.port={port}',
            '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}',
            f'--LabApp.user_settings_dir={tmp/"settings"}', f'--LabApp.workspaces_dir={tmp/"workspaces"}']
    if os.geteuid() == 0:
        args.append('--allow-root')
    env = {**os.environ, 'JUPYTER_RUNTIME_DIR': str(tmp/'runtime'), 'PYTHONPATH': str(ROOT)}
    env.pop('MPLBACKEND', None)  # the kernel's plots go inline, as in a user's Lab
    log = tmp/'lab.log'
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open('w'), stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: the kernels stop with it
    url = f'http://127.0.0.1:{port}'
    _wait_http(f'{url}/api/status?token={token}', proc, log)
    return proc, f'{url}/lab?token={token}', log


def stop_lab(proc: subprocess.Popen):
    "Stop the server (and the kernels it started, in its session) by its pid."
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def open_in_file_browser(page, path: str):
    "Open `path` (relative to the Lab's root) by double-clicking each part in the file browser."
    for part in Path(path).parts:
        name = page.locator('.jp-DirListing-itemText', has_text=re.compile(f'^{re.escape(part)}$'))
        page.locator('.jp-DirListing-item').filter(has=name).first.dblclick(timeout=60_000)


def run_menu(page, item: str, timeout_s: float = RUN_TIMEOUT_S):
    "Run > `item` (e.g. Run All Cells), then wait until no cell is queued or running."
    page.locator('.lm-MenuBar-itemLabel', has_text=re.compile('^Run$')).click()
    page.locator('.lm-Menu-itemLabel', has_text=re.compile(f'^{re.escape(item)}$')).click()
    started = "[...document.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'))"
    page.wait_for_function(started, timeout=30_000)
    done = """() => {
        const sel = '.jp-Notebook .jp-CodeCell .jp-InputPrompt';
        const prompts = [...document.querySelectorAll(sel)].map(p => p.textContent);
        return prompts.length > 0 && !prompts.some(t => t.includes('*'));
    }"""
    page.wait_for_function(done, timeout=timeout_s * 1000, polling=1000)


def save_and_wait(page, path: Path, timeout_s: float = 30):
    "Ctrl+S in the notebook, then wait for the file on disk to be written and the tab to be clean."
    before = path.stat().st_mtime_ns
    page.locator('.jp-Notebook').first.click(position={'x': 5, 'y': 5})
    page.keyboard.press('Control+s')
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and path.stat().st_mtime_ns == before:
        time.sleep(0.2)
    assert path.stat().st_mtime_ns != before, f'{path} was not saved within {timeout_s} s of Ctrl+S'
    page.wait_for_function("!document.querySelector('.lm-TabBar-tab.jp-mod-dirty')", timeout=timeout_s * 1000)


def _need_browser() -> str:
    "The Chromium executable, or skip the test with the install hint (Chromium or Playwright missing)."
    chromium = find_chromium()
    hint = "no Chromium here: 'sudo apt-get install -y chromium' (or set ALIRET_CHROMIUM=/path/to/chromium)"
    if not chromium and os.environ.get('CI'):
        pytest.fail(f'{hint}; CI must run this test (as it runs the docs check)')
    if not chromium:
        pytest.skip(hint)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Playwright for Python is missing: pip install playwright (it drives the system Chromium, "
                    "no browser download)")
    return chromium


@pytest.fixture(scope='module')
def lab():
    "One JupyterLab (as `make lab` starts it) and one headless Chromium for this module's tests; stopped by pid after."
    from playwright.sync_api import sync_playwright
    chromium = _need_browser()
    with tempfile.TemporaryDirectory() as d:
        proc, url, log = start_lab(Path(d))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, headless=True,
                                            args=['--no-sandbox', '--disable-gpu'])
                yield browser, url, log
                browser.close()
        finally:
            stop_lab(proc)


@contextmanager
def lab_page(lab, nb: Path):
    "A fresh page (reset workspace) on the Lab; on failure a screenshot and the server log's end."
    browser, url, log = lab
    page = browser.new_page(viewport={'width': 1400, 'height': 1000})
    try:
        page.goto(url + '&reset')
        page.locator('.jp-DirListing-item').first.wait_for(timeout=90_000)
        yield page
    except Exception:
        shot = Path(tempfile.gettempdir())/f'test_lab_{nb.stem}_failure.png'
        page.screenshot(path=str(shot))
        print(f'screenshot of the failure: {shot}; server log:\n{log.read_text()[-2000:]}')
        raise
    finally:
        page.close()


def run_notebook(page, nb: Path):
    "Open `nb` through the file browser, wait for its kernel, Run All Cells and wait for the end."
    open_in_file_browser(page, str(nb.relative_to(ROOT)))
    page.locator('.jp-Notebook .jp-CodeCell').first.wait_for(timeout=60_000)
    page.wait_for_function(KERNEL_IDLE, timeout=90_000)
    run_menu(page, 'Run All Cells')


def page_facts(page) -> dict:
    "What the notebook shows: output texts (stderr included), images, progress-bar widgets, input prompts."
    return dict(texts=page.locator('.jp-OutputArea-output').all_inner_texts(),
                images=page.locator('.jp-OutputArea-output img').count(),
                widgets=page.locator('.jp-OutputArea-output .widget-hprogress').count(),
                prompts=page.locator('.jp-Notebook .jp-CodeCell .jp-InputPrompt').all_inner_texts())


def check_facts(f: dict, ran_all: bool = True):
    "No error or warning text; every code cell ran (with `ran_all`), or at least the last one."
    bad = [(b, t[:300]) for t in f['texts'] for b in BAD_TEXT if b in t]
    assert not bad, f'error or warning outputs in the Lab: {bad}'
    unrun = [p for p in (f['prompts'] if ran_all else f['prompts'][-1:]) if not re.search(r'\[\d+\]', p)]
    assert not unrun, f"{len(unrun)} of {len(f['prompts'])} code cells did not run (an error stopped the run?)"


def restore(nb: Path, before: bytes) -> Path | None:
    "Put `nb` back as it was if a save changed it (the working tree stays clean); return where the saved copy went."
    after = nb.read_bytes()
    if after == before:
        return None
    saved = Path(tempfile.gettempdir())/f'test_lab_{nb.name}'
    saved.write_bytes(after)
    nb.write_bytes(before)
    return saved


def test_lab_runs_a_notebook(lab):
    "Open 01_eda through the file browser, Run All Cells, save: no errors, images, widget bars, file unchanged."
    nb = ROOT/NOTEBOOK
    before, t0 = nb.read_bytes(), time.monotonic()
    try:
        with lab_page(lab, nb) as page:
            run_notebook(page, nb)
            save_and_wait(page, nb)
            f = page_facts(page)
    finally:
        saved = restore(nb, before)
    check_facts(f)
    assert f['images'] >= 1, f"no image output among {len(f['texts'])} outputs"
    assert f['widgets'] >= 1, 'no progress-bar widget: ipywidgets missing, or the bars fell back to text'
    assert saved is None, f'{NOTEBOOK} changed on disk by Run All Cells + save (restored; the saved file is {saved})'
    print(f"lab test: {len(f['prompts'])} cells, {len(f['texts'])} outputs, {f['images']} image(s), "
          f"{f['widgets']} progress widget(s), {time.monotonic() - t0:.0f} s")


_STATUS_JS = "[...document.querySelectorAll('.widget-html')].some(e => /%s/.test(e.textContent))"  # the status says


def _search_state(page) -> tuple[str, int]:
    "(status line, number of result images) of the search widget."
    status = page.locator('.aliret-search-status').last.inner_text()
    return status, page.locator('.aliret-search-results').last.locator('img').count()


def run_section(page, nb: Path, heading: str):
    "Open `nb` in the file browser, wait for its kernel, select the `heading` cell, Run Selected Cell and All Below."
    open_in_file_browser(page, str(nb.relative_to(ROOT)))
    page.locator('.jp-Notebook .jp-CodeCell').first.wait_for(timeout=60_000)
    page.wait_for_function(KERNEL_IDLE, timeout=90_000)
    title = page.locator('h2', has_text=re.compile(f'^{re.escape(heading)}'))
    page.locator('.jp-MarkdownCell', has=title).first.click()
    run_menu(page, 'Run Selected Cell and All Below')


def test_lab_search_widget(lab):
    "10a_search's Run it section in the Lab: the widget answers a typed title with 10 images, also re-ranked by ITM."
    nb = ROOT/SEARCH
    before, t0 = nb.read_bytes(), time.monotonic()
    try:
        with lab_page(lab, nb) as page:
            run_section(page, nb, 'Run it')
            f = page_facts(page)
            check_facts(f, ran_all=False)
            first = _search_state(page)
            box = page.locator('.jp-OutputArea-output .widget-text input').last
            box.fill('red cotton shirt for men')
            box.press('Enter')
            page.wait_for_function(_STATUS_JS % 'no known answer', timeout=60_000)
            typed = _search_state(page)
            page.locator('.jp-OutputArea-output .widget-toggle-button').last.click()
            page.wait_for_function(_STATUS_JS % '\\+ ITM', timeout=60_000)
            reranked = _search_state(page)
            save_and_wait(page, nb)
    finally:
        saved = restore(nb, before)
    assert first[1] == 10 and 'correct image' in first[0], first
    assert typed[1] == 10, typed
    assert reranked[1] == 10, reranked
    assert saved is None, f'{SEARCH} changed on disk by Run All Cells + save (restored; the saved file is {saved})'
    print(f'search widget test: {typed[0]!r}, {reranked[0]!r}, {time.monotonic() - t0:.0f} s')
