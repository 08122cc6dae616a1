"""The decoded-image cache is checked against a checksum written with it; rebuilt on mismatch."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_pneumonia.data.pipeline import decode_cached
from cxr_pneumonia.images import prepare_image

SIZE = (16, 16)


def _files(folder: Path, count: int = 4) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        pixels = (np.arange(24 * 24).reshape(24, 24) * (i + 1) % 251).astype(np.uint8)
        path = folder / f"img-{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _decode(files: list[Path], cache: Path) -> np.ndarray:
    images, _ = decode_cached(
        files, image_size=SIZE, color_mode="grayscale", cache_dir=cache, key="k", progress=False
    )
    return np.array(images)


def _cache_file(cache: Path) -> Path:
    (path,) = [p for p in cache.glob("*.npy") if not p.name.endswith(".kept.npy")]
    return path


def test_a_cache_altered_in_place_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = _files(tmp_path / "img")
    cache = tmp_path / "cache"
    expected = np.stack([prepare_image(f, size=SIZE) for f in files])
    assert np.array_equal(_decode(files, cache), expected)
    assert len(list(cache.glob("*.check.json"))) == 1

    path = _cache_file(cache)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # one pixel of the last image; same size, same name
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="cxr_pneumonia"):
        again = _decode(files, cache)
    assert np.array_equal(again, expected)  # decoded again, not served altered
    assert "does not match its checksum" in caplog.text
    assert np.array_equal(_decode(files, cache), expected)


def test_a_cache_without_its_checksum_record_is_rebuilt(tmp_path: Path) -> None:
    files = _files(tmp_path / "img")
    cache = tmp_path / "cache"
    expected = _decode(files, cache)
    (record,) = cache.glob("*.check.json")
    record.unlink()
    path = _cache_file(cache)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert np.array_equal(_decode(files, cache), expected)
    assert record.is_file()
