"""Measure a bundle's out-of-distribution check: what it accepts, what it flags, what it costs.

::

    python scripts/make_ood_corpus.py --out runs/ood-corpus
    python scripts/measure_ood.py --data-dir ../shared/data/kermany2018-224 \\
        --corpus runs/ood-corpus [--model BUNDLE] [--out runs/ood/report.json]

reports, as Markdown tables on standard output (and JSON with ``--out``):

* acceptance of the bundle's patient-grouped validation chest X-rays (the
  split of its training run: ``validation_fraction`` and ``seed`` are read
  from its metadata);
* acceptance of the same images under every acquisition shift of
  `cxr_pneumonia.shifts.DEFAULT_SHIFTS` (still chest X-rays: they
  should stay accepted);
* the share of the non-chest-X-ray corpus flagged, per category;
* the added inference cost: seconds per image of ``predict_arrays`` with the
  check and with ``ood="ignore"`` (one forward pass either way; the check
  adds the feature read-out and the distance).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from cxr_pneumonia.data import load_dataset
from cxr_pneumonia.images import prepare_image
from cxr_pneumonia.predictor import Predictor
from cxr_pneumonia.shifts import DEFAULT_SHIFTS, apply_shift


def load_corpus(folder: Path, predictor: Predictor) -> tuple[np.ndarray, list[dict[str, str]]]:
    with (folder / "manifest.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    images = np.stack(
        [
            prepare_image(
                folder / row["file"], size=predictor.image_size, color_mode=predictor.color_mode
            )
            for row in rows
        ]
    )
    return images, rows


def timing(checked: Predictor, plain: Predictor, images: np.ndarray, repeats: int) -> dict:
    """Best-of-``repeats`` seconds per image, alternating the two predictors."""
    best = {"with_check": np.inf, "without_check": np.inf}
    checked.predict_arrays(images[:8])  # warm up both graphs
    plain.predict_arrays(images[:8])
    for _ in range(repeats):
        for key, predictor in (("with_check", checked), ("without_check", plain)):
            start = time.perf_counter()
            predictor.predict_arrays(images)
            best[key] = min(best[key], (time.perf_counter() - start) / len(images))
    best["added_cost"] = best["with_check"] / best["without_check"] - 1.0
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="bundle folder (default: the shipped model)")
    parser.add_argument("--data-dir", required=True, help="the bundle's training data folder")
    parser.add_argument("--corpus", default="runs/ood-corpus", help="from make_ood_corpus.py")
    parser.add_argument("--out", help="write the figures as JSON here too")
    parser.add_argument("--timing-images", type=int, default=256)
    parser.add_argument("--timing-repeats", type=int, default=3)
    args = parser.parse_args(argv)

    load = Predictor.load if args.model else None
    checked = load(args.model) if load else Predictor.default()
    plain = load(args.model, ood="ignore") if load else Predictor.default(ood="ignore")
    check = checked.ood_check
    if check is None:
        sys.exit("the bundle has no OOD check; add one with `cxr-pneumonia ood-fit`")
    training = checked.metadata.training
    data_info = training.get("data", {}) if isinstance(training, dict) else {}
    data = load_dataset(
        data_dir=args.data_dir,
        image_size=checked.image_size,
        color_mode=checked.color_mode,
        validation_fraction=float(data_info.get("validation_fraction", 0.1)),
        seed=int(training.get("seed", 0)),
        augment=False,
        progress=False,
    )
    validation = np.asarray(data.images["validation"])
    report: dict = {
        "model": args.model or "default",
        "feature_layers": list(check.feature_layers),
        "threshold": check.threshold,
        "acceptance_target": check.acceptance,
    }
    scores = checked.ood_scores(validation)
    report["validation"] = {"n": len(scores), "accepted": float(np.mean(scores <= check.threshold))}

    shifted = {}
    for name, strengths in DEFAULT_SHIFTS.items():
        for strength in strengths:
            moved = apply_shift(validation, name, strength, seed=0)
            accepted = float(np.mean(checked.ood_scores(moved) <= check.threshold))
            shifted[f"{name} {strength:g}"] = accepted
    report["shifted"] = shifted

    corpus, rows = load_corpus(Path(args.corpus), checked)
    corpus_scores = checked.ood_scores(corpus)
    flagged = corpus_scores > check.threshold
    categories = sorted({row["category"] for row in rows})
    per_category = {}
    for category in categories:
        mask = np.array([row["category"] == category for row in rows])
        per_category[category] = {"n": int(mask.sum()), "flagged": float(flagged[mask].mean())}
    report["corpus"] = {
        "n": len(rows),
        "flagged": float(flagged.mean()),
        "categories": per_category,
        "accepted_files": [row["file"] for row, f in zip(rows, flagged, strict=True) if not f],
    }
    report["timing"] = timing(
        checked, plain, validation[: args.timing_images], repeats=args.timing_repeats
    )

    print(
        f"OOD check of {report['model']}: {', '.join(check.feature_layers)}, "
        f"threshold {check.threshold:.4g}\n"
    )
    print("| images | n | accepted |\n|:--|--:|--:|")
    print(
        f"| validation chest X-rays | {len(scores)} | "
        f"{100 * report['validation']['accepted']:.1f} % |"
    )
    accepted_shifts = list(shifted.values())
    print(
        f"| shifted validation chest X-rays (all {len(shifted)} shifts) | "
        f"{len(scores) * len(shifted)} | {100 * np.mean(accepted_shifts):.1f} % |"
    )
    print("\n| shift | accepted |\n|:--|--:|")
    for key, value in shifted.items():
        print(f"| {key} | {100 * value:.1f} % |")
    print("\n| non-chest-X-ray category | n | flagged |\n|:--|--:|--:|")
    for category, figures in per_category.items():
        print(f"| {category} | {figures['n']} | {100 * figures['flagged']:.1f} % |")
    print(f"| **all** | {len(rows)} | **{100 * report['corpus']['flagged']:.1f} %** |")
    print(f"\naccepted corpus files: {', '.join(report['corpus']['accepted_files']) or 'none'}")
    t = report["timing"]
    print(
        f"\ninference: {1000 * t['with_check']:.2f} ms/image with the check, "
        f"{1000 * t['without_check']:.2f} ms/image without ({100 * t['added_cost']:+.1f} %)"
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
