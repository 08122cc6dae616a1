"""The classifier output every model ends with: one sigmoid unit or a 2-unit softmax.

``"sigmoid"`` (the default everywhere) gives ``(N, 1)``, the probability of
PNEUMONIA; ``"softmax"`` gives ``(N, 2)``, the probabilities of
``(NORMAL, PNEUMONIA)`` in that order, as a two-class cross-entropy model
(e.g. the PyTorch report's) outputs them. The rest of the library reads
either through `cxr_pneumonia.outputs.positive_probability`.
"""

from __future__ import annotations

from typing import Literal

import keras
from keras import layers

__all__ = ["OUTPUT_KINDS", "OutputKind", "add_output"]

OutputKind = Literal["sigmoid", "softmax"]

OUTPUT_KINDS: tuple[str, ...] = ("sigmoid", "softmax")
"""The accepted ``output=`` values of [`build_model`][cxr_pneumonia.models.registry.build_model]."""

OUTPUT_LAYER_NAME = "pneumonia"
"""Name of the final layer of every registry model, whatever its output kind."""


def add_output(x: keras.KerasTensor, output: OutputKind = "sigmoid") -> keras.KerasTensor:
    """Append the classifier layer (float32, also under mixed precision).

    Args:
        x: The features (rank 2).
        output: ``"sigmoid"`` (one unit) or ``"softmax"`` (two units,
            NORMAL then PNEUMONIA).

    Returns:
        The output tensor.
    """
    if output == "softmax":
        return layers.Dense(2, activation="softmax", dtype="float32", name=OUTPUT_LAYER_NAME)(x)
    return layers.Dense(1, activation="sigmoid", dtype="float32", name=OUTPUT_LAYER_NAME)(x)
