"""Calibration: reliability-diagram bins and the expected calibration error (ECE)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxr_pneumonia.evaluation.inputs import as_labels_and_scores, check_probabilities

__all__ = ["ECE_BINS", "calibration_bins", "expected_calibration_error"]

ECE_BINS = 15
"""Number of equal-width probability bins of the expected calibration error."""


def calibration_bins(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    *,
    n_bins: int = ECE_BINS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group scores into equal-width probability bins, as a reliability diagram does.

    Bin ``b`` holds the scores in ``[b / n_bins, (b + 1) / n_bins)``; the last
    bin also holds ``1.0``.

    Args:
        labels: True labels, 0 or 1.
        scores: Predicted probabilities of PNEUMONIA, in ``[0, 1]``.
        n_bins: Number of bins.

    Returns:
        ``(mean_score, fraction_positive, count)``, three arrays of length
        ``n_bins``; the first two are NaN for empty bins.

    Raises:
        ValueError: If the inputs are malformed, the scores are not in
            ``[0, 1]`` or ``n_bins < 1``.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        msg = f"n_bins must be a positive integer; got {n_bins!r}"
        raise ValueError(msg)
    y, s = as_labels_and_scores(labels, scores)
    check_probabilities(s)
    index = np.minimum((s * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    score_sum = np.bincount(index, weights=s, minlength=n_bins)
    positive_sum = np.bincount(index, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.where(count > 0, score_sum / count, np.nan)
        fraction_positive = np.where(count > 0, positive_sum / count, np.nan)
    return mean_score, fraction_positive, count


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, n_bins: int) -> float:
    mean_score, fraction_positive, count = calibration_bins(labels, scores, n_bins=n_bins)
    filled = count > 0
    gaps = np.abs(fraction_positive[filled] - mean_score[filled])
    return float(np.sum(count[filled] * gaps) / len(labels))
