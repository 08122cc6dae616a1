"""Tiny models and ``DatasetSplits`` for the training tests (no real data, seconds on a CPU)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cxr_pneumonia.data.splits import DatasetSplits


def tiny_images(labels: np.ndarray, size: int = 16, seed: int = 0) -> np.ndarray:
    """``uint8`` (N, size, size, 1) images whose class is learnable: PNEUMONIA ones are brighter."""
    rng = np.random.default_rng(seed)
    base = rng.normal(80, 20, size=(len(labels), size, size, 1))
    base += 90 * np.asarray(labels, dtype=float)[:, None, None, None]
    return np.clip(base, 0, 255).astype(np.uint8)


def make_splits(
    n_train: int = 24,
    n_val: int = 12,
    *,
    size: int = 16,
    batch_size: int = 8,
    validation: bool = True,
    seed: int = 0,
) -> DatasetSplits:
    """A ``DatasetSplits`` built directly from tiny generated arrays (2 images per patient)."""
    parts = {"train": n_train, "validation": n_val} if validation else {"train": n_train}
    labels, images, patients, files = {}, {}, {}, {}
    for offset, (split, n) in enumerate(parts.items()):
        y = np.asarray([(i // 2) % 2 for i in range(n)], dtype=np.int32)  # pairs per patient
        labels[split] = y
        images[split] = tiny_images(y, size, seed=seed + offset)
        patients[split] = tuple(f"{split}-p{i // 2}" for i in range(n))
        files[split] = tuple(f"tiny/{split}/{i}" for i in range(n))

    def dataset(split: str, shuffle: bool) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((images[split], labels[split]))
        if shuffle:
            ds = ds.shuffle(len(labels[split]), seed=seed, reshuffle_each_iteration=True)
        return ds.batch(batch_size)

    counts = np.bincount(labels["train"], minlength=2)
    class_weight = {c: float(n_train / (2 * counts[c])) for c in (0, 1)}
    return DatasetSplits(
        train=dataset("train", True),
        validation=dataset("validation", False) if validation else None,
        test=None,
        files=files,
        labels=labels,
        patients=patients,
        images=images,
        class_weight=class_weight,
        image_size=(size, size),
        color_mode="grayscale",
        batch_size=batch_size,
        source="tiny",
        seed=seed,
    )


def tiny_model(size: int = 16, *, seed: int = 0, name: str = "tiny", units: int = 1) -> keras.Model:
    """A 2-layer CNN on uint8 (size, size, 1) input: one sigmoid output, or a
    ``units=2`` softmax (NORMAL, PNEUMONIA)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    activation = "sigmoid" if units == 1 else "softmax"
    outputs = keras.layers.Dense(units, activation=activation)(x)
    return keras.Model(inputs, outputs, name=name)


def tiny_backbone_model(size: int = 16, *, seed: int = 0) -> keras.Model:
    """Like the registry's backbone classifiers: a frozen nested model named ``backbone``."""
    keras.utils.set_random_seed(seed)
    backbone = keras.Sequential(
        [keras.Input((size, size, 1)), keras.layers.Conv2D(4, 3, activation="relu")],
        name="backbone",
    )
    backbone.trainable = False
    inputs = keras.Input((size, size, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="tiny_backbone")
