"""The augmentation: its options, the distributions of its transforms, and its ops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxr_pneumonia.data.augment import (
    Augmentation,
    augment_batch,
    draw_uniforms,
    transform_matrices,
)

OFF = {
    "rotation": 0.0,
    "shift": 0.0,
    "shear": 0.0,
    "zoom": 0.0,
    "horizontal_flip": False,
    "brightness": 0.0,
    "contrast": 0.0,
}
"""Every default part switched off: add one option to test it alone."""

DRAWS = 20_000


def only(**kwargs) -> Augmentation:
    return Augmentation(**{**OFF, **kwargs})


def _matrices(aug: Augmentation, *, n: int = DRAWS, size=(40, 60), seed=(1, 2)) -> np.ndarray:
    import tensorflow as tf

    u, v = draw_uniforms(n, tf.constant(seed, tf.int64))
    return transform_matrices(u, v, aug, size[0], size[1]).numpy().astype(np.float64)


def _ks_uniform(sample: np.ndarray, low: float, high: float) -> float:
    """Kolmogorov-Smirnov distance between a sample and the uniform law on [low, high]."""
    x = np.sort((np.asarray(sample, np.float64) - low) / (high - low))
    n = x.size
    return float(max(np.max(np.arange(1, n + 1) / n - x), np.max(x - np.arange(n) / n)))


# 1.95 / sqrt(n) is the 0.1 % critical value of the KS distance.
KS_LIMIT = 1.95 / math.sqrt(DRAWS)


def _run(images: np.ndarray, aug: Augmentation, seed=(5, 6)) -> np.ndarray:
    import tensorflow as tf

    return augment_batch(tf.constant(images), tf.constant(seed, tf.int64), aug).numpy()


# --- the matrices against the per-image formula ----------------------------------------


def _reference(u: np.ndarray, v: np.ndarray, aug: Augmentation, height: int, width: int):
    """One image's output->input matrix, composed from 3x3 matrices the long way."""
    spread = lambda d, a: (2 * d - 1) * a  # noqa: E731
    angle = spread(u[0], math.radians(aug.rotation))
    if aug.shear_degrees is None:
        shear = np.array([[1, spread(u[1], aug.shear), 0], [0, 1, 0], [0, 0, 1]])
    else:
        a = spread(u[1], math.radians(aug.shear_degrees))
        shear = np.array([[1, -math.sin(a), 0], [0, math.cos(a), 0], [0, 0, 1]])
    flip_x = -1 if aug.horizontal_flip and u[6] < 0.5 else 1
    flip_y = -1 if aug.vertical_flip and v[0] < 0.5 else 1
    scale = np.diag(
        [(1 + spread(u[2], aug.zoom)) * flip_x, (1 + spread(u[3], aug.zoom)) * flip_y, 1]
    )
    rotate = np.array(
        [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]]
    )
    cx, cy = (width - 1) / 2, (height - 1) / 2
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    back = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]])
    shift = np.array(
        [
            [1, 0, spread(u[4], aug.width_shift_range) * width],
            [0, 1, spread(u[5], aug.height_shift_range) * height],
            [0, 0, 1],
        ]
    )
    geometric = shift @ back @ rotate @ shear @ scale @ to_centre
    if aug.crop_scale is not None:
        side = math.sqrt(aug.crop_scale[0] + (aug.crop_scale[1] - aug.crop_scale[0]) * v[6])
        crop = np.array(
            [
                [side, 0, cx - side * cx + spread(v[7], 1) * (1 - side) * cx],
                [0, side, cy - side * cy + spread(v[8], 1) * (1 - side) * cy],
                [0, 0, 1],
            ]
        )
        geometric = crop @ geometric
    return geometric


@pytest.mark.parametrize(
    "aug",
    [
        Augmentation(),
        Augmentation(rotation=30, shear_degrees=20, vertical_flip=True, crop_scale=(0.3, 0.9)),
        Augmentation(width_shift=0.2, height_shift=0.0, zoom=0.3, shear=0.4),
    ],
)
def test_matrices_match_the_per_image_formula(aug):
    import tensorflow as tf

    u, v = draw_uniforms(64, tf.constant([7, 8], tf.int64))
    got = transform_matrices(u, v, aug, 40, 60).numpy()
    for i in range(64):
        want = _reference(u.numpy()[i].astype(float), v.numpy()[i].astype(float), aug, 40, 60)
        np.testing.assert_allclose(got[i, :6], want[:2].ravel(), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(got[:, 6:], 0.0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    ("fill_mode", "fill_value"), [("nearest", 0.0), ("constant", 7.0), ("constant", 7.5)]
)
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_warp_matches_tensorflows_projective_transform(channels, fill_mode, fill_value, dtype):
    """The compiled gather warp is TensorFlow's bilinear kernel, up to float rounding."""
    import tensorflow as tf

    from cxr_pneumonia.data.augment import warp_bilinear

    images = np.random.default_rng(channels).integers(0, 256, (24, 20, 26, channels))
    aug = Augmentation(rotation=40, shift=0.4, zoom=0.5, shear=0.4, vertical_flip=True)
    u, v = draw_uniforms(24, tf.constant([3, 9], tf.int64))
    transforms = transform_matrices(u, v, aug, 20, 26)
    want = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.constant(images, tf.float32),
        transforms=transforms,
        output_shape=[20, 26],
        fill_value=fill_value,
        interpolation="BILINEAR",
        fill_mode=fill_mode.upper(),
    ).numpy()
    compiled = tf.function(warp_bilinear, jit_compile=True)
    got = compiled(
        tf.constant(images, dtype), transforms, fill_mode=fill_mode, fill_value=fill_value
    ).numpy()
    np.testing.assert_allclose(got, want, atol=2e-3)
    if fill_mode == "constant":  # the warps do reach outside the image
        assert (np.abs(got - fill_value) < 1e-4).any()


def test_default_draws_are_unchanged_by_the_later_options():
    """Old recipes give the same batches: the first draws ignore the new options."""
    images = np.random.default_rng(0).integers(0, 256, (6, 12, 14, 1), dtype=np.uint8)
    plain = _run(images, Augmentation())
    with_new = _run(images, Augmentation(vertical_flip=False, noise=0.0, gamma=(1.0, 1.0)))
    np.testing.assert_array_equal(plain, with_new)


# --- distributions of the geometric parameters -----------------------------------------


def test_rotation_is_uniform_in_degrees():
    m = _matrices(only(rotation=15))
    angle = np.degrees(np.arctan2(m[:, 3], m[:, 0]))
    assert _ks_uniform(angle, -15, 15) < KS_LIMIT


def test_shear_degrees_follow_keras_matrix_and_are_uniform():
    m = _matrices(only(shear_degrees=20))
    np.testing.assert_allclose(m[:, [0, 3]], [[1.0, 0.0]] * DRAWS, atol=1e-6)
    angle = np.degrees(np.arctan2(-m[:, 1], m[:, 4]))
    assert _ks_uniform(angle, -20, 20) < KS_LIMIT
    factor = _matrices(only(shear=0.3))
    assert _ks_uniform(factor[:, 1], -0.3, 0.3) < KS_LIMIT
    np.testing.assert_allclose(factor[:, 4], 1.0)


def test_width_only_and_height_only_shift():
    width_only = _matrices(only(width_shift=0.2), size=(40, 60))
    assert _ks_uniform(width_only[:, 2], -12, 12) < KS_LIMIT
    np.testing.assert_array_equal(width_only[:, 5], 0.0)
    height_only = _matrices(Augmentation(**{**OFF, "shift": 0.1}, width_shift=0.0))
    np.testing.assert_array_equal(height_only[:, 2], 0.0)
    assert _ks_uniform(height_only[:, 5], -4, 4) < KS_LIMIT


def test_zoom_is_uniform_per_axis():
    m = _matrices(only(zoom=0.2))
    assert _ks_uniform(m[:, 0], 0.8, 1.2) < KS_LIMIT
    assert _ks_uniform(m[:, 4], 0.8, 1.2) < KS_LIMIT
    assert abs(np.corrcoef(m[:, 0], m[:, 4])[0, 1]) < 0.05


def test_flips_have_probability_one_half_and_are_independent():
    m = _matrices(only(horizontal_flip=True, vertical_flip=True))
    horizontal, vertical = m[:, 0] < 0, m[:, 4] < 0
    assert abs(horizontal.mean() - 0.5) < 0.02
    assert abs(vertical.mean() - 0.5) < 0.02
    assert abs((horizontal & vertical).mean() - 0.25) < 0.02


def test_crop_area_is_uniform_and_the_window_stays_inside():
    height, width = 40, 60
    m = _matrices(only(crop_scale=(0.4, 0.9)), size=(height, width))
    side_x, side_y = m[:, 0], m[:, 4]
    np.testing.assert_allclose(side_x, side_y)
    assert _ks_uniform(side_x**2, 0.4, 0.9) < KS_LIMIT
    corners = np.array(
        [[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]]
    )
    for row in m[:2000]:
        xy = corners @ np.array([row[:3], row[3:6]]).T
        assert xy.min() >= -1e-3
        assert xy[:, 0].max() <= width - 1 + 1e-3
        assert xy[:, 1].max() <= height - 1 + 1e-3
    # The window's centre is uniform over the room it has on each side.
    room = (1 - side_x) * (width - 1) / 2
    centre = m[:, 0] * (width - 1) / 2 + m[:, 2] - (width - 1) / 2
    assert _ks_uniform(centre / room, -1, 1) < KS_LIMIT


def test_vertical_flip_alone_mirrors_exactly():
    images = np.random.default_rng(3).integers(0, 256, (16, 10, 12, 1), dtype=np.uint8)
    out = _run(images, only(vertical_flip=True))
    outcomes = set()
    for original, got in zip(images, out, strict=True):
        if np.array_equal(got, original):
            outcomes.add("same")
        else:
            np.testing.assert_array_equal(got, original[::-1])
            outcomes.add("flipped")
    assert outcomes == {"same", "flipped"}


def test_a_crop_zooms_in():
    ramp = np.broadcast_to(
        (np.arange(32) * 4).astype(np.uint8)[None, None, :, None], (8, 32, 32, 1)
    )
    out = _run(np.ascontiguousarray(ramp), only(crop_scale=(0.25, 0.25))).astype(int)
    # A window of half the side, stretched to the full side: half the ramp, anywhere on it.
    np.testing.assert_allclose(out.max(axis=(1, 2, 3)) - out.min(axis=(1, 2, 3)), 62, atol=1)
    assert len(set(out.min(axis=(1, 2, 3)).tolist())) > 1


# --- distributions of the intensity parameters ------------------------------------------

FLAT = np.full((4000, 4, 4, 1), 100, np.uint8)


def test_multiplicative_brightness_is_uniform_like_keras():
    out = _run(FLAT, only(brightness_range=(0.5, 2.0)))
    per_image = out.reshape(len(FLAT), -1)
    assert np.all(per_image.min(axis=1) == per_image.max(axis=1))
    factor = per_image[:, 0] / 100.0
    assert _ks_uniform(factor, 0.5, 2.0) < 0.03  # rounding to grey levels blurs it a bit


def test_gamma_is_log_uniform():
    out = _run(np.full((4000, 2, 2, 1), 128, np.uint8), only(gamma=(0.5, 2.0)))
    level = np.clip(out[:, 0, 0, 0].astype(float), 1, 254) / 255.0
    exponent = np.log(level) / np.log(128 / 255)
    assert _ks_uniform(np.log(exponent), math.log(0.5), math.log(2.0)) < 0.03
    assert np.all(out.reshape(4000, -1).std(axis=1) == 0)


def test_noise_standard_deviation_is_uniform_up_to_the_maximum():
    images = np.full((400, 32, 32, 1), 128, np.uint8)
    out = _run(images, only(noise=0.05)).reshape(400, -1).astype(float)
    std = out.std(axis=1) / 255.0
    assert std.max() <= 0.05 * 1.15
    assert _ks_uniform(std, 0.0, 0.05) < 0.1
    assert abs(out.mean() - 128) < 0.5  # zero-mean noise


def _impulse(size: int = 33) -> np.ndarray:
    images = np.zeros((64, size, size, 1), np.float32)
    images[:, size // 2, size // 2] = 1.0
    return images


def test_blur_sigma_is_uniform_and_preserves_the_mean():
    import tensorflow as tf

    from cxr_pneumonia.data import augment

    sigma = np.linspace(0.0, 3.0, 64).astype(np.float32)
    out = augment._gaussian_blur(tf.constant(_impulse()), tf.constant(sigma), 3.0).numpy()
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 1.0, rtol=1e-4)
    coords = np.arange(33) - 16
    variance = (out[:, :, :, 0].sum(axis=1) * coords**2).sum(axis=1)
    # A sampled Gaussian is narrower than sigma below about 0.7 px.
    np.testing.assert_allclose(np.sqrt(variance[15:]), sigma[15:], rtol=0.03)
    assert out[0, 16, 16, 0] == pytest.approx(1.0)  # sigma 0: the image as is
    # The draws: a wider spot on average when the range is larger, every image its own.
    images = np.zeros((2000, 9, 9, 1), np.uint8)
    images[:, 4, 4] = 255
    peak = _run(images, only(blur=(0.5, 2.0)))[:, 4, 4, 0].astype(float)
    sigmas = np.sqrt(1 / (2 * math.pi * np.clip(peak / 255.0, 1e-6, None)))
    assert _ks_uniform(sigmas, 0.5, 2.0) < 0.08


def test_sharpen_amount_is_uniform_and_sharpens():
    from cxr_pneumonia.data import augment

    images = np.full((2000, 15, 15, 1), 100, np.uint8)
    images[:, 7, 7] = 150
    out = _run(images, only(sharpen=(0.0, 2.0)))
    centre = out[:, 7, 7, 0].astype(float)
    assert np.all(centre >= 150)
    # The centre grows by amount * 50 * (1 - weight of the centre in the subtracted Gaussian).
    sigma = augment._SHARPEN_SIGMA
    taps = np.exp(-0.5 * (np.arange(-math.ceil(3 * sigma), math.ceil(3 * sigma) + 1) / sigma) ** 2)
    weight = (taps.max() / taps.sum()) ** 2
    amount = (centre - 150) / (50 * (1 - weight))
    assert _ks_uniform(np.clip(amount, 0, 2), 0.0, 2.0) < 0.05
    assert out.mean() == pytest.approx(images.mean(), abs=1.0)


def test_intensity_ops_are_seeded():
    images = np.random.default_rng(4).integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    aug = only(noise=0.05, blur=(0.0, 1.0), sharpen=(0.0, 1.0), gamma=(0.7, 1.4))
    np.testing.assert_array_equal(_run(images, aug, (1, 1)), _run(images, aug, (1, 1)))
    assert not np.array_equal(_run(images, aug, (1, 1)), _run(images, aug, (1, 2)))


@pytest.mark.parametrize("channels", [1, 3])
def test_every_option_at_once_keeps_dtype_and_shape(channels):
    images = np.random.default_rng(5).integers(0, 256, (3, 7, 9, channels), dtype=np.uint8)
    aug = Augmentation(
        vertical_flip=True,
        shear_degrees=15,
        width_shift=0.1,
        height_shift=0.05,
        brightness_range=(0.5, 2.0),
        gamma=(0.7, 1.4),
        blur=(0.0, 1.5),
        sharpen=(0.0, 1.0),
        noise=0.03,
        crop_scale=(0.5, 1.0),
    )
    out = _run(images, aug)
    assert out.dtype == np.uint8
    assert out.shape == images.shape


# --- the options -----------------------------------------------------------------------


def test_new_options_are_off_by_default_and_enable():
    aug = Augmentation()
    assert aug.vertical_flip is False
    assert (aug.brightness_range, aug.gamma, aug.blur, aug.sharpen, aug.crop_scale) == (None,) * 5
    assert aug.noise == 0.0
    assert (aug.width_shift, aug.height_shift, aug.shear_degrees) == (None, None, None)
    assert not Augmentation.disabled().enabled
    for option in (
        {"vertical_flip": True},
        {"brightness_range": (0.5, 2.0)},
        {"gamma": (0.8, 1.2)},
        {"blur": (0.0, 1.0)},
        {"sharpen": (0.5, 1.0)},
        {"noise": 0.01},
        {"crop_scale": (0.8, 1.0)},
        {"width_shift": 0.1},
        {"shear_degrees": 5.0},
    ):
        assert Augmentation(**{**OFF, **option}).enabled, option
    for neutral in ({"gamma": (1.0, 1.0)}, {"crop_scale": (1, 1)}, {"width_shift": 0.0}):
        assert not Augmentation(**{**OFF, **neutral}).enabled, neutral


def test_ranges_become_float_tuples():
    aug = Augmentation(brightness_range=[0.5, 2], crop_scale=[0.5, 1])  # type: ignore[arg-type]
    assert aug.brightness_range == (0.5, 2.0)
    assert aug.crop_scale == (0.5, 1.0)
    assert hash(aug) == hash(Augmentation(brightness_range=(0.5, 2.0), crop_scale=(0.5, 1.0)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"brightness_range": (2.0, 0.5)}, "brightness_range"),
        ({"brightness_range": 0.5}, "brightness_range"),
        ({"brightness_range": (0.5, 2.0, 3.0)}, "brightness_range"),
        ({"gamma": (0.0, 1.0)}, "gamma"),
        ({"gamma": ("a", 1.0)}, "gamma"),
        ({"blur": (-1.0, 1.0)}, "blur"),
        ({"blur": (0.0, 50.0)}, "blur"),
        ({"sharpen": (0.0, float("inf"))}, "sharpen"),
        ({"crop_scale": (0.5, 1.5)}, "crop_scale"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
        ({"noise": -0.1}, "noise"),
        ({"noise": 1.0}, "noise"),
        ({"width_shift": 1.0}, "width_shift"),
        ({"height_shift": -0.1}, "height_shift"),
        ({"shear_degrees": 90.0}, "shear_degrees"),
        ({"vertical_flip": "yes"}, "vertical_flip"),
    ],
)
def test_new_options_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Augmentation(**kwargs)
