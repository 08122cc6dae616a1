"""Grad-CAM heatmaps and convolutional feature maps of a Keras model on a prepared batch.

[`grad_cam`][cxr_pneumonia.gradcam.grad_cam] computes Grad-CAM (Selvaraju et al., "Grad-CAM: Visual
Explanations from Deep Networks via Gradient-based Localization", ICCV 2017,
doi:10.1109/ICCV.2017.74): the gradient of a class's probability with respect
to a convolutional layer's activations, averaged over space, weighs that
layer's channels; the ReLU of the weighted sum, normalised to ``[0, 1]``, is
the heatmap (at the layer's resolution; [`resize_heatmap`][cxr_pneumonia.gradcam.resize_heatmap]
brings it to an image's size and [`overlay`][cxr_pneumonia.gradcam.overlay] blends it in).

The layer defaults to the *last convolutional stage* of the model: the last layer
with a 4-D output that is a convolution or an element-wise layer after one
(batch normalisation, activation, residual add), searched through nested models
too, so a pretrained backbone nested as a sub-model (``"backbone"``) is handled:
the gradient model is rebuilt by re-running the outer model's layers, calling a
version of the backbone that also returns the chosen inner activation.

[`layer_outputs`][cxr_pneumonia.gradcam.layer_outputs] returns the activations of convolutional
layers; ``cxr_pneumonia.plots`` draws them.

Everything here works on a Keras model and a batch already prepared for it
(``uint8`` images at the model's input size, as
[`prepare_image`][cxr_pneumonia.images.prepare_image] makes them): it knows no
Predictor. [`Predictor.explain`][cxr_pneumonia.predictor.Predictor.explain]
and [`cxr_pneumonia.explain`][cxr_pneumonia.predictor.explain] decode the image once and call these.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from cxr_pneumonia.outputs import positive_probability_tensor

if TYPE_CHECKING:
    import keras

__all__ = [
    "conv_layer_names",
    "grad_cam",
    "jet_colormap",
    "layer_outputs",
    "layer_paths",
    "overlay",
    "resize_heatmap",
    "resolve_layer",
    "tap_layers",
]

_TAPS: weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], Any]] = weakref.WeakKeyDictionary()
_TAPS_LOCK = threading.Lock()


def grad_cam(
    model: keras.Model,
    batch: np.ndarray,
    *,
    class_index: int,
    layer: str | None = None,
) -> np.ndarray:
    """Grad-CAM heatmaps of one class for a prepared batch.

    Args:
        model: A binary classifier: sigmoid ``(N, 1)`` output (the probability
            of class 1) or softmax ``(N, 2)``.
        batch: Images ``(N, H, W, C)`` prepared for ``model`` (``uint8``).
        class_index: The class whose evidence is shown (its index in the
            model's output order).
        layer: Name of a layer with 4-D output (``"inner"`` or
            ``"outer/inner"``); default: the last convolutional stage.

    Returns:
        ``float32`` array ``(N, h, w)`` in ``[0, 1]`` at the layer's
        resolution (all zeros where no evidence was found).

    Raises:
        ValueError: If ``layer`` is unknown or not convolutional (the message
            lists the model's convolutional layers), or ``class_index`` is not
            0 or 1.
    """
    import tensorflow as tf

    if isinstance(class_index, bool) or class_index not in (0, 1):
        msg = f"class_index must be 0 or 1 for a binary classifier, got {class_index!r}"
        raise ValueError(msg)
    path = resolve_layer(model, layer)
    grad_model = _cached_tap(model, (path,))
    inputs = tf.cast(tf.convert_to_tensor(batch), _input_dtype(model))
    with tf.GradientTape() as tape:
        activations, outputs = grad_model(inputs, training=False)
        outputs = tf.reshape(tf.cast(outputs, tf.float32), [tf.shape(inputs)[0], -1])
        score = positive_probability_tensor(outputs, positive_index=class_index)
    grads = tape.gradient(score, activations)
    acts = np.asarray(activations, dtype=np.float32)
    if grads is None:  # pragma: no cover - the tapped layer always feeds the output
        weights = np.zeros((acts.shape[0], acts.shape[-1]), dtype=np.float32)
    else:
        weights = np.asarray(grads, dtype=np.float32).mean(axis=(1, 2))
    cams = np.maximum((acts * weights[:, np.newaxis, np.newaxis, :]).sum(axis=-1), 0.0)
    for cam in cams:
        peak = float(cam.max())
        if peak > 0 and np.isfinite(peak):
            cam /= peak
        else:
            cam[...] = 0.0
    return cams.astype(np.float32)


def layer_outputs(
    model: keras.Model,
    batch: np.ndarray,
    *,
    layers: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Activations of convolutional layers for a prepared batch.

    Args:
        model: A Keras model.
        batch: Images ``(N, H, W, C)`` prepared for ``model`` (``uint8``).
        layers: Layer names (``"inner"`` or ``"outer/inner"``); default: every
            convolution of the model, in order.

    Returns:
        ``{layer path: float32 array (N, h, w, channels)}`` in model order;
        empty when the model has no convolution and ``layers`` is ``None``.

    Raises:
        ValueError: If a layer is unknown or has no 4-D output.
    """
    import tensorflow as tf

    paths = layer_paths(model, layers)
    if not paths:
        return {}
    tapped = _cached_tap(model, paths)
    inputs = tf.cast(tf.convert_to_tensor(batch), _input_dtype(model))
    outputs = tapped(inputs, training=False)
    activations = outputs[:-1] if len(paths) > 1 else [outputs[0]]
    return {
        path: np.asarray(value, dtype=np.float32)
        for path, value in zip(paths, activations, strict=True)
    }


def layer_paths(model: keras.Model, layers: str | Sequence[str] | None) -> tuple[str, ...]:
    """The full paths of ``layers`` (every convolution when ``None``), checked.

    Args:
        model: A Keras model.
        layers: Layer names or paths, one name, or ``None``.

    Returns:
        Layer paths (``"outer/inner"`` for nested layers), in the order given.

    Raises:
        ValueError: If a layer is unknown or has no 4-D output.
    """
    if layers is None:
        return tuple(conv_layer_names(model))
    if isinstance(layers, str):
        layers = [layers]
    return tuple(resolve_layer(model, name) for name in layers)


def resolve_layer(model: keras.Model, name: str | None) -> str:
    """The path of the layer Grad-CAM uses: ``name``, or the last convolutional stage.

    ``name`` may also name a model nested in ``model`` (``"member_0"``, or a
    path such as ``"member_0/cnn-small"``): then the last convolutional stage
    *inside* that sub-model is used, as for an ensemble's members.

    Args:
        model: A Keras model.
        name: A layer name or ``"outer/inner"`` path, or a nested model's name
            or path; ``None`` for the default.

    Returns:
        The layer's full path.

    Raises:
        ValueError: If ``name`` is unknown, ambiguous or has no 4-D output, or
            the model has no convolutional layer.
    """
    return _resolve_layer(model, name)[0]


def conv_layer_names(model: keras.Model) -> list[str]:
    """Names of the model's convolutional layers, in order, nested ones included.

    Args:
        model: A Keras model.

    Returns:
        Layer names; a layer inside a nested model is named ``"outer/inner"``.
    """
    return [path for path, layer in _flat_layers(model) if _is_conv(layer)]


def jet_colormap(values: np.ndarray) -> np.ndarray:
    """Map values in ``[0, 1]`` to matplotlib's ``jet`` colors (blue - cyan - yellow - red).

    The same bytes as ``matplotlib.colormaps["jet"](values, bytes=True)[..., :3]``
    (a 256-entry table interpolated from matplotlib's own ``jet`` segment data),
    without importing matplotlib, an optional extra that only
    ``cxr_pneumonia.plots`` imports.

    Args:
        values: Float array of any shape, clipped to ``[0, 1]``.

    Returns:
        ``uint8`` array of shape ``values.shape + (3,)``.
    """
    v = np.asarray(values)
    if v.dtype.kind != "f":
        v = v.astype(np.float64)
    v = np.clip(v, 0.0, 1.0)
    index = np.minimum((v * _JET_LUT.shape[0]).astype(np.int64), _JET_LUT.shape[0] - 1)
    return _JET_LUT[index]


def _jet_table(size: int = 256) -> np.ndarray:
    """matplotlib's ``jet`` as a ``uint8`` table (its ``_jet_data``, linearly interpolated)."""
    segments = {  # (x, value) per channel, from matplotlib._cm._jet_data
        "red": ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
        "green": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
        "blue": ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
    }
    x = np.linspace(0.0, 1.0, size)
    columns = []
    for channel in ("red", "green", "blue"):
        points = np.asarray(segments[channel], dtype=np.float64)
        columns.append(np.interp(x, points[:, 0], points[:, 1]))
    table = np.stack(columns, axis=-1)
    return (table * 255).astype(np.uint8)  # truncated, as matplotlib's bytes=True


_JET_LUT = _jet_table()


def resize_heatmap(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a ``[0, 1]`` heatmap (bilinear) to ``size``, keeping its peak at 1.

    Args:
        heatmap: ``float32`` array ``(h, w)`` in ``[0, 1]``.
        size: ``(height, width)`` wanted, e.g. the original image's.

    Returns:
        ``float32`` array ``size`` in ``[0, 1]``.
    """
    resized = _resize_float(np.asarray(heatmap, dtype=np.float32), size)
    if resized.max() > 0:  # interpolation can lower the peak: keep it at 1
        resized = (resized / resized.max()).astype(np.float32)
    return resized


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.4) -> Image.Image:
    """Blend a heatmap in jet colors over an image.

    Args:
        image: ``uint8`` image ``(H, W, C)`` with 1 or 3 channels.
        heatmap: ``float32`` ``(H, W)`` in ``[0, 1]``, the image's size.
        alpha: Opacity of the heat colors, in ``[0, 1]``.

    Returns:
        The blended RGB image.
    """
    return _overlay(image, heatmap, alpha)


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


def _nested_model_path(model: Any, name: str, flat: list[tuple[str, Any]]) -> str | None:
    """The path of the nested model ``name`` names (a path or a unique name), else ``None``."""
    nested = _nested_model_paths(model)
    if name in nested:
        return name
    if any(p == name or layer.name == name for p, layer in flat):
        return None  # a layer of that name wins
    candidates = [path for path, short in nested.items() if short == name]
    if len(candidates) > 1:
        msg = (
            f"{name!r} names several sub-models of {model.name!r}; use one of: "
            f"{', '.join(candidates)}"
        )
        raise ValueError(msg)
    return candidates[0] if candidates else None


def _nested_model_paths(model: Any, prefix: str = "") -> dict[str, str]:
    """``{path: name}`` of every model nested in ``model``, at any depth."""
    result: dict[str, str] = {}
    for layer in model.layers:
        if _is_model(layer):
            path = f"{prefix}{layer.name}"
            result[path] = layer.name
            result.update(_nested_model_paths(layer, prefix=f"{path}/"))
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
    prefix = _nested_model_path(model, name, flat)
    if prefix is not None:
        found = _default_layer([(p, layer) for p, layer in flat if p.startswith(f"{prefix}/")])
        if found is None:
            msg = f"the sub-model {prefix!r} of {model.name!r} has no convolutional layer"
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


def _cached_tap(model: Any, paths: tuple[str, ...]) -> Any:
    """A tapped model of ``model`` returning ``paths``' outputs, built once per model."""
    with _TAPS_LOCK:
        cached = _TAPS.get(model, {}).get(paths)
    if cached is not None:
        return cached
    flat = dict(_flat_layers(model))
    tapped = tap_layers(model, [flat[p] for p in paths])
    with _TAPS_LOCK:
        return _TAPS.setdefault(model, {}).setdefault(paths, tapped)


def _contains(container: Any, layer: Any) -> bool:
    if not _is_model(container):
        return False
    return any(inner is layer or _contains(inner, layer) for inner in container.layers)


def tap_layers(model: Any, wanted: list[Any]) -> Any:
    """A model sharing ``model``'s layers that returns ``[*wanted outputs, output]``.

    One forward pass gives the activations of ``wanted`` (layers anywhere in
    ``model``, also inside nested models such as a flip-TTA wrapper or an
    ensemble's members) and the model's own output, connected for
    ``GradientTape`` (Grad-CAM) and cheap to call for features (the
    out-of-distribution check).

    Nested models holding a wanted layer are replaced, in the re-run forward
    pass, by a tapped version of themselves (recursively), so the activations
    and the final output stay connected for ``GradientTape``.
    """
    import keras

    captured: dict[int, Any] = {}

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        inner = [w for w in wanted if w is not layer and _contains(layer, w)]
        if inner:
            outs = tap_layers(layer, inner)(*args, **kwargs)
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
        inputs = inputs[0] if len(inputs) == 1 else inputs
        output = output[0] if len(output) == 1 else output
    missing = [w.name for w in wanted if id(w) not in captured]
    if missing:  # pragma: no cover - a wanted layer is always on the forward path
        msg = f"layers {missing} are not on the forward path of model {model.name!r}"
        raise ValueError(msg)
    return keras.Model(inputs, [captured[id(w)] for w in wanted] + [output])


# --- images ----------------------------------------------------------------------------


def _input_dtype(model: Any) -> str:
    return str(getattr(model.inputs[0], "dtype", "float32") or "float32")


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
