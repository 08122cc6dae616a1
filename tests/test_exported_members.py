"""The public surface: ``cxr_pneumonia.__all__`` is sorted, complete and importable."""

from __future__ import annotations

import subprocess
import sys

import pytest

import cxr_pneumonia


def test_all_is_sorted_and_unique() -> None:
    assert list(cxr_pneumonia.__all__) == sorted(set(cxr_pneumonia.__all__))


@pytest.mark.parametrize("name", cxr_pneumonia.__all__)
def test_every_public_name_resolves_to_its_defining_module(name: str) -> None:
    value = getattr(cxr_pneumonia, name)
    if name == "__version__":
        assert isinstance(value, str)
        return
    module = getattr(value, "__module__", None) or getattr(value, "__name__", "")
    assert module.startswith("cxr_pneumonia"), f"{name} comes from {module}"


def test_lazy_names_are_all_public() -> None:
    assert set(cxr_pneumonia._LAZY) <= set(cxr_pneumonia.__all__)


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        cxr_pneumonia.no_such_name  # noqa: B018


def test_dir_lists_every_public_name() -> None:
    assert set(cxr_pneumonia.__all__) <= set(dir(cxr_pneumonia))


def test_import_is_light() -> None:
    """Importing the package starts neither TensorFlow nor matplotlib."""
    code = (
        "import sys, cxr_pneumonia; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
