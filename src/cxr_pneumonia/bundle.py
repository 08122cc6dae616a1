"""Model bundles: one self-describing folder per trained model.

A bundle is a directory holding two or three files::

    my-model/
      model.keras      the Keras model (architecture + weights, Keras 3 format)
      metadata.json    what the model means: input spec, class names in output
                       order, decision threshold, validation metrics, training
                       provenance, the SHA-256 of model.keras, versions, and
                       (under "ood") the out-of-distribution check's feature
                       layers, threshold and the SHA-256 of ood.npz
      ood.npz          the OOD check's arrays (see cxr_pneumonia.ood); absent in
                       bundles saved without one, which still load

[`save_model`][cxr_pneumonia.bundle.save_model] writes it atomically (a temporary folder beside the
target is filled, flushed to disk, then renamed), so a crash never leaves a half-written bundle that
loads. [`load_bundle`][cxr_pneumonia.bundle.load_bundle] checks that both files are there, that the
metadata parses and follows the schema, that the format is not newer than this library reads, and
that ``model.keras`` has the recorded hash, then checks the model's configuration for code-carrying
objects (refused whatever Keras' global safe-mode switch says) and loads the model with Keras *safe
mode*. Any problem raises [`BundleError`][cxr_pneumonia.exceptions.BundleError] with a message that
says what is wrong and what to do.

This module never imports ``training`` or the data pipeline: a service that only
predicts pays only for inference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_pneumonia._files import fsync_dir, fsync_file, remove_debris, sha256_file
from cxr_pneumonia._version import __version__
from cxr_pneumonia.exceptions import BundleError, OverwriteRefusedError
from cxr_pneumonia.images import channels_for, check_color_mode, check_image_size
from cxr_pneumonia.outputs import OUTPUT_KINDS, output_kind

if TYPE_CHECKING:
    import keras

    from cxr_pneumonia.ood import OODCheck

__all__ = [
    "BUNDLE_FORMAT_VERSION",
    "DEFAULT_CLASS_NAMES",
    "METADATA_FILE",
    "MODEL_FILE",
    "BundleMetadata",
    "add_ood_check",
    "check_bundle_target",
    "check_model_config",
    "load_bundle",
    "load_ood_check",
    "metadata_for_model",
    "read_metadata",
    "save_model",
]

logger = logging.getLogger("cxr_pneumonia")

BUNDLE_FORMAT_VERSION = 1
"""The bundle format this version writes; it reads this one and older ones."""

MODEL_FILE = "model.keras"
"""Name of the Keras model file inside a bundle."""

METADATA_FILE = "metadata.json"
"""Name of the metadata file inside a bundle."""

DEFAULT_CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
"""Class names in output order: 0 = NORMAL, 1 = PNEUMONIA."""

_CUSTOM_LAYERS_MODULE = "cxr_pneumonia.models.layers"
_MAX_CONFIG_BYTES = 64 << 20
_CODE_CLASSES = frozenset({"Lambda", "__lambda__", "TFSMLayer"})
_ALLOWED_MODULE = re.compile(r"^(keras|builtins|cxr_pneumonia)(\..+)?$")
_OLD_COPY = re.compile(r"^\.(?P<name>.+)\.old-[0-9a-f]{12}$")


@dataclass(frozen=True)
class BundleMetadata:
    """What a saved model means, stored as ``metadata.json`` beside it.

    Attributes:
        image_size: Input ``(height, width)`` the model expects.
        color_mode: ``"grayscale"`` or ``"rgb"``.
        class_names: Class names in output order (index 1 is the positive class
            whose probability a sigmoid output gives).
        threshold: Decision threshold on the positive class probability.
        model_name: Registry name or the Keras model's name.
        metrics: Validation metrics (name -> number).
        training: Training provenance: data source, seed, command, etc.
        sha256: Hex SHA-256 of ``model.keras``.
        created: ISO 8601 UTC time the bundle was written.
        library_version: ``cxr_pneumonia.__version__`` that wrote the bundle.
        format_version: Bundle format version.
        dtype: Pixel dtype the input expects (always ``"uint8"``).
        output: The model's output kind: ``"sigmoid"`` (``(N, 1)``, the
            probability of ``class_names[1]``) or ``"softmax"`` (``(N, 2)``,
            one probability per class in ``class_names`` order); bundles
            written before this field existed read as ``"sigmoid"``.
        ensemble: For a model averaging several members
            ([`cxr_pneumonia.ensembles.ensemble`][cxr_pneumonia.ensembles.ensemble]): ``{"combine":
            "mean", "members": [...]}``, one provenance record per member (its sub-model ``layer``,
            ``name``, bundle ``sha256``, ``weights_sha256``, threshold, metrics, training); ``None``
            for a single model.
        ood: The out-of-distribution check's description
            ([`OODCheck.to_metadata`][cxr_pneumonia.ood.OODCheck.to_metadata]
            plus the SHA-256 of ``ood.npz``), or ``None`` for a bundle
            without one.
    """

    image_size: tuple[int, int]
    color_mode: str
    class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES
    threshold: float = 0.5
    model_name: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict, hash=False)
    training: dict[str, Any] = field(default_factory=dict, hash=False)
    sha256: str = ""
    created: str = ""
    library_version: str = __version__
    format_version: int = BUNDLE_FORMAT_VERSION
    dtype: str = "uint8"
    ensemble: dict[str, Any] | None = field(default=None, hash=False)
    output: str = "sigmoid"
    ood: dict[str, Any] | None = field(default=None, hash=False)

    @property
    def channels(self) -> int:
        """Number of input channels (1 for grayscale, 3 for rgb)."""
        return channels_for(self.color_mode)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` of one input image."""
        return (*self.image_size, self.channels)

    @property
    def members(self) -> tuple[dict[str, Any], ...]:
        """The ensemble's member records (see ``ensemble``); empty for a single model."""
        if self.ensemble is None:
            return ()
        return tuple(dict(member) for member in self.ensemble.get("members", ()))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form written to ``metadata.json``.

        Returns:
            A dict of plain JSON types.
        """
        result: dict[str, Any] = {
            "format_version": self.format_version,
            "library_version": self.library_version,
            "model_name": self.model_name,
            "input": {
                "image_size": list(self.image_size),
                "color_mode": self.color_mode,
                "channels": self.channels,
                "dtype": self.dtype,
            },
            "class_names": list(self.class_names),
            "output": self.output,
            "threshold": self.threshold,
            "metrics": dict(self.metrics),
            "training": dict(self.training),
            "sha256": self.sha256,
            "created": self.created,
        }
        if self.ensemble is not None:
            result["ensemble"] = dict(self.ensemble)
        if self.ood is not None:
            result["ood"] = dict(self.ood)
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BundleMetadata:
        """Build and validate metadata from its
        [`to_dict`][cxr_pneumonia.bundle.BundleMetadata.to_dict] form.

        Args:
            data: The parsed ``metadata.json``.

        Returns:
            The metadata.

        Raises:
            BundleError: If a field is missing or has the wrong type or value,
                or the format is newer than this library reads.
        """
        if not isinstance(data, Mapping):
            msg = f"metadata must be a JSON object, got {type(data).__name__}"
            raise BundleError(msg)
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            msg = f"metadata 'format_version' must be a positive integer, got {version!r}"
            raise BundleError(msg)
        if version > BUNDLE_FORMAT_VERSION:
            msg = (
                f"bundle format {version} was made by a newer cxr-pneumonia "
                f"({data.get('library_version', 'unknown version')}); this version "
                f"({__version__}) reads formats up to {BUNDLE_FORMAT_VERSION}; upgrade: "
                "pip install -U cxr-pneumonia"
            )
            raise BundleError(msg)
        spec = _field(data, "input", Mapping)
        try:
            image_size = check_image_size(_field(spec, "image_size", list))
            color_mode = check_color_mode(_field(spec, "color_mode", str))
        except ValueError as exc:
            msg = f"metadata 'input' is invalid: {exc}"
            raise BundleError(msg) from None
        dtype = spec.get("dtype", "uint8")
        if dtype != "uint8":
            msg = f"metadata input dtype {dtype!r} is not supported; only 'uint8' is"
            raise BundleError(msg)
        channels = spec.get("channels", channels_for(color_mode))
        if channels != channels_for(color_mode):
            msg = f"metadata input channels={channels!r} contradicts color_mode={color_mode!r}"
            raise BundleError(msg)
        class_names = _field(data, "class_names", list)
        problem = _class_names_problem(class_names)
        if problem:
            msg = f"metadata 'class_names' {problem}"
            raise BundleError(msg)
        threshold = _field(data, "threshold", (int, float))
        if isinstance(threshold, bool) or not 0.0 <= float(threshold) <= 1.0:
            msg = f"metadata 'threshold' must be a number in [0, 1], got {threshold!r}"
            raise BundleError(msg)
        model_name = data.get("model_name")
        if model_name is not None and not isinstance(model_name, str):
            msg = f"metadata 'model_name' must be a string or null, got {model_name!r}"
            raise BundleError(msg)
        ensemble = data.get("ensemble")
        if ensemble is not None:
            _check_ensemble(ensemble)
        output = data.get("output", "sigmoid")
        if output not in OUTPUT_KINDS:
            msg = f"metadata 'output' must be one of {', '.join(OUTPUT_KINDS)}; got {output!r}"
            raise BundleError(msg)
        ood = data.get("ood")
        if ood is not None and not (
            isinstance(ood, Mapping)
            and isinstance(ood.get("file"), str)
            and isinstance(ood.get("sha256"), str)
        ):
            msg = f"metadata 'ood' must be an object with 'file' and 'sha256', got {ood!r}"
            raise BundleError(msg)
        return cls(
            image_size=image_size,
            color_mode=color_mode,
            class_names=tuple(class_names),
            threshold=float(threshold),
            model_name=model_name,
            metrics=dict(_field(data, "metrics", Mapping, default={})),
            training=dict(_field(data, "training", Mapping, default={})),
            sha256=_field(data, "sha256", str),
            created=_field(data, "created", str, default=""),
            library_version=_field(data, "library_version", str, default="unknown"),
            format_version=version,
            dtype=dtype,
            ensemble=dict(ensemble) if ensemble is not None else None,
            output=output,
            ood=dict(ood) if ood is not None else None,
        )


def metadata_for_model(
    model: keras.Model,
    *,
    threshold: float = 0.5,
    class_names: Sequence[str] = DEFAULT_CLASS_NAMES,
    image_size: Sequence[int] | None = None,
    color_mode: str | None = None,
    model_name: str | None = None,
) -> BundleMetadata:
    """Describe an in-memory model, taking what isn't given from its input shape.

    Args:
        model: A Keras model taking ``(N, H, W, C)`` images.
        threshold: Decision threshold in ``[0, 1]``.
        class_names: Class names in output order.
        image_size: ``(height, width)``; default: the model's input shape.
        color_mode: ``"grayscale"`` or ``"rgb"``; default: from the model's
            channels (1 -> grayscale, 3 -> rgb).
        model_name: Default: the Keras model's ``name``.

    Returns:
        Metadata without hash or creation time (those are set by
        [`save_model`][cxr_pneumonia.bundle.save_model]).

    Raises:
        ValueError: If the model's input is not an image batch, its output is
            neither ``(N, 1)`` nor ``(N, 2)``, or an argument is invalid or
            contradicts the model's input shape.
    """
    shape = _model_input_shape(model)
    height, width, channels = shape
    if image_size is None:
        if height is None or width is None:
            msg = f"the model's input shape {shape} has no fixed size; pass image_size=(h, w)"
            raise ValueError(msg)
        image_size = (height, width)
    size = check_image_size(image_size)
    if (height is not None and height != size[0]) or (width is not None and width != size[1]):
        msg = f"image_size={size} contradicts the model's input shape {shape}"
        raise ValueError(msg)
    if color_mode is None:
        if channels not in (1, 3):
            msg = f"the model's input has {channels} channels; pass color_mode explicitly"
            raise ValueError(msg)
        color_mode = "grayscale" if channels == 1 else "rgb"
    mode = check_color_mode(color_mode)
    if channels is not None and channels != channels_for(mode):
        msg = f"color_mode={mode!r} contradicts the model's {channels} input channels"
        raise ValueError(msg)
    names = tuple(class_names)
    problem = _class_names_problem(list(names))
    if problem:
        msg = f"class_names {problem}"
        raise ValueError(msg)
    if isinstance(threshold, bool) or not 0.0 <= float(threshold) <= 1.0:
        msg = f"threshold must be a number in [0, 1], got {threshold!r}"
        raise ValueError(msg)
    return BundleMetadata(
        image_size=size,
        color_mode=mode,
        class_names=names,
        threshold=float(threshold),
        model_name=model_name if model_name is not None else str(model.name),
        ensemble=_ensemble_of(model),
        output=output_kind(model),
    )


def save_model(
    model: keras.Model,
    path: str | os.PathLike[str],
    *,
    threshold: float = 0.5,
    class_names: Sequence[str] = DEFAULT_CLASS_NAMES,
    image_size: Sequence[int] | None = None,
    color_mode: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    model_name: str | None = None,
    overwrite: bool = False,
    ood_data: Any = None,
    ood_check: OODCheck | None = None,
) -> Path:
    """Write ``model`` and its metadata as a bundle directory, atomically.

    Args:
        model: The trained Keras model (inputs ``uint8`` images, scaling inside).
        path: The bundle directory to create.
        threshold: Decision threshold on the PNEUMONIA probability.
        class_names: Class names in output order.
        image_size: Input ``(height, width)``; default: the model's input shape.
        color_mode: ``"grayscale"`` or ``"rgb"``; default: from the model's
            input channels.
        metrics: Validation metrics to record (JSON-serialisable values).
        training: Training provenance (data source, seed, command, ...).
        model_name: Registry name; default: the Keras model's name.
        overwrite: Replace an existing *bundle* at ``path`` (a folder with a
            bundle's ``metadata.json``); anything else there is refused.
        ood_data: The training data, to fit the bundle's out-of-distribution
            check ([`cxr_pneumonia.ood.fit_ood_check`][cxr_pneumonia.ood.fit_ood_check]): the
            [`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits] the model was trained on
            (its unaugmented ``images["train"]`` fit the check, its
            ``images["validation"]`` set the threshold), or a mapping with
            ``"train"`` and optionally ``"validation"`` ``uint8`` arrays.
            ``None`` (and no ``ood_check``) saves a bundle without a check.
        ood_check: An already fitted [`OODCheck`][cxr_pneumonia.ood.OODCheck]
            to store instead of fitting one.

    Returns:
        The bundle directory.

    Raises:
        BundleError: If ``path`` exists and ``overwrite`` is false, if
            ``metrics``/``training`` are not JSON-serialisable, or writing fails.
        OverwriteRefusedError: If ``overwrite`` is true but ``path`` is not a
            bundle (a file, a link, or a folder without a bundle's
            ``metadata.json``); nothing is touched.
        ValueError: If an argument is invalid or contradicts the model, or
            both ``ood_data`` and ``ood_check`` are given.

    Examples:
        >>> save_model(model, "bundles/cnn-v1", threshold=0.42,
        ...            metrics={"val_auc": 0.97}, training={"seed": 0})
    """
    target = Path(path)
    metadata = metadata_for_model(
        model,
        threshold=threshold,
        class_names=class_names,
        image_size=image_size,
        color_mode=color_mode,
        model_name=model_name,
    )
    extras = {"metrics": dict(metrics or {}), "training": dict(training or {})}
    for key, value in extras.items():
        try:
            json.dumps(value, allow_nan=True, default=_no_default)
        except (TypeError, ValueError) as exc:
            msg = f"{key} must be JSON-serialisable (str, numbers, lists, dicts): {exc}"
            raise BundleError(msg) from None
    check_bundle_target(target, overwrite=overwrite)
    if ood_data is not None and ood_check is not None:
        msg = "pass ood_data (to fit the OOD check) or ood_check (a fitted one), not both"
        raise ValueError(msg)
    if ood_data is not None:
        ood_check = _fit_ood(model, ood_data)
    elif ood_check is not None:
        from cxr_pneumonia.ood import resolve_layers

        resolve_layers(model, ood_check.feature_layers)  # ValueError naming a missing layer
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_debris(target)
    # mkdir (not mkdtemp, which makes it 0700) so the bundle gets the umask's usual modes.
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        model_file = tmp / MODEL_FILE
        _without_optimizer(model).save(model_file)
        written = [model_file]
        ood_meta = None
        if ood_check is not None:
            ood_file, ood_meta = _write_ood(ood_check, tmp)
            written.append(ood_file)
        metadata = dataclasses.replace(
            metadata,
            metrics=_plain_json(extras["metrics"]),
            training=_plain_json(extras["training"]),
            sha256=sha256_file(model_file),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            ood=ood_meta,
        )
        meta_file = tmp / METADATA_FILE
        meta_file.write_text(json.dumps(metadata.to_dict(), indent=2) + "\n", encoding="utf-8")
        for file in (*written, meta_file):
            fsync_file(file)
        fsync_dir(tmp)
        _replace_dir(tmp, target, overwrite=overwrite)
        fsync_dir(target.parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (BundleError, KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(exc, OSError):
            msg = f"could not write the bundle {target}: {exc}"
            raise BundleError(msg) from exc
        raise
    return target


def check_bundle_target(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Check that [`save_model`][cxr_pneumonia.bundle.save_model] may write a bundle at ``path``,
    before the work that makes it.

    A path that does not exist is fine. An existing one is replaced only with
    ``overwrite=True`` and only if it is a bundle: a real folder (not a link)
    holding a ``metadata.json`` that parses as a bundle's (a JSON object with
    ``format_version`` and ``input``). Anything else (a file, a folder of
    someone's documents) is refused, so ``overwrite`` never deletes what
    this library did not write. [`save_model`][cxr_pneumonia.bundle.save_model] calls it; call it
    yourself (as ``cxr-pneumonia train --out`` does) to fail before hours of training.

    Args:
        path: The bundle directory to write.
        overwrite: Whether an existing bundle may be replaced.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        BundleError: If ``path`` exists and ``overwrite`` is false.
        OverwriteRefusedError: If ``overwrite`` is true but ``path`` is not a
            bundle (the message says why).
    """
    target = Path(path)
    if not os.path.lexists(target):
        return target
    if not overwrite:
        msg = f"{target} already exists; pass overwrite=True to replace it, or choose another path"
        raise BundleError(msg)
    reason = _not_a_bundle(target)
    if reason:
        msg = (
            f"refusing to overwrite {target}: {reason}. Overwrite only replaces a model bundle "
            f"(a folder with the {MODEL_FILE} and {METADATA_FILE} written by save_model); move "
            "it away or choose another path"
        )
        raise OverwriteRefusedError(msg)
    return target


def _not_a_bundle(target: Path) -> str:
    """Why ``target`` is not a bundle, or ``""`` if it is one."""
    if target.is_symlink():
        return "it is a symbolic link, not a bundle folder"
    if not target.is_dir():
        return "it is a file, not a bundle folder"
    meta = target / METADATA_FILE
    if not meta.is_file() or meta.is_symlink():
        return f"it is a folder without a bundle's {METADATA_FILE}"
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return f"its {METADATA_FILE} is not valid JSON"
    if not isinstance(data, dict) or "format_version" not in data or "input" not in data:
        return f"its {METADATA_FILE} is not a bundle's (no format_version and input)"
    return ""


def _remove_debris(target: Path) -> None:
    """Remove what killed saves to ``target`` left: ``.NAME.tmp-*`` and stale ``.NAME.old-*``."""
    for path in remove_debris(target.parent, target.name):
        logger.info("removed %s, left by an interrupted save", path)
    if not target.is_dir():
        return  # a `.NAME.old-*` may then be the only copy of the previous bundle: keep it
    for entry in os.scandir(target.parent):
        match = _OLD_COPY.match(entry.name)
        if match and match["name"] == target.name and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            logger.info("removed %s, left by an interrupted overwrite", entry.path)


def load_bundle(path: str | os.PathLike[str]) -> tuple[keras.Model, BundleMetadata]:
    """Load and verify a bundle written by [`save_model`][cxr_pneumonia.bundle.save_model].

    Before anything is deserialized, the model's configuration is checked
    for code ([`check_model_config`][cxr_pneumonia.bundle.check_model_config]), whatever Keras'
    global safe-mode switch says; Keras then loads it with ``safe_mode=True``.

    Args:
        path: The bundle directory.

    Returns:
        ``(model, metadata)``; the model is not compiled (inference only).

    Raises:
        BundleError: If the folder or a file is missing, the metadata is not
            valid (e.g. not exactly two class names), the format is newer than
            this library reads, ``model.keras`` does not have the recorded
            SHA-256, the model carries code (a ``Lambda`` layer, a class from
            outside Keras and this package), Keras can't load it, or its input
            or output does not fit the metadata.
    """
    folder = Path(path)
    if not folder.exists():
        msg = f"no model bundle at {folder} (no such folder)"
        raise BundleError(msg)
    if not folder.is_dir():
        msg = (
            f"{folder} is a file; a model bundle is a folder holding {MODEL_FILE} and "
            f"{METADATA_FILE} (written by save_model)"
        )
        raise BundleError(msg)
    missing = [name for name in (MODEL_FILE, METADATA_FILE) if not (folder / name).is_file()]
    if missing:
        msg = (
            f"{folder} is not a complete model bundle: missing {', '.join(missing)} "
            "(write bundles with cxr_pneumonia.save_model)"
        )
        raise BundleError(msg)
    metadata = read_metadata(folder)
    digest = sha256_file(folder / MODEL_FILE)
    if digest != metadata.sha256:
        msg = (
            f"{folder / MODEL_FILE} does not match the SHA-256 recorded in {METADATA_FILE} "
            f"(expected {metadata.sha256 or 'none'}, got {digest}): the file is corrupt or was "
            "modified; restore the bundle from its source"
        )
        raise BundleError(msg)
    model = _load_keras(folder / MODEL_FILE)
    try:
        shape = _model_input_shape(model)
    except ValueError as exc:
        msg = f"{folder}: {exc}"
        raise BundleError(msg) from None
    expected = metadata.input_shape
    if any(got is not None and got != want for got, want in zip(shape, expected, strict=True)):
        msg = f"{folder}: the model's input shape {shape} contradicts the metadata {expected}"
        raise BundleError(msg)
    try:
        kind = output_kind(model)
    except ValueError as exc:
        msg = (
            f"{folder}: the model's output is not one binary output, (N, 1) sigmoid or (N, 2) "
            f"softmax, for the 2 class names of the metadata: {exc}"
        )
        raise BundleError(msg) from None
    if kind != metadata.output:
        msg = (
            f"{folder}: the model has a {kind} output but the metadata says {metadata.output!r}; "
            "the bundle was edited by hand: save it again with save_model"
        )
        raise BundleError(msg)
    return model, metadata


def read_metadata(path: str | os.PathLike[str]) -> BundleMetadata:
    """Read and validate a bundle's ``metadata.json`` without loading the model.

    Args:
        path: The bundle directory.

    Returns:
        The metadata.

    Raises:
        BundleError: If the file is missing, not JSON, or not valid metadata.
    """
    file = Path(path) / METADATA_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"{file} is missing; is {path} a model bundle?"
        raise BundleError(msg) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{file} can't be read as JSON ({exc}); the bundle is corrupt"
        raise BundleError(msg) from None
    try:
        return BundleMetadata.from_dict(data)
    except BundleError as exc:
        msg = f"{file}: {exc}"
        raise BundleError(msg) from None


def load_ood_check(
    path: str | os.PathLike[str], metadata: BundleMetadata | None = None
) -> OODCheck | None:
    """Read a bundle's out-of-distribution check, if it has one.

    Args:
        path: The bundle directory.
        metadata: Its metadata when already read (saves reading it again).

    Returns:
        The [`OODCheck`][cxr_pneumonia.ood.OODCheck], or ``None`` for a bundle
        saved without one (before checks existed, or without ``ood_data``).

    Raises:
        BundleError: If the check's file is missing, does not have the
            recorded SHA-256, or does not hold valid arrays.
    """
    from cxr_pneumonia.ood import OODCheck

    folder = Path(path)
    meta = metadata if metadata is not None else read_metadata(folder)
    if meta.ood is None:
        return None
    file = folder / str(meta.ood["file"])
    if file.parent != folder or not file.is_file():
        msg = (
            f"{folder} is not a complete model bundle: its metadata names an OOD check in "
            f"{meta.ood['file']!r}, which is missing; restore the bundle, or add the check again "
            "with `cxr-pneumonia ood-fit`"
        )
        raise BundleError(msg)
    data = file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.ood["sha256"]:
        msg = (
            f"{file} does not match the SHA-256 recorded in {METADATA_FILE} (expected "
            f"{meta.ood['sha256']}, got {digest}): the file is corrupt or was modified; restore "
            "the bundle from its source"
        )
        raise BundleError(msg)
    try:
        return OODCheck.from_parts(meta.ood, data)
    except ValueError as exc:
        msg = f"{file}: the OOD check is invalid: {exc}"
        raise BundleError(msg) from None


def add_ood_check(path: str | os.PathLike[str], check: OODCheck) -> Path:
    """Add (or replace) the out-of-distribution check of an existing bundle, atomically.

    The model file is not touched (nor retrained); the bundle is rewritten
    beside itself with the check's ``ood.npz`` and updated metadata, then
    swapped in.

    Args:
        path: The bundle directory.
        check: The fitted check (see
            [`fit_ood_check`][cxr_pneumonia.ood.fit_ood_check] on the
            bundle's model and training data).

    Returns:
        The bundle directory.

    Raises:
        BundleError: If the bundle does not load (missing, corrupt), the
            check's layers are not in its model, or writing fails.
    """
    from cxr_pneumonia.ood import resolve_layers

    target = Path(path)
    model, metadata = load_bundle(target)
    try:
        resolve_layers(model, check.feature_layers)
    except ValueError as exc:
        msg = f"{target}: the OOD check does not fit this model: {exc}"
        raise BundleError(msg) from None
    _remove_debris(target)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        shutil.copy2(target / MODEL_FILE, tmp / MODEL_FILE)
        ood_file, ood_meta = _write_ood(check, tmp)
        meta_file = tmp / METADATA_FILE
        updated = dataclasses.replace(metadata, ood=ood_meta)
        meta_file.write_text(json.dumps(updated.to_dict(), indent=2) + "\n", encoding="utf-8")
        for file in (tmp / MODEL_FILE, ood_file, meta_file):
            fsync_file(file)
        fsync_dir(tmp)
        _replace_dir(tmp, target, overwrite=True)
        fsync_dir(target.parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            msg = f"could not write the bundle {target}: {exc}"
            raise BundleError(msg) from exc
        raise
    return target


# --- helpers ---------------------------------------------------------------------------


def _ensemble_of(model: keras.Model) -> dict[str, Any] | None:
    """The ``ensemble`` metadata of a model whose output averages members, else ``None``."""
    try:
        from cxr_pneumonia.models.layers import MemberMean
    except ImportError:  # pragma: no cover - the models package is part of the library
        return None
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, MemberMean):
            return _plain_json({"combine": "mean", "members": list(layer.members)})
    return None


def _check_ensemble(ensemble: Any) -> None:
    members = ensemble.get("members") if isinstance(ensemble, Mapping) else None
    if not (
        isinstance(members, list)
        and members
        and all(isinstance(m, Mapping) and isinstance(m.get("layer"), str) for m in members)
    ):
        msg = (
            "metadata 'ensemble' must be an object whose 'members' list has an object with a "
            f"'layer' name per member, got {ensemble!r}"
        )
        raise BundleError(msg)


def _class_names_problem(names: list[Any]) -> str:
    """What is wrong with a list of class names (a binary classifier's), or ``""``."""
    if len(names) != 2 or not all(isinstance(n, str) and n for n in names):
        return (
            "must list exactly two non-empty names, negative then positive class "
            f"(e.g. {list(DEFAULT_CLASS_NAMES)}); got {names!r}"
        )
    if names[0] == names[1]:
        return f"must be two different names; got {names!r}"
    return ""


def _field(data: Mapping[str, Any], key: str, kind: Any, *, default: Any = ...) -> Any:
    if key not in data:
        if default is not ...:
            return default
        msg = f"metadata has no {key!r} field"
        raise BundleError(msg)
    value = data[key]
    if not isinstance(value, kind):
        msg = f"metadata {key!r} has the wrong type ({type(value).__name__}): {value!r}"
        raise BundleError(msg)
    return value


def _fit_ood(model: keras.Model, ood_data: Any) -> OODCheck:
    """Fit an OOD check from a DatasetSplits or a ``{"train", "validation"}`` mapping."""
    from cxr_pneumonia.ood import fit_ood_check

    images = getattr(ood_data, "images", ood_data)
    if not isinstance(images, Mapping) or "train" not in images:
        msg = (
            "ood_data must be the DatasetSplits the model was trained on, or a mapping with "
            "'train' (and optionally 'validation') uint8 image arrays; got "
            f"{type(ood_data).__name__}"
        )
        raise ValueError(msg)
    return fit_ood_check(model, images["train"], images.get("validation"))


def _write_ood(check: OODCheck, folder: Path) -> tuple[Path, dict[str, Any]]:
    """Write ``check``'s arrays into ``folder``; return the file and its metadata entry."""
    from cxr_pneumonia.ood import OOD_FILE

    data = check.to_bytes()
    file = folder / OOD_FILE
    file.write_bytes(data)
    meta = check.to_metadata()
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    return file, _plain_json(meta)


def _no_default(value: object) -> Any:
    # numpy scalars and arrays are welcome in metrics; anything else is an error.
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    msg = f"{type(value).__name__} is not JSON-serialisable"
    raise TypeError(msg)


def _plain_json(value: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(value, default=_no_default, allow_nan=True)
    result: dict[str, Any] = json.loads(text)
    return result


def _model_input_shape(model: keras.Model) -> tuple[int | None, int | None, int | None]:
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        msg = "the model must be built and take one input (a batch of images)"
        raise ValueError(msg)
    shape = tuple(inputs[0].shape)
    if len(shape) != 4:
        msg = f"the model's input shape {shape} is not an image batch (N, H, W, C)"
        raise ValueError(msg)
    height, width, channels = shape[1:]
    return height, width, channels


def _replace_dir(tmp: Path, target: Path, *, overwrite: bool) -> None:
    if not target.exists():
        try:
            os.rename(tmp, target)
        except OSError as exc:
            if target.exists():
                msg = f"{target} appeared while the bundle was written; pass overwrite=True"
                raise BundleError(msg) from exc
            raise
        return
    if not overwrite:
        msg = f"{target} already exists; pass overwrite=True to replace it"
        raise BundleError(msg)
    # Move the old bundle aside, move the new one in, then delete the old one:
    # at every moment `target` is either the complete old or the complete new bundle
    # (or, for an instant between the two renames, absent; never half-written).
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def _import_custom_layers() -> None:
    """Register the package's serialisable layers so safe mode can rebuild them."""
    try:
        importlib.import_module(_CUSTOM_LAYERS_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name not in (_CUSTOM_LAYERS_MODULE, "cxr_pneumonia.models"):
            raise


def check_model_config(file: str | os.PathLike[str]) -> None:
    """Refuse a ``.keras`` file whose model would run code from the file, before loading it.

    Reads ``config.json`` inside the ``.keras`` archive (no deserialization)
    and refuses any object that carries code or brings code from outside
    Keras and this package: ``Lambda`` layers and serialized functions
    (``__lambda__``), ``TFSMLayer`` (a SavedModel's graph), and any class or
    function whose ``module`` is not Keras (``keras``, ``keras.*``),
    ``builtins`` or this package (``cxr_pneumonia.*``). It
    holds whatever ``keras.config.enable_unsafe_deserialization()`` was
    called with: Keras' own safe mode is a process-wide switch that any
    imported code can turn off.

    Args:
        file: A ``.keras`` model file.

    Raises:
        BundleError: If the file is not a ``.keras`` archive with a readable
            ``config.json``, or the model carries code (the message names the
            object and where it is in the config).
    """
    path = Path(file)
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > _MAX_CONFIG_BYTES:
                msg = f"{path}: config.json is {info.file_size} bytes, over {_MAX_CONFIG_BYTES}"
                raise BundleError(msg)
            config = json.loads(archive.read(info).decode("utf-8"))
    except BundleError:
        raise
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, ValueError) as exc:
        msg = f"{path} is not a .keras model archive with a readable config.json ({exc})"
        raise BundleError(msg) from exc
    problem = _code_in(config, "config")
    if problem:
        msg = (
            f"refusing to load {path}: the model would run code from the file ({problem}). "
            "Bundles may hold only Keras layers and this package's layers; rebuild the model "
            "without Lambda or custom code layers"
        )
        raise BundleError(msg)


def _code_in(value: Any, where: str) -> str:
    """The first code-carrying object in a Keras config, described, or ``""``."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, place = stack.pop()
        if isinstance(item, list):
            stack.extend((v, f"{place}[{i}]") for i, v in enumerate(item))
            continue
        if not isinstance(item, dict):
            continue
        name = item.get("class_name")
        module = item.get("module")
        label = f"{name!r} at {place}"
        if isinstance(name, str) and name in _CODE_CLASSES:
            return f"a {name} object, {label}"
        if module is not None and not (
            isinstance(module, str) and _ALLOWED_MODULE.match(module) is not None
        ):
            return f"{label} comes from module {module!r}"
        stack.extend((v, f"{place}.{k}") for k, v in item.items())
    return ""


def _load_keras(file: Path) -> keras.Model:
    check_model_config(file)
    _import_custom_layers()
    import keras

    try:
        model = keras.saving.load_model(file, compile=False, safe_mode=True)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "safe_mode" in str(exc) or "unsafe" in str(exc).lower():
            hint = " (the model runs code from the file, e.g. a Lambda layer; refused in safe mode)"
        msg = f"Keras can't load {file}{hint}: {type(exc).__name__}: {text}"
        raise BundleError(msg) from exc
    if not isinstance(model, keras.Model):
        msg = f"{file} holds a {type(model).__name__}, not a Keras model"
        raise BundleError(msg)
    return model


def _without_optimizer(model: keras.Model) -> keras.Model:
    """``model``, or an uncompiled copy with its weights when it has an optimizer.

    Keras 3 writes the optimizer's state into a ``.keras`` file whenever the
    model is compiled (``include_optimizer`` is gone); for an inference bundle
    that state is dead weight (about three times the model's own with Adam
    and EMA). A trained model nested in a wrapper (e.g. test-time
    augmentation) carries its optimizer too.
    """
    if all(getattr(m, "optimizer", None) is None for m in _models_in(model)):
        return model
    import keras

    # Rebuild from the configuration with every compile_config removed: Keras
    # 3's clone_model and from_config compile the copy (or its nested models)
    # again, which brings an optimizer back.
    config = _strip_compile_config(keras.saving.serialize_keras_object(model))
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def _strip_compile_config(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_compile_config(v) for k, v in value.items() if k != "compile_config"}
    if isinstance(value, list):
        return [_strip_compile_config(v) for v in value]
    return value


def _models_in(model: keras.Model) -> Iterator[keras.Model]:
    """``model`` and every model nested in it, at any depth."""
    import keras

    yield model
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _models_in(layer)
