"""Non-regular files are refused before they are opened; every scan accepts the same suffixes."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_pneumonia.data.layouts import find_images
from cxr_pneumonia.exceptions import InvalidImageError
from cxr_pneumonia.images import IMAGE_EXTENSIONS, find_image_files, prepare_image

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")


def _in_thread(function, timeout: float = 10.0):
    """Run ``function`` in a thread; return ``(finished, result or exception)``."""
    box: list[object] = []

    def target() -> None:
        try:
            box.append(function())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), (box[0] if box else None)


def _release(fifo: Path) -> None:
    """Unblock a reader stuck on ``fifo`` (the old behaviour), so no thread hangs."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


def _xray(path: Path, size: int = 32) -> Path:
    pixels = (np.arange(size * size).reshape(size, size) % 251).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def test_a_fifo_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "scan.png"
    os.mkfifo(fifo)
    try:
        finished, outcome = _in_thread(lambda: prepare_image(fifo, size=(32, 32)))
    finally:
        _release(fifo)
    assert finished, "reading a FIFO blocked"
    assert isinstance(outcome, InvalidImageError)
    assert str(fifo) in str(outcome)
    assert "FIFO" in str(outcome)


def test_a_device_is_refused_before_it_is_read(tmp_path: Path) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    finished, outcome = _in_thread(lambda: prepare_image("/dev/zero", size=(32, 32)))
    assert finished
    assert isinstance(outcome, InvalidImageError)
    assert "character device" in str(outcome)


def test_every_decodable_suffix_is_scanned_and_the_rest_named(tmp_path: Path) -> None:
    for suffix in (".jp2", ".j2k", ".jpe", ".jfif", ".pgm", ".tif", ".png"):
        assert suffix in IMAGE_EXTENSIONS
        _xray(tmp_path / f"image{suffix}")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".DS_Store").write_bytes(b"junk")  # hidden: ignored silently
    os.mkfifo(tmp_path / "pipe.jpeg")
    images, skipped = find_image_files(tmp_path)
    assert len(images) == 7
    for path in images:  # what the scan accepts, the decoder reads
        assert prepare_image(path, size=(16, 16)).shape == (16, 16, 1)
    reasons = {path.name: reason for path, reason in skipped}
    assert set(reasons) == {"notes.txt", "pipe.jpeg"}
    assert "not an image suffix" in reasons["notes.txt"]
    assert "FIFO" in reasons["pipe.jpeg"]


def test_find_images_skips_a_fifo_and_logs_the_skipped_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "chest_xray"
    for split in ("train", "test"):
        for name in ("NORMAL", "PNEUMONIA"):
            _xray(root / split / name / f"{name.lower()}-1.jpeg")
    _xray(root / "train" / "NORMAL" / "scan.jp2")
    os.mkfifo(root / "train" / "PNEUMONIA" / "pipe.jpeg")
    (root / "train" / "NORMAL" / "labels.csv").write_text("a,b\n")
    with caplog.at_level(logging.WARNING, logger="cxr_pneumonia"):
        files = find_images(root)
    train = {Path(p).name for p in files.files["train"]}
    assert train == {"normal-1.jpeg", "pneumonia-1.jpeg", "scan.jp2"}
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped 2 file(s)" in message
    assert "pipe.jpeg" in message
    assert "labels.csv" in message
