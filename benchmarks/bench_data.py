"""Benchmark the input pipeline against the reference notebooks' way of reading the data.

Prints one JSON line with images per second (median of ``--epochs`` timed
epochs, with ``min`` / ``max`` / ``spread`` in ``details``) of:

* ``decode_only`` / ``first_pass``: decoding and caching the real training
  split (``../shared/data/kermany2018-224/train``, 5,216 JPEGs) with
  :func:`~cxr_pneumonia.data.pipeline.decode_cached` into a temporary cache,
  then one epoch of :func:`~cxr_pneumonia.data.pipeline.make_dataset` (once);
* ``cached_run_first_epoch``: a later run: the cache found and memory-mapped
  again, the pipeline built and one shuffled epoch served (once);
* ``cached_pass``: further epochs of that pipeline (no augmentation);
* ``cached_augmented_pass``: the same with the default augmentation in the
  ``tf.data`` pipeline (``augment_on="pipeline"``: the XLA-compiled warp and
  intensity steps);
* ``cached_augmented_device_pass``: the unaugmented pipeline plus the same
  augmentation as a compiled step per batch, as ``augment_on="device"`` runs
  it inside the training step (on this machine's device: the CPU here);
* ``cached_augmented_tf_kernel_pass``: the augmentation as it was before
  (TensorFlow's ``ImageProjectiveTransformV3`` kernel, same matrices), for
  comparison;
* ``notebook``: the notebooks' ``ImageDataGenerator(rescale=1/255)
  .flow_from_directory(target_size=(224, 224), batch_size=32)``, which decodes
  every file every epoch (Keras 3 keeps it in ``keras.src.legacy``);

and the speed-ups ``speedup_cached_vs_notebook`` (target at least 10) and
``speedup_augmented_vs_notebook`` (target at least 5, the better of the two
augmentation placements). ``cpu_ms_per_image`` gives the CPU time per image
of each measure, and ``cpu_cost_notebook_vs_augmented`` the notebook's CPU
time per image over the augmented pass's: CPU time is little disturbed by
other processes, so this ratio holds on a busy machine too (the notebook uses
one core, the pipeline all of them). The load average is printed before and after; a
busy machine is refused (see ``_machine.py``).

Usage::

    python benchmarks/bench_data.py [--data ../shared/data/kermany2018-224] [--color-mode grayscale]
                                    [--epochs 3] [--limit N] [--allow-busy]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _machine

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kermany2018-224"
SIZE = (224, 224)
BATCH = 32


def _epoch(dataset) -> int:
    count = 0
    for images, _ in dataset:
        count += int(images.shape[0])
    return count


def _legacy_augment(images, seed, aug):
    """The augmentation before it was compiled: TensorFlow's projective-transform kernel."""
    import tensorflow as tf

    from cxr_pneumonia.data import augment

    shape = tf.shape(images)
    seed = tf.cast(seed, tf.int64)
    u, v = augment.draw_uniforms(shape[0], seed)
    pixels = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=augment.transform_matrices(u, v, aug, shape[1], shape[2]),
        output_shape=shape[1:3],
        fill_value=tf.constant(float(aug.fill_value), tf.float32),
        interpolation="BILINEAR",
        fill_mode=aug.fill_mode.upper(),
    )
    noise_seed = tf.random.experimental.stateless_fold_in(seed, 2)
    return augment._intensity(pixels, u, v, noise_seed, aug)


def main() -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="a folder in an accepted layout"
    )
    parser.add_argument("--color-mode", default="grayscale", choices=("grayscale", "rgb"))
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per measure")
    parser.add_argument("--limit", type=int, help="use only the first N training files")
    _machine.add_arguments(parser)
    args = parser.parse_args()
    result = _machine.start("bench_data", allow_busy=args.allow_busy)

    import numpy as np
    import tensorflow as tf

    from cxr_pneumonia.data import Augmentation, find_images
    from cxr_pneumonia.data.augment import augment_batch
    from cxr_pneumonia.data.pipeline import _worker_count, decode_cached, make_dataset

    found = find_images(args.data)
    files = [os.fspath(p) for p in found.files["train"]]
    order = sorted(range(len(files)), key=files.__getitem__)
    if args.limit:
        order = order[: args.limit]
    files = [files[i] for i in order]
    labels = np.asarray(found.labels["train"])[order]
    result.update(
        {
            "data": os.fspath(args.data),
            "images": len(files),
            "image_size": list(SIZE),
            "color_mode": args.color_mode,
            "batch_size": BATCH,
            "decode_threads": _worker_count(),
            "timed_epochs": args.epochs,
            "tensorflow": tf.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
        }
    )
    details: dict[str, object] = {}
    aug = Augmentation()

    def windows(dataset_epoch, *, warmup: int = 0) -> dict:
        return _machine.timed_windows(dataset_epoch, warmup=warmup, windows=args.epochs)

    with tempfile.TemporaryDirectory(prefix="cxr-bench-") as cache:
        options = {
            "image_size": SIZE,
            "color_mode": args.color_mode,
            "cache_dir": cache,
            "key": "bench/train",
        }

        start = time.perf_counter()
        images, kept = decode_cached(files, progress=False, **options)
        decoded = time.perf_counter() - start
        plain = make_dataset(
            images, labels[kept], batch_size=BATCH, shuffle=True, augment=False, seed=0
        )
        served = _epoch(plain)
        first = time.perf_counter() - start

        # A later run: find and memory-map the cache, then serve epochs from it.
        start = time.perf_counter()
        images, kept = decode_cached(files, progress=False, **options)
        plain = make_dataset(
            images, labels[kept], batch_size=BATCH, shuffle=True, augment=False, seed=0
        )
        served = _epoch(plain)
        reopened = time.perf_counter() - start
        details["cached_pass"] = windows(lambda: _epoch(plain))

        augmented = make_dataset(
            images, labels[kept], batch_size=BATCH, shuffle=True, augment=aug, seed=0
        )
        _epoch(augmented.take(3))  # trace and compile first
        details["cached_augmented_pass"] = windows(lambda: _epoch(augmented))

        step = tf.function(lambda batch, key: augment_batch(batch, key, aug))

        def device_epoch() -> int:
            count = 0
            for index, (batch, _) in enumerate(plain):
                out = step(batch, tf.constant([0, index], tf.int64))
                count += int(out.shape[0])
            return count

        details["cached_augmented_device_pass"] = windows(device_epoch, warmup=1)

        seeds = tf.data.Dataset.random(seed=0, rerandomize_each_iteration=True).batch(2)
        legacy = tf.data.Dataset.zip(plain, seeds).map(
            lambda pair, key: (_legacy_augment(pair[0], key, aug), pair[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        _epoch(legacy.take(3))
        details["cached_augmented_tf_kernel_pass"] = windows(lambda: _epoch(legacy))

    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    root = found.root / "train" if (found.root / "train").is_dir() else found.root
    generator = ImageDataGenerator(rescale=1.0 / 255).flow_from_directory(
        os.fspath(root),
        target_size=SIZE,
        color_mode=args.color_mode,
        batch_size=BATCH,
        class_mode="binary",
        shuffle=True,
        seed=0,
    )
    steps = len(generator) if not args.limit else max(1, len(files) // BATCH)

    def notebook_epoch() -> int:
        count = 0
        for _ in range(steps):
            batch, _ = next(generator)
            count += batch.shape[0]
        return count

    details["notebook"] = windows(notebook_epoch)

    rates = {
        "decode_only_images_per_s": len(files) / decoded,
        "first_pass_images_per_s": served / first,
        "cached_run_first_epoch_images_per_s": served / reopened,
    }
    rates.update({f"{name}_images_per_s": value["median"] for name, value in details.items()})
    result.update({name: round(value, 1) for name, value in rates.items()})
    notebook = rates["notebook_images_per_s"]
    result["speedup_cached_vs_notebook"] = round(rates["cached_pass_images_per_s"] / notebook, 1)
    best = max(
        rates["cached_augmented_pass_images_per_s"],
        rates["cached_augmented_device_pass_images_per_s"],
    )
    result["speedup_augmented_vs_notebook"] = round(best / notebook, 2)
    result["speedup_augmented_vs_tf_kernel"] = round(
        rates["cached_augmented_pass_images_per_s"]
        / rates["cached_augmented_tf_kernel_pass_images_per_s"],
        2,
    )
    # CPU time per image: comparable even when the machine is busy.
    result["cpu_ms_per_image"] = {name: value["cpu_ms_per_item"] for name, value in details.items()}
    result["cpu_cost_notebook_vs_augmented"] = round(
        details["notebook"]["cpu_ms_per_item"]
        / min(
            details["cached_augmented_pass"]["cpu_ms_per_item"],
            details["cached_augmented_device_pass"]["cpu_ms_per_item"],
        ),
        2,
    )
    result["details"] = details
    _machine.finish(result)


if __name__ == "__main__":
    main()
