"""The decode cache, the tf.data pipeline and the augmentation (tiny images only)."""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_pneumonia.data import pipeline
from cxr_pneumonia.data.pipeline import (
    Augmentation,
    SkippedFilesWarning,
    decode_cached,
    make_dataset,
)
from cxr_pneumonia.exceptions import CacheError
from cxr_pneumonia.images import prepare_image

SIZE = (16, 20)


def _write_images(folder: Path, make_xray, count: int = 6, *, rgb_every: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = make_xray(i % 2, size=24, seed=i)
        image = Image.fromarray(pixels)
        if rgb_every and i % rgb_every == 0:
            image = image.convert("RGB")
        path = folder / f"img-{i:02d}.{'png' if i % 2 else 'jpeg'}"
        image.save(path)
        paths.append(path)
    return paths


def _epochs(dataset, count: int = 2) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    return [[(x.numpy(), y.numpy()) for x, y in dataset] for _ in range(count)]


def _same(first, second) -> bool:
    return len(first) == len(second) and all(
        np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        for a, b in zip(first, second, strict=True)
    )


# --- decode_cached -------------------------------------------------------------------


@pytest.mark.parametrize(("color_mode", "channels"), [("grayscale", 1), ("rgb", 3)])
def test_decode_cached_matches_prepare_image(tmp_path, make_xray, color_mode, channels):
    files = _write_images(tmp_path / "img", make_xray)
    images, kept = decode_cached(
        files,
        image_size=SIZE,
        color_mode=color_mode,
        cache_dir=tmp_path / "cache",
        key="t/train",
        progress=False,
    )
    assert isinstance(images, np.memmap)
    assert images.shape == (len(files), *SIZE, channels)
    assert images.dtype == np.uint8
    assert not images.flags.writeable
    assert kept.dtype == np.bool_
    assert kept.all()
    for row, path in zip(images, files, strict=True):
        np.testing.assert_array_equal(row, prepare_image(path, size=SIZE, color_mode=color_mode))


def test_second_pass_reads_no_image_file(tmp_path, make_xray, monkeypatch):
    files = _write_images(tmp_path / "img", make_xray)
    options = {
        "image_size": SIZE,
        "color_mode": "grayscale",
        "cache_dir": tmp_path / "cache",
        "key": "k",
    }
    first, _ = decode_cached(files, progress=False, **options)
    expected = np.array(first)

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image file was decoded again")

    monkeypatch.setattr(pipeline, "prepare_image", no_decoding)
    second, kept = decode_cached(files, progress=False, **options)
    np.testing.assert_array_equal(second, expected)
    assert kept.all()
    # Later passes (epochs) read the memory-mapped cache only.
    for path in files:
        path.unlink()
    dataset = make_dataset(
        second, np.zeros(len(files), int), batch_size=4, shuffle=False, augment=False, seed=0
    )
    for epoch in _epochs(dataset):
        np.testing.assert_array_equal(np.concatenate([x for x, _ in epoch]), expected)


def test_cache_key_follows_files_and_options(tmp_path, make_xray):
    files = _write_images(tmp_path / "img", make_xray, count=4)
    cache = tmp_path / "cache"

    def cache_files() -> set[str]:
        return {p.name for p in cache.glob("*.npy") if not p.name.endswith(".kept.npy")}

    decode_cached(
        files, image_size=SIZE, color_mode="grayscale", cache_dir=cache, key="k", progress=False
    )
    decode_cached(
        files, image_size=SIZE, color_mode="grayscale", cache_dir=cache, key="k", progress=False
    )
    assert len(cache_files()) == 1
    decode_cached(
        files, image_size=(8, 8), color_mode="grayscale", cache_dir=cache, key="k", progress=False
    )
    decode_cached(
        files, image_size=SIZE, color_mode="rgb", cache_dir=cache, key="k", progress=False
    )
    decode_cached(
        files, image_size=SIZE, color_mode="grayscale", cache_dir=cache, key="other", progress=False
    )
    assert len(cache_files()) == 4
    # A changed file (new content and mtime) gives a fresh cache with its new pixels.
    Image.fromarray(np.full((24, 24), 200, np.uint8)).save(files[0])
    stat = files[0].stat()
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    images, _ = decode_cached(
        files, image_size=SIZE, color_mode="grayscale", cache_dir=cache, key="k", progress=False
    )
    assert len(cache_files()) == 5
    assert np.all(np.abs(images[0].astype(int) - 200) <= 1)


def test_unsorted_files_come_back_in_their_order(tmp_path, make_xray):
    files = _write_images(tmp_path / "img", make_xray)
    shuffled = [files[i] for i in (3, 0, 5, 1, 4, 2)]
    options = {
        "image_size": SIZE,
        "color_mode": "grayscale",
        "cache_dir": tmp_path / "c",
        "key": "k",
    }
    images, kept = decode_cached(shuffled, progress=False, **options)
    assert kept.all()
    assert not images.flags.writeable
    for row, path in zip(images, shuffled, strict=True):
        np.testing.assert_array_equal(row, prepare_image(path, size=SIZE))


def _bad_files(folder: Path, make_xray) -> dict[str, Path]:
    good = folder / "good.jpeg"
    Image.fromarray(make_xray(0, size=24)).save(good)
    truncated = folder / "truncated.jpeg"
    truncated.write_bytes(good.read_bytes()[:60])
    empty = folder / "empty.jpeg"
    empty.write_bytes(b"")
    text = folder / "notes.png"
    text.write_text("not an image at all\n")
    return {"truncated": truncated, "empty": empty, "text": text}


def test_bad_files_are_skipped_with_one_warning(tmp_path, make_xray):
    folder = tmp_path / "img"
    good = _write_images(folder, make_xray, count=4, rgb_every=0)
    bad = _bad_files(folder, make_xray)
    files = [good[0], bad["truncated"], good[1], bad["empty"], good[2], bad["text"], good[3]]
    options = {
        "image_size": SIZE,
        "color_mode": "grayscale",
        "cache_dir": tmp_path / "c",
        "key": "bad/train",
    }
    with pytest.warns(SkippedFilesWarning, match="could not be decoded") as record:
        images, kept = decode_cached(files, progress=False, **options)
    assert len(record) == 1
    message = str(record[0].message)
    assert "skipped 3 file(s)" in message
    for path in bad.values():
        assert path.name in message
    assert record[0].filename == __file__
    np.testing.assert_array_equal(kept, [True, False, True, False, True, False, True])
    assert images.shape[0] == 4
    for row, path in zip(images, good, strict=True):  # no row shifted onto another file
        np.testing.assert_array_equal(row, prepare_image(path, size=SIZE))
    # The cache remembers the skipped files and says so again, without decoding.
    with pytest.warns(SkippedFilesWarning, match="skipped 3 file") as again:
        decode_cached(files, progress=False, **options)
    assert len(again) == 1


def test_all_files_bad_gives_an_empty_array(tmp_path, make_xray):
    bad = _bad_files(tmp_path, make_xray)
    with pytest.warns(SkippedFilesWarning, match="skipped 3"):
        images, kept = decode_cached(
            list(bad.values()),
            image_size=SIZE,
            color_mode="rgb",
            cache_dir=tmp_path / "c",
            key="k",
            progress=False,
        )
    assert images.shape == (0, *SIZE, 3)
    assert not kept.any()


def test_unwritable_cache_folder_raises_cache_error(tmp_path, make_xray):
    files = _write_images(tmp_path / "img", make_xray, count=2)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(CacheError, match="cache folder"):
        decode_cached(
            files, image_size=SIZE, color_mode="grayscale", cache_dir=blocker / "cache", key="k"
        )


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_cache_folder_raises_cache_error(tmp_path, make_xray):
    files = _write_images(tmp_path / "img", make_xray, count=2)
    cache = tmp_path / "ro"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        with pytest.raises(CacheError, match="can't write"):
            decode_cached(
                files,
                image_size=SIZE,
                color_mode="grayscale",
                cache_dir=cache,
                key="k",
                progress=False,
            )
    finally:
        cache.chmod(0o700)


def test_interrupted_pass_leaves_no_trusted_cache(tmp_path, make_xray, monkeypatch):
    files = _write_images(tmp_path / "img", make_xray)
    cache = tmp_path / "cache"
    calls = {"n": 0}
    real = pipeline._decode_one

    def interrupted(name, size, mode):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(name, size, mode)

    monkeypatch.setattr(pipeline, "_decode_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        decode_cached(
            files, image_size=SIZE, color_mode="grayscale", cache_dir=cache, key="k", progress=False
        )
    assert list(cache.iterdir()) == []  # no cache, no temporary file
    monkeypatch.setattr(pipeline, "_decode_one", real)
    images, kept = decode_cached(
        files, image_size=SIZE, color_mode="grayscale", cache_dir=cache, key="k", progress=False
    )
    assert kept.all()
    np.testing.assert_array_equal(images[5], prepare_image(files[5], size=SIZE))


def test_progress_bar_only_when_asked(tmp_path, make_xray, capsys):
    files = _write_images(tmp_path / "img", make_xray, count=2)
    decode_cached(
        files,
        image_size=SIZE,
        color_mode="grayscale",
        cache_dir=tmp_path / "a",
        key="k",
        progress=False,
    )
    assert "decoding" not in capsys.readouterr().err
    decode_cached(
        files,
        image_size=SIZE,
        color_mode="grayscale",
        cache_dir=tmp_path / "b",
        key="k",
        progress=True,
    )
    assert "decoding k" in capsys.readouterr().err


# --- make_dataset --------------------------------------------------------------------


@pytest.fixture
def arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 12, 14, 1), dtype=np.uint8)
    return images, np.arange(10) % 2


@pytest.mark.parametrize("channels", [1, 3])
def test_batches_are_uint8_images_and_int32_labels(channels):
    images = np.random.default_rng(1).integers(0, 256, size=(7, 8, 9, channels), dtype=np.uint8)
    dataset = make_dataset(
        images, [0, 1, 0, 1, 1, 0, 1], batch_size=3, shuffle=True, augment=True, seed=0
    )
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    assert [x.shape for x, _ in batches] == [
        (3, 8, 9, channels),
        (3, 8, 9, channels),
        (1, 8, 9, channels),
    ]
    assert all(x.dtype == np.uint8 and y.dtype == np.int32 for x, y in batches)
    dropped = make_dataset(
        images,
        np.zeros(7, int),
        batch_size=3,
        shuffle=False,
        augment=False,
        seed=0,
        drop_remainder=True,
    )
    assert [int(x.shape[0]) for x, _ in dropped] == [3, 3]


def test_unshuffled_unaugmented_batches_are_the_exact_pixels(arrays):
    images, labels = arrays
    dataset = make_dataset(images, labels, batch_size=4, shuffle=False, augment=False, seed=0)
    x = np.concatenate([b.numpy() for b, _ in dataset])
    y = np.concatenate([b.numpy() for _, b in dataset])
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


def test_shuffle_keeps_pairs_and_reshuffles_every_epoch(arrays):
    images, labels = arrays
    dataset = make_dataset(images, labels, batch_size=3, shuffle=True, augment=False, seed=5)
    orders = []
    for epoch in _epochs(dataset, 3):
        x = np.concatenate([b for b, _ in epoch])
        y = np.concatenate([b for _, b in epoch])
        order = [next(i for i in range(10) if np.array_equal(images[i], row)) for row in x]
        assert sorted(order) == list(range(10))
        np.testing.assert_array_equal(y, labels[order])
        orders.append(order)
    assert orders[0] != orders[1] or orders[1] != orders[2]


def test_same_seed_same_batches_and_new_augmentation_each_epoch(arrays):
    images, labels = arrays

    def build(seed: int):
        return make_dataset(images, labels, batch_size=4, shuffle=True, augment=True, seed=seed)

    first, second, other = _epochs(build(3)), _epochs(build(3)), _epochs(build(4))
    assert _same(first[0], second[0])
    assert _same(first[1], second[1])
    assert not _same(first[0], first[1])
    assert not _same(first[0], other[0])


def test_augmentation_changes_pixels_not_dtype_or_shape(arrays):
    images, labels = arrays
    dataset = make_dataset(images, labels, batch_size=10, shuffle=False, augment=True, seed=0)
    x, y = next(iter(dataset))
    assert x.dtype.name == "uint8"
    assert tuple(x.shape) == images.shape
    np.testing.assert_array_equal(y.numpy(), labels)
    assert not np.array_equal(x.numpy(), images)


def test_disabled_augmentation_is_exact(arrays):
    images, labels = arrays
    assert not Augmentation.disabled().enabled
    dataset = make_dataset(
        images, labels, batch_size=10, shuffle=False, augment=Augmentation.disabled(), seed=0
    )
    np.testing.assert_array_equal(next(iter(dataset))[0].numpy(), images)


def test_flip_alone_mirrors_exactly(arrays):
    images, labels = arrays
    flip_only = Augmentation(
        rotation=0, shift=0, shear=0, zoom=0, horizontal_flip=True, brightness=0, contrast=0
    )
    dataset = make_dataset(images, labels, batch_size=10, shuffle=False, augment=flip_only, seed=2)
    outcomes = []
    for epoch in _epochs(dataset, 3):
        x = epoch[0][0]
        for original, out in zip(images, x, strict=True):
            if np.array_equal(out, original):
                outcomes.append("same")
            else:
                np.testing.assert_array_equal(out, original[:, ::-1])
                outcomes.append("flipped")
    assert {"same", "flipped"} == set(outcomes)


def test_constant_fill_and_brightness():
    images = np.full((4, 10, 10, 1), 100, np.uint8)
    shift = Augmentation(
        rotation=0,
        shift=0.9,
        shear=0,
        zoom=0,
        horizontal_flip=False,
        brightness=0,
        contrast=0,
        fill_mode="constant",
        fill_value=7,
    )
    x = next(
        iter(
            make_dataset(
                images, np.zeros(4, int), batch_size=4, shuffle=False, augment=shift, seed=1
            )
        )
    )[0]
    assert 7 in np.unique(x.numpy())
    bright = Augmentation(
        rotation=0, shift=0, shear=0, zoom=0, horizontal_flip=False, brightness=0.2, contrast=0
    )
    x = next(
        iter(
            make_dataset(
                images, np.zeros(4, int), batch_size=4, shuffle=False, augment=bright, seed=1
            )
        )
    )[0]
    per_image = x.numpy().reshape(4, -1)
    assert np.all(per_image.min(axis=1) == per_image.max(axis=1))  # a uniform offset
    assert np.all(np.abs(per_image[:, 0].astype(int) - 100) <= 51)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rotation": -1.0}, "rotation"),
        ({"rotation": 200.0}, "rotation"),
        ({"shift": 1.0}, "shift"),
        ({"zoom": float("nan")}, "zoom"),
        ({"contrast": "a lot"}, "contrast"),
        ({"horizontal_flip": 1}, "horizontal_flip"),
        ({"fill_mode": "reflect"}, "fill_mode"),
        ({"fill_value": 300}, "fill_value"),
    ],
)
def test_augmentation_is_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Augmentation(**kwargs)


def test_augmentation_defaults_and_frozen():
    aug = Augmentation()
    # the shipped model's recipe (scripts/train_default_model.sh)
    assert (aug.rotation, aug.shift, aug.shear, aug.zoom) == (10.0, 0.1, 0.1, 0.15)
    assert (aug.brightness, aug.contrast) == (0.15, 0.25)
    assert aug.horizontal_flip
    assert aug.enabled
    with pytest.raises(AttributeError):
        aug.rotation = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("images", "labels", "kwargs", "match"),
    [
        (np.zeros((2, 4, 4, 1), np.uint8), [0, 1], {"batch_size": 0}, "batch_size"),
        (np.zeros((2, 4, 4, 1), np.float32), [0, 1], {}, "uint8"),
        (np.zeros((2, 4, 4), np.uint8), [0, 1], {}, "uint8"),
        (np.zeros((2, 4, 4, 1), np.uint8), [0, 1, 1], {}, "labels"),
        (np.zeros((2, 4, 4, 1), np.uint8), [0.5, 1.0], {}, "integers"),
        (np.zeros((2, 4, 4, 1), np.uint8), [0, 1], {"augment": "yes"}, "augment"),
    ],
)
def test_make_dataset_checks_its_arguments(images, labels, kwargs, match):
    options = {"batch_size": 2, "shuffle": False, "augment": False, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_dataset(images, labels, **options)


def test_no_warning_on_clean_input(tmp_path, make_xray):
    files = _write_images(tmp_path / "img", make_xray, count=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decode_cached(
            files,
            image_size=SIZE,
            color_mode="rgb",
            cache_dir=tmp_path / "c",
            key="k",
            progress=False,
        )


def test_full_disk_raises_cache_error_and_leaves_nothing(tmp_path, make_xray, monkeypatch):
    files = _write_images(tmp_path / "img", make_xray, count=2)
    cache = tmp_path / "cache"

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space, raising=False)
    with pytest.raises(CacheError, match="No space left"):
        decode_cached(
            files, image_size=SIZE, color_mode="grayscale", cache_dir=cache, key="k", progress=False
        )
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("augment", [True, False])
def test_static_shapes_for_keras(augment):
    images = np.zeros((5, 8, 9, 1), np.uint8)
    dataset = make_dataset(
        images, np.zeros(5, int), batch_size=2, shuffle=True, augment=augment, seed=0
    )
    x_spec, y_spec = dataset.element_spec
    assert tuple(x_spec.shape) == (None, 8, 9, 1)
    assert tuple(y_spec.shape) == (None,)
    dropped = make_dataset(
        images,
        np.zeros(5, int),
        batch_size=2,
        shuffle=True,
        augment=augment,
        seed=0,
        drop_remainder=True,
    )
    assert tuple(dropped.element_spec[0].shape) == (2, 8, 9, 1)
