"""One CSV format for predictions, written by the library, the CLI and the examples alike.

Columns, in order: ``source`` (the file path, or the input's index), ``label``,
``probability`` and ``threshold`` (6 decimals), any further field a
[`Prediction`][cxr_pneumonia.predictor.Prediction] carries, then ``error`` (empty
when the input was predicted). A value that is absent (the label and
probability of an unreadable input) is an empty cell.

Examples:
    >>> import io
    >>> from cxr_pneumonia.predictor import Prediction
    >>> out = io.StringIO()
    >>> write_predictions_csv([Prediction("PNEUMONIA", 0.91234567, 0.5, "a.png")], out)
    1
    >>> print(out.getvalue(), end="")
    source,label,probability,threshold,in_distribution,ood_score,error
    a.png,PNEUMONIA,0.912346,0.500000,,,
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from cxr_pneumonia._files import atomic_path
from cxr_pneumonia.predictor import Prediction

__all__ = ["prediction_columns", "prediction_rows", "write_predictions_csv"]

_FIRST = ("source", "label", "probability", "threshold")
_LAST = ("error",)


def prediction_columns() -> list[str]:
    """The CSV columns: ``source, label, probability, threshold, [other fields], error``.

    Returns:
        The column names, in order.
    """
    names = [f.name for f in dataclasses.fields(Prediction)]
    middle = [name for name in names if name not in _FIRST + _LAST]
    return [*_FIRST, *middle, *_LAST]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def prediction_rows(predictions: Iterable[Prediction]) -> list[dict[str, str]]:
    """The predictions as CSV rows of text cells.

    Args:
        predictions: [`Prediction`][cxr_pneumonia.predictor.Prediction] objects.

    Returns:
        One ``{column: text}`` per prediction, in
        [`prediction_columns`][cxr_pneumonia.predictions_csv.prediction_columns] order.
    """
    columns = prediction_columns()
    return [{name: _cell(getattr(p, name, None)) for name in columns} for p in predictions]


def write_predictions_csv(
    predictions: Iterable[Prediction], out: TextIO | str | os.PathLike[str]
) -> int:
    """Write predictions as CSV, with a header row.

    Args:
        predictions: [`Prediction`][cxr_pneumonia.predictor.Prediction] objects.
        out: An open text stream (e.g. ``sys.stdout``), or a file path: the
            file is written aside, then renamed into place, so a reader never
            sees half of it.

    Returns:
        The number of rows written (not counting the header).
    """
    rows = prediction_rows(predictions)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=prediction_columns(), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    if isinstance(out, (str, os.PathLike)):
        with atomic_path(Path(out)) as tmp:
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
    else:
        out.write(buffer.getvalue())
        out.flush()
    return len(rows)
