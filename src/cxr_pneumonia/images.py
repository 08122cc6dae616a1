"""Decode any image a user has into ``uint8`` pixels, and the one resize function.

This module is the single preprocessing path shared by training (the data
pipeline decodes and resizes every file once through :func:`prepare_image`) and
inference (the :class:`~cxr_pneumonia.Predictor` calls the same function), so the
same image gets the same pixels, and therefore the same score, in both.

Accepted inputs (:data:`ImageInput`): a path (``str`` or ``os.PathLike``),
``bytes``, a binary file object, a ``PIL.Image.Image``, or a numpy array
(``H x W`` or ``H x W x 1/3/4``; ``uint8``, ``uint16``, other integers or
floats), and DICOM files (by a ``.dcm``/``.dicom`` suffix or the ``DICM`` magic)
through the ``dicom`` extra.

Intensities are mapped to 8 bits so that copies of one picture agree: 16-bit
data is divided by 257 (so a 16-bit copy of an 8-bit image gets back the same
values), floats in ``[0, 1]`` are multiplied by 255, RGB(A), CMYK and palette
images are converted with Pillow's ITU-R 601-2 luma for grayscale, and DICOM
pixel data gets its modality and VOI LUT (window) applied and MONOCHROME1
inverted.

Imports nothing of the package but :mod:`cxr_pneumonia.exceptions`.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Literal, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxr_pneumonia.exceptions import InvalidImageError

__all__ = [
    "COLOR_MODES",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ColorMode",
    "ImageInput",
    "channels_for",
    "check_color_mode",
    "check_image_size",
    "load_image",
    "prepare_image",
    "resize_image",
]

ColorMode = Literal["grayscale", "rgb"]
COLOR_MODES: tuple[str, ...] = ("grayscale", "rgb")

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], Image.Image, np.ndarray]
"""Anything :func:`load_image` accepts."""

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest image (width x height) decoded by default; larger ones are refused
*before* decoding, which defeats decompression bombs. A chest radiograph is at
most about 4,300 x 4,300 = 18.5 M pixels."""

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".dcm", ".dicom"}
)
"""File suffixes (lower case) treated as images when scanning folders."""

_DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def check_color_mode(color_mode: str) -> ColorMode:
    """Return ``color_mode`` if valid.

    Args:
        color_mode: ``"grayscale"`` or ``"rgb"``.

    Returns:
        The same string, typed as :data:`ColorMode`.

    Raises:
        ValueError: For any other value.
    """
    if color_mode not in COLOR_MODES:
        msg = f"color_mode={color_mode!r} is not supported; choose one of: {', '.join(COLOR_MODES)}"
        raise ValueError(msg)
    return color_mode  # type: ignore[return-value]


def check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    """Return ``image_size`` as a ``(height, width)`` tuple of positive ints.

    Args:
        image_size: Two positive integers, height then width.

    Returns:
        ``(height, width)``.

    Raises:
        ValueError: If it is not two positive integers.
    """
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        msg = f"image_size={image_size!r} must be two positive integers (height, width)"
        raise ValueError(msg) from None
    if height <= 0 or width <= 0 or (height, width) != tuple(image_size):
        msg = f"image_size={image_size!r} must be two positive integers (height, width)"
        raise ValueError(msg)
    return height, width


def channels_for(color_mode: str) -> int:
    """Number of channels of ``color_mode``: 1 for grayscale, 3 for rgb."""
    return 1 if check_color_mode(color_mode) == "grayscale" else 3


def load_image(
    source: ImageInput,
    *,
    color_mode: str = "grayscale",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> np.ndarray:
    """Decode one image at its own size into ``uint8`` pixels.

    Args:
        source: A path, bytes, binary file object, PIL image, numpy array or
            DICOM file (see the module docstring).
        color_mode: ``"grayscale"`` (1 channel) or ``"rgb"`` (3 channels).
        max_pixels: Refuse images with more pixels than this (checked from the
            header, before decoding); ``None`` disables the check.
        name: How to name the input in error messages (defaults to the path,
            or the kind of object).

    Returns:
        A ``uint8`` array of shape ``(H, W, 1)`` or ``(H, W, 3)``.

    Raises:
        InvalidImageError: If the input is empty, truncated, not an image, of
            an unsupported kind or mode, or larger than ``max_pixels``.
    """
    return prepare_image(source, size=None, color_mode=color_mode, max_pixels=max_pixels, name=name)


def prepare_image(
    source: ImageInput,
    *,
    size: Sequence[int] | None,
    color_mode: str = "grayscale",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> np.ndarray:
    """Decode one image and resize it: the preprocessing of training and inference.

    JPEG files are decoded at a reduced scale when that still leaves at least
    twice the target size (libjpeg's DCT scaling), then resized with
    :func:`resize_image`; this is several times faster on full-resolution
    radiographs and changes the result by at most a grey level or two.

    Args:
        source: Any :data:`ImageInput`.
        size: Target ``(height, width)``, or ``None`` to keep the image's size.
        color_mode: ``"grayscale"`` or ``"rgb"``.
        max_pixels: Pixel limit checked before decoding (``None``: no limit).
        name: How to name the input in error messages.

    Returns:
        A ``uint8`` array of shape ``(height, width, channels)``.

    Raises:
        InvalidImageError: For any input that is not a usable image.
    """
    mode = check_color_mode(color_mode)
    target = None if size is None else check_image_size(size)
    label = name if name is not None else _describe(source)
    try:
        image = _to_pil(source, target=target, max_pixels=max_pixels, label=label)
        image = _to_eight_bit(image, mode, label)
    except InvalidImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        # Pillow signals truncation and corrupt data with these.
        raise _invalid(label, f"cannot be decoded ({_reason(exc)})") from exc
    if target is not None and image.size != (target[1], target[0]):
        image = image.resize((target[1], target[0]), resample=Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    return array


def resize_image(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize ``uint8`` pixels with antialiasing (Pillow's bilinear filter).

    Args:
        image: ``uint8`` array ``(H, W)`` or ``(H, W, 1 | 3)``.
        size: Target ``(height, width)``.

    Returns:
        ``uint8`` array ``(height, width, channels)``.

    Raises:
        ValueError: If ``image`` is not a ``uint8`` image array.
    """
    height, width = check_image_size(size)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        msg = f"resize_image expects a uint8 (H, W[, 1|3]) array, got {image.dtype} {image.shape}"
        raise ValueError(msg)
    squeezed = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    pil = Image.fromarray(squeezed)
    if pil.size != (width, height):
        pil = pil.resize((width, height), resample=Image.Resampling.BILINEAR)
    out = np.asarray(pil, dtype=np.uint8)
    return out[:, :, np.newaxis] if out.ndim == 2 else out


# --- opening -------------------------------------------------------------------------


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)  # type: ignore[arg-type]
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return "<PIL image>"
    if isinstance(source, np.ndarray):
        return f"<array {source.dtype} {source.shape}>"
    file_name = getattr(source, "name", None)
    return str(file_name) if isinstance(file_name, str) else f"<{type(source).__name__}>"


def _invalid(label: str, reason: str) -> InvalidImageError:
    return InvalidImageError(f"{label}: {reason}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _to_pil(
    source: ImageInput, *, target: tuple[int, int] | None, max_pixels: int | None, label: str
) -> Image.Image:
    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels, label)
        return source
    if isinstance(source, np.ndarray):
        return _array_to_pil(source, max_pixels, label)
    data = _read_bytes(source, label)
    if not data:
        raise _invalid(label, "is empty (0 bytes)")
    if _is_dicom(data, source):
        return _dicom_to_pil(data, max_pixels, label)
    return _open_encoded(data, target, max_pixels, label)


def _read_bytes(source: ImageInput, label: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)  # type: ignore[arg-type]
        if path.is_dir():
            raise _invalid(label, "is a folder, not an image file")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise _invalid(label, "no such file") from None
        except OSError as exc:
            raise _invalid(label, f"cannot be read ({_reason(exc)})") from exc
    read = getattr(source, "read", None)
    if callable(read):
        data = read()
        if isinstance(data, str):
            raise _invalid(label, "is a text file object; open the file in binary mode ('rb')")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise _invalid(label, f"file object returned {type(data).__name__}, not bytes")
        return bytes(data)
    msg = (
        f"unsupported input type {type(source).__name__}; pass a path, bytes, a binary file "
        "object, a PIL image or a numpy array"
    )
    raise _invalid(label, msg)


def _check_pixels(size: tuple[int, int], max_pixels: int | None, label: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise _invalid(label, f"has no pixels ({width} x {height})")
    if max_pixels is not None and width * height > max_pixels:
        msg = (
            f"is {width} x {height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,} (raise max_pixels if this image is genuine)"
        )
        raise _invalid(label, msg)


def _open_encoded(
    data: bytes, target: tuple[int, int] | None, max_pixels: int | None, label: str
) -> Image.Image:
    with warnings.catch_warnings():
        # We apply our own, configurable limit below, before any pixel is decoded.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise _invalid(label, "is not an image (unrecognised format)") from None
        except Image.DecompressionBombError as exc:
            raise _invalid(label, f"declares too many pixels ({exc})") from None
        _check_pixels(image.size, max_pixels, label)
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        if target is not None and image.format == "JPEG":
            image.draft(image.mode, (2 * target[1], 2 * target[0]))
        image.load()
    return ImageOps.exif_transpose(image)


def _array_to_pil(array: np.ndarray, max_pixels: int | None, label: str) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        msg = f"array shape {array.shape} is not an image; expected (H, W) or (H, W, 1|3|4)"
        raise _invalid(label, msg)
    _check_pixels((array.shape[1], array.shape[0]), max_pixels, label)
    pixels = _array_to_uint8(array, label)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        return Image.fromarray(pixels, mode="RGBA")
    return Image.fromarray(pixels)


def _array_to_uint8(array: np.ndarray, label: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return _sixteen_to_eight(array)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 65535:
            msg = f"integer pixel values {low}..{high} are outside 0..65535"
            raise _invalid(label, msg)
        return array.astype(np.uint8) if high <= 255 else _sixteen_to_eight(array)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise _invalid(label, "float pixel values include NaN or infinity")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 255.0:
            msg = f"float pixel values {low:g}..{high:g} are outside [0, 1] or [0, 255]"
            raise _invalid(label, msg)
        scale = 255.0 if high <= 1.0 else 1.0
        return np.clip(np.rint(array.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    raise _invalid(label, f"array dtype {array.dtype} is not supported")


def _sixteen_to_eight(array: np.ndarray) -> np.ndarray:
    # Divide by 257 with rounding: maps 0..65535 onto 0..255 and undoes the usual
    # 8 -> 16 bit promotion (v * 257) exactly.
    return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _to_eight_bit(image: Image.Image, color_mode: ColorMode, label: str) -> Image.Image:
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        image = Image.fromarray(_array_to_uint8(values.astype(np.int64), label))
    elif mode == "F":
        image = Image.fromarray(_array_to_uint8(np.asarray(image), label))
    elif mode in ("1", "LA", "La"):
        image = image.convert("L")
    elif mode in ("P", "PA"):
        image = image.convert("RGBA" if "transparency" in image.info or mode == "PA" else "RGB")
    if image.mode in ("RGBA", "RGBa"):
        image = image.convert("RGB")  # drop alpha: radiographs carry no transparency
    elif image.mode not in ("L", "RGB"):
        try:
            image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV
        except ValueError as exc:
            raise _invalid(label, f"unsupported image mode {image.mode!r}") from exc
    if color_mode == "grayscale" and image.mode != "L":
        image = image.convert("L")
    elif color_mode == "rgb" and image.mode != "RGB":
        image = image.convert("RGB")
    return image


# --- DICOM ---------------------------------------------------------------------------


def _is_dicom(data: bytes, source: object) -> bool:
    if len(data) >= 132 and data[128:132] == b"DICM":
        return True
    if isinstance(source, (str, os.PathLike)):
        return Path(source).suffix.lower() in _DICOM_SUFFIXES  # type: ignore[arg-type]
    return False


def _dicom_to_pil(data: bytes, max_pixels: int | None, label: str) -> Image.Image:
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:
        try:
            import pydicom
            from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
        except ImportError:
            msg = "is a DICOM file; reading DICOM needs the 'dicom' extra: pip install 'cxr-pneumonia[dicom]'"
            raise _invalid(label, msg) from None
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        rows, columns = int(dataset.Rows), int(dataset.Columns)
    except Exception as exc:
        raise _invalid(label, f"is not a readable DICOM file ({_reason(exc)})") from exc
    _check_pixels((columns, rows), max_pixels, label)
    try:
        pixels = dataset.pixel_array
    except Exception as exc:
        msg = f"DICOM pixel data can't be decoded ({_reason(exc)}); compressed transfer syntaxes may need pylibjpeg"
        raise _invalid(label, msg) from exc
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422"):
        if pixels.ndim == 4:
            pixels = pixels[0]
        if photometric != "RGB":
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        return Image.fromarray(_array_to_uint8(np.asarray(pixels), label), mode="RGB")
    if pixels.ndim == 3:  # multi-frame: the first frame
        pixels = pixels[0]
    values = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
    values, lower, upper = _apply_window(values, dataset, apply_voi_lut)
    scaled = np.clip((values - lower) / max(upper - lower, 1e-12), 0.0, 1.0) * 255.0
    if photometric == "MONOCHROME1":
        scaled = 255.0 - scaled
    return Image.fromarray(np.rint(scaled).astype(np.uint8))


def _apply_window(values: np.ndarray, dataset: object, apply_voi_lut: object) -> tuple[np.ndarray, float, float]:
    """Return values and the ``(lower, upper)`` range that maps to black and white."""
    center = _first_number(getattr(dataset, "WindowCenter", None))
    width = _first_number(getattr(dataset, "WindowWidth", None))
    if center is not None and width is not None and width >= 1:
        # DICOM PS3.3 C.11.2.1.2 linear window.
        lower = center - 0.5 - (width - 1) / 2
        upper = center - 0.5 + (width - 1) / 2
        return values, lower, upper
    if "VOILUTSequence" in dataset:  # type: ignore[operator]
        values = np.asarray(apply_voi_lut(values, dataset), dtype=np.float64)  # type: ignore[operator]
        return values, float(values.min()), float(values.max())
    bits = int(getattr(dataset, "BitsStored", 8) or 8)
    if bits <= 8 and values.min() >= 0:
        return values, 0.0, 255.0
    return values, float(values.min()), float(values.max())


def _first_number(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None  # type: ignore[index,arg-type]
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
