"""The run state of [`fit`][cxr_pneumonia.training.fitting.fit] and the files of a resumable run.

`RunState` (a callback) records each epoch's logs and the status of each
phase and, with a ``checkpoint_dir``, keeps them in ``run_state.json``
(`STATE_FILENAME`) with a finished phase's final weights beside it
(``after_<phase>.weights.npz``, read back by `load_npz_weights`);
`with_run_state` places it among the callbacks. `load_state` reads that
file when ``fit`` resumes and refuses a run of another model; `next_epoch`
is where a phase starts or resumes; `kept_weights` says which epoch's
weights a phase left in the model and why (kept in the state as ``"kept"``).
Before a phase starts or resumes, `seed_checkpoints` gives best-only
checkpoints the best value of the earlier epochs and `trim_logs` drops the
CSV-log rows of epochs about to be trained again; `close_logs` closes the
CSV log when training is interrupted. `clear_run` deletes a run's files
(``resume=False``) and `remove_run_debris` the temporaries a killed run left.

This module does not import ``fitting`` (fitting -> _fit_state).
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cxr_pneumonia._files import atomic_path, remove_debris
from cxr_pneumonia.exceptions import TrainingError
from cxr_pneumonia.training.callbacks import (
    BACKUP_DIRNAME,
    BEST_ACCURACY_FILENAME,
    BEST_LOSS_FILENAME,
    LOG_FILENAME,
    AtomicBackupAndRestore,
    EpochCSVLogger,
    MultiMetricEarlyStopping,
    is_lower_better,
)

__all__ = [
    "STATE_FILENAME",
    "RunState",
    "clear_run",
    "close_logs",
    "kept_weights",
    "load_npz_weights",
    "load_state",
    "next_epoch",
    "remove_run_debris",
    "seed_checkpoints",
    "trim_logs",
    "with_run_state",
]

logger = logging.getLogger("cxr_pneumonia")

STATE_FILENAME = "run_state.json"
TRAINING_SECONDS = "training_seconds"
"""Key of the run state: seconds of the completed epochs, summed over every call that trained
the run; absent from a run begun by a version that did not count them (its time is unknown)."""
_PHASES = ("train", "fine_tune")


class RunState(keras.callbacks.Callback):
    """Records each epoch's logs (and persists them with the phase status in ``run_state.json``)."""

    def __init__(self, state: dict[str, Any], path: Path | None, phase: str) -> None:
        super().__init__()
        self.state = state
        self.path = path
        self.phase = phase
        self.epochs_run = 0
        self._epoch_started: float | None = None

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch_started = time.perf_counter()

    def save(self) -> None:
        if self.path is None:
            return
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.state, indent=1))

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        row = {"epoch": int(epoch), "phase": self.phase}
        row.update({k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        optimizer = getattr(self.model, "optimizer", None)
        if "learning_rate" not in row and optimizer is not None:
            row["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        rows = [r for r in self.state["history"] if r["epoch"] != epoch]
        rows.append(row)
        self.state["history"] = rows
        if self._epoch_started is not None and TRAINING_SECONDS in self.state:
            self.state[TRAINING_SECONDS] += time.perf_counter() - self._epoch_started
        self.epochs_run += 1
        self.save()

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        # Runs before BackupAndRestore deletes its backup, after early stopping restored
        # the best weights: the final weights of the phase are saved, then it is marked done.
        if self.path is not None:
            weights_path = self.path.parent / f"after_{self.phase}.weights.npz"
            with atomic_path(weights_path) as tmp, tmp.open("wb") as handle:
                np.savez(handle, *self.model.get_weights())
        self.state["phases"][self.phase] = "done"
        self.save()


def load_state(path: Path | None, model: keras.Model, resume: bool) -> dict[str, Any]:
    """The run state in ``path`` to resume, or a fresh one (no file, or ``resume=False``)."""
    fingerprint = {"model": model.name, "params": int(model.count_params())}
    fresh = {"fingerprint": fingerprint, "phases": {}, "history": [], TRAINING_SECONDS: 0.0}
    if path is None or not resume or not path.exists():
        return fresh
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        msg = f"can't read the run state {path} ({error}); pass resume=False to start over"
        raise TrainingError(msg) from error
    if state.get("fingerprint") != fingerprint:
        msg = (
            f"checkpoint_dir {path.parent} holds a run of {state.get('fingerprint')}, not of "
            f"this model {fingerprint}; pass resume=False to start over or use another folder"
        )
        raise TrainingError(msg)
    return state


def _run_files() -> list[str]:
    names = [STATE_FILENAME, LOG_FILENAME, BEST_LOSS_FILENAME, BEST_ACCURACY_FILENAME]
    names += [name.replace("val_", "") for name in (BEST_LOSS_FILENAME, BEST_ACCURACY_FILENAME)]
    names += [f"after_{phase}.weights.npz" for phase in _PHASES]
    return names


def clear_run(folder: Path) -> None:
    """Delete the files of the run in ``folder`` and its backup (only ours, by name)."""
    shutil.rmtree(folder / BACKUP_DIRNAME, ignore_errors=True)
    for name in _run_files():
        (folder / name).unlink(missing_ok=True)


def remove_run_debris(folder: Path) -> None:
    """Remove the temporaries a killed run left beside its files (only ours, by name)."""
    for name in _run_files():
        for path in remove_debris(folder, name):
            logger.info("removed %s, left by an interrupted run", path)


def load_npz_weights(model: keras.Model, path: Path) -> None:
    """Load the final weights a finished phase saved (``after_<phase>.weights.npz``)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            model.set_weights([stored[f"arr_{i}"] for i in range(len(stored.files))])
    except (OSError, ValueError, KeyError) as exc:
        msg = (
            f"can't load the final weights of a finished phase from {path} ({exc}); "
            "pass resume=False to start over"
        )
        raise TrainingError(msg) from exc


def with_run_state(
    callbacks: list[keras.callbacks.Callback], run_state: RunState
) -> list[keras.callbacks.Callback]:
    """Insert ``run_state`` just before the first ``BackupAndRestore`` (or at the end)."""
    for index, callback in enumerate(callbacks):
        if isinstance(callback, keras.callbacks.BackupAndRestore):
            return [*callbacks[:index], run_state, *callbacks[index:]]
    return [*callbacks, run_state]


def next_epoch(rows: list[dict[str, Any]]) -> int:
    """The 0-based epoch after the last of the history ``rows`` (``0`` when there are none)."""
    return 1 + max((int(row["epoch"]) for row in rows), default=-1)


def kept_weights(
    callbacks: Sequence[keras.callbacks.Callback], history: list[dict[str, Any]], *, ema: bool
) -> dict[str, Any]:
    """Which 0-based epoch's weights the model holds after a phase, and why."""
    last = max(int(row["epoch"]) for row in history)
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping):
            restored = callback.restore_best_weights and callback.best_weights is not None
            if restored and callback.best_epoch is not None:
                best = int(callback.best_epoch)
                how = "best" if not callback.monitor.endswith("loss") else "lowest"
                if best == last:
                    reason = f"the last epoch, which had the {how} {callback.monitor}"
                else:
                    reason = (
                        f"the {how} {callback.monitor}, restored by EarlyStopping "
                        f"(epochs {best + 2}-{last + 1} did not improve on it)"
                    )
                return {"epoch": best, "reason": reason, "ema": ema}
        if isinstance(callback, MultiMetricEarlyStopping):
            restored = callback.restore_best_weights and callback.best_weights is not None
            if restored and callback.best_epoch is not None:
                targets = ", ".join(f"{k} {v:g}" for k, v in callback.targets.items())
                reason = (
                    f"the best epoch meeting every target ({targets}), restored by "
                    "MultiMetricEarlyStopping"
                )
                return {"epoch": int(callback.best_epoch), "reason": reason, "ema": ema}
    return {
        "epoch": last,
        "reason": "the last epoch (no callback restores an earlier one)",
        "ema": ema,
    }


def seed_checkpoints(callbacks: Sequence[keras.callbacks.Callback], history: list[dict]) -> None:
    """Give best-only ``ModelCheckpoint``s the best value of the earlier epochs of the run."""
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.ModelCheckpoint):
            continue
        if not callback.save_best_only or callback.best is not None:
            continue
        values = [row[callback.monitor] for row in history if callback.monitor in row]
        if values:
            lower = callback.mode == "min" or (
                callback.mode == "auto" and is_lower_better(callback.monitor)
            )
            callback.best = min(values) if lower else max(values)


def close_logs(callbacks: Sequence[keras.callbacks.Callback]) -> None:
    """Close the CSV logs' files (Keras skips ``on_train_end`` when training is interrupted)."""
    for callback in callbacks:
        handle = getattr(callback, "csv_file", None)
        if isinstance(callback, keras.callbacks.CSVLogger) and handle is not None:
            handle.close()
            callback.csv_file = None


def trim_logs(callbacks: Sequence[keras.callbacks.Callback], offset: int) -> None:
    """Drop the CSV-log rows of epochs that the coming ``fit`` will train (again).

    A run killed after an epoch was logged but before its backup was complete
    repeats that epoch; without this its row would appear twice.
    """
    backups = [c for c in callbacks if isinstance(c, AtomicBackupAndRestore)]
    if not backups:
        return  # another backup callback: its restart epoch is unknown here
    state = backups[0].read_state()
    restart = max(offset, state["epoch"]) if state is not None else offset
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.CSVLogger) and callback.append:
            first = 1 if isinstance(callback, EpochCSVLogger) else 0  # its epochs are 1-based
            _trim_csv(Path(callback.filename), restart + first, callback.sep)


def _trim_csv(path: Path, restart: int, separator: str) -> None:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter=separator))
    except FileNotFoundError:
        return
    if not rows or "epoch" not in rows[0]:
        return
    column = rows[0].index("epoch")
    kept = [rows[0]]
    for row in rows[1:]:
        try:
            if int(row[column]) < restart:
                kept.append(row)
        except (IndexError, ValueError):
            continue  # a row cut short by a kill
    if len(kept) == len(rows):
        return
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, delimiter=separator).writerows(kept)
