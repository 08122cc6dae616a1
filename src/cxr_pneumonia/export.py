"""Export a model bundle for serving: a TensorFlow SavedModel or a TFLite file.

Both take raw pixels, exactly what the bundle's Predictor feeds its model:
``uint8`` images of shape ``(batch, height, width, channels)`` at the bundle's
image size and color mode (decode and resize them with
[`cxr_pneumonia.prepare_image`][cxr_pneumonia.images.prepare_image]). Both return the probability of
PNEUMONIA and the decision at the bundle's threshold, computed as the Predictor computes them (a
sigmoid ``(N, 1)`` or softmax ``(N, 2)`` output is reduced to the probability of the ``PNEUMONIA``
class named in the bundle).

The SavedModel has one signature, ``serving_default``, with input ``image`` and
outputs ``probability`` (float32, ``(batch,)``) and ``pneumonia`` (bool,
``(batch,)``), which TensorFlow Serving loads as it is. The TFLite file has the
same signature (run it with ``interpreter.get_signature_runner()``).

Examples:
    >>> export_model("bundles/cnn-v1", "serving/cnn/1", format="savedmodel")  # doctest: +SKIP
    >>> export_model("bundles/cnn-v1", "cnn.tflite", format="tflite")  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cxr_pneumonia.bundle import BundleMetadata, load_bundle
from cxr_pneumonia.exceptions import BundleError
from cxr_pneumonia.outputs import output_kind, positive_probability_tensor

if TYPE_CHECKING:
    import keras

__all__ = ["EXPORT_FORMATS", "SIGNATURE_KEY", "ExportFormat", "export_model"]

ExportFormat = Literal["savedmodel", "tflite"]
EXPORT_FORMATS: tuple[str, ...] = ("savedmodel", "tflite")
"""The formats [`export_model`][cxr_pneumonia.export.export_model] writes."""

SIGNATURE_KEY = "serving_default"
"""Name of the one serving signature of both exports."""

_POSITIVE_CLASS = "PNEUMONIA"


def export_model(
    bundle: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    format: str = "savedmodel",
    overwrite: bool = False,
) -> Path:
    """Export a bundle as a SavedModel folder or a TFLite file.

    The export is written beside ``out`` under a temporary name and moved into
    place at the end, so a failed export never leaves a half-written one behind.

    Args:
        bundle: A bundle folder written by
            [`cxr_pneumonia.bundle.save_model`][cxr_pneumonia.bundle.save_model].
        out: The SavedModel folder or ``.tflite`` file to write.
        format: ``"savedmodel"`` or ``"tflite"``.
        overwrite: Replace ``out`` if it exists.

    Returns:
        The path written.

    Raises:
        ValueError: For an unknown format.
        FileExistsError: If ``out`` exists and ``overwrite`` is false.
        BundleError: If the bundle can't be loaded, or the conversion fails.

    Examples:
        >>> export_model("bundles/cnn-v1", "cnn.tflite", format="tflite")  # doctest: +SKIP
        PosixPath('cnn.tflite')
    """
    if format not in EXPORT_FORMATS:
        msg = f"unknown export format {format!r}; choose one of: {', '.join(EXPORT_FORMATS)}"
        raise ValueError(msg)
    target = Path(out)
    if target.exists() and not overwrite:
        msg = f"{target} already exists; pass overwrite=True (--overwrite) to replace it"
        raise FileExistsError(msg)
    model, metadata = load_bundle(bundle)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.export-", dir=target.parent) as work:
        saved = Path(work) / "savedmodel"
        _write_savedmodel(model, metadata, saved)
        if format == "savedmodel":
            staged = saved
        else:
            staged = Path(work) / "model.tflite"
            staged.write_bytes(_convert_tflite(saved))
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(staged, target)
    return target


def _positive_index(metadata: BundleMetadata) -> int:
    names = metadata.class_names
    return names.index(_POSITIVE_CLASS) if _POSITIVE_CLASS in names else 1


def _write_savedmodel(model: keras.Model, metadata: BundleMetadata, path: Path) -> None:
    import keras
    import tensorflow as tf

    height, width = metadata.image_size
    threshold = float(metadata.threshold)
    positive = _positive_index(metadata)
    input_dtype = str(getattr(model.inputs[0], "dtype", "float32") or "float32")
    try:
        n_outputs = 2 if output_kind(model) == "softmax" else 1
    except ValueError as exc:
        raise BundleError(str(exc)) from None

    spec = tf.TensorSpec([None, height, width, metadata.channels], tf.uint8, name="image")

    # A traced tf.function with a fixed signature (Keras' "fast path"): the
    # signature's input keeps its name, ``image``, in the SavedModel.
    @tf.function(input_signature=[spec], autograph=False)
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        inputs = image if input_dtype == "uint8" else tf.cast(image, input_dtype)
        outputs = tf.cast(model(inputs, training=False), tf.float32)
        outputs = tf.reshape(outputs, [-1, n_outputs])
        probability = positive_probability_tensor(outputs, positive_index=positive)
        return {"probability": probability, "pneumonia": probability >= threshold}

    serve.get_concrete_function()
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name=SIGNATURE_KEY, fn=serve)
    write_out: Any = archive.write_out
    if "verbose" in inspect.signature(write_out).parameters:
        write_out(str(path), verbose=False)
    else:  # pragma: no cover - Keras before 3.2 has no ``verbose``
        write_out(str(path))


def _convert_tflite(saved: Path) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=[SIGNATURE_KEY])
    try:
        return bytes(converter.convert())
    except Exception as exc:  # the converter raises many internal types
        msg = f"TFLite conversion failed: {type(exc).__name__}: {exc}"
        raise BundleError(msg) from exc
