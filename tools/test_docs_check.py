"Tests of tools/docs_check.py (`python -m pytest -q tools/`); the whole-site check is `python tools/docs_check.py`."
import base64
import io
import os
import re
import tempfile
from pathlib import Path
import matplotlib
import nbformat
import numpy as np
import pytest
from fastcore.test import test_eq as eq, test_fail as fails  # aliased: pytest collects test_* names
from docs_check import (Page, _error_summary, api_names, cell_directives, check_docs_in_chromium, figure_counts,
                        find_chromium, fix_markdown, home_problems, link_problems, list_notebooks, mixed_import_cells,
                        nav_html, nb_title, need_chromium, page_facts, page_name, page_shell, pager_html, pandoc_id,
                        prepare_cells, process_notebooks, render_page, store_figures)

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

_png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ'
                        'AAAABJRU5ErkJggg==')


def _cc(src, imgs=0):
    "A code cell with `imgs` saved PNG outputs."
    c = nbformat.v4.new_code_cell(src)
    out = {'image/png': base64.b64encode(_png).decode(), 'text/plain': '<Figure>'}
    c.outputs = [nbformat.v4.new_output('display_data', out) for _ in range(imgs)]
    return c


def test_page_name_and_title():
    "Page names drop the number prefix; titles come from the first heading or the frontmatter."
    eq(page_name('00a_sample_data.ipynb'), 'sample_data.html')
    eq(page_name('index.ipynb'), 'index.html')
    eq(page_name('12_benchmarks.ipynb'), 'benchmarks.html')
    eq(page_name('api/04_Models.ipynb'), 'api/models.html')
    md = nbformat.v4.new_markdown_cell('# core\n\n> Config presets and run folders.\n\n## Later')
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x = 1'), md])
    eq(nb_title(nb), ('core', 'Config presets and run folders.'))
    eq(nb_title(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('## no title here')])), ('', ''))
    raw = nbformat.v4.new_raw_cell('---\ntitle: Home\ndescription: d\n---')
    eq(nb_title(nbformat.v4.new_notebook(cells=[raw])), ('Home', 'd'))


def test_list_notebooks(tmp_path):
    "Home page first, then file-name order; `_` and `.` paths skipped."
    for n in ['01_eda', '00a_sample_data', 'index', '00_core', '_scratch', '.ipynb_checkpoints/00_core-checkpoint']:
        (tmp_path/f'{n}.ipynb').parent.mkdir(parents=True, exist_ok=True)
        (tmp_path/f'{n}.ipynb').write_text('{}')
    want = ['index.ipynb', '00_core.ipynb', '00a_sample_data.ipynb', '01_eda.ipynb']
    eq([p.name for p in list_notebooks(tmp_path)], want)


def test_directives_api_names_figures():
    "Directives as nbdev reads them; the API docs and figures a page must show."
    eq(cell_directives('#| export\n#|hide\n#| echo: false\nx = 1\n#| not: a directive'),
            {'export': [], 'hide': [], 'echo': ['false']})
    eq(cell_directives('#| default_exp core'), {'default_exp': ['core']})
    eq(cell_directives('x = 1  #| export'), {})
    eq(cell_directives('#| test\ntest_eq(1, 1)'), {'test': []})
    nb = nbformat.v4.new_notebook(cells=[
        _cc('#| export\ndef f(x): "doc"\nclass K: pass\ndef _private(): pass\n@patch\ndef g(self: K): pass\nX = 1'),
        _cc('#| export\n#| hide\ndef hidden(): pass'), _cc('#| exporti\ndef internal(): pass'),
        _cc('#| exports\nasync def h(): pass\ndef f(x): pass'),
        _cc('fig, ax = plt.subplots(); ax.plot([1, 2])', imgs=1),       # a saved figure
        _cc('#| hide\nplt.imshow(a)', imgs=1),                          # hidden: not on the page
        _cc('plot_history(history, "curves.png");'),                     # plots, but nothing saved
        _cc('plt.close(plot_recall_curves(c))'),                         # a test that closes its figure: not a plot
        _cc('#| export\ndef plot_x(): plt.subplots()')])                 # exported: the code is not on the page
    eq(api_names(nb), ['f', 'K', 'K.g', 'h', 'plot_x'])
    eq(figure_counts(nb), (1, 1))


def test_mixed_import_cells():
    "Cells nbdev would execute at docs time because they mix imports with code."
    nb = nbformat.v4.new_notebook(cells=[
        _cc('#| export\nimport os\ndef f(): "doc"'), _cc('import numpy as np'),
        _cc('#| hide\nfrom fastcore.test import *\nx = 1'), _cc('n = 3'),
        _cc('def g():\n    from PIL import Image\n    return Image'),
        _cc('with open(p) as f:\n    import json\n    y = json.load(f)'), _cc('#| eval: false\nimport a; a.b()'),
        _cc('import nbdev; nbdev.nbdev_export()')])
    eq(mixed_import_cells(nb), [(2, 'from fastcore.test import *'), (5, 'with open(p) as f:')])
    nb.cells[0].source = 'import os\ndef f(): "doc"'                      # no API docs: nbdev executes nothing
    eq(mixed_import_cells(nb), [])


def test_error_summary():
    "The exception lines of a traceback, nbdev's first, with the failing cell's first lines."
    tb = ("Traceback (most recent call last):\n  File \"x\", line 1\nNameError: name 'n' is not defined\n\n"
          "The above exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n"
          "  File \"y\", line 2\nException: Error in notebook: Broken in cell 3 :\nimport math\nprint(math.sqrt(n))\n")
    eq(_error_summary(tb), "Exception: Error in notebook: Broken in cell 3 : <- NameError: name 'n' is not defined"
                                " | import math / print(math.sqrt(n))")
    eq(_error_summary('Segmentation fault'), 'Segmentation fault')


def _tiny_notebooks(nbs):
    "A good notebook (with a `#| test` cell) and one nbdev cannot process, written into `nbs`."
    good = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell('# Tiny\n\n> A tiny page.'),
        nbformat.v4.new_code_cell('#| export\ndef tiny_add(a: int, # first\n             b: int=1, # second\n'
                                  '            ) -> int:\n    "Add two numbers."\n    return a + b'),
        nbformat.v4.new_code_cell('#| hide\nsecret = 42'), nbformat.v4.new_code_cell('tiny_add(1)'),
        nbformat.v4.new_code_cell('#| test\nassert tiny_add(1, 2) == 3')])
    bad = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell('# Broken'), nbformat.v4.new_code_cell('#| export\ndef f(): pass'),
        nbformat.v4.new_code_cell('n = 3'), nbformat.v4.new_code_cell('import math\nprint(math.sqrt(n))')])
    nbformat.write(good, nbs/'01_tiny.ipynb')
    nbformat.write(bad, nbs/'02_broken.ipynb')


def test_process_notebooks(tmp_path):
    "nbdev's processing of a good and a broken notebook; failures are reported and never cached."
    nbs = tmp_path/'nbs'
    nbs.mkdir()
    _tiny_notebooks(nbs)
    res = {r.notebook: r for r in process_notebooks(nbs, tmp_path/'_proc', n_workers=2)}
    eq(sorted(res), ['01_tiny.ipynb', '02_broken.ipynb'])
    eq(res['01_tiny.ipynb'].error, '')
    proc = nbformat.read(res['01_tiny.ipynb'].proc_path, as_version=4)
    srcs = [c.source for c in proc.cells]
    eq(any('show_doc(tiny_add)' in s for s in srcs), True)          # nbdev added the API doc...
    sd = next(c for c in proc.cells if 'show_doc(tiny_add)' in c.source)
    assert '### tiny_add' in sd.outputs[0]['data']['text/markdown']       # ...and rendered it
    eq(any('secret' in s for s in srcs), False)                      # the hidden cell is gone
    eq('assert tiny_add(1, 2) == 3' in srcs, True)                   # nbdev keeps a `#| test` cell, directive out
    eq(nb_title(proc), ('Tiny', 'A tiny page.'))                     # title moved into the frontmatter
    assert 'output-file: tiny.html' in proc.cells[0].source
    eq(res['02_broken.ipynb'].proc_path, '')
    assert "NameError: name 'n' is not defined" in res['02_broken.ipynb'].error, res['02_broken.ipynb'].error
    assert any('imports and other code' in w for w in res['02_broken.ipynb'].warnings)
    again = {r.notebook: r for r in process_notebooks(nbs, tmp_path/'_proc')}
    eq((again['01_tiny.ipynb'].cached, again['02_broken.ipynb'].cached), (True, False))


def test_fix_markdown_and_pandoc_id():
    "Pandoc-only syntax stripped; heading ids as Pandoc makes them."
    eq(fix_markdown('[source](https://x/y.py#L3){target="_blank" style="float:right"}\n\n### f'),
            '[source](https://x/y.py#L3)\n\n### f')
    eq(fix_markdown('::: {.callout-note}\nNote this.\n:::\n'), 'Note this.\n')
    eq(fix_markdown('## Setup {#sec-setup}\ntext {not an attribute}'), '## Setup\ntext {not an attribute}')
    eq(pandoc_id('Project paths'), 'project-paths')
    eq(pandoc_id('RetrievalModel.embed_images'), 'retrievalmodel.embed_images')
    eq(pandoc_id('get_config'), 'get_config')
    eq(pandoc_id('1. Config: presets & a typed schema!'), 'config-presets-a-typed-schema')


def test_nav_and_pager():
    "Sidebar in reading order with the current page marked; relative links; previous/next."
    pages = [Page('index.html', 'index.ipynb', 'aliret'), Page('core.html', '00_core.ipynb', 'core'),
             Page('api/x.html', 'api/01_x.ipynb', 'x & y')]
    nav = nav_html(pages, 'core.html')
    eq(re.findall(r'href="([^"]+)"', nav), ['index.html', 'core.html', 'api/x.html'])
    eq(re.findall(r'<a href="([^"]+)" aria-current="page"', nav), ['core.html'])
    assert '>x &amp; y</a>' in nav
    eq(re.findall(r'href="([^"]+)"', nav_html(pages, 'api/x.html')), ['../index.html', '../core.html', 'x.html'])
    eq(re.findall(r'rel="(\w+)" href="([^"]+)"', pager_html(pages, 'core.html')),
            [('prev', 'index.html'), ('next', 'api/x.html')])
    eq(re.findall(r'rel="(\w+)"', pager_html(pages, 'index.html')), ['next'])


def test_render_page():
    "Frontmatter to header, show_doc to an API doc box, figures as data URIs, links made relative, nothing external."
    sd = nbformat.v4.new_code_cell('#| echo: false\n#| output: asis\nshow_doc(tiny_add)')
    md = ('---\n\n[source](https://github.com/u/r/blob/main/r/x.py#L1){target="_blank"}\n\n### tiny_add\n\n'
          '*Add two numbers.*')
    sd.outputs = [nbformat.v4.new_output('execute_result', {'text/markdown': md, 'text/plain': 'def tiny_add'},
                                         execution_count=1)]
    proc = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_raw_cell('---\ntitle: Tiny\ndescription: A tiny page.\noutput-file: tiny.html\n---'),
        nbformat.v4.new_markdown_cell('## Adding things\n\nSee [`tiny_add`](https://u.github.io/r/tiny.html#tiny_add) '
                                      'and [the home page](index.ipynb#two-commands).\n\n'
                                      '::: {.callout-note}\nA note.\n:::'),
        sd, _cc('#| include: false\nprint("never shown")'), _cc('#| code-fold: show\nfig = plot()', imgs=1),
        _cc('x = 1')])
    pg = [Page('index.html', 'index.ipynb', 'home'), Page('tiny.html', '01_tiny.ipynb', 'Tiny', 'A tiny page.')]
    out = render_page(proc, pg[1], pg, site_url='https://u.github.io/r/')
    assert '<title>Tiny – aliret</title>' in out and '<h1 class="title">Tiny</h1>' in out and 'A tiny page.' in out
    eq(len(re.findall(r'class="api-doc" data-name="tiny_add"', out)), 1)
    assert '<h3 id="tiny_add">tiny_add' in out, 'API doc heading with the id nbdev links to'
    eq('show_doc' in out, False)                      # echo: false
    eq('never shown' in out or 'output-file' in out or ':::' in out or '{target=' in out, False)
    eq(len(re.findall(r'<img[^>]+src="data:image/png;base64,', out)), 1)
    assert 'href="tiny.html#tiny_add"' in out and 'href="index.html#two-commands"' in out
    assert 'id="adding-things"' in out and 'code-fold' not in out
    eq(re.findall(r'<(?:script|link|img|iframe)[^>]+(?:src|href)="(?:https?:)?//', out), [])


def test_test_directive_cell_rendered():
    "A cell whose source starts with `#| test` is rendered like nbdev does: the directive stripped, the cell shown."
    nb = nbformat.v4.new_notebook(cells=[_cc('#| test\ntest_eq(tiny_add(1), 2)'), _cc('#|test\n\nassert True')])
    got = prepare_cells(nb).cells
    eq([c.source for c in got], ['test_eq(tiny_add(1), 2)', 'assert True'])
    eq([c.metadata.get('transient', {}).get('remove_source', False) for c in got], [False, False])
    pg = [Page('tiny.html', '01_tiny.ipynb', 'Tiny')]
    out = render_page(nbformat.v4.new_notebook(cells=[_cc('#| test\ntest_eq(tiny_add(1), 2)')]), pg[0], pg)
    assert 'tiny_add' in out and '#| test' not in out and '#|' not in out, out


def _tiny_site(d):
    "Two pages: a home page and a notebook page, with broken links planted on the second."
    pages = [Page('index.html', 'index.ipynb', 'Home'),
             Page('tiny.html', '01_tiny.ipynb', 'Tiny', api_names=['tiny_add'], figures=1)]
    body0 = ('<p>See <a href="tiny.html#tiny_add">tiny_add</a> and '
             '<a href="https://example.com/">an outside page</a>.</p>')
    body1 = ('<div class="api-doc" data-name="tiny_add"><h3 id="tiny_add">tiny_add</h3></div>'
             f'<div class="output_area"><img src="data:image/png;base64,{base64.b64encode(_png).decode()}"></div>'
             '<p><a href="#tiny_add">here</a> <a href="gone.html">gone</a> <a href="index.html#nowhere">nowhere</a> '
             '<a href="../settings.ini">outside</a> <img src="missing.png"></p>')
    for p, b in zip(pages, [body0, body1]):
        (Path(d)/p.page).write_text(page_shell(b, p, pages))
    return pages


def test_page_facts_and_links(tmp_path):
    "A page's facts read from its HTML, and every kind of broken link found."
    d = tmp_path
    _tiny_site(d)
    facts = {p: page_facts((Path(d)/p).read_text()) for p in ['index.html', 'tiny.html']}
    ids_of = lambda p: facts[p]['ids'] if p in facts else page_facts((Path(d)/p).read_text())['ids']
    eq((facts['tiny.html']['title'], facts['tiny.html']['h1']), ('Tiny – aliret', 'Tiny'))
    eq(facts['tiny.html']['nav'], ['index.html', 'tiny.html'])
    tiny = facts['tiny.html']
    eq((tiny['api_docs'], tiny['api_names'], tiny['figures']), (1, ['tiny_add'], 2))
    eq(link_problems('index.html', facts['index.html'], d, ids_of), [])
    t = page_facts('<main><pre><span>make</span> <span>test</span></pre><p>one</p><p>two</p></main>')['text']
    assert 'make test' in t and re.search(r'one\s*\n\s*two', t), t
    eq(link_problems('tiny.html', facts['tiny.html'], d, ids_of),
            ['gone.html (no such file)', 'index.html#nowhere (no such anchor)', '../settings.ini (leaves the site)',
             'missing.png (no such file)'])


def test_home_problems():
    "Missing home-page topics name their missing patterns; notebooks missing from the map are listed."
    home = ('aliret: retrieval on AliProducts as notebooks. make demo; make test. 00_core 01_eda. '
            'Pass -p data_dir with train.json and test_captions.json; '
            'weights from a local folder: model: /models/blip for BLIP, pretrained: /models/w.safetensors for CLIP.')
    hp = home_problems(home, ['index.ipynb', '00_core.ipynb', '01_eda.ipynb'])
    eq(len(hp), 1)
    assert hp[0].startswith('home page lacks running on GPUs (no match for: GPU ; -p'), hp
    gpus = ' On GPUs: papermill nbs/08_train.ipynb out.ipynb -p config large -p nproc 8'
    eq(home_problems(home + gpus, ['00_core.ipynb', '02_x.ipynb']), ['notebook map lacks 02_x'])


@pytest.mark.skipif(not find_chromium(), reason="no Chromium here (apt-get install -y chromium)")
def test_check_in_chromium(tmp_path):
    "The good page passes, the planted faults are found, a network script is caught in HTML and by the browser."
    pages = _tiny_site(tmp_path)
    df = check_docs_in_chromium(tmp_path, raise_on_fail=False, screenshot_home=False)
    eq(df[['page', 'loads', 'title', 'n_api_docs', 'n_figures', 'broken_links', 'ok']].values.tolist(),
            [['index.html', True, 'Home', 0, 0, 0, True], ['tiny.html', True, 'Tiny', 1, 2, 4, False]])
    probs = df.problems[1]
    assert '1 image(s) did not decode' in probs and 'gone.html (no such file)' in probs, probs
    cdn = '<script src="https://cdn.example.com/x.js"></script>'
    (tmp_path/'tiny.html').write_text(page_shell(cdn, pages[1], pages))
    fails(lambda: check_docs_in_chromium(tmp_path, screenshot_home=False),
              contains='loads from the network: https://cdn.example.com/x.js')


def test_chromium_missing(tmp_path, monkeypatch):
    "Without Chromium, the check and `need_chromium` stop with the install hint."
    _tiny_site(tmp_path)
    monkeypatch.setenv('ALIRET_CHROMIUM', '/nonexistent/chromium')
    fails(lambda: check_docs_in_chromium(tmp_path), contains="install Debian's chromium package")
    fails(need_chromium, contains="install Debian's chromium package")


def _run_folder(d: Path) -> bytes:
    "A source notebook and a run of it whose two figure cells (one edited since) hold a big PNG; return the PNG."
    (d/'run/a').mkdir(parents=True)
    fig, ax = plt.subplots(figsize=(12, 9), dpi=150)
    ax.imshow(np.random.default_rng(0).random((300, 300)))
    buf = io.BytesIO()
    fig.savefig(buf, format='png')
    plt.close(fig)
    png = base64.b64encode(buf.getvalue()).decode()
    new = nbformat.v4.new_code_cell
    src = nbformat.v4.new_notebook(cells=[new('plot_it()'), new('edited_since()'), new('x = 1')])
    ex = nbformat.v4.new_notebook(cells=[new('plot_it()'), new('as_run()'), new('x = 1')])
    for c, c2, i in zip(src.cells, ex.cells, 'abc'):
        c['id'] = c2['id'] = i
    (d/'nbs').mkdir()
    nbformat.write(src, d/'nbs/a.ipynb')
    for c in ex.cells[:2]:
        c.outputs = [nbformat.v4.new_output('display_data', data={'image/png': png, 'text/plain': '<Figure>'},
                                            metadata={'x': 1}), nbformat.v4.new_output('stream', text='noise\n')]
    ex.metadata['papermill'] = {'input_path': '/another/clone/nbs/a.ipynb'}   # found by name in nbs_path
    nbformat.write(ex, d/'run/a/a.ipynb')
    return buf.getvalue()


def test_store_figures(tmp_path):
    "A run's figures go into unchanged source cells only, images only, shrunk to fit; running twice changes nothing."
    d = tmp_path
    raw = _run_folder(d)
    rep = store_figures(d/'run', max_kb=60, nbs_path=d/'nbs')
    eq(rep[['cell', 'status']].values.tolist(), [['a', 'stored'], ['b', 'skipped: cell changed since the run']])
    got = nbformat.read(d/'nbs/a.ipynb', as_version=4).cells
    eq([len(c.outputs) for c in got], [1, 0, 0])                          # the image only: no stream, no metadata
    eq(len(base64.b64decode(got[0].outputs[0].data['image/png'])) <= 60 * 1024 < len(raw), True)   # shrunk to fit
    eq(store_figures(d/'run', max_kb=60, nbs_path=d/'nbs').status.tolist(),
            ['stored', 'skipped: cell changed since the run'])   # idempotent
