"""load_dataset: a folder or a registered data set -> patient-grouped, cached ``tf.data`` splits.

[`load_dataset`][cxr_pneumonia.data.loading.load_dataset] reads a folder you already have
(``data_dir=``) or downloads a registered data set by name, decodes every image once into an on-disk
cache, draws a patient-grouped validation split, and returns a
[`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits] of batched ``tf.data`` pipelines. It
composes the public functions of `cxr_pneumonia.data.sources`, `cxr_pneumonia.data.download`,
`cxr_pneumonia.data.layouts`, `cxr_pneumonia.data.split` and `cxr_pneumonia.data.pipeline`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr_pneumonia.data.layouts import DatasetFiles, find_images, patient_groups
from cxr_pneumonia.data.pipeline import (
    Augmentation,
    SkippedFilesWarning,
    check_augment,
    decode_cached_with_skipped,
    make_dataset,
    skipped_message,
)
from cxr_pneumonia.data.sources import get_source
from cxr_pneumonia.data.split import grouped_split
from cxr_pneumonia.data.splits import CLASS_NAMES, DatasetSplits
from cxr_pneumonia.exceptions import DatasetLayoutError
from cxr_pneumonia.images import (
    channels_for,
    check_color_mode,
    check_image_size,
    prepare_image,
    resize_image,
)

__all__ = ["DEFAULT_VALIDATION_FRACTION", "VALIDATION_SOURCES", "load_dataset"]

VALIDATION_SOURCES: tuple[str, ...] = ("grouped", "folder")
"""Where [`load_dataset`][cxr_pneumonia.data.loading.load_dataset] takes the validation
split from (its ``validation=``)."""

DEFAULT_VALIDATION_FRACTION = 0.15
"""The share of training patients [`load_dataset`][cxr_pneumonia.data.loading.load_dataset] holds
out by default: the default recipe's (the shipped model's members held out 15 %), so that
``load_dataset(...)`` with default arguments draws the split the shipped model was tuned on."""

logger = logging.getLogger("cxr_pneumonia")

_NPZ_SPLITS = {"train": "train", "validation": "val", "test": "test"}
"""Our split name -> the npz key prefix (MedMNIST's ``{train,val,test}_{images,labels}``)."""


def load_dataset(
    name: str = "kermany2018",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    image_size: Sequence[int] = (224, 224),
    color_mode: str = "grayscale",
    batch_size: int = 32,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    validation: str = "grouped",
    augment: Augmentation | bool = True,
    seed: int = 0,
    progress: bool = True,
) -> DatasetSplits:
    """Load a chest X-ray data set as batched ``tf.data`` pipelines.

    Image folders (``data_dir=``, or a downloaded archive) are decoded and
    resized once, in parallel, with [`prepare_image`][cxr_pneumonia.images.prepare_image] (the
    preprocessing inference uses), and cached as ``uint8`` arrays under
    ``<cache_dir>/decoded/``; later epochs and later calls read that cache and
    no image file. Files that can't be decoded are skipped with one warning
    naming them. A validation part of ``validation_fraction`` is carved from
    the training files, grouped by patient (no patient on both sides) and
    stratified by class; a ``val/`` folder of the Kaggle copy is merged into
    training first. ``.npz`` sources (PneumoniaMNIST) bring their own
    train / val / test split, which is used as is.

    Args:
        name: A registered data set (see
            [`list_datasets`][cxr_pneumonia.data.sources.list_datasets]); ignored when ``data_dir``
            is given.
        data_dir: A folder already on disk in one of the accepted layouts (see
            `LAYOUTS`); nothing is downloaded.
        cache_dir: Folder for downloads and decoded images; defaults to
            [`default_cache_dir`][cxr_pneumonia.data.download.default_cache_dir] (the
            ``CXR_PNEUMONIA_CACHE_DIR`` environment variable, else the OS cache).
        image_size: ``(height, width)`` of the images served.
        color_mode: ``"grayscale"`` (1 channel) or ``"rgb"`` (3 channels).
        batch_size: Images per batch.
        validation_fraction: Share of the training files held out for
            validation, in ``[0, 1)`` (default 0.15, the default recipe's); ``0`` gives no
            validation split.
            Used with ``validation="grouped"`` only.
        validation: Where the validation split comes from. ``"grouped"``
            (the default): carved from the training files, grouped by patient
            and stratified by class, with a ``val/`` folder merged into
            training first. ``"folder"``: the data folder's own ``val/``
            folder, as is (training keeps all of ``train/``). The default is
            deliberate: the Kaggle copy's ``val/`` holds only 16 images (8 per
            class), far too few to choose a threshold or compare epochs, and
            nothing keeps a patient of ``val/`` out of ``train/``. Use
            ``"folder"`` for a ``val/`` folder of your own that is large and
            patient-disjoint.
        augment: Augment the training split on the fly: ``True`` (default
            ranges), ``False``, or an [`Augmentation`][cxr_pneumonia.data.augment.Augmentation].
        seed: Seed of the validation split, the shuffling and the augmentation.
        progress: Show progress bars while downloading and decoding.

    Returns:
        A [`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits] with ``train`` (shuffled each
        epoch, augmented), ``validation`` and ``test`` (in file order; ``None`` when absent), with
        the files, labels, patients, decoded images and class weights of every split.

    Raises:
        ValueError: If an argument is invalid (the message says what is allowed).
        UnknownDatasetError: If ``name`` is not registered.
        DatasetLayoutError: If ``data_dir`` (or the download) is in no accepted
            layout, an npz lacks its keys, or no training image is usable.
        DownloadError: If a download fails or does not match its hash.
        CacheError: If the cache folder can't be created or written.

    Warns:
        SkippedFilesWarning: Once, naming the files that could not be decoded.

    Examples:
        >>> splits = load_dataset(data_dir="~/data/chest_xray")  # doctest: +SKIP
        >>> print(splits.summary())  # doctest: +SKIP
        >>> model.fit(splits.train, validation_data=splits.validation,
        ...           class_weight=splits.class_weight)  # doctest: +SKIP
    """
    size = check_image_size(image_size)
    mode = check_color_mode(color_mode)
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size <= 0
    ):
        msg = f"batch_size={batch_size!r} must be a positive integer, e.g. 32"
        raise ValueError(msg)
    if (
        isinstance(validation_fraction, bool)
        or not isinstance(validation_fraction, (int, float))
        or not math.isfinite(validation_fraction)
        or not 0.0 <= validation_fraction < 1.0
    ):
        msg = f"validation_fraction={validation_fraction!r} must be a number in [0, 1), e.g. 0.1"
        raise ValueError(msg)
    if validation not in VALIDATION_SOURCES:
        msg = (
            f"validation={validation!r} is not a validation source; choose one of: "
            f"{', '.join(VALIDATION_SOURCES)} ('grouped': a patient-grouped part of train/; "
            "'folder': the data folder's own val/)"
        )
        raise ValueError(msg)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        msg = f"seed={seed!r} must be an integer"
        raise ValueError(msg)
    aug = check_augment(augment)
    options = _Options(
        size,
        mode,
        int(batch_size),
        float(validation_fraction),
        False if aug is None else aug,
        int(seed),
        progress,
        validation,
    )

    from cxr_pneumonia.data import download

    cache = Path(cache_dir).expanduser() if cache_dir is not None else download.default_cache_dir()
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        files = find_images(folder, keep_val=validation == "folder")
        return _from_folder(
            files, label=str(folder), key=_folder_key(files.root), cache=cache, options=options
        )
    source = get_source(name)
    local = download.ensure_local(source, cache_dir=cache, progress=progress)
    if source.kind == "npz":
        if validation == "folder":
            msg = (
                f"validation='folder' needs a data folder with a val/ folder; {source.name!r} is "
                "an .npz source, which brings its own validation split: use validation='grouped'"
            )
            raise ValueError(msg)
        return _from_npz(local, name=source.name, options=options)
    files = find_images(local, keep_val=validation == "folder")
    return _from_folder(files, label=source.name, key=source.name, cache=cache, options=options)


@dataclass(frozen=True)
class _Options:
    """The validated arguments of [`load_dataset`][cxr_pneumonia.data.loading.load_dataset]."""

    size: tuple[int, int]
    mode: str
    batch_size: int
    fraction: float
    augment: Augmentation | bool
    seed: int
    progress: bool
    validation: str = "grouped"


def _folder_key(root: Path) -> str:
    return f"folder-{root.name or 'root'}"


def _from_folder(
    files: DatasetFiles, *, label: str, key: str, cache: Path, options: _Options
) -> DatasetSplits:
    decoded_dir = cache / "decoded"
    paths: dict[str, list[str]] = {}
    labels: dict[str, np.ndarray] = {}
    images: dict[str, np.ndarray] = {}
    skipped: list[tuple[str, str]] = []
    if options.validation == "folder" and "validation" not in files.files:
        msg = (
            f"{label}: validation='folder' needs a val/ folder next to train/ (with NORMAL/ and "
            f"PNEUMONIA/ inside); the {files.layout!r} layout found has none. Add one, or use "
            "validation='grouped' (a patient-grouped part of the training files)"
        )
        raise DatasetLayoutError(msg)
    for split in ("train", "validation", "test"):
        if split not in files.files:
            continue
        names = [os.fspath(p) for p in files.files[split]]
        order = sorted(range(len(names)), key=names.__getitem__)
        names = [names[i] for i in order]
        split_labels = np.asarray(files.labels[split], dtype=np.int32)[order]
        pixels, kept, bad = decode_cached_with_skipped(
            names,
            image_size=options.size,
            color_mode=options.mode,
            cache_dir=decoded_dir,
            key=f"{key}/{split}",
            progress=options.progress,
        )
        skipped.extend(bad)
        paths[split] = [n for n, k in zip(names, kept, strict=True) if k]
        labels[split] = split_labels[kept]
        images[split] = pixels
        _check_classes_decoded(label, split, split_labels, labels[split], bad)
    if skipped:
        warnings.warn(skipped_message(skipped, label), SkippedFilesWarning, stacklevel=3)
    if not paths["train"]:
        msg = f"{label}: no training image could be decoded ({len(skipped)} file(s) skipped)"
        raise DatasetLayoutError(msg)

    groups = patient_groups(paths["train"])
    if "validation" in paths:  # the user's own val/ folder
        train_idx = np.arange(len(paths["train"]))
        val_idx = np.zeros(0, dtype=np.int64)
    else:
        try:
            train_idx, val_idx = grouped_split(
                labels["train"], groups, fraction=options.fraction, seed=options.seed
            )
        except ValueError as exc:
            msg = (
                f"{label}: can't hold out validation_fraction={options.fraction} of "
                f"{len(set(groups))} training patient(s): {exc}. Pass validation_fraction=0 "
                "(no validation split) or use more data"
            )
            raise DatasetLayoutError(msg) from exc
    split_files: dict[str, tuple[str, ...]] = {}
    split_labels_out: dict[str, np.ndarray] = {}
    split_patients: dict[str, tuple[str, ...]] = {}
    split_images: dict[str, np.ndarray] = {}
    parts = [("train", "train", train_idx)]
    if val_idx.size:
        parts.append(("validation", "train", val_idx))
    for out, src, idx in parts:
        split_files[out] = tuple(paths[src][i] for i in idx)
        split_labels_out[out] = _readonly(labels[src][idx])
        split_patients[out] = tuple(groups[i] for i in idx)
        split_images[out] = _take(images[src], idx)
    if "validation" in paths:
        if not paths["validation"]:
            msg = f"{label}: no image of the val/ folder could be decoded"
            raise DatasetLayoutError(msg)
        split_files["validation"] = tuple(paths["validation"])
        split_labels_out["validation"] = _readonly(labels["validation"])
        split_patients["validation"] = patient_groups(paths["validation"])
        split_images["validation"] = images["validation"]
    if "test" in paths:
        split_files["test"] = tuple(paths["test"])
        split_labels_out["test"] = _readonly(labels["test"])
        split_patients["test"] = patient_groups(paths["test"])
        split_images["test"] = images["test"]
    return _assemble(
        split_files,
        split_labels_out,
        split_patients,
        split_images,
        source=label,
        options=options,
        validation_fraction=options.fraction if val_idx.size else None,  # carved, not a val/
    )


def _check_classes_decoded(
    label: str,
    split: str,
    listed: np.ndarray,
    decoded: np.ndarray,
    skipped: list[tuple[str, str]],
) -> None:
    """Raise when every file of a class in ``split`` failed to decode (as for an empty folder)."""
    for index, name in enumerate(CLASS_NAMES):
        count = int(np.count_nonzero(listed == index))
        if count and not np.count_nonzero(decoded == index):
            example = f"; e.g. {skipped[0][0]} ({skipped[0][1]})" if skipped else ""
            msg = (
                f"{label}: none of the {count} {name} file(s) of the {split} split could be "
                f"decoded as an image, which leaves that class empty{example}. Replace or "
                "remove the broken files"
            )
            raise DatasetLayoutError(msg)


def _from_npz(path: Path, *, name: str, options: _Options) -> DatasetSplits:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        msg = f"{name}: {path} is not a readable .npz file ({exc}); delete it to download it again"
        raise DatasetLayoutError(msg) from exc
    with archive:
        wanted = [
            f"{prefix}_{kind}" for prefix in _NPZ_SPLITS.values() for kind in ("images", "labels")
        ]
        missing = [k for k in wanted if k not in archive.files]
        if "train_images" in missing or "train_labels" in missing:
            msg = (
                f"{name}: {path} lacks the keys {', '.join(missing)}; an npz source needs "
                f"{', '.join(wanted)} (train_* at least)"
            )
            raise DatasetLayoutError(msg)
        split_files: dict[str, tuple[str, ...]] = {}
        split_labels: dict[str, np.ndarray] = {}
        split_images: dict[str, np.ndarray] = {}
        for split, prefix in _NPZ_SPLITS.items():
            if f"{prefix}_images" not in archive.files or f"{prefix}_labels" not in archive.files:
                continue
            raw = np.asarray(archive[f"{prefix}_images"])
            values = np.asarray(archive[f"{prefix}_labels"]).reshape(-1)
            if raw.shape[0] != values.shape[0] or raw.ndim not in (3, 4):
                msg = (
                    f"{name}: {prefix}_images has shape {raw.shape} but {prefix}_labels has "
                    f"{values.shape[0]} labels; expected (N, H, W[, C]) images and N labels"
                )
                raise DatasetLayoutError(msg)
            if values.size and not (
                np.issubdtype(values.dtype, np.integer) and set(np.unique(values)) <= {0, 1}
            ):
                found = np.unique(values)[:10]
                msg = f"{name}: {prefix}_labels must be 0 (NORMAL) or 1 (PNEUMONIA), got {found}"
                raise DatasetLayoutError(msg)
            if split == "validation" and raw.shape[0] == 0:
                continue
            split_images[split] = _readonly(
                _convert_array(raw, options.size, options.mode, f"{name} {prefix}")
            )
            split_labels[split] = _readonly(values.astype(np.int32))
            split_files[split] = tuple(f"{name}/{prefix}/{i:05d}" for i in range(raw.shape[0]))
    logger.info("%s brings its own validation split; validation_fraction is not used", name)
    # MedMNIST does not say which images share a patient: each image is its own group.
    patients = dict(split_files.items())
    return _assemble(
        split_files, split_labels, patients, split_images, source=name, options=options
    )


def _convert_array(raw: np.ndarray, size: tuple[int, int], mode: str, what: str) -> np.ndarray:
    """Bring array images ``(N, H, W[, C])`` to ``uint8 (N, *size, channels)``."""
    channels = channels_for(mode)
    count = raw.shape[0]
    has_channels = raw.ndim == 4
    source_channels = raw.shape[3] if has_channels else 1
    if (
        raw.dtype == np.uint8
        and source_channels in (1, 3)
        and (source_channels == channels or source_channels == 1)
    ):
        out = np.empty((count, size[0], size[1], channels), dtype=np.uint8)
        for i in range(count):
            image = raw[i] if has_channels else raw[i, :, :, np.newaxis]
            if image.shape[:2] != size:
                image = resize_image(image, size)
            out[i] = image  # broadcasts one grey channel to rgb when asked
        return out
    # Other dtypes or channel counts: the general path of images.prepare_image.
    logger.info("converting %d %s images of %s %s", count, what, raw.dtype, raw.shape[1:])
    return np.stack(
        [
            prepare_image(raw[i], size=size, color_mode=mode, name=f"{what}[{i}]")
            for i in range(count)
        ]
    )


def _take(images: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` of ``images``: itself if that is all of it, else a read-only copy."""
    if index.shape[0] == images.shape[0] and np.array_equal(index, np.arange(images.shape[0])):
        return images
    return _readonly(images[index])


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _class_weight(labels: np.ndarray) -> dict[int, float]:
    total = labels.shape[0]
    weights: dict[int, float] = {}
    for index, name in enumerate(CLASS_NAMES):
        count = int(np.count_nonzero(labels == index))
        if count == 0:
            logger.warning("the training split has no %s image; its class weight is 0", name)
        weights[index] = total / (len(CLASS_NAMES) * count) if count else 0.0
    return weights


def _assemble(
    files: dict[str, tuple[str, ...]],
    labels: dict[str, np.ndarray],
    patients: dict[str, tuple[str, ...]],
    images: dict[str, np.ndarray],
    *,
    source: str,
    options: _Options,
    validation_fraction: float | None = None,
) -> DatasetSplits:
    datasets = {
        split: make_dataset(
            images[split],
            labels[split],
            batch_size=options.batch_size,
            shuffle=split == "train",
            augment=options.augment if split == "train" else False,
            seed=options.seed,
        )
        for split in files
    }
    return DatasetSplits(
        train=datasets["train"],
        validation=datasets.get("validation"),
        test=datasets.get("test"),
        files=files,
        labels=labels,
        patients=patients,
        images=images,
        class_weight=_class_weight(labels["train"]),
        image_size=options.size,
        color_mode=options.mode,
        batch_size=options.batch_size,
        source=source,
        seed=options.seed,
        augmentation=options.augment
        if isinstance(options.augment, Augmentation) and options.augment.enabled
        else None,
        validation_fraction=validation_fraction,
    )
