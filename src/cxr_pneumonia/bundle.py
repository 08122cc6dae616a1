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

This module is the public entry point of the bundle format and holds its file
operations (save, verify and load, the atomic replace, adding an OOD check to a
saved bundle); every public name of the format is importable from here. Its
parts live in private modules beside it:

- ``_bundle_metadata``: ``metadata.json``: `BundleMetadata`, its schema
  checks, `read_metadata`, the format's constants;
- ``_bundle_keras``: ``model.keras``: `check_model_config`, the safe-mode
  load, saving without optimizer state;
- ``_bundle_ood``: ``ood.npz``: fitting the check from ``ood_data``, writing
  it, `load_ood_check`.

None of them imports ``training`` or the data pipeline: a service that only
predicts pays only for inference.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_pneumonia._bundle_keras import check_model_config, load_keras_model, without_optimizer
from cxr_pneumonia._bundle_metadata import (
    BUNDLE_FORMAT_VERSION,
    DEFAULT_CLASS_NAMES,
    METADATA_FILE,
    MODEL_FILE,
    BundleMetadata,
    class_names_problem,
    json_default,
    plain_json,
    read_metadata,
)
from cxr_pneumonia._bundle_ood import fit_check, load_ood_check, write_check
from cxr_pneumonia._files import fsync_dir, fsync_file, remove_debris, sha256_file
from cxr_pneumonia.exceptions import BundleError, OverwriteRefusedError
from cxr_pneumonia.images import channels_for, check_color_mode, check_image_size
from cxr_pneumonia.outputs import output_kind

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

# The parts' public objects belong to this module, as before the split: help(),
# reprs, pickles and the API reference name them cxr_pneumonia.bundle.<name>.
BundleMetadata.__module__ = __name__
check_model_config.__module__ = __name__
load_ood_check.__module__ = __name__
read_metadata.__module__ = __name__

_OLD_COPY = re.compile(r"^\.(?P<name>.+)\.old-[0-9a-f]{12}$")


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
    problem = class_names_problem(list(names))
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
            json.dumps(value, allow_nan=True, default=json_default)
        except (TypeError, ValueError) as exc:
            msg = f"{key} must be JSON-serialisable (str, numbers, lists, dicts): {exc}"
            raise BundleError(msg) from None
    check_bundle_target(target, overwrite=overwrite)
    if ood_data is not None and ood_check is not None:
        msg = "pass ood_data (to fit the OOD check) or ood_check (a fitted one), not both"
        raise ValueError(msg)
    if ood_data is not None:
        ood_check = fit_check(model, ood_data)
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
        without_optimizer(model).save(model_file)
        written = [model_file]
        ood_meta = None
        if ood_check is not None:
            ood_file, ood_meta = write_check(ood_check, tmp)
            written.append(ood_file)
        metadata = dataclasses.replace(
            metadata,
            metrics=plain_json(extras["metrics"]),
            training=plain_json(extras["training"]),
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
    model = load_keras_model(folder / MODEL_FILE)
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
        ood_file, ood_meta = write_check(check, tmp)
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
            return plain_json({"combine": "mean", "members": list(layer.members)})
    return None


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
