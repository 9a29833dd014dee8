"""Tables that fit the terminal: every cell wraps (a word longer than its column folds, never an
ellipsis), and below `WIDE` columns only the essential ones stay in the table while the others
follow it, one line per row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDE = 120


@dataclass(frozen=True)
class Column:
    name: str
    essential: bool = True  # kept in the table at any width
    whole: bool = False  # its values are never broken (names, outcomes): it gets their full width


def fitted(console: Any, columns: list[Column], rows: list[list[str]], title: str | None = None) -> None:
    """Print `rows` under `columns` as wide as `console` allows (rich markup allowed in cells)."""
    from rich.markup import escape, render
    from rich.table import Table

    wide = console.width >= WIDE
    shown = [n for n, c in enumerate(columns) if wide or c.essential]
    table = Table(
        title=title,
        title_justify="left",
        box=None,
        header_style="bold underline",
        collapse_padding=True,
        pad_edge=False,
    )
    whole = {
        n: max([len(columns[n].name), *(len(render(row[n]).plain) for row in rows)]) for n in shown if columns[n].whole
    }
    # Whole columns keep their width while they fit; the longest give way (and fold) when not.
    while whole and sum(whole.values()) + 2 * len(shown) + 8 * (len(shown) - len(whole)) > console.width:
        del whole[max(whole, key=lambda n: whole[n])]
    for n in shown:
        table.add_column(columns[n].name, overflow="fold", min_width=whole.get(n))
    for row in rows:
        table.add_row(*(row[n] for n in shown))
    console.print(table)
    hidden = [n for n in range(len(columns)) if n not in shown]
    for row in rows:
        extra = [f"{columns[n].name}: {render(row[n]).plain}" for n in hidden if render(row[n]).plain]
        if extra:
            console.print(f"{escape(render(row[0]).plain)}: {escape('; '.join(extra))}", highlight=False)
