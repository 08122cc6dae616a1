"""Evaluate a classifier: [`evaluate`][cxr_pneumonia.evaluation.scoring.evaluate],
[`EvaluationReport`][cxr_pneumonia.evaluation.report.EvaluationReport],
[`choose_threshold`][cxr_pneumonia.evaluation.thresholds.choose_threshold].

Conventions used everywhere in this package:

- Labels are ``0`` (NORMAL) and ``1`` (PNEUMONIA); a *score* is the model's
  probability of PNEUMONIA, in ``[0, 1]``.
- A prediction is positive (PNEUMONIA) when ``score >= threshold``. The same
  ``>=`` is used by [`evaluate`][cxr_pneumonia.evaluation.scoring.evaluate],
  [`EvaluationReport.at_threshold`][cxr_pneumonia.evaluation.report.EvaluationReport.at_threshold]
  and [`choose_threshold`][cxr_pneumonia.evaluation.thresholds.choose_threshold], so the threshold
  [`choose_threshold`][cxr_pneumonia.evaluation.thresholds.choose_threshold] returns really gives
  the promised sensitivity on the scores it was chosen on.
- Sensitivity is the recall of PNEUMONIA, specificity the recall of NORMAL.

Where to look: `cxr_pneumonia.evaluation.scoring`
([`evaluate`][cxr_pneumonia.evaluation.scoring.evaluate]: run the model over data),
`cxr_pneumonia.evaluation.report`
([`EvaluationReport`][cxr_pneumonia.evaluation.report.EvaluationReport]),
`cxr_pneumonia.evaluation.thresholds`
([`choose_threshold`][cxr_pneumonia.evaluation.thresholds.choose_threshold]),
`cxr_pneumonia.evaluation.calibration`
([`calibration_bins`][cxr_pneumonia.evaluation.calibration.calibration_bins], ECE) and
`cxr_pneumonia.evaluation.inputs` (the checks they share). This file only re-exports.
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
