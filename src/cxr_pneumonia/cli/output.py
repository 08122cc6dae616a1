"""One output convention: results on standard output, as a table or JSON; errors on stderr.

``--format table`` draws a `rich` table on a terminal and plain aligned
columns (a header, a rule of dashes, one line per row) when standard output is
a file or a pipe, so scripts can read it; ``--format json`` prints JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from cxr_pneumonia.cli.options import option

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "error",
    "format_option",
    "is_terminal",
    "plain_table",
    "write_json",
    "write_report",
    "write_table",
]

EXIT_OK = 0
"""Everything asked for was done."""
EXIT_FAILED = 1
"""Some inputs failed, or the operation failed."""
EXIT_USAGE = 2
"""The command line was wrong (an unknown option, a bad value, a missing argument)."""

PROG = "cxr-pneumonia"
"""The program name, as errors and provenance records spell it."""

F = TypeVar("F", bound=Callable[..., Any])


def format_option(*choices: str, default: str = "table") -> Callable[[F], F]:
    """The ``--format`` option of a command that prints results.

    Args:
        *choices: Formats offered; default ``table`` and ``json``.
        default: The default format.

    Returns:
        The option decorator.
    """
    offered = choices or ("table", "json")
    text = {
        "table": "table: a table (plain columns when piped)",
        "json": "json: machine-readable JSON",
        "csv": "csv: comma-separated values",
        "markdown": "markdown: the report's Markdown",
    }
    return option(
        "--format",
        "output_format",
        type=click.Choice(offered),
        default=default,
        help="; ".join(text.get(c, c) for c in offered),
    )


def is_terminal() -> bool:
    """Whether standard output is an interactive terminal.

    Returns:
        ``True`` on a terminal, ``False`` for a file or a pipe.
    """
    return sys.stdout.isatty()


def write_json(value: Any) -> None:
    """Print ``value`` as indented JSON on standard output.

    Args:
        value: Anything `json.dumps` takes (other objects are written as text).
    """
    click.echo(json.dumps(value, indent=2, default=str))


def write_report(title: str, report: Any, plain: str) -> None:
    """A titled report on standard output: rich tables on a terminal, ``plain`` otherwise.

    Args:
        title: The line above the report.
        report: An object rich can render (an evaluation or shift report).
        plain: Its text for files and pipes.
    """
    if is_terminal():
        from rich.console import Console

        console = Console()
        console.print(f"{title}\n")
        console.print(report)
    else:
        click.echo(f"{title}\n")
        click.echo(plain)


def write_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str = "") -> None:
    """Print a table: `rich` on a terminal, plain columns otherwise.

    Args:
        header: Column names.
        rows: Rows of cells (converted with ``str``).
        title: A title shown above the table on a terminal.
    """
    cells = [[str(cell) for cell in row] for row in rows]
    if is_terminal():
        from rich.console import Console
        from rich.table import Table

        table = Table(*header, title=title or None, title_justify="left")
        for row in cells:
            table.add_row(*row)
        Console().print(table)
        return
    click.echo(plain_table([list(header), *cells]))


def plain_table(rows: list[list[str]]) -> str:
    """Aligned columns: the header, a rule of dashes, then the rows.

    Args:
        rows: The header row first, then the rows.

    Returns:
        The text, without a final newline.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def error(message: str, command: str | None = None) -> None:
    """Print ``cxr-pneumonia[ COMMAND]: error: MESSAGE`` on standard error.

    Args:
        message: What went wrong, and the fix.
        command: The subcommand, when the error is about its usage.
    """
    prefix = f"{PROG} {command}" if command else PROG
    click.echo(f"{prefix}: error: {message}", err=True)
