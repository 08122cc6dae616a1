"""Checks of ``(labels, scores)`` and thresholds shared by the report, thresholds and calibration.

Labels are ``0`` (NORMAL) and ``1`` (PNEUMONIA); a *score* is the model's
probability of PNEUMONIA.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_labels_and_scores", "check_probabilities", "check_threshold"]


def as_labels_and_scores(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert ``labels`` and ``scores`` to 1-D ``int64`` and ``float64`` arrays."""
    labels_array = np.asarray(labels)
    scores_array = np.asarray(scores, dtype=np.float64)
    if labels_array.ndim != 1 or scores_array.ndim != 1:
        msg = (
            f"labels and scores must be 1-D; got shapes {labels_array.shape} and "
            f"{scores_array.shape}"
        )
        raise ValueError(msg)
    if len(labels_array) != len(scores_array):
        msg = (
            f"labels and scores must have the same length; got {len(labels_array)} labels "
            f"and {len(scores_array)} scores"
        )
        raise ValueError(msg)
    if len(labels_array) == 0:
        msg = "labels and scores are empty; at least one example is needed"
        raise ValueError(msg)
    if labels_array.dtype == bool:
        labels_array = labels_array.astype(np.int64)
    valid = np.isin(labels_array, (0, 1))
    if not np.all(valid):
        bad = sorted({repr(v) for v in labels_array[~valid].tolist()})[:5]
        msg = f"labels must be 0 (NORMAL) or 1 (PNEUMONIA); got {', '.join(bad)}"
        raise ValueError(msg)
    if not np.all(np.isfinite(scores_array)):
        count = int(np.count_nonzero(~np.isfinite(scores_array)))
        msg = f"scores must be finite; {count} of {len(scores_array)} are NaN or infinite"
        raise ValueError(msg)
    return labels_array.astype(np.int64), scores_array


def check_probabilities(scores: np.ndarray) -> None:
    low, high = float(scores.min()), float(scores.max())
    if low < 0.0 or high > 1.0:
        msg = (
            f"scores must be probabilities in [0, 1]; got values from {low:g} to {high:g}. "
            "Does the model end with a sigmoid (or softmax) activation?"
        )
        raise ValueError(msg)


def check_threshold(threshold: float) -> float:
    value = float(threshold)
    if not 0.0 <= value <= 1.0:
        msg = f"threshold must be in [0, 1]; got {threshold!r}"
        raise ValueError(msg)
    return value
