"""The bundle's ``metadata.json``: what a saved model means, its schema and its checks.

[`BundleMetadata`][cxr_pneumonia.bundle.BundleMetadata] is the record (input
spec, class names in output order, threshold, metrics, provenance, hashes, the
optional ``ensemble`` and ``ood`` records); `BundleMetadata.from_dict` validates
a parsed file and [`read_metadata`][cxr_pneumonia.bundle.read_metadata] reads
one from a bundle folder without loading the model. `plain_json` turns metrics
and provenance (numpy scalars and arrays included) into plain JSON types.

Part of the bundle format: [`cxr_pneumonia.bundle`][cxr_pneumonia.bundle] is
the public entry point and re-exports the public names. Imports neither Keras
nor NumPy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxr_pneumonia._version import __version__
from cxr_pneumonia.exceptions import BundleError
from cxr_pneumonia.images import channels_for, check_color_mode, check_image_size
from cxr_pneumonia.outputs import OUTPUT_KINDS

__all__ = [
    "BUNDLE_FORMAT_VERSION",
    "DEFAULT_CLASS_NAMES",
    "METADATA_FILE",
    "MODEL_FILE",
    "BundleMetadata",
    "class_names_problem",
    "json_default",
    "plain_json",
    "read_metadata",
]

BUNDLE_FORMAT_VERSION = 1
"""The bundle format this version writes; it reads this one and older ones."""

MODEL_FILE = "model.keras"
"""Name of the Keras model file inside a bundle."""

METADATA_FILE = "metadata.json"
"""Name of the metadata file inside a bundle."""

DEFAULT_CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
"""Class names in output order: 0 = NORMAL, 1 = PNEUMONIA."""


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
        problem = class_names_problem(class_names)
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


def class_names_problem(names: list[Any]) -> str:
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


def json_default(value: object) -> Any:
    """``json.dumps``' ``default``: numpy scalars and arrays become lists/numbers.

    Raises:
        TypeError: For anything else that JSON can't hold.
    """
    # numpy scalars and arrays are welcome in metrics; anything else is an error.
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    msg = f"{type(value).__name__} is not JSON-serialisable"
    raise TypeError(msg)


def plain_json(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as plain JSON types (a JSON round trip through `json_default`)."""
    text = json.dumps(value, default=json_default, allow_nan=True)
    result: dict[str, Any] = json.loads(text)
    return result
