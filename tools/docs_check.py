"""An offline docs check: the notebooks processed exactly as nbdev processes them for Quarto, rendered to plain
HTML pages with a sidebar, and every page checked in headless Chromium.

Developer tooling, not part of the `aliret` package: `python tools/docs_check.py [--no-screenshot] [--lint]
[--store-figures RUNDIR]` from the project root. See tools/README.md."""
from __future__ import annotations
import argparse
import ast
import base64
import html
import io
import json
import mimetypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, asdict
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin, urlsplit, unquote
import nbformat
import pandas as pd
from aliret.core import project_root

PROG = 'python tools/docs_check.py'

# ---------------------------------------------------------------- pages and titles

_re_h1 = re.compile(r'^#\s+(\S.*?)\s*$', re.M)
_re_desc = re.compile(r'^>\s+(\S.*?)\s*$', re.M)


def page_name(nb_path: str | Path,  # a notebook path, relative to the notebooks folder
              ) -> str:
    "The HTML page nbdev/Quarto writes for a notebook: its name lower-cased, without the number prefix."
    p = PurePosixPath(Path(nb_path).as_posix())
    name = re.sub(r'^\d+[a-zA-Z0-9]*_', '', p.name.lower())
    return str(p.with_name(name).with_suffix('.html'))


def _src(c) -> str:
    "A cell's source as one string."
    return c['source'] if isinstance(c['source'], str) else ''.join(c['source'])


def _frontmatter_title(src: str) -> tuple[str, str] | None:
    "(title, description) from a raw `---` frontmatter cell, or None."
    import yaml
    fm = yaml.safe_load(src.strip().strip('-')) or {}
    if not fm.get('title'):
        return None
    return str(fm['title']), str(fm.get('description', ''))


def nb_title(nb,  # a notebook (nbformat node or dict)
             ) -> tuple[str, str]:
    "The notebook's title and description: raw frontmatter `title:` if any, else its first `# heading` and `> quote`."
    for c in nb['cells']:
        src = _src(c)
        if c['cell_type'] == 'raw' and src.strip().startswith('---') and (t := _frontmatter_title(src)):
            return t
        if c['cell_type'] == 'markdown' and (m := _re_h1.search(src)):
            d = _re_desc.search(src)
            return m.group(1), d.group(1) if d else ''
    return '', ''


def _nbdev_skips(p: Path, nbs_path: Path) -> bool:
    "Does nbdev skip this notebook (it, or a folder above it, starts with `_` or `.`)?"
    return any(part.startswith(('_', '.')) for part in p.relative_to(nbs_path).parts)


def list_notebooks(nbs_path: str | Path,  # the notebooks folder
                   ) -> list[Path]:
    "The notebooks nbdev documents, home page first, then in file-name (= notebook map) order."
    nbs_path = Path(nbs_path)
    nbs = [p for p in nbs_path.rglob('*.ipynb') if not _nbdev_skips(p, nbs_path)]
    rel = lambda p: p.relative_to(nbs_path).as_posix()
    return sorted(nbs, key=lambda p: (rel(p) != 'index.ipynb', rel(p)))

# ---------------------------------------------------------------- cell directives and what a page must show

_re_dir = re.compile(r'^\s*#\s*\|\s*(.*?)\s*$')
_HIDDEN = {'hide', 'export', 'exporti', 'default_exp'}
_DOCUMENTED = {'export', 'exports', 'exec_doc'}


def _directive_tokens(text: str) -> list[str]:
    "A directive's words: `key: value` and `key value` alike."
    return text.replace(':', ': ', 1).split() if ':' in text else text.split()


def cell_directives(src: str,  # a code cell's source
                    ) -> dict[str, list[str]]:
    "The leading `#| ...` directives of a code cell, as nbdev reads them (`key: value` and `key value` alike)."
    d = {}
    for line in src.splitlines():
        if not line.strip():
            continue
        m = _re_dir.match(line)
        if not m:
            break
        toks = _directive_tokens(m.group(1))
        if toks:
            d[toks[0].rstrip(':')] = toks[1:]
    return d


def _opt(d: dict, key: str) -> str:
    "A directive's first value, unquoted and lower-cased ('' when absent)."
    return d.get(key, [''])[0].strip('"\'').lower()


def _shown(c, d) -> bool:
    "Is this code cell on the docs page (nbdev drops hidden and exported cells, Quarto drops `include: false`)?"
    return not (d.keys() & _HIDDEN) and _opt(d, 'include') != 'false'


def _documented(d) -> bool:
    "Does nbdev add API docs for the definitions of a cell with these directives?"
    return bool(d.keys() & _DOCUMENTED) and 'hide' not in d and d.get('include', [''])[0] != 'false'


def _want_doc(c, d) -> bool:
    "Is this a non-empty cell whose definitions nbdev documents?"
    return bool(_src(c).strip()) and _documented(d)


def _parse_code(src: str):
    "The cell's syntax tree without its magics and shell lines; None if it does not parse."
    code = '\n'.join(l for l in src.splitlines() if not l.lstrip().startswith(('%', '!')))
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def _is_patch(x) -> bool:
    "Is this decorator fastcore's `@patch` (bare or called)?"
    return (getattr(x, 'id', None) or getattr(getattr(x, 'func', None), 'id', None)) == 'patch'


def _patch_name(f):
    "`Class.name` for a `@patch`ed function (first argument annotated with the class), else None."
    if not any(_is_patch(x) for x in f.decorator_list):
        return None
    a = f.args.args[0].annotation if f.args.args else None
    return f'{ast.unparse(a)}.{f.name}' if a is not None else None


def _public_defs(tree) -> list[str]:
    "The public top-level functions and classes of a module tree (`@patch`ed ones as `Class.name`)."
    names = []
    for o in tree.body:
        if not isinstance(o, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if o.name.startswith('_') and not o.name.startswith('__'):
            continue
        names.append((None if isinstance(o, ast.ClassDef) else _patch_name(o)) or o.name)
    return names


def api_names(nb,  # a source notebook
              ) -> list[str]:
    "Names whose API doc (`show_doc`) nbdev adds to the page: public defs and classes of visible exported cells."
    names = []
    for c in nb['cells']:
        if c['cell_type'] != 'code' or not _documented(cell_directives(_src(c))):
            continue
        tree = _parse_code(_src(c))
        if tree is not None:
            names += _public_defs(tree)
    return list(dict.fromkeys(names))


_IMG_MIMES = ('image/png', 'image/jpeg', 'image/gif', 'image/svg+xml', 'image/webp')
_re_plot = re.compile(r'\bplt\.(subplots|figure|show|imshow|plot|bar|hist)\(|\.imshow\(|\bplot_\w+\('
                      r'|\bShowPNG\(|\b_show\(|\bdisplay\(\s*(Image|fig)')
_re_shows = re.compile(r'\bplt\.show\(|\bdisplay\(|\b_show\(|\bShowPNG\(')


def _n_images(c) -> int:
    "How many image outputs a code cell saved."
    return sum(1 for o in c.get('outputs', []) for k in o.get('data', {}) if k in _IMG_MIMES)


def _plots(src: str) -> bool:
    "Does this code plot (a test that builds a figure and only closes it does not)?"
    closes_only = 'plt.close(' in src and not _re_shows.search(src)
    return bool(_re_plot.search(src)) and not closes_only


def figure_counts(nb,  # a source notebook
                  ) -> tuple[int, int]:
    "(image outputs saved in cells the page shows, shown cells that plot but saved no image)."
    saved = 0
    unsaved = 0
    for c in nb['cells']:
        d = cell_directives(_src(c)) if c['cell_type'] == 'code' else {}
        if c['cell_type'] != 'code' or not _shown(c, d) or _opt(d, 'output') == 'false':
            continue
        n = _n_images(c)
        saved += n
        unsaved += int(not n and _plots(_src(c)))
    return saved, unsaved


def _mixes_imports(src: str) -> bool:
    "Does this code hold an import (anywhere) and an expression or assignment?"
    tree = _parse_code(src)
    nodes = list(ast.walk(tree)) if tree is not None else []
    has_import = any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in nodes)
    return has_import and any(isinstance(n, (ast.Expr, ast.Assign)) for n in nodes)


def _docs_time_candidate(src: str, d: dict) -> bool:
    "Could nbdev execute this cell at docs time without it being meant to run (not exported, not `eval: false`)?"
    if not src.strip() or 'nbdev_export()' in src or _opt(d, 'eval') == 'false':
        return False
    return not (d.keys() & {'export', 'exports', 'exporti', 'exec_doc'})


def mixed_import_cells(nb,  # a source notebook
                       ) -> list[tuple[int, str]]:
    "Cells nbdev's docs build executes because they mix imports with other code: (cell index, first code line)."
    code = [(i, c, cell_directives(_src(c))) for i, c in enumerate(nb['cells']) if c['cell_type'] == 'code']
    if not any(_want_doc(c, d) or 'show_doc(' in _src(c) for _, c, d in code):
        return []                                                   # no API docs: nbdev executes nothing
    out = []
    for i, c, d in code:
        src = _src(c)
        if _docs_time_candidate(src, d) and _mixes_imports(src):
            out.append((i, next(l for l in src.splitlines() if l.strip() and not _re_dir.match(l))))
    return out

# ---------------------------------------------------------------- processing the notebooks as nbdev does

_WORKER = r'''
import json, os, sys, warnings
from pathlib import Path
src, dst, wfile = sys.argv[1:4]
os.environ['IN_TEST'] = '1'
from nbdev.serve_drv import exec_nb
from nbdev.processors import FilterDefaults
with warnings.catch_warnings(record=True) as ws:
    warnings.simplefilter('always')
    try: exec_nb(Path(src), Path(dst), FilterDefaults)
    finally:
        Path(wfile).write_text(json.dumps([str(w.message).strip() for w in ws
                                           if 'nbdev' in (w.filename or '') and 'deprecated' not in str(w.message)]))
'''


@dataclass
class ProcResult:
    "What nbdev's processing did with one notebook."
    notebook: str  # path relative to the notebooks folder
    proc_path: str  # the processed notebook ('' when processing failed)
    error: str = ''  # the error, when processing failed
    warnings: list = field(default_factory=list)  # nbdev's warnings (e.g. cells it executed)
    seconds: float = 0.0  # processing time (0 when the cached copy was used)
    cached: bool = False  # the processed copy in `_proc/` was up to date


def _is_exc_line(line: str) -> bool:
    "Is this traceback line an exception (`NameError: ...`, `foo.BarException`)?"
    m = re.match(r'^([A-Za-z_][\w.]*)(?::|$)', line)
    return bool(m) and m.group(1).split('.')[-1].endswith(('Error', 'Exception', 'Exit', 'Interrupt'))


def _error_summary(stderr: str) -> str:
    "A traceback's exception lines, last (nbdev's, naming the cell) first, then the failing cell's first lines."
    lines = stderr.splitlines()
    exc = [i for i, l in enumerate(lines) if _is_exc_line(l)]
    if not exc:
        return stderr.strip()[-500:]
    s = ' <- '.join(lines[i].strip() for i in reversed(exc))
    tail = [t.strip() for t in lines[exc[-1] + 1:exc[-1] + 3] if t.strip()]
    return s + (' | ' + ' / '.join(tail) if tail else '')


def _worker_env() -> dict:
    "The environment of a processing worker: offline, no display, quiet warnings."
    quiet = {'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'MPLBACKEND': 'Agg', 'PYTHONWARNINGS': 'ignore'}
    return {**os.environ, **quiet}


def _run_worker(src: Path, dst: Path, wfile: Path, root, timeout: float) -> str:
    "Run the processing worker on one notebook; return its error ('' on success)."
    args = [sys.executable, '-c', _WORKER, str(src), str(dst), str(wfile)]
    try:
        r = subprocess.run(args, cwd=root or project_root(), env=_worker_env(), capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return f'processing took longer than {timeout:.0f} s'
    if r.returncode == 0 and dst.exists():
        return ''
    return _error_summary(r.stderr) or f'exit code {r.returncode}'


def process_notebook(src: str | Path,  # the source notebook
                     dst: str | Path,  # where the processed notebook goes
                     root: str | Path | None = None,  # project root (nbdev reads settings.ini from here)
                     timeout: float = 900,  # seconds before the processing is stopped
                     ) -> tuple[str, list[str], float]:
    "Run nbdev's docs processing on one notebook in a fresh Python; return (error or '', nbdev warnings, seconds)."
    src = Path(src).resolve()
    dst = Path(dst).resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as td:
        wfile = Path(td)/'warnings.json'
        err = _run_worker(src, dst, wfile, root, timeout)
        warns = json.loads(wfile.read_text()) if wfile.exists() else []
    if err:
        dst.unlink(missing_ok=True)
    return err, warns, time.time() - t0


def _proc_one(src: Path, nbs_path: Path, proc_dir: Path, root: Path, newer_than: float, force: bool) -> ProcResult:
    "Process one notebook, or reuse its processed copy when that is newer than it, settings.ini and nbdev."
    rel = src.relative_to(nbs_path).as_posix()
    dst = proc_dir/rel
    if not force and dst.exists() and dst.stat().st_mtime >= max(src.stat().st_mtime, newer_than):
        return ProcResult(rel, str(dst), cached=True)
    err, warns, secs = process_notebook(src, dst, root)
    return ProcResult(rel, '' if err else str(dst), err, warns, round(secs, 1))


def process_notebooks(nbs_path: str | Path | None = None,  # notebooks folder (default: settings.ini's nbs_path)
                      proc_dir: str | Path | None = None,  # output folder (default: `_proc/`, as nbdev_proc_nbs)
                      force: bool = False,  # process even notebooks whose processed copy is up to date
                      n_workers: int = 2,  # notebooks processed at once
                      ) -> list[ProcResult]:
    "Process every documented notebook with nbdev's docs processors, in reading order; errors are returned, not raised."
    from nbdev.config import get_config
    import nbdev.processors
    cfg = get_config()
    nbs_path = Path(nbs_path or cfg.nbs_path)
    proc_dir = Path(proc_dir or cfg.config_path/'_proc')
    newer_than = max(cfg.config_file.stat().st_mtime, Path(nbdev.processors.__file__).stat().st_mtime)
    one = partial(_proc_one, nbs_path=nbs_path, proc_dir=proc_dir, root=cfg.config_path, newer_than=newer_than,
                  force=force)
    with ThreadPoolExecutor(max(1, n_workers)) as ex:
        return list(ex.map(one, list_notebooks(nbs_path)))

# ---------------------------------------------------------------- markdown for mistune, Pandoc's heading ids

_re_link_attr = re.compile(r'(\]\([^)\s]*(?:\s+"[^"]*")?\))\{[^}\n]*\}')
_re_fence_div = re.compile(r'^ {0,3}:::.*\n?', re.M)
_re_head_attr = re.compile(r'^(#{1,6}\s.*?)\s*\{[#.][^}]*\}\s*$', re.M)


def fix_markdown(md: str,  # markdown written for Quarto/Pandoc
                 ) -> str:
    "Strip the Pandoc-only syntax nbdev and authors use (link attributes, fenced divs, heading attributes)."
    md = _re_link_attr.sub(r'\1', md)
    md = _re_fence_div.sub('', md)
    return _re_head_attr.sub(r'\1', md)


def pandoc_id(text: str,  # heading text
              ) -> str:
    "The id Pandoc (Quarto) gives a heading: lower-case, spaces to hyphens, only letters, digits, `_ - .` kept."
    s = re.sub(r'[^\w\s.-]', '', text.strip().lower(), flags=re.UNICODE)
    s = re.sub(r'\s+', '-', s)
    s = re.sub(r'^[^a-z]+', '', s)
    return s or 'section'

# ---------------------------------------------------------------- pages, sidebar and pager


@dataclass
class Page:
    "One page of the offline site and what the check expects of it."
    page: str  # output file, relative to the site folder (e.g. `core.html`)
    notebook: str  # source notebook, relative to the notebooks folder
    title: str  # from the notebook's first `# heading`
    description: str = ''  # from the `> quote` under it
    api_names: list = field(default_factory=list)  # exported names that need an API doc
    figures: int = 0  # saved image outputs the page must show
    unsaved_plots: int = 0  # cells that plot but saved no image (warning; error with `strict`)
    proc_error: str = ''  # nbdev's processing error, if any
    proc_warnings: list = field(default_factory=list)  # nbdev's warnings
    mixed_cells: list = field(default_factory=list)  # cells nbdev runs at docs time that mix imports with code


def rel_href(target: str,  # page relative to the site folder
             current: str,  # the page the link is on
             ) -> str:
    "A relative link from `current` to `target` (both site-relative posix paths)."
    return os.path.relpath(target, os.path.dirname(current) or '.').replace(os.sep, '/')


def _nav_item(p: Page, current: str) -> str:
    "One sidebar entry, marked when it is the current page."
    mark = ' aria-current="page" class="current"' if p.page == current else ''
    return f'<li><a href="{html.escape(rel_href(p.page, current))}"{mark}>{html.escape(p.title or p.page)}</a></li>'


def nav_html(pages: list[Page],  # every page, in reading order
             current: str,  # the page being rendered
             ) -> str:
    "The sidebar: one link per page in reading order, the current page marked."
    items = '\n'.join(_nav_item(p, current) for p in pages)
    return f'<nav id="sidebar" aria-label="Notebooks"><ol>\n{items}\n</ol></nav>'


def pager_html(pages: list[Page],  # every page, in reading order
               current: str,  # the page being rendered
               ) -> str:
    "Previous / next links for the bottom of a page."
    i = [p.page for p in pages].index(current)
    prev = '<span></span>'
    nxt = '<span></span>'
    if i > 0:
        prev = f'<a rel="prev" href="{rel_href(pages[i-1].page, current)}">&larr; {html.escape(pages[i-1].title)}</a>'
    if i + 1 < len(pages):
        nxt = f'<a rel="next" href="{rel_href(pages[i+1].page, current)}">{html.escape(pages[i+1].title)} &rarr;</a>'
    return f'<nav class="pager" aria-label="Previous and next">{prev}{nxt}</nav>'

# ---------------------------------------------------------------- the page shell

_CSS = '''
:root { --side: 16rem; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); }
#sidebar { position: fixed; top: 0; bottom: 0; left: 0; width: var(--side); overflow-y: auto; padding: 1rem;
           border-right: 1px solid var(--line); background: #f6f8fa; font-size: .92rem; }
#sidebar .site { display: block; font-weight: 700; font-size: 1.15rem; margin-bottom: .6rem; color: var(--fg); }
#sidebar ol { list-style: none; padding: 0; margin: 0; }
#sidebar li a { display: block; padding: .2rem .5rem; border-radius: 4px; color: var(--fg); text-decoration: none; }
#sidebar li a.current { background: var(--accent); color: #fff; }
main { margin-left: var(--side); padding: 1.5rem 2.5rem 3rem; max-width: calc(var(--side) + 60rem); }
header .description { color: var(--muted); font-size: 1.1rem; }
a { color: var(--accent); }
pre, code { font: .88em/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: #f6f8fa; padding: .7rem; border-radius: 6px; overflow-x: auto; }
.input_area pre, .output pre { margin: .3rem 0; }
.cell { margin: .6rem 0; }
.output_area img, .output_area svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid var(--line); padding: .25rem .55rem; text-align: left; vertical-align: top; }
.api-doc { border: 1px solid var(--line); border-radius: 6px; padding: .2rem 1rem .6rem; margin: 1rem 0;
           box-shadow: 0 1px 2px rgba(0,0,0,.06); }
.api-doc hr { display: none; }
.api-doc a[href^="http"] { float: right; font-size: smaller; }
.anchor-link { visibility: hidden; margin-left: .3rem; text-decoration: none; }
h1:hover .anchor-link, h2:hover .anchor-link, h3:hover .anchor-link, h4:hover .anchor-link { visibility: visible; }
.proc-error { border: 2px solid #cf222e; border-radius: 6px; padding: .5rem 1rem; background: #ffebe9; }
.pager { display: flex; justify-content: space-between; border-top: 1px solid var(--line); margin-top: 2rem;
         padding-top: 1rem; }
footer { color: var(--muted); font-size: .85rem; margin-top: 1rem; }
'''

_SELFCHECK = '''
(function () {
  var errs = [];
  window.addEventListener('error', function (e) { errs.push(String(e.message || e.type)); });
  window.addEventListener('load', function () {
    var imgs = Array.prototype.slice.call(document.images);
    var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
    var ext = performance.getEntriesByType('resource').map(function (e) { return e.name; })
      .filter(function (n) { return n.indexOf(location.origin + '/') !== 0 && n.indexOf('data:') !== 0; });
    var b = document.body;
    b.setAttribute('data-check-images', imgs.length);
    b.setAttribute('data-check-broken-images', broken.length);
    b.setAttribute('data-check-external', ext.join(' '));
    b.setAttribute('data-check-errors', errs.join(' | '));
    b.setAttribute('data-check-loaded', '1');
  });
})();
'''


def _pygments_css() -> str:
    "The CSS of Pygments' default style, for highlighted code."
    from pygments.formatters import HtmlFormatter
    return HtmlFormatter(style='default').get_style_defs('.highlight')


def page_shell(body: str,  # the page content (HTML)
               page: Page,  # the page
               pages: list[Page],  # every page, for the sidebar
               site_title: str = 'aliret',  # the site name
               ) -> str:
    "A whole, self-contained HTML page: title, inline CSS, the sidebar, header, content and pager."
    t = html.escape(page.title or page.page)
    desc = f'<p class="description">{html.escape(page.description)}</p>' if page.description else ''
    home = rel_href(pages[0].page, page.page) if pages else 'index.html'
    site = f'<a class="site" href="{home}">{html.escape(site_title)}</a>'
    nav = nav_html(pages, page.page).replace('<ol>', f'{site}<ol>', 1)
    pager = pager_html(pages, page.page) if pages else ''
    return f'''<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t} – {html.escape(site_title)}</title>
<meta name="generator" content="tools/docs_check.py: nbdev processing + nbconvert">
<style>{_CSS}
{_pygments_css()}</style>
<script>{_SELFCHECK}</script>
</head><body>
{nav}
<main id="content"><header><h1 class="title">{t}</h1>{desc}</header>
{body}
{pager}
<footer>Built offline from <code>{html.escape(page.notebook)}</code> by <code>{PROG}</code>.</footer>
</main></body></html>
'''

# ---------------------------------------------------------------- rendering a processed notebook


def _html_exporter():
    "nbconvert's `basic` HTML exporter: cells only, no prompts, images embedded."
    from nbconvert import HTMLExporter
    from traitlets.config import Config
    c = Config()
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    c.HTMLExporter.embed_images = True
    return HTMLExporter(config=c, template_name='basic')


_re_showdoc = re.compile(r'^\s*show_doc\(\s*([^,)\s]+)', re.M)


def _api_doc_html(md: str, name: str) -> str:
    "One API doc (show_doc's markdown) as HTML in a `div.api-doc`."
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    return f'<div class="api-doc" data-name="{html.escape(name)}">\n{markdown2html_mistune(fix_markdown(md))}\n</div>'


def _strip_directives(src: str) -> str:
    "A code cell's source without its `#| ...` lines (nbdev's, Quarto's and unknown ones such as `#| test`)."
    return '\n'.join(l for l in src.splitlines() if not _re_dir.match(l)).strip('\n')


def _as_text(md) -> str:
    "Notebook text that may be a list of lines, as one string."
    return md if isinstance(md, str) else ''.join(md)


def _hide_source(c):
    "Mark a cell so that nbconvert renders its outputs only."
    c.metadata.setdefault('transient', {})['remove_source'] = True


def _apply_show_doc(c):
    "Replace a `show_doc` cell's markdown output by its API doc HTML, without the code."
    m = _re_showdoc.search(c.source)
    mds = [o['data']['text/markdown'] for o in c.outputs if 'text/markdown' in o.get('data', {})] if m else []
    md = mds[0] if mds else None
    if md is None:
        return
    c.outputs = [nbformat.v4.new_output('display_data', {'text/html': _api_doc_html(_as_text(md), m.group(1))})]
    _hide_source(c)


def _fix_markdown_outputs(c):
    "Strip Pandoc syntax from a cell's markdown outputs."
    for o in c.outputs:
        if 'text/markdown' in o.get('data', {}):
            o['data']['text/markdown'] = fix_markdown(_as_text(o['data']['text/markdown']))


def _prepare_code_cell(c):
    "Apply a code cell's options as Quarto would; return the cell, or None when the page does not show it."
    d = cell_directives(c.source)
    if d:
        c.source = _strip_directives(c.source)
    if _opt(d, 'include') == 'false':
        return None
    if _opt(d, 'output') == 'false':
        c.outputs = []
    if _opt(d, 'echo') == 'false' or not c.source.strip():
        _hide_source(c)
    _apply_show_doc(c)
    _fix_markdown_outputs(c)
    return c if c.outputs or c.source.strip() else None


def _prepare_cell(c):
    "One processed cell as the page shows it, or None when it is not on the page."
    if c.cell_type == 'raw' and c.source.strip().startswith('---'):
        return None                                                 # frontmatter (the title is in the header)
    if c.cell_type == 'markdown':
        c.source = fix_markdown(c.source)
        return c if c.source.strip() else None
    return _prepare_code_cell(c) if c.cell_type == 'code' else c


def prepare_cells(nb,  # a processed notebook (nbformat node); changed in place
                  ):
    "Apply what Quarto would: frontmatter out, cell options (`echo`, `include`, `output`), API docs as HTML."
    nb.cells = [c for c in map(_prepare_cell, nb.cells) if c is not None]
    nb.metadata.pop('widgets', None)                                # widget state would pull scripts from a CDN
    return nb


def _set_heading_ids(soup):
    "Give every heading Pandoc's id (numbered when repeated) and point its anchor link at it."
    seen = {}
    for h in soup.find_all(re.compile(r'^h[1-6]$')):
        a = h.find('a', class_='anchor-link')
        base = pandoc_id(h.get_text().replace('¶', ''))
        n = seen.get(base, 0)
        seen[base] = n + 1
        h['id'] = base if n == 0 else f'{base}-{n}'
        if a is not None:
            a['href'] = '#' + h['id']


def _relink(href: str, page: str, nb_pages: dict, site_url: str) -> str:
    "A link made relative: nbdev's absolute doc links, and `.ipynb` links as their pages; other links unchanged."
    if site_url and href.startswith(site_url):
        rest = href[len(site_url):].lstrip('/')
        frag = '#' + href.split('#', 1)[1] if '#' in href else ''
        return rel_href(rest.split('#')[0] or 'index.html', page) + frag
    if urlsplit(href).scheme or href.startswith('#'):
        return href
    path, _, frag = href.partition('#')
    if not path.endswith('.ipynb'):
        return href
    by_name = {PurePosixPath(k).name: v for k, v in nb_pages.items()}
    target = nb_pages.get(str(PurePosixPath(PurePosixPath(page).parent, path))) or by_name.get(PurePosixPath(path).name)
    return rel_href(target, page) + (f'#{frag}' if frag else '') if target else href


def _data_uri(f: Path) -> str:
    "A local file as a data: URI."
    mime = mimetypes.guess_type(f.name)[0] or 'application/octet-stream'
    return f'data:{mime};base64,' + base64.b64encode(f.read_bytes()).decode()


def _embed_images(soup, nb_dir):
    "Markdown images that are files next to the notebook, embedded as data URIs."
    for img in soup.find_all('img', src=True):
        src = img['src']
        if not nb_dir or urlsplit(src).scheme or src.startswith('#'):
            continue
        f = Path(nb_dir)/unquote(src)
        if f.is_file():
            img['src'] = _data_uri(f)


def finish_html(body: str,  # rendered cells
                page: str,  # this page, site-relative
                nb_pages: dict,  # source notebook (relative, posix) -> its page
                site_url: str = '',  # the deployed docs' base URL (nbdev's links start with it)
                nb_dir: str | Path | None = None,  # the source notebook's folder, for local images
                ) -> str:
    "Pandoc heading ids, and nbdev's absolute doc links and `.ipynb` links made relative page links."
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(body, 'html.parser')
    _set_heading_ids(soup)
    for a in soup.find_all('a', href=True):
        a['href'] = _relink(a['href'], page, nb_pages, site_url)
    _embed_images(soup, nb_dir)
    return str(soup)


def render_page(proc_nb,  # a processed notebook: path or nbformat node
                page: Page,  # the page being rendered
                pages: list[Page],  # every page, for the sidebar
                nb_pages: dict | None = None,  # source notebook -> page, for `.ipynb` links
                site_url: str = '',  # the deployed docs' base URL
                nb_dir: str | Path | None = None,  # the source notebook's folder
                site_title: str = 'aliret',  # the site name
                ) -> str:
    "A processed notebook as one self-contained HTML page."
    nb = nbformat.read(proc_nb, as_version=4) if isinstance(proc_nb, (str, Path)) else proc_nb
    resources = {'metadata': {'path': str(nb_dir or '.')}}
    body, _ = _html_exporter().from_notebook_node(prepare_cells(nb), resources=resources)
    body = finish_html(body, page.page, nb_pages or {p.notebook: p.page for p in pages}, site_url, nb_dir)
    return page_shell(body, page, pages, site_title)

# ---------------------------------------------------------------- building the site

MANIFEST = 'docs-manifest.json'


def _site_settings():
    "Site title and the deployed docs' base URL, from settings.ini (nbdev's doc_host + doc_baseurl)."
    from nbdev.config import get_config
    cfg = get_config()
    host = cfg.get('doc_host', '')
    base = cfg.get('doc_baseurl', '')
    url = (urljoin(host.rstrip('/') + '/', base.strip('/')) + '/') if host else ''
    return cfg.get('title', cfg.get('lib_name', 'docs')), url, cfg


def _error_page_body(p: Page) -> str:
    "The body of the page of a notebook nbdev could not process: the error and the mixed import cells."
    mixed = ''.join(f'<li>cell {i}: <code>{html.escape(l)}</code></li>' for i, l in p.mixed_cells)
    err = (f'<p><strong>nbdev could not process <code>{html.escape(p.notebook)}</code></strong>, '
           f'so Quarto (<code>nbdev_docs</code>) would fail on it too:</p><pre>{html.escape(p.proc_error)}</pre>')
    hint = ('<p>Cells nbdev executes at docs time because they mix imports with other code (move their imports into '
            f'the imports cell):</p><ul>{mixed}</ul>') if mixed else ''
    return f'<div class="proc-error">{err}{hint}</div>'


def _page_for(r: ProcResult, nbs_path: Path) -> Page:
    "The page of one processed notebook, with what its source notebook says the page must show."
    src = nbformat.read(nbs_path/r.notebook, as_version=4)
    title, desc = nb_title(src)
    figs, unsaved = figure_counts(src)
    return Page(page_name(r.notebook), r.notebook, title or Path(r.notebook).stem, desc, api_names(src), figs, unsaved,
                r.error, r.warnings, mixed_import_cells(src))


def _write_pages(tmp: Path, pages: list[Page], results: list[ProcResult], nbs_path: Path, site_url: str,
                 site_title: str):
    "Render every page into the folder (a page that says why for a notebook nbdev could not process)."
    nb_pages = {p.notebook: p.page for p in pages}
    for p, r in zip(pages, results):
        dst = tmp/p.page
        dst.parent.mkdir(parents=True, exist_ok=True)
        nb_dir = (nbs_path/r.notebook).parent
        if r.error:
            text = page_shell(_error_page_body(p), p, pages, site_title)
        else:
            text = render_page(r.proc_path, p, pages, nb_pages, site_url, nb_dir, site_title)
        dst.write_text(text, encoding='utf-8')


def _write_manifest(folder: Path, pages: list[Page], site_title: str, site_url: str):
    "Write the manifest: the site's settings and what each page must show."
    m = {'site_title': site_title, 'site_url': site_url, 'built': time.strftime('%Y-%m-%dT%H:%M:%S'),
         'pages': [asdict(p) for p in pages]}
    (folder/MANIFEST).write_text(json.dumps(m, indent=1))


def _replace_site(out: Path, pages, results, nbs_path: Path, site_url: str, site_title: str):
    "Write the site into a fresh folder beside `out`, then put it in place of `out`."
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', dir=out.parent))
    try:
        _write_pages(tmp, pages, results, nbs_path, site_url, site_title)
        os.chmod(tmp, 0o755)                                        # mkdtemp makes it private; a site is for serving
        _write_manifest(tmp, pages, site_title, site_url)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _proc_summary(results: list[ProcResult], seconds: float) -> str:
    "One line on the processing: how many notebooks, how long, how many cached and failed."
    return (f'processed {len(results)} notebooks in {seconds:.0f} s '
            f'({sum(r.cached for r in results)} cached, {sum(bool(r.error) for r in results)} failed)')


def build_offline_docs(out_dir: str | Path = '_site_offline',  # site folder (relative paths are under the project root)
                       nbs_path: str | Path | None = None,  # notebooks folder (default: settings.ini's nbs_path)
                       force: bool = False,  # re-process notebooks even when `_proc/` is up to date
                       n_workers: int = 2,  # notebooks processed at once
                       proc_dir: str | Path | None = None,  # processed notebooks (default: `_proc/`)
                       quiet: bool = False,  # no progress lines
                       ) -> Path:
    "Process the notebooks as nbdev does and render them to a self-contained HTML site with navigation; return it."
    site_title, site_url, cfg = _site_settings()
    out = Path(out_dir)
    out = out if out.is_absolute() else cfg.config_path/out
    nbs_path = Path(nbs_path or cfg.nbs_path)
    if out.exists() and any(out.iterdir()) and not (out/MANIFEST).exists():
        raise FileExistsError(f'{out} exists and was not made by build_offline_docs (no {MANIFEST}): '
                              'choose another out_dir or remove it')
    t0 = time.time()
    results = process_notebooks(nbs_path, proc_dir, force=force, n_workers=n_workers)
    if not quiet:
        print(_proc_summary(results, time.time() - t0))
    pages = [_page_for(r, nbs_path) for r in results]
    _replace_site(out, pages, results, nbs_path, site_url, site_title)
    if not quiet:
        print(f'wrote {len(pages)} pages to {out} in {time.time() - t0:.0f} s')
    return out


def read_manifest(site_dir: str | Path,  # a site folder
                  ) -> tuple[dict, list[Page]]:
    "The manifest of a built site and its pages (empty when the folder has no manifest)."
    f = Path(site_dir)/MANIFEST
    if not f.exists():
        return {}, []
    m = json.loads(f.read_text())
    return m, [Page(**p) for p in m['pages']]

# ---------------------------------------------------------------- a page's DOM

_BLOCKS = ['p', 'li', 'td', 'th', 'tr', 'pre', 'div', 'br', 'table', 'blockquote'] + [f'h{i}' for i in range(1, 7)]
_RESOURCE_TAGS = ['script', 'img', 'iframe', 'source', 'video', 'audio', 'embed', 'link']


def _block_text(el) -> str:
    "Text as a reader sees it: inline spans joined (highlighted code stays `make test`), blocks on their own lines."
    for b in el.find_all(_BLOCKS):
        b.append('\n')
    return re.sub(r'[ \t\r\f\v]+', ' ', el.get_text())


def _resource_url(el) -> str:
    "What a resource element loads: its `src`, or a `<link>`'s `href`."
    return el.get('src') or (el.get('href') if el.name == 'link' else '') or ''


def _external_refs(s) -> list[str]:
    "Resources the page's HTML asks for from another host."
    urls = [_resource_url(el) for el in s.find_all(_RESOURCE_TAGS)]
    return [u for u in urls if u.startswith(('http:', 'https:', '//'))]


def _self_check(body) -> dict:
    "The self-check results the page's script wrote on `<body>` (`data-check-*`)."
    if not hasattr(body, 'attrs'):
        return {}
    return {k[len('data-check-'):]: v for k, v in body.attrs.items() if k.startswith('data-check-')}


def _api_doc_names(api) -> list[str]:
    "The name in the first heading of each API doc."
    return [h.get_text().replace('¶', '').strip() for d in api for h in d.find_all(re.compile(r'^h[1-6]$'))[:1]]


def _ids(s) -> set:
    "Every anchor target of a page: element ids and `<a name>`s."
    return {t['id'] for t in s.find_all(id=True)} | {t['name'] for t in s.find_all('a', attrs={'name': True})}


def page_facts(dom: str,  # a page's HTML (as Chromium dumped it, or the file)
               ) -> dict:
    "Title, header, nav links, API doc names, figures, links, ids, external resources and the self-check of a page."
    from bs4 import BeautifulSoup
    s = BeautifulSoup(dom, 'html.parser')
    body = s.body or s
    main = s.find('main') or body
    api = s.select('.api-doc')
    h1 = main.find('h1')
    return dict(
        title=s.title.get_text().strip() if s.title else '',
        h1=h1.get_text().strip() if h1 else '',
        nav=[a['href'] for a in s.select('nav#sidebar li a[href]')],
        api_docs=len(api),
        api_names=_api_doc_names(api),
        figures=len(main.find_all('img')) + len(main.select('.output_area svg, .output_subarea svg')),
        links=[a['href'] for a in s.find_all('a', href=True)],
        srcs=[i['src'] for i in s.find_all('img', src=True)],
        ids=_ids(s),
        external_refs=_external_refs(s),
        text=_block_text(main),
        check=_self_check(body))


def _link_problem(href: str, page: str, site: Path, ids_of) -> str | None:
    "What is wrong with one relative link or image source of a page, or None."
    u = urlsplit(href)
    if u.scheme or href.startswith('//'):
        return None                                                 # http(s), mailto, data: are not site files
    target = page
    if u.path:
        target = os.path.normpath(os.path.join(os.path.dirname(page), unquote(u.path))).replace(os.sep, '/')
    f = site/target
    if target.startswith('..') or not f.resolve().is_relative_to(site):
        return f'{href} (leaves the site)'
    if f.is_dir():
        target = f'{target}/index.html'.lstrip('/')
        f = f/'index.html'
    if not f.is_file():
        return f'{href} (no such file)'
    if u.fragment and target.endswith('.html') and unquote(u.fragment) not in ids_of(target):
        return f'{href} (no such anchor)'
    return None


def link_problems(page: str,  # the page, site-relative
                  facts: dict,  # its `page_facts`
                  site_dir: str | Path,  # the site folder
                  ids_of,  # callable: site-relative page -> set of ids on it
                  ) -> list[str]:
    "Broken relative links, anchors and image sources on a page."
    site = Path(site_dir).resolve()
    bad = [_link_problem(href, page, site, ids_of) for href in facts['links'] + facts['srcs']]
    return list(dict.fromkeys(b for b in bad if b))

# ---------------------------------------------------------------- headless Chromium


class ChromiumMissing(RuntimeError):
    "No headless Chromium on this machine."


class DocsCheckError(AssertionError):
    "Some pages failed the docs check; `.report` holds the per-page table."

    def __init__(self, msg, report=None):
        "An error with its message and the per-page report."
        super().__init__(msg)
        self.report = report


_CHROMIUM_NAMES = ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable')


def find_chromium() -> str | None:
    "The Chromium executable: `$ALIRET_CHROMIUM`, else the first of chromium, chromium-browser, google-chrome on PATH."
    e = os.environ.get('ALIRET_CHROMIUM')
    if e:
        return e if Path(e).is_file() or shutil.which(e) else None
    return next((p for n in _CHROMIUM_NAMES if (p := shutil.which(n))), None)


def need_chromium() -> str:
    "The Chromium executable, or a `ChromiumMissing` error that says how to install it."
    c = find_chromium()
    if c:
        return c
    raise ChromiumMissing("headless Chromium not found (looked for $ALIRET_CHROMIUM, " + ', '.join(_CHROMIUM_NAMES)
                          + "): install Debian's chromium package (`sudo apt-get install -y chromium`) "
                          "or set ALIRET_CHROMIUM=/path/to/chromium")


class _QuietHandler(SimpleHTTPRequestHandler):
    "A static file handler that logs nothing."

    def log_message(self, *a):
        "Log nothing."
        pass


@contextmanager
def serve_dir(site_dir: str | Path,  # folder to serve
              ):
    "Serve a folder on 127.0.0.1 at a free port in a background thread; yields the base URL."
    srv = ThreadingHTTPServer(('127.0.0.1', 0), partial(_QuietHandler, directory=str(site_dir)))
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f'http://127.0.0.1:{srv.server_address[1]}/'
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(5)


def _chromium_args(chromium: str, profile: str) -> list[str]:
    "Headless Chromium's command line: a fresh profile, and no host but 127.0.0.1 resolves."
    return [chromium, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-extensions',
            '--disable-dev-shm-usage', '--mute-audio', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
            f'--user-data-dir={profile}']


def dump_dom(url: str,  # the page to load
             chromium: str | None = None,  # executable (default: `need_chromium()`)
             timeout: float = 60,  # seconds
             budget_ms: int = 5000,  # virtual time the page may use for scripts before the DOM is taken
             ) -> tuple[int, str, str]:
    "Load `url` in headless Chromium; return (exit code, DOM after load, stderr tail)."
    chromium = chromium or need_chromium()
    with tempfile.TemporaryDirectory(prefix='aliret-chromium-') as prof:
        args = _chromium_args(chromium, prof) + [f'--virtual-time-budget={budget_ms}', '--dump-dom', url]
        try:
            r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return 124, '', f'chromium took longer than {timeout:.0f} s'
    return r.returncode, r.stdout, r.stderr[-2000:]


def screenshot(url: str,  # the page
               path: str | Path,  # PNG to write
               chromium: str | None = None,  # executable
               size: str = '1280,1600',  # window width,height
               ) -> Path | None:
    "Save a headless-Chromium screenshot of a page; None if Chromium could not."
    chromium = chromium or need_chromium()
    path = Path(path).resolve()
    with tempfile.TemporaryDirectory(prefix='aliret-chromium-') as prof:
        shot = [f'--window-size={size}', '--hide-scrollbars', f'--screenshot={path}', url]
        args = _chromium_args(chromium, prof) + shot
        try:
            subprocess.run(args, capture_output=True, timeout=90)
        except subprocess.TimeoutExpired:
            return None
    return path if path.exists() and path.stat().st_size else None

# ---------------------------------------------------------------- what the home page must cover

HOME_TOPICS = {
    'what aliret is': [r'AliProducts', r'retriev', r'notebook'],
    'the two commands': [r'make demo', r'make test'],
    'real AliProducts data': [r'data_dir', r'train\.json', r'test_captions\.json'],
    'pretrained BLIP/CLIP weights': [r'BLIP', r'CLIP', r'\bmodel: |\bpretrained: ', r'local'],
    'running on GPUs': [r'GPU', r'-p\s+nproc\s+\d|--nproc|nproc_per_node|08_train\.ipynb\S*\s.*-p\s+config\s'],
}


def home_problems(text: str,  # the home page's text
                  notebooks: list[str],  # notebooks that exist (relative paths)
                  ) -> list[str]:
    "What the home page fails to cover: missing topics (with the missing patterns) and notebooks missing from its map."
    bad = []
    for topic, pats in HOME_TOPICS.items():
        missing = [p for p in pats if not re.search(p, text, re.I)]
        if missing:
            bad.append(f'home page lacks {topic} (no match for: {" ; ".join(missing)})')
    miss = [Path(n).stem for n in notebooks if Path(n).stem != 'index' and Path(n).stem not in text]
    if miss:
        bad.append('notebook map lacks ' + ', '.join(miss))
    return bad

# ---------------------------------------------------------------- the check


def _title_problems(p: Page | None, facts: dict) -> list[str]:
    "A missing or wrong `<title>`, and a header that is not the notebook's title."
    probs = []
    want = p.title if p else facts['h1']
    if not facts['title']:
        probs.append('no <title>')
    elif want and not facts['title'].startswith(want):
        probs.append(f'<title> is {facts["title"]!r}, expected {want!r}')
    if p is not None and facts['h1'] != p.title:
        probs.append(f'header is {facts["h1"]!r}, expected {p.title!r}')
    return probs


def _nav_problems(page: str, facts: dict, pages: list[Page]) -> list[str]:
    "Pages the sidebar does not link (or no sidebar links at all, on a site without a manifest)."
    targets = [os.path.normpath(os.path.join(os.path.dirname(page), h)).replace(os.sep, '/') for h in facts['nav']]
    if not pages:
        return [] if facts['nav'] else ['no sidebar links']
    miss = [q.page for q in pages if q.page not in targets]
    return ['sidebar lacks ' + ', '.join(miss)] if miss else []


def _content_problems(p: Page, facts: dict) -> list[str]:
    "API docs and figures the page lacks, compared with its source notebook."
    probs = []
    miss = [n for n in p.api_names if n not in facts['api_names']]
    if miss:
        probs.append('API docs missing for ' + ', '.join(miss))
    if facts['figures'] < p.figures:
        probs.append(f'{facts["figures"]} figures shown, the notebook saved {p.figures}')
    return probs


def _warnings(p: Page) -> list[str]:
    "Warnings about a page: unsaved plots, mixed cells nbdev executed, anything else nbdev warned about."
    warns = []
    if p.unsaved_plots:
        warns.append(f'{p.unsaved_plots} plotting cell(s) saved no figure (not on the site)')
    mixed = [w for w in p.proc_warnings if 'imports and other code' in w]
    if mixed:
        warns.append(f'nbdev executed {len(mixed)} cell(s) mixing imports and code at docs time')
    other = [w.splitlines()[0] for w in p.proc_warnings if w not in mixed]
    if other:
        warns.append('nbdev warned: ' + ' | '.join(other))
    return warns


def _browser_problems(facts: dict, broken: list[str]) -> list[str]:
    "What the browser and the link check found: undecoded images, broken links, network loads, script errors."
    chk = facts['check']
    probs = []
    if int(chk.get('broken-images') or 0):
        probs.append(f'{chk["broken-images"]} image(s) did not decode')
    if broken:
        probs.append('broken links: ' + ', '.join(broken))
    ext = [u for u in (chk.get('external') or '').split() if u] + facts['external_refs']
    if ext:
        probs.append('loads from the network: ' + ', '.join(dict.fromkeys(ext)))
    if chk.get('errors'):
        probs.append(f'script errors: {chk["errors"]}')
    return probs


def _load_problems(p: Page | None, rc: int, err: str, loads: bool) -> list[str]:
    "A page that did not load, and a notebook nbdev could not process."
    probs = []
    if not loads:
        why = ', no load event' if rc == 0 else ''
        probs.append(f'did not load (chromium exit {rc}{why}): {err.strip()[-200:]}')
    if p is not None and p.proc_error:
        probs.append(f'nbdev processing failed: {p.proc_error}')
    return probs


def _check_page(p: Page | None, page: str, rc: int, err: str, facts: dict, pages: list[Page], site: Path, ids_of,
                strict: bool, notebooks) -> dict:
    "One row of the report: what the page shows, and its problems and warnings."
    loads = rc == 0 and facts['check'].get('loaded') == '1'
    probs = _load_problems(p, rc, err, loads) + _title_problems(p, facts) + _nav_problems(page, facts, pages)
    warns = []
    if p is not None and not p.proc_error:
        probs += _content_problems(p, facts)
        (probs if strict else warns).extend(_warnings(p))
    broken = link_problems(page, facts, site, ids_of)
    probs += _browser_problems(facts, broken)
    if page == 'index.html' and notebooks is not None:
        probs += home_problems(facts['text'], notebooks)
    return dict(page=page, notebook=p.notebook if p else '', loads=loads, title=facts['h1'] or facts['title'],
                n_api_docs=facts['api_docs'], n_api_expected=len(p.api_names) if p else None,
                n_figures=facts['figures'], broken_links=len(broken), ok=not probs, problems='; '.join(probs),
                warnings='; '.join(warns))


def _site_folder(site_dir: str | Path) -> Path:
    "The site folder (relative: under the project root); an error when it does not exist."
    site = Path(site_dir)
    site = (site if site.is_absolute() else project_root()/site).resolve()
    if not site.is_dir():
        raise FileNotFoundError(f'{site} does not exist: build it first with build_offline_docs() or `{PROG}`')
    return site


def _site_files(site: Path, pages: list[Page]) -> list[str]:
    "The pages to check: the manifest's in reading order, then any other HTML file of the folder."
    known = {p.page for p in pages}
    others = sorted(f.relative_to(site).as_posix() for f in site.rglob('*.html'))
    files = [p.page for p in pages] + [f for f in others if f not in known]
    if not files:
        raise FileNotFoundError(f'{site} has no HTML pages')
    return files


def _load_all(site: Path, files: list[str], chromium: str, timeout: float, screenshot_home: bool) -> dict:
    "Load every page in Chromium from a local server: page -> (exit code, DOM, stderr tail)."
    got = {}
    with serve_dir(site) as base:
        for f in files:
            exists = (site/f).exists()
            got[f] = dump_dom(urljoin(base, f), chromium, timeout=timeout) if exists else (1, '', 'no such file')
        if screenshot_home and 'index.html' in files:
            screenshot(urljoin(base, 'index.html'), site/'home.png', chromium)
    return got


def _failure(df: pd.DataFrame, site: Path) -> DocsCheckError:
    "The error listing the failing pages of a report."
    bad = df[~df.ok]
    lines = '\n'.join(f'  {r.page}: {r.problems}' for r in bad.itertuples())
    return DocsCheckError(f'docs check failed on {len(bad)} of {len(df)} pages in {site}:\n{lines}', df)


def check_docs_in_chromium(site_dir: str | Path = '_site_offline',  # a site folder (relative: under the project root)
                           strict: bool = False,  # warnings (unsaved plots, executed mixed cells) fail pages too
                           screenshot_home: bool = True,  # save `home.png` (the home page in Chromium) into the site
                           raise_on_fail: bool = True,  # raise `DocsCheckError` listing failing pages
                           timeout: float = 60,  # seconds per page
                           ) -> pd.DataFrame:
    "Load every page of the site in headless Chromium and check it; return the per-page report."
    chromium = need_chromium()
    site = _site_folder(site_dir)
    _, pages = read_manifest(site)
    by_page = {p.page: p for p in pages}
    files = _site_files(site, pages)
    notebooks = [p.notebook for p in pages] if pages else None
    loaded = _load_all(site, files, chromium, timeout, screenshot_home)
    facts = {f: page_facts(loaded[f][1] or '') for f in files}
    ids_of = lambda t: facts[t]['ids'] if t in facts else page_facts((site/t).read_text(errors='replace'))['ids']
    rows = [_check_page(by_page.get(f), f, loaded[f][0], loaded[f][2], facts[f], pages, site, ids_of, strict, notebooks)
            for f in files]
    df = pd.DataFrame(rows)
    if raise_on_fail and not df.ok.all():
        raise _failure(df, site)
    return df

# ---------------------------------------------------------------- figures from a real run


def _shrink_png(b64: str, max_kb: int) -> tuple[str, bool]:
    "Shrink a base64 PNG to 70% a side until it is at most `max_kb` (Pillow); return it and whether it changed."
    from PIL import Image
    raw = base64.b64decode(b64)
    if len(raw) <= max_kb * 1024:
        return b64, False
    im = Image.open(io.BytesIO(raw))
    while True:
        im = im.resize((max(1, im.width * 7 // 10), max(1, im.height * 7 // 10)), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, 'PNG', optimize=True)
        if buf.tell() <= max_kb * 1024 or im.width < 64:
            return base64.b64encode(buf.getvalue()).decode(), True


def _image_outputs(cell) -> list:
    "The outputs of an executed cell that carry an image, reduced to the image and its text form."
    outs = []
    for o in cell.get('outputs', []):
        data = {k: v for k, v in o.get('data', {}).items() if k in _IMG_MIMES or k == 'text/plain'}
        if any(k in _IMG_MIMES for k in data):
            outs.append(nbformat.v4.new_output('display_data', data=data))
    return outs


def _shrink_outputs(outs: list, max_kb: int) -> int:
    "Shrink the PNGs of these outputs in place to at most `max_kb`; return how many changed."
    shrunk = 0
    for o in outs:
        if 'image/png' in o['data']:
            o['data']['image/png'], changed = _shrink_png(o['data']['image/png'], max_kb)
            shrunk += changed
    return shrunk


def _store_status(tgt, c) -> str:
    "Whether a run's figure cell can go into its source cell: the same id and the same code."
    if tgt is None:
        return 'skipped: no such cell'
    return 'stored' if tgt.source == c.source else 'skipped: cell changed since the run'


def _store_notebook(ex: Path, enb, src_path: Path, max_kb: int, dry_run: bool) -> list[dict]:
    "Copy the figures of one executed notebook into its source notebook; one row per figure cell."
    snb = nbformat.read(src_path, as_version=4)
    changed = False
    by_id = {c.get('id'): c for c in snb.cells if c.cell_type == 'code'}
    rows = []
    for c in enb.cells:
        outs = _image_outputs(c) if c.cell_type == 'code' else []
        if not outs:
            continue
        tgt = by_id.get(c.get('id'))
        status = _store_status(tgt, c)
        shrunk = _shrink_outputs(outs, max_kb) if status == 'stored' else 0
        if status == 'stored':
            changed |= tgt.get('outputs') != outs
            tgt['outputs'] = outs
        rows.append(dict(notebook=src_path.name, step=ex.parent.name, cell=c.get('id'), images=len(outs), shrunk=shrunk,
                         status=status))
    if changed and not dry_run:
        nbformat.write(snb, src_path)
    return rows


def store_figures(run: str | Path,  # a main-job run folder, e.g. outputs/demo
                  max_kb: int = 150,  # largest stored PNG (bigger ones are shrunk)
                  dry_run: bool = False,  # report only, write nothing
                  nbs_path: str | Path | None = None,  # the source notebooks (default: settings.ini's nbs_path)
                  ) -> pd.DataFrame:
    "Copy the figures of a run's executed notebooks into the matching cells of their source notebooks; a row a cell."
    if nbs_path is None:
        from nbdev.config import get_config
        nbs_path = get_config().nbs_path
    rows = []
    done = set()
    for ex in sorted(Path(run).glob('*/*.ipynb')):
        enb = nbformat.read(ex, as_version=4)
        name = Path(enb.metadata.get('papermill', {}).get('input_path', '')).name   # the run may be another clone's
        src_path = Path(nbs_path)/name
        if not name or not src_path.is_file() or src_path.resolve() in done:
            continue
        done.add(src_path.resolve())
        rows += _store_notebook(ex, enb, src_path, max_kb, dry_run)
    return pd.DataFrame(rows, columns=['notebook', 'step', 'cell', 'images', 'shrunk', 'status'])

# ---------------------------------------------------------------- lint and command line


def lint_notebooks(nbs_path: str | Path | None = None,  # notebooks folder (default: settings.ini's nbs_path)
                   ) -> int:
    "Print every cell nbdev would execute at docs time because it mixes imports with code; return how many."
    from nbdev.config import get_config
    nbs_path = Path(nbs_path or get_config().nbs_path)
    n = 0
    for f in list_notebooks(nbs_path):
        for i, line in mixed_import_cells(nbformat.read(f, as_version=4)):
            print(f'{f.relative_to(nbs_path)} cell {i}: {line}')
            n += 1
    if n:
        print(f'{n} cell(s) mix imports with other code: nbdev runs them when it builds the docs; '
              'move their imports into the imports cell')
    else:
        print('no cell mixes imports with other code')
    return n


def _parser() -> argparse.ArgumentParser:
    "The command line's options."
    ap = argparse.ArgumentParser(prog=PROG, description='Build the docs offline (nbdev processing + nbconvert) '
                                 'and check every page in headless Chromium.')
    ap.add_argument('--out', default='_site_offline', help='site folder, relative to the project root')
    ap.add_argument('--force', action='store_true', help='re-process every notebook, ignoring the _proc/ cache')
    ap.add_argument('--workers', type=int, default=2, help='notebooks processed at once (default: 2)')
    ap.add_argument('--strict', action='store_true',
                    help='fail pages on warnings too (plots without saved figures, executed mixed cells)')
    ap.add_argument('--no-build', action='store_true', help='only check an existing site folder')
    ap.add_argument('--no-screenshot', action='store_true', help='do not save home.png')
    ap.add_argument('--lint', action='store_true',
                    help='only list the cells nbdev executes at docs time because they mix imports with code (fast)')
    ap.add_argument('--store-figures', metavar='RUN',
                    help="copy the figures of a main-job run folder (e.g. outputs/demo) into the notebooks' cells")
    return ap


def _store_figures_cli(run: str):
    "`--store-figures`: copy a run's figures into the notebooks and print what was done."
    if not Path(run).is_dir():
        sys.exit(f'no run folder {run}: run `make demo` first (it writes outputs/demo)')
    rep = store_figures(run)
    print(rep.to_string(index=False) if len(rep) else f'no executed notebooks with figures under {run}')


def _print_report(df: pd.DataFrame, site, seconds: float):
    "The per-page table, then every problem and warning, then the count of pages ok."
    cols = ['page', 'loads', 'title', 'n_api_docs', 'n_api_expected', 'n_figures', 'broken_links', 'ok']
    with pd.option_context('display.width', 200, 'display.max_columns', 20):
        print(df[cols].to_string(index=False))
    for r in df.itertuples():
        if r.problems:
            print(f'FAIL {r.page}: {r.problems}')
        if r.warnings:
            print(f'warn {r.page}: {r.warnings}')
    print(f'{int(df.ok.sum())} of {len(df)} pages ok in {seconds:.0f} s; site: {site}')


def _build_and_check(a) -> tuple[Path, pd.DataFrame]:
    "Build the site (unless `--no-build`) and check it; exit 2 when Chromium is missing."
    try:
        need_chromium()
        site = Path(a.out) if a.no_build else build_offline_docs(a.out, force=a.force, n_workers=a.workers)
        return site, check_docs_in_chromium(site, strict=a.strict, screenshot_home=not a.no_screenshot,
                                            raise_on_fail=False)
    except ChromiumMissing as e:
        print(f'FAILED: {e}', file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None):
    "Command-line entry point: build the offline docs and check them in headless Chromium."
    a = _parser().parse_args(argv)
    if a.lint:
        sys.exit(1 if lint_notebooks() else 0)
    if a.store_figures:
        return _store_figures_cli(a.store_figures)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    t0 = time.time()
    site, df = _build_and_check(a)
    _print_report(df, site, time.time() - t0)
    if not df.ok.all():
        sys.exit(1)


if __name__ == '__main__':
    main()
