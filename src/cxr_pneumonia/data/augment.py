"""Random augmentation of training batches: one projective warp per batch, then intensity.

[`Augmentation`][cxr_pneumonia.data.augment.Augmentation] holds the ranges (a frozen dataclass);
`augment_batch` applies them to a whole ``uint8`` batch with stateless
randomness keyed by a seed, so the same seed always gives the same batch.

All geometric parts (random-resized crop, rotation, shear, zoom, shift, flips)
are fused into one affine matrix per image, and the whole batch is warped by a
single ``ImageProjectiveTransformV3`` call (one bilinear interpolation however
many parts are enabled). The intensity parts follow, batched with one random
value per image: blur, sharpening, contrast, additive and multiplicative
brightness, gamma, then noise.

`transform_matrices` builds the matrices from uniform draws; it is
public so that the distribution of the transforms can be checked on its own.
[`augmentation_in_train_step`][cxr_pneumonia.data.augment.augmentation_in_train_step]
runs the same ops inside a model's training step instead of the input pipeline
(on the accelerator, when there is one).

TensorFlow is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

__all__ = [
    "Augmentation",
    "augment_batch",
    "augmentation_in_train_step",
    "draw_uniforms",
    "replaced_train_step",
    "train_step_key",
    "transform_matrices",
    "warp_bilinear",
]

_UNIFORMS = 9
"""Uniform draws per image of the original parameters (their columns never change)."""

_EXTRA_UNIFORMS = 9
"""Uniform draws per image of the parameters added later (vertical flip, crop, intensity)."""

_SHARPEN_SIGMA = 2.0
"""Standard deviation (pixels) of the Gaussian that unsharp masking subtracts (as the
``sharpen`` shift of ``cxr_pneumonia.shifts``: radius 2 px)."""

_MAX_BLUR_SIGMA = 8.0


Range = tuple[float, float]


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random augmentation applied to training batches.

    Each parameter is drawn independently per image. All geometric parts are
    fused into a single affine warp about the image centre (one bilinear
    interpolation, however many are enabled); the intensity parts follow. A
    range of ``0``, ``None`` (or ``False``) disables that part;
    [`enabled`][cxr_pneumonia.data.augment.Augmentation.enabled] is ``False`` when all are disabled.
    The defaults are the augmentation of the shipped model's recipe (zoom
    0.15, brightness 0.15, contrast 0.25; see the training guide's "default
    recipe"); the fields after ``fill_value`` are off by default.

    The order of the steps: random-resized crop, then flips, zoom, shear,
    rotation and shift (one warp); blur, sharpening, contrast, brightness
    (additive, then multiplicative), gamma, noise; round and clip to ``uint8``.

    Attributes:
        rotation: Maximum rotation in degrees; angles are uniform in
            ``[-rotation, rotation]``.
        shift: Maximum translation as a fraction of the width / height
            (both axes, unless ``width_shift`` / ``height_shift`` say otherwise).
        shear: Maximum shear factor (``x' = x + s * y``), uniform in ``[-shear, shear]``.
        zoom: Maximum zoom change: each axis is scaled by a factor uniform in
            ``[1 - zoom, 1 + zoom]``.
        horizontal_flip: Mirror left-right with probability 1/2.
        brightness: Maximum brightness change as a fraction of full scale
            (``255``); an offset uniform in ``[-brightness, brightness] * 255``.
        contrast: Maximum contrast change: pixels are scaled about the image
            mean by a factor uniform in ``[1 - contrast, 1 + contrast]``.
        fill_mode: How pixels that come from outside the image are filled:
            ``"nearest"`` (repeat the edge) or ``"constant"`` (``fill_value``).
        fill_value: Grey level used when ``fill_mode="constant"``.
        width_shift: Maximum horizontal translation as a fraction of the
            width, replacing ``shift`` for that axis (Keras' ``width_shift_range``);
            ``None`` follows ``shift``, ``0`` gives a height-only shift.
        height_shift: The same for the vertical translation (Keras'
            ``height_shift_range``).
        shear_degrees: Maximum shear *angle* in degrees, replacing ``shear``
            (Keras' ``shear_range``, with its matrix ``[[1, -sin a], [0, cos a]]``);
            ``None`` uses the shear factor ``shear``.
        vertical_flip: Mirror top-bottom with probability 1/2.
        brightness_range: ``(low, high)`` of a multiplicative brightness
            factor, uniform (Keras' ``brightness_range=[0.5, 2]``: pixels times
            the factor).
        gamma: ``(low, high)`` of a gamma exponent, log-uniform (as likely to
            darken as to brighten when ``low * high == 1``):
            ``255 * (x / 255) ** g``.
        blur: ``(low, high)`` of the standard deviation of a Gaussian blur,
            in pixels, uniform; ``0`` leaves an image sharp.
        sharpen: ``(low, high)`` of the amount of unsharp masking, uniform:
            ``x + a * (x - gaussian(x, sigma=2 px))`` (the ``sharpen`` shift of
            ``cxr_pneumonia.shifts``); ``0`` leaves it as is.
        noise: Maximum standard deviation of additive Gaussian noise, as a
            fraction of full scale; each image's is uniform in ``[0, noise]``.
        crop_scale: ``(low, high)`` of the area fraction of a random-resized
            crop (``torchvision``'s ``scale``), uniform, with the image's aspect
            ratio: a square-ish window of that share of the area, anywhere
            inside the image, is stretched back to the full size (a zoom-in,
            fused into the warp). ``None`` (or ``(1, 1)``) takes no crop.

    Raises:
        ValueError: If a range is negative, too large or not ``(low, high)``
            with ``low <= high``, or ``fill_mode`` is unknown.

    Examples:
        >>> Augmentation(rotation=5.0, horizontal_flip=False).enabled
        True
        >>> Augmentation.disabled().enabled
        False
        >>> Augmentation(brightness_range=(0.5, 2.0), shear_degrees=10).brightness_range
        (0.5, 2.0)
    """

    rotation: float = field(
        default=10.0, metadata={"help": "maximum rotation in degrees (uniform in [-r, r])"}
    )
    shift: float = field(
        default=0.1, metadata={"help": "maximum shift, a fraction of the width and height"}
    )
    shear: float = field(default=0.1, metadata={"help": "maximum shear factor (x' = x + s * y)"})
    zoom: float = field(
        default=0.15, metadata={"help": "maximum zoom change per axis (0.1: x0.9 to x1.1)"}
    )
    horizontal_flip: bool = field(
        default=True, metadata={"help": "mirror left-right with probability 1/2"}
    )
    brightness: float = field(
        default=0.15,
        metadata={"help": "maximum additive brightness change, a fraction of full scale"},
    )
    contrast: float = field(
        default=0.25,
        metadata={"help": "maximum contrast change about the image mean (0.1: x0.9 to x1.1)"},
    )
    fill_mode: Literal["nearest", "constant"] = field(
        default="nearest", metadata={"help": "how pixels from outside the image are filled"}
    )
    fill_value: float = field(default=0.0, metadata={"help": "grey level of fill_mode constant"})
    width_shift: float | None = field(
        default=None,
        metadata={"help": "maximum horizontal shift, replaces shift for that axis (0: none)"},
    )
    height_shift: float | None = field(
        default=None,
        metadata={"help": "maximum vertical shift, replaces shift for that axis (0: none)"},
    )
    shear_degrees: float | None = field(
        default=None,
        metadata={"help": "maximum shear angle in degrees (Keras' shear_range), replaces shear"},
    )
    vertical_flip: bool = field(
        default=False, metadata={"help": "mirror top-bottom with probability 1/2"}
    )
    brightness_range: Range | None = field(
        default=None,
        metadata={"help": "multiplicative brightness factor range (Keras' brightness_range)"},
    )
    gamma: Range | None = field(
        default=None, metadata={"help": "gamma exponent range, log-uniform (e.g. 0.7 1.4)"}
    )
    blur: Range | None = field(
        default=None, metadata={"help": "Gaussian blur sigma range in pixels (e.g. 0 1.5)"}
    )
    sharpen: Range | None = field(
        default=None, metadata={"help": "unsharp-masking amount range (e.g. 0 1)"}
    )
    noise: float = field(
        default=0.0, metadata={"help": "maximum Gaussian noise std, a fraction of full scale"}
    )
    crop_scale: Range | None = field(
        default=None, metadata={"help": "random-resized-crop area fraction range (e.g. 0.6 1)"}
    )

    def __post_init__(self) -> None:
        limits: dict[str, tuple[float | None, float, str]] = {
            "rotation": (self.rotation, 180.0, "degrees"),
            "shift": (self.shift, 1.0, "a fraction of the image size"),
            "shear": (self.shear, 1.0, "a shear factor"),
            "zoom": (self.zoom, 1.0, "a fraction, e.g. 0.1 for 90%..110%"),
            "brightness": (self.brightness, 1.0, "a fraction of full scale"),
            "contrast": (self.contrast, 1.0, "a fraction, e.g. 0.1 for 90%..110%"),
            "width_shift": (self.width_shift, 1.0, "a fraction of the width"),
            "height_shift": (self.height_shift, 1.0, "a fraction of the height"),
            "shear_degrees": (self.shear_degrees, 90.0, "degrees"),
            "noise": (self.noise, 1.0, "a standard deviation as a fraction of full scale"),
        }
        optional = {"width_shift", "height_shift", "shear_degrees"}
        for name, (value, upper, unit) in limits.items():
            if value is None and name in optional:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                msg = f"Augmentation.{name}={value!r} must be a number ({unit})"
                raise ValueError(msg)
            if not (math.isfinite(value) and 0.0 <= value < upper) and not (
                name in ("rotation", "brightness") and value == upper
            ):
                msg = (
                    f"Augmentation.{name}={value!r} must be in [0, {upper:g}) ({unit}); "
                    "use 0 to disable it"
                )
                raise ValueError(msg)
        for name in ("horizontal_flip", "vertical_flip"):
            if not isinstance(getattr(self, name), bool):
                msg = f"Augmentation.{name}={getattr(self, name)!r} must be True or False"
                raise ValueError(msg)
        ranges = {
            # name: (smallest low, largest high, low may equal 0, example)
            "brightness_range": (0.0, 10.0, True, "(0.5, 2.0)"),
            "gamma": (0.0, 10.0, False, "(0.7, 1.4)"),
            "blur": (0.0, _MAX_BLUR_SIGMA, True, "(0.0, 1.5)"),
            "sharpen": (0.0, 10.0, True, "(0.0, 1.0)"),
            "crop_scale": (0.0, 1.0, False, "(0.6, 1.0)"),
        }
        for name, (lowest, highest, zero_ok, example) in ranges.items():
            checked = _check_range(name, getattr(self, name), lowest, highest, zero_ok, example)
            object.__setattr__(self, name, checked)
        if self.fill_mode not in ("nearest", "constant"):
            msg = (
                f"Augmentation.fill_mode={self.fill_mode!r} is not supported; "
                "choose one of: nearest, constant"
            )
            raise ValueError(msg)
        if not (
            isinstance(self.fill_value, (int, float))
            and not isinstance(self.fill_value, bool)
            and 0.0 <= self.fill_value <= 255.0
        ):
            msg = f"Augmentation.fill_value={self.fill_value!r} must be a grey level in [0, 255]"
            raise ValueError(msg)

    @classmethod
    def disabled(cls) -> Augmentation:
        """An augmentation that changes nothing (every range 0).

        Returns:
            An ``Augmentation`` with every range 0 and no flip (``enabled`` is ``False``).
        """
        return cls(
            rotation=0.0,
            shift=0.0,
            shear=0.0,
            zoom=0.0,
            horizontal_flip=False,
            brightness=0.0,
            contrast=0.0,
        )

    @property
    def enabled(self) -> bool:
        """Whether any part of the augmentation is switched on."""
        return self.geometric or self.intensity

    @property
    def geometric(self) -> bool:
        """Whether any part of the warp (crop, flips, zoom, shear, rotation, shift) is on."""
        return bool(
            self.rotation
            or self.width_shift_range
            or self.height_shift_range
            or self.shear_range
            or self.zoom
            or self.horizontal_flip
            or self.vertical_flip
            or self._crop
        )

    @property
    def intensity(self) -> bool:
        """Whether any intensity part (contrast, brightness, gamma, blur, noise...) is on."""
        return bool(
            self.brightness
            or self.contrast
            or self.noise
            or _moves(self.brightness_range, 1.0)
            or _moves(self.gamma, 1.0)
            or _moves(self.blur, 0.0)
            or _moves(self.sharpen, 0.0)
        )

    @property
    def width_shift_range(self) -> float:
        """The horizontal shift range in use (``width_shift``, else ``shift``)."""
        return self.shift if self.width_shift is None else self.width_shift

    @property
    def height_shift_range(self) -> float:
        """The vertical shift range in use (``height_shift``, else ``shift``)."""
        return self.shift if self.height_shift is None else self.height_shift

    @property
    def shear_range(self) -> float:
        """The shear range in use: radians when ``shear_degrees`` is set, else the factor."""
        if self.shear_degrees is not None:
            return self.shear_degrees * math.pi / 180.0
        return self.shear

    @property
    def _crop(self) -> bool:
        return _moves(self.crop_scale, 1.0)

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The names of the fields, in order (what a command line offers).

        Returns:
            The field names of the dataclass.
        """
        return tuple(item.name for item in fields(cls))


def _moves(value: Range | None, neutral: float) -> bool:
    return value is not None and tuple(value) != (neutral, neutral)


def _check_range(
    name: str, value: Any, lowest: float, highest: float, zero_ok: bool, example: str
) -> Range | None:
    if value is None:
        return None
    shape = f"Augmentation.{name}={value!r} must be None or (low, high), e.g. {example}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(shape)
    low, high = value
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (low, high)):
        raise ValueError(shape)
    above = ">=" if zero_ok else ">"
    if not (
        math.isfinite(low)
        and math.isfinite(high)
        and (low >= lowest if zero_ok else low > lowest)
        and low <= high <= highest
    ):
        msg = (
            f"Augmentation.{name}={value!r} needs low {above} {lowest:g}, low <= high and "
            f"high <= {highest:g}, e.g. {example}"
        )
        raise ValueError(msg)
    return (float(low), float(high))


# --- the ops ------------------------------------------------------------------------


def draw_uniforms(batch: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The uniform draws of one batch, keyed by ``seed``.

    Args:
        batch: Number of images.
        seed: A stateless seed, shape ``(2,)``.

    Returns:
        ``(u, v)``: ``float32`` ``(batch, 9)`` each, in ``[0, 1)``. ``u`` holds
        the parameters of the original augmentation (rotation, shear, zoom x/y,
        shift x/y, horizontal flip, contrast, brightness) and is drawn exactly
        as before the later parts were added, so old recipes give the same
        batches; ``v`` holds the later parts (vertical flip, multiplicative
        brightness, gamma, blur, sharpening, noise, crop area, crop x / y).
    """
    import tensorflow as tf

    seed = tf.cast(seed, tf.int64)
    u = tf.random.stateless_uniform(tf.stack([batch, _UNIFORMS]), seed=seed, dtype=tf.float32)
    extra_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    v = tf.random.stateless_uniform(
        tf.stack([batch, _EXTRA_UNIFORMS]), seed=extra_seed, dtype=tf.float32
    )
    return u, v


def transform_matrices(
    u: tf.Tensor, v: tf.Tensor, aug: Augmentation, height: tf.Tensor, width: tf.Tensor
) -> tf.Tensor:
    """The output-to-input affine matrices of a batch, from its uniform draws.

    Output pixel ``(x, y)`` reads input ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``
    (the row layout of ``ImageProjectiveTransformV3``). With the image centre
    ``c = ((W - 1) / 2, (H - 1) / 2)``, the geometric map is
    ``M = R(angle) @ S @ diag(zoom_x * flip_x, zoom_y * flip_y)`` about ``c``
    plus the shift, where ``S = [[1, s], [0, 1]]`` for a shear factor ``s`` or
    ``[[1, -sin a], [0, cos a]]`` for a shear angle ``a``; a random-resized crop
    of side ``k = sqrt(area)`` at offset ``o`` is then applied to the result,
    ``p -> k (p - c) + c + o``.

    Args:
        u: Draws of the original parameters, ``(B, 9)``, see `draw_uniforms`.
        v: Draws of the later parameters, ``(B, 9)``.
        aug: The ranges.
        height: Image height (a scalar tensor or number).
        width: Image width.

    Returns:
        ``float32`` ``(B, 8)``: ``[a0, a1, a2, b0, b1, b2, 0, 0]`` per image.
    """
    import tensorflow as tf

    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)

    def spread(draw: tf.Tensor, amount: float) -> tf.Tensor:
        return (2.0 * draw - 1.0) * amount

    angle = spread(u[:, 0], aug.rotation * math.pi / 180.0)
    shear = spread(u[:, 1], aug.shear_range)
    if aug.shear_degrees is None:
        shear_x, shear_y = shear, tf.ones_like(shear)
    else:
        shear_x, shear_y = -tf.sin(shear), tf.cos(shear)
    zoom_x = 1.0 + spread(u[:, 2], aug.zoom)
    zoom_y = 1.0 + spread(u[:, 3], aug.zoom)
    shift_x = spread(u[:, 4], aug.width_shift_range) * width
    shift_y = spread(u[:, 5], aug.height_shift_range) * height
    ones = tf.ones_like(angle)
    flip_x = tf.where(u[:, 6] < 0.5, -1.0, 1.0) if aug.horizontal_flip else ones
    flip_y = tf.where(v[:, 0] < 0.5, -1.0, 1.0) if aug.vertical_flip else ones
    cos, sin = tf.cos(angle), tf.sin(angle)
    m00 = cos * zoom_x * flip_x
    m01 = (cos * shear_x - sin * shear_y) * zoom_y * flip_y
    m10 = sin * zoom_x * flip_x
    m11 = (sin * shear_x + cos * shear_y) * zoom_y * flip_y
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    a2 = cx - m00 * cx - m01 * cy + shift_x
    b2 = cy - m10 * cx - m11 * cy + shift_y
    if aug._crop and aug.crop_scale is not None:
        low, high = aug.crop_scale
        side = tf.sqrt(low + (high - low) * v[:, 6])
        offset_x = spread(v[:, 7], 1.0) * (1.0 - side) * cx
        offset_y = spread(v[:, 8], 1.0) * (1.0 - side) * cy
        m00, m01, m10, m11 = side * m00, side * m01, side * m10, side * m11
        a2 = side * (a2 - cx) + cx + offset_x
        b2 = side * (b2 - cy) + cy + offset_y
    zeros = tf.zeros_like(angle)
    return tf.stack([m00, m01, a2, m10, m11, b2, zeros, zeros], axis=1)


def augment_batch(images: tf.Tensor, seed: tf.Tensor, aug: Augmentation) -> tf.Tensor:
    """Augment a ``uint8`` batch ``(B, H, W, C)`` with stateless randomness keyed by ``seed``.

    The random parameters are drawn and turned into matrices here; the warp
    and the intensity steps run as one XLA-compiled function (``jit_compile``),
    which fuses them into a few loops over the pixels, on the CPU or the
    accelerator, inside a ``tf.data`` map or a training step alike.

    Args:
        images: ``uint8`` images, ``(B, H, W, C)``, with a known channel count.
        seed: A stateless seed, shape ``(2,)`` (integers).
        aug: The ranges.

    Returns:
        The augmented ``uint8`` batch, same shape. The same seed gives the same batch.
    """
    import tensorflow as tf

    shape = tf.shape(images)
    seed = tf.cast(seed, tf.int64)
    # Drawn outside XLA: its random-number kernels need not give TensorFlow's numbers.
    u, v = draw_uniforms(shape[0], seed)
    noise_seed = tf.random.experimental.stateless_fold_in(seed, 2)
    return _compiled(aug)(images, u, v, noise_seed)


@functools.lru_cache(maxsize=64)
def _compiled(aug: Augmentation) -> Callable[..., tf.Tensor]:
    """The XLA-compiled warp and intensity steps of ``aug`` (one per distinct ``aug``)."""
    import tensorflow as tf

    def apply(images: tf.Tensor, u: tf.Tensor, v: tf.Tensor, noise_seed: tf.Tensor) -> tf.Tensor:
        if aug.geometric:
            shape = tf.shape(images)
            transforms = transform_matrices(u, v, aug, shape[1], shape[2])
            pixels = warp_bilinear(
                images, transforms, fill_mode=aug.fill_mode, fill_value=aug.fill_value
            )
        else:
            pixels = tf.cast(images, tf.float32)
        return _intensity(pixels, u, v, noise_seed, aug)

    return tf.function(apply, jit_compile=True, reduce_retracing=True)


def warp_bilinear(
    images: tf.Tensor,
    transforms: tf.Tensor,
    *,
    fill_mode: Literal["nearest", "constant"] = "nearest",
    fill_value: float = 0.0,
) -> tf.Tensor:
    """Warp a batch by per-image affine maps, bilinear, with gathers XLA can fuse.

    The same result as ``tf.raw_ops.ImageProjectiveTransformV3(..., interpolation="BILINEAR",
    fill_mode=fill_mode.upper())`` on ``float32`` pixels, for affine rows (up
    to float rounding), written with gathers: TensorFlow's kernel has no XLA
    version and, on a CPU, is several times slower than this function
    compiled. The image is padded by one pixel (its edge, or ``fill_value``) so
    that the four neighbours of every clamped source point exist; ``uint8``
    pixels are gathered as bytes (a quarter of the memory traffic).

    Args:
        images: ``uint8`` or ``float32`` ``(B, H, W, C)`` with a known ``C``.
        transforms: ``(B, 8)`` rows ``[a0, a1, a2, b0, b1, b2, 0, 0]``: output
            pixel ``(x, y)`` reads input ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``.
        fill_mode: ``"nearest"`` (repeat the edge) or ``"constant"``.
        fill_value: The value read outside the image when ``fill_mode="constant"``.

    Returns:
        The warped batch, ``float32`` ``(B, H, W, C)``.
    """
    import tensorflow as tf

    if images.dtype == tf.uint8 and fill_mode == "constant" and fill_value != round(fill_value):
        images = tf.cast(images, tf.float32)  # a fractional grey level needs float pixels
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    channels = images.shape[-1] if images.shape[-1] is not None else shape[3]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    ring = [[0, 0], [1, 1], [1, 1], [0, 0]]
    if fill_mode == "constant":
        fill = round(fill_value) if images.dtype == tf.uint8 else float(fill_value)
        padded = tf.pad(images, ring, constant_values=tf.cast(fill, images.dtype))
        low_x, high_x, low_y, high_y = -1.0, w, -1.0, h
    else:
        padded = tf.pad(images, ring, mode="SYMMETRIC")  # one pixel: the edge repeated
        low_x, high_x, low_y, high_y = 0.0, w - 1.0, 0.0, h - 1.0
    xs = tf.range(w)[None, None, :]
    ys = tf.range(h)[None, :, None]
    t = tf.cast(transforms, tf.float32)[:, :, None, None]
    source_x = tf.clip_by_value(t[:, 0] * xs + t[:, 1] * ys + t[:, 2], low_x, high_x)
    source_y = tf.clip_by_value(t[:, 3] * xs + t[:, 4] * ys + t[:, 5], low_y, high_y)
    x0, y0 = tf.floor(source_x), tf.floor(source_y)
    fx, fy = (source_x - x0)[..., None], (source_y - y0)[..., None]
    # Indices into the padded image (shifted by the one-pixel ring).
    stride = width + 2
    left = tf.cast(x0, tf.int32) + 1
    top = tf.cast(y0, tf.int32) + 1
    right = tf.minimum(left + 1, width + 1)
    bottom = tf.minimum(top + 1, height + 1)
    flat = tf.reshape(padded, tf.stack([-1, channels]))
    base = (tf.range(batch) * (height + 2) * stride)[:, None, None]
    upper, lower = base + top * stride, base + bottom * stride

    def read(index: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.gather(flat, index), tf.float32)

    p00, p01 = read(upper + left), read(upper + right)
    p10, p11 = read(lower + left), read(lower + right)
    above = p00 + (p01 - p00) * fx
    below = p10 + (p11 - p10) * fx
    return above + (below - above) * fy


def _per_image(values: tf.Tensor) -> tf.Tensor:
    import tensorflow as tf

    return tf.reshape(values, (-1, 1, 1, 1))


def _intensity(
    pixels: tf.Tensor, u: tf.Tensor, v: tf.Tensor, noise_seed: tf.Tensor, aug: Augmentation
) -> tf.Tensor:
    """The intensity steps on a ``float32`` batch, then round and clip to ``uint8``."""
    import tensorflow as tf

    def between(draw: tf.Tensor, bounds: Range) -> tf.Tensor:
        return bounds[0] + (bounds[1] - bounds[0]) * draw

    if _moves(aug.blur, 0.0) and aug.blur is not None:
        pixels = _gaussian_blur(pixels, between(v[:, 3], aug.blur), aug.blur[1])
    if _moves(aug.sharpen, 0.0) and aug.sharpen is not None:
        sigma = tf.fill(tf.shape(pixels)[:1], _SHARPEN_SIGMA)
        smooth = _gaussian_blur(pixels, sigma, _SHARPEN_SIGMA)
        pixels = pixels + _per_image(between(v[:, 4], aug.sharpen)) * (pixels - smooth)
    if aug.contrast:
        factor = _per_image(1.0 + (2.0 * u[:, 7] - 1.0) * aug.contrast)
        pixels = (pixels - _image_means(pixels)) * factor + _image_means(pixels)
    if aug.brightness:
        pixels = pixels + _per_image((2.0 * u[:, 8] - 1.0) * aug.brightness * 255.0)
    if _moves(aug.brightness_range, 1.0) and aug.brightness_range is not None:
        pixels = pixels * _per_image(between(v[:, 1], aug.brightness_range))
    if _moves(aug.gamma, 1.0) and aug.gamma is not None:
        low, high = math.log(aug.gamma[0]), math.log(aug.gamma[1])
        exponent = _per_image(tf.exp(between(v[:, 2], (low, high))))
        unit = tf.clip_by_value(pixels / 255.0, 0.0, 1.0)
        pixels = 255.0 * tf.pow(unit, exponent)
    if aug.noise:
        std = _per_image(v[:, 5] * aug.noise * 255.0)
        pixels = pixels + std * tf.random.stateless_normal(tf.shape(pixels), seed=noise_seed)
    return tf.cast(tf.clip_by_value(tf.round(pixels), 0.0, 255.0), tf.uint8)


def _image_means(pixels: tf.Tensor) -> tf.Tensor:
    """The mean of each image, ``(B, 1, 1, 1)``, as a matrix-vector product.

    XLA runs a dot several times faster than a reduction on a CPU (about 1 ms
    less per batch of 32 images of 224 x 224); the sum order differs from
    ``tf.reduce_mean``'s only in float rounding.
    """
    import tensorflow as tf

    shape = tf.shape(pixels)
    size = shape[1] * shape[2] * shape[3]
    flat = tf.reshape(pixels, tf.stack([shape[0], size]))
    weights = tf.fill(tf.reshape(size, [1]), 1.0 / tf.cast(size, tf.float32))
    return tf.reshape(tf.linalg.matvec(flat, weights), (-1, 1, 1, 1))


def _gaussian_blur(pixels: tf.Tensor, sigma: tf.Tensor, max_sigma: float) -> tf.Tensor:
    """Blur each image of ``(B, H, W, C)`` with its own Gaussian ``sigma`` (pixels), edges repeated.

    Separable: one depthwise convolution per axis, with the batch folded into
    the channels so that every image has its own kernel.
    """
    import tensorflow as tf

    radius = max(1, math.ceil(3.0 * max_sigma))
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    sigma = tf.maximum(tf.reshape(sigma, (-1, 1)), 1e-3)
    kernel = tf.exp(-0.5 * tf.square(taps[None, :] / sigma))
    kernel = kernel / tf.reduce_sum(kernel, axis=1, keepdims=True)  # (B, K)
    shape = tf.shape(pixels)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    kernel = tf.repeat(kernel, channels, axis=0)  # (B * C, K), image-major like the channels
    # (B, H, W, C) -> (1, H, W, B * C)
    folded = tf.reshape(tf.transpose(pixels, (1, 2, 0, 3)), (1, height, width, batch * channels))
    # Repeat the edge pixels for the kernel (any image size, unlike SYMMETRIC padding).
    rows = tf.clip_by_value(tf.range(-radius, height + radius), 0, height - 1)
    cols = tf.clip_by_value(tf.range(-radius, width + radius), 0, width - 1)
    folded = tf.gather(tf.gather(folded, rows, axis=1), cols, axis=2)
    along_h = tf.reshape(tf.transpose(kernel), (2 * radius + 1, 1, -1, 1))
    along_w = tf.reshape(tf.transpose(kernel), (1, 2 * radius + 1, -1, 1))
    folded = tf.nn.depthwise_conv2d(folded, along_h, strides=[1, 1, 1, 1], padding="VALID")
    folded = tf.nn.depthwise_conv2d(folded, along_w, strides=[1, 1, 1, 1], padding="VALID")
    blurred = tf.reshape(folded, (height, width, batch, channels))
    return tf.transpose(blurred, (2, 0, 1, 3))


@contextlib.contextmanager
def augmentation_in_train_step(
    model: keras.Model, aug: Augmentation, *, seed: int
) -> Iterator[None]:
    """Augment every training batch inside ``model.train_step`` while the block runs.

    The batch's images go through
    [`augment_batch`][cxr_pneumonia.data.augment.augment_batch] as the first op of the
    training step, so the work runs where the step runs (the GPU, when there is
    one) instead of in the ``tf.data`` pipeline; feed an *unaugmented*
    pipeline. The randomness is keyed by ``seed``, the optimizer's step
    counter (saved in checkpoints, so a resumed run draws what an uninterrupted
    one would) and the replica, so the same seed gives the same batches.
    Validation and prediction steps are untouched. [`fit`][cxr_pneumonia.training.fitting.fit]
    uses it with ``augment_on="device"``.

    Args:
        model: A compiled ``keras.Model`` (its optimizer counts the steps).
        aug: The ranges.
        seed: Seed of the augmentation.

    Yields:
        Nothing; the model's own ``train_step`` is back when the block exits.

    Raises:
        ValueError: If the model is not compiled.

    Examples:
        >>> with augmentation_in_train_step(model, Augmentation(), seed=0):  # doctest: +SKIP
        ...     model.fit(unaugmented_batches, epochs=3)
    """

    if getattr(model, "optimizer", None) is None:
        msg = f"model {model.name!r} is not compiled; compile it before augmenting in its steps"
        raise ValueError(msg)
    original = model.train_step
    base_seed = int(seed)

    def train_step(data: Any) -> Any:
        images, *rest = data if isinstance(data, (tuple, list)) else (data,)
        key = train_step_key(model, base_seed)
        return original((augment_batch(images, key, aug), *rest))

    with replaced_train_step(model, train_step):
        yield


def train_step_key(model: keras.Model, seed: int, *, stream: int | None = None) -> tf.Tensor:
    """The key of the random draws of ``model``'s current training step; call it in the step.

    ``[seed, step]`` with the optimizer's step counter (saved in checkpoints, so a
    resumed run draws what an uninterrupted one would), folded with ``stream``
    when given (to keep two kinds of draws apart), then with the replica when
    the step runs on several.

    Returns:
        An ``int64`` ``(2,)`` seed for the stateless random ops.
    """
    import tensorflow as tf

    fold_in = tf.random.experimental.stateless_fold_in
    step = tf.cast(model.optimizer.iterations, tf.int64)
    key = tf.stack([tf.constant(int(seed), tf.int64), step])
    if stream is not None:
        key = fold_in(key, stream)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        key = fold_in(key, tf.cast(context.replica_id_in_sync_group, tf.int64))
    return key


@contextlib.contextmanager
def replaced_train_step(model: keras.Model, train_step: Callable[[Any], Any]) -> Iterator[None]:
    """Give ``model`` another ``train_step`` while the block runs; the previous one after.

    The previous step may itself be a replacement (mixup inside augmentation,
    say): blocks nest, each restoring what it found.
    """
    previous = model.__dict__.get("train_step")
    model.train_step = train_step
    model.train_function = None  # Keras caches the compiled step: make it anew
    try:
        yield
    finally:
        if previous is None:
            del model.train_step  # the class's method again
        else:
            model.train_step = previous
        model.train_function = None
