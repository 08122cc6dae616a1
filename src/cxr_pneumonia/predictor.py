"""Predict NORMAL / PNEUMONIA for images of any kind with a saved model.

::

    from cxr_pneumonia import Predictor

    predictor = Predictor.load("bundles/cnn-v1")
    predictor.predict("xray.jpeg")                    # -> Prediction
    predictor.predict(["a.png", b"...", pil_image])   # -> list[Prediction]
    predictor.predict(paths, errors="skip")           # bad items get .error

How inputs are read:

* **One input** -- a path (``str`` or ``os.PathLike``), ``bytes``, a binary
  file object, a ``PIL.Image.Image``, or a 2-D or 3-D numpy array (one image,
  ``H x W`` or ``H x W x 1/3/4``) -- gives one [`Prediction`][cxr_pneumonia.predictor.Prediction].
* **A batch** -- a list, tuple or any other iterable of such inputs, or a 4-D
  numpy array ``(N, H, W, C)`` (N images) -- gives a list of predictions in
  the same order. A *list* of arrays is a batch; an array is never split
  along its first axis unless it is 4-D.

Every image goes through [`prepare_image`][cxr_pneumonia.images.prepare_image] at the
bundle's size and color mode: the very function the training pipeline uses, so
an image gets the same pixels, and the same score, in both. Decoding runs in a
thread pool (Pillow releases the GIL), up to two batches ahead of inference, so
the next batches decode while the current one runs through the model: the
pace is set by the slower of the two stages, not their sum, wherever they
don't share the same few cores. Each batch goes through one compiled
TensorFlow function with a fixed input signature ``(None, H, W, C) uint8``,
traced once per [`Predictor`][cxr_pneumonia.predictor.Predictor]. A Predictor
can be shared by many threads, and ``await predictor.apredict(...)`` runs a
prediction in a worker thread so an ``asyncio`` service (ASGI) keeps serving
meanwhile.

[`Predictor.explain`][cxr_pneumonia.predictor.Predictor.explain] (and
[`explain`][cxr_pneumonia.predictor.explain]) shows why with Grad-CAM: the image is decoded once,
scored, and `cxr_pneumonia.gradcam` computes the heatmap of the predicted class on that same
prepared batch.

Inputs that are not chest X-rays: a bundle saved with an out-of-distribution
check (`cxr_pneumonia.ood`) makes that same forward pass also return the
model's penultimate features; every
[`Prediction`][cxr_pneumonia.predictor.Prediction] then says whether the
input looks like the training images (``in_distribution``) and how far it is
(``ood_score``). The ``ood`` policy decides what happens to the others:
``"flag"`` (default) predicts and flags them, ``"error"`` refuses them with
[`OutOfDistributionError`][cxr_pneumonia.exceptions.OutOfDistributionError] (or, with
``errors="skip"``, a Prediction whose ``error`` says so), ``"ignore"`` skips
the check. Bundles saved without a check predict as before, with
``in_distribution=None``.

This module is the public entry point and holds the Predictor itself (loading, the model call,
the OOD policy). Two private modules beside it, which do not import it, hold its two ends:
``_predictor_inputs`` (one input or a batch, naming and decoding them in threads) and
``_predictor_results`` (``Prediction`` and ``Explanation``, defined there and re-exported here,
and how they are made from the model's outputs).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
from PIL import Image  # noqa: F401  (Explanation's annotations resolve here, see below)

from cxr_pneumonia._predictor_inputs import (
    as_items,
    check_arrays,
    decode_input,
    decoded_batches,
    rereadable,
)
from cxr_pneumonia._predictor_results import (
    Explanation,
    Prediction,
    check_threshold,
    class_indices,
    explanation,
    explanation_layers,
    make_prediction,
    refusal_message,
)
from cxr_pneumonia.bundle import BundleMetadata, load_bundle, load_ood_check, metadata_for_model
from cxr_pneumonia.exceptions import BundleError, InvalidImageError, OutOfDistributionError
from cxr_pneumonia.gradcam import layer_outputs, layer_paths, resolve_layer
from cxr_pneumonia.images import DEFAULT_MAX_PIXELS, ImageInput, load_image
from cxr_pneumonia.outputs import OutputKind, output_kind, positive_probability

if TYPE_CHECKING:
    import keras

    from cxr_pneumonia.ood import OODCheck

__all__ = [
    "Explanation",
    "OODPolicy",
    "Prediction",
    "Predictor",
    "PredictorInput",
    "explain",
    "feature_maps",
]

Errors = Literal["raise", "skip"]

OODPolicy = Literal["flag", "error", "ignore"]
"""What a Predictor does with inputs its OOD check flags.

See [`Predictor`][cxr_pneumonia.predictor.Predictor]."""

_OOD_POLICIES = ("flag", "error", "ignore")
_logger = logging.getLogger("cxr_pneumonia")
_noted_missing_check = threading.Event()

PredictorInput = ImageInput | Iterable[ImageInput]
"""One image input, or an iterable (or 4-D array) of them."""

# The results are defined in _predictor_results and belong to this module, as
# before the split: help(), reprs, pickles and the API reference name them
# cxr_pneumonia.predictor.<name>, and typing.get_type_hints reads their annotations
# here (hence np and Image above).
Explanation.__module__ = __name__
Prediction.__module__ = __name__


class Predictor:
    """A loaded model ready to predict on images of any kind.

    Create it with [`load`][cxr_pneumonia.predictor.Predictor.load] from a bundle folder,
    [`default`][cxr_pneumonia.predictor.Predictor.default] for the shipped model, or directly from a
    Keras model (and, ideally, the metadata saved with it).

    Args:
        model: A Keras model taking ``uint8`` images ``(N, H, W, C)`` and
            returning a sigmoid ``(N, 1)`` or softmax ``(N, 2)`` output.
        metadata: What the model means (input size, color mode, class names,
            threshold). Default: taken from the model's input shape, with
            threshold 0.5 and classes ``("NORMAL", "PNEUMONIA")``.
        batch_size: Images per inference batch.
        max_pixels: Refuse inputs with more pixels than this before decoding
            them (decompression bombs); ``None`` disables the check.
        num_workers: Decoding threads; default ``min(4, os.cpu_count())``.
        ood_check: The out-of-distribution check
            ([`load`][cxr_pneumonia.predictor.Predictor.load] reads the
            bundle's); ``None``: predictions are not checked.
        ood: What to do with inputs the check flags: ``"flag"`` (predict and
            set ``in_distribution=False``), ``"error"`` (refuse them with
            [`OutOfDistributionError`][cxr_pneumonia.exceptions.OutOfDistributionError]) or
            ``"ignore"`` (don't compute the check).

    Attributes:
        model: The Keras model.
        metadata: The bundle metadata.
        threshold: Default decision threshold.
        image_size: ``(height, width)`` the model takes.
        color_mode: ``"grayscale"`` or ``"rgb"``.
        class_names: Class names in output order.
        ood_check: The OOD check in use, or ``None``.
        ood: The OOD policy.

    Raises:
        ValueError: If the model's input or output does not fit a binary image
            classifier, an option is invalid, or ``ood_check`` names layers the
            model lacks.
    """

    def __init__(
        self,
        model: keras.Model,
        metadata: BundleMetadata | None = None,
        *,
        batch_size: int = 32,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        num_workers: int | None = None,
        ood_check: OODCheck | None = None,
        ood: OODPolicy = "flag",
    ) -> None:
        import tensorflow as tf

        if metadata is None:
            metadata = metadata_for_model(model)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            msg = f"batch_size must be a positive integer, got {batch_size!r}"
            raise ValueError(msg)
        if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 1):
            msg = f"max_pixels must be a positive integer or None, got {max_pixels!r}"
            raise ValueError(msg)
        if num_workers is None:
            num_workers = min(4, os.cpu_count() or 1)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            msg = f"num_workers must be a positive integer or None, got {num_workers!r}"
            raise ValueError(msg)
        if ood not in _OOD_POLICIES:
            msg = f"ood={ood!r} is not supported; choose one of: {', '.join(_OOD_POLICIES)}"
            raise ValueError(msg)
        self.model = model
        self.metadata = metadata
        self.threshold: float = metadata.threshold
        self.image_size: tuple[int, int] = metadata.image_size
        self.color_mode: str = metadata.color_mode
        self.class_names: tuple[str, ...] = metadata.class_names
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.num_workers = num_workers
        self._positive, self._negative = class_indices(self.class_names)
        self.output_kind: OutputKind = output_kind(model)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.ood_check = ood_check
        self.ood: OODPolicy = ood
        self._features: Any = None
        if ood_check is not None and ood != "ignore":
            from cxr_pneumonia.ood import make_feature_function

            # One forward pass gives the prediction and the check's features.
            self._features = make_feature_function(
                model, ood_check.feature_layers, metadata.input_shape
            )

        input_dtype = str(getattr(model.inputs[0], "dtype", "float32") or "float32")
        spec = tf.TensorSpec([None, *metadata.input_shape], tf.uint8, name="images")

        @tf.function(input_signature=[spec], autograph=False)
        def infer(images: tf.Tensor) -> tf.Tensor:
            inputs = images if input_dtype == "uint8" else tf.cast(images, input_dtype)
            outputs = model(inputs, training=False)
            return tf.cast(tf.reshape(outputs, [tf.shape(images)[0], -1]), tf.float32)

        self._infer = infer
        if self._features is None:
            # Trace now, once: later calls of any batch size reuse this graph.
            self._infer.get_concrete_function()

    # --- construction ---------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 32,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        num_workers: int | None = None,
        ood: OODPolicy = "flag",
    ) -> Predictor:
        """Load a bundle written by [`save_model`][cxr_pneumonia.bundle.save_model].

        A bundle saved without an out-of-distribution check (by an older
        version, or without ``ood_data``) loads and predicts with
        ``in_distribution=None``; the first such load logs a note.

        Args:
            path: The bundle folder.
            batch_size: Images per inference batch.
            max_pixels: Pixel limit checked before decoding (``None``: none).
            num_workers: Decoding threads; default ``min(4, os.cpu_count())``.
            ood: What to do with inputs the bundle's OOD check flags:
                ``"flag"``, ``"error"`` or ``"ignore"`` (see
                [`Predictor`][cxr_pneumonia.predictor.Predictor]).

        Returns:
            A ready Predictor.

        Raises:
            BundleError: If the bundle is missing, corrupt, or too new.
        """
        model, metadata = load_bundle(path)
        check = load_ood_check(path, metadata)
        if check is None and ood != "ignore":
            _note_missing_check(path)
        return cls(
            model,
            metadata,
            batch_size=batch_size,
            max_pixels=max_pixels,
            num_workers=num_workers,
            ood_check=check,
            ood=ood,
        )

    @classmethod
    def default(
        cls,
        *,
        batch_size: int = 32,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        num_workers: int | None = None,
        ood: OODPolicy = "flag",
    ) -> Predictor:
        """Load the model shipped with the package (``assets/default_model``).

        Args:
            batch_size: Images per inference batch.
            max_pixels: Pixel limit checked before decoding (``None``: none).
            num_workers: Decoding threads; default ``min(4, os.cpu_count())``.
            ood: What to do with inputs that are not like chest X-rays:
                ``"flag"``, ``"error"`` or ``"ignore"`` (see
                [`Predictor`][cxr_pneumonia.predictor.Predictor]).

        Returns:
            A ready Predictor.

        Raises:
            BundleError: If this installation ships no default model, or it is
                corrupt.
        """
        resource = importlib.resources.files("cxr_pneumonia") / "assets" / "default_model"
        if not resource.is_dir():
            msg = (
                "this installation of cxr-pneumonia ships no default model "
                "(cxr_pneumonia/assets/default_model is absent); load a bundle you trained "
                "with Predictor.load(path), or install a release that includes the default model"
            )
            raise BundleError(msg)
        with importlib.resources.as_file(resource) as folder:
            return cls.load(
                folder,
                batch_size=batch_size,
                max_pixels=max_pixels,
                num_workers=num_workers,
                ood=ood,
            )

    # --- prediction -----------------------------------------------------------------

    @overload
    def predict(  # type: ignore[overload-overlap]
        self, x: ImageInput, *, errors: Errors = ..., threshold: float | None = ...
    ) -> Prediction: ...

    @overload
    def predict(
        self,
        x: Iterable[ImageInput],
        *,
        errors: Errors = ...,
        threshold: float | None = ...,
    ) -> list[Prediction]: ...

    def predict(
        self,
        x: PredictorInput,
        *,
        errors: Errors = "raise",
        threshold: float | None = None,
    ) -> Prediction | list[Prediction]:
        """Predict one image or a batch of images.

        Args:
            x: One input (path, bytes, binary file object, PIL image, 2-D/3-D
                array, DICOM file) or a batch (list, tuple, any iterable of
                inputs, or a 4-D array ``(N, H, W, C)``); see the module docs.
            errors: ``"raise"`` to raise on the first unreadable input;
                ``"skip"`` to return a [`Prediction`][cxr_pneumonia.predictor.Prediction] with
                ``error`` set (and ``label``/``probability`` ``None``) for it and predict the
                others.
            threshold: Decision threshold for this call; default: the bundle's.

        Returns:
            A [`Prediction`][cxr_pneumonia.predictor.Prediction] for one input, a list of them for a
            batch.

        Raises:
            InvalidImageError: With ``errors="raise"``, for an input that is
                empty, truncated, not an image, unsupported, or larger than
                ``max_pixels``; the message names the input (path or index).
            OutOfDistributionError: With ``ood="error"`` and ``errors="raise"``,
                for an input the OOD check flags (with ``errors="skip"`` its
                Prediction gets the message as ``error`` instead).
            ValueError: If ``errors`` or ``threshold`` is invalid.
        """
        if errors not in ("raise", "skip"):
            msg = f"errors={errors!r} is not supported; choose 'raise' or 'skip'"
            raise ValueError(msg)
        cut = self.threshold if threshold is None else check_threshold(threshold)
        single, items = as_items(x)
        results: list[Prediction] = []
        batches = decoded_batches(
            items,
            single=single,
            decode=self._prepare,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pool=self._pool,
        )
        for sources, decoded in batches:
            good = [i for i, d in enumerate(decoded) if isinstance(d, np.ndarray)]
            arrays = [d for d in decoded if isinstance(d, np.ndarray)]
            probs: Sequence[float] = []
            scores: Sequence[float | None] = [None] * len(arrays)
            if arrays:
                batch_probs, batch_scores = self._scores(np.stack(arrays))
                probs = list(batch_probs)
                if batch_scores is not None:
                    scores = [float(v) for v in batch_scores]
            by_index = dict(zip(good, zip(probs, scores, strict=True), strict=True))
            for i, (source, item) in enumerate(zip(sources, decoded, strict=True)):
                if isinstance(item, InvalidImageError):
                    if errors == "raise":
                        raise item
                    results.append(Prediction(None, None, cut, source, str(item)))
                    continue
                probability, score = by_index[i]
                prediction = self._prediction(float(probability), cut, source, score)
                if self.ood == "error" and prediction.in_distribution is False:
                    message = refusal_message(source, single, score, self.ood_check)
                    refusal = OutOfDistributionError(message)
                    if errors == "raise":
                        raise refusal
                    prediction = Prediction(
                        None, None, cut, source, str(refusal), False, prediction.ood_score
                    )
                results.append(prediction)
        return results[0] if single else results

    @overload
    async def apredict(  # type: ignore[overload-overlap]
        self, x: ImageInput, *, errors: Errors = ..., threshold: float | None = ...
    ) -> Prediction: ...

    @overload
    async def apredict(
        self,
        x: Iterable[ImageInput],
        *,
        errors: Errors = ...,
        threshold: float | None = ...,
    ) -> list[Prediction]: ...

    async def apredict(
        self,
        x: PredictorInput,
        *,
        errors: Errors = "raise",
        threshold: float | None = None,
    ) -> Prediction | list[Prediction]:
        """Predict for ``asyncio`` code: await it without blocking the event loop.

        The same as [`predict`][cxr_pneumonia.predictor.Predictor.predict], awaitable:
        the prediction runs in a worker thread (``asyncio.to_thread``), so the
        loop keeps serving other requests meanwhile; decoding and inference
        release the GIL. Several concurrent calls share the Predictor (it is
        thread-safe). Cancelling the awaiting task does not stop a prediction
        already running in its thread; its result is dropped.

        Args:
            x: One input or a batch, as for ``predict``.
            errors: ``"raise"`` or ``"skip"``, as for ``predict``.
            threshold: Decision threshold for this call; default: the bundle's.

        Returns:
            A [`Prediction`][cxr_pneumonia.predictor.Prediction] for one input, a list
            of them for a batch.

        Raises:
            InvalidImageError: With ``errors="raise"``, for an unreadable input.
            ValueError: If ``errors`` or ``threshold`` is invalid.

        Examples:
            >>> async def classify(upload: bytes) -> dict:  # doctest: +SKIP
            ...     prediction = await predictor.apredict(upload)
            ...     return {"label": prediction.label, "probability": prediction.probability}
        """
        return await asyncio.to_thread(self.predict, x, errors=errors, threshold=threshold)

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        """Probabilities of PNEUMONIA for already prepared pixels.

        Args:
            images: ``uint8`` array ``(N, H, W, C)`` at the model's
                `image_size` and channels (as the data pipeline yields).

        Returns:
            ``float64`` array ``(N,)`` of probabilities.

        Raises:
            ValueError: If ``images`` has the wrong dtype or shape.
        """
        array = check_arrays(images, self.metadata.input_shape, "predict_arrays")
        if len(array) == 0:
            return np.zeros((0,), dtype=np.float64)
        chunks = [
            self._probabilities(array[start : start + self.batch_size])
            for start in range(0, len(array), self.batch_size)
        ]
        return np.concatenate(chunks)

    def ood_scores(self, images: np.ndarray) -> np.ndarray:
        """Out-of-distribution scores for already prepared pixels.

        Args:
            images: ``uint8`` array ``(N, H, W, C)`` at the model's
                `image_size` and channels (as the data pipeline yields).

        Returns:
            ``float64`` array ``(N,)``; an image is in distribution when its
            score is at most ``ood_check.threshold``.

        Raises:
            ValueError: If ``images`` has the wrong dtype or shape, or this
                Predictor has no OOD check (or was made with ``ood="ignore"``).
        """
        array = check_arrays(images, self.metadata.input_shape, "ood_scores")
        if self.ood_check is None or self._features is None:
            msg = (
                "this Predictor has no out-of-distribution check (the bundle has none, or "
                "ood='ignore'); fit one with cxr_pneumonia.fit_ood_check or `cxr-pneumonia ood-fit`"
            )
            raise ValueError(msg)
        if len(array) == 0:
            return np.zeros((0,), dtype=np.float64)
        chunks = []
        for start in range(0, len(array), self.batch_size):
            scores = self._scores(array[start : start + self.batch_size])[1]
            assert scores is not None
            chunks.append(scores)
        return np.concatenate(chunks)

    def explain(
        self,
        x: ImageInput,
        *,
        layer: str | Sequence[str] | None = None,
        alpha: float = 0.4,
    ) -> Explanation:
        """Grad-CAM heatmap for one image.

        The heatmap shows the evidence for the *predicted* class (the gradient
        of the PNEUMONIA probability ``p`` when the label is PNEUMONIA, of
        ``1 - p`` otherwise), computed by
        [`cxr_pneumonia.gradcam.grad_cam`][cxr_pneumonia.gradcam.grad_cam] on the very batch that
        was scored.

        For an ensemble (a bundle whose metadata lists ``members``), the
        default is one heatmap per member, each from the last convolutional
        stage inside that member's sub-model (the gradient of the ensemble's
        output), resized to the image, and their mean (peak scaled to 1):
        every member counts the same whatever its activations' scale.
        The explanation's prediction carries the OOD flag like any other (an
        image that is no chest X-ray is explained all the same, flagged).

        Args:
            x: One image input (path, bytes, binary file object, PIL image,
                array, DICOM file).
            layer: Name of a layer with 4-D output (``"inner"`` or
                ``"outer/inner"``), or of a nested model (its last
                convolutional stage), or a list of them whose heatmaps are
                averaged; default: the last convolutional stage, or each
                member's for an ensemble.
            alpha: Opacity of the heat colors in the overlay, in ``[0, 1]``.

        Returns:
            The [`Explanation`][cxr_pneumonia.predictor.Explanation].

        Raises:
            InvalidImageError: If ``x`` is not a usable image.
            ValueError: If ``layer`` is unknown or not convolutional (the
                message lists the model's convolutional layers), or ``alpha``
                is invalid.

        Examples:
            >>> result = predictor.explain("xray.jpeg")  # doctest: +SKIP
            >>> result.overlay.save("xray-gradcam.png")  # doctest: +SKIP
        """
        if not 0.0 <= float(alpha) <= 1.0:
            msg = f"alpha must be in [0, 1], got {alpha!r}"
            raise ValueError(msg)
        names = explanation_layers(layer, self.metadata.members)
        paths = tuple(resolve_layer(self.model, name) for name in names)
        data, name = rereadable(x)
        original = load_image(
            data, color_mode=self.color_mode, max_pixels=self.max_pixels, name=name
        )
        batch = self._prepare(data, name)[np.newaxis]
        probabilities, ood_scores = self._scores(batch)
        prediction = self._prediction(
            float(probabilities[0]),
            self.threshold,
            name if name is not None else 0,
            None if ood_scores is None else float(ood_scores[0]),
        )
        positive = prediction.label == self.class_names[self._positive]
        return explanation(
            prediction,
            model=self.model,
            batch=batch,
            original=original,
            class_index=self._positive if positive else self._negative,
            paths=paths,
            alpha=alpha,
        )

    def feature_maps(
        self, x: ImageInput, *, layers: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Activations of convolutional layers for one image.

        Args:
            x: One image input.
            layers: Layer names (``"inner"`` or ``"outer/inner"``); default:
                every convolution of the model, in order.

        Returns:
            ``{layer name: float32 array (h, w, channels)}`` in model order.

        Raises:
            InvalidImageError: If ``x`` is not a usable image.
            ValueError: If a layer is unknown or has no 4-D output.
        """
        paths = layer_paths(self.model, layers)
        if not paths:
            return {}
        data, name = rereadable(x)
        batch = self._prepare(data, name)[np.newaxis]
        return {
            path: values[0]
            for path, values in layer_outputs(self.model, batch, layers=paths).items()
        }

    def close(self) -> None:
        """Shut down the decoding threads (they restart if the Predictor is used again)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Predictor(model={self.metadata.model_name!r}, image_size={self.image_size}, "
            f"color_mode={self.color_mode!r}, threshold={self.threshold:g})"
        )

    # --- internals -------------------------------------------------------------------

    def _prepare(self, item: ImageInput, name: str | None = None) -> np.ndarray:
        """Decode and resize one input exactly as training does."""
        return decode_input(
            item, name, size=self.image_size, color_mode=self.color_mode, max_pixels=self.max_pixels
        )

    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        """PNEUMONIA probabilities for a ``uint8`` batch at the model's size."""
        return self._scores(batch)[0]

    def _scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and OOD scores (``None`` when not checked) of one forward pass."""
        import tensorflow as tf

        images = tf.convert_to_tensor(batch, dtype=tf.uint8)
        if self._features is None or self.ood_check is None:
            return self._positive_probability(self._infer(images).numpy()), None
        outputs, features = self._features(images)
        scores = self.ood_check.score([f.numpy() for f in features])
        return self._positive_probability(outputs.numpy()), scores

    def _positive_probability(self, outputs: np.ndarray) -> np.ndarray:
        return positive_probability(outputs, positive_index=self._positive)

    def _prediction(
        self,
        probability: float,
        threshold: float,
        source: str | int,
        ood_score: float | None = None,
    ) -> Prediction:
        return make_prediction(
            probability,
            threshold,
            source,
            ood_score,
            class_names=self.class_names,
            indices=(self._positive, self._negative),
            ood_check=self.ood_check,
        )

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.num_workers, thread_name_prefix="cxr-decode"
                )
            return self._executor


# --- explaining a model or a Predictor ---------------------------------------------------


def explain(
    model_or_predictor: Predictor | keras.Model,
    x: ImageInput,
    *,
    layer: str | Sequence[str] | None = None,
    alpha: float = 0.4,
) -> Explanation:
    """Grad-CAM heatmap for one image; see
    [`Predictor.explain`][cxr_pneumonia.predictor.Predictor.explain].

    The heatmap shows the evidence for the *predicted* class (the gradient of
    the PNEUMONIA probability ``p`` when the label is PNEUMONIA, of ``1 - p``
    otherwise). For an ensemble it is the mean of its members' heatmaps.

    Args:
        model_or_predictor: A [`Predictor`][cxr_pneumonia.predictor.Predictor] (preferred: it knows
            the input size, color mode, threshold and class names of the bundle) or a bare Keras
            model (described from its input shape, threshold 0.5).
        x: One image input (path, bytes, binary file object, PIL image, array,
            DICOM file).
        layer: Name of a layer with 4-D output (``"inner"`` or
            ``"outer/inner"``), of a nested model, or a list of them
            (averaged); default: the last convolutional stage (each member's
            for an ensemble).
        alpha: Opacity of the heat colors in the overlay, in ``[0, 1]``.

    Returns:
        The [`Explanation`][cxr_pneumonia.predictor.Explanation].

    Raises:
        InvalidImageError: If ``x`` is not a usable image.
        ValueError: If ``layer`` is unknown or not convolutional (the message
            lists the model's convolutional layers), or ``alpha`` is invalid.

    Examples:
        >>> result = explain(predictor, "xray.jpeg")  # doctest: +SKIP
        >>> result.overlay.save("xray-gradcam.png")  # doctest: +SKIP
    """
    return _as_predictor(model_or_predictor).explain(x, layer=layer, alpha=alpha)


def feature_maps(
    model_or_predictor: Predictor | keras.Model,
    x: ImageInput,
    *,
    layers: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Activations of convolutional layers for one image; see
    [`Predictor.feature_maps`][cxr_pneumonia.predictor.Predictor.feature_maps].

    Args:
        model_or_predictor: A [`Predictor`][cxr_pneumonia.predictor.Predictor] or a Keras model.
        x: One image input.
        layers: Layer names (``"inner"`` or ``"outer/inner"``); default: every
            convolution of the model, in order.

    Returns:
        ``{layer name: float32 array (h, w, channels)}`` in model order.

    Raises:
        InvalidImageError: If ``x`` is not a usable image.
        ValueError: If a layer is unknown or has no 4-D output.
    """
    return _as_predictor(model_or_predictor).feature_maps(x, layers=layers)


def _as_predictor(model_or_predictor: Any) -> Predictor:
    if isinstance(model_or_predictor, Predictor):
        return model_or_predictor
    import keras

    if isinstance(model_or_predictor, keras.Model):
        return Predictor(model_or_predictor, num_workers=1)
    msg = f"expected a Predictor or a Keras model, got {type(model_or_predictor).__name__}"
    raise TypeError(msg)


# --- helpers ---------------------------------------------------------------------------


def _note_missing_check(path: str | os.PathLike[str]) -> None:
    """Log, once per process, that a bundle has no OOD check."""
    if _noted_missing_check.is_set():
        return
    _noted_missing_check.set()
    _logger.warning(
        "note: the model bundle %s has no out-of-distribution check (saved before checks "
        "existed, or without ood_data): inputs that are not chest X-rays are not flagged "
        "(Prediction.in_distribution is None). Add one with `cxr-pneumonia ood-fit %s "
        "--data-dir TRAINING_DATA`.",
        os.fspath(path),
        os.fspath(path),
    )
