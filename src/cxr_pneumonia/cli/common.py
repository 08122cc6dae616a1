"""What several commands share: the data options, loading data, loading a model bundle."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from cxr_pneumonia.cli.options import library_option, option
from cxr_pneumonia.cli.output import PROG
from cxr_pneumonia.exceptions import BundleError

__all__ = [
    "DataChoice",
    "data_options",
    "load_data",
    "load_predictor",
    "model_option",
    "ood_option",
    "recorded_split",
    "splits_differ",
    "validation_metrics",
    "validation_split",
]

F = TypeVar("F", bound=Callable[..., Any])

_LOAD = "cxr_pneumonia.data.loading:load_dataset"


@dataclass(frozen=True)
class DataChoice:
    """Which data a command reads, from the data options.

    Attributes:
        data_dir: A folder of images, or ``None``.
        dataset: A registered data set name, or ``None``.
        cache_dir: The cache folder, or ``None`` for the default.
        progress: Whether to show progress bars.
    """

    data_dir: str | None
    dataset: str | None
    cache_dir: str | None
    progress: bool


def data_options(
    command: F | None = None, *, required: bool = True, data_dir_help: str | None = None
) -> Any:
    """Add ``--data-dir`` | ``--dataset``, ``--cache-dir`` and ``--no-progress``.

    The command receives them as one ``data`` argument, a ``DataChoice``.
    Use as ``@data_options`` (one of the two is required) or
    ``@data_options(required=False)``.

    Args:
        command: The command function.
        required: Whether one of ``--data-dir`` and ``--dataset`` must be given.
        data_dir_help: Other words for ``--data-dir``'s help.

    Returns:
        The decorated function, or a decorator.
    """
    if command is None:
        return functools.partial(data_options, required=required, data_dir_help=data_dir_help)

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        data_dir, dataset = kwargs.pop("data_dir"), kwargs.pop("dataset")
        if data_dir is not None and dataset is not None:
            msg = "--dataset: not allowed with argument --data-dir (give one of them)"
            raise click.UsageError(msg)
        if required and data_dir is None and dataset is None:
            msg = "one of the arguments --data-dir --dataset is required"
            raise click.UsageError(msg)
        kwargs["data"] = DataChoice(
            data_dir, dataset, kwargs.pop("cache_dir"), kwargs.pop("progress")
        )
        return command(*args, **kwargs)

    extra = {"help": data_dir_help} if data_dir_help else {}
    decorators = [
        library_option(_LOAD, "progress", "--progress/--no-progress"),
        library_option(_LOAD, "cache_dir", type=click.Path(file_okay=False)),
        library_option(
            _LOAD,
            "name",
            "--dataset",
            "dataset",
            default=None,
            metavar="NAME",
            help="a registered data set to download (see `datasets`); or give --data-dir",
        ),
        library_option(_LOAD, "data_dir", metavar="DIR", type=click.Path(file_okay=False), **extra),
    ]
    decorated: Any = wrapper
    for decorator in decorators:
        decorated = decorator(decorated)
    return decorated


def load_data(data: DataChoice, **options: Any) -> Any:
    """[`load_dataset`][cxr_pneumonia.data.loading.load_dataset] on the data the options chose.

    Args:
        data: The data options.
        **options: More arguments of ``load_dataset``.

    Returns:
        The [`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits].
    """
    from cxr_pneumonia.data.loading import load_dataset

    return load_dataset(
        data.dataset or "kermany2018",
        data_dir=data.data_dir,
        cache_dir=data.cache_dir,
        progress=data.progress,
        **options,
    )


def model_option(command: F) -> F:
    """Add ``--model BUNDLE`` (default: the shipped model).

    Args:
        command: The command function.

    Returns:
        The decorated function.
    """
    decorator = option(
        "--model",
        "bundle",
        metavar="BUNDLE",
        default=None,
        show_default="the shipped model",
        type=click.Path(),
        help="model bundle folder (written by `train`)",
    )
    return decorator(command)


def ood_option(command: F) -> F:
    """Add ``--ood flag|error|ignore``: what to do with inputs that don't look like X-rays.

    Args:
        command: The command function.

    Returns:
        The decorated function.
    """
    decorator = library_option(
        "cxr_pneumonia.predictor:Predictor.__init__",
        "ood",
        type=click.Choice(("flag", "error", "ignore")),
        help="inputs that don't look like chest X-rays: flag them, refuse them (error), "
        "or don't check (ignore)",
    )
    return decorator(command)


def load_predictor(bundle: str | None, *, batch_size: int = 32, ood: str = "flag") -> Any:
    """The [`Predictor`][cxr_pneumonia.predictor.Predictor] of a bundle, or of the shipped model.

    Args:
        bundle: A bundle folder, or ``None`` for the shipped model.
        batch_size: Images per inference batch.
        ood: The out-of-distribution policy: ``"flag"``, ``"error"`` or ``"ignore"``.

    Returns:
        The Predictor.

    Raises:
        BundleError: If the bundle can't be loaded, or no model is shipped
            (the message then says to pass ``--model``).
    """
    from cxr_pneumonia.predictor import Predictor

    if bundle is not None:
        return Predictor.load(bundle, batch_size=batch_size, ood=ood)  # type: ignore[arg-type]
    try:
        return Predictor.default(batch_size=batch_size, ood=ood)  # type: ignore[arg-type]
    except BundleError as exc:
        msg = f"{exc}; or pass --model BUNDLE (a folder written by `{PROG} train`)"
        raise BundleError(msg) from exc


def recorded_split(metadata: Any) -> tuple[float | None, int | None]:
    """The validation fraction and seed a bundle's training record names, if any.

    Args:
        metadata: A [`BundleMetadata`][cxr_pneumonia.bundle.BundleMetadata].

    Returns:
        ``(validation_fraction, seed)``, each ``None`` when not recorded.
    """
    training: dict[str, Any] = metadata.training if isinstance(metadata.training, dict) else {}
    data = training.get("data")
    data = data if isinstance(data, dict) else {}
    # data.seed names the split; the top-level seed is the model's (the same for `train`,
    # the member's own for a fit_ensemble member).
    fraction, seed = data.get("validation_fraction"), data.get("seed", training.get("seed"))
    fraction = float(fraction) if isinstance(fraction, (int, float)) and 0 <= fraction < 1 else None
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else None
    return fraction, seed


def validation_split(
    metadata: Any, validation_fraction: float | None, seed: int | None
) -> tuple[float, int]:
    """The validation split to re-draw for a bundle: the options given, else its record's.

    Args:
        metadata: The bundle's [`BundleMetadata`][cxr_pneumonia.bundle.BundleMetadata].
        validation_fraction: ``--validation-fraction``, or ``None`` for the recorded one.
        seed: ``--seed``, or ``None`` for the recorded one.

    Returns:
        ``(validation_fraction, seed)``; without an option or a record,
        ``load_dataset``'s defaults (`DEFAULT_VALIDATION_FRACTION` and 0).
    """
    recorded_fraction, recorded_seed = recorded_split(metadata)
    if validation_fraction is None:
        from cxr_pneumonia.data.loading import DEFAULT_VALIDATION_FRACTION

        validation_fraction = (
            DEFAULT_VALIDATION_FRACTION if recorded_fraction is None else recorded_fraction
        )
    if seed is None:
        seed = 0 if recorded_seed is None else recorded_seed
    return float(validation_fraction), seed


def splits_differ(records: Any) -> bool:
    """Whether bundles name different validation splits in their training records.

    Only records that name a split (a validation fraction) count: a bundle
    saved by hand, or a ``fit_ensemble`` member of an older version (which
    recorded its own seed but not its split), has an unknown split, not a
    different one.

    Args:
        records: [`BundleMetadata`][cxr_pneumonia.bundle.BundleMetadata] objects.

    Returns:
        ``True`` when two recorded splits disagree.
    """
    named = {split for split in map(recorded_split, records) if split[0] is not None}
    return len(named) > 1


def validation_metrics(report: Any, target: float) -> dict[str, Any]:
    """A bundle's ``metrics`` record: the validation report's figures and the target.

    Args:
        report: The validation
            [`EvaluationReport`][cxr_pneumonia.evaluation.report.EvaluationReport].
        target: The sensitivity the threshold was chosen for.

    Returns:
        ``{"val_<figure>": value, ..., "target_sensitivity": target}``.
    """
    metrics = {
        f"val_{k}": v
        for k, v in report.to_dict(include_scores=False).items()
        if k not in ("classification_report", "class_names")
    }
    metrics["target_sensitivity"] = target
    return metrics
