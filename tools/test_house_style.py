"The house granularity, kept (`python -m pytest -q tools/`): export cells, library line width, one statement per line."
import ast
import glob
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_CELL_LINES = 40  # an export cell's lines, its `#| export` included
FIELD_LISTS = {'class Config:'}  # dataclasses whose cell is one field per line: they grow with the options
MAX_COLUMNS = 120


def export_cells():
    "(notebook, first definition line, line count) of every export cell under nbs/."
    for f in sorted(glob.glob(str(ROOT/'nbs'/'*.ipynb'))):
        for c in json.loads(Path(f).read_text(encoding='utf-8'))['cells']:
            src = ''.join(c['source'])
            if c['cell_type'] == 'code' and src.startswith('#| export'):
                lines = src.splitlines()
                yield Path(f).name, next((x for x in lines[1:] if x.strip() and not x.startswith('@')), ''), len(lines)


def library_files():
    "The exported modules (nbdev's own index left out)."
    return [p for p in sorted((ROOT/'aliret').glob('*.py')) if p.name != '_modidx.py']


def test_export_cells_at_house_size():
    "No export cell over MAX_CELL_LINES, except the field lists named in FIELD_LISTS."
    long = [(nb, head, n) for nb, head, n in export_cells()
            if n > MAX_CELL_LINES and not any(head.startswith(x) for x in FIELD_LISTS)]
    assert not long, f'export cells over {MAX_CELL_LINES} lines (split them, one definition a cell): {long}'


def test_library_lines_within_columns():
    "Library lines fit MAX_COLUMNS; nbdev's generated `__all__` line is its own."
    wide = [f'{p.name}:{i}' for p in library_files()
            for i, line in enumerate(p.read_text(encoding='utf-8').splitlines(), 1)
            if len(line) > MAX_COLUMNS and not line.startswith('__all__')]
    assert not wide, f'library lines over {MAX_COLUMNS} columns (wrap them in the notebook): {wide}'


def joined_statements(source: str) -> list[int]:
    "Line numbers where a statement starts on the same line as the previous statement of its block (`a; b`)."
    found = []
    for node in ast.walk(ast.parse(source)):
        for field in ('body', 'orelse', 'finalbody', 'handlers'):
            block = getattr(node, field, None)
            if isinstance(block, list):
                found += [b.lineno for a, b in zip(block, block[1:]) if b.lineno == a.end_lineno]
    return sorted(found)


def test_joined_statements_found():
    "The checker sees `a; b`, and not a one-line `if x: y` or a statement spread over lines."
    assert joined_statements('a = 1; b = 2\nif a: b = 3\nc = (1,\n     2)\n') == [1]
    assert joined_statements('def f():\n    x = 1; return x\n') == [2]


def test_library_one_statement_per_line():
    "No `;`-joined statements in library code."
    joined = [f'{p.name}:{n}' for p in library_files() for n in joined_statements(p.read_text(encoding='utf-8'))]
    assert not joined, f'statements joined with ";" (one statement per line): {joined}'
