"""cxr-pneumonia: classify pediatric chest X-rays as NORMAL or PNEUMONIA.

Train, evaluate and deploy Keras classifiers on the data set of Kermany et al.
(2018), "Identifying medical diagnoses and treatable diseases by image-based
deep learning", Cell 172(5):1122-1131, doi:10.1016/j.cell.2018.02.010.

Every public name is importable from here. Names are loaded on first use, so
``import cxr_pneumonia`` stays fast and does not start TensorFlow until a name
that needs it is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cxr_pneumonia._version import __version__
from cxr_pneumonia.exceptions import (
    BundleError,
    CacheError,
    CXRPneumoniaError,
    DatasetLayoutError,
    DownloadError,
    EnsembleError,
    InvalidImageError,
    OutOfDistributionError,
    OverwriteRefusedError,
    TrainingError,
    UnknownDatasetError,
    UnknownModelError,
    WeightsUnavailableError,
)

if TYPE_CHECKING:
    from cxr_pneumonia.bundle import BundleMetadata, load_bundle, save_model
    from cxr_pneumonia.data import (
        Augmentation,
        DatasetSource,
        DatasetSplits,
        SkippedFilesWarning,
        get_source,
        list_datasets,
        load_dataset,
        register_dataset,
    )
    from cxr_pneumonia.devices import device_info, select_strategy
    from cxr_pneumonia.ensembles import ensemble
    from cxr_pneumonia.evaluation import EvaluationReport, choose_threshold, evaluate
    from cxr_pneumonia.export import export_model
    from cxr_pneumonia.images import load_image, prepare_image, resize_image
    from cxr_pneumonia.models import build_model, list_models
    from cxr_pneumonia.ood import OODCheck, fit_ood_check
    from cxr_pneumonia.predictions_csv import write_predictions_csv
    from cxr_pneumonia.predictor import Explanation, Prediction, Predictor, explain, feature_maps
    from cxr_pneumonia.robustness import ShiftReport, ShiftResult, shift_report
    from cxr_pneumonia.shifts import apply_shift, list_shifts
    from cxr_pneumonia.training import (
        CrossValidationResult,
        EnsembleTrainingResult,
        TrainingResult,
        callbacks,
        cross_validate,
        fit,
        fit_ensemble,
    )

# Public name -> the module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    "Augmentation": "cxr_pneumonia.data",
    "BundleMetadata": "cxr_pneumonia.bundle",
    "CrossValidationResult": "cxr_pneumonia.training",
    "DatasetSource": "cxr_pneumonia.data",
    "DatasetSplits": "cxr_pneumonia.data",
    "EnsembleTrainingResult": "cxr_pneumonia.training",
    "EvaluationReport": "cxr_pneumonia.evaluation",
    "Explanation": "cxr_pneumonia.predictor",
    "OODCheck": "cxr_pneumonia.ood",
    "Prediction": "cxr_pneumonia.predictor",
    "Predictor": "cxr_pneumonia.predictor",
    "ShiftReport": "cxr_pneumonia.robustness",
    "ShiftResult": "cxr_pneumonia.robustness",
    "SkippedFilesWarning": "cxr_pneumonia.data",
    "TrainingResult": "cxr_pneumonia.training",
    "apply_shift": "cxr_pneumonia.shifts",
    "build_model": "cxr_pneumonia.models",
    "callbacks": "cxr_pneumonia.training",
    "choose_threshold": "cxr_pneumonia.evaluation",
    "cross_validate": "cxr_pneumonia.training",
    "device_info": "cxr_pneumonia.devices",
    "ensemble": "cxr_pneumonia.ensembles",
    "evaluate": "cxr_pneumonia.evaluation",
    "explain": "cxr_pneumonia.predictor",
    "export_model": "cxr_pneumonia.export",
    "feature_maps": "cxr_pneumonia.predictor",
    "fit": "cxr_pneumonia.training",
    "fit_ensemble": "cxr_pneumonia.training",
    "fit_ood_check": "cxr_pneumonia.ood",
    "get_source": "cxr_pneumonia.data",
    "list_datasets": "cxr_pneumonia.data",
    "list_models": "cxr_pneumonia.models",
    "list_shifts": "cxr_pneumonia.shifts",
    "load_bundle": "cxr_pneumonia.bundle",
    "load_dataset": "cxr_pneumonia.data",
    "load_image": "cxr_pneumonia.images",
    "prepare_image": "cxr_pneumonia.images",
    "register_dataset": "cxr_pneumonia.data",
    "resize_image": "cxr_pneumonia.images",
    "save_model": "cxr_pneumonia.bundle",
    "select_strategy": "cxr_pneumonia.devices",
    "shift_report": "cxr_pneumonia.robustness",
    "write_predictions_csv": "cxr_pneumonia.predictions_csv",
}

__all__ = [
    "Augmentation",
    "BundleError",
    "BundleMetadata",
    "CXRPneumoniaError",
    "CacheError",
    "CrossValidationResult",
    "DatasetLayoutError",
    "DatasetSource",
    "DatasetSplits",
    "DownloadError",
    "EnsembleError",
    "EnsembleTrainingResult",
    "EvaluationReport",
    "Explanation",
    "InvalidImageError",
    "OODCheck",
    "OutOfDistributionError",
    "OverwriteRefusedError",
    "Prediction",
    "Predictor",
    "ShiftReport",
    "ShiftResult",
    "SkippedFilesWarning",
    "TrainingError",
    "TrainingResult",
    "UnknownDatasetError",
    "UnknownModelError",
    "WeightsUnavailableError",
    "__version__",
    "apply_shift",
    "build_model",
    "callbacks",
    "choose_threshold",
    "cross_validate",
    "device_info",
    "ensemble",
    "evaluate",
    "explain",
    "export_model",
    "feature_maps",
    "fit",
    "fit_ensemble",
    "fit_ood_check",
    "get_source",
    "list_datasets",
    "list_models",
    "list_shifts",
    "load_bundle",
    "load_dataset",
    "load_image",
    "prepare_image",
    "register_dataset",
    "resize_image",
    "save_model",
    "select_strategy",
    "shift_report",
    "write_predictions_csv",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'cxr_pneumonia' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
