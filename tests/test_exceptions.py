"""The exception tree: one base, and each class also the built-in a caller expects."""

from __future__ import annotations

import pickle

import pytest

from cxr_pneumonia import exceptions
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

EXPECTED_BUILTINS = {
    UnknownDatasetError: (KeyError, ValueError),
    DatasetLayoutError: (ValueError,),
    DownloadError: (OSError,),
    CacheError: (OSError,),
    InvalidImageError: (ValueError,),
    UnknownModelError: (KeyError, ValueError),
    WeightsUnavailableError: (OSError,),
    TrainingError: (RuntimeError,),
    BundleError: (ValueError,),
    OutOfDistributionError: (ValueError,),
    EnsembleError: (ValueError,),
    OverwriteRefusedError: (BundleError, ValueError),
}


def test_all_lists_every_exception_class_sorted() -> None:
    classes = {
        name
        for name, value in vars(exceptions).items()
        if isinstance(value, type) and issubclass(value, Exception) and not name.startswith("_")
    }
    assert set(exceptions.__all__) == classes
    assert list(exceptions.__all__) == sorted(exceptions.__all__)
    assert {cls.__name__ for cls in EXPECTED_BUILTINS} | {"CXRPneumoniaError"} == classes


def test_base_is_a_plain_exception() -> None:
    assert issubclass(CXRPneumoniaError, Exception)
    assert not issubclass(CXRPneumoniaError, (ValueError, OSError, KeyError, RuntimeError))


@pytest.mark.parametrize(("cls", "builtins"), EXPECTED_BUILTINS.items())
def test_each_class_is_the_base_and_its_builtins(
    cls: type[Exception], builtins: tuple[type[Exception], ...]
) -> None:
    assert issubclass(cls, CXRPneumoniaError)
    for builtin in builtins:
        assert issubclass(cls, builtin)
    error = cls("something went wrong")
    with pytest.raises(CXRPneumoniaError):
        raise error
    for builtin in builtins:
        with pytest.raises(builtin):
            raise error


@pytest.mark.parametrize("cls", list(EXPECTED_BUILTINS))
def test_each_class_has_a_docstring(cls: type[Exception]) -> None:
    assert cls.__doc__
    assert cls.__doc__.strip()


@pytest.mark.parametrize("cls", [UnknownDatasetError, UnknownModelError])
def test_key_errors_have_a_readable_message(cls: type[Exception]) -> None:
    message = "unknown model 'resnet5'; choose one of: cnn, resnet50"
    error = cls(message)
    # A bare KeyError would show repr(): quotes and escaped apostrophes.
    assert str(error) == message
    assert str(cls()) == ""
    with pytest.raises(KeyError, match="resnet5"):
        raise error


@pytest.mark.parametrize("cls", list(EXPECTED_BUILTINS))
def test_errors_pickle_round_trip(cls: type[Exception]) -> None:
    # Errors cross process boundaries (parallel decoding, multiprocessing pools).
    error = cls("a message")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == "a message"
