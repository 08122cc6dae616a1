"""The exceptions raised by cxr-pneumonia.

Every error the library raises on purpose derives from
[`CXRPneumoniaError`][cxr_pneumonia.exceptions.CXRPneumoniaError], and each subclass also inherits
the built-in exception a caller would expect, so ``except ValueError`` keeps working::

    CXRPneumoniaError (Exception)
    ├── UnknownDatasetError (KeyError, ValueError)   unknown dataset name
    ├── DatasetLayoutError (ValueError)              folder layout not recognised
    ├── DownloadError (OSError)                      download, hash or extraction failed
    ├── CacheError (OSError)                         cache folder unusable
    ├── InvalidImageError (ValueError)               an input is not a usable image
    ├── UnknownModelError (KeyError, ValueError)     unknown model name
    ├── WeightsUnavailableError (OSError)            pretrained weights can't be had
    ├── TrainingError (RuntimeError)                 training could not run as asked
    ├── BundleError (ValueError)                     model bundle missing, corrupt or too new
    │   └── OverwriteRefusedError                    overwrite target is not a bundle
    ├── EnsembleError (ValueError)                   models that can't be averaged together
    └── OutOfDistributionError (ValueError)          input is not like the model's training
                                                     images (Predictor(ood="error"))

This module imports nothing else of the package.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "CXRPneumoniaError",
    "CacheError",
    "DatasetLayoutError",
    "DownloadError",
    "EnsembleError",
    "InvalidImageError",
    "OutOfDistributionError",
    "OverwriteRefusedError",
    "TrainingError",
    "UnknownDatasetError",
    "UnknownModelError",
    "WeightsUnavailableError",
]


class CXRPneumoniaError(Exception):
    """Base class of every error raised on purpose by cxr-pneumonia."""


class _MessageKeyError(KeyError):
    """A ``KeyError`` whose ``str()`` is the message itself, not its ``repr``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownDatasetError(CXRPneumoniaError, _MessageKeyError, ValueError):
    """A dataset name is not in the registry (see ``list_datasets()``)."""


class DatasetLayoutError(CXRPneumoniaError, ValueError):
    """A data folder does not match any of the accepted layouts."""


class DownloadError(CXRPneumoniaError, OSError):
    """A download failed, its hash did not match, or its archive was unsafe."""


class CacheError(CXRPneumoniaError, OSError):
    """The cache folder can't be created, written or read."""


class InvalidImageError(CXRPneumoniaError, ValueError):
    """An input is empty, truncated, not an image, unsupported, or too large."""


class UnknownModelError(CXRPneumoniaError, _MessageKeyError, ValueError):
    """A model name is not in the registry (see ``list_models()``)."""


class WeightsUnavailableError(CXRPneumoniaError, OSError):
    """Pretrained weights were asked for but can't be downloaded or found."""


class TrainingError(CXRPneumoniaError, RuntimeError):
    """Training can't run as asked (bad options, no data, diverged)."""


class BundleError(CXRPneumoniaError, ValueError):
    """A model bundle is missing, corrupt, tampered with, or from a newer format."""


class EnsembleError(CXRPneumoniaError, ValueError):
    """Models can't be combined: their input size, color mode, class names or outputs differ."""


class OverwriteRefusedError(BundleError):
    """``overwrite=True`` was asked for a path that is not a model bundle; nothing was touched."""


class OutOfDistributionError(CXRPneumoniaError, ValueError):
    """An input does not look like the model's training images (not a chest X-ray).

    Raised by a [`Predictor`][cxr_pneumonia.predictor.Predictor] created with ``ood="error"``;
    the message names the input and gives its score and the threshold.
    """
