"""Benchmark the input pipeline against the reference notebooks' way of reading the data.

Prints one JSON line with images per second of:

* ``first_pass``: decoding and caching the real training split
  (``../shared/data/kermany2018-224/train``, 5,216 JPEGs) with
  :func:`~cxr_pneumonia.data.pipeline.decode_cached` into a temporary cache,
  then one epoch of :func:`~cxr_pneumonia.data.pipeline.make_dataset`;
* ``cached_run_first_epoch``: a later run: the cache found and memory-mapped
  again, the pipeline built and one shuffled epoch served (no augmentation,
  like the notebooks);
* ``cached_pass``: a further epoch of that pipeline (the fastest of two);
* ``cached_augmented_pass``: the same epoch with the default augmentation;
* ``notebook``: the notebooks' ``ImageDataGenerator(rescale=1/255)
  .flow_from_directory(target_size=(224, 224), batch_size=32)``, which decodes
  every file every epoch (Keras 3 keeps it in ``keras.src.legacy``), the
  fastest of two epochs;

and ``speedup_cached_vs_notebook`` (the target is at least 10).

Usage::

    python benchmarks/bench_data.py [--data ../shared/data/kermany2018-224] [--color-mode grayscale]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kermany2018-224"
SIZE = (224, 224)
BATCH = 32
EPOCHS = 2
"""Epochs timed per way of reading; the fastest counts (the machine is shared)."""


def _epoch(dataset) -> int:
    count = 0
    for images, _ in dataset:
        count += int(images.shape[0])
    return count


def _timed(dataset) -> tuple[int, float]:
    start = time.perf_counter()
    count = _epoch(dataset)
    return count, time.perf_counter() - start


def main() -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="a folder in an accepted layout"
    )
    parser.add_argument("--color-mode", default="grayscale", choices=("grayscale", "rgb"))
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from cxr_pneumonia.data import find_images
    from cxr_pneumonia.data.pipeline import _worker_count, decode_cached, make_dataset

    found = find_images(args.data)
    files = [os.fspath(p) for p in found.files["train"]]
    order = sorted(range(len(files)), key=files.__getitem__)
    files = [files[i] for i in order]
    labels = np.asarray(found.labels["train"])[order]
    result: dict[str, object] = {
        "benchmark": "bench_data",
        "data": os.fspath(args.data),
        "images": len(files),
        "image_size": list(SIZE),
        "color_mode": args.color_mode,
        "batch_size": BATCH,
        "cpu_count": os.cpu_count(),
        "decode_threads": _worker_count(),
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
    }
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
        dataset = make_dataset(
            images, labels[kept], batch_size=BATCH, shuffle=True, augment=False, seed=0
        )
        served = _epoch(dataset)
        first = time.perf_counter() - start

        # A later run: find and memory-map the cache, then serve epochs from it.
        start = time.perf_counter()
        images, kept = decode_cached(files, progress=False, **options)
        dataset = make_dataset(
            images, labels[kept], batch_size=BATCH, shuffle=True, augment=False, seed=0
        )
        served = _epoch(dataset)
        reopened = time.perf_counter() - start
        cached = min(_timed(dataset)[1] for _ in range(EPOCHS))

        dataset = make_dataset(
            images, labels[kept], batch_size=BATCH, shuffle=True, augment=True, seed=0
        )
        _epoch(dataset.take(2))  # trace the graph first
        augmented_count, augmented = min(
            (_timed(dataset) for _ in range(EPOCHS)), key=lambda r: r[1]
        )

    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(rescale=1.0 / 255).flow_from_directory(
        os.fspath(found.root / "train")
        if (found.root / "train").is_dir()
        else os.fspath(found.root),
        target_size=SIZE,
        color_mode=args.color_mode,
        batch_size=BATCH,
        class_mode="binary",
        shuffle=True,
        seed=0,
    )

    def notebook_epoch() -> tuple[int, float]:
        start = time.perf_counter()
        count = 0
        for _ in range(len(generator)):
            batch, _ = next(generator)
            count += batch.shape[0]
        return count, time.perf_counter() - start

    notebook_count, notebook = min((notebook_epoch() for _ in range(EPOCHS)), key=lambda r: r[1])

    rates = {
        "decode_only_images_per_s": len(files) / decoded,
        "first_pass_images_per_s": served / first,
        "cached_run_first_epoch_images_per_s": served / reopened,
        "cached_pass_images_per_s": served / cached,
        "cached_augmented_pass_images_per_s": augmented_count / augmented,
        "notebook_images_per_s": notebook_count / notebook,
    }
    result.update({name: round(value, 1) for name, value in rates.items()})
    result["speedup_cached_vs_notebook"] = round(
        rates["cached_pass_images_per_s"] / rates["notebook_images_per_s"], 1
    )
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
