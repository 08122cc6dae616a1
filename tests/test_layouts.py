"""Tests of folder layout detection and patient ids (``cxr_pneumonia.data.layouts``)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_pneumonia.data.layouts import (
    LAYOUTS,
    DatasetFiles,
    UnparsedPatientWarning,
    find_images,
    patient_groups,
    patient_id,
)
from cxr_pneumonia.exceptions import DatasetLayoutError

NORMAL_NAMES = ("IM-0115-0001.jpeg", "IM-0117-0001.jpeg", "NORMAL2-IM-0395-0001-0002.jpeg")
PNEUMONIA_NAMES = ("person1_bacteria_1.jpeg", "person1_virus_6.jpeg", "person12_bacteria_47.jpeg")


def write_jpeg(path: Path, value: int = 128) -> Path:
    """Write a tiny real 8 x 8 grayscale JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), color=value).save(path, format="JPEG")
    return path


def write_classes(
    folder: Path,
    normal: tuple[str, ...] = NORMAL_NAMES,
    pneumonia: tuple[str, ...] = PNEUMONIA_NAMES,
    *,
    class_names: tuple[str, str] = ("NORMAL", "PNEUMONIA"),
) -> None:
    for name in normal:
        write_jpeg(folder / class_names[0] / name)
    for name in pneumonia:
        write_jpeg(folder / class_names[1] / name)


def write_splits(folder: Path, splits: tuple[str, ...]) -> None:
    for split in splits:
        prefix = f"{split}-"
        write_classes(
            folder / split,
            tuple(prefix + n for n in ("IM-0001-0001.jpeg", "IM-0002-0001.jpeg")),
            tuple(prefix + n for n in ("person1_virus_1.jpeg",)),
        )


def add_junk(folder: Path) -> None:
    """The debris of a macOS zip: hidden files, AppleDouble files, __MACOSX, non-images."""
    (folder / ".DS_Store").write_bytes(b"\x00junk")
    for class_folder in [p for p in folder.rglob("*") if p.is_dir() and p.name.isupper()]:
        (class_folder / ".DS_Store").write_bytes(b"\x00junk")
        (class_folder / "._x.jpeg").write_bytes(b"\x00\x05\x16\x07 not a jpeg")
        (class_folder / "notes.txt").write_text("not an image")
        (class_folder / "Thumbs.db").write_bytes(b"\x00")
    write_jpeg(folder / "__MACOSX" / "chest_xray" / "train" / "NORMAL" / "._IM-9-1.jpeg")
    write_jpeg(folder / "__MACOSX" / "train" / "NORMAL" / "IM-9-1.jpeg")


def names(files: DatasetFiles, split: str) -> list[str]:
    return [p.name for p in files.files[split]]


# --- layouts -------------------------------------------------------------------------


def test_kaggle_layout_merges_val_and_ignores_duplicate_tree_and_junk(tmp_path: Path) -> None:
    outer = tmp_path / "chest_xray"
    write_splits(outer, ("train", "val", "test"))
    write_splits(outer / "chest_xray", ("train", "val", "test"))  # the nested duplicate
    add_junk(outer)
    add_junk(outer / "chest_xray")

    for root in (tmp_path, outer):
        files = find_images(root)
        assert files.layout == "kaggle"
        assert files.root == outer
        assert files.splits == ("train", "test")
        assert len(files.files["train"]) == 6  # 3 of train + 3 of val, not doubled
        assert len(files.files["test"]) == 3
        assert files.class_counts == {
            "train": {"NORMAL": 4, "PNEUMONIA": 2},
            "test": {"NORMAL": 2, "PNEUMONIA": 1},
        }
        assert all("chest_xray/chest_xray" not in p.as_posix() for p in files.files["train"])
        assert sum(name.startswith("val-") for name in names(files, "train")) == 3


def test_labels_follow_class_folders_and_order_is_sorted(tmp_path: Path) -> None:
    write_splits(tmp_path / "chest_xray", ("train", "test"))
    files = find_images(tmp_path)
    assert files.layout == "mendeley-v2"
    for split in files.splits:
        paths = files.files[split]
        expected = [int(p.parent.name == "PNEUMONIA") for p in paths]
        assert files.labels[split].tolist() == expected
        assert list(paths) == sorted(paths, key=lambda p: (p.parent.name, str(p)))
        assert files.labels[split].dtype == np.int32
        assert not files.labels[split].flags.writeable


def test_mendeley_v3_layout(tmp_path: Path) -> None:
    root = tmp_path / "ZhangLabData" / "CellData" / "chest_xray"
    write_classes(
        root / "train",
        ("NORMAL-1003233-0001.jpeg", "NORMAL-1012843-0001.jpeg"),
        ("BACTERIA-1008087-0001.jpeg", "VIRUS-1002108-0001.jpeg"),
    )
    write_classes(root / "test", ("NORMAL-11419-0001.jpeg",), ("BACTERIA-40699-0001.jpeg",))
    # V3 also ships OCT data in train/test folders with other classes: not a match.
    write_classes(
        tmp_path / "ZhangLabData" / "CellData" / "OCT" / "train",
        ("NORMAL-1-1.jpeg",),
        ("CNV-1-1.jpeg",),
        class_names=("NORMAL", "CNV"),
    )
    files = find_images(tmp_path)
    assert files.layout == "mendeley-v3"
    assert files.root == root
    assert files.class_counts["train"] == {"NORMAL": 2, "PNEUMONIA": 2}
    assert set(patient_groups(files.files["train"])) == {
        "NORMAL-1003233",
        "NORMAL-1012843",
        "BACTERIA-1008087",
        "VIRUS-1002108",
    }


@pytest.mark.parametrize(
    ("splits", "layout"),
    [(("train", "test"), "train-test"), (("train",), "train-only")],
)
def test_plain_split_layouts(tmp_path: Path, splits: tuple[str, ...], layout: str) -> None:
    write_splits(tmp_path / "data", splits)
    add_junk(tmp_path / "data")
    files = find_images(tmp_path / "data")
    assert files.layout == layout
    assert files.splits == splits
    assert all(len(paths) == 3 for paths in files.files.values())


def test_class_folders_layout_is_one_train_split(tmp_path: Path) -> None:
    write_classes(tmp_path)
    add_junk(tmp_path)
    files = find_images(tmp_path)
    assert files.layout == "class-folders"
    assert files.splits == ("train",)
    assert names(files, "train") == sorted(NORMAL_NAMES) + sorted(PNEUMONIA_NAMES)
    assert files.labels["train"].tolist() == [0, 0, 0, 1, 1, 1]


def test_folder_names_and_suffixes_are_case_insensitive(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "Train" / "normal" / "IM-1-1.JPG")
    write_jpeg(tmp_path / "Train" / "Pneumonia" / "person1_virus_1.Jpeg")
    (tmp_path / "Train" / "Pneumonia" / "person2_virus_2.csv").write_text("x")
    files = find_images(tmp_path)
    assert files.layout == "train-only"
    assert names(files, "train") == ["IM-1-1.JPG", "person1_virus_1.Jpeg"]
    assert files.labels["train"].tolist() == [0, 1]


def test_root_given_as_str_with_data_two_levels_down(tmp_path: Path) -> None:
    write_splits(tmp_path / "download" / "ChestXRay2017" / "chest_xray", ("train", "test"))
    files = find_images(str(tmp_path / "download"))
    assert files.layout == "mendeley-v2"
    assert all(isinstance(p, Path) for p in files.files["train"])


def test_dataset_files_is_read_only(tmp_path: Path) -> None:
    write_classes(tmp_path)
    files = find_images(tmp_path)
    with pytest.raises(TypeError):
        files.files["test"] = ()  # type: ignore[index]
    with pytest.raises(ValueError, match="read-only"):
        files.labels["train"][0] = 1
    assert "class-folders" in repr(files)


# --- errors --------------------------------------------------------------------------


def test_unknown_layout_lists_what_was_found_and_the_layouts(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "images" / "a.jpeg")
    (tmp_path / "labels.csv").write_text("a.jpeg,1\n")
    with pytest.raises(DatasetLayoutError) as caught:
        find_images(tmp_path)
    message = str(caught.value)
    assert "images/" in message
    assert "labels.csv" in message
    for name in LAYOUTS:
        assert name in message
    assert isinstance(caught.value, ValueError)


def test_empty_folder_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="empty"):
        find_images(tmp_path)
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        find_images(tmp_path / "nope")
    (tmp_path / "file.jpeg").write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match="not a folder"):
        find_images(tmp_path / "file.jpeg")


def test_empty_class_folder_is_an_error(tmp_path: Path) -> None:
    write_classes(tmp_path, pneumonia=())
    (tmp_path / "PNEUMONIA").mkdir()
    (tmp_path / "PNEUMONIA" / ".DS_Store").write_bytes(b"\x00")
    (tmp_path / "PNEUMONIA" / "readme.txt").write_text("x")
    with pytest.raises(DatasetLayoutError, match=r"PNEUMONIA.*holds no image files"):
        find_images(tmp_path)


def test_missing_class_folder_is_reported_as_near_miss(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "train" / "NORMAL" / "IM-1-1.jpeg")
    write_jpeg(tmp_path / "test" / "NORMAL" / "IM-2-1.jpeg")
    with pytest.raises(DatasetLayoutError, match=r"train/ has no PNEUMONIA/ class folder"):
        find_images(tmp_path)


def test_test_split_without_train_is_an_error(tmp_path: Path) -> None:
    write_splits(tmp_path, ("test",))
    with pytest.raises(DatasetLayoutError, match=re.escape("has test/ but no train/")):
        find_images(tmp_path)


def test_several_data_sets_under_root_is_an_error(tmp_path: Path) -> None:
    write_splits(tmp_path / "kermany2018-224", ("train",))
    write_classes(tmp_path / "fullres-sample")
    with pytest.raises(DatasetLayoutError, match=r"2 data sets.*fullres-sample.*kermany2018-224"):
        find_images(tmp_path)


# --- patients ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("person1000_bacteria_2931.jpeg", "bacteria-1000"),
        ("person1000_virus_1681.jpeg", "virus-1000"),
        ("person447_virus_921_1.jpeg", "virus-447"),
        ("IM-0115-0001.jpeg", "normal-IM-115"),
        ("IM-0429-0001-0002.jpeg", "normal-IM-429"),
        ("NORMAL2-IM-0395-0001.jpeg", "normal2-IM-395"),
        ("NORMAL2-IM-0395-0001-0002.jpeg", "normal2-IM-395"),
        ("NORMAL-1003233-0001.jpeg", "NORMAL-1003233"),
        ("BACTERIA-1008087-0001.jpeg", "BACTERIA-1008087"),
        ("VIRUS-1002108-0002.jpeg", "VIRUS-1002108"),
        ("/data/train/PNEUMONIA/person3_bacteria_10.JPEG", "bacteria-3"),
        ("scan.jpeg", None),
        ("person12.jpeg", None),
        ("IM-0115.jpeg", None),
        ("COVID-19-1.png", None),
    ],
)
def test_patient_id_schemes(name: str, expected: str | None) -> None:
    assert patient_id(name) == expected
    assert patient_id(Path(name)) == expected


def test_bacteria_and_virus_counters_are_separate_patients() -> None:
    assert patient_id("person12_bacteria_47.jpeg") != patient_id("person12_virus_45.jpeg")
    assert patient_id("person12_bacteria_47.jpeg") == patient_id("person12_bacteria_48.jpeg")
    assert patient_id("IM-0001-0001.jpeg") != patient_id("NORMAL2-IM-0001-0001.jpeg")


def test_patient_groups_without_unknown_names_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        groups = patient_groups(["IM-0001-0001.jpeg", "IM-0001-0002.jpeg", "person1_virus_1.jpeg"])
    assert groups == ("normal-IM-1", "normal-IM-1", "virus-1")


def test_patient_groups_warns_once_with_the_count() -> None:
    paths = [
        "IM-0001-0001.jpeg",
        "a/scan1.jpeg",
        "b/scan1.jpeg",
        "scan2.png",
        "person2_virus_3.jpeg",
    ]
    with pytest.warns(UnparsedPatientWarning, match=r"^3 of 5 file names") as record:
        groups = patient_groups(paths)
    assert len(record) == 1
    assert record[0].filename == __file__  # stacklevel=2 points at the caller
    assert groups[0] == "normal-IM-1"
    assert groups[4] == "virus-2"
    unknown = groups[1:4]
    assert len(set(unknown)) == 3  # one group per file, even for equal file names
    assert issubclass(UnparsedPatientWarning, UserWarning)
