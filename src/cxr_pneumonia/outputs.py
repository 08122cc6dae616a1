"""The one place that turns a model's output into the probability of PNEUMONIA.

A classifier of this library ends with either

- ``"sigmoid"``: shape ``(N, 1)`` (or ``(N,)``), the probability of the
  class at index 1 of ``class_names``; or
- ``"softmax"``: shape ``(N, 2)``, one probability per class, in
  ``class_names`` order (``("NORMAL", "PNEUMONIA")`` by default).

[`output_kind`][cxr_pneumonia.outputs.output_kind] reads which from a model,
[`positive_probability`][cxr_pneumonia.outputs.positive_probability] reduces a
NumPy batch,
[`positive_probability_tensor`][cxr_pneumonia.outputs.positive_probability_tensor]
does the same in a TensorFlow graph (SavedModel export, Grad-CAM's gradient tape). Training,
evaluation, bundles, the Predictor, export and Grad-CAM all call these, so
both output kinds behave the same everywhere.

Imports nothing of ours but `cxr_pneumonia.exceptions`; TensorFlow only
inside [`positive_probability_tensor`][cxr_pneumonia.outputs.positive_probability_tensor].
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

__all__ = [
    "OUTPUT_KINDS",
    "OutputKind",
    "output_kind",
    "positive_probability",
    "positive_probability_tensor",
]

OutputKind = Literal["sigmoid", "softmax"]

OUTPUT_KINDS: tuple[str, ...] = ("sigmoid", "softmax")
"""The output kinds every part of the library accepts."""

_WIDTHS: dict[int, OutputKind] = {1: "sigmoid", 2: "softmax"}


def output_kind(model: Any) -> OutputKind:
    """Which output a Keras model has, from its output shape.

    Args:
        model: A ``keras.Model`` with one output.

    Returns:
        ``"sigmoid"`` for ``(N, 1)`` or ``(N,)``, ``"softmax"`` for ``(N, 2)``.

    Raises:
        ValueError: If the model has several outputs or another output shape.
    """
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        count = len(outputs) if outputs else 0
        msg = (
            f"the model must have exactly one output, sigmoid (N, 1) or softmax (N, 2); "
            f"it has {count}"
        )
        raise ValueError(msg)
    shape = tuple(outputs[0].shape)[1:]
    width = 1
    for dim in shape:
        width *= int(dim) if dim is not None else 0
    if len(shape) > 1 or width not in _WIDTHS:
        msg = (
            f"the model's output shape {tuple(outputs[0].shape)} is neither (N, 1) (sigmoid, "
            "probability of PNEUMONIA) nor (N, 2) (softmax over NORMAL, PNEUMONIA); end the "
            "model with Dense(1, 'sigmoid') or Dense(2, 'softmax')"
        )
        raise ValueError(msg)
    return _WIDTHS[width]


def positive_probability(outputs: Any, *, positive_index: int = 1) -> np.ndarray:
    """Reduce a batch of model outputs to the positive class's probability.

    Args:
        outputs: ``(N,)`` or ``(N, 1)`` sigmoid probabilities of the class at
            index 1, or ``(N, 2)`` softmax probabilities (any array-like).
        positive_index: Index of the positive class (PNEUMONIA) in
            ``class_names``: 1 (the default order) or 0.

    Returns:
        ``float64`` array of shape ``(N,)``.

    Raises:
        ValueError: For several outputs, another shape, or a bad
            ``positive_index``.
    """
    if isinstance(outputs, (dict, list, tuple)):
        msg = f"the model must have one output; got {type(outputs).__name__} of outputs"
        raise ValueError(msg)
    _check_index(positive_index)
    array = np.asarray(outputs, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == 2:
        return array[:, positive_index]
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        msg = (
            "the model output must have shape (N,), (N, 1) (sigmoid) or (N, 2) "
            f"(softmax, NORMAL first); got {array.shape}"
        )
        raise ValueError(msg)
    return array if positive_index == 1 else 1.0 - array


def positive_probability_tensor(outputs: Any, *, positive_index: int = 1) -> Any:
    """``positive_probability`` for a TensorFlow tensor, in the graph.

    Args:
        outputs: A float tensor ``(N, 1)`` or ``(N, 2)`` (static last axis).
        positive_index: Index of the positive class, 1 or 0.

    Returns:
        A float32 tensor of shape ``(N,)``.

    Raises:
        ValueError: For another static shape or a bad ``positive_index``.
    """
    import tensorflow as tf

    _check_index(positive_index)
    outputs = tf.cast(outputs, tf.float32)
    width = outputs.shape[-1] if outputs.shape.rank == 2 else None
    if width == 2:
        return outputs[:, positive_index]
    if width == 1:
        column = outputs[:, 0]
        return column if positive_index == 1 else 1.0 - column
    msg = f"the model output must have shape (N, 1) or (N, 2); got {outputs.shape}"
    raise ValueError(msg)


def _check_index(positive_index: int) -> None:
    if positive_index not in (0, 1) or isinstance(positive_index, bool):
        msg = f"positive_index must be 0 or 1 (a binary classifier); got {positive_index!r}"
        raise ValueError(msg)
