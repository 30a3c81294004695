"""Markdown tables, written one way: run reports, benchmark files, seed summaries and printed comparisons.

Callers format each cell (they know how many digits a figure deserves); this module only lays them out, so
every table in the project has the same spacing and committed reports stay byte-stable. An empty cell prints
as ``| |``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Column alignment codes: "l" text (left), "r" figures (right).
ALIGNMENTS = {"l": "---", "r": "---:"}


def markdown_row(cells: Sequence[object]) -> str:
    """``| a | b |``; an empty cell prints as ``| |``."""
    return "|" + "".join(f" {cell} |" if str(cell) else " |" for cell in cells)


def separator(align: str) -> str:
    """The line under the header: one alignment code per column, e.g. ``"lrr"`` -> ``|---|---:|---:|``."""
    unknown = sorted(set(align) - set(ALIGNMENTS))
    if unknown:
        raise ValueError(f"unknown column alignment {unknown}: use 'l' (text) or 'r' (figures) per column")
    return "|" + "|".join(ALIGNMENTS[code] for code in align) + "|"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str) -> str:
    """Header, separator and one line per row, joined by newlines (no trailing newline)."""
    if len(align) != len(header):
        raise ValueError(f"{len(header)} columns but {len(align)} alignment codes ({align!r}): give one per column")
    lines = [markdown_row(header), separator(align)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} cells but the table {len(header)} columns: {list(row)}")
        lines.append(markdown_row(row))
    return "\n".join(lines)
