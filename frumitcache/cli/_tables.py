"""Tables and key/value blocks: rich on a terminal, tab-separated lines when piped."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from frumitcache.cli._output import is_terminal


def show_pairs(title: str, pairs: Sequence[tuple[str, str]], stream: TextIO = sys.stdout) -> None:
    """``key: value`` lines (a two-column table on a terminal)."""
    if is_terminal(stream):
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, show_header=False)
        for key, value in pairs:
            table.add_row(key, value)
        Console(file=stream).print(table)
        return
    for key, value in pairs:
        stream.write(f"{key}: {value}\n")


def show_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    stream: TextIO = sys.stdout,
) -> None:
    """A table; piped, a header line then one tab-separated line per row (easy to ``cut``)."""
    if is_terminal(stream):
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns, title=title)
        for row in rows:
            table.add_row(*row)
        Console(file=stream).print(table)
        return
    stream.write("\t".join(columns) + "\n")
    for row in rows:
        stream.write("\t".join(row) + "\n")


def size_text(n: int | None) -> str:
    from frumitcache.cli._output import human_bytes

    return "unknown" if n is None else human_bytes(n)
