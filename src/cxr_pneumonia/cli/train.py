"""``train``: train a registered model on a data set and save it as a bundle."""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from cxr_pneumonia.cli import common
from cxr_pneumonia.cli.options import (
    FRACTION,
    NON_NEGATIVE_FLOAT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    PROBABILITY,
    library_option,
    option,
)
from cxr_pneumonia.cli.output import EXIT_OK, PROG
from cxr_pneumonia.data.augment import Augmentation
from cxr_pneumonia.exceptions import WeightsUnavailableError

__all__ = ["augmentation_options", "check_weights_available", "train"]

F = TypeVar("F", bound=Callable[..., Any])

_logger = logging.getLogger("cxr_pneumonia")

_FIT = "cxr_pneumonia.training.fitting:fit"
_LOAD = "cxr_pneumonia.data.loading:load_dataset"
_BUILD = "cxr_pneumonia.models.registry:build_model"
_THRESHOLD = "cxr_pneumonia.evaluation.thresholds:choose_threshold"


def augmentation_options(command: F) -> F:
    """One option per field of [`Augmentation`][cxr_pneumonia.data.augment.Augmentation].

    Each option's default and help come from the field (its default and its
    ``help`` metadata); range fields take two numbers (``LOW HIGH``).

    Args:
        command: The command function.

    Returns:
        The decorated function.
    """
    defaults = Augmentation()
    decorated: Any = command
    for item in reversed(dataclasses.fields(Augmentation)):
        name, default = item.name, getattr(defaults, item.name)
        flag = "--" + name.replace("_", "-")
        text = item.metadata.get("help", "")
        if name == "horizontal_flip":
            decorator = option(
                "--no-flip",
                "--no-horizontal-flip",
                name,
                is_flag=True,
                flag_value=False,
                default=True,
                show_default=False,
                help=f"don't {text}",
            )
        elif isinstance(default, bool):
            decorator = option(flag, name, is_flag=True, default=default, help=text)
        elif name == "fill_mode":
            decorator = option(
                flag, name, type=click.Choice(("nearest", "constant")), default=default, help=text
            )
        elif "Range" in str(item.type):
            decorator = option(
                flag,
                name,
                nargs=2,
                type=NON_NEGATIVE_FLOAT,
                default=None,
                metavar="LOW HIGH",
                show_default="off",
                help=text,
            )
        else:
            decorator = option(
                flag,
                name,
                type=NON_NEGATIVE_FLOAT,
                default=default,
                show_default=True if default is not None else "off",
                help=text,
            )
        decorated = decorator(decorated)
    return decorated


@click.command(
    epilog="""\b
Examples:
  cxr-pneumonia train --data-dir chest_xray --out bundles/cnn-small
  cxr-pneumonia train --data-dir chest_xray --ensemble 3 --out bundles/cnn-small-x3
  cxr-pneumonia train --dataset kermany2018 --model densenet121 --image-size 224 \\
      --color-mode rgb --fine-tune-epochs 5 --out bundles/densenet""",
)
@common.data_options
@option(
    "--model",
    "model_name",
    default="cnn-small",
    metavar="NAME",
    help="registry name (see `models`); with --ensemble, several comma-separated names "
    "train members of each in turn",
)
@library_option(_FIT, "epochs")
@library_option(_LOAD, "batch_size", type=POSITIVE_INT)
@option(
    "--image-size",
    type=POSITIVE_INT,
    default=224,
    help="side of the square images the model takes, in pixels",
)
@library_option(_LOAD, "color_mode", type=click.Choice(("grayscale", "rgb")))
@library_option(
    _FIT,
    "optimizer",
    type=click.Choice(("adam", "adamw", "rmsprop", "sgd")),
    help="optimizer name",
)
@library_option(_FIT, "learning_rate", type=POSITIVE_FLOAT, help="(peak) learning rate")
@library_option(
    _FIT, "weight_decay", type=NON_NEGATIVE_FLOAT, help="decoupled weight decay (0: none)"
)
@library_option(
    _FIT,
    "ema",
    "--ema/--no-ema",
    help="keep an exponential moving average of the weights and save that",
)
@library_option(
    _FIT,
    "schedule",
    type=click.Choice(("cosine", "plateau")),
    help="cosine: every epoch runs, linear warmup then cosine decay; plateau: halve the "
    "rate when the validation loss stalls, stop early, keep the best epoch",
)
@library_option(_FIT, "warmup_epochs", help="warmup epochs of --schedule cosine")
@library_option(
    _FIT,
    "label_smoothing",
    type=FRACTION,
    help="pull the training labels towards 1/2 by this amount (0: none)",
)
@library_option(
    _FIT,
    "mixup",
    type=NON_NEGATIVE_FLOAT,
    help="mixup: blend each training image with another of its batch (labels and class "
    "weights alike) by a weight drawn from Beta(a, a), a = this number (0: none; 0.2 is usual)",
)
@library_option(
    _BUILD, "dropout", type=FRACTION, show_default="the model's", help="dropout rate in [0, 1)"
)
@library_option(
    _BUILD,
    "output",
    type=click.Choice(("sigmoid", "softmax")),
    show_default="the model's",
    help="the model's output: one sigmoid unit or a 2-unit softmax (NORMAL, PNEUMONIA)",
)
@library_option(
    _BUILD,
    "activation",
    type=click.Choice(("relu", "sigmoid")),
    show_default="the model's",
    help="hidden activation of the layer-table models (cnn1, cnn2, cnn3, cnn-kfold, dense-kfold)",
)
@option(
    "--tta/--no-tta",
    default=True,
    help="save a model that averages each image with its mirror image (test-time "
    "augmentation, as the shipped model; twice the inference cost)",
)
@library_option(
    "cxr_pneumonia.training.ensembling:fit_ensemble",
    "members",
    "--ensemble",
    "ensemble",
    default=1,
    type=POSITIVE_INT,
    metavar="K",
    help="train K members from seeds SEED..SEED+K-1 on the same split and save their "
    "average as one bundle, its threshold chosen on the average (1: one model); member k "
    "is model k mod N of a comma-separated --model list",
)
@library_option(
    _LOAD,
    "validation_fraction",
    help="share of training patients held out for early stopping and the threshold",
)
@library_option(
    _LOAD,
    "validation",
    type=click.Choice(("grouped", "folder")),
    help="grouped: a patient-grouped part of the training files (--validation-fraction); "
    "folder: the data folder's own val/ folder, as is",
)
@option(
    "--weights",
    default="auto",
    help="auto (ImageNet for backbones), imagenet, none, or a weights file",
)
@library_option(_FIT, "fine_tune_epochs")
@library_option(_FIT, "fine_tune_learning_rate", type=POSITIVE_FLOAT)
@library_option(
    _THRESHOLD,
    "target_sensitivity",
    type=PROBABILITY,
    help="choose the decision threshold that keeps this sensitivity on validation",
)
@option(
    "--no-class-weight",
    "class_weight",
    is_flag=True,
    flag_value=False,
    default=True,
    show_default=False,
    help="don't weigh the classes to balance them",
)
@option(
    "--no-augment",
    "augment",
    is_flag=True,
    flag_value=False,
    default=True,
    show_default=False,
    help="don't augment the training images",
)
@library_option(
    _FIT,
    "augment_on",
    type=click.Choice(("auto", "pipeline", "device")),
    help="where augmentation runs: the tf.data pipeline, or inside the training step "
    "(device); auto: device when a GPU is present",
)
@augmentation_options
@library_option(
    _FIT,
    "checkpoint_dir",
    show_default="OUT.checkpoints",
    help="checkpoints and resume state of the run",
)
@option(
    "--no-resume",
    "resume",
    is_flag=True,
    flag_value=False,
    default=True,
    show_default=False,
    help="start over instead of resuming the run in --checkpoint-dir",
)
@library_option(
    _FIT,
    "tensorboard_dir",
    "--tensorboard",
    "tensorboard_dir",
    metavar="DIR",
    type=click.Path(),
    help="write TensorBoard logs in DIR (the tensorboard extra; not with --ensemble)",
)
@library_option(_LOAD, "seed", help="seed of the data split, shuffling, augmentation and weights")
@library_option(
    _FIT,
    "deterministic",
    is_flag=True,
    help="deterministic TensorFlow ops: the same --seed gives the same weights (slower)",
)
@option("--out", required=True, metavar="BUNDLE", type=click.Path(), help="bundle folder to write")
@option("--overwrite", is_flag=True, help="replace an existing bundle (only a bundle)")
@click.pass_context
def train(ctx: click.Context, data: common.DataChoice, **args: Any) -> int:
    """Train a model from the registry and save it as a bundle.

    The decision threshold is chosen on the validation split for
    --target-sensitivity; the bundle records the command, the data and the
    figures. An interrupted run resumes from --checkpoint-dir.
    """
    from cxr_pneumonia.bundle import check_bundle_target, save_model
    from cxr_pneumonia.evaluation import choose_threshold, evaluate
    from cxr_pneumonia.models import build_model
    from cxr_pneumonia.training import fit

    out = Path(args["out"])
    if os.path.lexists(out) and not args["overwrite"]:  # before hours of training, not after
        msg = f"{out} already exists; pass --overwrite to replace it, or choose another --out"
        raise FileExistsError(msg)
    check_bundle_target(out, overwrite=True)  # only a bundle may be overwritten
    if args["tensorboard_dir"] and args["ensemble"] > 1:
        msg = "--tensorboard works for one model; leave it out with --ensemble"
        raise click.UsageError(msg)
    weights = None if args["weights"].lower() == "none" else args["weights"]
    models = [name.strip() for name in args["model_name"].split(",") if name.strip()]
    if not models:
        msg = "--model is empty; give a registry name (see `models`)"
        raise click.UsageError(msg)
    if len(models) > args["ensemble"]:
        msg = (
            f"--model names {len(models)} models but --ensemble is {args['ensemble']}; "
            f"several models need --ensemble K >= {len(models)} (member k is model k mod "
            f"{len(models)})"
        )
        raise click.UsageError(msg)
    for name in models:
        check_weights_available(name, weights)  # before decoding the data
    size = (args["image_size"], args["image_size"])
    augmentation = _augmentation(args)
    splits = common.load_data(
        data,
        image_size=size,
        color_mode=args["color_mode"],
        batch_size=args["batch_size"],
        validation_fraction=args["validation_fraction"],
        validation=args["validation"],
        augment=augmentation or False,
        seed=args["seed"],
    )
    _logger.info("%s", splits.summary())
    channels = 1 if args["color_mode"] == "grayscale" else 3

    def build(seed: int) -> Any:
        return build_model(
            models[(seed - args["seed"]) % len(models)],
            input_shape=(*size, channels),
            weights=weights,
            dropout=args["dropout"],
            output=args["output"],
            activation=args["activation"],
            seed=seed,
        )

    checkpoint_dir = args["checkpoint_dir"] or f"{out}.checkpoints"
    fit_options: dict[str, Any] = {
        "epochs": args["epochs"],
        "learning_rate": args["learning_rate"],
        "optimizer": args["optimizer"],
        "weight_decay": args["weight_decay"],
        "ema": args["ema"],
        "schedule": args["schedule"],
        "warmup_epochs": args["warmup_epochs"],
        "label_smoothing": args["label_smoothing"],
        "mixup": args["mixup"],
        "class_weight": "balanced" if args["class_weight"] else None,
        "fine_tune_epochs": args["fine_tune_epochs"],
        "fine_tune_learning_rate": args["fine_tune_learning_rate"],
        "deterministic": args["deterministic"],
        "verbose": 1 if sys.stdout.isatty() else 2,  # no progress-bar redraws in log files
        "augment_on": args["augment_on"],
    }
    model_name = models[0]
    if args["ensemble"] > 1:
        from cxr_pneumonia.training import fit_ensemble

        model_name = f"{'_'.join(models)}-x{args['ensemble']}"  # a valid Keras name
        trained = fit_ensemble(
            build,
            splits,
            members=args["ensemble"],
            seed=args["seed"],
            tta=args["tta"],
            checkpoint_dir=checkpoint_dir,
            resume=args["resume"],
            name=model_name,
            **fit_options,
        )
        model = trained.model
        run: dict[str, Any] = {
            "ensemble": args["ensemble"],
            "member_seeds": list(trained.seeds),
            # this call's seconds: 0.0 when every member was loaded from a finished checkpoint
            "wall_time": round(
                sum((r.wall_time for r in trained.results if r is not None), 0.0), 1
            ),
            "training_time": trained.training_time,
        }
    else:
        model = build(args["seed"])
        result = fit(
            model,
            splits,
            checkpoint_dir=checkpoint_dir,
            resume=args["resume"],
            seed=args["seed"],
            tensorboard_dir=args["tensorboard_dir"],
            **fit_options,
        )
        if args["tta"]:
            from cxr_pneumonia.models import with_flip_tta

            model = with_flip_tta(model)
        run = result.record()
    threshold, metrics = 0.5, {}
    if splits.validation is None:
        _logger.warning("no validation split (--validation-fraction 0): threshold stays 0.5")
    else:
        report = evaluate(model, splits, split="validation")
        try:
            threshold = choose_threshold(
                report.labels, report.scores, target_sensitivity=args["target_sensitivity"]
            )
        except ValueError as exc:
            _logger.warning("threshold stays 0.5: %s", exc)
        report = report.at_threshold(threshold)
        _show_validation_report(report, threshold)
        metrics = common.validation_metrics(report, args["target_sensitivity"])
    argv = (ctx.obj or {}).get("argv", sys.argv[1:])
    training = {
        "command": shlex.join([PROG, *argv]),
        "seed": args["seed"],
        "data": {
            "source": splits.source,
            "dataset": None if data.data_dir else (data.dataset or "kermany2018"),
            "data_dir": str(Path(data.data_dir).resolve()) if data.data_dir else None,
            "class_counts": splits.class_counts,
            "validation_fraction": args["validation_fraction"],
            "validation": args["validation"],
            "seed": args["seed"],
        },
        "model": ",".join(models),
        "epochs": args["epochs"],
        "fine_tune_epochs": args["fine_tune_epochs"],
        **{key: value for key, value in run.items() if key not in ("wall_time", "training_time")},
        "batch_size": args["batch_size"],
        "optimizer": args["optimizer"],
        "learning_rate": args["learning_rate"],
        "weight_decay": args["weight_decay"],
        "ema": args["ema"],
        "schedule": args["schedule"],
        "warmup_epochs": args["warmup_epochs"] if args["schedule"] == "cosine" else None,
        "label_smoothing": args["label_smoothing"],
        "mixup": args["mixup"],
        "augmentation": dataclasses.asdict(augmentation) if augmentation else None,
        "test_time_augmentation": "horizontal flip" if args["tta"] else None,
        "class_weight": "balanced" if args["class_weight"] else None,
        "weights": args["weights"],
        "wall_time": run["wall_time"],
        "training_time": run["training_time"],
    }
    save_model(
        model,
        out,
        threshold=threshold,
        image_size=size,
        color_mode=args["color_mode"],
        metrics=metrics,
        training=training,
        model_name=model_name,
        overwrite=args["overwrite"],
        ood_data=splits,
    )
    _logger.info("saved %s (threshold %.4f)", out, threshold)
    return EXIT_OK


def check_weights_available(model_name: str, weights: str | None) -> None:
    """Fail now, not after decoding the data, when a backbone's ImageNet weights are missing.

    Args:
        model_name: A registry name.
        weights: The ``--weights`` value (``None`` for ``none``).

    Raises:
        UnknownModelError: If ``model_name`` is not registered.
        WeightsUnavailableError: If the ImageNet weights are neither cached nor
            downloadable (the message says ``--weights none``).
    """
    from cxr_pneumonia.models import get_model_spec, imagenet_weights_path

    spec = get_model_spec(model_name)
    if spec.kind != "backbone" or weights not in ("auto", "imagenet"):
        return
    try:
        imagenet_weights_path(spec)  # cached by Keras: build_model finds it there
    except WeightsUnavailableError as exc:
        msg = str(exc).replace("pass weights=None", "pass --weights none")
        raise WeightsUnavailableError(msg) from exc


def _augmentation(args: dict[str, Any]) -> Augmentation | None:
    if not args["augment"]:
        return None
    return Augmentation(**{name: args[name] for name in Augmentation.options()})


def _show_validation_report(report: Any, threshold: float) -> None:
    """The validation report, on standard error: tables on a terminal, plain text otherwise."""
    if sys.stderr.isatty():
        from rich.console import Console

        console = Console(stderr=True)
        console.print(f"validation, threshold {threshold:.4f}:")
        console.print(report)
        return
    _logger.info("validation, threshold %.4f:\n%s", threshold, report.to_text())
