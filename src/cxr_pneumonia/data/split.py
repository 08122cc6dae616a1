"""Patient-grouped, class-stratified validation splits and K folds.

Several radiographs of the data set of Kermany et al. (2018) come from one
patient; a split drawn image by image puts the same child on both sides and
inflates validation scores. These functions draw whole groups (patients, see
[`patient_groups`][cxr_pneumonia.data.layouts.patient_groups]) and keep the class
ratios of every part close to those of the whole.

Both work greedily on groups, class by class: a group counts for the majority
label of its images (a patient with images of both classes is rare), the
groups of a class are shuffled with the seed, and each is placed where it
brings the image counts closest to their targets. This hits the requested
fraction to within about one group per class, and takes milliseconds for the
5,216 training files. Only numpy is used.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["grouped_kfold", "grouped_split"]


def grouped_split(
    labels: npt.ArrayLike,
    groups: Sequence[object] | npt.ArrayLike,
    *,
    fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and validation parts, by patient and stratified by class.

    Args:
        labels: Class label of every item (integers), shape ``(n,)``.
        groups: Group (patient) id of every item, ``n`` hashable, sortable values.
        fraction: Share of the items to put in validation, in ``[0, 1)``; ``0``
            gives an empty validation part. The share is met per class, to
            within about one group, and above ``0`` every class gets at least
            one group (however small the data).
        seed: Seed of the random choice of groups; a seed always gives the
            same split.

    Returns:
        ``(train_indices, validation_indices)``, two sorted ``int64`` arrays
        that together hold every index once; no group has items in both.

    Raises:
        ValueError: If ``labels`` and ``groups`` differ in length or are empty,
            ``labels`` are not integers, ``fraction`` is outside ``[0, 1)``, or
            there are too few groups to leave any for training (with a
            fraction above ``0``, a class with a single group is too few).

    Examples:
        >>> train, val = grouped_split([0, 0, 1, 1], ["a", "b", "c", "d"], fraction=0.5, seed=0)
        >>> sorted(map(len, (train, val)))
        [2, 2]
    """
    fraction = _check_fraction(fraction)
    label_index, group_index, n_groups = _prepare(labels, groups)
    n_items = len(label_index)
    if fraction == 0:
        return np.arange(n_items, dtype=np.int64), np.empty(0, dtype=np.int64)
    sizes, majority = _group_summary(label_index, group_index, n_groups)
    class_values = np.unique(np.asarray(labels))
    rng = np.random.default_rng(seed)
    chosen = np.zeros(n_groups, dtype=bool)
    for cls in range(int(majority.max()) + 1):
        members = rng.permutation(np.flatnonzero(majority == cls))
        target = fraction * sizes[members].sum()
        total = 0
        for group in members:
            size = int(sizes[group])
            if abs(total + size - target) < abs(total - target):
                chosen[group] = True
                total += size
        if members.size and not chosen[members].any():
            # A fraction above zero asks for a validation part: every class gets a group.
            if members.size < 2:
                msg = (
                    f"fraction={fraction} takes at least one group of each class for "
                    f"validation, but class {class_values[cls]!r} has only one group, which "
                    "would leave that class no training data; use fraction=0 or supply more "
                    "groups"
                )
                raise ValueError(msg)
            chosen[members[0]] = True
    if chosen.all():
        msg = (
            f"fraction={fraction} leaves no group for training with only {n_groups} "
            "group(s); lower the fraction or supply more groups"
        )
        raise ValueError(msg)
    in_validation = chosen[group_index]
    return np.flatnonzero(~in_validation), np.flatnonzero(in_validation)


def grouped_kfold(
    labels: npt.ArrayLike,
    groups: Sequence[object] | npt.ArrayLike,
    *,
    folds: int,
    seed: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K folds of whole groups, each stratified by class, for cross-validation.

    Args:
        labels: Class label of every item (integers), shape ``(n,)``.
        groups: Group (patient) id of every item.
        folds: Number of folds, at least 2 and at most the number of groups.
        seed: Seed of the random assignment of groups to folds.

    Returns:
        ``folds`` pairs ``(train_indices, validation_indices)`` of sorted
        ``int64`` arrays; every index is in exactly one validation part, and
        no group is split between the two parts of a pair.

    Raises:
        ValueError: If the inputs are invalid (see
            [`grouped_split`][cxr_pneumonia.data.split.grouped_split]) or ``folds`` is not an
            integer in ``[2, number of groups]``.
    """
    label_index, group_index, n_groups = _prepare(labels, groups)
    if isinstance(folds, bool) or not isinstance(folds, numbers.Integral) or folds < 2:
        msg = f"folds={folds!r} must be an integer of at least 2"
        raise ValueError(msg)
    folds = int(folds)
    if folds > n_groups:
        msg = f"folds={folds} is more than the {n_groups} groups; use at most {n_groups} folds"
        raise ValueError(msg)
    sizes, majority = _group_summary(label_index, group_index, n_groups)
    rng = np.random.default_rng(seed)
    fold_of = np.empty(n_groups, dtype=np.int64)
    fold_totals = np.zeros(folds, dtype=np.int64)
    for cls in range(int(majority.max()) + 1):
        members = rng.permutation(np.flatnonzero(majority == cls))
        # Place large groups first (stable, so ties keep the random order).
        members = members[np.argsort(-sizes[members], kind="stable")]
        class_totals = np.zeros(folds, dtype=np.int64)
        fold_order = rng.permutation(folds)  # random tie-break between folds
        for group in members:
            # The fold with the fewest items of this class, then the fewest overall.
            keys = np.lexsort((fold_totals[fold_order], class_totals[fold_order]))
            fold = int(fold_order[keys[0]])
            fold_of[group] = fold
            class_totals[fold] += sizes[group]
            fold_totals[fold] += sizes[group]
    item_fold = fold_of[group_index]
    return [
        (np.flatnonzero(item_fold != fold), np.flatnonzero(item_fold == fold))
        for fold in range(folds)
    ]


def _check_fraction(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        msg = f"fraction={fraction!r} must be a number in [0, 1), e.g. 0.1"
        raise ValueError(msg)
    value = float(fraction)
    if not math.isfinite(value) or not 0 <= value < 1:
        msg = f"fraction={fraction!r} is outside [0, 1); use e.g. 0.1 for 10% validation"
        raise ValueError(msg)
    return value


def _prepare(
    labels: npt.ArrayLike, groups: Sequence[object] | npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, int]:
    """Check the inputs; return class index per item, group index per item, number of groups."""
    label_array = np.asarray(labels)
    group_list = list(groups)  # type: ignore[arg-type]
    if label_array.ndim != 1:
        msg = f"labels must be one-dimensional, got shape {label_array.shape}"
        raise ValueError(msg)
    if len(label_array) != len(group_list):
        msg = f"labels has {len(label_array)} items but groups has {len(group_list)}"
        raise ValueError(msg)
    if len(label_array) == 0:
        msg = "labels and groups are empty; there is nothing to split"
        raise ValueError(msg)
    if not (
        np.issubdtype(label_array.dtype, np.integer) or np.issubdtype(label_array.dtype, np.bool_)
    ):
        msg = f"labels must be integers (e.g. 0 NORMAL, 1 PNEUMONIA), got dtype {label_array.dtype}"
        raise ValueError(msg)
    _, label_index = np.unique(label_array, return_inverse=True)
    try:
        _, group_index = np.unique(np.asarray(group_list, dtype=object), return_inverse=True)
    except TypeError as exc:
        msg = f"groups must be ids of one sortable type (e.g. all str): {exc}"
        raise ValueError(msg) from exc
    group_index = group_index.reshape(-1)
    return label_index.reshape(-1), group_index, int(group_index.max()) + 1


def _group_summary(
    label_index: np.ndarray, group_index: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Size and majority class (ties: the lower class) of every group."""
    n_classes = int(label_index.max()) + 1
    counts = np.zeros((n_groups, n_classes), dtype=np.int64)
    np.add.at(counts, (group_index, label_index), 1)
    return counts.sum(axis=1), counts.argmax(axis=1)
