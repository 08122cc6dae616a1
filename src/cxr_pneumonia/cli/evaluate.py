"""``evaluate`` and ``export``: how good a bundle is, and the bundle for serving."""

from __future__ import annotations

from typing import Any

import click

from cxr_pneumonia.cli import common
from cxr_pneumonia.cli.options import PROBABILITY, library_option, option
from cxr_pneumonia.cli.output import EXIT_OK, format_option, write_json, write_report

__all__ = ["evaluate", "export"]

_EVALUATE = "cxr_pneumonia.evaluation.scoring:evaluate"
_LOAD = "cxr_pneumonia.data.loading:load_dataset"
_PREDICTOR = "cxr_pneumonia.predictor:Predictor.__init__"
_EXPORT = "cxr_pneumonia.export:export_model"


@click.command(
    epilog="""\b
Examples:
  cxr-pneumonia evaluate bundles/cnn --data-dir chest_xray
  cxr-pneumonia evaluate bundles/cnn --data-dir my_xrays/ --format json > report.json""",
)
@click.argument("bundle", metavar="BUNDLE", type=click.Path())
@common.data_options
@library_option(
    _EVALUATE,
    "split",
    type=click.Choice(("train", "validation", "test", "all")),
    show_default="test, or all when the data has no test split",
    help="the split to score; all: every image (a folder without split sub-folders is "
    "an evaluation set)",
)
@library_option(_EVALUATE, "threshold", type=PROBABILITY, show_default="the bundle's")
@format_option()
@library_option(_PREDICTOR, "batch_size")
@library_option(_LOAD, "validation_fraction", help="as in training, for --split validation")
@library_option(_LOAD, "seed", help="seed of the validation split, as in training")
def evaluate(
    bundle: str,
    data: common.DataChoice,
    split: str | None,
    threshold: float | None,
    output_format: str,
    batch_size: int,
    validation_fraction: float,
    seed: int,
) -> int:
    """Evaluate a bundle on labelled images: metrics, confusion matrix, calibration.

    A table on a terminal, Markdown when written to a file or a pipe, or JSON.
    """
    from cxr_pneumonia.evaluation import evaluate as evaluate_model
    from cxr_pneumonia.evaluation.scoring import resolve_split

    predictor = common.load_predictor(bundle, batch_size=batch_size)
    splits = common.load_data(
        data,
        image_size=predictor.image_size,
        color_mode=predictor.color_mode,
        batch_size=batch_size,
        validation_fraction=validation_fraction,
        augment=False,
        seed=seed,
    )
    chosen = resolve_split(splits, split)
    report = evaluate_model(predictor, splits, split=chosen, threshold=threshold)
    if output_format == "json":
        result: dict[str, Any] = {"bundle": bundle, "data": splits.source, "split": chosen}
        result.update(report.to_dict(include_scores=False))
        write_json(result)
    else:
        write_report(f"{bundle} on {splits.source}, split {chosen}", report, report.to_markdown())
    return EXIT_OK


@click.command(
    epilog="""\b
Examples:
  cxr-pneumonia export bundles/cnn --format savedmodel --out serving/cnn/1
  cxr-pneumonia export bundles/cnn --format tflite --out cnn.tflite""",
)
@click.argument("bundle", metavar="BUNDLE", type=click.Path())
@library_option(
    _EXPORT,
    "format",
    "--format",
    "export_format",
    type=click.Choice(("savedmodel", "tflite")),
    default=None,
    required=True,
    show_default=False,
    help="savedmodel: a TensorFlow SavedModel (TF Serving); tflite: a TFLite file",
)
@option("--out", required=True, metavar="PATH", type=click.Path(), help="where to write it")
@library_option(_EXPORT, "overwrite", is_flag=True)
def export(bundle: str, export_format: str, out: str, overwrite: bool) -> int:
    """Export a bundle as a SavedModel (TF Serving) or a TFLite file; prints the path."""
    import logging

    from cxr_pneumonia.export import export_model

    path = export_model(bundle, out, format=export_format, overwrite=overwrite)
    logging.getLogger("cxr_pneumonia").info("exported %s as %s", bundle, export_format)
    click.echo(str(path))
    return EXIT_OK
