"""Evaluate a classifier: :func:`evaluate`, :class:`EvaluationReport`, :func:`choose_threshold`.

Conventions used everywhere in this package:

- Labels are ``0`` (NORMAL) and ``1`` (PNEUMONIA); a *score* is the model's
  probability of PNEUMONIA, in ``[0, 1]``.
- A prediction is positive (PNEUMONIA) when ``score >= threshold``. The same
  ``>=`` is used by :func:`evaluate`, :meth:`EvaluationReport.at_threshold` and
  :func:`choose_threshold`, so the threshold :func:`choose_threshold` returns
  really gives the promised sensitivity on the scores it was chosen on.
- Sensitivity is the recall of PNEUMONIA, specificity the recall of NORMAL.

Where to look: :mod:`~cxr_pneumonia.evaluation.scoring` (:func:`evaluate`: run
the model over data), :mod:`~cxr_pneumonia.evaluation.report`
(:class:`EvaluationReport`), :mod:`~cxr_pneumonia.evaluation.thresholds`
(:func:`choose_threshold`), :mod:`~cxr_pneumonia.evaluation.calibration`
(:func:`calibration_bins`, ECE) and :mod:`~cxr_pneumonia.evaluation.inputs`
(the checks they share). This file only re-exports.
"""

from cxr_pneumonia.evaluation.calibration import ECE_BINS, calibration_bins
from cxr_pneumonia.evaluation.report import EvaluationReport
from cxr_pneumonia.evaluation.scoring import EvaluationData, evaluate
from cxr_pneumonia.evaluation.thresholds import DEFAULT_TARGET_SENSITIVITY, choose_threshold

__all__ = [
    "DEFAULT_TARGET_SENSITIVITY",
    "ECE_BINS",
    "EvaluationData",
    "EvaluationReport",
    "calibration_bins",
    "choose_threshold",
    "evaluate",
]
