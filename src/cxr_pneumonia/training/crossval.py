"""`cross_validate`: patient-grouped, class-stratified K-fold training of a registered model
(or of any model a builder function makes)."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_pneumonia.data.splits import DatasetSplits
from cxr_pneumonia.outputs import output_kind
from cxr_pneumonia.training.fitting import DEFAULT_EPOCHS, fit, match_labels
from cxr_pneumonia.training.result import TrainingResult

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from cxr_pneumonia.data.pipeline import Augmentation

__all__ = ["CrossValidationResult", "ModelBuilder", "cross_validate"]

logger = logging.getLogger("cxr_pneumonia")


@dataclass(frozen=True)
class CrossValidationResult:
    """What [`cross_validate`][cxr_pneumonia.training.crossval.cross_validate] returns.

    Attributes:
        name: The model name (a builder function's ``__name__``).
        folds: Number of folds.
        fold_metrics: Per fold, the metrics of the fold's final model on its
            validation part: ``val_loss``, ``val_accuracy``, ``val_precision``,
            ``val_recall``, ``val_auc``, ``val_pr_auc``.
        mean: Per metric, the mean over the folds.
        std: Per metric, the sample standard deviation (``ddof=1``) over the folds.
        fold_sizes: Per fold, ``(training images, validation images)``.
        training: Per fold, the [`TrainingResult`][cxr_pneumonia.training.result.TrainingResult].
        seed: Seed of the fold assignment (fold ``k`` trains with ``seed + k``).
        wall_time: Seconds for all folds.
    """

    name: str
    folds: int
    fold_metrics: tuple[dict[str, float], ...]
    mean: dict[str, float]
    std: dict[str, float]
    fold_sizes: tuple[tuple[int, int], ...]
    training: tuple[TrainingResult, ...]
    seed: int
    wall_time: float

    def summary(self) -> str:
        """A readable table: one row per metric, ``mean ± std`` then the fold values.

        Returns:
            A multi-line string.
        """
        lines = [f"{self.name}: {self.folds}-fold cross-validation (seed {self.seed})"]
        for metric in self.mean:
            folds = "  ".join(f"{m[metric]:.4f}" for m in self.fold_metrics)
            lines.append(
                f"  {metric:<14} {self.mean[metric]:.4f} ± {self.std[metric]:.4f}   [{folds}]"
            )
        return "\n".join(lines)


# Indirections so tests can swap the heavy parts; they import lazily.
def _grouped_kfold(
    labels: np.ndarray, groups: tuple[str, ...], *, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    from cxr_pneumonia.data.split import grouped_kfold

    return grouped_kfold(labels, groups, folds=folds, seed=seed)


def _make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    augment: Augmentation | bool,
    seed: int,
) -> tf.data.Dataset:
    from cxr_pneumonia.data.pipeline import make_dataset

    return make_dataset(
        images, labels, batch_size=batch_size, shuffle=shuffle, augment=augment, seed=seed
    )


ModelBuilder = Callable[[tuple[int, int, int]], "keras.Model"]
"""A function building a fresh, uncompiled model for an input shape ``(H, W, C)``."""


def _build_model(
    name: str | ModelBuilder, *, input_shape: tuple[int, int, int], **options: Any
) -> keras.Model:
    import keras

    if not isinstance(name, str):
        model = name(input_shape)
        if not isinstance(model, keras.Model):
            msg = (
                f"the cross_validate builder {_label(name)} must return a keras.Model for "
                f"input_shape={input_shape}; it returned {type(model).__name__}"
            )
            raise TypeError(msg)
        return model
    from cxr_pneumonia.models import build_model

    return build_model(name, input_shape=input_shape, **options)


def _label(builder: str | ModelBuilder) -> str:
    if isinstance(builder, str):
        return builder
    return str(getattr(builder, "__name__", type(builder).__name__))


def _pool(data: DatasetSplits) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    parts = [split for split in ("train", "validation") if split in data.labels]
    missing = [split for split in parts if split not in data.images or split not in data.patients]
    if not parts or missing:
        msg = (
            "cross_validate needs the images, labels and patients of the training files "
            "(data.images/labels/patients for 'train'); missing for: "
            f"{', '.join(missing or ['train'])}"
        )
        raise ValueError(msg)
    images = np.concatenate([np.asarray(data.images[split]) for split in parts])
    labels = np.concatenate([np.asarray(data.labels[split]) for split in parts]).astype(np.int32)
    patients = tuple(p for split in parts for p in data.patients[split])
    if not len(images) == len(labels) == len(patients):
        msg = (
            f"data images ({len(images)}), labels ({len(labels)}) and patients ({len(patients)}) "
            "of the training files are not aligned"
        )
        raise ValueError(msg)
    return images, labels, patients


def _balanced(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels, minlength=2)
    return {c: float(labels.size / (2 * counts[c])) if counts[c] else 1.0 for c in (0, 1)}


def cross_validate(
    name: str | ModelBuilder,
    data: DatasetSplits,
    *,
    folds: int = 5,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    model_options: Mapping[str, Any] | None = None,
    augment: Augmentation | bool = True,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    **fit_options: Any,
) -> CrossValidationResult:
    """Train one fresh model per fold of a patient-grouped, class-stratified K-fold.

    The folds cover the *training files* of ``data``: its ``train`` and
    ``validation`` parts pooled (the test split is never touched). Every fold
    keeps each patient on one side and about the class balance of the whole.
    For fold ``k``, a new model ``build_model(name, input_shape=(H, W, C),
    **model_options)`` (or ``name((H, W, C))`` for a builder function) is
    built after ``keras.utils.set_random_seed(seed + k)``,
    trained with [`fit`][cxr_pneumonia.training.fitting.fit] (``seed=seed + k``,
    balanced class weights of the fold unless ``class_weight`` is given) and
    evaluated on the fold's validation part.

    Args:
        name: A registered model name (see ``list_models()``), or a function
            ``input_shape -> keras.Model`` returning a fresh, uncompiled model
            (sigmoid or 2-unit softmax output) each call, as a study that
            builds its own model needs. The result's ``name`` is then the
            function's ``__name__``.
        data: The data set; its ``images``, ``labels`` and ``patients`` of
            ``"train"`` (and ``"validation"`` if present) are used, batched
            with ``data.batch_size``.
        folds: Number of folds (``>= 2``, at most the number of patients).
        epochs: Epochs of each fold's training (the default recipe's, as ``fit``).
        seed: Seed of the fold assignment, the pipelines and the training.
        model_options: Keyword arguments of ``build_model`` (e.g.
            ``{"weights": None, "dropout": 0.3}``); ``input_shape`` comes from the data.
        augment: Augmentation of each fold's training part (see ``make_dataset``):
            ``True`` is the default recipe's
            [`Augmentation()`][cxr_pneumonia.data.augment.Augmentation], ``False`` none.
        checkpoint_dir: If given, fold ``k`` writes its checkpoints in
            ``checkpoint_dir/fold-k`` (and resumes from it).
        **fit_options: More keyword arguments of [`fit`][cxr_pneumonia.training.fitting.fit] (e.g.
            ``learning_rate``, ``callbacks``, ``verbose``).

    Returns:
        A [`CrossValidationResult`][cxr_pneumonia.training.crossval.CrossValidationResult].

    Raises:
        ValueError: If ``folds``, ``model_options`` or the data are invalid
            (``model_options`` with a builder function).
        TypeError: If ``name`` is neither a string nor callable, or the
            builder returns something other than a ``keras.Model``.
        UnknownModelError: If ``name`` is not registered.

    Examples:
        >>> def small_cnn(input_shape):                         # doctest: +SKIP
        ...     inputs = keras.Input(input_shape)
        ...     ...
        >>> result = cross_validate(small_cnn, data, folds=5)    # doctest: +SKIP
    """
    import keras

    started = time.perf_counter()
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        msg = f"cross_validate folds must be an int >= 2; got {folds!r}"
        raise ValueError(msg)
    if not isinstance(name, str) and not callable(name):
        msg = (
            f"cross_validate name must be a registered model name or a function "
            f"input_shape -> keras.Model; got {type(name).__name__}"
        )
        raise TypeError(msg)
    if not isinstance(name, str) and model_options:
        msg = (
            "cross_validate model_options apply to registry names; a builder function "
            "takes only input_shape: set its options inside it (e.g. functools.partial)"
        )
        raise ValueError(msg)
    options = dict(model_options or {})
    if "input_shape" in options:
        msg = "cross_validate takes input_shape from the data; remove it from model_options"
        raise ValueError(msg)
    images, labels, patients = _pool(data)
    if images.ndim != 4:
        msg = f"cross_validate needs images of shape (N, H, W, C); got {images.shape}"
        raise ValueError(msg)
    input_shape = (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
    splits = _grouped_kfold(labels, patients, folds=folds, seed=seed)
    fold_metrics: list[dict[str, float]] = []
    fold_sizes: list[tuple[int, int]] = []
    results: list[TrainingResult] = []
    for k, (train_idx, val_idx) in enumerate(splits):
        fold_seed = seed + k
        logger.info(
            "fold %d/%d: %d training, %d validation images",
            k + 1,
            folds,
            len(train_idx),
            len(val_idx),
        )
        train_ds = _make_dataset(
            images[train_idx],
            labels[train_idx],
            batch_size=data.batch_size,
            shuffle=True,
            augment=augment,
            seed=fold_seed,
        )
        val_ds = _make_dataset(
            images[val_idx],
            labels[val_idx],
            batch_size=data.batch_size,
            shuffle=False,
            augment=False,
            seed=fold_seed,
        )
        fold_data = dataclasses.replace(
            data,
            train=train_ds,
            validation=val_ds,
            test=None,
            files={},
            labels={"train": labels[train_idx], "validation": labels[val_idx]},
            patients={
                "train": tuple(patients[i] for i in train_idx),
                "validation": tuple(patients[i] for i in val_idx),
            },
            images={"train": images[train_idx], "validation": images[val_idx]},
            class_weight=_balanced(labels[train_idx]),
            source=f"{data.source} (fold {k + 1}/{folds})",
        )
        keras.utils.set_random_seed(fold_seed)
        model = _build_model(name, input_shape=input_shape, **options)
        fold_dir = Path(checkpoint_dir) / f"fold-{k}" if checkpoint_dir is not None else None
        result = fit(
            model, fold_data, epochs=epochs, seed=fold_seed, checkpoint_dir=fold_dir, **fit_options
        )
        scores = model.evaluate(
            match_labels(val_ds, output_kind(model)), verbose=0, return_dict=True
        )
        metrics = {f"val_{key}": float(value) for key, value in scores.items()}
        logger.info(
            "fold %d/%d: %s", k + 1, folds, ", ".join(f"{m}={v:.4f}" for m, v in metrics.items())
        )
        fold_metrics.append(metrics)
        fold_sizes.append((len(train_idx), len(val_idx)))
        results.append(result)
        del model
        keras.backend.clear_session()
    names = list(fold_metrics[0])
    mean = {m: float(np.mean([f[m] for f in fold_metrics])) for m in names}
    std = {
        m: float(np.std([f[m] for f in fold_metrics], ddof=1))
        if len(fold_metrics) > 1
        else math.nan
        for m in names
    }
    return CrossValidationResult(
        name=_label(name),
        folds=folds,
        fold_metrics=tuple(fold_metrics),
        mean=mean,
        std=std,
        fold_sizes=tuple(fold_sizes),
        training=tuple(results),
        seed=seed,
        wall_time=time.perf_counter() - started,
    )
