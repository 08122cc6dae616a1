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
