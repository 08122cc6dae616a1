"""`TrainingResult`: what [`fit`][cxr_pneumonia.training.fitting.fit] returns, and how it is read.

`training_result` builds one from the run's per-epoch log rows (those of
this call and, after a resume, of the calls before it), the weights ``fit``
kept and the files in ``checkpoint_dir``; `TrainingResult.record` is the run
record a trained bundle keeps.
"""

from __future__ import annotations

import math
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxr_pneumonia.training.callbacks import (
    BEST_ACCURACY_FILENAME,
    BEST_LOSS_FILENAME,
    LOG_FILENAME,
)
from cxr_pneumonia.training.options import EXTRA_LOG_KEYS, METRIC_NAMES

__all__ = ["TrainingResult", "training_result"]


@dataclass(frozen=True)
class TrainingResult:
    """What [`fit`][cxr_pneumonia.training.fitting.fit] returns.

    Epoch numbers are 1-based, as in the progress lines and the CSV log. All
    per-epoch sequences are aligned: entry ``i`` of ``epochs``, ``phases`` and
    every ``history`` list describe the same epoch. After a resumed run they
    include the epochs trained before the interruption.

    The model's final weights are those of `kept_epoch`, for the reason
    in `kept_reason` (early stopping restoring its best epoch, or simply
    the last epoch); [`summary`][cxr_pneumonia.training.result.TrainingResult.summary] says so with
    that epoch's figures. `best_epoch` is the epoch with the best ``monitor``, which is not the kept
    one when nothing restored it (e.g. a fixed-length cosine schedule).

    Attributes:
        history: ``{metric: [value per epoch]}`` over both phases, e.g.
            ``"loss"``, ``"val_accuracy"``, ``"val_pr_auc"``, ``"learning_rate"``.
        epochs: 1-based epoch number of each history entry (continuous across phases).
        phases: ``"train"`` or ``"fine_tune"`` for each history entry.
        best_epoch: 1-based number of the epoch with the lowest ``monitor``,
            or ``None`` if no epoch ran.
        best_metrics: The validation metrics (``val_*``; the training ones
            when there was no validation data) of ``best_epoch``.
        monitor: The metric that chose ``best_epoch``: ``"val_loss"`` (or
            ``"loss"`` without validation data).
        checkpoints: Files written in ``checkpoint_dir`` that exist, by role:
            ``"best_val_loss"``, ``"best_val_accuracy"``, ``"log"``.
        epochs_run: Epochs trained by this call (not counting resumed ones).
        resumed: Whether this call continued an earlier, interrupted run.
        wall_time: Seconds spent in this call.
        training_time: Seconds of the run's completed epochs, summed over every
            call that trained it (a resumed run counts its earlier calls, read
            from ``checkpoint_dir``), or ``None`` when unknown: a run resumed
            from a folder that an earlier version of the library wrote
            without this count.
        replicas: Replicas of the model's distribution strategy (global batch
            is ``data.batch_size * replicas``).
        kept_epoch: 1-based epoch whose weights the model holds after
            [`fit`][cxr_pneumonia.training.fitting.fit], or ``None`` if no epoch ran.
        kept_reason: Why those weights, in words.
        ema: Whether the weights are the optimizer's exponential moving
            average (``use_ema=True``); the logged validation figures then
            describe the averaged weights too.
    """

    history: dict[str, list[float]]
    epochs: tuple[int, ...]
    phases: tuple[str, ...]
    best_epoch: int | None
    best_metrics: dict[str, float]
    monitor: str
    checkpoints: dict[str, Path] = field(default_factory=dict)
    epochs_run: int = 0
    resumed: bool = False
    wall_time: float = 0.0
    training_time: float | None = None
    replicas: int = 1
    kept_epoch: int | None = None
    kept_reason: str = ""
    ema: bool = False

    @property
    def kept_metrics(self) -> dict[str, float]:
        """The logged figures of `kept_epoch` (``val_*`` ones when there are some).

        Returns:
            ``{metric: value}``, empty if no epoch ran.
        """
        return self._metrics_of(self.kept_epoch)

    def _metrics_of(self, epoch: int | None) -> dict[str, float]:
        if epoch is None or epoch not in self.epochs:
            return {}
        position = self.epochs.index(epoch)
        prefix = "val_" if any(key.startswith("val_") for key in self.history) else ""
        names = [f"{prefix}{name}" for name in METRIC_NAMES]
        names += sorted(
            key
            for key in self.history
            if key not in names and key.startswith(prefix) and key not in EXTRA_LOG_KEYS
            if prefix or not key.startswith("val_")
        )
        return {key: self.history[key][position] for key in names if key in self.history}

    def record(self) -> dict[str, Any]:
        """The run in plain JSON types, as a trained bundle's ``training`` record keeps it.

        Returns:
            ``epochs_run`` (epochs in the history, resumed ones included),
            ``best_epoch``, ``best_metrics``, ``kept_epoch``, ``kept_reason``,
            ``monitor``, and ``wall_time`` / ``training_time`` in seconds
            rounded to 0.1 (``training_time`` ``None`` when unknown).
        """
        return {
            "epochs_run": len(self.epochs),
            "best_epoch": self.best_epoch,
            "best_metrics": {key: float(value) for key, value in self.best_metrics.items()},
            "kept_epoch": self.kept_epoch,
            "kept_reason": self.kept_reason,
            "monitor": self.monitor,
            "wall_time": round(self.wall_time, 1),
            "training_time": None if self.training_time is None else round(self.training_time, 1),
        }

    def summary(self) -> str:
        """Which weights the model holds, why, and their logged figures; then the best epoch.

        Returns:
            Plain text lines of at most 100 columns, e.g. ``"kept the weights of
            epoch 7 of 12: the lowest val_loss, restored by EarlyStopping"``
            followed by that epoch's figures.
        """
        if self.kept_epoch is None:
            return "no epoch ran"
        total = self.epochs[-1] if self.epochs else self.kept_epoch
        head = f"kept the weights of epoch {self.kept_epoch} of {total}: {self.kept_reason}"
        lines = textwrap.wrap(head, width=100, subsequent_indent="  ")
        metrics = self.kept_metrics
        label = "val" if any(key.startswith("val_") for key in metrics) else "train"
        figures = "  ".join(
            f"{key.removeprefix('val_')} {value:.4f}" for key, value in metrics.items()
        )
        lines += textwrap.wrap(
            f"{label}: {figures}", width=100, initial_indent="  ", subsequent_indent="    "
        )
        if self.ema:
            lines.append(
                "  these are the optimizer's moving-average (EMA) weights, as are the "
                "logged validation figures"
            )
        if self.best_epoch is not None and self.best_epoch != self.kept_epoch:
            lines.append(
                f"  the lowest {self.monitor} was at epoch {self.best_epoch}: "
                f"{self.best_metrics.get(self.monitor, math.nan):.4f}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in self.kept_metrics.items())
        return (
            f"TrainingResult(epochs={len(self.epochs)}, kept_epoch={self.kept_epoch}, "
            f"best_epoch={self.best_epoch}, monitor={self.monitor!r}, {metrics}, "
            f"wall_time={self.wall_time:.1f}s)"
        )


def training_result(
    rows: list[dict[str, Any]],
    has_validation: bool,
    folder: Path | None,
    epochs_run: int,
    resumed: bool,
    started: float,
    replicas: int,
    kept: dict[str, Any] | None = None,
    *,
    training_time: float | None = None,
) -> TrainingResult:
    """The `TrainingResult` of a run from its per-epoch log rows.

    Args:
        rows: One dict per epoch run (resumed ones included): ``"epoch"``
            (0-based), ``"phase"`` and the logged figures.
        has_validation: Whether the run had validation data (``monitor`` is
            then ``"val_loss"``, else ``"loss"``).
        folder: The run's ``checkpoint_dir``, whose existing files become
            ``checkpoints``, or ``None``.
        epochs_run: Epochs this call trained.
        resumed: Whether this call continued an earlier run.
        started: ``time.perf_counter()`` when the call began.
        replicas: Replicas of the model's strategy.
        kept: The weights kept: ``{"epoch": 0-based, "reason": str, "ema": bool}``,
            or ``None`` if no epoch ran.
        training_time: Seconds of the completed epochs over every call, or
            ``None`` when unknown.
    """
    rows = sorted(rows, key=lambda row: row["epoch"])
    keys = sorted({key for row in rows for key in row} - {"epoch", "phase"})
    history = {key: [float(row.get(key, math.nan)) for row in rows] for key in keys}
    monitor = "val_loss" if has_validation else "loss"
    best_epoch: int | None = None
    best_metrics: dict[str, float] = {}
    values = history.get(monitor, [])
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    if finite:
        position = min(finite)[1]
        best_epoch = int(rows[position]["epoch"]) + 1
        prefix = "val_" if has_validation else ""
        best_metrics = {
            key: history[key][position]
            for key in keys
            if key.startswith(prefix)
            and (has_validation or not key.startswith("val_"))
            and key not in EXTRA_LOG_KEYS
        }
    checkpoints: dict[str, Path] = {}
    if folder is not None:
        for role, name in (
            ("best_val_loss", BEST_LOSS_FILENAME),
            ("best_val_accuracy", BEST_ACCURACY_FILENAME),
            ("best_loss", BEST_LOSS_FILENAME.replace("val_", "")),
            ("best_accuracy", BEST_ACCURACY_FILENAME.replace("val_", "")),
            ("log", LOG_FILENAME),
        ):
            if (folder / name).exists():
                checkpoints[role] = folder / name
    return TrainingResult(
        history=history,
        epochs=tuple(int(row["epoch"]) + 1 for row in rows),
        phases=tuple(str(row["phase"]) for row in rows),
        best_epoch=best_epoch,
        best_metrics=best_metrics,
        monitor=monitor,
        checkpoints=checkpoints,
        epochs_run=epochs_run,
        resumed=resumed,
        wall_time=time.perf_counter() - started,
        training_time=None if training_time is None else float(training_time),
        replicas=replicas,
        kept_epoch=int(kept["epoch"]) + 1 if kept else None,
        kept_reason=str(kept["reason"]) if kept else "",
        ema=bool(kept.get("ema", False)) if kept else False,
    )
