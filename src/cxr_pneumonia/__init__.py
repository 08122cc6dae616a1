"""cxr-pneumonia: classify pediatric chest X-rays as NORMAL or PNEUMONIA.

Train, evaluate and deploy Keras classifiers on the data set of Kermany et al.
(2018), Cell 172(5):1122-1131, doi:10.1016/j.cell.2018.02.010.
"""

from cxr_pneumonia._version import __version__
from cxr_pneumonia.exceptions import (
    BundleError,
    CacheError,
    CXRPneumoniaError,
    DatasetLayoutError,
    DownloadError,
    InvalidImageError,
    TrainingError,
    UnknownDatasetError,
    UnknownModelError,
    WeightsUnavailableError,
)
from cxr_pneumonia.images import load_image, prepare_image, resize_image

__all__ = [
    "BundleError",
    "CXRPneumoniaError",
    "CacheError",
    "DatasetLayoutError",
    "DownloadError",
    "InvalidImageError",
    "TrainingError",
    "UnknownDatasetError",
    "UnknownModelError",
    "WeightsUnavailableError",
    "__version__",
    "load_image",
    "prepare_image",
    "resize_image",
]
