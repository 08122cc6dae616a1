"""The custom convolutional networks: ``cnn`` (the notebook), ``cnn-small``, ``cnn-medium``.

All take raw ``0..255`` pixels with the channel count of ``input_shape``
(1 for grayscale, 3 for RGB) and scale them to ``[0, 1]`` inside the graph
([`PixelPreprocessing`][cxr_pneumonia.models.layers.PixelPreprocessing]). An input with the
other channel count is the caller's job to convert (``prepare_image(...,
color_mode=...)``); the model's input shape says which it expects.
"""

from __future__ import annotations

import keras
from keras import layers

from cxr_pneumonia.models.heads import OutputKind, add_output
from cxr_pneumonia.models.layers import PixelPreprocessing

__all__ = ["build_cnn", "build_cnn_medium", "build_cnn_small"]

CNN_FILTERS: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 1024)
"""Filters of the eight conv blocks of ``cnn``."""

CNN_BLOCK_DROPOUT = 0.2
"""Default dropout rate after blocks 6, 7 and 8 of ``cnn``."""

CNN_DENSE_DROPOUT = 0.5
"""Default dropout rate after the 1024-unit dense layer of ``cnn``."""

CNN_SMALL_DROPOUT = 0.3
"""Default dropout rate before the classifier of ``cnn-small``."""

CNN_SMALL_STEM: tuple[int, int] = (16, 32)
"""Filters of the two strided 3x3 stem convolutions of ``cnn-small``."""

CNN_SMALL_STAGES: tuple[tuple[int, int], ...] = ((48, 1), (96, 2), (192, 2))
"""``(filters, residual blocks)`` of the separable stages of ``cnn-small``."""

CNN_MEDIUM_STEM: tuple[int, int] = (32, 64)
"""Filters of the two strided 3x3 stem convolutions of ``cnn-medium``."""

CNN_MEDIUM_STAGES: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 1))
"""``(filters, residual blocks)`` of the separable stages of ``cnn-medium``.

Four stages instead of three (the last at 1/64 of the input, 4x4 at 224 px),
twice the stem width and about five times ``cnn-small``'s parameters (1.07 M);
a training step costs about 2.2 times as much on a CPU."""

CNN_SMALL_PREPROCESSING = "unit"
"""Pixel preprocessing of ``cnn-small`` (a mode of ``PixelPreprocessing``).

``"unit"`` (``[0, 1]``) is the scaling of the shipped model. ``"standardize"``
(each image to zero mean and unit standard deviation, so global brightness
and contrast never reach the network) is available for recipe searches: with
stronger intensity and scale augmentation it made specificity at the
threshold steadier under shifts but lowered ROC AUC (the shift-robustness
guide's table of recipes), so it is not the default."""

CNN_SMALL_BN_MOMENTUM = 0.9
"""Momentum of ``cnn-small``'s batch-normalization running statistics.

Keras' default (0.99) averages over a few hundred steps, longer than an epoch
of this data set (about 140 batches of 32): the running statistics then lag
the weights and validation scores swing from epoch to epoch. 0.9 tracks them
within a few dozen steps."""


def build_cnn(
    input_shape: tuple[int, int, int],
    *,
    dropout: float | None = None,
    output: OutputKind = "sigmoid",
    name: str = "cnn",
) -> keras.Model:
    """The custom CNN of the reference notebook, layer for layer.

    Eight blocks of ``Conv2D(3x3, "same")`` -> ``BatchNormalization`` (from
    the third block on) -> ``LeakyReLU`` -> ``MaxPooling2D(2x2)``, the order
    of the notebook's summary, with 8, 16, ..., 1024 filters, dropout after
    blocks 6, 7 and 8, then ``Flatten``, ``Dense(1024)`` -> ``LeakyReLU`` ->
    dropout and ``Dense(1, sigmoid)``. At ``(300, 300, 3)`` it has 7,352,017
    parameters (7,347,985 trainable), as in the notebook's summary.

    What differs from the notebook: the ``[0, 1]`` scaling is a layer of the
    model (the notebook rescaled in its ``ImageDataGenerator``), and pooling
    is skipped along an axis whose feature map is already 1 pixel wide, so
    the model also builds at 224 px (or 32 px), where the notebook's last
    poolings would fail; at 300 px every block pools, as in the notebook.

    Args:
        input_shape: ``(height, width, channels)``.
        dropout: Rate of every dropout layer; ``None`` uses
            `CNN_BLOCK_DROPOUT` after the conv blocks and
            `CNN_DENSE_DROPOUT` after the dense layer.
        output: ``"sigmoid"`` (one unit) or ``"softmax"`` (two units).
        name: Model name.

    Returns:
        An uncompiled model (float32 output).
    """
    block_rate = CNN_BLOCK_DROPOUT if dropout is None else dropout
    dense_rate = CNN_DENSE_DROPOUT if dropout is None else dropout
    inputs = keras.Input(shape=input_shape, name="image")
    x = PixelPreprocessing("unit", name="preprocess")(inputs)
    height, width = input_shape[0], input_shape[1]
    for index, filters in enumerate(CNN_FILTERS, start=1):
        x = layers.Conv2D(filters, 3, padding="same", name=f"block{index}_conv")(x)
        if index >= 3:
            x = layers.BatchNormalization(name=f"block{index}_bn")(x)
        x = layers.LeakyReLU(name=f"block{index}_act")(x)
        pool = (2 if height >= 2 else 1, 2 if width >= 2 else 1)
        if pool != (1, 1):
            x = layers.MaxPooling2D(pool, name=f"block{index}_pool")(x)
            height, width = height // pool[0], width // pool[1]
        if index >= 6:
            x = layers.Dropout(block_rate, name=f"block{index}_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(1024, name="dense")(x)
    x = layers.LeakyReLU(name="dense_act")(x)
    x = layers.Dropout(dense_rate, name="dense_dropout")(x)
    outputs = add_output(x, output)
    return keras.Model(inputs, outputs, name=name)


def _conv_bn(x: keras.KerasTensor, filters: int, strides: int, name: str) -> keras.KerasTensor:
    x = layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(momentum=CNN_SMALL_BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _separable_block(
    x: keras.KerasTensor, filters: int, strides: int, name: str
) -> keras.KerasTensor:
    """Two depthwise-separable 3x3 convs with BN, plus a (projected) shortcut."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        if strides != 1:
            shortcut = layers.AveragePooling2D(strides, padding="same", name=f"{name}_skip_pool")(
                shortcut
            )
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_skip_conv")(shortcut)
        shortcut = layers.BatchNormalization(
            momentum=CNN_SMALL_BN_MOMENTUM, name=f"{name}_skip_bn"
        )(shortcut)
    y = layers.SeparableConv2D(
        filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_sep1"
    )(x)
    y = layers.BatchNormalization(momentum=CNN_SMALL_BN_MOMENTUM, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_sep2")(y)
    y = layers.BatchNormalization(momentum=CNN_SMALL_BN_MOMENTUM, name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def _build_separable_resnet(
    input_shape: tuple[int, int, int],
    *,
    stem: tuple[int, int],
    stages: tuple[tuple[int, int], ...],
    dropout: float,
    output: OutputKind,
    preprocessing: str,
    name: str,
) -> keras.Model:
    """The body ``cnn-small`` and ``cnn-medium`` share, at the given widths.

    Two strided 3x3 convolutions (``stem``) bring the image to 1/4 of its
    size, then each ``(filters, blocks)`` stage of residual depthwise-separable
    blocks starts with a stride-2 block; global average pooling, dropout and
    the classifier follow. Layer names do not depend on the widths.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = PixelPreprocessing(preprocessing, name="preprocess")(inputs)
    x = _conv_bn(x, stem[0], 2, "stem1")
    x = _conv_bn(x, stem[1], 2, "stem2")
    for stage, (filters, blocks) in enumerate(stages, start=1):
        for block in range(1, blocks + 1):
            strides = 2 if block == 1 else 1
            x = _separable_block(x, filters, strides, f"stage{stage}_block{block}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = add_output(x, output)
    return keras.Model(inputs, outputs, name=name)


def build_cnn_small(
    input_shape: tuple[int, int, int],
    *,
    dropout: float | None = None,
    output: OutputKind = "sigmoid",
    preprocessing: str = CNN_SMALL_PREPROCESSING,
    name: str = "cnn-small",
) -> keras.Model:
    """A small, CPU-friendly residual CNN (about 0.21 M parameters).

    Designed for accuracy per CPU second on grayscale radiographs at 128-224
    px: two strided 3x3 convolutions bring the image to 1/4 of its size
    cheaply (chest X-ray findings are coarse, `CNN_SMALL_STEM`), then three
    stages of residual blocks of depthwise-separable convolutions with batch
    normalization (`CNN_SMALL_STAGES`; each stage starts with a stride-2 block),
    global average pooling, dropout and a sigmoid unit. Global pooling makes
    the parameter count independent of the input size.

    Args:
        input_shape: ``(height, width, channels)``.
        dropout: Rate of the dropout before the classifier; ``None`` uses
            `CNN_SMALL_DROPOUT`.
        output: ``"sigmoid"`` (one unit, the default and the shipped model's)
            or ``"softmax"`` (two units).
        preprocessing: A mode of
            [`PixelPreprocessing`][cxr_pneumonia.models.layers.PixelPreprocessing];
            `CNN_SMALL_PREPROCESSING` by default (``"unit"`` is the
            scaling of the first shipped model).
        name: Model name.

    Returns:
        An uncompiled model (float32 output).
    """
    return _build_separable_resnet(
        input_shape,
        stem=CNN_SMALL_STEM,
        stages=CNN_SMALL_STAGES,
        dropout=CNN_SMALL_DROPOUT if dropout is None else dropout,
        output=output,
        preprocessing=preprocessing,
        name=name,
    )


def build_cnn_medium(
    input_shape: tuple[int, int, int],
    *,
    dropout: float | None = None,
    output: OutputKind = "sigmoid",
    preprocessing: str = CNN_SMALL_PREPROCESSING,
    name: str = "cnn-medium",
) -> keras.Model:
    """``cnn-small``'s design, wider and one stage deeper (about 1.07 M parameters).

    The larger from-scratch residual CNN of the recipe search: stem widths
    `CNN_MEDIUM_STEM` and stages `CNN_MEDIUM_STAGES` (a fourth stage at
    1/64 of the input gives it a receptive field that covers the whole lung
    field at 224 px). About 2.2 times ``cnn-small``'s training cost per step;
    the 40-epoch recipe took 74 minutes on two CPU cores shared with two
    other training runs.
    Whether it beats ``cnn-small`` under shift is in the shift-robustness
    guide's table of recipes.

    Args:
        input_shape: ``(height, width, channels)``.
        dropout: Rate of the dropout before the classifier; ``None`` uses
            `CNN_SMALL_DROPOUT`.
        output: ``"sigmoid"`` (one unit) or ``"softmax"`` (two units).
        preprocessing: A mode of
            [`PixelPreprocessing`][cxr_pneumonia.models.layers.PixelPreprocessing]
            (``"unit"`` by default, as ``cnn-small``).
        name: Model name.

    Returns:
        An uncompiled model (float32 output).
    """
    return _build_separable_resnet(
        input_shape,
        stem=CNN_MEDIUM_STEM,
        stages=CNN_MEDIUM_STAGES,
        dropout=CNN_SMALL_DROPOUT if dropout is None else dropout,
        output=output,
        preprocessing=preprocessing,
        name=name,
    )
