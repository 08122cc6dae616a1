"""Training callbacks: multi-metric early stopping, target stopping, step decay, the default set.

Every callback here works with plain ``keras.Model.fit`` as well as with
[`cxr_pneumonia.fit`][cxr_pneumonia.training.fitting.fit].

Targets are ``{metric: value}`` mappings over the names in Keras' epoch logs
(``"val_accuracy"``, ``"val_recall"``, ``"val_loss"``, ...). A metric whose
name ends in ``"loss"`` is an *upper* bound (met when ``value <= target``);
every other metric is a *lower* bound (met when ``value >= target``).

Examples:
    >>> from cxr_pneumonia.training.callbacks import (
    ...     MultiMetricEarlyStopping, TargetMetricsReached, step_decay)
    >>> import keras
    >>> callbacks = [
    ...     MultiMetricEarlyStopping({"val_accuracy": 0.94, "val_recall": 0.95}, patience=5),
    ...     TargetMetricsReached({"val_accuracy": 0.97, "val_loss": 0.08}),
    ...     keras.callbacks.LearningRateScheduler(step_decay(0.002, drop=0.5, every=10)),
    ... ]
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import keras

from cxr_pneumonia._files import atomic_path
from cxr_pneumonia.exceptions import TrainingError
from cxr_pneumonia.training._backup import (
    delete_backup,
    read_backup_state,
    restore_backup,
    write_backup,
)

__all__ = [
    "BACKUP_DIRNAME",
    "BACKUP_STATE_FILENAME",
    "BEST_ACCURACY_FILENAME",
    "BEST_LOSS_FILENAME",
    "LOG_FILENAME",
    "STOPPING_MODES",
    "AtomicBackupAndRestore",
    "AtomicModelCheckpoint",
    "EpochCSVLogger",
    "MultiMetricEarlyStopping",
    "SwapInEMAWeights",
    "TargetMetricsReached",
    "default_callbacks",
    "is_lower_better",
    "run_state_callbacks",
    "step_decay",
    "warmup_cosine_decay",
]

logger = logging.getLogger("cxr_pneumonia")

BEST_LOSS_FILENAME = "best_val_loss.keras"
"""File name, in ``checkpoint_dir``, of the model with the best validation loss."""
BEST_ACCURACY_FILENAME = "best_val_accuracy.keras"
"""File name, in ``checkpoint_dir``, of the model with the best validation accuracy."""
LOG_FILENAME = "training_log.csv"
"""File name, in ``checkpoint_dir``, of the per-epoch CSV log."""
BACKUP_DIRNAME = "backup"
"""Folder, in ``checkpoint_dir``, of the ``BackupAndRestore`` state (deleted when training ends)."""
BACKUP_STATE_FILENAME = "backup_state.json"
"""File, in the backup folder, naming the last complete backup
([`AtomicBackupAndRestore`][cxr_pneumonia.training.callbacks.AtomicBackupAndRestore])."""


def is_lower_better(metric: str) -> bool:
    """Whether lower values of ``metric`` are better (its name ends in ``"loss"``).

    Args:
        metric: A logs key such as ``"val_loss"`` or ``"val_recall"``.

    Returns:
        ``True`` for loss-like metrics (targets are upper bounds), else ``False``.
    """
    return metric.endswith("loss")


def _check_targets(targets: Mapping[str, float], owner: str) -> dict[str, float]:
    if not isinstance(targets, Mapping) or not targets:
        msg = (
            f"{owner} needs a non-empty mapping of targets such as "
            f"{{'val_accuracy': 0.94, 'val_recall': 0.95}}; got {targets!r}"
        )
        raise ValueError(msg)
    checked: dict[str, float] = {}
    for name, value in targets.items():
        if not isinstance(name, str) or not name:
            msg = f"{owner} target names must be logs keys such as 'val_accuracy'; got {name!r}"
            raise ValueError(msg)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            msg = f"{owner} target {name!r} must be a number; got {value!r}"
            raise ValueError(msg)
        if not math.isfinite(value):
            msg = f"{owner} target {name!r} must be finite; got {value!r}"
            raise ValueError(msg)
        checked[name] = float(value)
    return checked


def _read_metrics(
    logs: Mapping[str, Any] | None, names: list[str], owner: str, epoch: int
) -> dict[str, float]:
    logs = logs or {}
    missing = [name for name in names if name not in logs]
    if missing:
        available = ", ".join(sorted(logs)) or "(none)"
        msg = (
            f"{owner}: metric(s) {', '.join(map(repr, missing))} not in the logs of epoch "
            f"{epoch + 1}; available: {available}. Fix the target names, or pass validation "
            "data if they are 'val_' metrics."
        )
        raise TrainingError(msg)
    return {name: float(logs[name]) for name in names}


def _meets(name: str, value: float, target: float) -> bool:
    if math.isnan(value):
        return False
    return value <= target if is_lower_better(name) else value >= target


def _format(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{name}={value:.4f}" for name, value in metrics.items())


STOPPING_MODES: tuple[str, ...] = ("from_start", "after_targets")
"""When [`MultiMetricEarlyStopping`][cxr_pneumonia.training.callbacks.MultiMetricEarlyStopping]
starts counting ``patience``."""


class MultiMetricEarlyStopping(keras.callbacks.Callback):
    """Early stopping on several metrics at once, each with a target to meet.

    The rule of the VGG19 study, made robust. An epoch *qualifies* when every
    target is met (``*loss`` targets are upper bounds, the others lower
    bounds). A qualifying epoch becomes the new *best* when it improves on the
    previous best:

    - with ``monitor=None`` (the default), by Pareto improvement: no target
      metric is worse than at the best epoch and at least one is better by more
      than ``min_delta``;
    - with ``monitor="val_loss"`` (or any logs key), when that one metric is
      better by more than ``min_delta`` (lower for ``*loss``, else higher).

    The first qualifying epoch is always a best. Training stops once
    ``patience`` epochs in a row bring no new best. When that count starts
    depends on ``mode``:

    - ``"from_start"`` (the default): from the start of training, so a run
      that meets no target within ``patience`` epochs stops;
    - ``"after_targets"``: only once every target has been met; before that
      training goes on (up to ``fit``'s ``epochs``). This is the VGG19
      notebook's callback: its run met every target at epoch 10 and stopped
      at epoch 12, which is this rule with ``patience=2`` (epochs 11 and 12
      brought no new best). Our reading of the notebook: it waited for the
      targets, then allowed ``patience`` epochs to improve on the best.

    When training ends, the weights of the best epoch are restored if
    ``restore_best_weights``.

    When no epoch ever meets every target, training is *not* cut short on that
    account beyond ``patience`` (the study's version crashed here): the
    callback stops after ``patience`` epochs from the start, keeps the weights
    of the last epoch, warns once (``UserWarning``) with the best value each
    target reached, and leaves ``best_epoch`` as ``None``.

    Args:
        targets: ``{logs key: target}``, e.g. ``{"val_accuracy": 0.94, "val_recall": 0.95}``.
        patience: Epochs without a new best before stopping (``>= 1``).
        restore_best_weights: Restore the best epoch's weights at the end of training.
        monitor: ``None`` for the Pareto rule, or the logs key that ranks
            qualifying epochs (it need not be a target).
        min_delta: Smallest change that counts as better (``>= 0``).
        mode: ``"from_start"`` or ``"after_targets"`` (see above).
        verbose: ``0`` silent, ``1`` logs each new best and the stop at INFO.

    Attributes:
        best_epoch: 0-based index of the best epoch, or ``None`` if none qualified.
        best_metrics: The metrics (targets and ``monitor``) of the best epoch.
        stopped_epoch: 0-based epoch at which training was stopped, or ``None``.
        wait: Epochs since the last best.

    Raises:
        ValueError: If the targets, ``patience``, ``min_delta`` or ``mode``
            are invalid.
        TrainingError: At the end of an epoch whose logs lack a target or
            ``monitor`` metric (the message lists the available keys).

    Examples:
        >>> stopping = MultiMetricEarlyStopping(            # the VGG19 notebook's rule
        ...     {"val_accuracy": 0.94, "val_recall": 0.95}, patience=2, mode="after_targets"
        ... )
    """

    def __init__(
        self,
        targets: Mapping[str, float],
        *,
        patience: int = 5,
        restore_best_weights: bool = True,
        monitor: str | None = None,
        min_delta: float = 0.0,
        mode: Literal["from_start", "after_targets"] = "from_start",
        verbose: int = 0,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.targets = _check_targets(targets, owner)
        if mode not in STOPPING_MODES:
            msg = f"{owner} mode must be one of: {', '.join(STOPPING_MODES)}; got {mode!r}"
            raise ValueError(msg)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            msg = f"{owner} patience must be an int >= 1; got {patience!r}"
            raise ValueError(msg)
        if not isinstance(min_delta, (int, float)) or not min_delta >= 0:
            msg = f"{owner} min_delta must be a number >= 0; got {min_delta!r}"
            raise ValueError(msg)
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            msg = f"{owner} monitor must be None or a logs key such as 'val_loss'; got {monitor!r}"
            raise ValueError(msg)
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.monitor = monitor
        self.min_delta = float(min_delta)
        self.mode = mode
        self.verbose = verbose
        self._reset()

    @property
    def metric_names(self) -> list[str]:
        """The logs keys this callback reads: the targets, then ``monitor``."""
        names = list(self.targets)
        if self.monitor is not None and self.monitor not in names:
            names.append(self.monitor)
        return names

    def _reset(self) -> None:
        self.best_epoch: int | None = None
        self.best_metrics: dict[str, float] = {}
        self.best_weights: list[Any] | None = None
        self.stopped_epoch: int | None = None
        self.wait = 0
        self._closest: dict[str, tuple[float, int]] = {}

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Reset the state, so one instance can serve several ``fit`` calls."""
        self._reset()

    def _better(self, name: str, new: float, old: float) -> bool:
        if is_lower_better(name):
            return new < old - self.min_delta
        return new > old + self.min_delta

    def _not_worse(self, name: str, new: float, old: float) -> bool:
        return new <= old if is_lower_better(name) else new >= old

    def _improves(self, current: Mapping[str, float]) -> bool:
        if self.best_epoch is None:
            return True
        best = self.best_metrics
        if self.monitor is not None:
            return self._better(self.monitor, current[self.monitor], best[self.monitor])
        names = list(self.targets)
        return all(self._not_worse(n, current[n], best[n]) for n in names) and any(
            self._better(n, current[n], best[n]) for n in names
        )

    def _track_closest(self, epoch: int, current: Mapping[str, float]) -> None:
        for name in self.targets:
            value = current[name]
            if math.isnan(value):
                continue
            seen = self._closest.get(name)
            if seen is None or (value != seen[0] and self._not_worse(name, value, seen[0])):
                self._closest[name] = (value, epoch)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Check the targets, update the best epoch, and stop when patience runs out."""
        current = _read_metrics(logs, self.metric_names, type(self).__name__, epoch)
        self._track_closest(epoch, current)
        qualifies = all(_meets(n, current[n], t) for n, t in self.targets.items())
        if qualifies and self._improves(current):
            self.best_epoch = epoch
            self.best_metrics = current
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.verbose:
                logger.info("epoch %d: new best, %s", epoch + 1, _format(current))
            return
        if self.mode == "after_targets" and self.best_epoch is None:
            return  # the notebook's rule: no stopping before every target is met
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.verbose:
                logger.info("epoch %d: no new best for %d epochs, stopping", epoch + 1, self.wait)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """Restore the best weights, or warn that no epoch met every target."""
        if self.best_epoch is None:
            if not self._closest:
                return  # no epoch ran
            reached = ", ".join(
                f"{name} {value:.4f} (epoch {epoch + 1}, target {self.targets[name]:g})"
                for name, (value, epoch) in self._closest.items()
            )
            msg = (
                f"no epoch met every target of {type(self).__name__}; best values reached: "
                f"{reached}. Keeping the weights of the last epoch. Train longer, raise "
                "patience, or lower the targets."
            )
            # Once, as a warning: a log record as well would show it twice.
            warnings.warn(msg, UserWarning, stacklevel=2)
            return
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            if self.verbose:
                logger.info("restored the weights of epoch %d", self.best_epoch + 1)


class TargetMetricsReached(keras.callbacks.Callback):
    """Stop training as soon as every target is met (the custom CNN notebook's rule).

    ``*loss`` targets are upper bounds (``val_loss <= 0.1``), the others lower
    bounds (``val_accuracy >= 0.95``).

    Args:
        targets: ``{logs key: target}``, e.g. ``{"val_accuracy": 0.95, "val_loss": 0.1}``.
        verbose: ``0`` silent, ``1`` logs the stop at INFO.

    Attributes:
        reached_epoch: 0-based epoch at which every target was met, or ``None``.

    Raises:
        ValueError: If the targets are invalid.
        TrainingError: At the end of an epoch whose logs lack a target metric
            (the message lists the available keys).
    """

    def __init__(self, targets: Mapping[str, float], *, verbose: int = 0) -> None:
        super().__init__()
        self.targets = _check_targets(targets, type(self).__name__)
        self.verbose = verbose
        self.reached_epoch: int | None = None

    @property
    def metric_names(self) -> list[str]:
        """The logs keys this callback reads."""
        return list(self.targets)

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Reset ``reached_epoch``."""
        self.reached_epoch = None

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Stop training if every target is met."""
        current = _read_metrics(logs, self.metric_names, type(self).__name__, epoch)
        if all(_meets(n, current[n], t) for n, t in self.targets.items()):
            self.reached_epoch = epoch
            self.model.stop_training = True
            if self.verbose:
                logger.info("epoch %d: all targets met (%s), stopping", epoch + 1, _format(current))


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` whose backups survive being killed at any moment.

    Keras' own callback rewrites ``latest.weights.h5`` in place at the end of
    every epoch, so a process killed (``kill -9``, Ctrl-C, a power cut) while
    it writes leaves a half-written file that the next run fails to load.
    This one keeps, in ``backup_dir``:

    - ``epoch-NNNNN.weights.h5``: the model and optimizer state after epoch
      ``NNNNN`` (1-based count of completed epochs), written under a
      temporary name, fsynced, then renamed into place;
    - ``backup_state.json``: ``{"epoch": N, "weights": "epoch-NNNNN.weights.h5",
      "sha256": ...}``, replaced the same way *after* the weights are complete.

    The previous backup is deleted only once the new state file points at the
    new weights, so at every moment the state file names a complete backup.
    On ``on_train_begin`` the named weights are checked against their SHA-256
    and loaded, and training continues at the epoch after the last completed
    one. Temporaries left by a killed writer are removed by the next backup.
    When training ends normally these files are deleted, and the folder with
    them unless it holds files of someone else (``delete_checkpoint``).

    It backs up at the end of every epoch (``save_freq="epoch"``); a run
    killed mid-epoch repeats that epoch from its start.

    Args:
        backup_dir: Folder of the backup (created when the first one is written).
        delete_checkpoint: Delete the folder when training ends normally.

    Raises:
        TrainingError: In ``on_train_begin``, if the backup named by the state
            file is missing, does not match its hash, or does not fit the
            model (the message names the file and the fix).
    """

    def __init__(
        self, backup_dir: str | os.PathLike[str], *, delete_checkpoint: bool = True
    ) -> None:
        super().__init__(
            os.fspath(backup_dir), save_freq="epoch", delete_checkpoint=delete_checkpoint
        )
        self._folder = Path(backup_dir)
        self._state_path = self._folder / BACKUP_STATE_FILENAME

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Restore the last complete backup, if there is one."""
        # Keras keeps `_initial_epoch` on the model after a restored fit; a later fit
        # (e.g. the next phase) must not inherit it.
        self.model._initial_epoch = None
        self._load_model()

    def read_state(self) -> dict[str, Any] | None:
        """The parsed backup state file, or ``None`` when there is no backup.

        Returns:
            ``{"epoch": int, "weights": str, "sha256": str}`` or ``None``.

        Raises:
            TrainingError: If the state file exists but is not a valid record.
        """
        return read_backup_state(self._folder, self._state_path)

    def _load_model(self) -> None:
        if not self.model.built:
            msg = (
                f"{type(self).__name__} needs a built model: build {self.model.name!r} "
                "(call it on a batch, or give it an Input) before fit"
            )
            raise TrainingError(msg)
        state = self.read_state()
        if state is not None:
            restore_backup(self.model, self._folder, self._state_path, state)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """Delete the backup (only its own files; the folder too once empty)."""
        if not self.delete_checkpoint or not self._folder.is_dir():
            return
        delete_backup(self._folder, self._state_path)

    def _save_model(self) -> None:
        write_backup(self.model, self._folder, self._state_path, self._current_epoch)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` that writes each file aside and renames it into place.

    Keras' own callback saves over ``filepath`` in place, so a process killed
    while it writes leaves a broken ``best_val_loss.keras`` (and the previous
    best is gone). This one writes to a hidden temporary beside it, fsyncs it
    and renames it over ``filepath``: the file is always a complete model,
    the previous best until the new one is complete. Arguments and behaviour
    are otherwise those of ``keras.callbacks.ModelCheckpoint``.
    """

    def _save_model(self, epoch: int, batch: int | None, logs: Mapping[str, Any] | None) -> None:
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save_model(epoch, batch, logs, filepath):
            return
        target = Path(filepath)
        target.parent.mkdir(parents=True, exist_ok=True)
        suffix = next(
            (end for end in (".weights.h5", ".keras", ".h5") if target.name.endswith(end)), ""
        )
        with atomic_path(target, suffix=suffix) as tmp:
            if self.save_weights_only:
                self.model.save_weights(tmp, overwrite=True)
            else:
                self.model.save(tmp, overwrite=True)
        if self.verbose > 0:
            logger.info("epoch %d: saved the model to %s", epoch + 1, target)


class EpochCSVLogger(keras.callbacks.CSVLogger):
    """Keras' ``CSVLogger`` with 1-based epoch numbers, as every other output of this package.

    It takes ``CSVLogger``'s arguments: ``filename``, ``separator`` and
    ``append`` (append to an existing file, for resumed runs).
    """

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Write the row of the epoch numbered ``epoch + 1``."""
        super().on_epoch_end(epoch + 1, logs)


def _ema_optimizer(model: keras.Model) -> Any:
    optimizer = getattr(model, "optimizer", None)
    return getattr(optimizer, "inner_optimizer", optimizer)  # under a LossScaleOptimizer


class SwapInEMAWeights(keras.callbacks.SwapEMAWeights):
    """Validate, checkpoint and keep the EMA weights an ``use_ema=True`` optimizer trains.

    With ``use_ema=True`` Keras validates every epoch on the raw training
    weights but, when ``fit`` ends, replaces them with their exponential
    moving average (EMA): the model you get is not the one whose figures were
    logged (a short run logged ``val_auc`` 0.50, 0.44, 0.46 and then scored
    ROC AUC 0.78). Put first in the callback list, this callback

    - swaps the EMA weights in for validation, so ``val_*`` figures describe them;
    - leaves them in at the end of each epoch, so the callbacks after it
      (checkpoints, early stopping and its restored "best weights", the backup)
      see the EMA weights, and swaps the raw weights back before the next epoch;
    - keeps the EMA weights of the last epoch at the end of training, also
      when training stopped early (Keras' own ``SwapEMAWeights`` would then
      restore the raw weights).

    [`fit`][cxr_pneumonia.training.fitting.fit] adds it whenever the optimizer has ``use_ema=True``.
    """

    def __init__(self) -> None:
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model: bool = False
        self._raw_weights: list[Any] | None = None

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Put the raw training weights back for the next epoch's steps."""
        if self._raw_weights is not None:
            for variable, raw in zip(
                self.model.trainable_variables, self._raw_weights, strict=True
            ):
                variable.assign(raw)
            self._raw_weights = None
            self._ema_weights_in_model = False

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Copy the EMA weights into the model for the callbacks that follow.

        The raw weights are set aside (to come back at the next epoch's start)
        and the optimizer's averages are left as they are, with ``use_ema`` on:
        Keras' final "copy the averages into the weights" then changes
        nothing, and a checkpoint saved now records the optimizer as it is
        configured, so it loads with plain ``keras.saving.load_model``.
        """
        optimizer = _ema_optimizer(self.model)
        if optimizer is None or self._raw_weights is not None:
            return
        if self._ema_weights_in_model:  # swapped in by an evaluation: put the raw ones back
            self._swap_variables()
            self._ema_weights_in_model = False
        variables = self.model.trainable_variables
        self._raw_weights = [keras.ops.convert_to_numpy(v) for v in variables]
        averages = optimizer._model_variables_moving_average
        for variable, average in zip(variables, averages, strict=True):
            variable.assign(average)
        self._ema_weights_in_model = True

    def on_test_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Validate the EMA weights (already in after an epoch's end)."""
        if self._raw_weights is None:
            super().on_test_begin(logs)

    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """Swap the raw weights back after a validation inside an epoch."""
        if self._raw_weights is None:
            super().on_test_end(logs)


def step_decay(
    initial: float = 0.002, *, drop: float = 0.5, every: int = 10
) -> Callable[[int, float], float]:
    """A step-decay learning-rate schedule for ``keras.callbacks.LearningRateScheduler``.

    The rate is ``initial * drop ** (epoch // every)``: with the defaults
    0.002 for epochs 0-9, 0.001 for 10-19, 0.0005 for 20-29, ...

    Args:
        initial: Learning rate of the first ``every`` epochs (``> 0``).
        drop: Factor applied every ``every`` epochs (``0 < drop <= 1``).
        every: Epochs between drops (``>= 1``).

    Returns:
        A function ``(epoch, lr) -> float`` (the current ``lr`` is ignored).

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> schedule = step_decay(0.002, drop=0.5, every=10)
        >>> schedule(0, 0.0), schedule(10, 0.0), schedule(25, 0.0)
        (0.002, 0.001, 0.0005)
    """
    if not isinstance(initial, (int, float)) or not (math.isfinite(initial) and initial > 0):
        msg = f"step_decay initial must be a finite number > 0; got {initial!r}"
        raise ValueError(msg)
    if not isinstance(drop, (int, float)) or not 0 < drop <= 1:
        msg = f"step_decay drop must be in (0, 1]; got {drop!r}"
        raise ValueError(msg)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        msg = f"step_decay every must be an int >= 1; got {every!r}"
        raise ValueError(msg)

    def schedule(epoch: int, lr: float = 0.0) -> float:
        return float(initial * drop ** (epoch // every))

    return schedule


def warmup_cosine_decay(
    peak: float = 0.002, *, epochs: int, warmup: int = 2, final: float = 1e-6
) -> Callable[[int, float], float]:
    """A linear-warmup, cosine-decay schedule for ``keras.callbacks.LearningRateScheduler``.

    The rate rises linearly over the first ``warmup`` epochs (``peak / (warmup
    + 1)``, ``2 * peak / (warmup + 1)``, ...), reaches ``peak``, then follows
    half a cosine down to ``final`` at the last epoch. Warmup keeps batch
    normalization's running statistics from being wrecked by large first
    steps, and the slow end lets a fixed number of epochs finish on settled
    weights, which is the recipe of the shipped model.

    Args:
        peak: Highest learning rate, reached after the warmup (``> 0``).
        epochs: Total number of epochs the schedule spans (``>= 1``).
        warmup: Warmup epochs (``0 <= warmup < epochs``).
        final: Learning rate at the last epoch (``0 <= final <= peak``).

    Returns:
        A function ``(epoch, lr) -> float`` (the current ``lr`` is ignored).

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> schedule = warmup_cosine_decay(0.002, epochs=12, warmup=1, final=0.0)
        >>> schedule(0), schedule(1), schedule(11)
        (0.001, 0.002, 0.0)
    """
    if not isinstance(peak, (int, float)) or not (math.isfinite(peak) and peak > 0):
        msg = f"warmup_cosine_decay peak must be a finite number > 0; got {peak!r}"
        raise ValueError(msg)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        msg = f"warmup_cosine_decay epochs must be an int >= 1; got {epochs!r}"
        raise ValueError(msg)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup < epochs:
        msg = f"warmup_cosine_decay warmup must be an int in [0, epochs={epochs}); got {warmup!r}"
        raise ValueError(msg)
    if not isinstance(final, (int, float)) or not 0 <= final <= peak:
        msg = f"warmup_cosine_decay final must be in [0, peak={peak}]; got {final!r}"
        raise ValueError(msg)
    decay_epochs = epochs - warmup - 1

    def schedule(epoch: int, lr: float = 0.0) -> float:
        if epoch < warmup:
            return float(peak * (epoch + 1) / (warmup + 1))
        if decay_epochs <= 0:
            return float(peak)
        progress = min(1.0, (epoch - warmup) / decay_epochs)
        return float(final + 0.5 * (peak - final) * (1.0 + math.cos(math.pi * progress)))

    return schedule


def default_callbacks(
    checkpoint_dir: str | os.PathLike[str] | None,
    *,
    patience: int = 5,
    reduce_lr_patience: int = 2,
    reduce_lr_factor: float = 0.5,
    min_learning_rate: float = 1e-7,
    validation: bool = True,
    schedule: Literal["plateau", "cosine"] = "plateau",
) -> list[keras.callbacks.Callback]:
    """The default callbacks of [`cxr_pneumonia.fit`][cxr_pneumonia.training.fitting.fit].

    In this order:

    1. ``EarlyStopping`` on the validation loss, ``restore_best_weights=True``
       (``schedule="plateau"`` only);
    2. ``ReduceLROnPlateau`` on the validation loss (``schedule="plateau"`` only);
    3. [`AtomicModelCheckpoint`][cxr_pneumonia.training.callbacks.AtomicModelCheckpoint] of the
       best validation loss (``best_val_loss.keras``);
    4. [`AtomicModelCheckpoint`][cxr_pneumonia.training.callbacks.AtomicModelCheckpoint] of the
       best validation accuracy (``best_val_accuracy.keras``);
    5. [`EpochCSVLogger`][cxr_pneumonia.training.callbacks.EpochCSVLogger] to
       ``checkpoint_dir/training_log.csv`` (1-based epochs), appending (for resumed runs);
    6. [`AtomicBackupAndRestore`][cxr_pneumonia.training.callbacks.AtomicBackupAndRestore] in
       ``checkpoint_dir/backup``: a run killed mid-training (even with ``kill -9``) resumes after
       the last completed epoch when trained again with the same folder (the backup is deleted when
       training ends).

    Items 3-6 write files and are left out when ``checkpoint_dir`` is ``None``.
    The backup comes last so that an epoch is backed up only once it is logged.

    Args:
        checkpoint_dir: Folder for the checkpoints, log and backup (created if
            needed), or ``None`` for no files.
        patience: Epochs without improvement of the loss before stopping.
        reduce_lr_patience: Epochs without improvement before the learning
            rate is multiplied by ``reduce_lr_factor``.
        reduce_lr_factor: Factor of ``ReduceLROnPlateau`` (``0 < f < 1``).
        min_learning_rate: Floor of ``ReduceLROnPlateau``.
        validation: ``False`` to monitor the training metrics (``loss``,
            ``accuracy``) when there is no validation data.
        schedule: ``"plateau"`` for items 1 and 2; ``"cosine"`` leaves them
            out: [`fit`][cxr_pneumonia.training.fitting.fit] then drives the rate
            with [`warmup_cosine_decay`][cxr_pneumonia.training.callbacks.warmup_cosine_decay]
            and trains for every epoch asked (the default recipe).

    Returns:
        A new list of new callback instances.

    Raises:
        ValueError: If a number is out of range.
    """
    for name, value in (("patience", patience), ("reduce_lr_patience", reduce_lr_patience)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"default_callbacks {name} must be an int >= 1; got {value!r}"
            raise ValueError(msg)
    if not 0 < reduce_lr_factor < 1:
        msg = f"default_callbacks reduce_lr_factor must be in (0, 1); got {reduce_lr_factor!r}"
        raise ValueError(msg)
    if not min_learning_rate >= 0:
        msg = f"default_callbacks min_learning_rate must be >= 0; got {min_learning_rate!r}"
        raise ValueError(msg)
    if schedule not in ("plateau", "cosine"):
        msg = f"default_callbacks schedule must be 'plateau' or 'cosine'; got {schedule!r}"
        raise ValueError(msg)
    prefix = "val_" if validation else ""
    callbacks: list[keras.callbacks.Callback] = []
    if schedule == "plateau":
        callbacks += [
            keras.callbacks.EarlyStopping(
                monitor=f"{prefix}loss", mode="min", patience=patience, restore_best_weights=True
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor=f"{prefix}loss",
                mode="min",
                factor=reduce_lr_factor,
                patience=reduce_lr_patience,
                min_lr=min_learning_rate,
            ),
        ]
    if checkpoint_dir is None:
        return callbacks
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    loss_file = BEST_LOSS_FILENAME.replace("val_", prefix)
    accuracy_file = BEST_ACCURACY_FILENAME.replace("val_", prefix)
    callbacks += [
        AtomicModelCheckpoint(
            str(folder / loss_file), monitor=f"{prefix}loss", mode="min", save_best_only=True
        ),
        AtomicModelCheckpoint(
            str(folder / accuracy_file),
            monitor=f"{prefix}accuracy",
            mode="max",
            save_best_only=True,
        ),
        *run_state_callbacks(folder),
    ]
    return callbacks


def run_state_callbacks(
    checkpoint_dir: str | os.PathLike[str], *, backup_dirname: str = BACKUP_DIRNAME
) -> list[keras.callbacks.Callback]:
    """The callbacks that make a run resumable: an appending ``CSVLogger`` and the backup.

    Args:
        checkpoint_dir: Folder of the log and the backup.
        backup_dirname: Sub-folder of the backup (one per training phase).

    Returns:
        ``[EpochCSVLogger(checkpoint_dir/training_log.csv, append=True),
        AtomicBackupAndRestore(checkpoint_dir/backup_dirname)]``.
    """
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return [
        EpochCSVLogger(str(folder / LOG_FILENAME), append=True),
        AtomicBackupAndRestore(folder / backup_dirname),
    ]
