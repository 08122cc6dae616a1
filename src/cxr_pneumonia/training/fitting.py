"""`fit`: compile and train a model on a [`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits].

One call runs up to two phases: ``"train"`` (``epochs``) and, when
``fine_tune_epochs > 0``, ``"fine_tune"`` with the pretrained backbone
unfrozen at ``fine_tune_learning_rate``. Epochs are numbered continuously
across the phases (0-based, as in Keras' logs and the CSV log).

With a ``checkpoint_dir`` the run is resumable: the folder holds the best
models, the CSV log, Keras' ``BackupAndRestore`` state and ``run_state.json``
(the history and which phases are done). Calling [`fit`][cxr_pneumonia.training.fitting.fit] again
with the same folder and ``resume=True`` continues at the epoch after the last one completed, in the
right phase; a finished run just reloads its final weights. That bookkeeping (``run_state.json``,
the phases' final weights, the CSV log and checkpoints on resume, which weights a phase kept) lives
in the private ``_fit_state`` beside this module, which does not import it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import keras

from cxr_pneumonia.data.augment import Augmentation, augmentation_in_train_step
from cxr_pneumonia.data.pipeline import make_dataset
from cxr_pneumonia.data.splits import DatasetSplits
from cxr_pneumonia.devices import plan_devices
from cxr_pneumonia.exceptions import TrainingError
from cxr_pneumonia.models.backbones import find_backbone, set_backbone_trainable
from cxr_pneumonia.outputs import OutputKind
from cxr_pneumonia.training._distributed import (
    fit_multi_worker,
    is_multi_worker,
    rebatch,
    train_steps,
    worker_folder,
)
from cxr_pneumonia.training._fit_state import (
    STATE_FILENAME,
    TRAINING_SECONDS,
    RunState,
    clear_run,
    close_logs,
    kept_weights,
    load_npz_weights,
    load_state,
    next_epoch,
    remove_run_debris,
    seed_checkpoints,
    trim_logs,
    with_run_state,
)
from cxr_pneumonia.training._mixup import check_mixup, mixup_in_train_step
from cxr_pneumonia.training.callbacks import (
    BACKUP_DIRNAME,
    SwapInEMAWeights,
    default_callbacks,
    run_state_callbacks,
    warmup_cosine_decay,
)
from cxr_pneumonia.training.metrics import PositiveColumnAUC
from cxr_pneumonia.training.options import (
    check_callbacks,
    check_class_weight,
    check_fraction,
    check_int,
    check_model,
    check_optimizer,
    check_rate,
    ema_momentum_for,
    make_optimizer,
)
from cxr_pneumonia.training.progress import TrainingProgress
from cxr_pneumonia.training.result import TrainingResult, training_result

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["DEFAULT_EPOCHS", "TrainingResult", "fit", "match_labels"]

logger = logging.getLogger("cxr_pneumonia")

DEFAULT_EPOCHS = 60
"""Epochs of [`fit`][cxr_pneumonia.training.fitting.fit]'s first phase by default: the default
recipe's (every member of the shipped model; the shift-robustness guide's "Recipes tried" says
why 60 and not 25 or 40)."""


def match_labels(dataset: tf.data.Dataset | None, kind: OutputKind) -> tf.data.Dataset | None:
    """Give a dataset's labels the form a model of output ``kind`` is compiled for.

    The pipelines yield ``int32`` labels ``(N,)``; a softmax model is compiled
    with categorical cross-entropy on one-hot ``(N, 2)`` labels.

    Args:
        dataset: Batches of ``(images, labels)``, or ``None``.
        kind: ``"sigmoid"`` (returned as is) or ``"softmax"``.

    Returns:
        The dataset, with one-hot labels for ``"softmax"``.
    """
    if dataset is None or kind != "softmax":
        return dataset
    import tensorflow as tf

    return dataset.map(
        lambda images, labels: (images, tf.one_hot(tf.cast(labels, tf.int32), 2)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _compile(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    optimizer: keras.optimizers.Optimizer,
    *,
    kind: OutputKind | None = "sigmoid",
    xla: bool = False,
    label_smoothing: float = 0.0,
) -> None:
    with strategy.scope(), warnings.catch_warnings():
        # Keras warns when a layer has no XLA kernel and falls back: logged below instead.
        warnings.filterwarnings("ignore", message="Model doesn't support `jit_compile=True`")
        if kind == "softmax":
            # One-hot labels; precision, recall and the AUCs read the PNEUMONIA
            # column only, so the logs mean what they mean for a sigmoid model.
            loss: keras.losses.Loss = keras.losses.CategoricalCrossentropy(
                label_smoothing=label_smoothing
            )
            metrics: list[keras.metrics.Metric] = [
                keras.metrics.CategoricalAccuracy(name="accuracy"),
                keras.metrics.Precision(class_id=1, name="precision"),
                keras.metrics.Recall(class_id=1, name="recall"),
                PositiveColumnAUC(name="auc"),
                PositiveColumnAUC(curve="PR", name="pr_auc"),
            ]
        else:
            loss = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
            metrics = [
                keras.metrics.BinaryAccuracy(name="accuracy"),
                keras.metrics.Precision(name="precision"),
                keras.metrics.Recall(name="recall"),
                keras.metrics.AUC(name="auc"),
                keras.metrics.AUC(curve="PR", name="pr_auc"),
            ]
        model.compile(
            jit_compile=xla,
            optimizer=optimizer,
            loss=loss,
            metrics=metrics,
        )
    if xla and not model.jit_compile:  # a layer has no XLA kernel, or op determinism is on
        logger.info("model %r can't be compiled with XLA; training without it", model.name)


def _unaugmented_train(data: DatasetSplits) -> tuple[tf.data.Dataset, Augmentation | None]:
    """The training pipeline without its augmentation, and that augmentation (for the step)."""
    aug = data.augmentation
    if aug is None or not aug.enabled or "train" not in data.images:
        return data.train, None
    pipeline = make_dataset(
        data.images["train"],
        data.labels["train"],
        batch_size=data.batch_size,
        shuffle=True,
        augment=False,
        seed=data.seed,
    )
    logger.info("augmenting inside the training step (augment_on='device')")
    return pipeline, aug


def _cosine_scheduler(
    peak: float, offset: int, epochs: int, warmup: int
) -> keras.callbacks.LearningRateScheduler:
    """Warmup-cosine over the ``epochs`` of a phase that starts at (0-based) epoch ``offset``."""
    schedule = warmup_cosine_decay(peak, epochs=epochs, warmup=warmup)
    return keras.callbacks.LearningRateScheduler(lambda epoch, lr: schedule(epoch - offset, lr))


def _build_callbacks(
    callbacks: Sequence[keras.callbacks.Callback] | Literal["default"] | None,
    folder: Path | None,
    has_validation: bool,
    schedule: Literal["cosine", "plateau"],
) -> list[keras.callbacks.Callback]:
    if isinstance(callbacks, str):
        return default_callbacks(folder, validation=has_validation, schedule=schedule)
    chosen = list(callbacks or [])
    if folder is not None:
        kinds = (keras.callbacks.CSVLogger, keras.callbacks.BackupAndRestore)
        chosen += [
            extra
            for extra in run_state_callbacks(folder)
            if not any(
                isinstance(c, kind) for c in chosen for kind in kinds if isinstance(extra, kind)
            )
        ]
    return chosen


def fit(
    model: keras.Model,
    data: DatasetSplits,
    *,
    epochs: int = DEFAULT_EPOCHS,
    learning_rate: float = 2e-3,
    optimizer: str | keras.optimizers.Optimizer = "adamw",
    weight_decay: float = 1e-4,
    ema: bool = True,
    schedule: Literal["cosine", "plateau"] = "cosine",
    warmup_epochs: int = 2,
    label_smoothing: float = 0.0,
    mixup: float = 0.0,
    class_weight: Mapping[int, float] | Literal["balanced"] | None = "balanced",
    callbacks: Sequence[keras.callbacks.Callback] | Literal["default"] | None = "default",
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    fine_tune_epochs: int = 0,
    fine_tune_learning_rate: float = 1e-5,
    seed: int | None = None,
    deterministic: bool = False,
    verbose: Literal["auto", 0, 1, 2] | int = "auto",
    tensorboard_dir: str | os.PathLike[str] | None = None,
    augment_on: Literal["auto", "pipeline", "device"] = "auto",
) -> TrainingResult:
    """Compile and train ``model`` on ``data``; optionally fine-tune its backbone.

    The model is compiled (inside its distribution strategy's scope) with
    binary cross-entropy and the metrics ``accuracy``, ``precision``,
    ``recall``, ``auc`` (ROC) and ``pr_auc`` (precision-recall), so the epoch
    logs have the keys ``loss``, ``accuracy``, ..., ``val_loss``,
    ``val_accuracy``, ``val_recall``, ``val_auc``, ``val_pr_auc``.

    Training uses the model's distribution strategy (``model.distribute_strategy``,
    set by ``build_model(..., strategy=...)``); the optimizer is created in its
    scope (an optimizer instance made outside it is re-created from its
    config). When the strategy has ``N > 1`` replicas, ``data.batch_size`` is
    taken as the per-replica batch and the pipelines are re-batched to a
    global batch of ``data.batch_size * N``; a last training batch of fewer
    than ``N`` images, which would leave a replica without one, is left out of
    each epoch (validation scores every image).

    Under a ``MultiWorkerMirroredStrategy`` spanning several workers (``TF_CONFIG``),
    run the same call on every worker, with the same data and ``seed``: each
    worker takes its share of every global batch, and the workers train one
    model in sync. Keras 3's ``Model.fit`` fails there (keras-team/keras#20585,
    tensorflow/tensorflow#72388), so ``fit`` runs Keras' own train and test
    steps in a loop of its own that drives the callbacks the same way, except
    that ``model.stop_training`` is honoured at the end of an epoch only. Every
    worker runs the callbacks: with a ``checkpoint_dir``, the chief writes in
    it and the other workers in a sub-folder ``<task type>-<task id>`` (e.g.
    ``worker-1``), so they don't overwrite each other's files.

    Args:
        model: A ``keras.Model`` with one sigmoid output, e.g. from ``build_model``.
        data: The training data; ``data.validation`` may be ``None``, in which
            case the default callbacks monitor the training loss and accuracy.
        epochs: Epochs of the first phase (``>= 1``).
        learning_rate: Learning rate of the first phase (ignored when
            ``optimizer`` is an instance: its own rate is used).
        optimizer: ``"adam"``, ``"adamw"``, ``"rmsprop"``, ``"sgd"``, or a fresh
            (unused) ``keras.optimizers.Optimizer``; the fine-tune phase uses a
            new optimizer of the same kind and configuration.
        weight_decay: Decoupled weight decay of an optimizer given by name
            (``0``: none); an instance keeps its own.
        ema: Keep an exponential moving average of the weights (an optimizer
            given by name; momentum 0.99, less on short runs: see
            [`ema_momentum_for`][cxr_pneumonia.training.options.ema_momentum_for]): the
            model is validated, checkpointed and left with the averaged weights.
        schedule: With ``callbacks="default"``: ``"cosine"`` runs every epoch
            asked, the rate rising over ``warmup_epochs`` then following
            [`warmup_cosine_decay`][cxr_pneumonia.training.callbacks.warmup_cosine_decay] (the
            fine-tune phase decays from its own rate, without warmup);
            ``"plateau"`` halves the rate when the validation loss stalls and
            stops early (``EarlyStopping`` restoring the best weights). A list
            of ``callbacks`` replaces the schedule too.
        warmup_epochs: Warmup epochs of the ``"cosine"`` schedule (at most
            ``epochs - 1`` are used).
        label_smoothing: Train on labels pulled towards 1/2 by this amount
            (``keras.losses.BinaryCrossentropy(label_smoothing=)``: a PNEUMONIA
            label counts as ``1 - label_smoothing / 2``), in ``[0, 1)``; ``0``: none.
            The loss figures (also ``val_loss``) are those of the smoothed labels.
        mixup: Train on blends of pairs of images (mixup, Zhang et al. 2018):
            each training image is blended with another of its batch by a
            weight ``lam ~ Beta(mixup, mixup)``, after the augmentation, and
            trained with the blend of the two images' class-weighted losses;
            ``0``: none (``0.2`` is usual), else in ``[0.001, 1000]``.
            Validation is not blended. The training metrics are those of the
            blends: ``accuracy`` counts a blended label as right only when it
            equals the rounded prediction (a softmax model's: its majority
            class), ``precision``/``recall``/``auc`` count any blend with some
            PNEUMONIA in it as PNEUMONIA; compare runs on the ``val_*`` ones.
        class_weight: ``"balanced"`` (``data.class_weight``), ``{0: w0, 1: w1}``
            with positive weights, or ``None``.
        callbacks: ``"default"`` for
            [`default_callbacks`][cxr_pneumonia.training.callbacks.default_callbacks] (in
            ``checkpoint_dir``), ``None`` for none, or a list that *replaces* the defaults (compose
            with ``default_callbacks(...)`` to extend them). With a ``checkpoint_dir``, a
            ``CSVLogger`` and a ``BackupAndRestore`` in that folder are added to a list that lacks
            one of that type. The same instances serve both phases; a ``LearningRateScheduler`` in
            the list also drives the fine-tune rate.
        checkpoint_dir: Folder of the best models, the CSV log, the backup
            and ``run_state.json``; ``None`` writes no files (and can't resume).
        resume: Continue the run found in ``checkpoint_dir`` (at the epoch
            after the last one completed, in its phase). ``False`` deletes that
            run's files first and starts over.
        fine_tune_epochs: Epochs of a second phase with the backbone unfrozen
            (``0``: none). Needs a model with a pretrained backbone.
        fine_tune_learning_rate: Learning rate of the fine-tune phase.
        seed: Seed of Python, NumPy and TensorFlow (``keras.utils.set_random_seed``),
            set before training; ``None`` leaves the global seeds alone. The
            initial weights are drawn earlier, by ``build_model(..., seed=)``,
            and the data order and augmentation by ``load_dataset(..., seed=)``.
        deterministic: Switch TensorFlow to deterministic ops
            (``tf.config.experimental.enable_op_determinism``) before training,
            so that two runs with the same seeds, data and model give identical
            weights, also in two processes (slower; needs ``seed``). The switch
            is process-wide and stays on after ``fit`` returns.
        verbose: Progress output
            ([`TrainingProgress`][cxr_pneumonia.training.progress.TrainingProgress], on standard
            output, in place of Keras' bar): ``0`` none; ``2`` one compact line per epoch with the
            run's time left; ``1`` and ``"auto"`` also redraw a live line during each epoch, on a
            terminal only (plain lines in files and pipes). Unless ``0``, a last line says which
            epoch's weights the model keeps and why
            ([`TrainingResult.summary`][cxr_pneumonia.training.result.TrainingResult.summary]).
        tensorboard_dir: Folder of TensorBoard logs (``keras.callbacks.TensorBoard``,
            added to the callbacks); ``None`` for none. Needs the ``tensorboard``
            extra (``pip install 'cxr-pneumonia[tensorboard]'``) to view them.
        augment_on: Where the training augmentation (``data.augmentation``)
            runs: ``"pipeline"`` (in ``data.train``'s ``tf.data`` pipeline),
            ``"device"`` (inside the training step, on the GPU when there is
            one: the pipeline is rebuilt from ``data.images`` without
            augmentation, see
            [`augmentation_in_train_step`][cxr_pneumonia.data.augment.augmentation_in_train_step]),
            or ``"auto"``: ``"device"`` when a GPU is present, else
            ``"pipeline"`` ([`plan_devices`][cxr_pneumonia.devices.plan_devices]).
            The same augmentation either way; a GPU also gets XLA-compiled
            training steps when the model has a single replica.

    Returns:
        A [`TrainingResult`][cxr_pneumonia.training.result.TrainingResult].

    Raises:
        TypeError: If ``model`` is not a ``keras.Model`` or ``data`` not a ``DatasetSplits``.
        ValueError: If an option is out of range or inconsistent (e.g.
            ``fine_tune_epochs > 0`` for a model without a backbone).
        TrainingError: If callbacks monitor validation metrics the data lacks,
            ``checkpoint_dir`` holds a run of another model, or the model has
            more replicas than there are training images.
        ImportError: If ``tensorboard_dir`` is given and TensorBoard is not installed.
    """
    started = time.perf_counter()
    kind = check_model(model)
    if not isinstance(data, DatasetSplits):
        msg = f"fit needs a DatasetSplits (from load_dataset); got {type(data).__name__}"
        raise TypeError(msg)
    if data.train is None:
        msg = "fit needs data with a training split; data.train is None"
        raise TrainingError(msg)
    epochs = check_int("epochs", epochs, 1)
    fine_tune_epochs = check_int("fine_tune_epochs", fine_tune_epochs, 0)
    learning_rate = check_rate("learning_rate", learning_rate)
    fine_tune_learning_rate = check_rate("fine_tune_learning_rate", fine_tune_learning_rate)
    check_optimizer(optimizer)
    weight_decay = 0.0 if weight_decay == 0 else check_rate("weight_decay", weight_decay)
    warmup_epochs = check_int("warmup_epochs", warmup_epochs, 0)
    label_smoothing = check_fraction("label_smoothing", label_smoothing)
    mixup = check_mixup(mixup)
    for name, flag in (("ema", ema), ("deterministic", deterministic)):
        if not isinstance(flag, bool):
            msg = f"fit {name} must be True or False; got {flag!r}"
            raise ValueError(msg)
    if schedule not in ("cosine", "plateau"):
        msg = f"fit schedule must be 'cosine' or 'plateau'; got {schedule!r}"
        raise ValueError(msg)
    weights = check_class_weight(class_weight, data)
    if verbose not in ("auto", 0, 1, 2):
        msg = f"fit verbose must be 'auto', 0, 1 or 2; got {verbose!r}"
        raise ValueError(msg)
    if seed is not None:
        check_int("seed", seed, 0)
    if augment_on not in ("auto", "pipeline", "device"):
        msg = f"fit augment_on must be 'auto', 'pipeline' or 'device'; got {augment_on!r}"
        raise ValueError(msg)
    tensorboard = _tensorboard_callback(tensorboard_dir)
    if deterministic and seed is None:
        msg = (
            "fit deterministic=True needs a seed: without one, every run draws different "
            "random numbers; pass seed=0 (or any int >= 0)"
        )
        raise ValueError(msg)
    has_validation = data.validation is not None
    if isinstance(callbacks, str) and callbacks != "default":
        msg = (
            f"fit callbacks must be 'default', None or a list of keras callbacks; got {callbacks!r}"
        )
        raise ValueError(msg)
    check_callbacks(callbacks, has_validation)
    if fine_tune_epochs and find_backbone(model) is None:
        msg = (
            f"fine_tune_epochs={fine_tune_epochs} but model {model.name!r} has no pretrained "
            "backbone to unfreeze; use fine_tune_epochs=0 or a backbone model (e.g. resnet50)"
        )
        raise ValueError(msg)
    if callbacks == "default" and not has_validation:
        logger.warning(
            "data has no validation split: the default callbacks monitor the training "
            "loss and accuracy"
        )

    strategy = model.distribute_strategy
    replicas = int(strategy.num_replicas_in_sync)
    multi_worker = is_multi_worker(strategy)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None:
        folder = worker_folder(folder, strategy) if multi_worker else folder
        folder.mkdir(parents=True, exist_ok=True)
        remove_run_debris(folder)
        if not resume:
            clear_run(folder)
    state_path = folder / STATE_FILENAME if folder is not None else None
    state = load_state(state_path, model, resume)
    resumed = bool(state["history"] or state["phases"])
    if resumed:
        logger.info("resuming the run in %s after %d epoch(s)", folder, len(state["history"]))

    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    if seed is not None:
        keras.utils.set_random_seed(seed)

    machine = plan_devices()
    train_ds, val_ds = data.train, data.validation
    step_augmentation = None
    if (machine.augment_on if augment_on == "auto" else augment_on) == "device":
        train_ds, step_augmentation = _unaugmented_train(data)
    if kind is not None:
        train_ds, val_ds = match_labels(train_ds, kind), match_labels(val_ds, kind)
    if replicas > 1:
        logger.info("%d replicas: global batch %d", replicas, data.batch_size * replicas)
        sizes = {split: len(data.labels.get(split, ())) for split in ("train", "validation")}
        train_ds = rebatch(
            train_ds,
            batch_size=data.batch_size,
            replicas=replicas,
            examples=sizes["train"],
            training=True,
        )
        if val_ds is not None:
            val_ds = rebatch(
                val_ds, batch_size=data.batch_size, replicas=replicas, examples=sizes["validation"]
            )
    if multi_worker and not strategy.extended.should_checkpoint:
        verbose = 0  # the chief shows the progress

    chosen = _build_callbacks(callbacks, folder, has_validation, schedule)
    steps_per_epoch = train_steps(
        len(data.labels["train"]), batch_size=data.batch_size, replicas=replicas
    )
    if tensorboard is not None:
        chosen.append(tensorboard)
    progress = None
    if verbose != 0:
        progress = TrainingProgress(
            total_epochs=epochs + fine_tune_epochs,
            live=None if verbose in ("auto", 1) else False,
            monitor="val_loss" if has_validation else "loss",
        )
    plan = [("train", epochs, learning_rate)]
    if fine_tune_epochs:
        plan.append(("fine_tune", fine_tune_epochs, fine_tune_learning_rate))
    epochs_run = 0
    offset = 0
    kept: dict[str, Any] | None = None
    for index, (phase, phase_epochs, rate) in enumerate(plan):
        if phase == "fine_tune":
            set_backbone_trainable(model, True)
        status = state["phases"].get(phase)
        momentum = ema_momentum_for(steps_per_epoch * phase_epochs) if ema else None
        with strategy.scope():  # a Keras optimizer builds in the strategy it was made in
            phase_optimizer = make_optimizer(
                optimizer,
                rate,
                first=index == 0,
                strategy=strategy,
                weight_decay=weight_decay,
                ema_momentum=momentum,
            )
        # compiled even when the phase is already done, so that a resumed, finished run
        # leaves the model as ready to evaluate or train on as a fresh one
        _compile(
            model,
            strategy,
            phase_optimizer,
            kind=kind,
            xla=machine.jit_compile and replicas == 1,
            label_smoothing=label_smoothing,
        )
        if status == "done" and folder is not None:
            load_npz_weights(model, folder / f"after_{phase}.weights.npz")
            offset = next_epoch([row for row in state["history"] if row["phase"] == phase])
            kept = state.get("kept", {}).get(phase, kept)
            logger.info("phase %r already done; loaded its final weights", phase)
            continue
        if status is None and folder is not None:
            shutil.rmtree(folder / BACKUP_DIRNAME, ignore_errors=True)  # stale backup
        state["phases"][phase] = "running"
        recorder = RunState(state, state_path, phase)
        recorder.save()
        seed_checkpoints(chosen, state["history"])
        trim_logs(chosen, offset)
        logger.info(
            "phase %r: epochs %d-%d at learning rate %g",
            phase,
            offset + 1,
            offset + phase_epochs,
            float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
        )
        train = fit_multi_worker if multi_worker else _keras_fit
        phase_callbacks = with_run_state(chosen, recorder)
        if callbacks == "default" and schedule == "cosine":
            warmup = min(warmup_epochs, phase_epochs - 1) if index == 0 else 0
            # first, so the logs of every later callback (the CSV log) carry the rate
            phase_callbacks.insert(0, _cosine_scheduler(rate, offset, phase_epochs, warmup))
        ema = _uses_ema(model.optimizer)
        if ema:  # validate, checkpoint and keep the EMA weights, not the raw ones
            phase_callbacks.insert(0, SwapInEMAWeights())
        if progress is not None:
            phase_callbacks.append(progress)
        try:
            with contextlib.ExitStack() as in_step:
                if mixup:  # entered first, so a device augmentation runs before the mixing
                    in_step.enter_context(mixup_in_train_step(model, mixup, seed=data.seed + index))
                if step_augmentation is not None:
                    in_step.enter_context(
                        augmentation_in_train_step(model, step_augmentation, seed=data.seed + index)
                    )
                train(
                    model,
                    train_ds,
                    val_ds,
                    epochs=offset + phase_epochs,
                    initial_epoch=offset,
                    class_weight=weights,
                    callbacks=phase_callbacks,
                    verbose=0,  # TrainingProgress, not Keras' bar
                )
        except BaseException:
            close_logs(chosen)  # Keras skips on_train_end when training is interrupted
            raise
        epochs_run += recorder.epochs_run
        offset = next_epoch(state["history"])
        if recorder.epochs_run:
            kept = kept_weights(chosen, state["history"], ema=ema)
            state.setdefault("kept", {})[phase] = kept
            recorder.save()

    result = training_result(
        state["history"],
        has_validation,
        folder,
        epochs_run,
        resumed,
        started,
        replicas,
        kept,
        training_time=state.get(TRAINING_SECONDS),
    )
    if progress is not None:
        progress.write(result.summary())
    return result


def _uses_ema(optimizer: Any) -> bool:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return bool(getattr(inner, "use_ema", False))


def _tensorboard_callback(
    tensorboard_dir: str | os.PathLike[str] | None,
) -> keras.callbacks.Callback | None:
    if tensorboard_dir is None:
        return None
    if not isinstance(tensorboard_dir, (str, os.PathLike)):
        msg = f"fit tensorboard_dir must be a folder path or None; got {tensorboard_dir!r}"
        raise ValueError(msg)
    if importlib.util.find_spec("tensorboard") is None:
        msg = (
            "fit tensorboard_dir needs TensorBoard, which is not installed; install it with: "
            "pip install 'cxr-pneumonia[tensorboard]'"
        )
        raise ImportError(msg)
    return keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir))


def _keras_fit(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    *,
    epochs: int,
    initial_epoch: int,
    class_weight: dict[int, float] | None,
    callbacks: list[keras.callbacks.Callback],
    verbose: Literal["auto", 0, 1, 2] | int,
) -> None:
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        initial_epoch=initial_epoch,
        class_weight=class_weight,
        shuffle=False,  # the pipelines shuffle themselves
        callbacks=callbacks,
        verbose=verbose,
    )
