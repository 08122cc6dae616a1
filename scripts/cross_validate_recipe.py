"""Patient-grouped K-fold of the default recipe: mean and spread of the validation figures.

::

    python scripts/cross_validate_recipe.py --data-dir ../shared/data/kermany2018-224 \\
        [--folds 5] [--model cnn-small] [--label-smoothing 0.1] [--fill-mode constant \\
        --fill-value 128] [--out runs/kfold/report.json]

pools the training files (all of them: ``train`` plus the patient-grouped
validation part), cuts them into ``--folds`` class-stratified folds that keep
each patient on one side, trains a fresh ``--model`` per fold with the
defaults of `fit` (the recipe of the shipped model: AdamW, EMA, warmup-cosine,
60 epochs, the default augmentation, balanced class weights; ``--fill-mode`` and
``--fill-value`` change how the augmentation fills pixels from outside the
image, as ``train``'s flags do) and prints each
fold's validation ROC AUC, accuracy, precision and recall, their mean and
sample standard deviation. Fold ``k`` trains with seed ``--seed + k`` and
checkpoints in ``--checkpoint-dir/fold-k``: an interrupted run resumes there.
The validation split of one run is saturated (ROC AUC 0.998); the spread over
folds says which differences between recipes are noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from cxr_pneumonia.data.augment import Augmentation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="training images, one folder per class")
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument("--model", default="cnn-small", help="registry name (default cnn-small)")
    parser.add_argument("--image-size", type=int, default=224, help="side in pixels (224)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and training")
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per fold (default: fit's, the recipe's)"
    )
    parser.add_argument(
        "--label-smoothing", type=float, default=0.0, help="fit's label_smoothing (default 0)"
    )
    parser.add_argument("--mixup", type=float, default=0.0, help="fit's mixup alpha (default 0)")
    recipe = Augmentation()
    parser.add_argument(
        "--fill-mode",
        choices=("nearest", "constant"),
        default=recipe.fill_mode,
        help=f"augmentation fill mode (default {recipe.fill_mode}, the recipe's)",
    )
    parser.add_argument(
        "--fill-value",
        type=float,
        default=recipe.fill_value,
        help=f"grey level of --fill-mode constant (default {recipe.fill_value:g})",
    )
    parser.add_argument(
        "--checkpoint-dir", default="runs/kfold/checkpoints", help="per-fold checkpoints"
    )
    parser.add_argument("--out", default="runs/kfold/report.json", help="JSON report to write")
    args = parser.parse_args(argv)

    from cxr_pneumonia import load_dataset
    from cxr_pneumonia.training import cross_validate
    from cxr_pneumonia.training.fitting import DEFAULT_EPOCHS

    epochs = DEFAULT_EPOCHS if args.epochs is None else args.epochs
    augment = dataclasses.replace(recipe, fill_mode=args.fill_mode, fill_value=args.fill_value)

    data = load_dataset(
        data_dir=args.data_dir,
        image_size=(args.image_size, args.image_size),
        color_mode="grayscale",
        augment=False,  # cross_validate pools the files and augments each fold's own training part
        seed=args.seed,
        progress=False,
    )
    result = cross_validate(
        args.model,
        data,
        folds=args.folds,
        epochs=epochs,
        seed=args.seed,
        model_options={"weights": None},
        augment=augment,
        checkpoint_dir=args.checkpoint_dir,
        label_smoothing=args.label_smoothing,
        mixup=args.mixup,
        verbose=2,
    )
    print(result.summary())
    report = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "model": args.model,
        "folds": result.folds,
        "seed": result.seed,
        "epochs": epochs,
        "label_smoothing": args.label_smoothing,
        "mixup": args.mixup,
        "augmentation": dataclasses.asdict(augment),
        "fold_sizes": [list(size) for size in result.fold_sizes],
        "fold_metrics": list(result.fold_metrics),
        "mean": result.mean,
        "std": result.std,
        "wall_time_s": round(result.wall_time, 1),
        "load_average": os.getloadavg(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    partial.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
