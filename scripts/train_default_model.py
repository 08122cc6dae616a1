"""Rebuild the default model shipped in ``cxr_pneumonia/assets/default_model``.

Trains ``cnn-small`` from scratch on the Kermany et al. (2018) training split
(``../shared/data/kermany2018-224``, or any folder in a layout
``load_dataset`` accepts) with a patient-grouped validation split, picks the
decision threshold that keeps validation sensitivity at the target, and saves
a bundle that records this command, the seed, the data and its validation
figures. The defaults are the recipe of the shipped model::

    python scripts/train_default_model.py --data-dir ../shared/data/kermany2018-224

Runs on a 2-core CPU in about an hour with the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path

import keras

import cxr_pneumonia
from cxr_pneumonia.bundle import save_model
from cxr_pneumonia.data import Augmentation, load_dataset
from cxr_pneumonia.evaluation import choose_threshold, evaluate
from cxr_pneumonia.models import build_model
from cxr_pneumonia.training import fit
from cxr_pneumonia.training.callbacks import warmup_cosine_decay

DEFAULT_OUT = (
    Path(__file__).resolve().parents[1] / "src" / "cxr_pneumonia" / "assets" / "default_model"
)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="training images (e.g. kermany2018-224)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="bundle folder to write")
    parser.add_argument("--model", default="cnn-small")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="peak rate")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep an exponential moving average of the weights (default: on)",
    )
    parser.add_argument("--zoom", type=float, default=0.15)
    parser.add_argument("--brightness", type=float, default=0.15)
    parser.add_argument("--contrast", type=float, default=0.25)
    parser.add_argument("--validation-fraction", type=float, default=0.15)
    parser.add_argument("--target-sensitivity", type=float, default=0.97)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-dir", default=None, help="default: a folder beside --out")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    size = (args.image_size, args.image_size)
    augmentation = Augmentation(zoom=args.zoom, brightness=args.brightness, contrast=args.contrast)
    data = load_dataset(
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        image_size=size,
        color_mode="grayscale",
        batch_size=args.batch_size,
        validation_fraction=args.validation_fraction,
        augment=augmentation,
        seed=args.seed,
    )
    logging.info("\n%s", data.summary())
    model = build_model(args.model, input_shape=(*size, 1), weights=None)
    checkpoint_dir = args.checkpoint_dir or f"{args.out}.checkpoints"
    started = time.perf_counter()
    # A fixed-length warmup + cosine run (no early stopping on the noisy
    # validation loss); the validation split is used once, at the end, to
    # choose the threshold.
    optimizer = keras.optimizers.AdamW(
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        use_ema=args.ema,
        ema_momentum=0.99,
    )
    schedule = warmup_cosine_decay(
        args.learning_rate, epochs=args.epochs, warmup=args.warmup_epochs
    )
    result = fit(
        model,
        data,
        epochs=args.epochs,
        optimizer=optimizer,
        callbacks=[keras.callbacks.LearningRateScheduler(schedule)],
        checkpoint_dir=checkpoint_dir,
        seed=args.seed,
        verbose=2,
    )
    wall = time.perf_counter() - started
    report = evaluate(model, data, split="validation")
    threshold = choose_threshold(
        report.labels, report.scores, target_sensitivity=args.target_sensitivity
    )
    chosen = report.at_threshold(threshold)
    logging.info("validation at threshold %.4f:\n%s", threshold, chosen.to_markdown())
    command = "python scripts/train_default_model.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    training = {
        "command": command,
        "seed": args.seed,
        "validation_fraction": args.validation_fraction,
        "data": {
            "source": "Kermany et al. 2018, training split (kermany2018-224: 5,216 images, 224 px)",
            "data_dir": Path(args.data_dir).name,
            "class_counts": data.class_counts,
            "validation": f"patient-grouped, class-stratified, fraction {args.validation_fraction}",
        },
        "model": args.model,
        "image_size": list(size),
        "epochs_run": len(result.epochs),
        "best_epoch": result.best_epoch,
        "optimizer": f"AdamW(weight_decay={args.weight_decay}, ema={args.ema})",
        "schedule": f"warmup {args.warmup_epochs} epochs, cosine decay from {args.learning_rate}",
        "batch_size": args.batch_size,
        "augmentation": dataclasses.asdict(augmentation),
        "target_sensitivity": args.target_sensitivity,
        "wall_time_s": round(wall, 1),
        "library_version": cxr_pneumonia.__version__,
        "git_commit": _git_commit(),
    }
    save_model(
        model,
        args.out,
        threshold=threshold,
        image_size=size,
        color_mode="grayscale",
        metrics=chosen.to_dict(include_scores=False),
        training=training,
        overwrite=True,
    )
    print(
        json.dumps(
            {
                "out": args.out,
                "threshold": threshold,
                "wall_time_s": round(wall, 1),
                "validation": chosen.to_dict(include_scores=False),
            },
            indent=2,
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
