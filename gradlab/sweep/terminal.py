"""How gradlab's text fits a terminal: the width to draw at, tables that fit it, prose wrapped to it.

Output to a pipe or a file is drawn MIN_WIDTH (80) columns wide, in plain text, so that it is the same
everywhere; on a terminal it is drawn at the terminal's width, MIN_WIDTH at least, and tables may colour
their headers and verdicts (PASS green, FAIL red) unless NO_COLOR is set. A table never cuts a
word (a number, a run id): its text columns wrap between words, its headers wrap at spaces, underscores and
slashes, and when its columns do not fit side by side they are drawn in blocks, each repeating the key columns.
Tables are drawn by rich (rich.table.Table on a rich.console.Console writing to a string).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

MIN_WIDTH = 80

# A header rule of dashes under each column and nothing else: plain ASCII, the same on every terminal.
RULE = box.Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default stdout) is a terminal."""
    stream = stream if stream is not None else sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def colour(stream: TextIO | None = None) -> bool:
    """Whether to colour tables: `stream` (default stdout) is a terminal and NO_COLOR is not set."""
    return is_terminal(stream) and not os.environ.get("NO_COLOR")


def width(stream: TextIO | None = None) -> int:
    """Columns to draw at: max(MIN_WIDTH, the terminal's columns, COLUMNS first) on a terminal, MIN_WIDTH when
    `stream` (default stdout) is piped."""
    if not is_terminal(stream):
        return MIN_WIDTH
    return max(MIN_WIDTH, shutil.get_terminal_size((MIN_WIDTH, 24)).columns)


def wrap(text: str, width: int = MIN_WIDTH, indent: str = "", first: str = "") -> str:
    """text filled to `width`, the first line prefixed by `first` and the others indented by `indent`; words (a
    number, a run id, a path) are never cut, so one longer than the width stands alone on its line."""
    return textwrap.fill(text, width=width, initial_indent=first, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False)  # fmt: skip


@dataclass(frozen=True)
class Col:
    """A table column: its header, whether its cells are numbers (right-aligned), whether they are text
    that may wrap between words (the others keep each cell on one line), and the rich style of given cell
    texts when the table is coloured (e.g. (("PASS", "green"), ("FAIL", "bold red")))."""

    header: str
    number: bool = False
    wrap: bool = False
    styles: tuple[tuple[str, str], ...] = ()


def table(cols: Sequence[Col], rows: Sequence[Sequence[object]], width: int = MIN_WIDTH, key: int = 0, gap: int = 2,
          colour: bool = False) -> str:  # fmt: skip
    """rows (one str()-able cell per column) as a plain-text table at most `width` columns wide (unless one
    column alone is wider), `gap` spaces between columns, a rule of dashes under the headers. When the columns'
    narrowest widths (a wrapping column's longest word, another's longest cell) do not fit side by side, the
    columns are drawn in blocks, one under the other, each starting with the first `key` columns. Headers
    break only when the columns would not fit side by side with them whole. colour: bold headers and the
    columns' styles, as terminal escape codes (the layout is the same as without)."""
    cells = [[str(v) for v in row] for row in rows]
    least = [_least(c, [row[i] for row in cells]) for i, c in enumerate(cols)]
    whole = [n if c.wrap else max(n, len(c.header)) for n, c in zip(least, cols)]  # headers unbroken
    if sum(whole) + gap * (len(cols) - 1) <= width:
        least = whole
    blocks = _blocks(least, width, key, gap)
    return "\n\n".join(_render(cols, cells, least, block, width, gap, colour) for block in blocks)


def _least(col: Col, cells: list[str]) -> int:
    """The narrowest a column can be: its longest word (wrapping) or cell (not), and its header's longest piece."""
    if col.wrap:
        longest = max((len(word) for cell in cells for word in cell.split()), default=0)
    else:
        longest = max((len(cell) for cell in cells), default=0)
    return max(longest, max(len(p) for p in _pieces(col.header)))


def _pieces(header: str) -> list[str]:
    """A header's unbreakable pieces: split after spaces, underscores and slashes ("clip_mode" -> "clip_", "mode")."""
    return [p for p in re.split(r"(?<=[ _/])", header) if p.strip()] or [header]


def _header(header: str, width: int) -> str:
    """A header broken into lines of at most `width` (or its longest piece) at spaces, underscores and slashes."""
    lines = [""]
    for piece in _pieces(header):
        if lines[-1] and len((lines[-1] + piece).rstrip()) > width:
            lines.append("")
        lines[-1] += piece
    return "\n".join(line.rstrip() for line in lines)


def _blocks(least: list[int], width: int, key: int, gap: int) -> list[list[int]]:
    """Column indices per block: as many columns as fit in `width` after the key columns, in order."""
    keys = list(range(min(key, len(least))))
    used = sum(least[i] for i in keys) + gap * max(0, len(keys) - 1)
    blocks, current, size = [], [], used
    for i in range(len(keys), len(least)):
        extra = least[i] + (gap if keys or current else 0)
        if current and size + extra > width:
            blocks.append(keys + current)
            current, size = [], used
            extra = least[i] + (gap if keys else 0)
        current.append(i)
        size += extra
    return [*blocks, keys + current] if current or not blocks else blocks


def _render(cols: Sequence[Col], cells: list[list[str]], least: list[int], block: list[int], width: int, gap: int,
            colour: bool) -> str:  # fmt: skip
    """One block of columns, drawn by rich at `width`, trailing spaces removed."""
    grid = Table(box=RULE, show_edge=False, pad_edge=False, padding=(0, gap - 1, 0, 0), header_style="", expand=False)
    for i in block:
        col = cols[i]
        header = Text(col.header if col.wrap else _header(col.header, least[i]), style="bold" if colour else "")
        grid.add_column(header, justify="right" if col.number else "left", no_wrap=not col.wrap, min_width=least[i], overflow="fold")
    for row in cells:
        grid.add_row(*(Text(row[i], style=dict(cols[i].styles).get(row[i], "") if colour else "") for i in block))
    return render(grid, width, colour)


def render(renderable: object, width: int = MIN_WIDTH, colour: bool = False) -> str:
    """A rich renderable as text `width` columns wide, trailing spaces removed: plain (no control codes), or
    with colour's escape codes."""
    out = io.StringIO()
    console = Console(file=out, width=width, color_system="standard" if colour else None, force_terminal=colour,
                      highlight=False, emoji=False, soft_wrap=False)  # fmt: skip
    console.print(renderable)
    return "\n".join(line.rstrip() for line in out.getvalue().rstrip("\n").splitlines())
