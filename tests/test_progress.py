"""`TrainingProgress`: compact 1-based epoch lines, a live line on terminals only, the run's ETA."""

from __future__ import annotations

import io

import pytest

from cxr_pneumonia.training.progress import (
    LINE_WIDTH,
    TrainingProgress,
    format_duration,
    is_terminal,
)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


_LOGS = {
    "loss": 0.41234,
    "accuracy": 0.81,
    "precision": 0.8,
    "recall": 0.9,
    "auc": 0.88,
    "pr_auc": 0.9,
    "val_loss": 0.38812,
    "val_accuracy": 0.8611,
    "val_precision": 0.85,
    "val_recall": 0.95,
    "val_auc": 0.9342,
    "val_pr_auc": 0.95,
    "learning_rate": 0.001,
}


def _run(progress: TrainingProgress, epochs: int, *, steps: int = 4, logs=None) -> None:
    progress.set_params({"epochs": epochs, "steps": steps})
    progress.on_train_begin()
    for epoch in range(epochs):
        progress.on_epoch_begin(epoch)
        for batch in range(steps):
            progress._last_draw = -1.0  # redraw at every batch, not five times a second
            progress.on_train_batch_end(batch, {"loss": 0.5})
        progress.on_epoch_end(epoch, dict(logs or _LOGS))


def test_duration_format() -> None:
    assert format_duration(42.4) == "42s"
    assert format_duration(312) == "5m12s"
    assert format_duration(3900) == "1h05m"
    assert format_duration(float("nan")) == "?"


def test_terminal_detection() -> None:
    assert not is_terminal(io.StringIO())
    assert is_terminal(_Terminal())
    assert not is_terminal(object())


def test_plain_lines_in_a_file_one_per_epoch_and_1_based() -> None:
    stream = io.StringIO()
    _run(TrainingProgress(stream=stream), 3)
    out = stream.getvalue()
    assert "\r" not in out
    assert "\x1b" not in out
    lines = out.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    first = lines[0]
    assert "loss 0.4123" in first
    assert "val_loss 0.3881*" in first
    assert "val_acc 0.861" in first
    assert "val_auc 0.934" in first
    assert "lr 1.0e-03" in first
    assert "ETA " in first
    assert "val_loss 0.3881*" not in lines[1]  # not better than epoch 1
    assert "ETA" not in lines[2]  # nothing left after the last epoch


def test_lines_fit_100_columns_even_with_large_numbers() -> None:
    progress = TrainingProgress(stream=io.StringIO(), total_epochs=1000)
    progress.set_params({"epochs": 1000, "steps": 10})
    progress._durations = [36000.0] * 3
    logs = dict.fromkeys(_LOGS, 12345.678)
    line = progress.format_epoch(998, logs, duration=99999)
    assert len(line) <= LINE_WIDTH
    assert line.startswith("epoch  999/1000  loss 12345.6780")


def test_live_line_on_a_terminal_is_redrawn_then_replaced() -> None:
    stream = _Terminal()
    progress = TrainingProgress(stream=stream, total_epochs=4)
    _run(progress, 2)
    out = stream.getvalue()
    assert "\r" in out
    assert "[#####...............] 1/4" in out
    assert "run ETA" in out
    # Every finished epoch line is written whole after the live line is wiped.
    for line in progress.lines:
        assert "\r" + " " * 10 in out or line in out
        assert line in out
    assert progress.lines[0].startswith("epoch 1/4")


def test_total_epochs_spans_phases_for_the_eta() -> None:
    stream = io.StringIO()
    progress = TrainingProgress(stream=stream, total_epochs=5)
    _run(progress, 2)
    assert progress.lines[-1].startswith("epoch 2/5")
    assert "ETA" in progress.lines[-1]


def test_without_validation_shows_training_figures() -> None:
    stream = io.StringIO()
    logs = {"loss": 0.5, "accuracy": 0.75, "auc": 0.8}
    _run(TrainingProgress(stream=stream, monitor="loss"), 1, logs=logs)
    line = stream.getvalue().splitlines()[0]
    assert line.startswith("epoch 1/1  loss 0.5000*  acc 0.750  auc 0.800")


@pytest.mark.parametrize("live", [False, None])
def test_no_live_line_unless_asked_or_a_terminal(live) -> None:
    stream = io.StringIO()
    _run(TrainingProgress(stream=stream, live=live), 1)
    assert "\r" not in stream.getvalue()
