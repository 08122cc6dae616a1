"""The acquisition shifts: identity, determinism, and the direction of each change."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import synthetic_xray
from cxr_pneumonia.shifts import DEFAULT_SHIFTS, SHIFTS, apply_shift, get_shift, list_shifts

EXPECTED = {
    "gamma",
    "contrast",
    "brightness",
    "blur",
    "sharpen",
    "noise",
    "jpeg",
    "resample",
    "crop",
    "border",
    "rotation",
}


def batch(n: int = 4, size: int = 32, channels: int = 1) -> np.ndarray:
    images = np.stack([synthetic_xray(i % 2, size=size, seed=i) for i in range(n)])[..., None]
    images = np.repeat(images, channels, axis=-1)
    images.setflags(write=False)  # shifts must not need to write (memory-mapped caches)
    return images


def high_frequency_energy(images: np.ndarray) -> float:
    """Mean squared difference between neighbouring pixels."""
    x = images.astype(np.float64)
    return float(np.mean(np.diff(x, axis=1) ** 2) + np.mean(np.diff(x, axis=2) ** 2))


def test_the_table_has_every_shift_with_default_strengths() -> None:
    assert set(list_shifts()) >= EXPECTED
    assert list(DEFAULT_SHIFTS) == list(SHIFTS)
    for name, shift in SHIFTS.items():
        assert shift.name == name
        assert 2 <= len(shift.strengths) <= 4, name
        assert shift.identity not in shift.strengths, name
        assert shift.low <= shift.identity <= shift.high, name
        for strength in shift.strengths:
            assert shift.check_strength(strength) == strength


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("channels", [1, 3])
def test_identity_is_a_no_op_and_defaults_change_the_images(name: str, channels: int) -> None:
    images = batch(channels=channels)
    shift = SHIFTS[name]
    same = shift(images, shift.identity)
    assert same is not images
    np.testing.assert_array_equal(same, images)
    for strength in shift.strengths:
        out = shift(images, strength, seed=3)
        assert out.shape == images.shape
        assert out.dtype == np.uint8
        assert not np.array_equal(out, images), f"{name} {strength} changed nothing"
        np.testing.assert_array_equal(out, shift(images, strength, seed=3))  # deterministic
        if channels == 3:  # a gray picture stays gray
            np.testing.assert_array_equal(out[..., 0], out[..., 1])


def test_only_noise_depends_on_the_seed() -> None:
    images = batch()
    for name, shift in SHIFTS.items():
        strength = shift.strengths[-1]
        first, second = shift(images, strength, seed=0), shift(images, strength, seed=1)
        differs = not np.array_equal(first, second)
        assert differs == (name == "noise"), name


def test_noise_has_the_asked_standard_deviation_and_the_same_pattern_at_each_strength() -> None:
    images = np.full((2, 64, 64, 1), 128, dtype=np.uint8)
    small = apply_shift(images, "noise", 4.0, seed=7).astype(np.float64) - 128
    large = apply_shift(images, "noise", 12.0, seed=7).astype(np.float64) - 128
    assert np.std(small) == pytest.approx(4.0, rel=0.1)
    assert np.std(large) == pytest.approx(12.0, rel=0.1)
    assert np.corrcoef(small.ravel(), large.ravel())[0, 1] > 0.95
    assert not np.array_equal(small[0], small[1])  # each image its own noise


def test_gamma_moves_the_mean_the_documented_way() -> None:
    images = batch()
    mean = images.mean()
    assert apply_shift(images, "gamma", 1.5).mean() < mean  # > 1 darkens
    assert apply_shift(images, "gamma", 0.67).mean() > mean  # < 1 brightens
    one = np.full((1, 4, 4, 1), 64, dtype=np.uint8)
    assert int(apply_shift(one, "gamma", 0.5)[0, 0, 0, 0]) == 128  # 255 * sqrt(64 / 255)


def test_contrast_scales_the_spread_about_the_mean() -> None:
    images = batch()
    low = apply_shift(images, "contrast", 0.6)
    high = apply_shift(images, "contrast", 1.25)
    for i in range(len(images)):
        std = images[i].std()
        assert low[i].std() == pytest.approx(0.6 * std, rel=0.05)
        assert high[i].std() > std
        assert low[i].mean() == pytest.approx(images[i].mean(), abs=1.0)


def test_brightness_adds_the_offset() -> None:
    images = np.full((1, 8, 8, 1), 100, dtype=np.uint8)
    assert int(apply_shift(images, "brightness", 0.1)[0, 0, 0, 0]) == 100 + round(25.5)
    assert int(apply_shift(images, "brightness", -0.1)[0, 0, 0, 0]) == 100 - round(25.5)
    assert int(apply_shift(images, "brightness", 1.0)[0, 0, 0, 0]) == 255  # clipped


def test_blur_and_resampling_remove_and_sharpening_adds_high_frequencies() -> None:
    images = batch(size=48)
    energy = high_frequency_energy(images)
    blurred = [high_frequency_energy(apply_shift(images, "blur", s)) for s in (0.5, 1.0, 2.0)]
    assert energy > blurred[0] > blurred[1] > blurred[2]
    resampled = [high_frequency_energy(apply_shift(images, "resample", f)) for f in (1.5, 2, 3)]
    assert energy > resampled[0] > resampled[2]
    sharpened = [high_frequency_energy(apply_shift(images, "sharpen", a)) for a in (0.5, 2.0)]
    assert energy < sharpened[0] < sharpened[1]


def test_lower_jpeg_quality_loses_more() -> None:
    images = batch(size=48)
    errors = [
        np.abs(apply_shift(images, "jpeg", q).astype(int) - images).mean() for q in (75, 50, 25)
    ]
    assert 0 < errors[0] < errors[1] < errors[2]


def square(size: int = 40, side: int = 10) -> np.ndarray:
    image = np.zeros((1, size, size, 1), dtype=np.uint8)
    start = (size - side) // 2
    image[0, start : start + side, start : start + side] = 200
    return image


def test_crop_enlarges_and_border_shrinks_the_picture() -> None:
    image = square()
    area = np.count_nonzero(image > 100)
    assert np.count_nonzero(apply_shift(image, "crop", 0.8) > 100) > area
    bordered = apply_shift(image + 50, "border", 0.1)  # a grey image, so the border shows
    assert np.all(bordered[0, :4] == 0)
    assert np.all(bordered[0, -4:] == 0)
    assert np.all(bordered[0, :, :4] == 0)
    assert np.all(bordered[0, 5:-5, 5:-5] >= 50)
    assert np.count_nonzero(bordered > 100) < area


def test_rotation_turns_counter_clockwise() -> None:
    image = np.zeros((1, 41, 41, 1), dtype=np.uint8)
    image[0, 20, 30:36] = 255  # a bar right of the centre
    turned = apply_shift(image, "rotation", 90)
    rows, cols = np.nonzero(turned[0, :, :, 0] > 128)
    assert rows.mean() < 15  # now above the centre
    assert abs(cols.mean() - 20) < 1.5
    assert int(apply_shift(np.full((1, 41, 41, 1), 90, np.uint8), "rotation", 10)[0, 0, 0, 0]) == 0


def test_bad_names_strengths_and_batches_are_refused() -> None:
    images = batch()
    with pytest.raises(ValueError, match=r"unknown shift 'fog'; choose one of: gamma, contrast"):
        apply_shift(images, "fog", 1.0)
    with pytest.raises(ValueError, match=r"jpeg strength .* must be in \[1, 100\], got 0"):
        apply_shift(images, "jpeg", 0)
    with pytest.raises(ValueError, match="gamma strength must be a number"):
        apply_shift(images, "gamma", "1.5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="crop strength"):
        get_shift("crop").check_strength(float("nan"))
    with pytest.raises(ValueError, match=r"uint8 batch \(N, H, W, C\).*images\[np.newaxis\]"):
        apply_shift(images[0], "gamma", 1.5)
    with pytest.raises(ValueError, match="uint8 batch"):
        apply_shift(images.astype(np.float32), "gamma", 1.5)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        apply_shift(images, "noise", 3.0, seed=-1)


def test_an_empty_batch_stays_empty() -> None:
    empty = np.zeros((0, 8, 8, 1), dtype=np.uint8)
    assert apply_shift(empty, "rotation", 5).shape == (0, 8, 8, 1)
