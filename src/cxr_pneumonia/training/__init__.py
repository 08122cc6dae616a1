"""Training: [`fit`][cxr_pneumonia.training.fitting.fit], the callbacks,
[`cross_validate`][cxr_pneumonia.training.crossval.cross_validate] and
[`fit_ensemble`][cxr_pneumonia.training.ensembling.fit_ensemble]."""

from cxr_pneumonia.training import callbacks
from cxr_pneumonia.training.crossval import CrossValidationResult, cross_validate
from cxr_pneumonia.training.ensembling import EnsembleTrainingResult, fit_ensemble
from cxr_pneumonia.training.fitting import fit
from cxr_pneumonia.training.result import TrainingResult

__all__ = [
    "CrossValidationResult",
    "EnsembleTrainingResult",
    "TrainingResult",
    "callbacks",
    "cross_validate",
    "fit",
    "fit_ensemble",
]
