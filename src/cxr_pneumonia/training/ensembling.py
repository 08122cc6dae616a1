"""Train K members of one recipe with different seeds and average them:
[`fit_ensemble`][cxr_pneumonia.training.ensembling.fit_ensemble].

Every member is built and trained on the same
[`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits] (so they share the validation patients,
and the ensemble's threshold can be chosen on that split), from its own seed: ``seed``, ``seed +
1``, ... The seed sets the initial weights (``keras.utils.set_random_seed`` before the member is
built) and the run's random state; the training pipeline continues its own shuffle and augmentation
stream, so each member also sees the epochs in another order.

With ``checkpoint_dir``, member ``k`` trains in ``<checkpoint_dir>/member-<k>``
(resumable, as [`fit`][cxr_pneumonia.training.fitting.fit] is) and is saved there as a bundle
when it finishes; a rerun with ``resume=True`` loads the finished members
instead of training them again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_pneumonia.bundle import load_bundle, save_model
from cxr_pneumonia.data.splits import DatasetSplits
from cxr_pneumonia.ensembles import ensemble
from cxr_pneumonia.exceptions import BundleError, EnsembleError
from cxr_pneumonia.training.fitting import fit
from cxr_pneumonia.training.result import TrainingResult

if TYPE_CHECKING:
    import keras

__all__ = ["EnsembleTrainingResult", "fit_ensemble"]

logger = logging.getLogger("cxr_pneumonia")

MEMBER_BUNDLE = "bundle"
"""Name of a finished member's bundle inside ``<checkpoint_dir>/member-<k>``."""


@dataclass(frozen=True)
class EnsembleTrainingResult:
    """What [`fit_ensemble`][cxr_pneumonia.training.ensembling.fit_ensemble] returns.

    Attributes:
        model: The ensemble: one Keras model averaging the members (see
            [`ensemble`][cxr_pneumonia.ensembles.ensemble]).
        members: The trained members, in order (flip-TTA wrapped when asked).
        results: Each member's [`TrainingResult`][cxr_pneumonia.training.result.TrainingResult], or
            ``None`` for a member loaded from a finished checkpoint.
        seeds: Each member's seed.
        training_time: Seconds of training of all the members, summed over
            every call that trained them (a member loaded from a finished
            checkpoint counts the time its bundle records), or ``None`` when
            a member's is unknown (see
            [`TrainingResult.training_time`][cxr_pneumonia.training.result.TrainingResult]).
    """

    model: Any
    members: tuple[Any, ...]
    results: tuple[TrainingResult | None, ...]
    seeds: tuple[int, ...]
    training_time: float | None = None


def fit_ensemble(
    build_member: Callable[[int], keras.Model],
    data: DatasetSplits,
    *,
    members: int = 3,
    seed: int = 0,
    tta: bool = False,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    name: str = "ensemble",
    **fit_options: Any,
) -> EnsembleTrainingResult:
    """Train ``members`` models of one recipe from different seeds and average them.

    Args:
        build_member: Builds one untrained member from its seed, e.g.
            ``lambda seed: build_model("cnn-small", input_shape=(224, 224, 1), seed=seed)``
            (the global random seed is already set to it).
        data: The data, as for [`fit`][cxr_pneumonia.training.fitting.fit]; every member uses it.
        members: How many members, at least 2.
        seed: The first member's seed; member ``k`` uses ``seed + k``.
        tta: Wrap each trained member in flip test-time augmentation
            ([`with_flip_tta`][cxr_pneumonia.models.tta.with_flip_tta]).
        checkpoint_dir: Folder of the members' checkpoints and finished
            member bundles (``member-<k>/``); ``None`` keeps nothing.
        resume: Continue interrupted members and load finished ones from
            ``checkpoint_dir``.
        name: The Keras name of the ensemble.
        **fit_options: Passed to [`fit`][cxr_pneumonia.training.fitting.fit] for every member
            (``epochs``, ``optimizer``, ``callbacks``, ...).

    Returns:
        The [`EnsembleTrainingResult`][cxr_pneumonia.training.ensembling.EnsembleTrainingResult];
        each member's record in the ensemble's provenance holds its seed and training summary.

    Raises:
        EnsembleError: If ``members < 2``.
        ValueError: If a fit option is invalid (see [`fit`][cxr_pneumonia.training.fitting.fit]).
        TrainingError: If a member can't be trained (see
            [`fit`][cxr_pneumonia.training.fitting.fit]).

    Examples:
        >>> result = fit_ensemble(                                  # doctest: +SKIP
        ...     lambda seed: build_model("cnn-small", input_shape=(224, 224, 1), seed=seed),
        ...     data, members=3, epochs=60, tta=True, checkpoint_dir="runs/ens")
        >>> save_model(result.model, "bundles/ens", threshold=0.4)  # doctest: +SKIP
    """
    import keras

    if isinstance(members, bool) or not isinstance(members, int) or members < 2:
        msg = f"an ensemble needs at least two members; got members={members!r}"
        raise EnsembleError(msg)
    root = Path(checkpoint_dir) if checkpoint_dir is not None else None
    trained: list[keras.Model] = []
    results: list[TrainingResult | None] = []
    records: list[dict[str, Any]] = []
    seeds = tuple(seed + k for k in range(members))
    for k, member_seed in enumerate(seeds):
        folder = root / f"member-{k}" if root is not None else None
        finished = folder / MEMBER_BUNDLE if folder is not None else None
        model: keras.Model | None = None
        result: TrainingResult | None = None
        summary: dict[str, Any] = {}
        if resume and finished is not None and finished.is_dir():
            try:
                model, metadata = load_bundle(finished)
            except BundleError as exc:
                logger.warning("member %d: retraining, its saved bundle is unusable: %s", k, exc)
            else:
                summary = dict(metadata.training)
                logger.info("member %d of %d: loaded from %s", k + 1, members, finished)
        if model is None:
            logger.info("member %d of %d: training with seed %d", k + 1, members, member_seed)
            keras.utils.set_random_seed(member_seed)
            model = build_member(member_seed)
            options = dict(fit_options)
            optimizer = options.get("optimizer")
            if isinstance(optimizer, keras.optimizers.Optimizer) and k > 0:
                # An optimizer holds its model's slots: each member gets a fresh copy.
                options["optimizer"] = type(optimizer).from_config(optimizer.get_config())
            result = fit(
                model,
                data,
                seed=member_seed,
                checkpoint_dir=folder,
                resume=resume,
                **options,
            )
            summary = {
                "seed": member_seed,
                # The split the member was tuned on, so that its bundle alone re-draws it.
                "data": {
                    "source": data.source,
                    "validation_fraction": data.validation_fraction,
                    "seed": data.seed,
                },
                **result.record(),
            }
            if finished is not None:
                save_model(model, finished, training=summary, overwrite=True)
        if tta:
            from cxr_pneumonia.models import with_flip_tta

            model = with_flip_tta(model)
        trained.append(model)
        results.append(result)
        records.append({"training": summary})
    combined = ensemble(trained, name=name, provenance=records)
    times = [record["training"].get("training_time") for record in records]
    return EnsembleTrainingResult(
        model=combined,
        members=tuple(trained),
        results=tuple(results),
        seeds=seeds,
        training_time=None if None in times else round(sum(times), 1),
    )
