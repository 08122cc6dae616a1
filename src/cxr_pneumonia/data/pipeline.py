"""The fast input pipeline: decode once into an on-disk cache, then serve ``tf.data`` batches.

Decoding ~1,000 x 1,300 JPEGs every epoch is what makes the reference notebooks
slow. Here every file is decoded and resized once, in parallel, through
[`cxr_pneumonia.images.prepare_image`][cxr_pneumonia.images.prepare_image] (the same function
inference uses), and the ``uint8`` pixels are stored as one ``.npy`` file in the cache folder. Later
epochs and later runs memory-map that file; no image file is read again.

* [`decode_cached`][cxr_pneumonia.data.pipeline.decode_cached] builds or reuses the cache and
  reports which files could not be decoded (they are skipped, with one warning, never mislabeled).
* [`make_dataset`][cxr_pneumonia.data.pipeline.make_dataset] turns the cached pixels and their
  labels into a batched ``tf.data.Dataset`` of ``(uint8 images, int32 labels)``, shuffled per epoch
  and optionally augmented on the fly.
* [`Augmentation`][cxr_pneumonia.data.augment.Augmentation] (defined in
  `cxr_pneumonia.data.augment`, re-exported here) holds the ranges of the
  random augmentation, applied per batch. Shuffling and augmentation draw with
  stateless ops keyed by ``(seed, epoch, batch)`` (see ``_keyed_epochs``): the
  same seed gives the same batches in any process, whatever TensorFlow's global
  seed, and every epoch gets a fresh order and fresh random parameters.

TensorFlow is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import tempfile
import warnings
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxr_pneumonia._files import fsync_dir, fsync_file
from cxr_pneumonia.data.augment import Augmentation, augment_batch
from cxr_pneumonia.exceptions import CacheError, InvalidImageError
from cxr_pneumonia.images import channels_for, check_color_mode, check_image_size, prepare_image

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "CACHE_FORMAT_VERSION",
    "Augmentation",
    "SkippedFilesWarning",
    "check_augment",
    "decode_cached",
    "decode_cached_with_skipped",
    "make_dataset",
    "skipped_message",
]

logger = logging.getLogger("cxr_pneumonia")

CACHE_FORMAT_VERSION = 1
"""Version of the on-disk cache; bump it whenever decoded pixels would change."""

_CHECK_CHUNK = 1 << 22
"""Bytes read at a time when checksumming a cache file."""

_SHOWN_NAMES = 5
"""How many skipped file names a warning lists."""


class SkippedFilesWarning(UserWarning):
    """Some image files could not be decoded and were left out, with their labels."""


# --- the tf.data pipeline ------------------------------------------------------------


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray | Sequence[int],
    *,
    batch_size: int,
    shuffle: bool,
    augment: Augmentation | bool,
    seed: int,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batch cached pixels and labels into a fast ``tf.data`` pipeline.

    The pipeline walks *indices* (shuffled per epoch when asked), gathers each
    batch from ``images`` (a memory map of the cache is fine: it is not copied
    into the graph), augments it when asked, and prefetches. The same ``seed``
    gives the same sequence of batches, in any process and whatever
    TensorFlow's global seed (the order and augmentation of epoch ``e`` are
    drawn with stateless ops keyed by ``(seed, e)``, where ``e`` counts the
    passes started over this dataset); every epoch is shuffled and augmented
    anew.

    Args:
        images: ``uint8`` array ``(N, H, W, C)``, e.g. from
            [`decode_cached`][cxr_pneumonia.data.pipeline.decode_cached].
        labels: ``N`` integer labels aligned with ``images``.
        batch_size: Images per batch (> 0).
        shuffle: Reshuffle the order every epoch.
        augment: An [`Augmentation`][cxr_pneumonia.data.augment.Augmentation], ``True`` for the
            default ranges or ``False`` for none.
        seed: Seed of the shuffling and the augmentation.
        drop_remainder: Drop the last, smaller batch.

    Returns:
        A dataset of ``(images, labels)``: ``uint8`` ``(batch, H, W, C)`` and
        ``int32`` ``(batch,)``.

    Raises:
        ValueError: If the arrays are not aligned ``uint8`` images and labels,
            or ``batch_size`` is not positive.
    """
    import tensorflow as tf

    aug = check_augment(augment)
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size <= 0
    ):
        msg = f"batch_size={batch_size!r} must be a positive integer"
        raise ValueError(msg)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        got = (
            f"{images.dtype} {images.shape}"
            if isinstance(images, np.ndarray)
            else type(images).__name__
        )
        msg = f"images must be a uint8 array (N, H, W, C), got {got}"
        raise ValueError(msg)
    label_array = np.asarray(labels)
    if label_array.ndim != 1 or label_array.shape[0] != images.shape[0]:
        msg = (
            f"labels must be a 1-D array of {images.shape[0]} labels (one per image), "
            f"got shape {label_array.shape}"
        )
        raise ValueError(msg)
    if label_array.size and not np.issubdtype(label_array.dtype, np.integer):
        msg = f"labels must be integers, got {label_array.dtype}"
        raise ValueError(msg)
    label_array = label_array.astype(np.int32)
    count, height, width, channels = images.shape

    def gather(index: np.ndarray) -> np.ndarray:
        # Sorted reads are kinder to a memory map; the batch is then put back in order.
        order = np.argsort(index, kind="stable")
        out = np.empty((index.shape[0], height, width, channels), dtype=np.uint8)
        out[order] = images[index[order]]
        return out

    label_tensor = tf.constant(label_array, dtype=tf.int32)
    static_shape = (batch_size if drop_remainder else None, height, width, channels)

    def load(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        batch = tf.numpy_function(gather, [index], tf.uint8, stateful=False)
        batch = tf.ensure_shape(batch, static_shape)
        return batch, tf.gather(label_tensor, index)

    aug = aug if aug is not None and aug.enabled else None
    batches = count // batch_size if drop_remainder else -(-count // batch_size)
    if not ((shuffle and count > 1) or aug is not None):
        dataset = tf.data.Dataset.range(count).batch(batch_size, drop_remainder=drop_remainder)
        dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset.prefetch(tf.data.AUTOTUNE)
    dataset = _keyed_epochs(count, batch_size, drop_remainder, shuffle=shuffle, seed=seed)
    if aug is not None:

        def load_augmented(index: tf.Tensor, key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            batch, batch_labels = load(index)
            return tf.ensure_shape(augment_batch(batch, key, aug), static_shape), batch_labels

        dataset = dataset.map(
            load_augmented, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    else:
        dataset = dataset.map(
            lambda index, _key: load(index), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(batches))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _keyed_epochs(
    count: int, batch_size: int, drop_remainder: bool, *, shuffle: bool, seed: int
) -> tf.data.Dataset:
    """Batches of indices with a random key per batch, both keyed by ``(seed, epoch, batch)``.

    How randomness is keyed, kept apart from what is done with it: ``epoch``
    counts the passes started over this dataset (0 for the first), so two
    datasets made with the same ``seed`` give the same batches whatever
    TensorFlow's global seed is. Every draw is a stateless op:

    - the order of epoch ``e`` is ``stateless_shuffle`` keyed by
      ``fold_in(fold_in(root, e), 0)``;
    - batch ``b`` of epoch ``e`` gets the key ``fold_in(fold_in(fold_in(root, e), 1), b)``
      (a ``[2]`` int64 seed for the stateless augmentation ops),

    where ``root = [0, seed mod 2**63]``.

    Returns:
        A dataset of ``(indices, key)``: ``int64`` ``(batch,)`` and ``int64`` ``(2,)``.
    """
    import tensorflow as tf

    fold_in = tf.random.experimental.stateless_fold_in
    root = tf.constant([0, int(seed) % (1 << 63)], dtype=tf.int64)
    # Incremented when an iterator over the dataset starts its first element.
    started = tf.Variable(-1, dtype=tf.int64, trainable=False, name="epochs_started")

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        epoch_key = fold_in(root, epoch)
        indices = tf.range(count, dtype=tf.int64)
        if shuffle and count > 1:
            indices = tf.random.experimental.stateless_shuffle(indices, seed=fold_in(epoch_key, 0))
        batch_root = fold_in(epoch_key, 1)
        batches = tf.data.Dataset.from_tensor_slices(indices).batch(
            batch_size, drop_remainder=drop_remainder
        )
        return batches.enumerate().map(lambda b, index: (index, fold_in(batch_root, b)))

    return tf.data.Dataset.range(1).map(lambda _: started.assign_add(1)).flat_map(one_epoch)


def check_augment(augment: Augmentation | bool) -> Augmentation | None:
    """The augmentation ``augment`` asks for.

    Args:
        augment: ``True`` (default ranges), ``False``/``None`` (none), or an
            [`Augmentation`][cxr_pneumonia.data.augment.Augmentation].

    Returns:
        An [`Augmentation`][cxr_pneumonia.data.augment.Augmentation], or ``None`` for no
        augmentation.

    Raises:
        ValueError: If ``augment`` is none of these.
    """
    if isinstance(augment, Augmentation):
        return augment
    if augment is True:
        return Augmentation()
    if augment is False or augment is None:
        return None
    msg = f"augment={augment!r} must be True, False or an Augmentation"
    raise ValueError(msg)


# --- the decode cache ----------------------------------------------------------------


def decode_cached(
    files: Sequence[str | os.PathLike[str]],
    *,
    image_size: Sequence[int],
    color_mode: str,
    cache_dir: str | os.PathLike[str],
    key: str,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize every file once, cache the pixels on disk, and memory-map them.

    The cache file is named after ``key`` and a hash of ``key``, the sorted
    file list with each file's size and modification time, the image size,
    the color mode and the cache format version, so any change to the files
    or the options gives a fresh cache. It is written to a temporary file and
    renamed into place, so an interrupted pass never leaves a cache a later
    run would trust. Files that can't be decoded (corrupt, truncated, empty,
    not an image) are skipped with one warning that counts and names them;
    ``kept`` tells which files the rows of ``images`` belong to.

    Args:
        files: Image file paths.
        image_size: ``(height, width)`` of the decoded images.
        color_mode: ``"grayscale"`` or ``"rgb"``.
        cache_dir: Folder of the cache (created if needed).
        key: What the files are, e.g. ``"kermany2018/train"``; part of the cache name.
        progress: Show a progress bar while decoding.

    Returns:
        ``(images, kept)``: ``images`` is a read-only ``uint8`` array
        ``(kept.sum(), H, W, C)`` (a memory map of the cache when ``files`` is
        sorted, as [`load_dataset`][cxr_pneumonia.data.loading.load_dataset] passes them; otherwise
        an in-memory copy in the order of ``files``); ``kept`` is a boolean mask aligned with
        ``files``.

    Raises:
        CacheError: If the cache folder can't be created, written or read.
        ValueError: If ``image_size`` or ``color_mode`` is invalid.

    Warns:
        SkippedFilesWarning: Once, naming the files that could not be decoded
            (also when they are known from the cache).
    """
    images, kept, skipped = decode_cached_with_skipped(
        files,
        image_size=image_size,
        color_mode=color_mode,
        cache_dir=cache_dir,
        key=key,
        progress=progress,
    )
    if skipped:
        warnings.warn(skipped_message(skipped, key), SkippedFilesWarning, stacklevel=2)
    return images, kept


def skipped_message(skipped: Sequence[tuple[str, str]], what: str) -> str:
    """The one warning about files that could not be decoded.

    Args:
        skipped: ``(file, reason)`` pairs.
        what: What was being read (a dataset name, split or folder).

    Returns:
        A message that counts the files and names the first few.
    """
    shown = "; ".join(
        f"{name} ({reason})" if reason else name for name, reason in skipped[:_SHOWN_NAMES]
    )
    more = f"; and {len(skipped) - _SHOWN_NAMES} more" if len(skipped) > _SHOWN_NAMES else ""
    return (
        f"skipped {len(skipped)} file(s) of {what} that could not be decoded as images "
        "(corrupt, truncated, empty or not an image); their labels were dropped with them: "
        f"{shown}{more}"
    )


def decode_cached_with_skipped(
    files: Sequence[str | os.PathLike[str]],
    *,
    image_size: Sequence[int],
    color_mode: str,
    cache_dir: str | os.PathLike[str],
    key: str,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """[`decode_cached`][cxr_pneumonia.data.pipeline.decode_cached] without the warning, for callers
    that warn once for many calls.

    Args:
        files: Image file paths.
        image_size: ``(height, width)`` of the decoded images.
        color_mode: ``"grayscale"`` or ``"rgb"``.
        cache_dir: Folder of the cache (created if needed).
        key: What the files are; part of the cache name.
        progress: Show a progress bar while decoding.

    Returns:
        ``(images, kept, skipped)``: as
        [`decode_cached`][cxr_pneumonia.data.pipeline.decode_cached], plus the ``(file, reason)``
        pairs of the files that could not be decoded.

    Raises:
        CacheError: If the cache folder can't be created, written or read.
        ValueError: If ``image_size`` or ``color_mode`` is invalid.
    """
    size = check_image_size(image_size)
    mode = check_color_mode(color_mode)
    names = [os.fspath(f) for f in files]
    order = sorted(range(len(names)), key=names.__getitem__)
    sorted_names = [names[i] for i in order]
    folder = _cache_folder(cache_dir)
    digest = _cache_digest(sorted_names, size, mode, key)
    stem = f"{_safe(key)}-{size[0]}x{size[1]}-{mode}-{digest[:20]}"
    images_path = folder / f"{stem}.npy"
    kept_path = folder / f"{stem}.kept.npy"

    loaded = _load_cache(images_path, kept_path, len(names), size, channels_for(mode))
    if loaded is None:
        logger.info("decoding %d images of %s into %s", len(names), key, images_path)
        _build_cache(sorted_names, size, mode, images_path, kept_path, key=key, progress=progress)
        loaded = _load_cache(images_path, kept_path, len(names), size, channels_for(mode))
        if loaded is None:  # pragma: no cover - only if someone deletes the file under us
            msg = f"the cache {images_path} vanished or is corrupt right after it was written"
            raise CacheError(msg)
    else:
        logger.info("reusing the decoded cache %s", images_path)
    reasons = _read_reasons(folder / f"{stem}.skipped.json")
    sorted_images, sorted_kept = loaded
    skipped = [
        (name, reasons.get(name, ""))
        for name, ok in zip(sorted_names, sorted_kept, strict=True)
        if not ok
    ]

    if order == list(range(len(names))):
        return sorted_images, sorted_kept, skipped
    # Put the rows back in the caller's order (an in-memory copy).
    kept = np.empty(len(names), dtype=bool)
    kept[order] = sorted_kept
    row_of_sorted = np.cumsum(sorted_kept) - 1
    rows = np.array([row_of_sorted[j] for j in np.argsort(order) if sorted_kept[j]], dtype=np.int64)
    images = np.ascontiguousarray(sorted_images[rows]) if rows.size else sorted_images[:0].copy()
    images.setflags(write=False)
    kept.setflags(write=False)
    return images, kept, skipped


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("._") or "cache"


def _cache_digest(sorted_names: Sequence[str], size: tuple[int, int], mode: str, key: str) -> str:
    hasher = hashlib.sha256()
    header = {"version": CACHE_FORMAT_VERSION, "key": key, "size": list(size), "mode": mode}
    hasher.update(json.dumps(header, sort_keys=True).encode())
    for name in sorted_names:
        try:
            stat = os.stat(name)
            signature = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            signature = "missing"
        hasher.update(f"\0{name}\0{signature}".encode("utf-8", "surrogateescape"))
    return hasher.hexdigest()


def _cache_folder(cache_dir: str | os.PathLike[str]) -> Path:
    folder = Path(cache_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = (
            f"can't create the cache folder {folder} ({exc.strerror or exc}); pass a writable "
            "cache_dir= or set the CXR_PNEUMONIA_CACHE_DIR environment variable"
        )
        raise CacheError(msg) from exc
    if not folder.is_dir():
        msg = f"the cache folder {folder} is not a folder; pass a writable cache_dir="
        raise CacheError(msg)
    return folder


def _load_cache(
    images_path: Path, kept_path: Path, count: int, size: tuple[int, int], channels: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Memory-map a complete, consistent cache, or return ``None`` to rebuild it."""
    if not (images_path.is_file() and kept_path.is_file()):
        return None
    if not _checksums_match(images_path, kept_path):
        return None
    try:
        kept = np.load(kept_path, allow_pickle=False)
        images = np.load(images_path, mmap_mode="r", allow_pickle=False) if kept.any() else None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring the unreadable cache %s (%s); decoding again", images_path, exc)
        return None
    if kept.dtype != np.bool_ or kept.shape != (count,):
        return None
    expected = (int(kept.sum()), size[0], size[1], channels)
    if images is None:
        images = np.zeros(expected, dtype=np.uint8)
    elif images.dtype != np.uint8 or images.shape != expected:
        logger.warning("ignoring the inconsistent cache %s; decoding again", images_path)
        return None
    images.setflags(write=False)
    kept.setflags(write=False)
    return images, kept


def _check_path(images_path: Path) -> Path:
    return images_path.with_name(images_path.name[: -len(".npy")] + ".check.json")


def _crc32(path: Path) -> int:
    """CRC-32 of a file, read in 4 MiB chunks (about 0.7 s for a 262 MB cache on 2 busy cores)."""
    crc = 0
    buffer = bytearray(_CHECK_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            crc = zlib.crc32(view[:count], crc)
    return crc


def _checksum_record(files: dict[str, Path]) -> dict[str, object]:
    return {
        "algorithm": "crc32",
        "files": {
            name: {"size": path.stat().st_size, "crc32": _crc32(path)}
            for name, path in files.items()
        },
    }


def _checksums_match(images_path: Path, kept_path: Path) -> bool:
    """Whether the cache files have the sizes and CRC-32 recorded when they were written."""
    record_path = _check_path(images_path)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        expected = record["files"]
        for path in (images_path, kept_path):
            entry = expected[path.name]
            if path.stat().st_size != entry["size"] or _crc32(path) != entry["crc32"]:
                logger.warning(
                    "the decoded cache file %s does not match its checksum in %s (altered or "
                    "damaged on disk); decoding again",
                    path,
                    record_path,
                )
                return False
    except FileNotFoundError:
        logger.info("the decoded cache %s has no checksum record; decoding again", images_path)
        return False
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring the cache %s: bad checksum record (%s)", images_path, exc)
        return False
    return True


def _read_reasons(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _decode_one(name: str, size: tuple[int, int], mode: str) -> np.ndarray | str:
    """Pixels of one file, or the reason it can't be decoded."""
    try:
        return prepare_image(name, size=size, color_mode=mode)
    except InvalidImageError as exc:
        text = str(exc)
        return text[len(name) + 2 :] if text.startswith(f"{name}: ") else text


def _worker_count() -> int:
    # Threads, one per core: Pillow releases the GIL while decoding and resizing.
    # Measured on 2 cores: full-resolution radiographs decode at 342 img/s with 2
    # threads, 337 with 4 and 348 with 2 processes (177 serial); 224 px JPEGs at
    # 3,260 img/s with 2 threads, 2,650 with 4, 4,450 with 2 processes. Processes
    # win only where decoding is trivially cheap, and forking a process that has
    # imported TensorFlow is unsafe, so threads it is.
    return max(2, min(16, os.cpu_count() or 1))


def _build_cache(
    names: Sequence[str],
    size: tuple[int, int],
    mode: str,
    images_path: Path,
    kept_path: Path,
    *,
    key: str,
    progress: bool,
) -> None:
    from tqdm.auto import tqdm

    channels = channels_for(mode)
    shape = (len(names), size[0], size[1], channels)
    folder = images_path.parent
    temporaries: list[Path] = []
    try:
        full_path = _temporary(folder, images_path.name, temporaries)
        full = _open_output(full_path, shape)
        kept = np.zeros(len(names), dtype=bool)
        reasons: dict[str, str] = {}
        pool = ThreadPoolExecutor(max_workers=_worker_count(), thread_name_prefix="cxr-decode")
        try:
            with tqdm(
                total=len(names), desc=f"decoding {key}", unit="img", disable=not progress
            ) as bar:
                results = pool.map(lambda name: _decode_one(name, size, mode), names)
                for index, (name, result) in enumerate(zip(names, results, strict=True)):
                    if isinstance(result, np.ndarray):
                        full[index] = result
                        kept[index] = True
                    else:
                        reasons[name] = result
                    bar.update(1)
        finally:
            # On an error or Ctrl-C, drop the queued files instead of decoding them all.
            pool.shutdown(wait=True, cancel_futures=True)
        if kept.all():
            full.flush()
            del full
            final_images = full_path
        else:
            compact_path = _temporary(folder, images_path.name, temporaries)
            compact = _open_output(compact_path, (int(kept.sum()), *shape[1:]))
            if compact.size:
                compact[:] = full[kept]
            compact.flush()
            del compact, full
            final_images = compact_path
        kept_tmp = _temporary(folder, kept_path.name, temporaries)
        with open(kept_tmp, "wb") as handle:
            np.save(handle, kept, allow_pickle=False)
        reasons_path = images_path.with_name(images_path.name[: -len(".npy")] + ".skipped.json")
        reasons_tmp = _temporary(folder, reasons_path.name, temporaries)
        reasons_tmp.write_text(json.dumps(reasons, indent=0, sort_keys=True), encoding="utf-8")
        # A checksum of the bytes as written, checked on every later use.
        record = _checksum_record({images_path.name: final_images, kept_path.name: kept_tmp})
        check_path = _check_path(images_path)
        check_tmp = _temporary(folder, check_path.name, temporaries)
        check_tmp.write_text(json.dumps(record), encoding="utf-8")
        for path in (reasons_tmp, kept_tmp, check_tmp, final_images):
            fsync_file(path)
        # The pixels are renamed last: their presence marks a complete cache.
        os.replace(reasons_tmp, reasons_path)
        os.replace(kept_tmp, kept_path)
        os.replace(check_tmp, check_path)
        os.replace(final_images, images_path)
        fsync_dir(folder)
    except OSError as exc:
        msg = (
            f"can't write the decoded-image cache in {folder} ({exc.strerror or exc}); pass a "
            "writable cache_dir= with room for the images, or set CXR_PNEUMONIA_CACHE_DIR"
        )
        raise CacheError(msg) from exc
    finally:
        for path in temporaries:
            path.unlink(missing_ok=True)


def _open_output(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A writable ``.npy`` memory map whose disk space is reserved up front.

    Writing into a memory map on a full disk kills the process (``SIGBUS``);
    reserving the space first turns that into an ``OSError`` (``ENOSPC``).
    """
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        with open(path, "r+b") as handle:
            try:
                fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
    return array


def _temporary(folder: Path, name: str, registry: list[Path]) -> Path:
    handle, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    os.close(handle)
    registry.append(Path(path))
    return Path(path)
