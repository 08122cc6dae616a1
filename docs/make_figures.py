"""Draw the documentation's figures of a model bundle (needs the ``plot`` extra).

Writes into ``--out`` (default ``docs/figures``):

* ``roc.png``, ``precision-recall.png``, ``confusion-matrix.png``,
  ``calibration.png``: the bundle on its patient-grouped validation split
  (rebuilt from ``--data-dir`` with the bundle's image size, color mode,
  validation fraction and seed as its metadata records them), at its threshold;
* ``training-history.png``: from the CSV log of the training run, if given;
* ``gradcam-<name>.png``: Grad-CAM overlays of the images given with ``--images``
  (e.g. the sample images shipped with the package).

For the shipped model::

    python docs/make_figures.py --data-dir ../shared/data/kermany2018-224 \\
        --log default_model.checkpoints/training_log.csv --images sample1.jpeg sample2.jpeg
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from cxr_pneumonia import Predictor, evaluate, load_dataset
from cxr_pneumonia.plots import (
    plot_calibration,
    plot_confusion_matrix,
    plot_history,
    plot_precision_recall,
    plot_roc,
)


def read_log(path: Path) -> dict[str, list[float]]:
    """A Keras ``CSVLogger`` file as ``{metric: [value per epoch]}``."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = [name for name in rows[0] if name != "epoch"] if rows else []
    return {name: [float(row[name]) for row in rows if row[name] != ""] for name in names}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle folder (default: the shipped model)")
    parser.add_argument("--data-dir", required=True, help="the data the bundle was trained on")
    parser.add_argument(
        "--validation-fraction", type=float, help="default: the one the bundle records, else 0.1"
    )
    parser.add_argument("--seed", type=int, help="default: the one the bundle records, else 0")
    parser.add_argument("--log", type=Path, help="training_log.csv of the training run")
    parser.add_argument("--images", nargs="*", default=[], help="images for Grad-CAM overlays")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "figures")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.load(args.model) if args.model else Predictor.default()
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
    print(report.to_markdown())
    if args.log:
        plot_history(read_log(args.log), args.out / "training-history.png")
    for image in args.images:
        overlay = predictor.explain(image).overlay
        overlay.thumbnail((640, 640))  # small enough for a web page
        overlay.save(args.out / f"gradcam-{Path(image).stem}.png")
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
