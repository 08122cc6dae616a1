"""``ensemble`` and ``shift-report``: averaging bundles, and scoring under acquisition shifts."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from cxr_pneumonia.cli import common
from cxr_pneumonia.cli.options import (
    FRACTION,
    NON_NEGATIVE_INT,
    PROBABILITY,
    library_option,
    option,
)
from cxr_pneumonia.cli.output import (
    EXIT_OK,
    PROG,
    format_option,
    write_json,
    write_report,
)

__all__ = ["ensemble", "shift_report"]

_logger = logging.getLogger("cxr_pneumonia")
_PREDICTOR = "cxr_pneumonia.predictor:Predictor.__init__"
_SHIFT_REPORT = "cxr_pneumonia.robustness:shift_report"


@click.command(
    epilog="""\b
Examples:
  cxr-pneumonia ensemble bundles/seed0 bundles/seed1 bundles/seed2 --out bundles/ensemble \\
      --data-dir chest_xray
  cxr-pneumonia ensemble bundles/a bundles/b --out bundles/ab""",
)
@click.argument("bundles", nargs=-1, required=True, metavar="BUNDLE...")
@option("--out", required=True, metavar="BUNDLE", type=click.Path(), help="bundle folder to write")
@common.data_options(
    required=False,
    data_dir_help="choose the threshold on this data's validation split (recommended); "
    "without data the threshold is the mean of the members' thresholds",
)
@option(
    "--target-sensitivity",
    type=PROBABILITY,
    default=None,
    show_default="the members' recorded target, else 0.97",
    help="validation sensitivity of the threshold",
)
@option(
    "--validation-fraction",
    type=FRACTION,
    default=None,
    show_default="the first member's training record, else 0.15",
    help="share of training patients held out as validation, as in training",
)
@option(
    "--seed",
    type=NON_NEGATIVE_INT,
    default=None,
    show_default="the first member's training record, else 0",
    help="seed of the validation split, as in training",
)
@option("--name", default=None, show_default="NAME-xK", help="model name in the metadata")
@option(
    "--tta/--no-tta",
    default=True,
    show_default=True,
    help="average each member that does not already do so over the image and its mirror image "
    "(as `train --tta` saves models; a `train --ensemble` checkpoint folder's member bundles "
    "are saved without it)",
)
@library_option(_PREDICTOR, "batch_size")
@option("--overwrite", is_flag=True, help="replace an existing bundle (only a bundle)")
@click.pass_context
def ensemble(
    ctx: click.Context,
    bundles: Sequence[str],
    out: str,
    data: common.DataChoice,
    target_sensitivity: float | None,
    validation_fraction: float | None,
    seed: int | None,
    name: str | None,
    tta: bool,
    batch_size: int,
    overwrite: bool,
) -> int:
    """Average existing bundles into one ensemble bundle; prints its path."""
    import shlex

    from cxr_pneumonia.bundle import check_bundle_target, read_metadata, save_model
    from cxr_pneumonia.ensembles import ensemble as average
    from cxr_pneumonia.evaluation import evaluate

    target_path = Path(out)
    if os.path.lexists(target_path) and not overwrite:
        msg = f"{out} already exists; pass --overwrite to replace it, or choose another --out"
        raise FileExistsError(msg)
    check_bundle_target(target_path, overwrite=True)  # only a bundle may be overwritten
    members = [read_metadata(bundle) for bundle in bundles]
    model = average(list(bundles), name=name or _ensemble_name(members), tta=tta)
    first = members[0]
    targets = {m.metrics.get("target_sensitivity") for m in members}
    target = target_sensitivity
    if target is None:
        recorded = targets.pop() if len(targets) == 1 else None
        target = float(recorded) if isinstance(recorded, (int, float)) else 0.97
    argv = (ctx.obj or {}).get("argv", [])
    training: dict[str, Any] = {
        "command": shlex.join([PROG, *argv]),
        "ensemble_of": [str(Path(b)) for b in bundles],
    }
    metrics: dict[str, Any] = {}
    loaded = None
    if data.data_dir is None and data.dataset is None:
        threshold = sum(m.threshold for m in members) / len(members)
        _logger.warning(
            "no --data-dir: the threshold is the mean of the members' thresholds (%.4f); the "
            "ensemble's scores differ from each member's, so its sensitivity at that threshold "
            "is unknown; pass --data-dir to choose it on validation data",
            threshold,
        )
        training["threshold_from"] = "mean of the members' thresholds"
        fraction, recorded_seed = common.recorded_split(first)
        if recorded_seed is not None:
            training["seed"] = recorded_seed
        if fraction is not None:
            training["data"] = {"validation_fraction": fraction}
    else:
        if common.splits_differ(members):
            _logger.warning(
                "the members were trained with different validation splits; the first one's "
                "is used, so some validation patients may be training patients of other members"
            )
        fraction, chosen_seed = common.validation_split(first, validation_fraction, seed)
        loaded = common.load_data(
            data,
            image_size=first.image_size,
            color_mode=first.color_mode,
            batch_size=batch_size,
            validation_fraction=fraction,
            augment=False,
            seed=chosen_seed,
        )
        report = evaluate(model, loaded, split="validation", batch_size=batch_size)
        threshold = report.threshold_for(sensitivity=target)
        report = report.at_threshold(threshold)
        _logger.info("validation, threshold %.4f:\n%s", threshold, report.to_markdown())
        metrics = common.validation_metrics(report, target)
        training["threshold_from"] = "validation"
        training["seed"] = chosen_seed
        training["data"] = {
            "source": loaded.source,
            "dataset": None if data.data_dir else data.dataset,
            "data_dir": str(Path(data.data_dir).resolve()) if data.data_dir else None,
            "validation_fraction": fraction,
        }
    save_model(
        model,
        target_path,
        threshold=threshold,
        class_names=first.class_names,
        metrics=metrics,
        training=training,
        overwrite=overwrite,
        ood_data=loaded,  # with --data-dir: an OOD check on the members' features
    )
    if loaded is None:
        _logger.warning(
            "no --data-dir: the ensemble bundle has no out-of-distribution check; add one with "
            "`%s ood-fit %s --data-dir DIR`",
            PROG,
            out,
        )
    _logger.info("saved %s: the mean of %d members (threshold %.4f)", out, len(members), threshold)
    click.echo(str(target_path))
    return EXIT_OK


def _ensemble_name(members: Sequence[Any]) -> str:
    names = {m.model_name for m in members}
    base = names.pop() if len(names) == 1 and None not in names else "ensemble"
    return f"{base}-x{len(members)}"


@click.command(
    "shift-report",
    epilog="""\b
Examples:
  cxr-pneumonia shift-report bundles/cnn --data-dir chest_xray --plot shifts.png
  cxr-pneumonia shift-report bundles/cnn --data-dir chest_xray --shifts gamma,blur --format json
  cxr-pneumonia shift-report bundles/a bundles/b bundles/c --data-dir chest_xray  # side by side
  cxr-pneumonia shift-report bundles/a bundles/b --data-dir chest_xray --average  # + their mean""",
)
@click.argument("bundles", nargs=-1, required=True, metavar="BUNDLE...", type=click.Path())
@common.data_options
@library_option(
    _SHIFT_REPORT,
    "split",
    type=click.Choice(("train", "validation", "test")),
    help="the split to score",
)
@format_option("table", "markdown", "json")
@option(
    "--plot",
    metavar="PNG",
    default=None,
    show_default="no plot",
    help="also draw the report into this PNG",
)
@option(
    "--shifts",
    metavar="NAMES",
    default=None,
    show_default="all",
    help="comma-separated shift names, each at its default strengths",
)
@option(
    "--average",
    is_flag=True,
    help="with several bundles, also score the mean of their probabilities (what their "
    "`ensemble` scores, at the mean of their thresholds), without running them again",
)
@library_option(_SHIFT_REPORT, "threshold", type=PROBABILITY, show_default="the bundle's")
@library_option(_PREDICTOR, "batch_size")
@option(
    "--validation-fraction",
    type=FRACTION,
    default=None,
    show_default="the bundle's training record, else 0.15",
    help="share of training patients held out as validation, for --split validation",
)
@option(
    "--seed",
    type=NON_NEGATIVE_INT,
    default=None,
    show_default="the bundle's training record, else 0",
    help="seed of the validation split (also seeds the noise)",
)
def shift_report(
    bundles: Sequence[str],
    data: common.DataChoice,
    split: str,
    output_format: str,
    plot: str | None,
    shifts: str | None,
    average: bool,
    threshold: float | None,
    batch_size: int,
    validation_fraction: float | None,
    seed: int | None,
) -> int:
    """Score a bundle under acquisition shifts (gamma, contrast, blur, crops, ...).

    With several bundles (of one image size and color mode), each is scored on
    the same images and the output compares them: for ROC AUC, sensitivity and
    specificity, the unshifted value, the mean over the shifts and the worst
    case. The validation split is the first bundle's. --average adds their
    mean, to try an ensemble before building it.
    """
    from cxr_pneumonia.robustness import average_shift_reports, compare_shift_reports
    from cxr_pneumonia.robustness import shift_report as report_shifts
    from cxr_pneumonia.shifts import DEFAULT_SHIFTS, get_shift

    names = list(DEFAULT_SHIFTS)
    if shifts:
        names = [name.strip() for name in shifts.split(",") if name.strip()]
        for name in names:
            get_shift(name)  # ValueError listing the shifts
    if plot and Path(plot).suffix.lower() != ".png":
        msg = f"--plot {plot}: give a PNG file name such as shifts.png"
        raise ValueError(msg)
    if plot and len(bundles) > 1:
        msg = f"--plot draws one bundle's report; got {len(bundles)} bundles"
        raise ValueError(msg)
    if average and len(bundles) < 2:
        msg = f"--average needs two or more bundles; got {len(bundles)}"
        raise ValueError(msg)
    predictors = [common.load_predictor(b, batch_size=batch_size) for b in bundles]
    predictor = predictors[0]
    for other, name in zip(predictors[1:], bundles[1:], strict=True):
        if (other.image_size, other.color_mode) != (predictor.image_size, predictor.color_mode):
            msg = (
                f"{name} takes {other.image_size} {other.color_mode} images but {bundles[0]} "
                f"takes {predictor.image_size} {predictor.color_mode}; compare bundles of one "
                "input size and color mode"
            )
            raise ValueError(msg)
    if common.splits_differ([p.metadata for p in predictors]) and split == "validation":
        _logger.warning(
            "the bundles were trained with different validation splits; the first one's is "
            "used, so some images may be training images of the others"
        )
    fraction, chosen_seed = common.validation_split(predictor.metadata, validation_fraction, seed)
    if split == "validation":
        _logger.info("validation split: fraction %g, seed %d", fraction, chosen_seed)
    loaded = common.load_data(
        data,
        image_size=predictor.image_size,
        color_mode=predictor.color_mode,
        batch_size=batch_size,
        validation_fraction=fraction,
        augment=False,
        seed=chosen_seed,
    )
    reports = {
        name: report_shifts(
            scored,
            loaded,
            split=split,
            threshold=threshold,
            shifts=names,
            batch_size=batch_size,
            seed=chosen_seed,
        )
        for name, scored in zip(bundles, predictors, strict=True)
    }
    if average:  # threshold None: the mean of the bundles' (or --threshold for all)
        mean = average_shift_reports(list(reports.values()), threshold=threshold)
        reports[f"mean of {len(bundles)}"] = mean
    if len(reports) > 1:
        if output_format == "json":
            write_json({"split": split, "reports": {n: r.to_dict() for n, r in reports.items()}})
        else:
            click.echo(f"on {loaded.source}, split {split}\n")
            click.echo(compare_shift_reports(reports))
        return EXIT_OK
    bundle, report = next(iter(reports.items()))
    if plot:
        from cxr_pneumonia.plots import plot_shift_report

        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        plot_shift_report(report, plot)
        _logger.info("plot written to %s", plot)
    if output_format == "json":
        write_json({"bundle": bundle, **report.to_dict()})
    elif output_format == "markdown":
        click.echo(report.to_markdown())
    else:
        write_report(f"{bundle} on {loaded.source}, split {split}", report, report.to_text())
    return EXIT_OK
