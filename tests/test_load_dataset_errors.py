"""load_dataset: a class lost to decoding raises; a small set still gets a validation split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_pneumonia.data import load_dataset
from cxr_pneumonia.exceptions import DatasetLayoutError


def _image(path: Path, label: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = (210 if label else 40) + rng.integers(-12, 12, size=(20, 18))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


def _tree(root: Path, *, normal: int, pneumonia: int) -> Path:
    """Class folders, one image per patient."""
    for p in range(normal):
        _image(root / "NORMAL" / f"IM-{p:04d}-0001.jpeg", 0, p)
    for p in range(pneumonia):
        _image(root / "PNEUMONIA" / f"person{p}_bacteria_1.jpeg", 1, 100 + p)
    return root


def _load(root: Path, cache: Path, **options):
    return load_dataset(
        data_dir=root, cache_dir=cache, image_size=(16, 16), batch_size=4, progress=False, **options
    )


def test_a_class_whose_every_file_fails_to_decode_raises(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", normal=4, pneumonia=3)
    for path in (root / "PNEUMONIA").iterdir():
        path.write_bytes(b"not a jpeg at all")
    with pytest.raises(
        DatasetLayoutError, match=r"none of the 3 PNEUMONIA file\(s\) of the train split"
    ):
        _load(root, tmp_path / "cache", validation_fraction=0.0)


def test_a_small_set_still_gets_one_validation_patient_per_class(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", normal=5, pneumonia=4)  # 9 patients
    splits = _load(root, tmp_path / "cache", validation_fraction=0.1)
    assert splits.validation is not None
    assert sorted(set(splits.labels["validation"].tolist())) == [0, 1]
    assert set(splits.patients["train"]).isdisjoint(splits.patients["validation"])
    assert sorted(set(splits.labels["train"].tolist())) == [0, 1]


def test_a_class_of_one_patient_cant_give_a_validation_patient(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", normal=4, pneumonia=1)
    with pytest.raises(DatasetLayoutError, match=r"validation_fraction=0.1.*only one group"):
        _load(root, tmp_path / "cache", validation_fraction=0.1)
    splits = _load(root, tmp_path / "cache", validation_fraction=0.0)
    assert splits.validation is None
