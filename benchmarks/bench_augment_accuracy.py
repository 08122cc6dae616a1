"""No accuracy lost: the same short training with each augmentation path, as one JSON line.

Trains ``cnn-small`` from scratch for a few epochs on the real training split
(patient-grouped validation split of 15 %) with the default augmentation, once
per seed and per path:

* ``tf_kernel``: the augmentation as it was (TensorFlow's
  ``ImageProjectiveTransformV3`` kernel in the ``tf.data`` pipeline);
* ``pipeline``: the XLA-compiled augmentation in the pipeline (``augment_on="pipeline"``);
* ``device``: the same inside the training step (``augment_on="device"``).

All paths draw the same transforms for the same seed. It reports the final
validation ROC AUC of every run, the mean and range per path, and
``within_noise``: whether every path's mean is within the seed-to-seed range
(or 0.005) of the ``tf_kernel`` mean. Usage (about 3 minutes per run at the
defaults on 2 idle cores)::

    python benchmarks/bench_augment_accuracy.py [--epochs 5] [--size 128] [--seeds 0 1]
                                                [--paths tf_kernel pipeline device]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _machine
from bench_data import _legacy_augment

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "kermany2018-224"
PATHS = ("tf_kernel", "pipeline", "device")


def legacy_pipeline(data):
    """``data.train`` rebuilt with the old kernel-based augmentation (same draws)."""
    import tensorflow as tf

    from cxr_pneumonia.data.pipeline import make_dataset

    plain = make_dataset(
        data.images["train"],
        data.labels["train"],
        batch_size=data.batch_size,
        shuffle=True,
        augment=False,
        seed=data.seed,
    )
    seeds = tf.data.Dataset.random(seed=data.seed, rerandomize_each_iteration=True).batch(2)
    return (
        tf.data.Dataset.zip(plain, seeds)
        .map(
            lambda pair, key: (_legacy_augment(pair[0], key, data.augmentation), pair[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )


def main() -> None:
    """Run the trainings and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="data folder")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    _machine.add_arguments(parser)
    args = parser.parse_args()
    record = _machine.start("bench_augment_accuracy", allow_busy=args.allow_busy)

    import keras

    from cxr_pneumonia import Augmentation, build_model, fit, load_dataset

    runs: dict[str, list[float]] = {path: [] for path in args.paths}
    seconds: dict[str, list[float]] = {path: [] for path in args.paths}
    with tempfile.TemporaryDirectory(prefix="cxr-bench-acc-") as cache:
        for seed in args.seeds:
            data = load_dataset(
                data_dir=args.data,
                cache_dir=cache,
                image_size=(args.size, args.size),
                batch_size=32,
                validation_fraction=0.15,
                augment=Augmentation(),
                seed=seed,
                progress=False,
            )
            for path in args.paths:
                keras.utils.set_random_seed(seed)
                model = build_model("cnn-small", input_shape=(args.size, args.size, 1))
                chosen = data
                if path == "tf_kernel":
                    chosen = dataclasses.replace(data, train=legacy_pipeline(data))
                began = time.perf_counter()
                result = fit(
                    model,
                    chosen,
                    epochs=args.epochs,
                    callbacks=None,
                    seed=seed,
                    verbose=0,
                    augment_on="device" if path == "device" else "pipeline",
                )
                seconds[path].append(round(time.perf_counter() - began, 1))
                runs[path].append(round(float(result.history["val_auc"][-1]), 4))
                keras.backend.clear_session()

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "mean": round(statistics.fmean(values), 4),
            "range": round(max(values) - min(values), 4),
        }

    summaries = {path: summary(values) for path, values in runs.items()}
    noise = max([0.005, *(s["range"] for s in summaries.values())])
    reference = summaries.get("tf_kernel", next(iter(summaries.values())))["mean"]
    record.update(
        {
            "model": "cnn-small",
            "epochs": args.epochs,
            "image_size": args.size,
            "seeds": args.seeds,
            "val_auc": runs,
            "summary": summaries,
            "fit_seconds": seconds,
            "noise": noise,
            "within_noise": all(abs(s["mean"] - reference) <= noise for s in summaries.values()),
        }
    )
    _machine.finish(record)


if __name__ == "__main__":
    main()
