"""Decode any image a user has into ``uint8`` pixels, and the one resize function.

This module is the single preprocessing path shared by training (the data
pipeline decodes and resizes every file once through
[`prepare_image`][cxr_pneumonia.images.prepare_image]) and inference (the
[`Predictor`][cxr_pneumonia.predictor.Predictor] calls the same function), so the same image gets
the same pixels, and therefore the same score, in both.

Accepted inputs (`ImageInput`): a path (``str`` or ``os.PathLike``),
``bytes``/``bytearray``/``memoryview``, a binary file object, a
``PIL.Image.Image``, or a numpy array (``H x W`` or ``H x W x 1/3/4``; ``uint8``,
``uint16``, other integers, floats or booleans), and DICOM files (by a
``.dcm``/``.dicom`` suffix or the ``DICM`` magic) through the ``dicom`` extra.
Encoded files may be JPEG, PNG, BMP, TIFF, WebP, GIF, PPM/PGM or JPEG 2000; other
formats Pillow knows (EPS, which runs Ghostscript, and the like) are refused.

Intensities are mapped to 8 bits so that copies of one picture agree:

* 16-bit data (``uint16`` arrays, ``I;16`` images) is divided by 257 with
  rounding, so a 16-bit copy of an 8-bit image (``v * 257``) gets back ``v``;
* other integer arrays (and Pillow ``I`` images) with values in ``0..255`` are
  taken as 8-bit, up to ``65535`` as 16-bit;
* floats in ``[0, 1]`` are multiplied by 255, floats up to 255 are rounded;
  booleans become 0 and 255;
* RGB(A), CMYK and palette images are converted with Pillow's ITU-R 601-2 luma
  for grayscale (alpha is dropped: radiographs carry no transparency);
* the EXIF orientation of a photo or scan is applied;
* DICOM pixel data gets its modality LUT (rescale) and its VOI LUT or window
  applied (``LINEAR``, ``LINEAR_EXACT`` or ``SIGMOID``), and MONOCHROME1 is
  inverted; without a window the full range of the stored bits (``BitsStored``)
  maps onto ``0..255``, so a DICOM holding an 8-bit picture times 257 gives
  back that picture.

Image sizes are checked against ``max_pixels`` from the header, before any
pixel is decoded, which defeats decompression bombs. Pillow's own hard limit
(``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 M pixels) still applies above
ours unless you change ``PIL.Image.MAX_IMAGE_PIXELS`` yourself.

Imports nothing of the package but `cxr_pneumonia.exceptions` and its own private
part `_images_dicom` (a DICOM's pixel values mapped onto 8 bits).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import os
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Literal, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxr_pneumonia._images_dicom import ensure_transfer_syntax, monochrome_image
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
    "find_image_files",
    "load_image",
    "prepare_image",
    "resize_image",
]

ColorMode = Literal["grayscale", "rgb"]
COLOR_MODES: tuple[str, ...] = ("grayscale", "rgb")

ImageInput = Union[
    str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], Image.Image, np.ndarray
]
"""Anything [`load_image`][cxr_pneumonia.images.load_image] accepts."""

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest image (width x height) decoded by default; larger ones are refused
*before* decoding, which defeats decompression bombs. A chest radiograph is at
most about 4,300 x 4,300 = 18.5 M pixels."""

_DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# The formats Image.open may identify: the raster formats X-rays are shared in.
# Anything else (EPS runs Ghostscript, and exotic plugins are less hardened) is refused.
_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "DIB", "TIFF", "WEBP", "GIF", "PPM", "JPEG2000")
_FORMAT_PLUGINS = (
    "JpegImagePlugin",
    "MpoImagePlugin",
    "PngImagePlugin",
    "BmpImagePlugin",
    "TiffImagePlugin",
    "WebPImagePlugin",
    "GifImagePlugin",
    "PpmImagePlugin",
    "Jpeg2KImagePlugin",
)
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_ORIENTATION_TAG = 0x0112
_RESAMPLE = Image.Resampling.BILINEAR
# A JPEG is DCT-scaled to no less than this many times the target's longer side:
# measured on the full-resolution Kermany files, factor 4 keeps every pixel within
# 2 grey levels of a full decode (mean 0.1), factor 2 differs by up to 15 at burnt-in
# text, for about 35% more speed.
_DRAFT_FACTOR = 4
_Box = tuple[float, float, float, float]


def check_color_mode(color_mode: str) -> ColorMode:
    """Return ``color_mode`` if valid.

    Args:
        color_mode: ``"grayscale"`` or ``"rgb"``.

    Returns:
        The same string, typed as `ColorMode`.

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
    msg = f"image_size={image_size!r} must be two positive integers (height, width)"
    try:
        height, width = (int(v) for v in image_size)
        exact = (height, width) == tuple(image_size)
    except (TypeError, ValueError):
        raise ValueError(msg) from None
    if height <= 0 or width <= 0 or not exact:
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
        A new, writable ``uint8`` array of shape ``(H, W, 1)`` or ``(H, W, 3)``.

    Raises:
        InvalidImageError: If the input is empty, truncated, not an image, of
            an unsupported kind or mode, or larger than ``max_pixels``.
        ValueError: If ``color_mode`` or ``max_pixels`` is not valid.

    Examples:
        >>> import numpy as np
        >>> load_image(np.zeros((4, 6), dtype=np.uint16)).shape
        (4, 6, 1)
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

    Large JPEG files are decoded at a reduced scale (libjpeg's DCT scaling by
    1/2, 1/4 or 1/8) when that still leaves at least four times the target
    size, then resized with the antialiased filter of
    [`resize_image`][cxr_pneumonia.images.resize_image]; this saves time on full-resolution
    radiographs and changes the result by at most two grey levels (measured on the real
    full-resolution files).

    Args:
        source: Any `ImageInput`.
        size: Target ``(height, width)``, or ``None`` to keep the image's size.
        color_mode: ``"grayscale"`` or ``"rgb"``.
        max_pixels: Pixel limit checked before decoding (``None``: no limit).
        name: How to name the input in error messages.

    Returns:
        A new, writable ``uint8`` array of shape ``(height, width, channels)``.

    Raises:
        InvalidImageError: For any input that is not a usable image.
        ValueError: If ``size``, ``color_mode`` or ``max_pixels`` is not valid.

    Examples:
        >>> import numpy as np
        >>> prepare_image(np.zeros((40, 60), np.uint8), size=(20, 10), color_mode="rgb").shape
        (20, 10, 3)
    """
    mode = check_color_mode(color_mode)
    target = None if size is None else check_image_size(size)
    _check_max_pixels(max_pixels)
    label = name if name is not None else _describe(source)
    try:
        image, box = _to_pil(source, target=target, max_pixels=max_pixels, label=label)
        image = _to_eight_bit(image, mode, label)
        if target is not None:
            image = _resize_pil(image, target, box=box)
        array = np.array(image, dtype=np.uint8)
    except InvalidImageError:
        raise
    except Exception as exc:
        # Pillow and its plugins signal corrupt or truncated data with many types
        # (OSError, SyntaxError, struct.error, IndexError, ...); the contract is
        # that a bad image only ever raises InvalidImageError.
        raise _invalid(label, f"cannot be decoded ({_reason(exc)})") from exc
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    return array


def resize_image(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize ``uint8`` pixels with antialiasing (Pillow's bilinear filter).

    The same filter [`prepare_image`][cxr_pneumonia.images.prepare_image] uses: when shrinking, each
    output pixel averages all the input pixels it covers, so fine patterns turn grey instead of
    aliasing.

    Args:
        image: ``uint8`` array ``(H, W)`` or ``(H, W, 1 | 3)``.
        size: Target ``(height, width)``.

    Returns:
        ``uint8`` array ``(height, width, channels)``.

    Raises:
        ValueError: If ``image`` is not a ``uint8`` image array or ``size`` is
            not two positive integers.
    """
    target = check_image_size(size)
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim not in (2, 3)
        or (image.ndim == 3 and image.shape[2] not in (1, 3))
        or 0 in image.shape
    ):
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image)
        msg = f"resize_image expects a non-empty uint8 (H, W[, 1|3]) array, got {got}"
        raise ValueError(msg)
    squeezed = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    out = np.array(_resize_pil(Image.fromarray(np.ascontiguousarray(squeezed)), target))
    return out[:, :, np.newaxis] if out.ndim == 2 else out


def _resize_pil(
    image: Image.Image, target: tuple[int, int], *, box: _Box | None = None
) -> Image.Image:
    """The one resize: Pillow bilinear, whose support widens when shrinking (antialiased).

    ``box`` is the region of ``image`` that holds the whole picture, given by
    a JPEG draft (its scaled size is rounded up, so the picture ends a fraction
    of a pixel before the image does); ignoring it shifts the result visibly.
    """
    height, width = target
    if box is None and image.size == (width, height):
        return image
    return image.resize((width, height), resample=_RESAMPLE, box=box)


# --- opening -------------------------------------------------------------------------


def _check_max_pixels(max_pixels: int | None) -> None:
    if max_pixels is None:
        return
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        msg = f"max_pixels={max_pixels!r} must be a positive integer or None (no limit)"
        raise ValueError(msg)
    if max_pixels < 1:
        msg = f"max_pixels={max_pixels!r} must be a positive integer or None (no limit)"
        raise ValueError(msg)


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(os.fspath(source))
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if isinstance(source, memoryview):
        return f"<{source.nbytes} bytes>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.size[0]}x{source.size[1]}>"
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
) -> tuple[Image.Image, _Box | None]:
    """Open ``source``; return the image and, for a drafted JPEG, the picture's box."""
    if isinstance(source, Image.Image):
        _check_pixels(source.size, max_pixels, label)
        source.load()  # a lazily opened file may turn out truncated here
        return _apply_orientation(source, owned=False), None
    if isinstance(source, np.ndarray):
        return _array_to_pil(source, max_pixels, label), None
    data = _read_bytes(source, label)
    if not data:
        raise _invalid(label, "is empty (0 bytes)")
    if _is_dicom(data, source):
        return _dicom_to_pil(data, max_pixels, label), None
    return _open_encoded(data, target, max_pixels, label)


def _read_bytes(source: ImageInput, label: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            return _read_regular_file(path, label)
        except FileNotFoundError:
            raise _invalid(label, "no such file") from None
        except IsADirectoryError:
            raise _invalid(label, "is a folder, not an image file") from None
        except (OSError, ValueError) as exc:
            if path.is_dir():  # Windows reports a folder as PermissionError
                raise _invalid(label, "is a folder, not an image file") from None
            raise _invalid(label, f"cannot be read ({_reason(exc)})") from exc
    if isinstance(source, io.TextIOBase):
        raise _invalid(label, "is a text-mode file object; open the file in binary mode ('rb')")
    read = getattr(source, "read", None)
    if callable(read):
        try:
            data = read()
        except (OSError, ValueError) as exc:  # closed file, decoding a text stream, ...
            raise _invalid(label, f"cannot be read ({_reason(exc)})") from exc
        if isinstance(data, str):
            raise _invalid(label, "is a text-mode file object; open the file in binary mode ('rb')")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise _invalid(label, f"file object returned {type(data).__name__}, not bytes")
        return bytes(data)
    msg = (
        f"unsupported input type {type(source).__name__}; pass a path, bytes, a binary file "
        "object, a PIL image or a numpy array"
    )
    raise _invalid(label, msg)


def _read_regular_file(path: Path, label: str) -> bytes:
    """The bytes of ``path``, refusing anything but a regular file *before* reading it.

    A FIFO would block ``open`` or ``read`` forever and a device (``/dev/zero``)
    never ends: the type is checked with ``stat`` first, then the file is opened
    non-blocking and checked again with ``fstat`` (it may have been swapped).
    """
    kind = _not_regular(path)
    if kind == "folder":
        raise IsADirectoryError(path)
    if kind:
        raise _invalid(label, f"is a {kind}, not a regular file; refusing to read it")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        kind = _file_kind(os.fstat(fd).st_mode)
        if kind == "folder":
            raise IsADirectoryError(path)
        if kind:
            raise _invalid(label, f"is a {kind}, not a regular file; refusing to read it")
        with os.fdopen(fd, "rb") as handle:
            fd = -1  # owned by the handle now
            return handle.read()
    finally:
        if fd >= 0:
            os.close(fd)


def _check_pixels(size: tuple[int, int], max_pixels: int | None, label: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise _invalid(label, f"has no pixels ({width} x {height})")
    if max_pixels is not None and width * height > max_pixels:
        msg = (
            f"is {width} x {height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,} (possible decompression bomb; raise max_pixels if the image "
            "is genuine)"
        )
        raise _invalid(label, msg)


@functools.cache
def _formats() -> tuple[str, ...]:
    """The allowed formats, their Pillow plugins registered (Pillow loads them lazily)."""
    for plugin in _FORMAT_PLUGINS:
        with contextlib.suppress(ImportError):  # a Pillow built without it
            importlib.import_module(f"PIL.{plugin}")
    return tuple(fmt for fmt in _FORMATS if fmt in Image.OPEN)


def _image_extensions() -> frozenset[str]:
    """The suffixes Pillow registers for the allowed formats, and DICOM's."""
    formats = set(_formats())
    registered = {
        ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in formats
    }
    return frozenset(registered | _DICOM_SUFFIXES)


IMAGE_EXTENSIONS: frozenset[str] = _image_extensions()
"""File suffixes (lower case) treated as images when scanning folders.

Derived from what the decoder reads: every suffix Pillow registers for an
allowed format (JPEG, PNG, BMP, TIFF, WebP, GIF, PPM/PGM, JPEG 2000: ``.jpg``,
``.jpe``, ``.jfif``, ``.jp2``, ``.j2k``, ``.pgm``, ...) plus ``.dcm`` and
``.dicom``. Every folder scan (`find_image_files`, ``load_dataset``,
``cxr-pneumonia predict FOLDER``) uses this one set."""


def find_image_files(folder: str | os.PathLike[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The image files below ``folder``, and the files skipped with the reason.

    Walks ``folder`` recursively in sorted order; hidden entries (a leading
    ``.``) and macOS ``__MACOSX`` / Windows ``Thumbs.db`` / ``desktop.ini``
    debris are ignored silently. A file is an image when its suffix is in
    `IMAGE_EXTENSIONS` and it is a regular file: a FIFO, socket or
    device with an image suffix is skipped (reading it could block forever),
    and so is a file with any other suffix; both are returned in ``skipped``
    so that the caller can name them.

    Args:
        folder: The folder to scan.

    Returns:
        ``(images, skipped)``: sorted paths, and ``(path, reason)`` pairs.
    """
    images: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(name for name in dirnames if not _is_junk(name))
        for name in sorted(filenames):
            if _is_junk(name):
                continue
            path = Path(dirpath, name)
            suffix = path.suffix.lower()
            if suffix not in IMAGE_EXTENSIONS:
                skipped.append((path, f"suffix {suffix or '(none)'!r} is not an image suffix"))
                continue
            kind = _not_regular(path)
            if kind:
                skipped.append((path, f"is a {kind}, not a regular file"))
                continue
            images.append(path)
    return images, skipped


_JUNK_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini"})


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK_NAMES


def _not_regular(path: str | os.PathLike[str]) -> str:
    """What a non-regular file is (``"FIFO"``, ...), ``""`` for a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""  # missing or unreadable: reported by whoever opens it
    return _file_kind(mode)


def _file_kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return ""
    for test, kind in (
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "special file"


def _open_encoded(
    data: bytes, target: tuple[int, int] | None, max_pixels: int | None, label: str
) -> tuple[Image.Image, _Box | None]:
    stream = io.BytesIO(data)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        if pillow_limit is None or (max_pixels is not None and max_pixels <= pillow_limit):
            # The usual path: our limit is the stricter one, Pillow never warns.
            # No warnings.catch_warnings here: it is not thread-safe.
            image = Image.open(stream, formats=_formats())
        else:
            # The caller allows more than Pillow's warning threshold: that is their
            # decision, so silence Pillow's DecompressionBombWarning (rare path).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(stream, formats=_formats())
    except UnidentifiedImageError:
        msg = f"is not an image in a supported format ({', '.join(_formats())})"
        raise _invalid(label, msg) from None
    except Image.DecompressionBombError as exc:
        msg = (
            f"declares too many pixels, refused before decoding (decompression bomb?): {exc} "
            "Raise PIL.Image.MAX_IMAGE_PIXELS if the image is genuine."
        )
        raise _invalid(label, msg) from None
    _check_pixels(image.size, max_pixels, label)
    box = None
    if target is not None and image.format in _JPEG_FORMATS and _orientation(image) == 1:
        # libjpeg's DCT scaling by 1/2, 1/4 or 1/8, keeping at least _DRAFT_FACTOR x
        # the target on both sides. (Skipped for EXIF-rotated files: rare, and the
        # box would need rotating too.)
        side = _DRAFT_FACTOR * max(target)
        full_size = image.size
        drafted = image.draft(image.mode, (side, side))
        if drafted is not None and image.size != full_size:
            box = drafted[1]
    image.load()
    return _apply_orientation(image, owned=True), box


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # corrupt EXIF: the pixels are still fine, show them as stored
        return 1


def _apply_orientation(image: Image.Image, *, owned: bool) -> Image.Image:
    """Apply the EXIF orientation; in place when the image is ours."""
    if _orientation(image) not in (2, 3, 4, 5, 6, 7, 8):
        return image
    if owned:
        ImageOps.exif_transpose(image, in_place=True)
        return image
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
    kind = array.dtype.kind
    if kind == "u" and array.dtype.itemsize == 1:
        return np.ascontiguousarray(array, dtype=np.uint8)
    if kind == "b":
        return array.astype(np.uint8) * np.uint8(255)
    if kind == "u" and array.dtype.itemsize == 2:  # any byte order
        return _sixteen_to_eight(array)
    if kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 65535:
            msg = (
                f"integer pixel values {low}..{high} are outside 0..65535; "
                "scale them to 0..255 (8 bit) or 0..65535 (16 bit)"
            )
            raise _invalid(label, msg)
        return array.astype(np.uint8) if high <= 255 else _sixteen_to_eight(array)
    if kind == "f":
        if not np.all(np.isfinite(array)):
            raise _invalid(label, "float pixel values include NaN or infinity")
        low_f, high_f = float(array.min()), float(array.max())
        if low_f < 0.0 or high_f > 255.0:
            msg = (
                f"float pixel values {low_f:g}..{high_f:g} are outside [0, 1] or [0, 255]; "
                "scale them into one of those ranges"
            )
            raise _invalid(label, msg)
        scale = 255.0 if high_f <= 1.0 else 1.0
        return np.rint(array.astype(np.float64) * scale).astype(np.uint8)
    msg = f"array dtype {array.dtype} is not supported; use uint8, uint16, int, float or bool"
    raise _invalid(label, msg)


def _sixteen_to_eight(array: np.ndarray) -> np.ndarray:
    # Divide by 257 with rounding: maps 0..65535 onto 0..255 and undoes the usual
    # 8 -> 16 bit promotion (v * 257) exactly.
    return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _to_eight_bit(image: Image.Image, color_mode: ColorMode, label: str) -> Image.Image:
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        # Always 16-bit data, whatever its values: a dark 16-bit image stays dark.
        image = Image.fromarray(_sixteen_to_eight(np.asarray(image)))
    elif mode in ("I", "F"):
        image = Image.fromarray(_array_to_uint8(np.asarray(image), label))
    elif mode in ("1", "LA", "La"):
        image = image.convert("L")
    elif mode in ("P", "PA"):
        rgba = "transparency" in image.info or mode == "PA"
        image = image.convert("RGBA" if rgba else "RGB")
    if image.mode in ("RGBA", "RGBa"):
        image = image.convert("RGB")  # drop alpha: radiographs carry no transparency
    elif image.mode not in ("L", "RGB"):
        try:
            image = image.convert("RGB")  # CMYK, YCbCr, RGBX, ...
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
    path = source if isinstance(source, (str, os.PathLike)) else getattr(source, "name", None)
    if isinstance(path, (str, os.PathLike)):
        return Path(os.fspath(path)).suffix.lower() in _DICOM_SUFFIXES
    return False


def _dicom_to_pil(data: bytes, max_pixels: int | None, label: str) -> Image.Image:
    try:
        import pydicom
        from pydicom.pixels import pixel_array
    except ImportError:
        msg = (
            "is a DICOM file; reading DICOM needs pydicom >= 3 (the 'dicom' extra): "
            "pip install 'cxr-pneumonia[dicom]'"
        )
        raise _invalid(label, msg) from None
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        ensure_transfer_syntax(dataset)
    except Exception as exc:
        raise _invalid(label, f"is not a readable DICOM file ({_reason(exc)})") from exc
    _check_pixels((columns, rows), max_pixels, label)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    try:
        # Only the first frame is decoded; YBR is converted to RGB (raw=False).
        pixels = pixel_array(dataset, index=0)
        if photometric.startswith("MONOCHROME"):
            return monochrome_image(pixels, dataset, invert=photometric == "MONOCHROME1")
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            pixels = apply_color_lut(pixels, dataset)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            msg = f"DICOM photometric interpretation {photometric!r} is not supported"
            raise _invalid(label, msg)
        return Image.fromarray(_array_to_uint8(np.asarray(pixels), label), mode="RGB")
    except InvalidImageError:
        raise
    except Exception as exc:
        msg = (
            f"DICOM pixel data can't be decoded ({_reason(exc)}); compressed transfer "
            "syntaxes may need pylibjpeg or gdcm"
        )
        raise _invalid(label, msg) from exc
