"""Training: :func:`fit`, the callbacks, and :func:`cross_validate`."""

from cxr_pneumonia.training import callbacks
from cxr_pneumonia.training.crossval import CrossValidationResult, cross_validate
from cxr_pneumonia.training.fit import TrainingResult, fit

__all__ = ["CrossValidationResult", "TrainingResult", "callbacks", "cross_validate", "fit"]
