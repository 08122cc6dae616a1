"""The out-of-distribution check inside a bundle: ``ood.npz`` and its ``"ood"`` record.

`fit_check` fits a check from the data a model was trained on (what
[`save_model`][cxr_pneumonia.bundle.save_model]'s ``ood_data`` accepts),
`write_check` writes its arrays and returns the metadata record (with the
file's SHA-256), and [`load_ood_check`][cxr_pneumonia.bundle.load_ood_check]
reads and verifies it back. The check itself (features, statistics, threshold)
is [`cxr_pneumonia.ood`][cxr_pneumonia.ood], imported only when called.

Part of the bundle format: [`cxr_pneumonia.bundle`][cxr_pneumonia.bundle] is
the public entry point and re-exports ``load_ood_check``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_pneumonia._bundle_metadata import METADATA_FILE, BundleMetadata, plain_json, read_metadata
from cxr_pneumonia.exceptions import BundleError

if TYPE_CHECKING:
    import keras

    from cxr_pneumonia.ood import OODCheck

__all__ = ["fit_check", "load_ood_check", "write_check"]


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


def fit_check(model: keras.Model, ood_data: Any) -> OODCheck:
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


def write_check(check: OODCheck, folder: Path) -> tuple[Path, dict[str, Any]]:
    """Write ``check``'s arrays into ``folder``; return the file and its metadata entry."""
    from cxr_pneumonia.ood import OOD_FILE

    data = check.to_bytes()
    file = folder / OOD_FILE
    file.write_bytes(data)
    meta = check.to_metadata()
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    return file, plain_json(meta)
