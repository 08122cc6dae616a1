"""DICOM pixel values to 8-bit grey: transfer syntax, modality LUT, VOI LUT or window.

A private part of `cxr_pneumonia.images`, which reads the file, checks its size and
wraps every failure in `InvalidImageError`; this module maps a decoded dataset's
pixels onto ``0..255`` as the images module docstring describes (rescale, VOI LUT or
window with ``LINEAR``, ``LINEAR_EXACT`` or ``SIGMOID``, MONOCHROME1 inverted, else
the full range of the stored bits). pydicom (the ``dicom`` extra) is imported only
inside the functions, when a DICOM file is decoded. Imports nothing of the package
(images -> _images_dicom).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["ensure_transfer_syntax", "monochrome_image"]


def ensure_transfer_syntax(dataset: Any) -> None:
    """Give a raw dataset (no preamble, no file meta) the syntax it was read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = dataset.get("file_meta")
    if meta is not None and meta.get("TransferSyntaxUID"):
        return
    implicit, little = dataset.original_encoding
    if implicit:
        syntax = ImplicitVRLittleEndian
    else:
        syntax = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    if meta is None:
        dataset.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax


def monochrome_image(pixels: np.ndarray, dataset: Any, *, invert: bool) -> Image.Image:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
    window = _window(dataset)
    if window is not None:
        unit = _apply_window(values, dataset, *window)
    elif dataset.get("VOILUTSequence"):
        # A VOI LUT indexes integers and outputs 0 .. 2**bits - 1 (PS3.3 C.11.2.1.1).
        mapped = apply_voi_lut(np.rint(values).astype(np.int64), dataset, prefer_lut=True)
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        unit = np.asarray(mapped, dtype=np.float64) / float(2**bits - 1)
    else:
        lower, upper = _stored_range(dataset, values)
        unit = (values - lower) / max(upper - lower, 1e-12)
    unit = np.clip(unit, 0.0, 1.0)
    if invert:
        unit = 1.0 - unit
    return Image.fromarray(np.rint(unit * 255.0).astype(np.uint8))


def _window(dataset: Any) -> tuple[float, float, str] | None:
    center = _first_number(dataset.get("WindowCenter"))
    width = _first_number(dataset.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    function = str(dataset.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    return center, width, function


def _apply_window(
    values: np.ndarray, dataset: Any, center: float, width: float, function: str
) -> np.ndarray:
    """Map ``values`` through the DICOM window (PS3.3 C.11.2.1.2-3) onto ``[0, 1]``.

    pydicom's ``apply_windowing`` does the mapping, onto an output range it
    derives from the bits and rescale; two probes (``-inf`` and ``+inf``, which
    every window function sends to the ends of that range) give the range, so
    the result is scaled to ``[0, 1]`` without repeating pydicom's rules.
    """
    from pydicom.pixels import apply_windowing

    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"  # the standard's default for an unknown or empty function
    if function == "LINEAR" and width < 1:
        width = 1.0  # LINEAR needs width >= 1 (pydicom refuses less): read as a threshold
    window = dataset.copy()
    window.WindowCenter, window.WindowWidth, window.VOILUTFunction = center, width, function
    window.BitsStored = int(dataset.get("BitsStored") or dataset.get("BitsAllocated") or 16)
    window.PixelRepresentation = int(dataset.get("PixelRepresentation", 0) or 0)
    probes = np.concatenate([values.reshape(-1), [-np.inf, np.inf]])
    mapped = np.asarray(apply_windowing(probes, window), dtype=np.float64)
    low, high = mapped[-2], mapped[-1]
    return ((mapped[:-2] - low) / (high - low)).reshape(values.shape)


def _stored_range(dataset: Any, values: np.ndarray) -> tuple[float, float]:
    """The range the stored bits can hold, through the modality rescale."""
    bits = int(dataset.get("BitsStored") or dataset.get("BitsAllocated") or 16)
    if int(dataset.get("PixelRepresentation", 0) or 0) == 1:
        low, high = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    else:
        low, high = 0.0, 2.0**bits - 1
    if dataset.get("ModalityLUTSequence"):  # a non-linear table: use the data's range
        return float(values.min()), float(values.max())
    slope = _first_number(dataset.get("RescaleSlope"))
    intercept = _first_number(dataset.get("RescaleIntercept"))
    slope = 1.0 if slope is None else slope
    intercept = 0.0 if intercept is None else intercept
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return ends[0], ends[1]


def _first_number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        pass
    elif isinstance(value, Sequence) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None  # type: ignore[arg-type,index]
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None
