"""The renderings of a shift report: Markdown, plain text, a ``rich`` table, and
the Markdown table comparing several models.

[`ShiftReport`][cxr_pneumonia.robustness.ShiftReport]'s ``to_markdown``,
``to_text``, ``__rich__`` and ``__repr__``, and
[`compare_shift_reports`][cxr_pneumonia.robustness.compare_shift_reports],
call these functions; [`cxr_pneumonia.robustness`][cxr_pneumonia.robustness]
is the public entry point and computes the reports.

This module does not import ``robustness`` (which imports it): it reads a
report through the attributes named by `ReportView`, and the report passes
its metric names and the baseline row's label. ``rich`` is imported only by
`rich_renderable`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = [
    "ReportView",
    "RowView",
    "comparison_table",
    "format_value",
    "headline",
    "markdown",
    "plain_text",
    "rich_renderable",
]

_TITLES = {
    "roc_auc": "ROC AUC",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "accuracy": "Accuracy",
}


class RowView(Protocol):
    """What rendering reads of a row (a ``ShiftResult``); metrics are read by name."""

    @property
    def shift(self) -> str: ...
    @property
    def strength(self) -> float: ...
    @property
    def label(self) -> str: ...


class ReportView(Protocol):
    """What rendering reads of a report (a ``ShiftReport``)."""

    @property
    def baseline(self) -> RowView: ...
    @property
    def rows(self) -> tuple[RowView, ...]: ...
    @property
    def threshold(self) -> float: ...
    @property
    def split(self) -> str | None: ...
    @property
    def source(self) -> str | None: ...
    @property
    def n(self) -> int: ...
    @property
    def worst_case(self) -> Mapping[str, RowView]: ...
    def worst(self, metric: str = ...) -> RowView: ...
    def mean(self, metric: str = ...) -> float: ...


def format_value(value: float, *, signed: bool = False) -> str:
    """A metric with four decimals (``"n/a"`` for NaN), with its sign when ``signed``."""
    if math.isnan(value):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _cell(value: float, baseline: float | None, *, bold: bool) -> str:
    text = format_value(value)
    if bold:
        text = f"**{text}**"
    if baseline is not None and not math.isnan(value) and not math.isnan(baseline):
        text += f" ({value - baseline:+.3f})"
    return text


def markdown(report: ReportView, *, metrics: Sequence[str], baseline_label: str) -> str:
    """``ShiftReport.to_markdown``: a summary line, the rows' table, the worst cases."""
    worst = {metric: row for metric, row in report.worst_case.items() if row in report.rows}
    where = f"split {report.split}" if report.split else "the given images"
    source = f" of {report.source}" if report.source else ""
    lines = [
        f"**{report.n} images** ({where}{source}), threshold {report.threshold:.4f}, "
        f"{len(report.rows)} shifted copies",
        "",
        "| Shift | Strength | " + " | ".join(_TITLES[m] for m in metrics) + " |",
        "|:--|--:|" + "--:|" * len(metrics),
    ]
    cells = [_cell(getattr(report.baseline, m), None, bold=False) for m in metrics]
    lines.append(f"| {baseline_label} | | " + " | ".join(cells) + " |")
    for row in report.rows:
        cells = [
            _cell(getattr(row, m), getattr(report.baseline, m), bold=worst.get(m) is row)
            for m in metrics
        ]
        lines.append(f"| {row.shift} | {row.strength:g} | " + " | ".join(cells) + " |")
    lines += ["", "| Worst case | Value | Change | Shift |", "|:--|--:|--:|:--|"]
    for metric, row in report.worst_case.items():
        value = getattr(row, metric)
        change = value - getattr(report.baseline, metric)
        lines.append(
            f"| {_TITLES[metric]} | {format_value(value)} | "
            f"{format_value(change, signed=True)} | {row.label} |"
        )
    return "\n".join(lines)


def plain_text(report: ReportView, *, metrics: Sequence[str], baseline_label: str) -> str:
    """``ShiftReport.to_text``: aligned columns, then the worst cases (no markup)."""
    rows = [["shift", "strength", *metrics]]
    rows.append([baseline_label, "", *(format_value(getattr(report.baseline, m)) for m in metrics)])
    for row in report.rows:
        rows.append(
            [
                row.shift,
                f"{row.strength:g}",
                *(_cell(getattr(row, m), getattr(report.baseline, m), bold=False)
                  for m in metrics),
            ]
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [headline(report), ""]
    for n, cells in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += ["", "worst case:"]
    for metric, row in report.worst_case.items():
        lines.append(f"  {metric:<12} {format_value(getattr(row, metric))}  ({row.label})")
    return "\n".join(lines)


def headline(report: ReportView) -> str:
    """The one-line summary above the plain and terminal tables."""
    where = f"split {report.split}" if report.split else "the given images"
    source = f" of {report.source}" if report.source else ""
    return (
        f"{report.n} images ({where}{source}), threshold {report.threshold:.4f}, "
        f"{len(report.rows)} shifted copies"
    )


def rich_renderable(report: ReportView, *, metrics: Sequence[str], baseline_label: str) -> Any:
    """``ShiftReport.__rich__``: the headline and the table, the worst in red."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    worst = {metric: row for metric, row in report.worst_case.items() if row in report.rows}
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("shift")
    table.add_column("strength", justify="right")
    for metric in metrics:
        table.add_column(_TITLES[metric], justify="right")
    table.add_row(baseline_label, "", *(format_value(getattr(report.baseline, m)) for m in metrics))
    for row in report.rows:
        cells = []
        for metric in metrics:
            value, base = getattr(row, metric), getattr(report.baseline, metric)
            text = _cell(value, base, bold=False)
            style = "bold red" if worst.get(metric) is row else ("yellow" if value < base else "")
            cells.append(Text(text, style=style))
        table.add_row(row.shift, f"{row.strength:g}", *cells)
    return Group(Text(headline(report), style="bold"), table)


def comparison_table(reports: Mapping[str, ReportView]) -> str:
    """``compare_shift_reports``: one Markdown row per model (see its docstring).

    Raises:
        ValueError: If ``reports`` is empty, or the reports differ in images
            or shifts.
    """
    if not reports:
        msg = "reports is empty; pass {name: ShiftReport} for at least one model"
        raise ValueError(msg)
    items = list(reports.items())
    first_name, first = items[0]
    plan = [(row.shift, row.strength) for row in first.rows]
    for name, report in items[1:]:
        if report.n != first.n or [(r.shift, r.strength) for r in report.rows] != plan:
            msg = (
                f"the reports of {first_name!r} and {name!r} differ in images ({first.n} and "
                f"{report.n}) or shifts; compare reports made on the same split with the same "
                "shifts"
            )
            raise ValueError(msg)
    metrics = ("roc_auc", "sensitivity", "specificity")
    header = "| Model | Threshold | " + " | ".join(
        f"{_TITLES[m]} {part}" for m in metrics for part in ("none", "mean", "worst")
    )
    lines = [
        f"**{first.n} images**, {len(plan)} shifted copies",
        "",
        header + " |",
        "|:--|--:|" + "--:|" * (3 * len(metrics)),
    ]
    for name, report in items:
        cells = [name, f"{report.threshold:.4f}"]
        for metric in metrics:
            worst = report.worst(metric)
            cells += [
                format_value(getattr(report.baseline, metric)),
                format_value(report.mean(metric)),
                f"{format_value(getattr(worst, metric))} ({worst.label})",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
