"""Choosing the decision threshold: the highest one that keeps a target sensitivity.

A prediction is positive (PNEUMONIA) when ``score >= threshold``, as everywhere
in `cxr_pneumonia.evaluation`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from cxr_pneumonia.evaluation.inputs import as_labels_and_scores

__all__ = ["DEFAULT_TARGET_SENSITIVITY", "choose_threshold"]

DEFAULT_TARGET_SENSITIVITY = 0.97
"""Default target of [`choose_threshold`][cxr_pneumonia.evaluation.thresholds.choose_threshold]:
missing a sick child is the costly error."""


def choose_threshold(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    *,
    target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
) -> float:
    """Return the highest threshold that keeps sensitivity at or above a target.

    A prediction is positive when ``score >= threshold``. Among all thresholds
    whose sensitivity (recall of PNEUMONIA) on these scores is at least
    ``target_sensitivity``, the highest is returned, which is the one with the
    best specificity. It is always one of the positives' scores: the
    ``k``-th highest, where ``k`` is the fewest positives whose share reaches the
    target. Ties are safe: positives tied at the returned score are all
    predicted positive, so the sensitivity may exceed the target, never fall
    short of it.

    The notebooks chose recall as the metric that matters: missing a sick child
    is the costly error. Choose the threshold on a validation split and report
    it on the test split; on the scores it was chosen on it is optimistic.

    Args:
        labels: True labels, 0 (NORMAL) or 1 (PNEUMONIA).
        scores: Predicted probabilities (or any scores where higher means more
            likely PNEUMONIA), aligned with ``labels``.
        target_sensitivity: The minimum sensitivity, in ``(0, 1]``.

    Returns:
        The threshold, a float.

    Raises:
        ValueError: If ``labels`` and ``scores`` differ in length, are empty or
            not 1-D, a label is not 0 or 1, a score is not finite, the target
            is not in ``(0, 1]``, or there is no positive example.

    Examples:
        >>> choose_threshold([0, 1, 1, 1, 1], [0.1, 0.2, 0.6, 0.8, 0.9], target_sensitivity=0.75)
        0.6
    """
    target = float(target_sensitivity)
    if not 0.0 < target <= 1.0:
        msg = f"target_sensitivity must be in (0, 1]; got {target_sensitivity!r}"
        raise ValueError(msg)
    y, s = as_labels_and_scores(labels, scores)
    n_positive = int(np.count_nonzero(y == 1))
    if n_positive == 0:
        msg = (
            f"no positive (PNEUMONIA, label 1) example among {len(y)}; sensitivity is "
            "undefined, so no threshold can be chosen. Use data that contains both classes."
        )
        raise ValueError(msg)
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import roc_curve

    # Every distinct score is a candidate (drop_intermediate=False), highest first,
    # with its sensitivity tp / P counted with the same ">=" as the report; the first
    # one that reaches the target is the highest such threshold.
    with warnings.catch_warnings():
        # Without a negative example the false-positive rate is undefined; unused here.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        _, sensitivity, thresholds = roc_curve(y, s, drop_intermediate=False)
    reached = np.flatnonzero(sensitivity >= target)
    return float(thresholds[reached[0]])
