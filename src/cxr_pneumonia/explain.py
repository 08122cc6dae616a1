"""Why did the model say that? Grad-CAM heatmaps and convolutional feature maps.

:func:`explain` computes Grad-CAM (Selvaraju et al., "Grad-CAM: Visual
Explanations from Deep Networks via Gradient-based Localization", ICCV 2017,
doi:10.1109/ICCV.2017.74): the gradient of the predicted class's probability
with respect to a convolutional layer's activations, averaged over space, weighs
that layer's channels; the ReLU of the weighted sum, normalised to ``[0, 1]`` and
resized to the input image's own size, is the heatmap.

The layer defaults to the *last convolutional stage* of the model: the last layer
with a 4-D output that is a convolution or an element-wise layer after one
(batch normalisation, activation, residual add), searched through nested models
too, so a pretrained backbone nested as a sub-model (``"backbone"``) is handled:
the gradient model is rebuilt by re-running the outer model's layers, calling a
version of the backbone that also returns the chosen inner activation.

:func:`feature_maps` returns the activations of the convolutional layers for one
image; ``cxr_pneumonia.plots`` draws them.

Both accept a :class:`~cxr_pneumonia.Predictor` (preferred: it knows the input
size, color mode, threshold and class names of the bundle) or a bare Keras model
(described from its input shape, threshold 0.5).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from cxr_pneumonia.images import ImageInput, load_image
from cxr_pneumonia.predictor import Prediction, Predictor

if TYPE_CHECKING:
    import keras

__all__ = ["Explanation", "conv_layer_names", "explain", "feature_maps", "jet_colormap"]


@dataclass(frozen=True)
class Explanation:
    """A Grad-CAM explanation of one prediction.

    Attributes:
        prediction: The prediction explained.
        heatmap: ``float32`` array ``(height, width)`` in ``[0, 1]`` at the input
            image's own size: where the evidence for the predicted class lies.
        overlay: The input image (RGB) with the heatmap blended in a jet
            colormap.
        layer: Name of the layer whose activations were used (``"outer/inner"``
            for a layer inside a nested model).
    """

    prediction: Prediction
    heatmap: np.ndarray = field(repr=False, compare=False)
    overlay: Image.Image = field(repr=False, compare=False)
    layer: str


def explain(
    model_or_predictor: Predictor | keras.Model,
    x: ImageInput,
    *,
    layer: str | None = None,
    alpha: float = 0.4,
) -> Explanation:
    """Grad-CAM heatmap for one image.

    The heatmap shows the evidence for the *predicted* class (the gradient of
    the PNEUMONIA probability ``p`` when the label is PNEUMONIA, of ``1 - p``
    otherwise).

    Args:
        model_or_predictor: A :class:`~cxr_pneumonia.Predictor` or a Keras model.
        x: One image input (path, bytes, binary file object, PIL image, array,
            DICOM file).
        layer: Name of a layer with 4-D output (``"inner"`` or
            ``"outer/inner"``); default: the last convolutional stage.
        alpha: Opacity of the heat colors in the overlay, in ``[0, 1]``.

    Returns:
        The :class:`Explanation`.

    Raises:
        InvalidImageError: If ``x`` is not a usable image.
        ValueError: If ``layer`` is unknown or not convolutional (the message
            lists the model's convolutional layers), or ``alpha`` is invalid.

    Example:
        >>> result = explain(predictor, "xray.jpeg")
        >>> result.overlay.save("xray-gradcam.png")
    """
    import tensorflow as tf

    if not 0.0 <= float(alpha) <= 1.0:
        msg = f"alpha must be in [0, 1], got {alpha!r}"
        raise ValueError(msg)
    predictor = _as_predictor(model_or_predictor)
    path, _ = _resolve_layer(predictor.model, layer)
    grad_model = _cached_tap(predictor, (path,))
    data, name = _rereadable(x)
    original = load_image(
        data, color_mode=predictor.color_mode, max_pixels=predictor.max_pixels, name=name
    )
    prepared = predictor._prepare(data, name)
    batch = prepared[np.newaxis]
    probability = float(predictor._probabilities(batch)[0])
    source: str | int = name if name is not None else 0
    prediction = predictor._prediction(probability, predictor.threshold, source)
    positive = prediction.label == predictor.class_names[predictor._positive]

    inputs = tf.cast(tf.convert_to_tensor(batch), _input_dtype(predictor.model))
    with tf.GradientTape() as tape:
        activations, outputs = grad_model(inputs, training=False)
        outputs = tf.reshape(tf.cast(outputs, tf.float32), [1, -1])
        if outputs.shape[-1] == 1:
            p = outputs[:, 0] if predictor._positive == 1 else 1.0 - outputs[:, 0]
        else:
            p = outputs[:, predictor._positive]
        score = p if positive else 1.0 - p
    grads = tape.gradient(score, activations)
    acts = np.asarray(activations, dtype=np.float32)[0]
    if grads is None:  # pragma: no cover - the tapped layer always feeds the output
        weights = np.zeros(acts.shape[-1], dtype=np.float32)
    else:
        weights = np.asarray(grads, dtype=np.float32)[0].mean(axis=(0, 1))
    cam = np.maximum((acts * weights).sum(axis=-1), 0.0)
    peak = float(cam.max())
    cam = cam / peak if peak > 0 and np.isfinite(peak) else np.zeros_like(cam)
    height, width = original.shape[:2]
    heatmap = _resize_float(cam.astype(np.float32), (height, width))
    if heatmap.max() > 0:  # interpolation can lower the peak: keep it at 1
        heatmap = (heatmap / heatmap.max()).astype(np.float32)
    return Explanation(
        prediction=prediction,
        heatmap=heatmap,
        overlay=_overlay(original, heatmap, alpha),
        layer=path,
    )


def feature_maps(
    model_or_predictor: Predictor | keras.Model,
    x: ImageInput,
    *,
    layers: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Activations of convolutional layers for one image.

    Args:
        model_or_predictor: A :class:`~cxr_pneumonia.Predictor` or a Keras model.
        x: One image input.
        layers: Layer names (``"inner"`` or ``"outer/inner"``); default: every
            convolution of the model, in order.

    Returns:
        ``{layer name: float32 array (h, w, channels)}`` in model order.

    Raises:
        InvalidImageError: If ``x`` is not a usable image.
        ValueError: If a layer is unknown or has no 4-D output.
    """
    import tensorflow as tf

    predictor = _as_predictor(model_or_predictor)
    if layers is None:
        paths = tuple(conv_layer_names(predictor.model))
    else:
        if isinstance(layers, str):
            layers = [layers]
        paths = tuple(_resolve_layer(predictor.model, name)[0] for name in layers)
    if not paths:
        return {}
    tapped = _cached_tap(predictor, paths)
    data, name = _rereadable(x)
    batch = predictor._prepare(data, name)[np.newaxis]
    inputs = tf.cast(tf.convert_to_tensor(batch), _input_dtype(predictor.model))
    outputs = tapped(inputs, training=False)
    activations = outputs[:-1] if len(paths) > 1 else [outputs[0]]
    return {
        path: np.asarray(value, dtype=np.float32)[0]
        for path, value in zip(paths, activations, strict=True)
    }


def conv_layer_names(model: keras.Model) -> list[str]:
    """Names of the model's convolutional layers, in order, nested ones included.

    Args:
        model: A Keras model.

    Returns:
        Layer names; a layer inside a nested model is named ``"outer/inner"``.
    """
    return [path for path, layer in _flat_layers(model) if _is_conv(layer)]


def jet_colormap(values: np.ndarray) -> np.ndarray:
    """Map values in ``[0, 1]`` to jet-like RGB colors (blue - cyan - yellow - red).

    Args:
        values: Float array of any shape, clipped to ``[0, 1]``.

    Returns:
        ``uint8`` array of shape ``values.shape + (3,)``.
    """
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., np.newaxis]
    centers = np.array([0.75, 0.5, 0.25], dtype=np.float32)  # red, green, blue
    rgb = np.clip(1.5 - np.abs(4.0 * (v - centers)), 0.0, 1.0)
    return np.rint(rgb * 255.0).astype(np.uint8)


# --- layers ----------------------------------------------------------------------------


def _conv_types() -> tuple[type, ...]:
    import keras

    return (
        keras.layers.Conv2D,
        keras.layers.DepthwiseConv2D,
        keras.layers.SeparableConv2D,
        keras.layers.Conv2DTranspose,
    )


def _elementwise_types() -> tuple[type, ...]:
    import keras

    return (
        keras.layers.BatchNormalization,
        keras.layers.LayerNormalization,
        keras.layers.Activation,
        keras.layers.ReLU,
        keras.layers.LeakyReLU,
        keras.layers.ELU,
        keras.layers.PReLU,
        keras.layers.Add,
        keras.layers.Multiply,
        keras.layers.Concatenate,
    )


def _is_conv(layer: Any) -> bool:
    return isinstance(layer, _conv_types())


def _is_model(layer: Any) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def _flat_layers(model: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(path, layer)`` for every layer, depth first, nested models expanded."""
    result: list[tuple[str, Any]] = []
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if _is_model(layer):
            result.extend(_flat_layers(layer, prefix=f"{path}/"))
        else:
            result.append((path, layer))
    return result


def _output_rank(layer: Any) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError, RuntimeError):
        return None


def _default_layer(flat: list[tuple[str, Any]]) -> tuple[str, Any] | None:
    candidates = _conv_types() + _elementwise_types()
    seen_conv = False
    chosen: tuple[str, Any] | None = None
    for path, layer in flat:
        seen_conv = seen_conv or _is_conv(layer)
        if seen_conv and isinstance(layer, candidates) and _output_rank(layer) == 4:
            chosen = (path, layer)
    return chosen


def _resolve_layer(model: Any, name: str | None) -> tuple[str, Any]:
    flat = _flat_layers(model)
    if name is None:
        found = _default_layer(flat)
        if found is None:
            msg = f"model {model.name!r} has no convolutional layer; Grad-CAM needs one"
            raise ValueError(msg)
        return found
    matches = [(p, layer) for p, layer in flat if p == name]
    if not matches:
        matches = [(p, layer) for p, layer in flat if layer.name == name]
    convs = ", ".join(p for p, layer in flat if _is_conv(layer)) or "none"
    if not matches:
        msg = (
            f"model {model.name!r} has no layer named {name!r}; "
            f"its convolutional layers are: {convs}"
        )
        raise ValueError(msg)
    if len(matches) > 1:
        options = ", ".join(p for p, _ in matches)
        msg = f"layer name {name!r} is ambiguous in model {model.name!r}; use one of: {options}"
        raise ValueError(msg)
    path, layer = matches[0]
    if _output_rank(layer) != 4:
        msg = (
            f"layer {path!r} does not output a feature map (N, H, W, C); choose a "
            f"convolutional layer: {convs}"
        )
        raise ValueError(msg)
    return path, layer


# --- tapped models ---------------------------------------------------------------------


def _cached_tap(predictor: Predictor, paths: tuple[str, ...]) -> Any:
    with predictor._lock:
        cached = predictor._explainers.get(paths)
    if cached is not None:
        return cached
    flat = dict(_flat_layers(predictor.model))
    tapped = _tap(predictor.model, [flat[p] for p in paths])
    with predictor._lock:
        return predictor._explainers.setdefault(paths, tapped)


def _contains(container: Any, layer: Any) -> bool:
    if not _is_model(container):
        return False
    return any(inner is layer or _contains(inner, layer) for inner in container.layers)


def _tap(model: Any, wanted: list[Any]) -> Any:
    """A model sharing ``model``'s layers that returns ``[*wanted outputs, output]``.

    Nested models holding a wanted layer are replaced, in the re-run forward
    pass, by a tapped version of themselves (recursively), so the activations
    and the final output stay connected for ``GradientTape``.
    """
    import keras

    captured: dict[int, Any] = {}

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        inner = [w for w in wanted if w is not layer and _contains(layer, w)]
        if inner:
            outs = _tap(layer, inner)(*args, **kwargs)
            for w, value in zip(inner, outs[:-1], strict=True):
                captured[id(w)] = value
            out = outs[-1]
        else:
            out = layer(*args, **kwargs)
        if any(w is layer for w in wanted):
            captured[id(layer)] = out
        return out

    if isinstance(model, keras.Sequential):
        spec = model.inputs[0]
        inputs: Any = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype)
        output: Any = inputs
        for layer in model.layers:
            output = call(layer, output)
    else:
        clone = keras.models.clone_model(
            model, clone_function=lambda layer: layer, call_function=call
        )
        inputs, output = clone.inputs, clone.outputs
        output = output[0] if len(output) == 1 else output
    missing = [w.name for w in wanted if id(w) not in captured]
    if missing:  # pragma: no cover - a wanted layer is always on the forward path
        msg = f"layers {missing} are not on the forward path of model {model.name!r}"
        raise ValueError(msg)
    return keras.Model(inputs, [captured[id(w)] for w in wanted] + [output])


# --- images ----------------------------------------------------------------------------


def _as_predictor(model_or_predictor: Any) -> Predictor:
    if isinstance(model_or_predictor, Predictor):
        return model_or_predictor
    if _is_model(model_or_predictor):
        return Predictor(model_or_predictor, num_workers=1)
    msg = f"expected a Predictor or a Keras model, got {type(model_or_predictor).__name__}"
    raise TypeError(msg)


def _input_dtype(model: Any) -> str:
    return str(getattr(model.inputs[0], "dtype", "float32") or "float32")


def _rereadable(x: ImageInput) -> tuple[Any, str | None]:
    """Return an input that can be decoded twice, and its path if it is one."""
    if isinstance(x, (str, os.PathLike)):
        return x, os.fspath(x)
    if not isinstance(x, (bytes, bytearray, memoryview, Image.Image, np.ndarray)):
        read = getattr(x, "read", None)
        if callable(read):
            data = read()
            # Text or odd file objects: let prepare_image name the problem.
            return (data, None) if isinstance(data, (bytes, bytearray, memoryview)) else (x, None)
    return x, None


def _resize_float(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if values.shape == (height, width):
        return np.clip(values, 0.0, 1.0).astype(np.float32)
    image = Image.fromarray(values.astype(np.float32))
    resized = np.asarray(image.resize((width, height), resample=Image.Resampling.BILINEAR))
    return np.clip(resized, 0.0, 1.0).astype(np.float32)


def _overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float) -> Image.Image:
    base = image[:, :, 0] if image.shape[-1] == 1 else image
    rgb = np.asarray(Image.fromarray(base).convert("RGB"), dtype=np.float32)
    heat = jet_colormap(heatmap).astype(np.float32)
    blended = (1.0 - alpha) * rgb + alpha * heat
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))
