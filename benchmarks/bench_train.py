"""Training throughput (images/s) at 224 px on this machine, as one JSON line.

Times ``train_on_batch`` of ``cnn``, ``cnn-small`` and ``resnet50``
(``weights=None``, all from random weights, as if training from scratch) on real
radiographs from the shared data, decoded with :func:`cxr_pneumonia.prepare_image`
(the package's one preprocessing path; no data pipeline module needed)::

    python benchmarks/bench_train.py                   # 2 warm-up + 5 timed steps
    python benchmarks/bench_train.py --steps 2 --models cnn-small

Run it on an otherwise idle machine: the numbers are only as steady as the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from cxr_pneumonia.images import IMAGE_EXTENSIONS, prepare_image

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kermany2018-224" / "train"
DEFAULT_MODELS = ("cnn", "cnn-small", "resnet50")


def load_batch(root: Path, count: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images, half NORMAL and half PNEUMONIA, as uint8 (count, size, size, 1)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise SystemExit(f"no images in {root / name}")
        wanted = count // 2 if label == 0 else count - count // 2
        for index in rng.choice(len(files), size=wanted, replace=len(files) < wanted):
            images.append(prepare_image(files[index], size=(size, size), color_mode="grayscale"))
            labels.append(label)
    order = rng.permutation(len(images))
    return np.stack(images)[order], np.asarray(labels, dtype="float32")[order, None]


def images_per_second(
    name: str, images: np.ndarray, labels: np.ndarray, *, warmup: int, steps: int
) -> float:
    """Train ``name`` for ``warmup`` untimed then ``steps`` timed steps on one batch."""
    import keras

    from cxr_pneumonia.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model(name, input_shape=images.shape[1:], weights=None)
    with model.distribute_strategy.scope():
        model.compile(optimizer="adam", loss="binary_crossentropy")
    for _ in range(warmup):
        model.train_on_batch(images, labels)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, labels)
    elapsed = time.perf_counter() - start
    keras.backend.clear_session()
    return len(images) * steps / elapsed


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmark, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder with NORMAL/ and PNEUMONIA/"
    )
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)

    import tensorflow as tf

    images, labels = load_batch(args.data, args.batch_size, args.size)
    results = {
        name: round(
            images_per_second(name, images, labels, warmup=args.warmup, steps=args.steps), 2
        )
        for name in args.models
    }
    record = {
        "benchmark": "train_images_per_second",
        "image_size": args.size,
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup,
        "steps": args.steps,
        "images_per_second": results,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "tensorflow": tf.__version__,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
