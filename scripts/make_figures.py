"""Draw the documentation's figures of a model bundle (needs the ``plot`` extra).

Writes into ``--out`` (default ``docs/figures``):

* with ``--data-dir``: ``roc.png``, ``precision-recall.png``,
  ``confusion-matrix.png``, ``calibration.png``: the bundle on its
  patient-grouped validation split (rebuilt from ``--data-dir`` with the
  bundle's image size, color mode, validation fraction and seed as its
  metadata records them), at its threshold;
* with ``--log``: ``training-history.png``, from the CSV log of the training run;
* with ``--images``: ``gradcam-<name>.png`` for each image, the Grad-CAM overlay
  titled with the file name, predicted label, probability and threshold, with
  a colour bar; and ``feature-maps-<name>.png`` for the first of them, the
  activations of the model's first three convolutions.

For the shipped model (it lives in ``scripts/``, outside the docs site)::

    python scripts/make_figures.py --data-dir ../shared/data/kermany2018-224 \\
        --log default_model.checkpoints/training_log.csv \\
        --images src/cxr_pneumonia/assets/samples/*.jpeg
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from cxr_pneumonia import Predictor, evaluate, feature_maps, load_dataset
from cxr_pneumonia.gradcam import conv_layer_names
from cxr_pneumonia.plots import (
    plot_calibration,
    plot_confusion_matrix,
    plot_feature_maps,
    plot_gradcam,
    plot_history,
    plot_precision_recall,
    plot_roc,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"


def read_log(path: Path) -> dict[str, list[float]]:
    """A ``training_log.csv`` as ``{metric: [value per epoch]}``."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = [name for name in rows[0] if name != "epoch"] if rows else []
    return {name: [float(row[name]) for row in rows if row[name] != ""] for name in names}


def evaluation_figures(predictor: Predictor, args: argparse.Namespace) -> None:
    """The curves of the bundle on its validation split, rebuilt as it was trained."""
    training = predictor.metadata.training
    if args.validation_fraction is None:
        recorded = training.get("data", {}).get("validation_fraction")
        args.validation_fraction = float(training.get("validation_fraction", recorded or 0.1))
    if args.seed is None:
        args.seed = int(training.get("seed", 0))
    data = load_dataset(
        data_dir=args.data_dir,
        image_size=predictor.image_size,
        color_mode=predictor.color_mode,
        validation_fraction=args.validation_fraction,
        augment=False,
        seed=args.seed,
        progress=False,
    )
    report = evaluate(predictor, data, split="validation")
    plot_roc(report, args.out / "roc.png")
    plot_precision_recall(report, args.out / "precision-recall.png")
    plot_confusion_matrix(report, args.out / "confusion-matrix.png")
    plot_calibration(report, args.out / "calibration.png")
    print(report.to_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle folder (default: the shipped model)")
    parser.add_argument("--data-dir", help="the data the bundle was trained on (for the curves)")
    parser.add_argument(
        "--validation-fraction", type=float, help="default: the one the bundle records, else 0.1"
    )
    parser.add_argument("--seed", type=int, help="default: the one the bundle records, else 0")
    parser.add_argument("--log", type=Path, help="training_log.csv of the training run")
    parser.add_argument("--images", nargs="*", default=[], help="images for Grad-CAM overlays")
    parser.add_argument("--out", type=Path, default=DOCS / "figures")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.load(args.model) if args.model else Predictor.default()
    if args.data_dir:
        evaluation_figures(predictor, args)
    if args.log:
        plot_history(read_log(args.log), args.out / "training-history.png")
    for image in args.images:
        explanation = predictor.explain(image)
        plot_gradcam(
            explanation, args.out / f"gradcam-{Path(image).stem}.png", title=Path(image).name
        )
    if args.images:
        layers = conv_layer_names(predictor.model)[:3]
        maps = feature_maps(predictor, args.images[0], layers=layers)
        plot_feature_maps(
            maps, args.out / f"feature-maps-{Path(args.images[0]).stem}.png", max_channels=8
        )
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
