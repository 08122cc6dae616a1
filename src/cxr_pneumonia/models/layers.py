"""Serialisable preprocessing layers: every model scales its own pixels.

The models take raw pixel values (``0..255``, any dtype the data layer
produces, usually ``uint8``) and start with these layers, so a saved ``.keras``
file carries its preprocessing and loads with ``safe_mode=True`` (no ``Lambda``
layers, no pickled Python code).

- [`PixelPreprocessing`][cxr_pneumonia.models.layers.PixelPreprocessing] casts to float and applies
  one of the preprocessing modes of `PREPROCESSING_MODES`: ``"unit"`` (scale to ``[0, 1]``, the
  custom CNNs), ``"caffe"`` (RGB to BGR and ImageNet mean subtraction, VGG19 / ResNet50),
  ``"torch"`` (``[0, 1]`` then ImageNet mean / std, DenseNet), ``"raw"`` (float ``0..255`` as is,
  EfficientNet, whose rescaling is part of the Keras application) or ``"standardize"`` (each
  image to zero mean and unit standard deviation: an acquisition's global brightness and
  contrast no longer reach the network; an option of ``cnn-small``).
- [`RepeatChannels`][cxr_pneumonia.models.layers.RepeatChannels] turns a 1-channel image into 3
  identical channels (ImageNet backbones expect RGB); 3-channel input passes through.
- [`FlipBatch`][cxr_pneumonia.models.layers.FlipBatch] and
  [`MeanOfHalves`][cxr_pneumonia.models.layers.MeanOfHalves] implement horizontal-flip test-time
  augmentation inside a model (see [`with_flip_tta`][cxr_pneumonia.models.tta.with_flip_tta]).
- [`MemberMean`][cxr_pneumonia.models.layers.MemberMean] averages the members of an ensemble and
  carries their provenance (see [`ensemble`][cxr_pneumonia.ensembles.ensemble]).

All are registered with ``keras.saving.register_keras_serializable(package="cxr_pneumonia")``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = [
    "PREPROCESSING_MODES",
    "FlipBatch",
    "MeanOfHalves",
    "MemberMean",
    "PixelPreprocessing",
    "RepeatChannels",
]

PREPROCESSING_MODES: tuple[str, ...] = ("unit", "caffe", "torch", "raw", "standardize")
"""Modes of [`PixelPreprocessing`][cxr_pneumonia.models.layers.PixelPreprocessing]."""

# ImageNet statistics, as in keras.applications.imagenet_utils.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
_TORCH_STD_RGB = (0.229, 0.224, 0.225)
# Added to the standard deviation of "standardize" (in grey levels): a flat
# image maps to zeros instead of dividing by zero, and sensor noise of a
# nearly flat one is not blown up.
_STANDARDIZE_EPSILON = 1.0


@keras.saving.register_keras_serializable(package="cxr_pneumonia")
class PixelPreprocessing(keras.layers.Layer):
    """Cast raw ``0..255`` pixels to float and preprocess them in the graph.

    Matches ``keras.applications.imagenet_utils.preprocess_input`` for the
    ``"caffe"`` and ``"torch"`` modes (channels last).

    Args:
        mode: One of `PREPROCESSING_MODES`.
        **kwargs: Passed to ``keras.layers.Layer`` (``name``, ``dtype``...).

    Raises:
        ValueError: For an unknown ``mode``.

    Examples:
        >>> layer = PixelPreprocessing("unit")
        >>> float(layer(np.full((1, 2, 2, 1), 255, dtype="uint8"))[0, 0, 0, 0])
        1.0
    """

    def __init__(self, mode: str = "unit", **kwargs: Any) -> None:
        if mode not in PREPROCESSING_MODES:
            choices = ", ".join(PREPROCESSING_MODES)
            msg = f"unknown preprocessing mode {mode!r}; choose one of: {choices}"
            raise ValueError(msg)
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, inputs: Any) -> Any:
        """Preprocess a batch ``(N, H, W, C)``; ``C`` must be 3 for caffe/torch."""
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "raw":
            return x
        if self.mode == "standardize":
            mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
            std = ops.std(x, axis=(1, 2, 3), keepdims=True)
            return (x - mean) / (std + _STANDARDIZE_EPSILON)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)  # RGB -> BGR
            mean = ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)
            return x - mean
        mean = ops.convert_to_tensor(_TORCH_MEAN_RGB, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(_TORCH_STD_RGB, dtype=self.compute_dtype)
        return (x / 255.0 - mean) / std

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """Same shape as the input."""
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        """Layer config, including ``mode``."""
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="cxr_pneumonia")
class RepeatChannels(keras.layers.Layer):
    """Repeat a single channel ``channels`` times; pass other inputs through.

    Grayscale radiographs fed to an ImageNet backbone become 3 identical
    channels (the same image an RGB decoder would produce from a gray file).

    Args:
        channels: Number of output channels (3 for ImageNet backbones).
        **kwargs: Passed to ``keras.layers.Layer``.

    Raises:
        ValueError: If ``channels`` is not a positive integer, or (when
            called) the input has neither 1 nor ``channels`` channels.
    """

    def __init__(self, channels: int = 3, **kwargs: Any) -> None:
        if not isinstance(channels, int) or channels < 1:
            msg = f"channels={channels!r} must be a positive integer"
            raise ValueError(msg)
        super().__init__(**kwargs)
        self.channels = channels

    def _check(self, count: int | None) -> None:
        if count not in (1, self.channels):
            msg = f"RepeatChannels expects 1 or {self.channels} input channels, got {count}"
            raise ValueError(msg)

    def call(self, inputs: Any) -> Any:
        """Repeat the last axis of ``(N, H, W, 1)`` to ``(N, H, W, channels)``."""
        count = inputs.shape[-1]
        self._check(count)
        if count == self.channels:
            return inputs
        return ops.repeat(inputs, self.channels, axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """The input shape with ``channels`` channels."""
        self._check(input_shape[-1])
        return (*tuple(input_shape)[:-1], self.channels)

    def get_config(self) -> dict[str, Any]:
        """Layer config, including ``channels``."""
        return {**super().get_config(), "channels": self.channels}


@keras.saving.register_keras_serializable(package="cxr_pneumonia")
class FlipBatch(keras.layers.Layer):
    """Append the left-right mirror image of every image to the batch.

    ``(N, H, W, C)`` in, ``(2N, H, W, C)`` out: the N originals, then their N
    mirror images, in the same order.
    """

    def call(self, inputs: Any) -> Any:
        return ops.concatenate([inputs, ops.flip(inputs, axis=2)], axis=0)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        batch = input_shape[0]
        return (None if batch is None else 2 * batch, *input_shape[1:])


@keras.saving.register_keras_serializable(package="cxr_pneumonia")
class MeanOfHalves(keras.layers.Layer):
    """Average the first and second halves of the batch: ``(2N, ...)`` in, ``(N, ...)`` out."""

    def call(self, inputs: Any) -> Any:
        half = ops.shape(inputs)[0] // 2
        return (inputs[:half] + inputs[half:]) / 2.0

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        batch = input_shape[0]
        return (None if batch is None else batch // 2, *input_shape[1:])


@keras.saving.register_keras_serializable(package="cxr_pneumonia")
class MemberMean(keras.layers.Layer):
    """Average the outputs of an ensemble's members; carry the members' provenance.

    Takes a list of K member outputs of the same shape and returns their mean
    in ``float32``. ``members`` (one JSON-ready dict per member: name, hash,
    training provenance, see [`cxr_pneumonia.ensembles.ensemble`][cxr_pneumonia.ensembles.ensemble])
    is saved in the layer's config, so a ``.keras`` file of an ensemble says what it is made of, and
    [`save_model`][cxr_pneumonia.bundle.save_model] copies it into the bundle's metadata.

    Args:
        members: The members' provenance, in input order.
        **kwargs: Passed to ``keras.layers.Layer``.
    """

    def __init__(self, members: Any = (), **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.members = [dict(member) for member in members]

    def call(self, inputs: Any) -> Any:
        """The mean of the list of member outputs."""
        stacked = ops.stack([ops.cast(x, self.compute_dtype) for x in inputs], axis=0)
        return ops.mean(stacked, axis=0)

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        """The shape of one member output."""
        return tuple(input_shape[0])

    def get_config(self) -> dict[str, Any]:
        """Layer config, including ``members``."""
        return {**super().get_config(), "members": [dict(m) for m in self.members]}
