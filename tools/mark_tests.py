#!/usr/bin/env python
"""Mark the test cells of aliret notebooks with a first line `#| test` (idempotent).

A code cell is marked when it is above the `## Run it` heading (or anywhere, in a notebook without a
`parameters` cell) and is neither an export cell nor a setup cell; the rule is `aliret.testing.cell_kind`.
Usage: python tools/mark_tests.py nbs/01_eda.ipynb [...]   (no arguments: every numbered notebook in nbs/)
Then run nbdev_clean; check with `aliret.testing.check_notebooks('nbs')`.
"""
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aliret.testing import RUN_IT, TEST_MARK, cell_kind

def _src(c): return ''.join(c['source']) if isinstance(c['source'], list) else c['source']

def mark(path: Path) -> int:
    "Mark the test cells of one notebook in place; return how many were marked now."
    nb = json.loads(path.read_text())
    cells = nb['cells']
    params = [i for i, c in enumerate(cells) if 'parameters' in c.get('metadata', {}).get('tags', [])]
    heads = [i for i, c in enumerate(cells) if c['cell_type'] == 'markdown' and RUN_IT.search(_src(c))]
    end = len(cells)
    if params:
        before = [h for h in heads if h < params[0]]
        if not before: sys.exit(f'{path}: add a "## Run it" heading above the parameters cell first')
        end = before[-1]
    n = 0
    for c in cells[:end]:
        if cell_kind(c) != 'job': continue
        c['source'] = f'{TEST_MARK}\n{_src(c)}'
        n += 1
    if n: path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return n

if __name__ == '__main__':
    paths = [Path(a) for a in sys.argv[1:]] or sorted(Path('nbs').glob('[0-9]*.ipynb'))
    for p in paths: print(f'{p}: marked {mark(p)} cell(s)')
