"""`DatasetSplits`: what [`load_dataset`][cxr_pneumonia.data.loading.load_dataset] returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

    from cxr_pneumonia.data.augment import Augmentation

__all__ = ["CLASS_NAMES", "SPLIT_NAMES", "DatasetSplits"]

CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
"""Class names in label order: label 0 is NORMAL, label 1 is PNEUMONIA."""

SPLIT_NAMES: tuple[str, str, str] = ("train", "validation", "test")


@dataclass(frozen=True)
class DatasetSplits:
    """A data set ready for training: batched ``tf.data`` pipelines plus their bookkeeping.

    Every per-split mapping (``files``, ``labels``, ``patients``, ``images``,
    ``class_counts``) has a key for each split that exists (``"train"``,
    ``"validation"``, ``"test"``); a split that does not exist has ``None`` as
    its dataset and no key.

    Attributes:
        train: Shuffled (per epoch), augmented batches of ``(images, labels)``;
            images ``uint8`` of shape ``(batch, H, W, C)``, labels ``int32``
            of shape ``(batch,)``.
        validation: Unshuffled, unaugmented batches, or ``None``.
        test: Unshuffled, unaugmented batches, or ``None`` when the source
            has no test split.
        class_names: ``("NORMAL", "PNEUMONIA")``; label 1 is PNEUMONIA.
        files: Per split, the file paths (or ``source/split/index`` ids for
            array sources), in dataset order for unshuffled splits.
        labels: Per split, the labels as an ``int32`` array aligned with ``files``.
        patients: Per split, the patient id of every file.
        images: Per split, the decoded, resized ``uint8`` pixels
            ``(N, H, W, C)`` aligned with ``files``, read-only: a memory map
            of the on-disk cache, or an in-memory copy for the training and
            validation parts carved out of it (and for ``.npz`` sources).
        class_weight: "Balanced" weights ``n / (2 * n_c)`` of the training part.
        image_size: ``(height, width)`` of the images.
        color_mode: ``"grayscale"`` or ``"rgb"``.
        batch_size: Batch size of the pipelines.
        source: The dataset name, or the data folder that was read.
        seed: Seed of the split, the shuffling and the augmentation.
        augmentation: The augmentation of ``train`` (``None``: not augmented);
            [`fit`][cxr_pneumonia.training.fitting.fit] reads it to move the augmentation into
            the training step (``augment_on="device"``).
        validation_fraction: The share of training patients
            [`load_dataset`][cxr_pneumonia.data.loading.load_dataset] held out as ``validation``
            (with ``seed``, this names the split); ``None`` when the validation
            split came as it was (a ``val/`` folder, an ``.npz``), or there is none.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None
    files: Mapping[str, tuple[str, ...]]
    labels: Mapping[str, np.ndarray]
    patients: Mapping[str, tuple[str, ...]]
    images: Mapping[str, np.ndarray] = field(repr=False)
    class_weight: Mapping[int, float]
    image_size: tuple[int, int]
    color_mode: str
    batch_size: int
    source: str
    seed: int
    class_names: tuple[str, str] = CLASS_NAMES
    augmentation: Augmentation | None = None
    validation_fraction: float | None = None

    @property
    def class_counts(self) -> dict[str, dict[str, int]]:
        """Per split, the count of each class, e.g. ``{"train": {"NORMAL": 1200, ...}}``."""
        return {
            split: {
                name: int(np.count_nonzero(labels == index))
                for index, name in enumerate(self.class_names)
            }
            for split, labels in self.labels.items()
        }

    def dataset(self, split: str) -> tf.data.Dataset:
        """Return the pipeline of one split.

        Args:
            split: ``"train"``, ``"validation"`` or ``"test"``.

        Returns:
            The batched ``tf.data.Dataset`` of ``(images, labels)`` of that split.

        Raises:
            ValueError: If ``split`` is not a split name or that split is absent.
        """
        _check_split_name(split)
        result = getattr(self, split)
        if result is None:
            present = ", ".join(name for name in SPLIT_NAMES if getattr(self, name) is not None)
            msg = f"{self.source!r} has no {split!r} split; it has: {present}"
            raise ValueError(msg)
        return result

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Return the decoded pixels and the labels of one split, aligned with ``files[split]``.

        Args:
            split: ``"train"``, ``"validation"`` or ``"test"``.

        Returns:
            ``(images, labels)``: ``images[split]`` (``uint8``, ``(N, H, W, C)``,
            read-only) and ``labels[split]`` (``int32``, ``(N,)``), not copied.

        Raises:
            ValueError: If ``split`` is not a split name or that split has no images.
        """
        _check_split_name(split)
        images, labels = self.images.get(split), self.labels.get(split)
        if images is None or labels is None:
            present = ", ".join(
                name for name in SPLIT_NAMES if name in self.images and name in self.labels
            )
            msg = f"{self.source!r} has no {split!r} split; it has: {present or 'none'}"
            raise ValueError(msg)
        return images, np.asarray(labels)

    def __repr__(self) -> str:
        sizes = {split: len(self.labels[split]) for split in SPLIT_NAMES if split in self.labels}
        height, width = self.image_size
        return (
            f"DatasetSplits(source={self.source!r}, images={sizes}, "
            f"image_size=({height}, {width}), color_mode={self.color_mode!r}, "
            f"batch_size={self.batch_size}, seed={self.seed})"
        )

    def summary(self) -> str:
        """A readable table of the splits: images, patients and classes.

        Returns:
            A multi-line string.
        """
        header = ("split", "images", "patients", *self.class_names, f"% {self.class_names[1]}")
        rows: list[tuple[str, ...]] = [header]
        for split in SPLIT_NAMES:
            if split not in self.labels:
                continue
            labels = self.labels[split]
            counts = [int(np.count_nonzero(labels == i)) for i in range(len(self.class_names))]
            share = 100.0 * counts[1] / len(labels) if len(labels) else 0.0
            rows.append(
                (
                    split,
                    str(len(labels)),
                    str(len(set(self.patients[split]))),
                    *map(str, counts),
                    f"{share:.1f}",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [
            f"{self.source}: {self.image_size[0]}x{self.image_size[1]} {self.color_mode}, "
            f"batch {self.batch_size}, seed {self.seed}",
        ]
        for n, row in enumerate(rows):
            lines.append(
                "  ".join(
                    cell.rjust(w) if i else cell.ljust(w)
                    for i, (cell, w) in enumerate(zip(row, widths, strict=True))
                )
            )
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        weights = ", ".join(
            f"{self.class_names[k]}={v:.3f}" for k, v in sorted(self.class_weight.items())
        )
        lines.append(f"class_weight: {weights}")
        return "\n".join(lines)


def _check_split_name(split: str) -> None:
    if split not in SPLIT_NAMES:
        msg = f"unknown split {split!r}; choose one of: {', '.join(SPLIT_NAMES)}"
        raise ValueError(msg)
