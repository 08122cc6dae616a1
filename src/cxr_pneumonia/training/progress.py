"""Training output: one compact line per epoch, a live line on a terminal, the run's ETA.

[`fit`][cxr_pneumonia.training.fitting.fit] shows its progress through
[`TrainingProgress`][cxr_pneumonia.training.progress.TrainingProgress] instead of Keras' progress
bar, whose epoch line lists every metric (it wraps to three lines in a 100-column terminal) and
whose carriage returns and escape codes end up in redirected logs. Every metric of every epoch still
goes to the CSV log (``training_log.csv`` in the checkpoint folder).

On a terminal, a line is redrawn in place during each epoch (batches done,
the epoch's and the run's time left); when the output is a file or a pipe,
only the finished epoch lines are written, as plain text: no carriage
returns, no escape codes.

An epoch line reads::

    epoch  3/30  loss 0.4123  val_loss 0.3881*  val_acc 0.861  val_auc 0.934  lr 1.0e-03  12s

followed by the run's time left (``ETA 5m12s``); ``*`` marks the best value
of the monitored metric so far.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import keras

__all__ = ["LINE_WIDTH", "TrainingProgress", "format_duration", "is_terminal"]

LINE_WIDTH = 100
"""The longest line [`TrainingProgress`][cxr_pneumonia.training.progress.TrainingProgress]
writes."""

# (logs key, short name, decimals), in the order shown.
_SHOWN: tuple[tuple[str, str, int], ...] = (
    ("loss", "loss", 4),
    ("val_loss", "val_loss", 4),
    ("val_accuracy", "val_acc", 3),
    ("val_auc", "val_auc", 3),
)
_SHOWN_WITHOUT_VALIDATION: tuple[tuple[str, str, int], ...] = (
    ("loss", "loss", 4),
    ("accuracy", "acc", 3),
    ("auc", "auc", 3),
)
_REDRAW_SECONDS = 0.2


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (``isatty()`` is true).

    Args:
        stream: A file-like object.

    Returns:
        ``False`` for files, pipes, ``io.StringIO`` and objects without ``isatty``.
    """
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # closed or detached stream
        return False


def format_duration(seconds: float) -> str:
    """A short duration: ``"42s"``, ``"5m12s"``, ``"1h05m"``.

    Args:
        seconds: A duration (negative and non-finite values read as ``"?"``).

    Returns:
        The text.

    Examples:
        >>> format_duration(42.4), format_duration(312), format_duration(3900)
        ('42s', '5m12s', '1h05m')
    """
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class TrainingProgress(keras.callbacks.Callback):
    """Compact, 1-based progress of a training run, with the time left for the whole run.

    One line per finished epoch (at most `LINE_WIDTH` columns): the
    epoch number out of the run's total, the training loss, the main
    validation figures (the training ones without validation data), the
    learning rate, the epoch's duration and the run's estimated time left.
    The best value so far of ``monitor`` carries a ``*``.

    Works with plain ``keras.Model.fit`` (pass ``verbose=0`` there to silence
    Keras' own bar) and across [`fit`][cxr_pneumonia.training.fitting.fit]'s two phases, which
    share one instance so the ETA covers the whole run.

    Args:
        total_epochs: Epochs of the whole run, every phase included; ``None``
            takes the ``epochs`` of the current ``fit`` call.
        stream: Where to write; ``None`` is ``sys.stdout`` at the time of writing.
        live: Redraw a line in place during each epoch; ``None`` does so only
            when ``stream`` is a terminal (never in files and pipes).
        monitor: The metric whose best value so far is marked with ``*``
            (lower is better for names ending in ``"loss"``).

    Attributes:
        lines: Every epoch line written, in order.
    """

    def __init__(
        self,
        *,
        total_epochs: int | None = None,
        stream: TextIO | None = None,
        live: bool | None = None,
        monitor: str = "val_loss",
    ) -> None:
        super().__init__()
        self.total_epochs = total_epochs
        self.stream = stream
        self.live = live
        self.monitor = monitor
        self.lines: list[str] = []
        self._best: float | None = None
        self._durations: list[float] = []
        self._epoch_started = 0.0
        self._last_draw = 0.0
        self._drawn = 0
        self._epoch = 0

    # -- output ------------------------------------------------------------------------

    def _stream(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    def _is_live(self) -> bool:
        return self.live if self.live is not None else is_terminal(self._stream())

    def write(self, text: str) -> None:
        """Write ``text`` and a newline, first clearing a live line if one is drawn.

        Args:
            text: One or more lines of plain text.
        """
        stream = self._stream()
        if self._drawn:
            stream.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0
        stream.write(text + "\n")
        stream.flush()

    def _draw(self, text: str) -> None:
        text = text[: LINE_WIDTH - 1]
        stream = self._stream()
        stream.write("\r" + text.ljust(self._drawn))
        stream.flush()
        self._drawn = len(text)

    # -- bookkeeping -------------------------------------------------------------------

    def _total(self) -> int:
        if self.total_epochs is not None:
            return int(self.total_epochs)
        return int((self.params or {}).get("epochs") or 0)

    def _eta(self, epoch: int, fraction_of_epoch: float = 1.0) -> float:
        """Seconds left in the run after ``fraction_of_epoch`` of 0-based ``epoch``."""
        if not self._durations:
            return math.nan
        per_epoch = sum(self._durations) / len(self._durations)
        left = self._total() - (epoch + fraction_of_epoch)
        return max(0.0, left * per_epoch)

    def _is_best(self, value: float) -> bool:
        if math.isnan(value):
            return False
        lower = self.monitor.endswith("loss")
        if self._best is None or (value < self._best if lower else value > self._best):
            self._best = value
            return True
        return False

    # -- Keras hooks -------------------------------------------------------------------

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Start timing the epoch."""
        self._epoch = epoch
        self._epoch_started = self._last_draw = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Redraw the live line (at most five times a second)."""
        if not self._is_live():
            return
        now = time.perf_counter()
        if now - self._last_draw < _REDRAW_SECONDS:
            return
        self._last_draw = now
        done = batch + 1
        steps = (self.params or {}).get("steps")
        elapsed = now - self._epoch_started
        parts = [f"epoch {self._epoch + 1}/{self._total()}"]
        if steps:
            filled = round(20 * done / steps)
            parts.append(f"[{'#' * filled}{'.' * (20 - filled)}] {done}/{steps}")
            fraction = done / steps
            left_in_epoch = elapsed * (steps - done) / done
            parts.append(f"epoch ETA {format_duration(left_in_epoch)}")
            if not self._durations:  # first epoch: estimate from this one
                per_epoch = elapsed / fraction
                run_left = per_epoch * (self._total() - self._epoch - fraction)
            else:
                run_left = self._eta(self._epoch, fraction)
            parts.append(f"run ETA {format_duration(run_left)}")
        else:
            parts.append(f"{done} batches, {format_duration(elapsed)}")
        if logs and "loss" in logs:
            parts.append(f"loss {float(logs['loss']):.4f}")
        self._draw("  ".join(parts))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Write the epoch's line."""
        logs = dict(logs or {})
        optimizer = getattr(self.model, "optimizer", None)
        if "learning_rate" not in logs and optimizer is not None:
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        self._durations.append(time.perf_counter() - self._epoch_started)
        line = self.format_epoch(epoch, logs, duration=self._durations[-1])
        self.lines.append(line)
        self.write(line)

    def format_epoch(self, epoch: int, logs: Mapping[str, Any], *, duration: float) -> str:
        """The line of one finished epoch (at most `LINE_WIDTH` columns).

        Args:
            epoch: 0-based epoch (shown 1-based).
            logs: The epoch's logs.
            duration: Seconds the epoch took.

        Returns:
            The line, without a newline.
        """
        total = self._total()
        digits = len(str(max(total, epoch + 1)))
        fields = [f"epoch {epoch + 1:>{digits}}/{total}"]
        shown = _SHOWN if "val_loss" in logs else _SHOWN_WITHOUT_VALIDATION
        for key, name, decimals in shown:
            if key not in logs:
                continue
            value = float(logs[key])
            text = f"{name} {value:.{decimals}f}"
            if key == self.monitor and self._is_best(value):
                text += "*"
            fields.append(text)
        optional = []
        if "learning_rate" in logs:
            optional.append(f"lr {float(logs['learning_rate']):.1e}")
        optional.append(format_duration(duration))
        eta = self._eta(epoch)
        if epoch + 1 < total and math.isfinite(eta):
            optional.append(f"ETA {format_duration(eta)}")
        line = "  ".join(fields + optional)
        while len(line) > LINE_WIDTH and optional:
            optional.pop(0)  # the learning rate first, then the epoch's duration
            line = "  ".join(fields + optional)
        return line[:LINE_WIDTH]
