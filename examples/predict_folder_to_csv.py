"""Predict every image of a folder (recursively) and write the results as CSV.

The columns are those of ``cxr-pneumonia predict --format csv`` (one writer,
:func:`cxr_pneumonia.write_predictions_csv`): ``source, label, probability,
threshold, error``. Unreadable files do not stop the run: they get a row with
the reason in ``error`` (``errors="skip"``), and the exit code is 1 when any
failed::

    python examples/predict_folder_to_csv.py ~/xrays --out predictions.csv
    python examples/predict_folder_to_csv.py ~/xrays --model bundles/cnn --threshold 0.3

Without ``--model`` the model shipped with the package is used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxr_pneumonia import Predictor, write_predictions_csv
from cxr_pneumonia.images import IMAGE_EXTENSIONS


def find_images(folder: Path) -> list[Path]:
    """Image files (DICOM included) below ``folder``, sorted, hidden files left out."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in IMAGE_EXTENSIONS
        and not path.name.startswith(".")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", help="bundle folder (default: the shipped model)")
    parser.add_argument("--out", help="CSV file to write (default: standard output)")
    parser.add_argument(
        "--threshold", type=float, help="decision threshold (default: the bundle's)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    files = find_images(args.folder)
    if not files:
        parser.error(f"no image files in {args.folder}")
    predictor = (
        Predictor.load(args.model, batch_size=args.batch_size)
        if args.model
        else Predictor.default(batch_size=args.batch_size)
    )
    # One call: decoding runs in a thread pool and inference in batches.
    predictions = predictor.predict(files, errors="skip", threshold=args.threshold)

    # The same CSV format as `cxr-pneumonia predict --format csv`.
    write_predictions_csv(predictions, args.out or sys.stdout)
    failed = sum(not p.ok for p in predictions)
    print(f"{len(predictions) - failed} predicted, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
