"""One CSV format for predictions: the library's writer, used by the CLI and the examples."""

from __future__ import annotations

import csv
import io

from cxr_pneumonia import write_predictions_csv
from cxr_pneumonia.predictions_csv import prediction_columns, prediction_rows
from cxr_pneumonia.predictor import Prediction

PREDICTIONS = [
    Prediction("PNEUMONIA", 0.912345678, 0.5, "a/b.png"),
    Prediction(None, None, 0.5, "broken.jpeg", "broken.jpeg: not an image"),
    Prediction("NORMAL", 0.1, 0.25, 3),
]


def test_columns_start_with_the_answer_and_end_with_the_error() -> None:
    columns = prediction_columns()
    assert columns[:4] == ["source", "label", "probability", "threshold"]
    assert columns[-1] == "error"
    assert len(set(columns)) == len(columns)


def test_rows_have_six_decimals_and_empty_cells_for_absent_values() -> None:
    rows = prediction_rows(PREDICTIONS)
    assert rows[0]["probability"] == "0.912346"
    assert rows[0]["threshold"] == "0.500000"
    assert rows[0]["error"] == ""
    assert (rows[1]["label"], rows[1]["probability"]) == ("", "")
    assert rows[1]["error"] == "broken.jpeg: not an image"
    assert rows[2]["source"] == "3"


def test_writes_to_a_stream() -> None:
    out = io.StringIO()
    assert write_predictions_csv(PREDICTIONS, out) == 3
    lines = out.getvalue().splitlines()
    assert lines[0] == ",".join(prediction_columns())
    assert lines[1].startswith("a/b.png,PNEUMONIA,0.912346,0.500000")
    parsed = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [row["source"] for row in parsed] == ["a/b.png", "broken.jpeg", "3"]


def test_writes_a_file_whole_and_leaves_no_temporary(tmp_path) -> None:
    target = tmp_path / "predictions.csv"
    target.write_text("old")
    write_predictions_csv(PREDICTIONS, target)
    assert target.read_text().startswith("source,label,probability,threshold")
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]
