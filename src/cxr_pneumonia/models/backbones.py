"""ImageNet backbones from ``keras.applications`` with a binary classification head.

Every backbone model is::

    image (H, W, 1|3), raw 0..255
      -> RepeatChannels(3)            1 channel -> 3 identical channels
      -> PixelPreprocessing(mode)     the backbone's own preprocess_input
      -> "backbone"                   keras.applications.<App>(include_top=False),
                                      called with training=False
      -> GlobalAveragePooling2D        or GlobalMaxPooling2D, or Flatten (``pooling``)
      -> [Dense(units, relu) -> Dropout]... -> Dropout
      -> Dense(1, sigmoid, float32)   or Dense(2, softmax) (``output``)

The base is a nested ``keras.Model`` named `BACKBONE_NAME` (find it with
[`find_backbone`][cxr_pneumonia.models.backbones.find_backbone], e.g. for Grad-CAM on its last
convolution). It is always called with ``training=False``, so its batch normalization layers stay in
inference mode, also when unfrozen for fine-tuning (the usual transfer learning practice:
fine-tuning does not wreck the ImageNet statistics on small batches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
from keras import layers

from cxr_pneumonia.models.heads import OutputKind, add_output
from cxr_pneumonia.models.layers import PixelPreprocessing, RepeatChannels

__all__ = [
    "BACKBONE_NAME",
    "POOLINGS",
    "Head",
    "build_backbone_classifier",
    "find_backbone",
    "set_backbone_trainable",
]

POOLINGS: tuple[str, ...] = ("avg", "max", "flatten")
"""How a head turns the base's feature map into a vector."""


@dataclass(frozen=True)
class Head:
    """A classifier head on an ImageNet base, for ``build_model(..., head=Head(...))``.

    The head is: pooling -> for each of ``units``: ``Dense(units, relu)`` ->
    ``BatchNormalization`` (if ``batch_norm``) -> ``Dropout`` -> the output
    layer (a lone dropout when ``units`` is empty).

    Attributes:
        pooling: One of `POOLINGS`.
        units: Widths of the hidden dense layers, e.g. ``(256,)``.
        batch_norm: Batch normalization after each hidden dense layer.

    Raises:
        ValueError: For an unknown pooling or a width below 1.

    Examples:
        >>> head = Head(pooling="flatten", units=(256,))   # the KFold study's
    """

    pooling: str = "avg"
    units: tuple[int, ...] = ()
    batch_norm: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            choices = ", ".join(POOLINGS)
            msg = f"Head pooling={self.pooling!r} is not allowed; choose one of: {choices}"
            raise ValueError(msg)
        units = tuple(self.units)
        if any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in units):
            msg = f"Head units={self.units!r} must be integers >= 1, e.g. (256,)"
            raise ValueError(msg)
        object.__setattr__(self, "units", units)
        if not isinstance(self.batch_norm, bool):
            msg = f"Head batch_norm={self.batch_norm!r} must be True or False"
            raise ValueError(msg)


BACKBONE_NAME = "backbone"
"""Name of the nested ``keras.applications`` model inside a backbone classifier."""


def build_backbone_classifier(
    input_shape: tuple[int, int, int],
    *,
    application: str,
    preprocessing: str,
    head_units: Sequence[int] = (),
    pooling: str = "avg",
    batch_norm: bool = False,
    dropout: float,
    base_weights: str | None = None,
    freeze_backbone: bool = True,
    output: OutputKind = "sigmoid",
    name: str,
) -> keras.Model:
    """Build ``keras.applications.<application>`` under a binary head.

    Args:
        input_shape: ``(height, width, channels)``, channels 1 or 3, height and
            width at least 32.
        application: Name of the constructor in ``keras.applications``
            (``"VGG19"``, ``"ResNet50"``, ``"DenseNet121"``, ``"EfficientNetB0"``).
        preprocessing: [`PixelPreprocessing`][cxr_pneumonia.models.layers.PixelPreprocessing] mode
            of that backbone.
        head_units: Units of the ReLU dense layers between pooling and the
            output (each followed by dropout).
        pooling: One of `POOLINGS`: global average (``"avg"``) or max
            pooling, or ``"flatten"`` (the whole feature map, whose size then
            depends on the input size).
        batch_norm: Batch normalization after each hidden dense layer.
        dropout: Dropout rate of the head.
        base_weights: Path of the base's ``include_top=False`` weights file
            (e.g. the ImageNet ``*_notop.h5``), or ``None`` for random weights.
        freeze_backbone: Freeze the base (``trainable=False``).
        output: ``"sigmoid"`` (one unit) or ``"softmax"`` (two units).
        name: Model name.

    Returns:
        An uncompiled model (float32 output).
    """
    constructor = getattr(keras.applications, application)
    base = constructor(
        include_top=False,
        weights=base_weights,
        input_shape=(input_shape[0], input_shape[1], 3),
        name=BACKBONE_NAME,
    )
    base.trainable = not freeze_backbone
    inputs = keras.Input(shape=input_shape, name="image")
    x = RepeatChannels(3, name="to_rgb")(inputs)
    x = PixelPreprocessing(preprocessing, name="preprocess")(x)
    x = base(x, training=False)
    if pooling == "flatten":
        x = layers.Flatten(name="flatten")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="gmp")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="gap")(x)
    for index, units in enumerate(head_units, start=1):
        x = layers.Dense(units, activation="relu", name=f"head_dense{index}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"head_bn{index}")(x)
        x = layers.Dropout(dropout, name=f"head_dropout{index}")(x)
    if not head_units:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = add_output(x, output)
    return keras.Model(inputs, outputs, name=name)


def find_backbone(model: keras.Model) -> keras.Model | None:
    """Return the nested ImageNet base of a backbone classifier.

    Args:
        model: A model from [`build_model`][cxr_pneumonia.models.registry.build_model] (or loaded
            from one saved with it).

    Returns:
        The nested model named `BACKBONE_NAME`, or ``None`` when the
        model has none (the custom CNNs).
    """
    for layer in model.layers:
        if layer.name == BACKBONE_NAME and isinstance(layer, keras.Model):
            return layer
    return None


def set_backbone_trainable(model: keras.Model, trainable: bool) -> keras.Model:
    """Freeze or unfreeze the ImageNet base (for a fine-tuning phase).

    The base keeps running its batch normalization in inference mode. Compile
    the model again after calling this, so the optimizer sees the change.

    Args:
        model: A backbone classifier from
            [`build_model`][cxr_pneumonia.models.registry.build_model].
        trainable: ``True`` to unfreeze, ``False`` to freeze.

    Returns:
        The same model, for chaining.

    Raises:
        ValueError: If the model has no backbone (a custom CNN).
    """
    base = find_backbone(model)
    if base is None:
        msg = (
            f"model {model.name!r} has no {BACKBONE_NAME!r} sub-model to (un)freeze; "
            "only the ImageNet backbone models have one"
        )
        raise ValueError(msg)
    base.trainable = bool(trainable)
    return model
