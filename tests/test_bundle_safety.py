"""Bundles never destroy what they did not write, leave no debris, and load no code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import pytest

from cxr_pneumonia.bundle import (
    METADATA_FILE,
    check_bundle_target,
    load_bundle,
    read_metadata,
    save_model,
)
from cxr_pneumonia.exceptions import BundleError, OverwriteRefusedError


def tiny_model(size: int = 32) -> keras.Model:
    inputs = keras.Input((size, size, 1), name="image")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="out")(x)
    return keras.Model(inputs, outputs, name="tiny")


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return tiny_model()


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- overwrite replaces only a bundle ----------------------------------------------------


def test_overwrite_refuses_a_folder_of_someone_elses_files(
    model: keras.Model, tmp_path: Path
) -> None:
    mine = tmp_path / "results"
    (mine / "tables").mkdir(parents=True)
    (mine / "tables" / "auc.csv").write_text("fold,auc\n0,0.97\n")
    (mine / "paper.docx").write_bytes(b"years of work")
    with pytest.raises(OverwriteRefusedError, match=r"refusing to overwrite .*without a bundle's"):
        save_model(model, mine, overwrite=True)
    assert _names(mine) == ["paper.docx", "tables"]
    assert (mine / "tables" / "auc.csv").read_text().startswith("fold")
    assert _names(tmp_path) == ["results"]  # no temporary left either


def test_overwrite_refuses_a_plain_file_and_a_foreign_metadata(
    model: keras.Model, tmp_path: Path
) -> None:
    plain = tmp_path / "model"
    plain.write_text("not a bundle")
    with pytest.raises(OverwriteRefusedError, match="it is a file"):
        save_model(model, plain, overwrite=True)
    assert plain.read_text() == "not a bundle"
    assert _names(tmp_path) == ["model"]  # no .model.old-* copy

    other = tmp_path / "other"
    other.mkdir()
    (other / METADATA_FILE).write_text(json.dumps({"name": "someone else's"}))
    with pytest.raises(OverwriteRefusedError, match="not a bundle's"):
        save_model(model, other, overwrite=True)
    assert _names(other) == [METADATA_FILE]


def test_overwrite_refuses_a_link_to_a_bundle(model: keras.Model, tmp_path: Path) -> None:
    real = save_model(model, tmp_path / "real", threshold=0.3)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with pytest.raises(OverwriteRefusedError, match="symbolic link"):
        save_model(model, link, overwrite=True)
    assert read_metadata(real).threshold == pytest.approx(0.3)


def test_overwrite_replaces_a_bundle_and_check_is_callable_early(
    model: keras.Model, tmp_path: Path
) -> None:
    path = save_model(model, tmp_path / "b", threshold=0.3)
    with pytest.raises(BundleError, match="overwrite=True"):
        check_bundle_target(path)
    assert check_bundle_target(path, overwrite=True) == path
    assert check_bundle_target(tmp_path / "new") == tmp_path / "new"
    save_model(model, path, threshold=0.6, overwrite=True)
    assert read_metadata(path).threshold == pytest.approx(0.6)
    assert _names(tmp_path) == ["b"]


# --- debris of killed saves --------------------------------------------------------------


def test_later_saves_clean_the_debris_of_killed_ones_and_only_that(
    model: keras.Model, tmp_path: Path
) -> None:
    path = save_model(model, tmp_path / "b", threshold=0.3)
    killed_save = tmp_path / ".b.tmp-0123456789ab"  # a save killed while writing
    killed_save.mkdir()
    (killed_save / "model.keras").write_bytes(b"half")
    killed_swap = tmp_path / ".b.old-0123456789ab"  # an overwrite killed after the swap
    killed_swap.mkdir()
    (killed_swap / METADATA_FILE).write_text("{}")
    foreign = [tmp_path / ".b.tmp-notours", tmp_path / ".c.tmp-0123456789ab"]
    for item in foreign:
        item.mkdir()
    save_model(model, path, threshold=0.6, overwrite=True)
    assert _names(tmp_path) == sorted(["b", *(p.name for p in foreign)])
    load_bundle(path)


def test_the_previous_bundle_moved_aside_is_kept_while_the_target_is_missing(
    model: keras.Model, tmp_path: Path
) -> None:
    # An overwrite killed between its two renames leaves only `.b.old-*`: it is the
    # previous bundle, and a later save to a new name must not delete it.
    previous = save_model(model, tmp_path / "x")
    os.rename(previous, tmp_path / ".b.old-0123456789ab")
    save_model(model, tmp_path / "b")
    assert ".b.old-0123456789ab" in _names(tmp_path)


# --- safe mode that can't be switched off from outside ---------------------------------


@pytest.fixture
def unsafe_keras():
    """Keras' global safe mode switched off, as any imported code may do; restored after."""
    from keras.src.backend.common import global_state

    before = global_state.get_global_attribute("safe_mode_saving")
    keras.config.enable_unsafe_deserialization()
    yield
    global_state.set_global_attribute("safe_mode_saving", before)


def _lambda_model(marker: Path) -> keras.Model:
    # The function writes `marker` when it runs: at load time if it is ever deserialized.
    code = f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), x)[1]"
    inputs = keras.Input((32, 32, 1), name="image")
    x = keras.layers.Lambda(eval(code), name="sneaky")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="sneaky")


def test_a_lambda_bundle_is_refused_even_with_unsafe_deserialization(
    tmp_path: Path, unsafe_keras: None
) -> None:
    from cxr_pneumonia import Predictor

    marker = tmp_path / "code-ran"
    path = save_model(_lambda_model(marker), tmp_path / "b")
    marker.unlink(missing_ok=True)  # building the model ran it once
    with pytest.raises(BundleError, match=r"would run code.*Lambda"):
        load_bundle(path)
    with pytest.raises(BundleError, match="would run code"):
        Predictor.load(path)
    assert not marker.exists()


def _rewrite_config(bundle: Path, edit) -> None:
    import hashlib
    import zipfile

    model_file = bundle / "model.keras"
    with zipfile.ZipFile(model_file) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["config.json"] = json.dumps(edit(json.loads(members["config.json"]))).encode()
    with zipfile.ZipFile(model_file, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    meta = json.loads((bundle / METADATA_FILE).read_text())
    meta["sha256"] = hashlib.sha256(model_file.read_bytes()).hexdigest()
    (bundle / METADATA_FILE).write_text(json.dumps(meta))


def test_a_class_from_a_foreign_module_is_refused(
    model: keras.Model, tmp_path: Path, unsafe_keras: None
) -> None:
    path = save_model(model, tmp_path / "b")

    def point_at_os(config: dict) -> dict:
        config["config"]["layers"][1]["module"] = "os"
        return config

    _rewrite_config(path, point_at_os)
    with pytest.raises(BundleError, match=r"comes from module 'os'"):
        load_bundle(path)


# --- metadata checked at load --------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [["NORMAL", "PNEUMONIA", "COVID"], ["PNEUMONIA"], ["SAME", "SAME"]],
    ids=["three", "one", "duplicate"],
)
def test_load_bundle_refuses_class_names_that_are_not_two(
    model: keras.Model, tmp_path: Path, names: list[str]
) -> None:
    path = save_model(model, tmp_path / "b")
    meta = json.loads((path / METADATA_FILE).read_text())
    meta["class_names"] = names
    (path / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="class_names"):
        load_bundle(path)


def test_load_bundle_refuses_a_model_that_is_not_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cxr_pneumonia.bundle as bundle_module

    inputs = keras.Input((32, 32, 1))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    three = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    with pytest.raises(ValueError, match=r"neither \(N, 1\)"):
        save_model(three, tmp_path / "refused")  # save_model refuses it first
    # A bundle written anyway (here by fooling save_model's check) is refused at load.
    monkeypatch.setattr(bundle_module, "output_kind", lambda model: "softmax")
    path = save_model(three, tmp_path / "b")
    monkeypatch.undo()
    with pytest.raises(BundleError, match=r"not one binary output"):
        load_bundle(path)
