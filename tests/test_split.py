"""Tests of the patient-grouped splits (``cxr_pneumonia.data.split``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxr_pneumonia.data.layouts import find_images, patient_groups, patient_id
from cxr_pneumonia.data.split import grouped_kfold, grouped_split


def synthetic_patients(
    n_patients: int = 1200, pneumonia_share: float = 0.74, seed: int = 0
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels and patient ids shaped like the real data: 1 to 5 images per patient."""
    rng = np.random.default_rng(seed)
    labels: list[int] = []
    groups: list[str] = []
    for patient in range(n_patients):
        label = int(rng.random() < pneumonia_share)
        count = int(rng.choice([1, 1, 1, 2, 2, 3, 5]))
        labels.extend([label] * count)
        groups.extend([f"p{patient}"] * count)
    return np.array(labels, dtype=np.int32), tuple(groups)


def assert_disjoint_groups(groups: tuple[str, ...], train: np.ndarray, val: np.ndarray) -> None:
    group_array = np.asarray(groups, dtype=object)
    assert not set(group_array[train]) & set(group_array[val])


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.35])
def test_grouped_split_is_grouped_stratified_and_sized(fraction: float) -> None:
    labels, groups = synthetic_patients()
    train, val = grouped_split(labels, groups, fraction=fraction, seed=0)

    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    assert np.all(np.diff(train) > 0)
    assert np.all(np.diff(val) > 0)
    assert_disjoint_groups(groups, train, val)
    assert abs(len(val) / len(labels) - fraction) < 0.01
    assert abs(labels[val].mean() - labels.mean()) < 0.02
    assert abs(labels[train].mean() - labels.mean()) < 0.02


def test_grouped_split_is_deterministic_per_seed() -> None:
    labels, groups = synthetic_patients()
    first = grouped_split(labels, groups, fraction=0.1, seed=3)
    again = grouped_split(list(labels), list(groups), fraction=0.1, seed=3)
    other = grouped_split(labels, groups, fraction=0.1, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])


def test_grouped_split_fraction_zero_gives_empty_validation() -> None:
    labels, groups = synthetic_patients(50)
    train, val = grouped_split(labels, groups, fraction=0, seed=0)
    assert np.array_equal(train, np.arange(len(labels)))
    assert val.size == 0
    assert val.dtype == np.int64


def test_grouped_split_patient_with_both_classes_stays_on_one_side() -> None:
    labels = np.array([0, 1, 1, 0, 0, 1, 1, 0, 1, 0] * 10)
    groups = tuple(f"g{i // 3}" for i in range(len(labels)))  # groups mix classes
    for seed in range(5):
        train, val = grouped_split(labels, groups, fraction=0.3, seed=seed)
        assert_disjoint_groups(groups, train, val)
        assert 0.2 <= len(val) / len(labels) <= 0.4


@pytest.mark.parametrize("fraction", [-0.1, 1, 1.5, float("nan"), "0.1", True, None])
def test_grouped_split_rejects_bad_fraction(fraction: object) -> None:
    with pytest.raises(ValueError, match=r"fraction=.*\[0, 1\)"):
        grouped_split([0, 1], ["a", "b"], fraction=fraction, seed=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("labels", "groups", "match"),
    [
        ([0, 1, 1], ["a", "b"], "3 items but groups has 2"),
        ([], [], "empty"),
        ([0.5, 1.0], ["a", "b"], "integers"),
        ([[0, 1]], ["a"], "one-dimensional"),
    ],
)
def test_grouped_split_rejects_bad_inputs(labels: object, groups: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        grouped_split(labels, groups, fraction=0.1, seed=0)  # type: ignore[arg-type]


def test_grouped_split_needs_a_group_left_for_training() -> None:
    with pytest.raises(ValueError, match="leaves no group for training"):
        grouped_split([0, 1], ["a", "b"], fraction=0.9, seed=0)


def test_grouped_kfold_covers_every_index_once() -> None:
    labels, groups = synthetic_patients(600)
    folds = grouped_kfold(labels, groups, folds=5, seed=0)
    assert len(folds) == 5
    all_val = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(all_val), np.arange(len(labels)))
    for train, val in folds:
        assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
        assert np.all(np.diff(val) > 0)
        assert_disjoint_groups(groups, train, val)
        assert abs(len(val) / len(labels) - 0.2) < 0.01
        assert abs(labels[val].mean() - labels.mean()) < 0.02


def test_grouped_kfold_is_deterministic_per_seed() -> None:
    labels, groups = synthetic_patients(300)
    first = grouped_kfold(labels, groups, folds=3, seed=1)
    again = grouped_kfold(labels, groups, folds=3, seed=1)
    other = grouped_kfold(labels, groups, folds=3, seed=2)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize(("folds", "match"), [(1, "at least 2"), (2.5, "integer"), (4, "3 groups")])
def test_grouped_kfold_rejects_bad_folds(folds: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        grouped_kfold([0, 1, 1], ["a", "b", "c"], folds=folds, seed=0)  # type: ignore[arg-type]


@pytest.mark.slow
def test_real_training_split_is_grouped_and_stratified(shared_data: Path) -> None:
    files = find_images(shared_data / "kermany2018-224")
    assert files.layout == "train-only"
    assert files.class_counts == {"train": {"NORMAL": 1341, "PNEUMONIA": 3875}}
    paths = files.files["train"]
    labels = files.labels["train"]
    assert [p for p in paths if patient_id(p) is None] == []
    groups = patient_groups(paths)  # would warn (an error here) on any unparsed name

    train, val = grouped_split(labels, groups, fraction=0.1, seed=0)
    assert_disjoint_groups(groups, train, val)
    assert len(train) + len(val) == 5216
    assert abs(len(val) / len(labels) - 0.1) < 0.01
    assert abs(labels[val].mean() - labels.mean()) < 0.02
