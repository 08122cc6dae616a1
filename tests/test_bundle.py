"""Model bundles: atomic save, verified load, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import cxr_pneumonia
from cxr_pneumonia import bundle as bundle_module
from cxr_pneumonia.bundle import (
    BUNDLE_FORMAT_VERSION,
    METADATA_FILE,
    MODEL_FILE,
    BundleMetadata,
    load_bundle,
    read_metadata,
    save_model,
)
from cxr_pneumonia.exceptions import BundleError


def tiny_model(channels: int = 1, size: int = 32) -> keras.Model:
    """Rescaling + Conv2D + GAP + Dense(sigmoid): the smallest image classifier."""
    inputs = keras.Input((size, size, channels), name="image")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="out")(x)
    return keras.Model(inputs, outputs, name="tiny")


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return tiny_model()


@pytest.fixture(scope="module")
def saved(model: keras.Model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundles") / "tiny"
    return save_model(
        model,
        path,
        threshold=0.42,
        metrics={"val_auc": np.float32(0.875), "val_recall": 0.97},
        training={"data": "kermany2018-224", "seed": 7, "command": "cxr-pneumonia train"},
        model_name="tiny-test",
    )


def batch(seed: int = 0, n: int = 3, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 32, 32, channels), dtype=np.uint8)


def test_save_writes_model_and_metadata(saved: Path) -> None:
    assert sorted(p.name for p in saved.iterdir()) == sorted([MODEL_FILE, METADATA_FILE])
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left
    data = json.loads((saved / METADATA_FILE).read_text())
    assert data["format_version"] == BUNDLE_FORMAT_VERSION
    assert data["library_version"] == cxr_pneumonia.__version__
    assert data["model_name"] == "tiny-test"
    assert data["input"] == {
        "image_size": [32, 32],
        "color_mode": "grayscale",
        "channels": 1,
        "dtype": "uint8",
    }
    assert data["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert data["threshold"] == pytest.approx(0.42)
    assert data["metrics"]["val_auc"] == pytest.approx(0.875)
    assert data["training"]["seed"] == 7
    assert len(data["sha256"]) == 64
    assert data["created"].endswith("+00:00")


def test_load_round_trip(model: keras.Model, saved: Path) -> None:
    loaded, metadata = load_bundle(saved)
    images = batch()
    np.testing.assert_allclose(
        np.asarray(loaded(images.astype("float32"))),
        np.asarray(model(images.astype("float32"))),
        rtol=1e-6,
    )
    assert metadata.image_size == (32, 32)
    assert metadata.input_shape == (32, 32, 1)
    assert metadata.threshold == pytest.approx(0.42)
    assert metadata.training["command"] == "cxr-pneumonia train"
    assert metadata == read_metadata(saved)


def test_metadata_round_trip_and_hashable(saved: Path) -> None:
    metadata = read_metadata(saved)
    assert BundleMetadata.from_dict(metadata.to_dict()) == metadata
    assert isinstance(hash(metadata), int)
    with pytest.raises(AttributeError):
        metadata.threshold = 0.1  # type: ignore[misc]


def test_defaults_come_from_the_model(tmp_path: Path) -> None:
    path = save_model(tiny_model(channels=3), tmp_path / "rgb")
    metadata = read_metadata(path)
    assert (metadata.image_size, metadata.color_mode, metadata.channels) == ((32, 32), "rgb", 3)
    assert metadata.model_name == "tiny"
    assert metadata.threshold == 0.5


def test_contradicting_input_spec_is_refused(model: keras.Model, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="contradicts"):
        save_model(model, tmp_path / "b", image_size=(64, 64))
    with pytest.raises(ValueError, match="contradicts"):
        save_model(model, tmp_path / "b", color_mode="rgb")
    with pytest.raises(ValueError, match="threshold"):
        save_model(model, tmp_path / "b", threshold=1.5)
    assert not (tmp_path / "b").exists()


def test_existing_bundle_needs_overwrite(model: keras.Model, tmp_path: Path) -> None:
    path = save_model(model, tmp_path / "b", threshold=0.3)
    with pytest.raises(BundleError, match=r"already exists.*overwrite=True"):
        save_model(model, path, threshold=0.6)
    assert read_metadata(path).threshold == pytest.approx(0.3)
    save_model(model, path, threshold=0.6, overwrite=True)
    assert read_metadata(path).threshold == pytest.approx(0.6)
    load_bundle(path)
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_bundle_holds_no_optimizer_state_and_normal_modes(tmp_path: Path) -> None:
    import io
    import zipfile

    import h5py

    trained = tiny_model()
    trained.compile(optimizer=keras.optimizers.Adam(use_ema=True), loss="binary_crossentropy")
    trained.fit(batch(n=4), np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    path = save_model(trained, tmp_path / "trained")
    with zipfile.ZipFile(path / "model.keras") as archive:
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        assert "optimizer" not in weights
    loaded, _ = load_bundle(path)
    np.testing.assert_allclose(loaded.predict_on_batch(batch()), trained.predict_on_batch(batch()))
    assert path.stat().st_mode & 0o777 == 0o777 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_crash_during_save_leaves_nothing(
    model: keras.Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = save_model(model, tmp_path / "b", threshold=0.3)

    def crash(folder: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(bundle_module, "fsync_dir", crash)
    with pytest.raises(BundleError, match="disk full"):
        save_model(model, tmp_path / "new", threshold=0.6)
    with pytest.raises(BundleError, match="disk full"):
        save_model(model, old, threshold=0.6, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no half-written bundle, no temp
    assert read_metadata(old).threshold == pytest.approx(0.3)


def test_unserialisable_metrics_are_refused(model: keras.Model, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="metrics must be JSON-serialisable"):
        save_model(model, tmp_path / "b", metrics={"f": object()})
    assert not (tmp_path / "b").exists()


def copy_bundle(saved: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in (MODEL_FILE, METADATA_FILE):
        (dest / name).write_bytes((saved / name).read_bytes())
    return dest


def test_missing_folder_and_files(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no model bundle"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match="is a file"):
        load_bundle(saved / MODEL_FILE)
    broken = copy_bundle(saved, tmp_path / "broken")
    (broken / MODEL_FILE).unlink()
    with pytest.raises(BundleError, match=f"missing {MODEL_FILE}"):
        load_bundle(broken)


def test_tampered_model_is_refused(saved: Path, tmp_path: Path) -> None:
    broken = copy_bundle(saved, tmp_path / "broken")
    data = bytearray((broken / MODEL_FILE).read_bytes())
    data[-10] ^= 0xFF
    (broken / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256"):
        load_bundle(broken)


def edit_metadata(saved: Path, dest: Path, **changes: object) -> Path:
    folder = copy_bundle(saved, dest)
    data = json.loads((folder / METADATA_FILE).read_text())
    data.update(changes)
    (folder / METADATA_FILE).write_text(json.dumps(data))
    return folder


def test_newer_format_asks_to_upgrade(saved: Path, tmp_path: Path) -> None:
    folder = edit_metadata(saved, tmp_path / "new", format_version=BUNDLE_FORMAT_VERSION + 1)
    with pytest.raises(BundleError, match=r"newer cxr-pneumonia.*upgrade"):
        load_bundle(folder)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"threshold": 2}, "threshold"),
        ({"class_names": ["ONLY"]}, "class_names"),
        ({"input": {"image_size": [32], "color_mode": "grayscale"}}, "image_size"),
        ({"input": {"image_size": [32, 32], "color_mode": "cmyk"}}, "color_mode"),
        ({"format_version": "1"}, "format_version"),
        ({"sha256": None}, "sha256"),
    ],
)
def test_invalid_metadata(saved: Path, tmp_path: Path, changes: dict, match: str) -> None:
    folder = edit_metadata(saved, tmp_path / "bad", **changes)
    with pytest.raises(BundleError, match=match):
        load_bundle(folder)


def test_corrupt_json(saved: Path, tmp_path: Path) -> None:
    folder = copy_bundle(saved, tmp_path / "bad")
    (folder / METADATA_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="can't be read as JSON"):
        load_bundle(folder)


def test_safe_mode_refuses_code_in_the_file(tmp_path: Path) -> None:
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    path = save_model(model, tmp_path / "lambda")
    with pytest.raises(BundleError, match="would run code from the file"):
        load_bundle(path)


def test_registry_model_round_trip(tmp_path: Path) -> None:
    models = pytest.importorskip("cxr_pneumonia.models")
    model = models.build_model("cnn-small", input_shape=(32, 32, 1), weights=None)
    path = save_model(model, tmp_path / "cnn-small", model_name="cnn-small")
    loaded, metadata = load_bundle(path)
    images = batch(seed=3)
    np.testing.assert_allclose(np.asarray(loaded(images)), np.asarray(model(images)), rtol=1e-5)
    assert metadata.model_name == "cnn-small"
