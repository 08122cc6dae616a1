"""The classifier output every model ends with: one sigmoid unit or a 2-unit softmax.

``"sigmoid"`` (the default everywhere) gives ``(N, 1)``, the probability of
PNEUMONIA; ``"softmax"`` gives ``(N, 2)``, the probabilities of
``(NORMAL, PNEUMONIA)`` in that order, as a two-class cross-entropy model
(e.g. the PyTorch report's) outputs them. The rest of the library reads
either through `cxr_pneumonia.outputs.positive_probability`.
"""

from __future__ import annotations

import keras
from keras import layers

from cxr_pneumonia.outputs import OUTPUT_KINDS, OutputKind

__all__ = ["OUTPUT_KINDS", "OUTPUT_LAYER_NAME", "OutputKind", "add_output"]

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
