"""`load_dataset` end to end on tiny generated folders, a local npz server and the real data."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cxr_pneumonia.data as data_module
from cxr_pneumonia.data import (
    DatasetSplits,
    SkippedFilesWarning,
    load_dataset,
    pipeline,
    register_dataset,
    sources,
)
from cxr_pneumonia.exceptions import CacheError, DatasetLayoutError, UnknownDatasetError
from cxr_pneumonia.images import prepare_image

pytest_plugins = ["http_server"]

SIZE = (16, 16)
DARK, BRIGHT = 40, 210
"""NORMAL files are dark, PNEUMONIA files bright: the pixels tell the label."""


def _image(label: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = BRIGHT if label else DARK
    pixels = base + rng.integers(-12, 12, size=(20, 18))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _fill_split(folder: Path, *, patients: int, per_patient: int = 2, seed: int = 0) -> None:
    normal, pneumonia = folder / "NORMAL", folder / "PNEUMONIA"
    normal.mkdir(parents=True)
    pneumonia.mkdir(parents=True)
    n = seed
    for p in range(patients):
        for k in range(per_patient):
            n += 1
            _image(0, n).save(normal / f"IM-{seed + p:04d}-{k + 1:04d}.jpeg")
            n += 1
            _image(1, n).save(pneumonia / f"person{seed + p}_bacteria_{k + 1}.jpeg")
        n += 1
        _image(1, n).save(pneumonia / f"person{seed + p}_virus_{p + 1}.jpeg")


def _make_tree(root: Path, layout: str) -> Path:
    if layout == "train-test":
        _fill_split(root / "train", patients=8)
        _fill_split(root / "test", patients=2, seed=100)
    elif layout == "kaggle":
        base = root / "chest_xray"
        _fill_split(base / "train", patients=8)
        _fill_split(base / "val", patients=1, seed=50)
        _fill_split(base / "test", patients=2, seed=100)
        (base / "train" / ".DS_Store").write_bytes(b"\0junk")
        (root / "__MACOSX" / "chest_xray").mkdir(parents=True)
        (root / "__MACOSX" / "chest_xray" / "._IM-0001-0001.jpeg").write_bytes(b"\0junk")
    elif layout == "class-folders":
        _fill_split(root, patients=8)
    else:  # pragma: no cover
        raise ValueError(layout)
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return _make_tree(tmp_path / "data", "train-test")


def _load(root: Path, cache: Path, **kwargs) -> DatasetSplits:
    options = {"image_size": SIZE, "batch_size": 4, "validation_fraction": 0.25, "progress": False}
    return load_dataset(data_dir=root, cache_dir=cache, **{**options, **kwargs})


def _all(dataset) -> tuple[np.ndarray, np.ndarray]:
    x, y = zip(*((a.numpy(), b.numpy()) for a, b in dataset), strict=True)
    return np.concatenate(x), np.concatenate(y)


def _bright(images: np.ndarray) -> np.ndarray:
    return (images.reshape(images.shape[0], -1).mean(axis=1) > 128).astype(np.int32)


# --- folders -------------------------------------------------------------------------


def test_validation_folder_is_the_users_own_val(tmp_path):
    root = _make_tree(tmp_path / "data", "kaggle")
    splits = _load(root, tmp_path / "cache", validation="folder")
    val_files = splits.files["validation"]
    assert len(val_files) == 5  # the val/ folder: 1 patient, 2 NORMAL + 3 PNEUMONIA
    assert all("/val/" in f.replace("\\", "/") for f in val_files)
    assert len(splits.files["train"]) == 8 * 5  # all of train/, nothing carved out
    assert not any("/val/" in f.replace("\\", "/") for f in splits.files["train"])
    x, y = _all(splits.validation)
    np.testing.assert_array_equal(y, splits.labels["validation"])
    np.testing.assert_array_equal(_bright(x), y)  # images and labels aligned
    assert splits.class_counts["validation"] == {"NORMAL": 2, "PNEUMONIA": 3}
    assert splits.validation_fraction is None  # taken as it was, not carved
    # The default merges val/ into train/ and carves a patient-grouped part.
    grouped = _load(root, tmp_path / "cache")
    assert not set(grouped.files["validation"]) & set(val_files)
    assert grouped.validation_fraction == 0.25  # _load's


def test_validation_folder_needs_a_val_folder(tree, tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"needs a val/ folder.*'train-test' layout"):
        _load(tree, tmp_path / "cache", validation="folder")
    with pytest.raises(ValueError, match="choose one of: grouped, folder"):
        _load(tree, tmp_path / "cache", validation="val")


@pytest.mark.parametrize(
    ("layout", "has_test", "n_train_files"),
    [("train-test", True, 8 * 5), ("kaggle", True, 9 * 5), ("class-folders", False, 8 * 5)],
)
def test_load_folder_layouts(tmp_path, layout, has_test, n_train_files):
    root = _make_tree(tmp_path / "data", layout)
    splits = _load(root, tmp_path / "cache")
    assert splits.class_names == ("NORMAL", "PNEUMONIA")
    assert len(splits.files["train"]) + len(splits.files["validation"]) == n_train_files
    assert (splits.test is not None) == has_test
    assert ("test" in splits.files) == has_test
    if has_test:
        assert len(splits.files["test"]) == 10
    for name in splits.files:
        assert not any("__MACOSX" in f or ".DS_Store" in f for f in splits.files[name])


@pytest.mark.parametrize(("color_mode", "channels"), [("grayscale", 1), ("rgb", 3)])
def test_batches_shapes_dtypes_and_aligned_labels(tree, tmp_path, color_mode, channels):
    splits = _load(tree, tmp_path / "cache", color_mode=color_mode, image_size=(16, 12))
    x, y = next(iter(splits.train))
    assert x.dtype.name == "uint8"
    assert y.dtype.name == "int32"
    assert tuple(x.shape) == (4, 16, 12, channels)
    for split in ("train", "validation", "test"):
        files, labels, images = splits.files[split], splits.labels[split], splits.images[split]
        assert labels.dtype == np.int32
        assert len(files) == labels.shape[0] == images.shape[0] == len(splits.patients[split])
        expected = np.array([0 if "/NORMAL/" in f else 1 for f in files])
        np.testing.assert_array_equal(labels, expected)
        np.testing.assert_array_equal(_bright(images), labels)
    # Unshuffled splits come in file order, with their exact cached pixels.
    for split in ("validation", "test"):
        xs, ys = _all(splits.dataset(split))
        np.testing.assert_array_equal(xs, splits.images[split])
        np.testing.assert_array_equal(ys, splits.labels[split])
    first = splits.files["test"][0]
    np.testing.assert_array_equal(
        splits.images["test"][0], prepare_image(first, size=(16, 12), color_mode=color_mode)
    )
    # Shuffled, augmented training batches keep every label with its image.
    xs, ys = _all(splits.train)
    assert sorted(ys.tolist()) == sorted(splits.labels["train"].tolist())
    np.testing.assert_array_equal(_bright(xs), ys)


def test_validation_split_is_grouped_by_patient_and_stratified(tree, tmp_path):
    splits = _load(tree, tmp_path / "cache", validation_fraction=0.3)
    train, validation = set(splits.patients["train"]), set(splits.patients["validation"])
    assert not train & validation
    assert "bacteria-3" in train | validation
    assert "virus-3" in train | validation
    n_val, n_all = len(splits.files["validation"]), 40
    assert abs(n_val / n_all - 0.3) < 0.15
    share = splits.labels["validation"].mean()
    assert abs(share - 24 / 40) < 0.2
    assert "test" in splits.patients
    assert (splits.validation_fraction, splits.seed) == (0.3, 0)  # what names this split
    assert _load(tree, tmp_path / "cache", validation_fraction=0.0).validation_fraction is None


def test_class_weight_is_balanced_on_the_training_part(tree, tmp_path):
    splits = _load(tree, tmp_path / "cache")
    labels = splits.labels["train"]
    n, n_normal, n_pneumonia = len(labels), int((labels == 0).sum()), int((labels == 1).sum())
    assert splits.class_weight == pytest.approx({0: n / (2 * n_normal), 1: n / (2 * n_pneumonia)})
    assert splits.class_counts["train"] == {"NORMAL": n_normal, "PNEUMONIA": n_pneumonia}


def test_same_seed_same_data_other_seed_other_split(tree, tmp_path):
    first = _load(tree, tmp_path / "cache", seed=1)
    second = _load(tree, tmp_path / "cache", seed=1)
    assert first.files == second.files
    for a, b in zip(first.train, second.train, strict=True):
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
        np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    other = _load(tree, tmp_path / "cache", seed=2)
    assert other.files["validation"] != first.files["validation"]


def test_augment_false_serves_cached_pixels_and_augment_changes_them(tree, tmp_path):
    plain = _load(tree, tmp_path / "cache", augment=False, validation_fraction=0.0)
    assert plain.validation is None
    assert "validation" not in plain.files
    xs, ys = _all(plain.train)
    cached = plain.images["train"]
    rows = sorted(range(len(xs)), key=lambda i: xs[i].tobytes())
    ref = sorted(range(len(cached)), key=lambda i: cached[i].tobytes())
    np.testing.assert_array_equal(xs[rows], cached[ref])
    np.testing.assert_array_equal(ys[rows], plain.labels["train"][ref])

    augmented = _load(tree, tmp_path / "cache", augment=True, validation_fraction=0.0)
    xa, _ = _all(augmented.train)
    assert xa.dtype == np.uint8
    assert xa.shape == xs.shape
    assert not np.array_equal(np.sort(xa, axis=0), np.sort(xs, axis=0))


def _scramble_keeping_stat(path: Path) -> None:
    stat = path.stat()
    path.write_bytes(b"\0" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_second_load_reads_no_image_file(tree, tmp_path, monkeypatch):
    first = _load(tree, tmp_path / "cache", augment=False)
    images = {split: np.array(first.images[split]) for split in first.images}
    # Make every image unreadable (same size and mtime) and forbid decoding.
    for path in tree.rglob("*.jpeg"):
        _scramble_keeping_stat(path)

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image file was decoded again")

    monkeypatch.setattr(pipeline, "prepare_image", no_decoding)
    second = _load(tree, tmp_path / "cache", augment=False)
    assert second.files == first.files
    for split, expected in images.items():
        np.testing.assert_array_equal(second.images[split], expected)
    # Epochs are served from the cache even with the files gone.
    for path in tree.rglob("*.jpeg"):
        path.unlink()
    for _ in range(2):
        xs, _ = _all(second.test)
        np.testing.assert_array_equal(xs, images["test"])


def test_bad_files_are_skipped_with_one_warning(tree, tmp_path):
    good = next((tree / "train" / "NORMAL").glob("*.jpeg"))
    (tree / "train" / "NORMAL" / "IM-0900-0001.jpeg").write_bytes(b"")
    (tree / "train" / "PNEUMONIA" / "person900_bacteria_1.jpeg").write_bytes(good.read_bytes()[:80])
    (tree / "test" / "PNEUMONIA" / "person901_virus_1.jpeg").write_text("this is no image")
    with pytest.warns(SkippedFilesWarning, match="could not be decoded") as record:
        splits = _load(tree, tmp_path / "cache")
    assert len(record) == 1, [str(r.message) for r in record]
    message = str(record[0].message)
    assert "skipped 3 file(s)" in message
    for name in ("IM-0900-0001.jpeg", "person900_bacteria_1.jpeg", "person901_virus_1.jpeg"):
        assert name in message
    assert record[0].filename == __file__
    every_file = [f for files in splits.files.values() for f in files]
    assert not any("900" in f or "901" in f for f in every_file)
    for split in splits.files:
        np.testing.assert_array_equal(_bright(splits.images[split]), splits.labels[split])


def test_unwritable_cache_raises_cache_error(tree, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(CacheError, match="not-a-folder"):
        _load(tree, blocker / "cache")


def test_summary_is_a_readable_table(tree, tmp_path):
    splits = _load(tree, tmp_path / "cache")
    text = splits.summary()
    assert str(tree) in text
    assert "16x16 grayscale" in text
    assert "seed 0" in text
    lines = text.splitlines()
    assert lines[1].split()[:4] == ["split", "images", "patients", "NORMAL"]
    rows = {line.split()[0]: line.split() for line in lines[3:6]}
    assert set(rows) == {"train", "validation", "test"}
    assert rows["test"][1:3] == ["10", "6"]  # 2 normal, 2 bacteria, 2 virus patients
    assert "class_weight: NORMAL=" in text


def test_arrays_are_the_decoded_split_aligned_with_its_files(tree, tmp_path):
    splits = _load(tree, tmp_path / "cache", augment=False)
    images, labels = splits.arrays("validation")
    assert images is splits.images["validation"]  # not copied
    np.testing.assert_array_equal(labels, splits.labels["validation"])
    np.testing.assert_array_equal(_bright(images), labels)
    batches, batch_labels = _all(splits.validation)
    np.testing.assert_array_equal(batches, images)
    np.testing.assert_array_equal(batch_labels, labels)
    with pytest.raises(ValueError, match="unknown split 'val'; choose one of: train, validation"):
        splits.arrays("val")
    without = _load(tree, tmp_path / "cache", validation_fraction=0.0)
    with pytest.raises(ValueError, match=r"has no 'validation' split; it has: train, test$"):
        without.arrays("validation")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image_size": (0, 16)}, ValueError, "image_size"),
        ({"image_size": 16}, ValueError, "image_size"),
        ({"color_mode": "rgba"}, ValueError, "color_mode"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, ValueError, "batch_size"),
        ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
        ({"validation_fraction": -0.1}, ValueError, "validation_fraction"),
        ({"augment": "strong"}, ValueError, "augment"),
        ({"seed": "zero"}, ValueError, "seed"),
    ],
)
def test_arguments_are_checked_first(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_dataset(data_dir=tmp_path / "missing", cache_dir=tmp_path / "cache", **kwargs)


def test_unknown_name_and_bad_folder(tmp_path):
    with pytest.raises(UnknownDatasetError, match="kermany2018"):
        load_dataset("no-such-data", cache_dir=tmp_path)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("x")
    with pytest.raises(DatasetLayoutError):
        load_dataset(data_dir=tmp_path / "junk", cache_dir=tmp_path / "cache", progress=False)


# --- npz sources over a local HTTP server ----------------------------------------------


def _npz_bytes() -> bytes:
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", 12), ("val", 4), ("test", 6)):
        labels = (np.arange(n) % 2).astype(np.uint8).reshape(n, 1)
        images = np.where(labels[:, :, None] == 1, BRIGHT, DARK) + rng.integers(
            -10, 10, size=(n, 28, 28)
        )
        arrays[f"{prefix}_images"] = images.astype(np.uint8)
        arrays[f"{prefix}_labels"] = labels
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture
def npz_source(http_server, monkeypatch):
    monkeypatch.setattr(sources, "_REGISTRY", dict(sources._REGISTRY))
    payload = _npz_bytes()
    (http_server.root / "mini.npz").write_bytes(payload)
    register_dataset(
        "mini-pneumoniamnist",
        url=http_server.url("mini.npz"),
        known_hash=f"md5:{hashlib.md5(payload).hexdigest()}",
        citation="a test",
    )
    return http_server


@pytest.mark.parametrize(
    ("size", "color_mode", "channels"), [((28, 28), "grayscale", 1), ((32, 24), "rgb", 3)]
)
def test_npz_source_uses_its_own_splits(npz_source, tmp_path, size, color_mode, channels):
    assert "mini-pneumoniamnist" in data_module.list_datasets()
    splits = load_dataset(
        "mini-pneumoniamnist",
        cache_dir=tmp_path / "cache",
        image_size=size,
        color_mode=color_mode,
        batch_size=5,
        progress=False,
    )
    assert npz_source.hits["mini.npz"] == 1
    assert {k: len(v) for k, v in splits.files.items()} == {"train": 12, "validation": 4, "test": 6}
    assert splits.validation_fraction is None  # the file's own split
    assert splits.files["train"][12 - 1] == "mini-pneumoniamnist/train/00011"
    assert splits.files["validation"][0] == "mini-pneumoniamnist/val/00000"
    assert splits.source == "mini-pneumoniamnist"
    x, y = next(iter(splits.test))
    assert tuple(x.shape) == (5, *size, channels)
    assert x.dtype.name == "uint8"
    assert y.dtype.name == "int32"
    for split in splits.files:
        assert splits.images[split].shape[1:] == (*size, channels)
        np.testing.assert_array_equal(_bright(splits.images[split]), splits.labels[split])
    assert splits.class_weight == pytest.approx({0: 1.0, 1: 1.0})
    # Served from the download cache the second time.
    load_dataset(
        "mini-pneumoniamnist", cache_dir=tmp_path / "cache", image_size=size, progress=False
    )
    assert npz_source.hits["mini.npz"] == 1


# --- the real data -------------------------------------------------------------------


@pytest.mark.slow
def test_kermany2018_224_from_shared_data(shared_data, tmp_path, monkeypatch):
    root = shared_data / "kermany2018-224"
    options = {
        "cache_dir": tmp_path / "cache",
        "image_size": (224, 224),
        "progress": False,
        "seed": 0,
    }
    splits = load_dataset(data_dir=root, **options)
    assert len(splits.files["train"]) + len(splits.files["validation"]) == 5216
    counts = {
        name: splits.class_counts["train"][name] + splits.class_counts["validation"][name]
        for name in splits.class_names
    }
    assert counts == {"NORMAL": 1341, "PNEUMONIA": 3875}
    assert splits.test is None
    assert not set(splits.patients["train"]) & set(splits.patients["validation"])
    assert abs(len(splits.files["validation"]) / 5216 - 0.15) < 0.02  # the default fraction
    share = splits.labels["validation"].mean()
    assert abs(share - 3875 / 5216) < 0.03
    x, _y = next(iter(splits.train))
    assert tuple(x.shape) == (32, 224, 224, 1)
    assert x.dtype.name == "uint8"

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image file was decoded again")

    monkeypatch.setattr(pipeline, "prepare_image", no_decoding)
    again = load_dataset(data_dir=root, **options)
    assert again.files == splits.files
    np.testing.assert_array_equal(again.images["validation"][:50], splits.images["validation"][:50])
