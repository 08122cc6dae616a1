"""``predict`` and ``explain``: a model's answer, and why, for image files."""

from __future__ import annotations

import glob
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from cxr_pneumonia.cli.common import load_predictor, model_option, ood_option
from cxr_pneumonia.cli.options import PROBABILITY, library_option, option
from cxr_pneumonia.cli.output import (
    EXIT_FAILED,
    EXIT_OK,
    error,
    format_option,
    write_json,
    write_table,
)
from cxr_pneumonia.exceptions import OutOfDistributionError
from cxr_pneumonia.images import IMAGE_EXTENSIONS, find_image_files

__all__ = ["expand_inputs", "explain", "predict"]

_logger = logging.getLogger("cxr_pneumonia")

_PREDICT = "cxr_pneumonia.predictor:Predictor.predict"
_EXPLAIN = "cxr_pneumonia.predictor:Predictor.explain"
_PREDICTOR = "cxr_pneumonia.predictor:Predictor.__init__"
_OVERLAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@click.command(
    epilog="""\b
Examples:
  cxr-pneumonia predict xray.jpeg scans/ 'more/**/*.png'
  cxr-pneumonia predict scans/ --model bundles/cnn --format csv > predictions.csv""",
)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@model_option
@format_option("table", "csv", "json")
@library_option(_PREDICT, "threshold", type=PROBABILITY, show_default="the bundle's")
@library_option(
    _PREDICT,
    "errors",
    type=click.Choice(("raise", "skip")),
    default="skip",
    help="raise: stop at the first unreadable input; skip: report it and go on",
)
@library_option(_PREDICTOR, "batch_size")
@ood_option
def predict(
    inputs: Sequence[str],
    bundle: str | None,
    output_format: str,
    threshold: float | None,
    errors: str,
    batch_size: int,
    ood: str,
) -> int:
    """Predict NORMAL or PNEUMONIA for image files, folders (searched recursively) or globs.

    Quote glob patterns ('scans/**/*.png') so the shell leaves them to us.
    Unreadable inputs are named on standard error and make the exit code 1.
    """
    files, unmatched = expand_inputs(inputs)
    for pattern, reason in unmatched:
        error(f"{pattern}: {reason}")
    if unmatched and (errors == "raise" or not files):
        return EXIT_FAILED
    predictor = load_predictor(bundle, batch_size=batch_size, ood=ood)
    with predictor:
        predictions = predictor.predict(files, errors=errors, threshold=threshold)
    failed = [p for p in predictions if p.error is not None]
    for p in failed:
        reason = str(p.error)
        # Image errors already start with the file's name; don't say it twice.
        error(reason if reason.startswith(str(p.source)) else f"{p.source}: {reason}")
    _write_predictions(predictions, output_format)
    flagged = [p for p in predictions if p.error is None and p.in_distribution is False]
    if flagged:
        _logger.warning(
            "%d of %d input(s) do not look like the chest X-rays the model was trained on "
            "(flagged OUT-OF-DISTRIBUTION): their labels are not to be trusted",
            len(flagged),
            len(predictions),
        )
    return EXIT_FAILED if failed or unmatched else EXIT_OK


def _write_predictions(predictions: list[Any], output_format: str) -> None:
    if output_format == "json":
        write_json(
            [
                {
                    "source": str(p.source),
                    "label": p.label,
                    "probability": p.probability,
                    "threshold": p.threshold,
                    "in_distribution": p.in_distribution,
                    "ood_score": p.ood_score,
                    "error": p.error,
                }
                for p in predictions
            ]
        )
    elif output_format == "csv":
        import sys

        from cxr_pneumonia.predictions_csv import write_predictions_csv

        write_predictions_csv(predictions, sys.stdout)  # the one CSV format
    else:
        rows = [
            [
                str(p.source),
                p.label or "(failed)",
                "-" if p.probability is None else f"{p.probability:.4f}",
                _check_cell(p),
            ]
            for p in predictions
        ]
        write_table(["source", "label", "probability", "check"], rows)


def _check_cell(prediction: Any) -> str:
    """The table's OOD column: ``ok``, a loud flag, or ``-`` when not checked."""
    if prediction.in_distribution is True:
        return "ok"
    if prediction.in_distribution is False:
        return f"OUT-OF-DISTRIBUTION (score {prediction.ood_score:.4g})"
    return "-"


def expand_inputs(patterns: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The files to predict, and ``(pattern, reason)`` for each pattern that gave none.

    Args:
        patterns: Files, folders (searched recursively for image files) or glob patterns.

    Returns:
        ``(files, unmatched)``; a missing file is kept in ``files`` for the
        Predictor to report.
    """

    found: list[str] = []
    failed: list[tuple[str, str]] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            paths, skipped = find_image_files(path)
            images = [str(p) for p in paths]
            for skipped_path, reason in skipped:
                _logger.warning("skipped %s: %s", skipped_path, reason)
            if not images:
                extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
                failed.append((pattern, f"no image files in this folder (suffixes: {extensions})"))
            found.extend(images)
        elif not path.exists() and glob.has_magic(pattern):
            matches = [m for m in sorted(glob.glob(pattern, recursive=True)) if Path(m).is_file()]
            if not matches:
                failed.append((pattern, "no file matches this pattern"))
            found.extend(matches)
        else:
            found.append(pattern)  # a missing or bad file is reported by the Predictor
    return found, failed


@click.command(
    epilog="""\b
Examples:
  cxr-pneumonia explain xray.jpeg --out xray-gradcam.png
  cxr-pneumonia explain xray.jpeg --out map.png --model bundles/cnn --layer conv2""",
)
@click.argument("image", metavar="INPUT")
@option(
    "--out",
    required=True,
    metavar="PNG",
    type=click.Path(dir_okay=False),
    help="where to write the overlay (an image file name such as heatmap.png)",
)
@model_option
@library_option(_EXPLAIN, "layer", show_default="the last convolutional stage")
@library_option(_EXPLAIN, "alpha")
@ood_option
def explain(
    image: str, out: str, bundle: str | None, layer: str | None, alpha: float, ood: str
) -> int:
    """Write a Grad-CAM overlay of one image: where the evidence for the prediction lies."""
    target = Path(out)
    if target.suffix.lower() not in _OVERLAY_SUFFIXES:
        msg = f"--out {target}: give an image file name such as heatmap.png"
        raise ValueError(msg)
    predictor = load_predictor(bundle, ood=ood)
    explanation = predictor.explain(image, layer=layer, alpha=alpha)
    p = explanation.prediction
    if p.in_distribution is False and ood == "error":
        msg = (
            f"{image}: does not look like a chest X-ray the model was trained on (OOD "
            f"score {p.ood_score:.4g} > threshold {predictor.ood_check.threshold:.4g}); "
            "no explanation written (use --ood flag to write one anyway)"
        )
        raise OutOfDistributionError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    explanation.overlay.save(target)
    click.echo(
        f"{image}: {p.label} (probability {p.probability:.4f}, threshold {p.threshold:.4f}); "
        f"Grad-CAM of layer {explanation.layer!r} written to {target}"
    )
    if p.in_distribution is False:
        _logger.warning(
            "%s: OUT-OF-DISTRIBUTION: the image does not look like the chest X-rays the model "
            "was trained on (OOD score %.4g > threshold %.4g); the label and heatmap are not "
            "to be trusted",
            image,
            p.ood_score,
            predictor.ood_check.threshold,
        )
    return EXIT_OK
