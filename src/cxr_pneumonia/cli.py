"""The ``cxr-pneumonia`` command line: a thin face over the library.

Run ``cxr-pneumonia --help`` for the subcommands::

    cxr-pneumonia predict xray.jpeg scans/ "more/*.png" [--model BUNDLE] [--format json]
    cxr-pneumonia explain xray.jpeg --out heatmap.png
    cxr-pneumonia train --data-dir chest_xray --model cnn-small --epochs 30 --out bundles/cnn
    cxr-pneumonia evaluate bundles/cnn --data-dir chest_xray --split test [--format json]
    cxr-pneumonia train --data-dir chest_xray --ensemble 3 --out bundles/cnn-x3
    cxr-pneumonia ensemble bundles/a bundles/b --out bundles/ab [--data-dir chest_xray]
    cxr-pneumonia shift-report bundles/cnn --data-dir chest_xray [--plot shifts.png]
    cxr-pneumonia export bundles/cnn --format savedmodel|tflite --out PATH
    cxr-pneumonia ood-fit bundles/cnn --data-dir chest_xray
    cxr-pneumonia download kermany2018
    cxr-pneumonia datasets | models | info
    cxr-pneumonia summary --data-dir chest_xray

Results go to standard output, progress, logs and errors to standard error.
Exit codes: 0 on success; 1 when some inputs failed or an operation failed
(each failure is named on standard error); 2 for usage errors (bad options).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import importlib
import json
import logging
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cxr_pneumonia._version import __version__
from cxr_pneumonia.data.pipeline import Augmentation
from cxr_pneumonia.exceptions import BundleError, CXRPneumoniaError, OutOfDistributionError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
"""Everything asked for was done."""
EXIT_FAILED = 1
"""Some inputs failed, or the operation failed."""
EXIT_USAGE = 2
"""The command line was wrong (as argparse reports)."""

_PROG = "cxr-pneumonia"
_logger = logging.getLogger("cxr_pneumonia")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    This is the ``cxr-pneumonia`` console script; its return value is the exit
    code.

    Args:
        argv: The arguments (without the program name); ``None`` reads
            ``sys.argv[1:]``.

    Returns:
        The exit code: 0 success, 1 some inputs or the operation failed, 2 usage error.

    Examples:
        >>> main(["predict", "xray.jpeg", "--model", "bundles/cnn"])  # doctest: +SKIP
        0
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help / --version
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.argv = arguments
    if not args.verbose:
        # Read by TensorFlow's C++ logging when it is first imported (lazily, below).
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if args.command not in _NO_TENSORFLOW:
            _start_tensorflow_quietly()
    with _log_to_stderr(logging.DEBUG if args.verbose else logging.INFO):
        try:
            return int(args.handler(args))
        except (CXRPneumoniaError, OSError, ValueError) as exc:
            _error(str(exc))
            return EXIT_FAILED
        except KeyboardInterrupt:
            _error("interrupted")
            return 130


_NO_TENSORFLOW = frozenset({"datasets", "download"})
"""Commands that never start TensorFlow."""


def _start_tensorflow_quietly() -> None:
    """Import TensorFlow and find its devices with the process's stderr muted.

    TensorFlow's C++ start-up (oneDNN and CUDA probes) writes INFO and ERROR
    lines straight to file descriptor 2, ignoring ``TF_CPP_MIN_LOG_LEVEL`` in
    recent releases; on a machine without a GPU they are noise that buries the
    command's own output. ``--verbose`` shows them.
    """
    if "tensorflow" in sys.modules:
        return
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to protect
        return
    try:
        sys.stderr.flush()
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import tensorflow as tf

                tf.config.list_physical_devices()
            finally:
                os.dup2(saved, 2)
    except ImportError:
        pass  # reported, unmuted, by the command that needs it
    finally:
        os.close(saved)


@contextlib.contextmanager
def _log_to_stderr(level: int) -> Iterator[None]:
    """Show the package's log records on stderr while a command runs (no global config)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    old_level, old_propagate = _logger.level, _logger.propagate
    _logger.addHandler(handler)
    _logger.setLevel(level)
    _logger.propagate = False
    try:
        yield
    finally:
        _logger.removeHandler(handler)
        _logger.setLevel(old_level)
        _logger.propagate = old_propagate


def _error(message: str) -> None:
    print(f"{_PROG}: error: {message}", file=sys.stderr)


# --- parser ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description=(
            "Classify pediatric chest X-rays as NORMAL or PNEUMONIA; train, evaluate, export."
        ),
        epilog="Exit codes: 0 success, 1 some inputs or the operation failed, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs")
    commands = parser.add_subparsers(title="commands", dest="command", required=True)

    predict = commands.add_parser("predict", help="predict image files, folders or globs")
    predict.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders (searched recursively) "
        "or glob patterns (quote them: 'scans/**/*.png')",
    )
    _add_model_option(predict)
    predict.add_argument("--format", choices=("table", "csv", "json"), default="table")
    predict.add_argument(
        "--threshold", type=_probability, help="decision threshold (default: the bundle's)"
    )
    predict.add_argument(
        "--errors",
        choices=("raise", "skip"),
        default="skip",
        help="raise: stop at the first unreadable input; skip: report it and go on (default)",
    )
    predict.add_argument("--batch-size", type=_positive_int, default=32)
    _add_ood_option(predict)
    predict.set_defaults(handler=_cmd_predict)

    explain = commands.add_parser("explain", help="write a Grad-CAM overlay of one image")
    explain.add_argument("input", metavar="INPUT", help="one image file")
    explain.add_argument("--out", required=True, metavar="PNG", help="where to write the overlay")
    _add_model_option(explain)
    explain.add_argument("--layer", help="convolutional layer (default: the last one)")
    explain.add_argument("--alpha", type=_probability, default=0.4, help="heatmap opacity")
    _add_ood_option(explain)
    explain.set_defaults(handler=_cmd_explain)

    train = commands.add_parser("train", help="train a model and save it as a bundle")
    _add_data_options(train)
    train.add_argument("--model", default="cnn-small", help="registry name (see `models`)")
    train.add_argument("--epochs", type=_positive_int, default=30)
    train.add_argument("--batch-size", type=_positive_int, default=32)
    train.add_argument("--image-size", type=_positive_int, default=224, help="side in pixels")
    train.add_argument("--color-mode", choices=("grayscale", "rgb"), default="grayscale")
    train.add_argument("--optimizer", choices=("adam", "adamw", "rmsprop", "sgd"), default="adam")
    train.add_argument(
        "--learning-rate", type=_positive_float, default=1e-3, help="(peak) learning rate"
    )
    train.add_argument(
        "--weight-decay", type=_non_negative_float, default=0.0, help="decoupled weight decay"
    )
    train.add_argument(
        "--ema",
        action="store_true",
        help="keep an exponential moving average of the weights and save that",
    )
    train.add_argument(
        "--schedule",
        choices=("plateau", "cosine"),
        default="plateau",
        help="plateau: the default callbacks (early stopping, halve the rate on plateaus); "
        "cosine: a fixed-length run, linear warmup then cosine decay, no early stopping",
    )
    train.add_argument(
        "--warmup-epochs", type=_non_negative_int, default=2, help="with --schedule cosine"
    )
    train.add_argument("--dropout", type=_fraction, help="dropout rate (default: the model's)")
    train.add_argument(
        "--tta",
        action="store_true",
        help="save a model that averages each image with its mirror image (test-time "
        "augmentation; twice the inference cost)",
    )
    train.add_argument(
        "--ensemble",
        type=_positive_int,
        default=1,
        metavar="K",
        help="train K members from seeds SEED..SEED+K-1 on the same split and save their "
        "average as one bundle, its threshold chosen on the average (default 1: one model)",
    )
    train.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=0.1,
        help="share of training patients held out for early stopping and the threshold",
    )
    train.add_argument(
        "--weights",
        default="auto",
        help="auto (ImageNet for backbones), imagenet, none, or a weights file",
    )
    train.add_argument("--fine-tune-epochs", type=_non_negative_int, default=0)
    train.add_argument("--fine-tune-learning-rate", type=_positive_float, default=1e-5)
    train.add_argument(
        "--target-sensitivity",
        type=_probability,
        default=0.97,
        help="choose the decision threshold for this validation sensitivity (default 0.97)",
    )
    train.add_argument(
        "--no-class-weight",
        dest="class_weight",
        action="store_false",
        help="don't weigh the classes to balance them",
    )
    train.add_argument("--no-augment", dest="augment", action="store_false")
    _add_augmentation_options(train.add_argument_group("augmentation (see Augmentation)"))
    train.add_argument(
        "--checkpoint-dir", help="checkpoints and resume state (default: OUT.checkpoints)"
    )
    train.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="start over instead of resuming the run in --checkpoint-dir",
    )
    train.add_argument("--seed", type=_non_negative_int, default=0)
    train.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder to write")
    train.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    train.set_defaults(handler=_cmd_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a bundle on a data set")
    evaluate.add_argument("bundle", metavar="BUNDLE")
    _add_data_options(evaluate)
    evaluate.add_argument("--split", choices=("train", "validation", "test"), default="test")
    evaluate.add_argument("--threshold", type=_probability, help="default: the bundle's")
    evaluate.add_argument("--format", choices=("table", "json"), default="table")
    evaluate.add_argument("--batch-size", type=_positive_int, default=32)
    evaluate.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=0.1,
        help="as in training, for --split validation",
    )
    evaluate.add_argument("--seed", type=_non_negative_int, default=0)
    evaluate.set_defaults(handler=_cmd_evaluate)

    combine = commands.add_parser(
        "ensemble",
        help="average existing bundles into one ensemble bundle",
        epilog="example: cxr-pneumonia ensemble bundles/seed0 bundles/seed1 bundles/seed2 "
        "--out bundles/ensemble --data-dir chest_xray",
    )
    combine.add_argument("bundles", nargs="+", metavar="BUNDLE", help="two or more bundles")
    combine.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder to write")
    source = combine.add_mutually_exclusive_group()
    source.add_argument(
        "--data-dir",
        metavar="DIR",
        help="choose the threshold on this data's validation split (recommended); without "
        "data the threshold is the mean of the members' thresholds",
    )
    source.add_argument("--dataset", metavar="NAME", help="a registered data set (see `datasets`)")
    combine.add_argument("--cache-dir", help=_CACHE_HELP)
    combine.add_argument("--no-progress", dest="progress", action="store_false")
    combine.add_argument(
        "--target-sensitivity",
        type=_probability,
        help="validation sensitivity of the threshold (default: the members' recorded "
        "target, else 0.97)",
    )
    combine.add_argument(
        "--validation-fraction",
        type=_fraction,
        help="default: the first member's training record, else 0.1",
    )
    combine.add_argument(
        "--seed", type=_non_negative_int, help="default: the first member's training record, else 0"
    )
    combine.add_argument("--name", help="model name in the metadata (default: NAME-xK)")
    combine.add_argument("--batch-size", type=_positive_int, default=32)
    combine.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    combine.set_defaults(handler=_cmd_ensemble)

    shifts = commands.add_parser(
        "shift-report",
        help="score a bundle under acquisition shifts (gamma, contrast, blur, crops, ...)",
        epilog="example: cxr-pneumonia shift-report bundles/cnn --data-dir chest_xray "
        "--plot shifts.png",
    )
    shifts.add_argument("bundle", metavar="BUNDLE")
    _add_data_options(shifts)
    shifts.add_argument("--split", choices=("train", "validation", "test"), default="validation")
    shifts.add_argument(
        "--format",
        choices=("table", "markdown", "json"),
        default="table",
        help="table: aligned text; markdown: the report's Markdown; json: every number",
    )
    shifts.add_argument("--plot", metavar="PNG", help="also draw the report into this PNG")
    shifts.add_argument(
        "--shifts",
        metavar="NAMES",
        help="comma-separated shift names, each at its default strengths (default: all)",
    )
    shifts.add_argument("--threshold", type=_probability, help="default: the bundle's")
    shifts.add_argument("--batch-size", type=_positive_int, default=32)
    shifts.add_argument(
        "--validation-fraction",
        type=_fraction,
        help="for --split validation; default: the bundle's training record, else 0.1",
    )
    shifts.add_argument(
        "--seed",
        type=_non_negative_int,
        help="split seed; default: the bundle's training record, else 0 (also seeds the noise)",
    )
    shifts.set_defaults(handler=_cmd_shift_report)
    ood_fit = commands.add_parser(
        "ood-fit",
        help="add (or refit) a bundle's out-of-distribution check from its training data",
        epilog="example: cxr-pneumonia ood-fit bundles/cnn --data-dir chest_xray",
    )
    ood_fit.add_argument("bundle", metavar="BUNDLE")
    _add_data_options(ood_fit)
    ood_fit.add_argument(
        "--validation-fraction",
        type=_fraction,
        help="share of training patients the threshold is set on (default: the bundle's, "
        "so its validation patients are the ones held out in training)",
    )
    ood_fit.add_argument(
        "--seed", type=_non_negative_int, help="split seed (default: the bundle's training seed)"
    )
    ood_fit.add_argument(
        "--acceptance",
        type=_probability,
        default=0.99,
        help="share of validation chest X-rays to accept (default 0.99)",
    )
    ood_fit.add_argument("--batch-size", type=_positive_int, default=64)
    ood_fit.set_defaults(handler=_cmd_ood_fit)

    export = commands.add_parser(
        "export", help="export a bundle as a SavedModel (TF Serving) or a TFLite file"
    )
    export.add_argument("bundle", metavar="BUNDLE")
    export.add_argument("--format", choices=("savedmodel", "tflite"), required=True)
    export.add_argument("--out", required=True, metavar="PATH")
    export.add_argument("--overwrite", action="store_true")
    export.set_defaults(handler=_cmd_export)

    download = commands.add_parser("download", help="download a data set into the cache")
    download.add_argument("name", help="data set name (see `datasets`)")
    download.add_argument("--cache-dir", help=_CACHE_HELP)
    download.add_argument("--no-progress", dest="progress", action="store_false")
    download.set_defaults(handler=_cmd_download)

    summary = commands.add_parser("summary", help="summarise a data set: splits, patients, classes")
    _add_data_options(summary)
    summary.add_argument("--validation-fraction", type=_fraction, default=0.1)
    summary.add_argument("--image-size", type=_positive_int, default=224)
    summary.add_argument("--seed", type=_non_negative_int, default=0)
    summary.set_defaults(handler=_cmd_summary)

    commands.add_parser("datasets", help="list the data set registry").set_defaults(
        handler=_cmd_datasets
    )
    commands.add_parser("models", help="list the model registry").set_defaults(handler=_cmd_models)
    commands.add_parser("info", help="versions, devices, cache folder").set_defaults(
        handler=_cmd_info
    )
    return parser


_CACHE_HELP = "cache folder (default: CXR_PNEUMONIA_CACHE_DIR or the OS cache)"


def _add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", metavar="BUNDLE", help="model bundle folder (default: the shipped model)"
    )


def _add_ood_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ood",
        choices=("flag", "error", "ignore"),
        default="flag",
        help="inputs that don't look like chest X-rays: flag them (default), refuse them "
        "(error), or don't check (ignore)",
    )


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--data-dir", metavar="DIR", help="a folder of images in a known layout")
    group.add_argument("--dataset", metavar="NAME", help="a registered data set (see `datasets`)")
    parser.add_argument("--cache-dir", help=_CACHE_HELP)
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def _number(text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        msg = f"must be {what}, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _positive_int(text: str) -> int:
    value: int = _number(text, int)
    if value <= 0:
        msg = f"must be a positive integer, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _non_negative_int(text: str) -> int:
    value: int = _number(text, int)
    if value < 0:
        msg = f"must be 0 or more, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _add_augmentation_options(group: Any) -> None:
    """One option per field of [`Augmentation`][cxr_pneumonia.data.augment.Augmentation], typed by
    its default."""
    defaults = Augmentation()
    for item in dataclasses.fields(Augmentation):
        name, default = item.name, getattr(defaults, item.name)
        flag = "--" + name.replace("_", "-")
        text = item.metadata.get("help", "")
        if name == "horizontal_flip":
            group.add_argument(
                "--no-flip",
                "--no-horizontal-flip",
                dest=name,
                action="store_false",
                help=f"don't {text}",
            )
        elif isinstance(default, bool):
            group.add_argument(flag, dest=name, action="store_true", help=text)
        elif name == "fill_mode":
            group.add_argument(
                flag, dest=name, choices=("nearest", "constant"), default=default, help=text
            )
        elif "Range" in str(item.type):
            group.add_argument(
                flag,
                dest=name,
                nargs=2,
                type=_non_negative_float,
                metavar=("LOW", "HIGH"),
                help=text,
            )
        else:
            group.add_argument(
                flag,
                dest=name,
                type=_non_negative_float,
                default=default,
                help=f"{text} (default: {default})" if default is not None else text,
            )


def _non_negative_float(text: str) -> float:
    value: float = _number(text, float)
    if not 0.0 <= value < float("inf"):  # also refuses nan
        msg = f"must be 0 or a positive number, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive_float(text: str) -> float:
    value: float = _number(text, float)
    if not value > 0.0 or value == float("inf"):
        msg = f"must be a positive number, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _probability(text: str) -> float:
    value: float = _number(text, float)
    if not 0.0 <= value <= 1.0:  # also refuses nan
        msg = f"must be between 0 and 1, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _fraction(text: str) -> float:
    value = _probability(text)
    if value >= 1.0:
        msg = f"must be in [0, 1), got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


# --- predict, explain ------------------------------------------------------------------


def _load_predictor(bundle: str | None, *, batch_size: int = 32, ood: str = "flag") -> Any:
    from cxr_pneumonia.predictor import Predictor

    if bundle is not None:
        return Predictor.load(bundle, batch_size=batch_size, ood=ood)  # type: ignore[arg-type]
    try:
        return Predictor.default(batch_size=batch_size, ood=ood)  # type: ignore[arg-type]
    except BundleError as exc:
        msg = f"{exc}; or pass --model BUNDLE (a folder written by `{_PROG} train`)"
        raise BundleError(msg) from exc


def _expand_inputs(patterns: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Return the files to predict and ``(pattern, reason)`` for patterns that gave none."""
    from cxr_pneumonia.images import IMAGE_EXTENSIONS, find_image_files

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


def _cmd_predict(args: argparse.Namespace) -> int:
    files, unmatched = _expand_inputs(args.inputs)
    for pattern, reason in unmatched:
        _error(f"{pattern}: {reason}")
    if unmatched and (args.errors == "raise" or not files):
        return EXIT_FAILED
    predictor = _load_predictor(args.model, batch_size=args.batch_size, ood=args.ood)
    with predictor:
        predictions = predictor.predict(files, errors=args.errors, threshold=args.threshold)
    records = [
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
    failed = [p for p in predictions if p.error is not None]
    for p in failed:
        reason = str(p.error)
        # Image errors already start with the file's name; don't say it twice.
        _error(reason if reason.startswith(str(p.source)) else f"{p.source}: {reason}")
    _write_predictions(predictions, records, args.format)
    flagged = [p for p in predictions if p.error is None and p.in_distribution is False]
    if flagged:
        _logger.warning(
            "%d of %d input(s) do not look like the chest X-rays the model was trained on "
            "(flagged OUT-OF-DISTRIBUTION): their labels are not to be trusted",
            len(flagged),
            len(predictions),
        )
    return EXIT_FAILED if failed or unmatched else EXIT_OK


def _write_predictions(predictions: list[Any], records: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(records, indent=2))
        return
    rows = [
        {
            "source": r["source"],
            "label": r["label"] or "",
            "probability": "" if r["probability"] is None else f"{r['probability']:.4f}",
            "threshold": f"{r['threshold']:.4f}",
            "in_distribution": "" if r["in_distribution"] is None else str(r["in_distribution"]),
            "ood_score": "" if r["ood_score"] is None else f"{r['ood_score']:.4g}",
            "error": r["error"] or "",
        }
        for r in records
    ]
    if fmt == "csv":
        from cxr_pneumonia.predictions_csv import write_predictions_csv

        write_predictions_csv(predictions, sys.stdout)  # the one CSV format
        return
    table = [["source", "label", "probability", "check"]]
    table += [
        [row["source"], row["label"] or "(failed)", row["probability"] or "-", _check_cell(row)]
        for row in rows
    ]
    print(_table(table))


def _check_cell(row: dict[str, str]) -> str:
    """The table's OOD column: ``ok``, a loud flag, or ``-`` when not checked."""
    if row["in_distribution"] == "True":
        return "ok"
    if row["in_distribution"] == "False":
        return f"OUT-OF-DISTRIBUTION (score {row['ood_score']})"
    return "-"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cmd_explain(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"):
        msg = f"--out {out}: give an image file name such as heatmap.png"
        raise ValueError(msg)
    from cxr_pneumonia.predictor import explain

    predictor = _load_predictor(args.model, ood=args.ood)
    explanation = explain(predictor, args.input, layer=args.layer, alpha=args.alpha)
    p = explanation.prediction
    if p.in_distribution is False and args.ood == "error":
        msg = (
            f"{args.input}: does not look like a chest X-ray the model was trained on (OOD "
            f"score {p.ood_score:.4g} > threshold {predictor.ood_check.threshold:.4g}); "
            "no explanation written (use --ood flag to write one anyway)"
        )
        raise OutOfDistributionError(msg)
    out.parent.mkdir(parents=True, exist_ok=True)
    explanation.overlay.save(out)
    print(
        f"{args.input}: {p.label} (probability {p.probability:.4f}, threshold {p.threshold:.4f}); "
        f"Grad-CAM of layer {explanation.layer!r} written to {out}"
    )
    if p.in_distribution is False:
        _logger.warning(
            "%s: OUT-OF-DISTRIBUTION: the image does not look like the chest X-rays the model "
            "was trained on (OOD score %.4g > threshold %.4g); the label and heatmap are not "
            "to be trusted",
            args.input,
            p.ood_score,
            predictor.ood_check.threshold,
        )
    return EXIT_OK


# --- train, evaluate, export -----------------------------------------------------------


def _load_data(args: argparse.Namespace, **options: Any) -> Any:
    from cxr_pneumonia.data import load_dataset

    return load_dataset(
        args.dataset or "kermany2018",
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        progress=args.progress,
        **options,
    )


def _augmentation(args: argparse.Namespace) -> Augmentation | None:
    if not args.augment:
        return None
    return Augmentation(**{name: getattr(args, name) for name in Augmentation.options()})


def _optimizer(args: argparse.Namespace) -> Any:
    """The optimizer name, or an instance when weight decay or EMA is asked for."""
    if not args.weight_decay and not args.ema:
        return args.optimizer
    from cxr_pneumonia.training.options import OPTIMIZERS

    options: dict[str, Any] = {"learning_rate": args.learning_rate, "use_ema": args.ema}
    if args.weight_decay:
        options["weight_decay"] = args.weight_decay
    return OPTIMIZERS[args.optimizer](**options)


def _schedule_callbacks(args: argparse.Namespace) -> Any:
    """``"default"`` for the plateau schedule, else the warmup-cosine scheduler alone."""
    if args.schedule == "plateau":
        return "default"
    import keras

    from cxr_pneumonia.training.callbacks import warmup_cosine_decay

    schedule = warmup_cosine_decay(
        args.learning_rate, epochs=args.epochs, warmup=args.warmup_epochs
    )
    return [keras.callbacks.LearningRateScheduler(schedule)]


def _cmd_train(args: argparse.Namespace) -> int:
    from cxr_pneumonia.bundle import check_bundle_target, save_model
    from cxr_pneumonia.evaluation import choose_threshold, evaluate
    from cxr_pneumonia.models import build_model
    from cxr_pneumonia.training import fit

    out = Path(args.out)
    if os.path.lexists(out) and not args.overwrite:  # before hours of training, not after
        msg = f"{out} already exists; pass --overwrite to replace it, or choose another --out"
        raise FileExistsError(msg)
    check_bundle_target(out, overwrite=True)  # only a bundle may be overwritten
    size = (args.image_size, args.image_size)
    augmentation = _augmentation(args)
    data = _load_data(
        args,
        image_size=size,
        color_mode=args.color_mode,
        batch_size=args.batch_size,
        validation_fraction=args.validation_fraction,
        augment=augmentation or False,
        seed=args.seed,
    )
    _logger.info("%s", data.summary())
    weights = None if args.weights.lower() == "none" else args.weights
    channels = 1 if args.color_mode == "grayscale" else 3

    def build(seed: int) -> Any:
        return build_model(
            args.model,
            input_shape=(*size, channels),
            weights=weights,
            dropout=args.dropout,
            seed=seed,
        )

    checkpoint_dir = args.checkpoint_dir or f"{out}.checkpoints"
    fit_options: dict[str, Any] = {
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "optimizer": _optimizer(args),
        "class_weight": "balanced" if args.class_weight else None,
        "callbacks": _schedule_callbacks(args),
        "fine_tune_epochs": args.fine_tune_epochs,
        "fine_tune_learning_rate": args.fine_tune_learning_rate,
        "verbose": 1 if sys.stdout.isatty() else 2,  # no progress-bar redraws in log files
    }
    model_name = args.model
    if args.ensemble > 1:
        from cxr_pneumonia.training import fit_ensemble

        model_name = f"{args.model}-x{args.ensemble}"
        trained = fit_ensemble(
            build,
            data,
            members=args.ensemble,
            seed=args.seed,
            tta=args.tta,
            checkpoint_dir=checkpoint_dir,
            resume=args.resume,
            name=model_name,
            **fit_options,
        )
        model = trained.model
        run: dict[str, Any] = {
            "ensemble": args.ensemble,
            "member_seeds": list(trained.seeds),
            "wall_time": round(sum(r.wall_time for r in trained.results if r is not None), 1),
        }
    else:
        model = build(args.seed)
        result = fit(
            model,
            data,
            checkpoint_dir=checkpoint_dir,
            resume=args.resume,
            seed=args.seed,
            **fit_options,
        )
        if args.tta:
            from cxr_pneumonia.models import with_flip_tta

            model = with_flip_tta(model)
        run = {
            "epochs_run": len(result.epochs),
            "best_epoch": result.best_epoch,
            "best_metrics": result.best_metrics,
            "kept_epoch": result.kept_epoch,
            "kept_reason": result.kept_reason,
            "monitor": result.monitor,
            "wall_time": round(result.wall_time, 1),
        }
    threshold, metrics = 0.5, {}
    if data.validation is None:
        _logger.warning("no validation split (--validation-fraction 0): threshold stays 0.5")
    else:
        report = evaluate(model, data, split="validation")
        try:
            threshold = choose_threshold(
                report.labels, report.scores, target_sensitivity=args.target_sensitivity
            )
        except ValueError as exc:
            _logger.warning("threshold stays 0.5: %s", exc)
        report = report.at_threshold(threshold)
        _logger.info("validation, threshold %.4f:\n%s", threshold, report.to_markdown())
        metrics = _validation_metrics(report, args.target_sensitivity)
    training = {
        "command": shlex.join([_PROG, *args.argv]),
        "seed": args.seed,
        "data": {
            "source": data.source,
            "dataset": None if args.data_dir else (args.dataset or "kermany2018"),
            "data_dir": str(Path(args.data_dir).resolve()) if args.data_dir else None,
            "class_counts": data.class_counts,
            "validation_fraction": args.validation_fraction,
        },
        "model": args.model,
        "epochs": args.epochs,
        "fine_tune_epochs": args.fine_tune_epochs,
        **{key: value for key, value in run.items() if key != "wall_time"},
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay,
        "ema": args.ema,
        "schedule": args.schedule,
        "warmup_epochs": args.warmup_epochs if args.schedule == "cosine" else None,
        "augmentation": dataclasses.asdict(augmentation) if augmentation else None,
        "test_time_augmentation": "horizontal flip" if args.tta else None,
        "class_weight": "balanced" if args.class_weight else None,
        "weights": args.weights,
        "wall_time": run["wall_time"],
    }
    save_model(
        model,
        out,
        threshold=threshold,
        image_size=size,
        color_mode=args.color_mode,
        metrics=metrics,
        training=training,
        model_name=model_name,
        overwrite=args.overwrite,
        ood_data=data,
    )
    _logger.info("saved %s (threshold %.4f)", out, threshold)
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from cxr_pneumonia.evaluation import evaluate

    predictor = _load_predictor(args.bundle, batch_size=args.batch_size)
    data = _load_data(
        args,
        image_size=predictor.image_size,
        color_mode=predictor.color_mode,
        batch_size=args.batch_size,
        validation_fraction=args.validation_fraction,
        augment=False,
        seed=args.seed,
    )
    report = evaluate(predictor, data, split=args.split, threshold=args.threshold)
    if args.format == "json":
        result = {"bundle": args.bundle, "data": data.source, "split": args.split}
        result.update(report.to_dict(include_scores=False))
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.bundle} on {data.source}, split {args.split}\n")
        print(report.to_markdown())
    return EXIT_OK


def _validation_metrics(report: Any, target: float) -> dict[str, Any]:
    metrics = {
        f"val_{k}": v
        for k, v in report.to_dict(include_scores=False).items()
        if k not in ("classification_report", "class_names")
    }
    metrics["target_sensitivity"] = target
    return metrics


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from cxr_pneumonia.bundle import check_bundle_target, read_metadata, save_model
    from cxr_pneumonia.ensembles import ensemble
    from cxr_pneumonia.evaluation import evaluate

    out = Path(args.out)
    if os.path.lexists(out) and not args.overwrite:
        msg = f"{out} already exists; pass --overwrite to replace it, or choose another --out"
        raise FileExistsError(msg)
    check_bundle_target(out, overwrite=True)  # only a bundle may be overwritten
    members = [read_metadata(bundle) for bundle in args.bundles]
    model = ensemble(args.bundles, name=args.name or _ensemble_name(members))
    first = members[0]
    targets = {m.metrics.get("target_sensitivity") for m in members}
    target = args.target_sensitivity
    if target is None:
        recorded = targets.pop() if len(targets) == 1 else None
        target = float(recorded) if isinstance(recorded, (int, float)) else 0.97
    training: dict[str, Any] = {
        "command": shlex.join([_PROG, *args.argv]),
        "ensemble_of": [str(Path(b)) for b in args.bundles],
    }
    metrics: dict[str, Any] = {}
    data = None
    if args.data_dir is None and args.dataset is None:
        threshold = sum(m.threshold for m in members) / len(members)
        _logger.warning(
            "no --data-dir: the threshold is the mean of the members' thresholds (%.4f); the "
            "ensemble's scores differ from each member's, so its sensitivity at that threshold "
            "is unknown; pass --data-dir to choose it on validation data",
            threshold,
        )
        training["threshold_from"] = "mean of the members' thresholds"
        fraction, seed = _recorded_split(first)
        if seed is not None:
            training["seed"] = seed
        if fraction is not None:
            training["data"] = {"validation_fraction": fraction}
    else:
        splits = {_recorded_split(m) for m in members}
        fraction, seed = _recorded_split(first)
        if len(splits) > 1:
            _logger.warning(
                "the members were trained with different validation splits; the first one's "
                "is used, so some validation patients may be training patients of other members"
            )
        fraction = args.validation_fraction if args.validation_fraction is not None else fraction
        seed = args.seed if args.seed is not None else seed
        fraction = 0.1 if fraction is None else fraction
        seed = 0 if seed is None else seed
        data = _load_data(
            args,
            image_size=first.image_size,
            color_mode=first.color_mode,
            batch_size=args.batch_size,
            validation_fraction=fraction,
            augment=False,
            seed=seed,
        )
        report = evaluate(model, data, split="validation", batch_size=args.batch_size)
        threshold = report.threshold_for(sensitivity=target)
        report = report.at_threshold(threshold)
        _logger.info("validation, threshold %.4f:\n%s", threshold, report.to_markdown())
        metrics = _validation_metrics(report, target)
        training["threshold_from"] = "validation"
        training["seed"] = seed
        training["data"] = {
            "source": data.source,
            "dataset": None if args.data_dir else args.dataset,
            "data_dir": str(Path(args.data_dir).resolve()) if args.data_dir else None,
            "validation_fraction": fraction,
        }
    save_model(
        model,
        out,
        threshold=threshold,
        class_names=first.class_names,
        metrics=metrics,
        training=training,
        overwrite=args.overwrite,
        ood_data=data,  # with --data-dir: an OOD check on the members' features
    )
    if data is None:
        _logger.warning(
            "no --data-dir: the ensemble bundle has no out-of-distribution check; add one with "
            "`%s ood-fit %s --data-dir DIR`",
            _PROG,
            out,
        )
    _logger.info("saved %s: the mean of %d members (threshold %.4f)", out, len(members), threshold)
    print(out)
    return EXIT_OK


def _ensemble_name(members: Sequence[Any]) -> str:
    names = {m.model_name for m in members}
    base = names.pop() if len(names) == 1 and None not in names else "ensemble"
    return f"{base}-x{len(members)}"


def _recorded_split(metadata: Any) -> tuple[float | None, int | None]:
    """The validation fraction and seed a bundle's training record names, if any."""
    training: dict[str, Any] = metadata.training if isinstance(metadata.training, dict) else {}
    data = training.get("data")
    data = data if isinstance(data, dict) else {}
    fraction, seed = data.get("validation_fraction"), training.get("seed")
    fraction = float(fraction) if isinstance(fraction, (int, float)) and 0 <= fraction < 1 else None
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else None
    return fraction, seed


def _cmd_shift_report(args: argparse.Namespace) -> int:
    from cxr_pneumonia.robustness import shift_report
    from cxr_pneumonia.shifts import DEFAULT_SHIFTS, get_shift

    names = list(DEFAULT_SHIFTS)
    if args.shifts:
        names = [name.strip() for name in args.shifts.split(",") if name.strip()]
        for name in names:
            get_shift(name)  # ValueError listing the shifts
    if args.plot and Path(args.plot).suffix.lower() != ".png":
        msg = f"--plot {args.plot}: give a PNG file name such as shifts.png"
        raise ValueError(msg)
    predictor = _load_predictor(args.bundle, batch_size=args.batch_size)
    recorded_fraction, recorded_seed = _recorded_split(predictor.metadata)
    fraction = args.validation_fraction
    if fraction is None:
        fraction = 0.1 if recorded_fraction is None else recorded_fraction
    seed = args.seed if args.seed is not None else (recorded_seed or 0)
    if args.split == "validation":
        _logger.info("validation split: fraction %g, seed %d", fraction, seed)
    data = _load_data(
        args,
        image_size=predictor.image_size,
        color_mode=predictor.color_mode,
        batch_size=args.batch_size,
        validation_fraction=fraction,
        augment=False,
        seed=seed,
    )
    report = shift_report(
        predictor,
        data,
        split=args.split,
        threshold=args.threshold,
        shifts=names,
        batch_size=args.batch_size,
        seed=seed,
    )
    if args.plot:
        from cxr_pneumonia.plots import plot_shift_report

        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot_shift_report(report, args.plot)
        _logger.info("plot written to %s", args.plot)
    if args.format == "json":
        print(json.dumps({"bundle": args.bundle, **report.to_dict()}, indent=2))
    elif args.format == "markdown":
        print(report.to_markdown())
    else:
        print(f"{args.bundle} on {data.source}, split {args.split}\n")
        print(report.to_text())
    return EXIT_OK


def _cmd_ood_fit(args: argparse.Namespace) -> int:
    from cxr_pneumonia.bundle import add_ood_check, load_bundle
    from cxr_pneumonia.ood import fit_ood_check

    model, metadata = load_bundle(args.bundle)
    recorded_fraction, recorded_seed = _recorded_split(metadata)
    fraction = args.validation_fraction
    if fraction is None:
        fraction = 0.1 if recorded_fraction is None else recorded_fraction
    seed = args.seed if args.seed is not None else (recorded_seed or 0)
    data = _load_data(
        args,
        image_size=metadata.image_size,
        color_mode=metadata.color_mode,
        validation_fraction=float(fraction),
        augment=False,
        seed=seed,
    )
    _logger.info("%s", data.summary())
    check = fit_ood_check(
        model,
        data.images["train"],
        data.images.get("validation"),
        acceptance=args.acceptance,
        batch_size=args.batch_size,
    )
    add_ood_check(args.bundle, check)
    stats = check.stats
    print(
        f"{args.bundle}: OOD check on {', '.join(check.feature_layers)} fitted on "
        f"{stats['n_fit']} training images; threshold {check.threshold:.4g} accepts "
        f"{100 * stats['calibration_accepted']:.1f}% of {stats['n_calibration']} "
        f"{stats['calibration']} images"
    )
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from cxr_pneumonia.export import export_model

    path = export_model(args.bundle, args.out, format=args.format, overwrite=args.overwrite)
    _logger.info("exported %s as %s", args.bundle, args.format)
    print(path)
    return EXIT_OK


# --- data, registries, info ------------------------------------------------------------


def _cmd_download(args: argparse.Namespace) -> int:
    from cxr_pneumonia.data.download import ensure_local
    from cxr_pneumonia.data.sources import get_source

    path = ensure_local(get_source(args.name), cache_dir=args.cache_dir, progress=args.progress)
    print(path)
    return EXIT_OK


def _cmd_summary(args: argparse.Namespace) -> int:
    data = _load_data(
        args,
        image_size=(args.image_size, args.image_size),
        validation_fraction=args.validation_fraction,
        augment=False,
        seed=args.seed,
    )
    print(data.summary())
    return EXIT_OK


def _cmd_datasets(args: argparse.Namespace) -> int:
    from cxr_pneumonia.data.sources import get_source, list_datasets

    rows = [["name", "kind", "hash", "description"]]
    for name in list_datasets():
        source = get_source(name)
        checked = "known" if source.known_hash else "trust on first use"
        rows.append([name, source.kind, checked, source.description])
    print(_table(rows))
    return EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    from cxr_pneumonia.models import get_model_spec, list_models

    rows = [["name", "kind", "input", "description"]]
    for name in list_models():
        spec = get_model_spec(name)
        size = "x".join(map(str, spec.default_input_shape))
        rows.append([name, spec.kind, size, spec.description])
    print(_table(rows))
    return EXIT_OK


def _cmd_info(args: argparse.Namespace) -> int:
    import importlib.resources

    from cxr_pneumonia.data.download import default_cache_dir
    from cxr_pneumonia.devices import device_info

    info: dict[str, Any] = {_PROG: __version__, "python": sys.version.split()[0]}
    info.update(_versions("tensorflow", "keras", "numpy", "PIL", "pooch", "pydicom"))
    info["cache_dir"] = str(default_cache_dir())
    model = importlib.resources.files("cxr_pneumonia") / "assets" / "default_model"
    info["default_model"] = str(model) if model.is_dir() else None
    info["devices"] = device_info()
    print(json.dumps(info, indent=2, default=str))
    return EXIT_OK


def _versions(*modules: str) -> Iterator[tuple[str, str | None]]:
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            yield name, None
        else:
            yield name, str(getattr(module, "__version__", "unknown"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
