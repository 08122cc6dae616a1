"""The options of [`fit`][cxr_pneumonia.training.fitting.fit]: metric and optimizer names, checks.

Each check raises ``ValueError`` (``TrainingError`` for a callback that can't
work on the data) with a message naming the option, the value received and what
is allowed, before any training starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import keras
import numpy as np

from cxr_pneumonia.data.splits import DatasetSplits
from cxr_pneumonia.exceptions import TrainingError
from cxr_pneumonia.outputs import OutputKind, output_kind
from cxr_pneumonia.training.callbacks import MultiMetricEarlyStopping, TargetMetricsReached

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "EMA_MOMENTUM",
    "EXTRA_LOG_KEYS",
    "METRIC_NAMES",
    "OPTIMIZERS",
    "callback_metrics",
    "check_callbacks",
    "check_class_weight",
    "check_fraction",
    "check_int",
    "check_model",
    "check_optimizer",
    "check_rate",
    "ema_momentum_for",
    "make_optimizer",
]

METRIC_NAMES: tuple[str, ...] = ("loss", "accuracy", "precision", "recall", "auc", "pr_auc")
"""Metrics of a model compiled by [`fit`][cxr_pneumonia.training.fitting.fit]; validation ones carry
a ``val_`` prefix."""

OPTIMIZERS: dict[str, type[keras.optimizers.Optimizer]] = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}
"""Optimizer names accepted by [`fit`][cxr_pneumonia.training.fitting.fit]."""

EMA_MOMENTUM = 0.99
"""Momentum of the weights' moving average of a long run (see `ema_momentum_for`)."""

EXTRA_LOG_KEYS = ("learning_rate",)
"""Keys fit logs besides the metrics."""

_CLASS_WEIGHT_CHOICES = "'balanced', a dict {0: w0, 1: w1} or None"


def check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        msg = f"fit {name} must be an int >= {minimum}; got {value!r}"
        raise ValueError(msg)
    return int(value)


def check_rate(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        msg = f"fit {name} must be a finite number > 0; got {value!r}"
        raise ValueError(msg)
    return float(value)


def check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        msg = f"fit {name} must be a number in [0, 1); got {value!r}"
        raise ValueError(msg)
    return float(value)


def check_class_weight(
    class_weight: Mapping[int, float] | Literal["balanced"] | None, data: DatasetSplits
) -> dict[int, float] | None:
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            msg = f"fit class_weight must be {_CLASS_WEIGHT_CHOICES}; got {class_weight!r}"
            raise ValueError(msg)
        weights: Mapping[Any, Any] = data.class_weight
        if not weights:
            labels = np.asarray(data.labels.get("train", ()))
            counts = np.bincount(labels.astype(np.int64), minlength=2) if labels.size else None
            if counts is None or counts.min() == 0:
                msg = (
                    "fit class_weight='balanced' needs both classes in the training split; "
                    "pass class_weight=None or a dict"
                )
                raise ValueError(msg)
            weights = {c: labels.size / (2 * counts[c]) for c in (0, 1)}
        source = "data.class_weight"
    elif isinstance(class_weight, Mapping):
        weights = class_weight
        source = "class_weight"
    else:
        msg = f"fit class_weight must be {_CLASS_WEIGHT_CHOICES}; got {class_weight!r}"
        raise ValueError(msg)
    keys = {int(k) if isinstance(k, (int, np.integer)) else k for k in weights}
    if keys != {0, 1}:
        msg = (
            f"{source} must have exactly the keys 0 (NORMAL) and 1 (PNEUMONIA); "
            f"got {sorted(weights, key=str)}"
        )
        raise ValueError(msg)
    checked: dict[int, float] = {}
    for key, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            msg = f"{source}[{key}] must be a number > 0; got {value!r}"
            raise ValueError(msg)
        if not (math.isfinite(float(value)) and float(value) > 0):
            msg = f"{source}[{key}] must be a finite number > 0; got {value!r}"
            raise ValueError(msg)
        checked[int(key)] = float(value)
    return checked


def check_optimizer(optimizer: str | keras.optimizers.Optimizer) -> None:
    if isinstance(optimizer, keras.optimizers.Optimizer):
        if optimizer.built:
            msg = (
                "fit optimizer instance has already been used (it is built); "
                "pass a fresh optimizer or its name"
            )
            raise ValueError(msg)
        return
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        msg = (
            f"fit optimizer must be a keras optimizer or one of: {', '.join(sorted(OPTIMIZERS))}; "
            f"got {optimizer!r}"
        )
        raise ValueError(msg)


def make_optimizer(
    optimizer: str | keras.optimizers.Optimizer,
    learning_rate: float,
    *,
    first: bool,
    strategy: tf.distribute.Strategy,
    weight_decay: float = 0.0,
    ema_momentum: float | None = None,
) -> keras.optimizers.Optimizer:
    """The optimizer of a phase; call it inside ``strategy.scope()``.

    A Keras optimizer (TensorFlow backend) keeps the strategy current when it
    was *constructed* and creates its variables with it, so an instance made
    outside the model's strategy scope fails to build under a
    ``MirroredStrategy`` ("Mixing different tf.distribute.Strategy objects").
    Such an instance (unused: ``check_optimizer`` saw to it) is re-created
    from its config in the scope. A name gets ``weight_decay`` (``0``: none)
    and, when ``ema_momentum`` is not ``None``, an exponential moving average
    of the weights with that momentum; an instance keeps its own.
    """
    if isinstance(optimizer, keras.optimizers.Optimizer):
        config = optimizer.get_config()
        if first:
            if getattr(optimizer, "_distribution_strategy", strategy) is strategy:
                return optimizer
        else:
            config["learning_rate"] = learning_rate
        return type(optimizer).from_config(config)
    options: dict[str, Any] = {"learning_rate": learning_rate}
    if weight_decay:
        options["weight_decay"] = weight_decay
    if ema_momentum is not None:
        options.update(use_ema=True, ema_momentum=ema_momentum)
    return OPTIMIZERS[optimizer.lower()](**options)


def ema_momentum_for(steps: int, *, momentum: float = EMA_MOMENTUM) -> float:
    """The EMA momentum of a phase of ``steps`` optimizer steps.

    ``momentum`` (an average over about ``1 / (1 - momentum)`` steps, 100 for
    0.99) unless that window would exceed a tenth of the phase: a short run
    (a smoke test, a few epochs of a small data set) then averages over a
    tenth of its steps, down to no averaging at all, instead of ending on
    weights that are mostly the initial ones.

    Args:
        steps: Optimizer steps of the phase (``>= 0``).
        momentum: The momentum of a long run.

    Returns:
        A momentum in ``[0, momentum]``.

    Examples:
        >>> ema_momentum_for(3475), ema_momentum_for(200), ema_momentum_for(6)
        (0.99, 0.95, 0.0)
    """
    return float(min(momentum, max(0.0, 1.0 - 10.0 / steps))) if steps > 0 else 0.0


def callback_metrics(callback: keras.callbacks.Callback) -> list[str]:
    if isinstance(callback, (MultiMetricEarlyStopping, TargetMetricsReached)):
        return callback.metric_names
    monitor = getattr(callback, "monitor", None)
    return [monitor] if isinstance(monitor, str) else []


def check_callbacks(
    callbacks: Sequence[keras.callbacks.Callback] | Literal["default"] | None,
    has_validation: bool,
) -> None:
    if callbacks is None or (isinstance(callbacks, str) and callbacks == "default"):
        return
    if isinstance(callbacks, str) or not isinstance(callbacks, Sequence):
        msg = (
            f"fit callbacks must be 'default', None or a list of keras callbacks; got {callbacks!r}"
        )
        raise ValueError(msg)
    known = {*METRIC_NAMES, *EXTRA_LOG_KEYS}
    known |= {f"val_{name}" for name in METRIC_NAMES}
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.Callback):
            msg = f"fit callbacks must be keras.callbacks.Callback instances; got {callback!r}"
            raise ValueError(msg)
        for name in callback_metrics(callback):
            if name.startswith("val_") and not has_validation:
                msg = (
                    f"{type(callback).__name__} monitors {name!r} but the data has no "
                    "validation split; monitor training metrics or load the data with a "
                    "validation split"
                )
                raise TrainingError(msg)
            if isinstance(callback, (MultiMetricEarlyStopping, TargetMetricsReached)) and (
                name not in known
            ):
                msg = (
                    f"{type(callback).__name__} target {name!r} is not a metric fit logs; "
                    f"choose from: {', '.join(sorted(known))}"
                )
                raise ValueError(msg)


def check_model(model: keras.Model) -> OutputKind | None:
    """Check ``model``; return its output kind (``None`` for a model not built yet)."""
    if not isinstance(model, keras.Model):
        msg = f"fit needs a keras.Model (e.g. from build_model); got {type(model).__name__}"
        raise TypeError(msg)
    try:
        model.output_shape  # noqa: B018 - raises for an unbuilt model
    except (AttributeError, ValueError, RuntimeError):
        return None  # subclassed or unbuilt model: nothing to check yet
    try:
        return output_kind(model)
    except ValueError as exc:
        msg = f"fit needs a classifier: {exc}"
        raise ValueError(msg) from None
