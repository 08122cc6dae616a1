"""Shared fixtures: tiny generated X-ray-like images and the optional real data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``slow`` cleanly when ``../shared/data`` is absent."""
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real data not found at {SHARED_DATA}")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (``../shared/data``); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def synthetic_xray(label: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """A ``uint8`` (size, size) image whose class is learnable.

    NORMAL (0) images are dark with a bright ring; PNEUMONIA (1) ones have a
    bright blob in one lung field. Noise differs with ``seed``.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = 60 + 40 * np.exp(-(((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.08))
    if label:
        cx = 0.3 if seed % 2 else 0.7
        image += 120 * np.exp(-(((xx - cx) ** 2 + (yy - 0.55) ** 2) / 0.02))
    image += rng.normal(0, 8, size=(size, size))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def make_xray():
    """Factory fixture: ``make_xray(label, size=32, seed=0)`` -> uint8 (H, W) array."""
    return synthetic_xray
