"""``ood-fit``: add (or refit) a bundle's out-of-distribution check."""

from __future__ import annotations

import logging

import click

from cxr_pneumonia.cli import common
from cxr_pneumonia.cli.options import (
    FRACTION,
    NON_NEGATIVE_INT,
    PROBABILITY,
    library_option,
    option,
)
from cxr_pneumonia.cli.output import EXIT_OK

__all__ = ["ood_fit"]

_logger = logging.getLogger("cxr_pneumonia")
_FIT_OOD = "cxr_pneumonia.ood:fit_ood_check"


@click.command(
    "ood-fit",
    epilog="""\b
Examples:
  cxr-pneumonia ood-fit bundles/cnn --data-dir chest_xray
  cxr-pneumonia ood-fit bundles/cnn --data-dir chest_xray --acceptance 0.995""",
)
@click.argument("bundle", metavar="BUNDLE", type=click.Path())
@common.data_options
@option(
    "--validation-fraction",
    type=FRACTION,
    default=None,
    show_default="the bundle's training record, else 0.15",
    help="share of training patients the threshold is set on (the bundle's: its "
    "validation patients are the ones held out in training)",
)
@option(
    "--seed",
    type=NON_NEGATIVE_INT,
    default=None,
    show_default="the bundle's training seed, else 0",
    help="seed of the validation split",
)
@library_option(
    _FIT_OOD,
    "acceptance",
    type=PROBABILITY,
    help="share of validation chest X-rays to accept",
)
@library_option(_FIT_OOD, "batch_size")
def ood_fit(
    bundle: str,
    data: common.DataChoice,
    validation_fraction: float | None,
    seed: int | None,
    acceptance: float,
    batch_size: int,
) -> int:
    """Add (or refit) a bundle's out-of-distribution check from its training data."""
    from cxr_pneumonia.bundle import add_ood_check, load_bundle
    from cxr_pneumonia.ood import fit_ood_check

    model, metadata = load_bundle(bundle)
    fraction, chosen_seed = common.validation_split(metadata, validation_fraction, seed)
    splits = common.load_data(
        data,
        image_size=metadata.image_size,
        color_mode=metadata.color_mode,
        validation_fraction=fraction,
        augment=False,
        seed=chosen_seed,
    )
    _logger.info("%s", splits.summary())
    check = fit_ood_check(
        model,
        splits.images["train"],
        splits.images.get("validation"),
        acceptance=acceptance,
        batch_size=batch_size,
    )
    add_ood_check(bundle, check)
    stats = check.stats
    click.echo(
        f"{bundle}: OOD check on {', '.join(check.feature_layers)} fitted on "
        f"{stats['n_fit']} training images; threshold {check.threshold:.4g} accepts "
        f"{100 * stats['calibration_accepted']:.1f}% of {stats['n_calibration']} "
        f"{stats['calibration']} images"
    )
    return EXIT_OK
