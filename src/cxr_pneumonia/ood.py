"""Knowing when not to answer: an out-of-distribution (OOD) check for chest X-ray models.

A classifier answers every input: a scanned invoice, a photo or a blank image
gets NORMAL or PNEUMONIA with a confident probability. This module fits, from
a model's *training* images, a description of what its inputs look like to
the model, and scores new inputs against it (Lee et al., "A Simple Unified
Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks",
NeurIPS 2018, arXiv:1807.03888):

* **Features**: the activations that feed the classifier (the model's pooled
  penultimate features, e.g. ``cnn-small/gap``), read in the *same* forward
  pass as the prediction ([`feature_model`][cxr_pneumonia.ood.feature_model]
  builds a Keras model with the prediction and the features as outputs,
  sharing the layers). 4-D feature
  maps are averaged over space; when a nested model runs on a multiple of the
  input batch (flip test-time augmentation runs it on image + mirror image),
  the copies are averaged.
* **Score**: the squared Mahalanobis distance of those features from the
  training mean, under a shrunk (Ledoit-Wolf) training covariance, divided
  by the feature dimension (about 1 for typical training images). With
  several feature layers (an ensemble's members) the score is the mean of
  the layers' scores.
* **Shifts**: the fit and the calibration also see a copy of every image
  under a random acquisition shift of [`cxr_pneumonia.shifts`][cxr_pneumonia.shifts] (gamma,
  contrast, noise, sharpening, borders, rotations, ...), so radiographs from
  other scanners stay accepted.
* **Threshold**: the ``acceptance`` quantile (default 99 %) of the scores of
  patient-grouped *validation* images and their shifted copies, so about 1 %
  of those are flagged and everything farther out is too.

[`fit_ood_check`][cxr_pneumonia.ood.fit_ood_check] fits an
[`OODCheck`][cxr_pneumonia.ood.OODCheck];
[`save_model`][cxr_pneumonia.bundle.save_model] stores it in the bundle
(``metadata.json`` says which layers and the threshold, ``ood.npz`` holds the
means and precision matrices), and the
[`Predictor`][cxr_pneumonia.predictor.Predictor] flags every input
(``Prediction.in_distribution``, ``Prediction.ood_score``).

This module imports nothing of ``data`` or ``training``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_pneumonia.gradcam import tap_layers

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

__all__ = [
    "DEFAULT_ACCEPTANCE",
    "OOD_FILE",
    "OOD_METHOD",
    "OODCheck",
    "default_feature_layers",
    "extract_features",
    "feature_model",
    "fit_ood_check",
    "make_feature_function",
    "pool_features",
    "resolve_layers",
]

OOD_FILE = "ood.npz"
"""Name of the file holding an OOD check's arrays inside a bundle."""

OOD_METHOD = "mahalanobis"
"""The scoring method this version fits and reads."""

DEFAULT_ACCEPTANCE = 0.99
"""Default share of validation chest X-rays the threshold accepts."""


@dataclass(frozen=True)
class OODCheck:
    """A fitted out-of-distribution check: per feature layer, a Gaussian of training features.

    Attributes:
        feature_layers: Paths of the layers whose outputs are the features
            (``"inner"`` or ``"outer/inner"`` for a layer inside a nested
            model), in the order of ``means`` and ``precisions``.
        means: Per layer, the mean training feature vector ``(D,)``.
        precisions: Per layer, the inverse of the shrunk training covariance
            ``(D, D)``.
        threshold: Inputs scoring above this are out of distribution.
        acceptance: The share of calibration images the threshold was chosen
            to accept.
        method: ``"mahalanobis"``.
        stats: What the fit measured: ``n_fit``, ``n_calibration``,
            ``calibration`` (``"validation"`` or ``"train"``),
            ``calibration_accepted`` (the share actually accepted), and the
            score quantiles.

    Raises:
        ValueError: If the layers, means and precisions don't match in number
            or shape, the method is unknown, or the threshold is not finite.
    """

    feature_layers: tuple[str, ...]
    means: tuple[np.ndarray, ...] = field(repr=False, compare=False)
    precisions: tuple[np.ndarray, ...] = field(repr=False, compare=False)
    threshold: float
    acceptance: float = DEFAULT_ACCEPTANCE
    method: str = OOD_METHOD
    stats: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if not self.feature_layers:
            msg = "an OODCheck needs at least one feature layer"
            raise ValueError(msg)
        if not len(self.feature_layers) == len(self.means) == len(self.precisions):
            msg = (
                f"feature_layers ({len(self.feature_layers)}), means ({len(self.means)}) and "
                f"precisions ({len(self.precisions)}) must have the same length"
            )
            raise ValueError(msg)
        for layer, mean, precision in zip(
            self.feature_layers, self.means, self.precisions, strict=True
        ):
            dim = mean.shape[0] if mean.ndim == 1 else -1
            if dim < 1 or precision.shape != (dim, dim):
                msg = (
                    f"feature layer {layer!r}: mean {mean.shape} and precision "
                    f"{precision.shape} must be (D,) and (D, D)"
                )
                raise ValueError(msg)
        if self.method != OOD_METHOD:
            msg = f"OOD method {self.method!r} is not supported; this version reads {OOD_METHOD!r}"
            raise ValueError(msg)
        if not math.isfinite(self.threshold):
            msg = f"the OOD threshold must be a finite number, got {self.threshold!r}"
            raise ValueError(msg)

    @property
    def dims(self) -> tuple[int, ...]:
        """Feature dimension of each layer."""
        return tuple(int(m.shape[0]) for m in self.means)

    def score(self, features: Sequence[np.ndarray]) -> np.ndarray:
        """OOD scores of a batch: higher is farther from the training images.

        Args:
            features: Per feature layer, a ``(N, D)`` array (as
                `make_feature_function` returns them).

        Returns:
            ``float64`` array ``(N,)``: the mean over layers of the squared
            Mahalanobis distance divided by ``D``; ``nan`` features give ``inf``.

        Raises:
            ValueError: If the number of arrays or their shapes don't match.
        """
        if len(features) != len(self.means):
            msg = f"expected features of {len(self.means)} layer(s), got {len(features)}"
            raise ValueError(msg)
        total: np.ndarray | None = None
        for layer, values, mean, precision in zip(
            self.feature_layers, features, self.means, self.precisions, strict=True
        ):
            x = np.asarray(values, dtype=np.float64)
            if x.ndim != 2 or x.shape[1] != mean.shape[0]:
                msg = f"features of {layer!r} must be (N, {mean.shape[0]}), got {x.shape}"
                raise ValueError(msg)
            centred = x - mean
            distance = np.einsum("nd,de,ne->n", centred, precision.astype(np.float64), centred)
            part = distance / mean.shape[0]
            total = part if total is None else total + part
        assert total is not None
        result = total / len(self.means)
        return np.where(np.isfinite(result), result, np.inf)

    def accepts(self, scores: np.ndarray) -> np.ndarray:
        """Whether each score is within the threshold (``nan``/``inf`` are not).

        Args:
            scores: Scores from [`score`][cxr_pneumonia.ood.OODCheck.score].

        Returns:
            Boolean array, ``True`` for in-distribution inputs.
        """
        values = np.asarray(scores, dtype=np.float64)
        return np.asarray(values <= self.threshold)

    def to_metadata(self) -> dict[str, Any]:
        """The JSON part stored under ``"ood"`` in ``metadata.json``.

        Returns:
            A dict of plain JSON types (the arrays go to `OOD_FILE`).
        """
        return {
            "method": self.method,
            "feature_layers": list(self.feature_layers),
            "dims": list(self.dims),
            "threshold": float(self.threshold),
            "acceptance": float(self.acceptance),
            "file": OOD_FILE,
            "stats": _plain(self.stats),
        }

    def to_bytes(self) -> bytes:
        """The arrays as an uncompressed ``.npz`` file's bytes (``float32``).

        Returns:
            The file content for `OOD_FILE`.
        """
        arrays: dict[str, np.ndarray] = {}
        for i, (mean, precision) in enumerate(zip(self.means, self.precisions, strict=True)):
            arrays[f"mean_{i}"] = np.asarray(mean, dtype=np.float32)
            arrays[f"precision_{i}"] = np.asarray(precision, dtype=np.float32)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_parts(cls, metadata: Mapping[str, Any], data: bytes) -> OODCheck:
        """Rebuild a check from its ``to_metadata()`` dict and ``to_bytes()`` content.

        Args:
            metadata: The ``"ood"`` entry of ``metadata.json``.
            data: The content of `OOD_FILE`.

        Returns:
            The check.

        Raises:
            ValueError: If the metadata or the arrays are invalid or don't
                match each other (the message says which).
        """
        layers = metadata.get("feature_layers")
        if not isinstance(layers, list) or not all(isinstance(x, str) and x for x in layers):
            msg = f"'ood.feature_layers' must be a list of layer paths, got {layers!r}"
            raise ValueError(msg)
        threshold = metadata.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            msg = f"'ood.threshold' must be a number, got {threshold!r}"
            raise ValueError(msg)
        acceptance = metadata.get("acceptance", DEFAULT_ACCEPTANCE)
        if isinstance(acceptance, bool) or not isinstance(acceptance, (int, float)):
            msg = f"'ood.acceptance' must be a number, got {acceptance!r}"
            raise ValueError(msg)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                means = tuple(np.array(arrays[f"mean_{i}"]) for i in range(len(layers)))
                precisions = tuple(np.array(arrays[f"precision_{i}"]) for i in range(len(layers)))
        except (KeyError, OSError, ValueError) as exc:
            msg = f"{OOD_FILE} does not hold the arrays of {len(layers)} feature layer(s): {exc}"
            raise ValueError(msg) from None
        stats = metadata.get("stats", {})
        return cls(
            feature_layers=tuple(layers),
            means=means,
            precisions=precisions,
            threshold=float(threshold),
            acceptance=float(acceptance),
            method=str(metadata.get("method", "")),
            stats=dict(stats) if isinstance(stats, Mapping) else {},
        )


# --- features ----------------------------------------------------------------------------


def default_feature_layers(model: keras.Model) -> tuple[str, ...]:
    """The layers whose outputs feed the model's classifier(s): its penultimate features.

    In a model with a ``Dense`` layer of its own, the input of its last
    ``Dense`` (the classifier) is the feature, found by walking back from it
    over ``Dropout`` layers (identity at inference). A model without one (a
    test-time-augmentation wrapper, an ensemble averaging members) is searched
    through its nested models, giving one feature layer per member.

    Args:
        model: A Keras model.

    Returns:
        Layer paths (``"inner"``, or ``"outer/inner"`` inside nested models).

    Raises:
        ValueError: If no classifier ``Dense`` layer is found; pass the layers
            explicitly then.
    """
    found = _head_features(model, "")
    if not found:
        msg = (
            f"model {model.name!r} has no Dense classifier to take features from; "
            "pass the feature layers explicitly (layers=['name', ...])"
        )
        raise ValueError(msg)
    return tuple(found)


def _head_features(model: Any, prefix: str) -> list[str]:
    import keras

    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if dense:
        producer = _producer(dense[-1])
        while isinstance(producer, keras.layers.Dropout):
            producer = _producer(producer)
        if producer is None or isinstance(producer, keras.layers.InputLayer):
            return []
        return [f"{prefix}{producer.name}"]
    found: list[str] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_head_features(layer, f"{prefix}{layer.name}/"))
    return found


def _producer(layer: Any) -> Any:
    """The layer whose output is ``layer``'s (first) input, or ``None``."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    for node in nodes:
        tensors = getattr(node, "input_tensors", None) or []
        if tensors:
            history = getattr(tensors[0], "_keras_history", None)
            if history is not None:
                return history[0]
    return None


def _layer_paths(model: Any, prefix: str = "") -> dict[str, Any]:
    """``path -> layer`` for every layer and nested model, at any depth."""
    import keras

    paths: dict[str, Any] = {}
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        paths[path] = layer
        if isinstance(layer, keras.Model):
            paths.update(_layer_paths(layer, f"{path}/"))
    return paths


def resolve_layers(model: keras.Model, layers: Sequence[str]) -> list[Any]:
    """Look up layer paths in ``model``.

    Args:
        model: A Keras model.
        layers: Paths such as ``"gap"`` or ``"cnn-small/gap"``.

    Returns:
        The layer objects, in order.

    Raises:
        ValueError: If a path names no layer (the message lists candidates).
    """
    paths = _layer_paths(model)
    missing = [name for name in layers if name not in paths]
    if missing:
        shown = ", ".join(list(paths)[-12:])
        msg = (
            f"model {model.name!r} has no layer {missing[0]!r} for the OOD features; "
            f"its last layers are: {shown}"
        )
        raise ValueError(msg)
    return [paths[name] for name in layers]


def feature_model(model: keras.Model, layers: Sequence[str]) -> keras.Model:
    """A model sharing ``model``'s layers that returns ``[output, *features]``.

    One forward pass gives the prediction and the activations of ``layers``.
    Nested models holding a wanted layer are replaced, in the rebuilt forward
    pass, by a version of themselves that also returns it.

    Args:
        model: A functional or sequential Keras model with one input and output.
        layers: Layer paths (see
            [`default_feature_layers`][cxr_pneumonia.ood.default_feature_layers]).

    Returns:
        A Keras model with ``1 + len(layers)`` outputs.

    Raises:
        ValueError: If a layer path is unknown or not on the forward path.
    """
    wanted = resolve_layers(model, layers)
    tapped = tap_layers(model, wanted)
    outputs = list(tapped.outputs)
    inputs = tapped.inputs[0] if len(tapped.inputs) == 1 else tapped.inputs
    return _keras_model(inputs, [outputs[-1], *outputs[:-1]], f"{model.name}_features")


def _keras_model(inputs: Any, outputs: Any, name: str) -> Any:
    import keras

    return keras.Model(inputs, outputs, name=name)


def pool_features(features: tf.Tensor, batch: tf.Tensor) -> tf.Tensor:
    """Reduce one tapped activation to ``(batch, D)`` float32 features.

    Spatial axes are averaged; a leading axis that is a multiple ``k`` of the
    input batch (a nested model run on ``k`` copies, e.g. flip TTA) is
    averaged over the copies.

    Args:
        features: The activation ``(k * batch, ..., D)``.
        batch: The input batch size (a scalar tensor).

    Returns:
        ``(batch, D)`` float32 tensor.
    """
    import tensorflow as tf

    values = tf.cast(features, tf.float32)
    rank = len(values.shape)
    if rank > 2:
        values = tf.reduce_mean(values, axis=list(range(1, rank - 1)))
    depth = values.shape[-1]
    return tf.reduce_mean(tf.reshape(values, [-1, batch, depth]), axis=0)


def make_feature_function(
    model: keras.Model, layers: Sequence[str], input_shape: Sequence[int]
) -> Any:
    """A traced ``tf.function``: ``uint8`` images -> ``(outputs (N, K), [features (N, D)])``.

    Args:
        model: The Keras model.
        layers: Feature layer paths.
        input_shape: ``(H, W, C)`` of one image.

    Returns:
        The function, traced once for any batch size.
    """
    import tensorflow as tf

    tapped = feature_model(model, layers)
    input_dtype = str(getattr(model.inputs[0], "dtype", "float32") or "float32")
    spec = tf.TensorSpec([None, *input_shape], tf.uint8, name="images")

    @tf.function(input_signature=[spec], autograph=False)
    def infer(images: tf.Tensor) -> tuple[tf.Tensor, list[tf.Tensor]]:
        inputs = images if input_dtype == "uint8" else tf.cast(images, input_dtype)
        outputs = tapped(inputs, training=False)
        batch = tf.shape(images)[0]
        prediction = tf.cast(tf.reshape(outputs[0], [batch, -1]), tf.float32)
        return prediction, [pool_features(f, batch) for f in outputs[1:]]

    infer.get_concrete_function()
    return infer


def extract_features(
    function: Any, images: np.ndarray, *, batch_size: int = 64
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Run `make_feature_function`'s function over ``images`` in batches.

    Args:
        function: From `make_feature_function`.
        images: ``uint8`` array ``(N, H, W, C)`` (a memory map is fine).
        batch_size: Images per batch.

    Returns:
        ``(outputs (N, K), [features (N, D) per layer])`` as numpy arrays.
    """
    import tensorflow as tf

    outputs: list[np.ndarray] = []
    features: list[list[np.ndarray]] = []
    for start in range(0, len(images), batch_size):
        chunk = np.ascontiguousarray(images[start : start + batch_size], dtype=np.uint8)
        prediction, values = function(tf.convert_to_tensor(chunk))
        outputs.append(prediction.numpy())
        if not features:
            features = [[] for _ in values]
        for store, value in zip(features, values, strict=True):
            store.append(value.numpy())
    return np.concatenate(outputs), [np.concatenate(f) for f in features]


# --- fitting -----------------------------------------------------------------------------


def fit_ood_check(
    model: keras.Model,
    train_images: np.ndarray,
    validation_images: np.ndarray | None = None,
    *,
    layers: Sequence[str] | None = None,
    acceptance: float = DEFAULT_ACCEPTANCE,
    shifted_copies: int = 1,
    seed: int = 0,
    batch_size: int = 64,
) -> OODCheck:
    """Fit an OOD check on a model's training images; calibrate it on validation images.

    Chest X-rays from another scanner are still chest X-rays: besides the
    images themselves, the fit and the calibration see ``shifted_copies``
    copies of each image under one acquisition shift drawn at random from
    [`DEFAULT_SHIFTS`][cxr_pneumonia.shifts.DEFAULT_SHIFTS] (gamma, contrast,
    brightness, blur, sharpening, noise, JPEG, resolution, crops, borders,
    rotations).
    Without them the features of a radiograph in a thin black border, or
    sharpened, lie as far out as those of a photo (measured on the shipped
    model: see the guide "Knowing when the model should not answer").

    Args:
        model: The trained Keras model (``uint8`` images in, as bundles take).
        train_images: ``uint8`` array ``(N, H, W, C)`` of training images,
            unaugmented (e.g. ``splits.images["train"]``); at least 2.
        validation_images: Images of patients not in ``train_images``
            (e.g. ``splits.images["validation"]``) on which the threshold is
            set; ``None`` sets it on the training images (which makes the
            check stricter than ``acceptance`` says on new images).
        layers: Feature layer paths; default
            [`default_feature_layers`][cxr_pneumonia.ood.default_feature_layers].
        acceptance: Share of calibration images (with their shifted copies)
            to accept, in ``(0.5, 1]``.
        shifted_copies: Randomly shifted copies of each image added to the fit
            and to the calibration; ``0`` uses the images alone.
        seed: Seed of the shifts' draw.
        batch_size: Images per inference batch.

    Returns:
        The fitted [`OODCheck`][cxr_pneumonia.ood.OODCheck].

    Raises:
        ValueError: If an argument is invalid (too few images, wrong shape,
            unknown layer, ``acceptance`` out of range, negative copies).

    Examples:
        >>> check = fit_ood_check(model, splits.images["train"],
        ...                       splits.images["validation"])  # doctest: +SKIP
    """
    if isinstance(acceptance, bool) or not 0.5 < float(acceptance) <= 1.0:
        msg = f"acceptance must be a share in (0.5, 1], e.g. 0.99; got {acceptance!r}"
        raise ValueError(msg)
    if (
        isinstance(shifted_copies, bool)
        or not isinstance(shifted_copies, int)
        or shifted_copies < 0
    ):
        msg = f"shifted_copies must be 0 or a positive integer, got {shifted_copies!r}"
        raise ValueError(msg)
    shape = tuple(model.inputs[0].shape[1:])
    for name, images in (("train_images", train_images), ("validation_images", validation_images)):
        if images is None:
            continue
        if images.dtype != np.uint8 or images.ndim != 4 or _mismatch(images.shape[1:], shape):
            msg = (
                f"{name} must be uint8 images (N, {', '.join(map(str, shape))}) as the model "
                f"takes, got {images.dtype} {images.shape}"
            )
            raise ValueError(msg)
    if len(train_images) < 2:
        msg = f"train_images must hold at least 2 images to fit the check, got {len(train_images)}"
        raise ValueError(msg)
    names = tuple(layers) if layers is not None else default_feature_layers(model)
    input_shape = tuple(int(d) for d in train_images.shape[1:])
    function = make_feature_function(model, names, input_shape)

    def features(images: np.ndarray, stream: int) -> list[np.ndarray]:
        parts = [extract_features(function, images, batch_size=batch_size)[1]]
        for copy in range(shifted_copies):
            parts.append(
                _shifted_features(
                    function, images, seed=(seed, stream, copy), batch_size=batch_size
                )
            )
        return [np.concatenate(layer) for layer in zip(*parts, strict=True)]

    train_features = features(train_images, 0)
    means, precisions = [], []
    for values in train_features:
        mean, precision = _gaussian(values)
        means.append(mean)
        precisions.append(precision)
    partial = OODCheck(names, tuple(means), tuple(precisions), threshold=0.0)
    calibration = "validation"
    if validation_images is None or len(validation_images) == 0:
        calibration, scores = "train", partial.score(train_features)
    else:
        scores = partial.score(features(validation_images, 1))
    threshold = float(np.quantile(scores, float(acceptance), method="higher"))
    stats = {
        "n_fit": len(train_images),
        "n_calibration": len(scores) // (1 + shifted_copies),
        "calibration": calibration,
        "shifted_copies": shifted_copies,
        "seed": seed,
        "calibration_accepted": float(np.mean(scores <= threshold)),
        "calibration_score_quantiles": {
            str(q): float(np.quantile(scores, q)) for q in (0.5, 0.9, 0.99)
        },
    }
    return OODCheck(
        names,
        tuple(means),
        tuple(precisions),
        threshold=threshold,
        acceptance=float(acceptance),
        stats=stats,
    )


def _shifted_features(
    function: Any, images: np.ndarray, *, seed: tuple[int, ...], batch_size: int
) -> list[np.ndarray]:
    """Features of ``images``, each under one random shift of the report's table."""
    from cxr_pneumonia.shifts import DEFAULT_SHIFTS, apply_shift

    settings = [(name, s) for name, strengths in DEFAULT_SHIFTS.items() for s in strengths]
    rng = np.random.default_rng(list(seed))
    choice = rng.integers(len(settings), size=len(images))
    noise_seed = int(rng.integers(2**31))
    parts: list[list[np.ndarray]] = []
    chunk = max(batch_size, 256)
    for start in range(0, len(images), chunk):
        batch = np.array(images[start : start + chunk], dtype=np.uint8)
        picks = choice[start : start + chunk]
        for index, (name, strength) in enumerate(settings):
            where = np.flatnonzero(picks == index)
            if where.size:
                batch[where] = apply_shift(batch[where], name, strength, seed=noise_seed)
        parts.append(extract_features(function, batch, batch_size=batch_size)[1])
    return [np.concatenate(layer) for layer in zip(*parts, strict=True)]


def _mismatch(got: Sequence[int], want: Sequence[int | None]) -> bool:
    if len(got) != len(want):
        return True
    return any(w is not None and g != w for g, w in zip(got, want, strict=True))


def _gaussian(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and Ledoit-Wolf-shrunk precision of ``values`` ``(N, D)``."""
    x = np.asarray(values, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    n, dim = centred.shape
    sample = centred.T @ centred / n
    # Ledoit & Wolf (2004): shrink towards mu * I by the estimated optimal amount.
    mu = float(np.trace(sample)) / dim
    delta = float(np.sum((sample - mu * np.eye(dim)) ** 2)) / dim
    squares = centred**2
    beta = float(np.sum(squares.T @ squares) / n - np.sum(sample**2)) / (dim * n)
    shrinkage = 0.0 if delta <= 0 else min(max(beta, 0.0), delta) / delta
    covariance = (1.0 - shrinkage) * sample + shrinkage * mu * np.eye(dim)
    scale = max(mu, 1e-12)
    covariance = covariance + 1e-6 * scale * np.eye(dim)  # constant features: stay invertible
    precision = np.linalg.pinv(covariance, hermitian=True)
    return mean, precision


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
