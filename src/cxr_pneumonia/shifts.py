"""Controlled acquisition shifts: deterministic transforms of a batch of ``uint8`` images.

Radiographs from another hospital differ from the training data in ways a
model should not care about: exposure and display curve (gamma, brightness,
contrast), detector sharpness and processing (blur, unsharp masking), noise,
lossy storage (JPEG), resolution, collimation and framing (crops, borders) and
patient positioning (small rotations). [`SHIFTS`][cxr_pneumonia.shifts.SHIFTS] is a table of such
shifts, each a [`Shift`][cxr_pneumonia.shifts.Shift] that maps a batch ``(N, H, W, C)`` of ``uint8``
images (``C`` = 1 or 3) to a new batch of the same shape and dtype at a given
*strength*::

    from cxr_pneumonia.shifts import SHIFTS, apply_shift

    darker = apply_shift(images, "gamma", 1.5)          # by name
    blurred = SHIFTS["blur"](images, 2.0)                # the Shift itself
    noisy = SHIFTS["noise"](images, 8.0, seed=1)         # seeded

Every shift has an *identity* strength at which it returns the images
unchanged (a copy), and [`DEFAULT_SHIFTS`][cxr_pneumonia.shifts.DEFAULT_SHIFTS] lists the strengths
[`shift_report`][cxr_pneumonia.robustness.shift_report] uses. The transforms are
deterministic: only ``noise`` draws random numbers, from a generator seeded
with ``(seed, index of the image in the batch)``, so an image gets the same
noise at every strength (only scaled) and whatever else is in its batch.

| name | strength | identity | report strengths |
|:--|:--|:--|:--|
| `gamma` | exponent `g` of `255 * (x / 255) ** g`; `g > 1` darkens | 1 | 0.67, 0.8, 1.25, 1.5 |
| `contrast` | factor about each image's mean: `< 1` flattens | 1 | 0.6, 0.8, 1.25 |
| `brightness` | offset added to every pixel, a fraction of 255 | 0 | ±0.075, ±0.15 |
| `blur` | Gaussian sigma in pixels | 0 | 0.5, 1, 2 |
| `sharpen` | unsharp-mask amount (radius 2 px): `x + amount * (x - blur(x))` | 0 | 0.5, 1, 2 |
| `noise` | Gaussian noise std, grey levels (same in every channel) | 0 | 3, 6, 12 |
| `jpeg` | quality of a JPEG re-compression | 100 (not re-compressed) | 75, 50, 25 |
| `resample` | factor: shrink by it, then enlarge back | 1 | 1.5, 2, 3 |
| `crop` | centre crop keeping this fraction of each side, resized back | 1 | 0.95, 0.9, 0.85 |
| `border` | black border, fraction of each side (image shrunk inside) | 0 | 0.03, 0.06, 0.1 |
| `rotation` | degrees counter-clockwise, black corners | 0 | -10, -5, 5, 10 |

Pixel values are rounded and clipped to ``0..255``. Resizing uses
[`cxr_pneumonia.images.resize_image`][cxr_pneumonia.images.resize_image], the resize of training and
inference. The module needs only numpy and Pillow (no TensorFlow), so data
augmentation and out-of-distribution checks can import it cheaply.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageFilter

from cxr_pneumonia.images import resize_image

__all__ = [
    "DEFAULT_SHIFTS",
    "SHIFTS",
    "Shift",
    "apply_shift",
    "get_shift",
    "list_shifts",
]

_CHUNK = 64
"""Images per chunk of the float arithmetic (bounds the temporary memory)."""

Transform = Callable[[np.ndarray, float, int], np.ndarray]
"""``(uint8 batch (N, H, W, C), strength, seed) -> uint8 batch of the same shape``."""


@dataclass(frozen=True)
class Shift:
    """One kind of acquisition shift: a named, parametrised image transform.

    Call it on a batch: ``shift(images, strength, seed=0)``.

    Attributes:
        name: The key in [`SHIFTS`][cxr_pneumonia.shifts.SHIFTS].
        parameter: What the strength means, with its unit.
        identity: The strength at which the images are returned unchanged.
        strengths: Default strengths of a shift report (identity excluded).
        low: Smallest valid strength.
        high: Largest valid strength.
        description: One line for tables and docs.
        transform: The batch function ``(images, strength, seed) -> images``;
            called only with valid, non-identity strengths.
    """

    name: str
    parameter: str
    identity: float
    strengths: tuple[float, ...]
    low: float
    high: float
    description: str
    transform: Transform = field(repr=False, compare=False)

    def check_strength(self, strength: float) -> float:
        """Return ``strength`` as a float if it is valid for this shift.

        Args:
            strength: The strength to check.

        Returns:
            The strength as a ``float``.

        Raises:
            ValueError: If it is not a finite number in ``[low, high]``.
        """
        if isinstance(strength, bool) or not isinstance(strength, (int, float, np.number)):
            msg = f"{self.name} strength must be a number, got {strength!r}"
            raise ValueError(msg)
        value = float(strength)
        if not (math.isfinite(value) and self.low <= value <= self.high):
            msg = (
                f"{self.name} strength ({self.parameter}) must be in "
                f"[{self.low:g}, {self.high:g}], got {strength!r}"
            )
            raise ValueError(msg)
        return value

    def __call__(self, images: np.ndarray, strength: float, *, seed: int = 0) -> np.ndarray:
        """Apply the shift to a batch of images.

        Args:
            images: ``uint8`` array ``(N, H, W, C)``, ``C`` = 1 or 3. Not modified.
            strength: The strength (see `parameter`); `identity`
                returns a copy of ``images``.
            seed: Seed of the random part (only ``noise`` has one).

        Returns:
            A new ``uint8`` array of the same shape.

        Raises:
            ValueError: If ``images`` is not such a batch or the strength is
                out of range.
        """
        batch = _check_batch(images)
        value = self.check_strength(strength)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            msg = f"seed must be a non-negative integer, got {seed!r}"
            raise ValueError(msg)
        if value == self.identity or len(batch) == 0:
            return batch.copy()
        return self.transform(batch, value, int(seed))


def _check_batch(images: np.ndarray) -> np.ndarray:
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[-1] not in (1, 3)
        or 0 in images.shape[1:]
    ):
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images)
        msg = (
            f"shifts take a uint8 batch (N, H, W, C) with C = 1 or 3, got {got}; "
            "add a batch axis to one image with images[np.newaxis]"
        )
        raise ValueError(msg)
    return images


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _chunked(images: np.ndarray, function: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    out = np.empty_like(images)
    for start in range(0, len(images), _CHUNK):
        out[start : start + _CHUNK] = function(images[start : start + _CHUNK])
    return out


def _per_image(images: np.ndarray, function: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """Apply a Pillow function to each image (``L`` or ``RGB``) of the batch."""
    out = np.empty_like(images)
    for i, image in enumerate(images):
        pixels = image[:, :, 0] if image.shape[2] == 1 else image
        pil = Image.fromarray(np.ascontiguousarray(pixels))
        result = np.asarray(function(pil))
        out[i] = result[:, :, np.newaxis] if result.ndim == 2 else result
    return out


# --- the transforms --------------------------------------------------------------------


def _gamma(images: np.ndarray, gamma: float, seed: int) -> np.ndarray:
    table = _to_uint8(255.0 * (np.arange(256, dtype=np.float64) / 255.0) ** gamma)
    return table[images]


def _contrast(images: np.ndarray, factor: float, seed: int) -> np.ndarray:
    def one(chunk: np.ndarray) -> np.ndarray:
        x = chunk.astype(np.float32)
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        return _to_uint8(mean + factor * (x - mean))

    return _chunked(images, one)


def _brightness(images: np.ndarray, offset: float, seed: int) -> np.ndarray:
    shift = round(offset * 255.0)
    return np.clip(images.astype(np.int16) + shift, 0, 255).astype(np.uint8)


def _blur(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return _per_image(images, lambda im: im.filter(ImageFilter.GaussianBlur(radius=sigma)))


def _sharpen(images: np.ndarray, amount: float, seed: int) -> np.ndarray:
    mask = ImageFilter.UnsharpMask(radius=2, percent=round(amount * 100), threshold=0)
    return _per_image(images, lambda im: im.filter(mask))


def _noise(images: np.ndarray, std: float, seed: int) -> np.ndarray:
    out = np.empty_like(images)
    shape = (*images.shape[1:3], 1)  # one noise field for all channels: gray stays gray
    for i, image in enumerate(images):
        rng = np.random.default_rng((seed, _NOISE_STREAM, i))
        noise = rng.standard_normal(shape, dtype=np.float32)
        out[i] = _to_uint8(image.astype(np.float32) + np.float32(std) * noise)
    return out


_NOISE_STREAM = zlib.crc32(b"noise")


def _jpeg(images: np.ndarray, quality: float, seed: int) -> np.ndarray:
    def one(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=round(quality))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return decoded.convert(image.mode)

    return _per_image(images, one)


def _resize_each(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.stack([resize_image(image, size) for image in images])


def _resample(images: np.ndarray, factor: float, seed: int) -> np.ndarray:
    height, width = images.shape[1:3]
    small = (max(1, round(height / factor)), max(1, round(width / factor)))
    return _resize_each(_resize_each(images, small), (height, width))


def _crop(images: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    height, width = images.shape[1:3]
    h, w = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = (height - h) // 2, (width - w) // 2
    return _resize_each(images[:, top : top + h, left : left + w], (height, width))


def _border(images: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    height, width = images.shape[1:3]
    top, left = round(height * fraction), round(width * fraction)
    inner = (max(1, height - 2 * top), max(1, width - 2 * left))
    out = np.zeros_like(images)
    out[:, top : top + inner[0], left : left + inner[1]] = _resize_each(images, inner)
    return out


def _rotation(images: np.ndarray, degrees: float, seed: int) -> np.ndarray:
    return _per_image(
        images,
        lambda im: im.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=0),
    )


# --- the table -------------------------------------------------------------------------


def _table(*shifts: Shift) -> Mapping[str, Shift]:
    return MappingProxyType({shift.name: shift for shift in shifts})


SHIFTS: Mapping[str, Shift] = _table(
    Shift(
        "gamma",
        "exponent; > 1 darkens, < 1 brightens",
        1.0,
        (0.67, 0.8, 1.25, 1.5),
        0.1,
        10.0,
        "display curve 255 * (x / 255) ** gamma",
        _gamma,
    ),
    Shift(
        "contrast",
        "factor about the image mean; < 1 flattens",
        1.0,
        (0.6, 0.8, 1.25),
        0.0,
        10.0,
        "grey levels stretched about each image's mean",
        _contrast,
    ),
    Shift(
        "brightness",
        "offset, fraction of 255",
        0.0,
        (-0.15, -0.075, 0.075, 0.15),
        -1.0,
        1.0,
        "a constant added to every pixel",
        _brightness,
    ),
    Shift(
        "blur",
        "Gaussian sigma, pixels",
        0.0,
        (0.5, 1.0, 2.0),
        0.0,
        100.0,
        "Gaussian blur (softer detector or processing)",
        _blur,
    ),
    Shift(
        "sharpen",
        "unsharp-mask amount (radius 2 px)",
        0.0,
        (0.5, 1.0, 2.0),
        0.0,
        10.0,
        "unsharp masking (edge-enhancing processing)",
        _sharpen,
    ),
    Shift(
        "noise",
        "Gaussian noise std, grey levels",
        0.0,
        (3.0, 6.0, 12.0),
        0.0,
        255.0,
        "additive Gaussian noise (lower dose), seeded",
        _noise,
    ),
    Shift(
        "jpeg",
        "JPEG quality; 100 = not re-compressed",
        100.0,
        (75.0, 50.0, 25.0),
        1.0,
        100.0,
        "JPEG re-compression at this quality",
        _jpeg,
    ),
    Shift(
        "resample",
        "factor down, then back up",
        1.0,
        (1.5, 2.0, 3.0),
        1.0,
        64.0,
        "lower resolution: shrink by the factor and enlarge back",
        _resample,
    ),
    Shift(
        "crop",
        "fraction of each side kept",
        1.0,
        (0.95, 0.9, 0.85),
        0.05,
        1.0,
        "centre crop resized back (tighter collimation, zoom)",
        _crop,
    ),
    Shift(
        "border",
        "black border, fraction of each side",
        0.0,
        (0.03, 0.06, 0.1),
        0.0,
        0.45,
        "image shrunk inside a black border (wider framing, padding)",
        _border,
    ),
    Shift(
        "rotation",
        "degrees counter-clockwise",
        0.0,
        (-10.0, -5.0, 5.0, 10.0),
        -180.0,
        180.0,
        "rotation about the centre, black corners (positioning)",
        _rotation,
    ),
)
"""The shift table: name -> [`Shift`][cxr_pneumonia.shifts.Shift] (read-only)."""

DEFAULT_SHIFTS: Mapping[str, tuple[float, ...]] = MappingProxyType(
    {name: shift.strengths for name, shift in SHIFTS.items()}
)
"""Shift name -> the strengths a shift report uses by default."""


def list_shifts() -> list[str]:
    """Names of the shifts in [`SHIFTS`][cxr_pneumonia.shifts.SHIFTS], in table order.

    Returns:
        The names.
    """
    return list(SHIFTS)


def get_shift(name: str) -> Shift:
    """Look a shift up by name.

    Args:
        name: A key of [`SHIFTS`][cxr_pneumonia.shifts.SHIFTS].

    Returns:
        The [`Shift`][cxr_pneumonia.shifts.Shift].

    Raises:
        ValueError: If there is no shift of that name (the message lists them).
    """
    shift = SHIFTS.get(name) if isinstance(name, str) else None
    if shift is None:
        msg = f"unknown shift {name!r}; choose one of: {', '.join(SHIFTS)}"
        raise ValueError(msg)
    return shift


def apply_shift(images: np.ndarray, name: str, strength: float, *, seed: int = 0) -> np.ndarray:
    """Apply the shift ``name`` at ``strength`` to a batch of images.

    Args:
        images: ``uint8`` array ``(N, H, W, C)``, ``C`` = 1 or 3. Not modified.
        name: A key of [`SHIFTS`][cxr_pneumonia.shifts.SHIFTS].
        strength: The shift's strength; its identity returns a copy.
        seed: Seed of the random part (only ``noise`` has one).

    Returns:
        A new ``uint8`` array of the same shape.

    Raises:
        ValueError: For an unknown shift, an invalid batch or strength.

    Examples:
        >>> batch = np.full((1, 8, 8, 1), 64, dtype=np.uint8)
        >>> int(apply_shift(batch, "gamma", 0.5)[0, 0, 0, 0])
        128
    """
    return get_shift(name)(images, strength, seed=seed)
