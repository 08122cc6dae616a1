"""Plain layer stacks described as data: the source studies' small networks.

A stack is a tuple of layer specs (`Conv`, `BatchNorm`,
`Act`, `Pool`, `Drop`, `Flatten`,
`Dense`) that `build_stack`, the one generic builder, turns
into a Keras model in order, after the in-graph ``[0, 1]`` scaling and before
the classifier output (`add_output`). The
registry's ``dense-kfold``, ``cnn-kfold``, ``cnn1``, ``cnn2`` and ``cnn3``
are such tables (`STACKS`); the widths the sources do not state are
chosen here and documented in `STACKS`' entries and in the Models guide.

`Act` layers use the stack's hidden activation, an option of
[`build_model`][cxr_pneumonia.models.registry.build_model] (``activation="relu"`` or
``"sigmoid"``), as the PyTorch report compares both.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from cxr_pneumonia.models.heads import OutputKind, add_output
from cxr_pneumonia.models.layers import PixelPreprocessing

__all__ = [
    "ACTIVATIONS",
    "STACKS",
    "Act",
    "BatchNorm",
    "Conv",
    "Dense",
    "Drop",
    "Flatten",
    "LayerSpec",
    "Pool",
    "build_stack",
]

ACTIVATIONS: tuple[str, ...] = ("relu", "sigmoid")
"""Hidden activations a stack accepts."""


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution, ``"same"`` padding, no activation (see `Act`).

    Attributes:
        filters: Output channels.
        kernel: Square kernel size.
        l2: L2 weight-decay factor of the kernel (0 for none).
    """

    filters: int
    kernel: int = 3
    l2: float = 0.0


@dataclass(frozen=True)
class Dense:
    """A fully connected layer, no activation (see `Act`).

    Attributes:
        units: Output units.
        l2: L2 weight-decay factor of the kernel (0 for none).
    """

    units: int
    l2: float = 0.0


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalization over the last axis."""


@dataclass(frozen=True)
class Act:
    """The stack's hidden activation (``relu`` or ``sigmoid``)."""


@dataclass(frozen=True)
class Pool:
    """2x2 max pooling (skipped on an axis already 1 pixel wide)."""


@dataclass(frozen=True)
class Drop:
    """Dropout.

    Attributes:
        rate: Dropout rate; ``build_model(dropout=...)`` replaces it.
    """

    rate: float


@dataclass(frozen=True)
class Flatten:
    """Flatten the feature map to a vector."""


LayerSpec = Conv | Dense | BatchNorm | Act | Pool | Drop | Flatten

_L2_KFOLD = 1e-3

STACKS: dict[str, tuple[LayerSpec, ...]] = {
    # The KFold study's dense baseline: 393,521 parameters at 64x64x3
    # (12,288 inputs -> 32 -> 8 -> 1), the input size of its ResNet50.
    "dense-kfold": (Flatten(), Dense(32), Act(), Dense(8), Act()),
    # The KFold study's L2-regularized small CNN baseline. The study gives no
    # widths: chosen here are 32 and 64 filters, a 64-unit dense layer,
    # L2 1e-3 on every kernel and dropout 0.5 (1,068,097 parameters at 64x64x3).
    "cnn-kfold": (
        Conv(32, 3, l2=_L2_KFOLD),
        Act(),
        Pool(),
        Conv(64, 3, l2=_L2_KFOLD),
        Act(),
        Pool(),
        Flatten(),
        Dense(64, l2=_L2_KFOLD),
        Act(),
        Drop(0.5),
    ),
    # The PyTorch report's CNN1 (160x160 input): conv-BN-act, conv-BN-maxpool-act,
    # conv-BN-act, linear. Widths chosen here: 8, 16, 16 filters of 3x3.
    "cnn1": (
        Conv(8, 3),
        BatchNorm(),
        Act(),
        Conv(16, 3),
        BatchNorm(),
        Pool(),
        Act(),
        Conv(16, 3),
        BatchNorm(),
        Act(),
        Flatten(),
    ),
    # CNN2: deeper, 5x5 kernels then 3x3, two max-pools, dropout 0.2. Chosen:
    # 16, 16 filters of 5x5, then 32, 32 filters of 3x3, a pool after each pair.
    "cnn2": (
        Conv(16, 5),
        BatchNorm(),
        Act(),
        Conv(16, 5),
        BatchNorm(),
        Pool(),
        Act(),
        Conv(32, 3),
        BatchNorm(),
        Act(),
        Conv(32, 3),
        BatchNorm(),
        Pool(),
        Act(),
        Drop(0.2),
        Flatten(),
    ),
    # CNN3: conv-act blocks with max-pools, then several fully connected
    # layers. Chosen: 16, 32, 64 filters of 3x3 each pooled, then 128 and 64.
    "cnn3": (
        Conv(16, 3),
        Act(),
        Pool(),
        Conv(32, 3),
        Act(),
        Pool(),
        Conv(64, 3),
        Act(),
        Pool(),
        Flatten(),
        Dense(128),
        Act(),
        Dense(64),
        Act(),
    ),
}
"""The registry's layer tables: name -> layer specs (before the output layer)."""


def build_stack(
    input_shape: tuple[int, int, int],
    *,
    layers_spec: tuple[LayerSpec, ...],
    activation: str = "relu",
    dropout: float | None = None,
    output: OutputKind = "sigmoid",
    name: str,
) -> keras.Model:
    """Build a layer table into a model: ``[0, 1]`` scaling, the layers, the output.

    Args:
        input_shape: ``(height, width, channels)``.
        layers_spec: The table, e.g. ``STACKS["cnn1"]``.
        activation: Hidden activation of every `Act`, one of
            `ACTIVATIONS`.
        dropout: Rate of every `Drop`; ``None`` keeps the table's.
        output: ``"sigmoid"`` (one unit) or ``"softmax"`` (two units).
        name: Model name.

    Returns:
        An uncompiled model.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = PixelPreprocessing("unit", name="preprocess")(inputs)
    height, width = input_shape[0], input_shape[1]
    counts: dict[str, int] = {}

    def next_name(kind: str) -> str:
        counts[kind] = counts.get(kind, 0) + 1
        return f"{kind}{counts[kind]}"

    for spec in layers_spec:
        if isinstance(spec, Conv):
            regularizer = keras.regularizers.L2(spec.l2) if spec.l2 else None
            x = layers.Conv2D(
                spec.filters,
                spec.kernel,
                padding="same",
                kernel_regularizer=regularizer,
                name=next_name("conv"),
            )(x)
        elif isinstance(spec, Dense):
            regularizer = keras.regularizers.L2(spec.l2) if spec.l2 else None
            x = layers.Dense(spec.units, kernel_regularizer=regularizer, name=next_name("dense"))(x)
        elif isinstance(spec, BatchNorm):
            x = layers.BatchNormalization(name=next_name("bn"))(x)
        elif isinstance(spec, Act):
            x = layers.Activation(activation, name=next_name("act"))(x)
        elif isinstance(spec, Pool):
            pool = (2 if height >= 2 else 1, 2 if width >= 2 else 1)
            if pool != (1, 1):
                x = layers.MaxPooling2D(pool, name=next_name("pool"))(x)
                height, width = height // pool[0], width // pool[1]
        elif isinstance(spec, Drop):
            rate = spec.rate if dropout is None else dropout
            x = layers.Dropout(rate, name=next_name("dropout"))(x)
        else:
            x = layers.Flatten(name=next_name("flatten"))(x)
    outputs = add_output(x, output)
    return keras.Model(inputs, outputs, name=name)
