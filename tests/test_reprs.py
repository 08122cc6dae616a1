"""Short, informative reprs and terminal renderings of the result objects."""

from __future__ import annotations

import io

import numpy as np
from rich.console import Console

from cxr_pneumonia.evaluation import EvaluationReport
from helpers_training import make_splits


def _report() -> EvaluationReport:
    labels = [0, 1, 1, 0, 1] * 200
    return EvaluationReport.from_scores(labels, np.linspace(0, 1, len(labels)))


def test_dataset_splits_repr_counts_files_instead_of_listing_them() -> None:
    data = make_splits(n_train=200, n_val=40)
    text = repr(data)
    assert text == (
        "DatasetSplits(source='tiny', images={'train': 200, 'validation': 40}, "
        "image_size=(16, 16), color_mode='grayscale', batch_size=8, seed=0)"
    )
    assert "tiny/train/0" not in text


def test_evaluation_report_repr_is_one_line_with_the_confusion_matrix() -> None:
    text = repr(_report())
    assert "\n" not in text
    assert text.startswith("EvaluationReport(n=1000, threshold=0.5000, accuracy=")
    assert text.endswith("confusion_matrix=[[200, 200], [300, 300]])")
    assert len(text) < 200


def test_evaluation_report_plain_text_has_no_markdown() -> None:
    text = _report().to_text()
    assert "**" not in text
    assert "|" not in text
    assert text.startswith("1000 images (600 PNEUMONIA, 400 NORMAL), threshold 0.5000")
    assert "ROC AUC" in text
    assert text.splitlines()[-1].split() == ["PNEUMONIA", "300", "300"]


def test_evaluation_report_renders_as_terminal_tables() -> None:
    buffer = io.StringIO()
    Console(file=buffer, width=100, force_terminal=False).print(_report())
    out = buffer.getvalue()
    assert "**" not in out
    assert "|" not in out
    assert "ROC AUC" in out
    assert "true \\ predicted" in out
    assert max(len(line) for line in out.splitlines()) <= 100
