"""Training speed on this machine, steadily measured, as one JSON line.

Two measures:

* ``images_per_second``: ``train_on_batch`` of ``cnn``, ``cnn-small`` and
  ``resnet50`` (``weights=None``, from random weights, as when training from
  scratch) on one batch of real radiographs from the shared data, decoded with
  :func:`cxr_pneumonia.prepare_image`: ``--warmup`` untimed steps (tracing,
  oneDNN kernel choice, thread pools), then ``--windows`` timed windows of
  ``--steps`` steps each; the median images/s with ``min`` / ``max`` /
  ``spread`` in ``details``.
* ``recipe_epoch_s``: the wall time of one epoch of the shipped model's recipe
  (``scripts/train_default_model.sh``: ``cnn-small``, 224 px grayscale, batch
  32, 15 % patient-grouped validation, AdamW with weight decay 1e-4 and EMA,
  augmentation zoom 0.15 / brightness 0.15 / contrast 0.25) through
  :func:`cxr_pneumonia.fit` on the training split: ``--recipe-epochs`` epochs,
  the first includes tracing (``recipe_first_epoch_s``), the last is the
  steady figure; validation included. ``--recipe-epochs 0`` skips it.

The load average is printed before and after; a busy machine is refused
unless ``--allow-busy`` (then the figures are flagged). Usage::

    python benchmarks/bench_train.py
    python benchmarks/bench_train.py --models cnn-small --windows 3 --recipe-epochs 0
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
import numpy as np

from cxr_pneumonia.images import IMAGE_EXTENSIONS, prepare_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "kermany2018-224"
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


def model_speed(
    name: str, images: np.ndarray, labels: np.ndarray, *, warmup: int, windows: int, steps: int
) -> dict:
    """Images/s of ``train_on_batch`` over timed windows, after a warm-up."""
    import keras

    from cxr_pneumonia.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model(name, input_shape=images.shape[1:], weights=None)
    with model.distribute_strategy.scope():
        model.compile(optimizer="adam", loss="binary_crossentropy")

    def window() -> int:
        for _ in range(steps):
            model.train_on_batch(images, labels)
        return len(images) * steps

    for _ in range(max(1, warmup)):  # build, trace, choose kernels
        model.train_on_batch(images, labels)
    timed = _machine.timed_windows(window, warmup=0, windows=windows)
    keras.backend.clear_session()
    return timed


def recipe_epochs(data_dir: Path, epochs: int) -> dict:
    """Wall time of each epoch of the shipped model's recipe through ``fit``."""
    import keras

    from cxr_pneumonia import Augmentation, build_model, fit, load_dataset
    from cxr_pneumonia.training.options import OPTIMIZERS

    with tempfile.TemporaryDirectory(prefix="cxr-bench-train-") as cache:
        data = load_dataset(
            data_dir=data_dir,
            cache_dir=cache,
            image_size=(224, 224),
            color_mode="grayscale",
            batch_size=32,
            validation_fraction=0.15,
            augment=Augmentation(zoom=0.15, brightness=0.15, contrast=0.25),
            seed=0,
            progress=False,
        )
        model = build_model("cnn-small", input_shape=(224, 224, 1), weights=None)
        times: list[float] = []

        class EpochTimer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                self.began = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                times.append(time.perf_counter() - self.began)

        optimizer = OPTIMIZERS["adamw"](learning_rate=0.002, weight_decay=1e-4, use_ema=True)
        fit(model, data, epochs=epochs, optimizer=optimizer, callbacks=[EpochTimer()], verbose=0)
        train_images = len(data.labels["train"])
        validation_images = len(data.labels.get("validation", ()))
    return {
        "recipe_epoch_s": round(times[-1], 1),
        "recipe_first_epoch_s": round(times[0], 1),
        "recipe_epoch_times_s": [round(t, 1) for t in times],
        "recipe_train_images": train_images,
        "recipe_validation_images": validation_images,
        "recipe_train_images_per_s": round(train_images / times[-1], 1),
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmark, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=SHARED, help="data folder (with train/NORMAL, train/PNEUMONIA)"
    )
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per model")
    parser.add_argument("--windows", type=int, default=5, help="timed windows per model")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed window")
    parser.add_argument(
        "--recipe-epochs", type=int, default=2, help="epochs of the recipe timing (0: skip)"
    )
    _machine.add_arguments(parser)
    args = parser.parse_args(argv)
    record = _machine.start("bench_train", allow_busy=args.allow_busy)

    import tensorflow as tf

    images, labels = load_batch(args.data / "train", args.batch_size, args.size)
    details = {}
    for name in args.models:
        details[name] = model_speed(
            name, images, labels, warmup=args.warmup, windows=args.windows, steps=args.steps
        )
    record.update(
        {
            "image_size": args.size,
            "batch_size": args.batch_size,
            "warmup_steps": args.warmup,
            "windows": args.windows,
            "steps_per_window": args.steps,
            "images_per_second": {name: value["median"] for name, value in details.items()},
            "spread": {name: value["spread"] for name, value in details.items()},
            "details": details,
            "machine": platform.machine(),
            "tensorflow": tf.__version__,
        }
    )
    if args.recipe_epochs > 0:
        record.update(recipe_epochs(args.data, args.recipe_epochs))
    _machine.finish(record)


if __name__ == "__main__":
    main()
