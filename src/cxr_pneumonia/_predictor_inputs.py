"""What a Predictor does with its inputs before the model sees them.

`as_items` tells one input from a batch, `decoded_batches` names every input
(its path, or its index and kind) and decodes it through the same
[`prepare_image`][cxr_pneumonia.images.prepare_image] as training
(`decode_input`), in a thread pool up to two batches ahead of inference;
`rereadable` gives an input that can be decoded twice (the explanation's
original and its model-sized copy), and `check_arrays` checks pixels already
prepared.

Part of the Predictor: [`cxr_pneumonia.predictor`][cxr_pneumonia.predictor]
is the public entry point and calls these functions; this module does not
import it (predictor -> _predictor_inputs).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from cxr_pneumonia.exceptions import InvalidImageError
from cxr_pneumonia.images import ImageInput, prepare_image

__all__ = [
    "Decoded",
    "as_items",
    "check_arrays",
    "decode_input",
    "decoded_batches",
    "rereadable",
]

Decoded = tuple[list[str | int], list[np.ndarray | InvalidImageError]]
"""One batch as `decoded_batches` yields it: the sources, then each image or its error."""

_SINGLE_TYPES = (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)


def as_items(x: Any) -> tuple[bool, list[Any]]:
    """Return ``(is_single, items)``."""
    if isinstance(x, np.ndarray):
        return (False, list(x)) if x.ndim == 4 else (True, [x])
    if isinstance(x, _SINGLE_TYPES) or callable(getattr(x, "read", None)):
        return True, [x]
    if isinstance(x, Iterable):
        return False, list(x)
    return True, [x]  # prepare_image will name the unsupported type


def decode_input(
    item: ImageInput,
    name: str | None,
    *,
    size: tuple[int, int],
    color_mode: str,
    max_pixels: int | None,
) -> np.ndarray:
    """Decode and resize one input exactly as training does."""
    try:
        return prepare_image(
            item,
            size=size,
            color_mode=color_mode,
            max_pixels=max_pixels,
            name=name,
        )
    except InvalidImageError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # never another exception type for a bad image
        label = name if name is not None else f"<{type(item).__name__}>"
        msg = f"{label}: cannot be decoded ({type(exc).__name__}: {exc})"
        raise InvalidImageError(msg) from exc


def decoded_batches(
    items: Sequence[Any],
    *,
    single: bool,
    decode: Callable[[Any, str | None], np.ndarray],
    batch_size: int,
    num_workers: int,
    pool: Callable[[], ThreadPoolExecutor],
) -> Iterator[Decoded]:
    """Yield ``(sources, decoded)`` per batch; decoding runs ahead in threads.

    ``decode(item, name)`` is the Predictor's decoding of one input; ``pool()``
    gives its thread pool, asked for only when several inputs decode in threads.
    """
    sources = [_source(item, i) for i, item in enumerate(items)]
    names = [
        s if isinstance(s, str) else (None if single else f"input {s} ({_kind(items[s])})")
        for s in sources
    ]

    def decode_one(i: int) -> np.ndarray | InvalidImageError:
        try:
            return decode(items[i], names[i])
        except InvalidImageError as exc:
            return exc

    if len(items) <= 1 or num_workers == 1:
        for start in range(0, len(items), batch_size):
            stop = min(start + batch_size, len(items))
            yield sources[start:stop], [decode_one(i) for i in range(start, stop)]
        return
    yield from _windowed(pool(), decode_one, len(items), batch_size, sources)


def _windowed(
    pool: ThreadPoolExecutor,
    decode: Callable[[int], np.ndarray | InvalidImageError],
    count: int,
    batch_size: int,
    sources: list[str | int],
) -> Iterator[Decoded]:
    """Decode ``count`` items in ``pool``, at most two batches ahead of inference."""
    window = 2 * batch_size
    pending: collections.deque[Future[np.ndarray | InvalidImageError]] = collections.deque()
    submitted = 0
    try:
        for start in range(0, count, batch_size):
            stop = min(start + batch_size, count)
            while submitted < min(count, stop + window):
                pending.append(pool.submit(decode, submitted))
                submitted += 1
            yield sources[start:stop], [pending.popleft().result() for _ in range(start, stop)]
    finally:
        for future in pending:
            future.cancel()


def _source(item: Any, index: int) -> str | int:
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return index


def _kind(item: Any) -> str:
    if isinstance(item, np.ndarray):
        return f"array {item.dtype} {item.shape}"
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"{len(item)} bytes"
    if isinstance(item, Image.Image):
        return "PIL image"
    name = getattr(item, "name", None)
    return f"file {name}" if isinstance(name, str) else type(item).__name__


def rereadable(x: ImageInput) -> tuple[Any, str | None]:
    """Return an input that can be decoded twice, and its path if it is one."""
    if isinstance(x, (str, os.PathLike)):
        return x, os.fspath(x)
    if not isinstance(x, (bytes, bytearray, memoryview, Image.Image, np.ndarray)):
        read = getattr(x, "read", None)
        if callable(read):
            data = read()
            # Text or odd file objects: let prepare_image name the problem.
            return (data, None) if isinstance(data, (bytes, bytearray, memoryview)) else (x, None)
    return x, None


def check_arrays(images: np.ndarray, expected: tuple[int, ...], caller: str) -> np.ndarray:
    """``images`` as an array, if it is ``uint8`` ``(N, *expected)``; else ValueError."""
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1:] != expected:
        msg = (
            f"{caller} expects uint8 images (N, {', '.join(map(str, expected))}), "
            f"got {array.dtype} {array.shape}; use predict() for images of other sizes or kinds"
        )
        raise ValueError(msg)
    return array
