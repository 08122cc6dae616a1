"""The training callbacks, each on its own: crafted logs, then a tiny model for a few epochs."""

from __future__ import annotations

import itertools
import json
import logging

import keras
import numpy as np
import pytest

from cxr_pneumonia.exceptions import TrainingError
from cxr_pneumonia.training.callbacks import (
    BACKUP_DIRNAME,
    BACKUP_STATE_FILENAME,
    BEST_ACCURACY_FILENAME,
    BEST_LOSS_FILENAME,
    LOG_FILENAME,
    AtomicBackupAndRestore,
    AtomicModelCheckpoint,
    MultiMetricEarlyStopping,
    TargetMetricsReached,
    default_callbacks,
    is_lower_better,
    step_decay,
    warmup_cosine_decay,
)
from helpers_training import tiny_images, tiny_model


class _FakeModel:
    """Stands in for a model: weights are one number, the epoch they belong to."""

    def __init__(self) -> None:
        self.weights_value = -1
        self.stop_training = False

    def get_weights(self) -> list[int]:
        return [self.weights_value]

    def set_weights(self, weights: list[int]) -> None:
        self.weights_value = weights[0]


def _drive(callback: keras.callbacks.Callback, logs: list[dict[str, float]]) -> _FakeModel:
    """Run ``callback`` over crafted epoch logs until it stops training, like ``fit`` would."""
    model = _FakeModel()
    callback._model = model  # Callback.model reads _model; set_model wants a keras.Model
    callback.on_train_begin()
    for epoch, row in enumerate(logs):
        model.weights_value = epoch
        callback.on_epoch_end(epoch, row)
        if model.stop_training:
            break
    callback.on_train_end()
    return model


def _row(acc: float, rec: float, loss: float = 0.5) -> dict[str, float]:
    return {"loss": loss, "val_loss": loss, "val_accuracy": acc, "val_recall": rec}


# --- step_decay ----------------------------------------------------------------------


def test_step_decay_halves_every_ten_epochs() -> None:
    schedule = step_decay(0.002, drop=0.5, every=10)
    assert [schedule(e, 0.1) for e in (0, 9, 10, 19, 20, 35)] == pytest.approx(
        [0.002, 0.002, 0.001, 0.001, 0.0005, 0.00025]
    )
    assert isinstance(schedule(3, 0.1), float)


@pytest.mark.parametrize(
    "kwargs", [{"initial": 0}, {"initial": -1.0}, {"drop": 0}, {"drop": 1.5}, {"every": 0}]
)
def test_step_decay_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="step_decay"):
        step_decay(**kwargs)


def test_step_decay_drives_learning_rate_scheduler() -> None:
    model = tiny_model()
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    x = tiny_images(np.array([0, 1] * 5))
    y = np.array([0, 1] * 5)
    scheduler = keras.callbacks.LearningRateScheduler(step_decay(0.01, drop=0.1, every=1))
    history = model.fit(x, y, epochs=3, batch_size=5, callbacks=[scheduler], verbose=0)
    assert history.history["learning_rate"] == pytest.approx([0.01, 0.001, 0.0001])


# --- TargetMetricsReached ------------------------------------------------------------


def test_loss_targets_are_upper_bounds() -> None:
    assert is_lower_better("val_loss")
    assert is_lower_better("loss")
    assert not is_lower_better("val_accuracy")


def test_target_metrics_reached_stops_when_all_targets_are_met() -> None:
    callback = TargetMetricsReached({"val_accuracy": 0.95, "val_loss": 0.1})
    logs = [
        {"val_accuracy": 0.96, "val_loss": 0.2},  # accuracy met, loss not
        {"val_accuracy": 0.90, "val_loss": 0.05},  # loss met, accuracy not
        {"val_accuracy": 0.95, "val_loss": 0.1},  # both met (bounds are inclusive)
        {"val_accuracy": 0.99, "val_loss": 0.01},
    ]
    model = _drive(callback, logs)
    assert model.stop_training
    assert callback.reached_epoch == 2


def test_target_metrics_reached_never_met_does_not_stop() -> None:
    callback = TargetMetricsReached({"val_accuracy": 0.99})
    model = _drive(callback, [{"val_accuracy": 0.5}] * 3)
    assert not model.stop_training
    assert callback.reached_epoch is None


def test_target_metrics_reached_missing_metric_lists_available_keys() -> None:
    callback = TargetMetricsReached({"val_acc": 0.9})
    with pytest.raises(TrainingError, match=r"'val_acc'.*available: loss, val_accuracy"):
        _drive(callback, [{"loss": 0.3, "val_accuracy": 0.9}])


@pytest.mark.parametrize("targets", [{}, {"val_accuracy": "high"}, {"": 0.9}, {"val_loss": np.nan}])
def test_target_metrics_reached_rejects_bad_targets(targets: dict) -> None:
    with pytest.raises(ValueError, match="TargetMetricsReached"):
        TargetMetricsReached(targets)


def test_target_metrics_reached_stops_real_training() -> None:
    model = tiny_model()
    model.compile(keras.optimizers.SGD(0.01), "binary_crossentropy")
    x = tiny_images(np.array([0, 1] * 5))
    y = np.array([0, 1] * 5)
    callback = TargetMetricsReached({"loss": 100.0})  # met at once
    history = model.fit(x, y, epochs=3, batch_size=5, callbacks=[callback], verbose=0)
    assert len(history.history["loss"]) == 1
    assert callback.reached_epoch == 0


# --- MultiMetricEarlyStopping ----------------------------------------------------------


def test_multi_metric_best_epoch_needs_all_targets_and_pareto_improvement() -> None:
    callback = MultiMetricEarlyStopping({"val_accuracy": 0.9, "val_recall": 0.9}, patience=2)
    logs = [
        _row(0.99, 0.80),  # 0: recall target missed -> not best
        _row(0.91, 0.92),  # 1: first qualifying epoch -> best
        _row(0.95, 0.91),  # 2: accuracy better but recall worse -> not better
        _row(0.93, 0.95),  # 3: both better -> best
        _row(0.93, 0.95),  # 4: equal -> not better (wait 1)
        _row(0.99, 0.90),  # 5: recall worse (wait 2) -> stop
        _row(0.99, 0.99),  # 6: never reached
    ]
    model = _drive(callback, logs)
    assert callback.best_epoch == 3
    assert callback.best_metrics == {"val_accuracy": 0.93, "val_recall": 0.95}
    assert callback.stopped_epoch == 5
    assert model.weights_value == 3  # the best epoch's weights are restored


def test_multi_metric_monitor_ranks_qualifying_epochs() -> None:
    callback = MultiMetricEarlyStopping(
        {"val_accuracy": 0.9, "val_recall": 0.9}, patience=3, monitor="val_loss"
    )
    logs = [
        _row(0.95, 0.95, loss=0.30),  # best
        _row(0.92, 0.91, loss=0.20),  # lower loss, targets met -> best despite worse metrics
        _row(0.99, 0.99, loss=0.25),  # higher loss -> not best
        _row(0.85, 0.99, loss=0.10),  # lowest loss but accuracy target missed
    ]
    model = _drive(callback, logs)
    assert callback.best_epoch == 1
    assert model.weights_value == 1
    assert callback.stopped_epoch is None


def test_multi_metric_loss_targets_are_upper_bounds() -> None:
    callback = MultiMetricEarlyStopping({"val_loss": 0.3, "val_accuracy": 0.9}, patience=5)
    _drive(callback, [_row(0.95, 0.9, loss=0.4), _row(0.92, 0.9, loss=0.25)])
    assert callback.best_epoch == 1


def test_multi_metric_without_restore_keeps_last_weights() -> None:
    callback = MultiMetricEarlyStopping(
        {"val_accuracy": 0.9}, patience=5, restore_best_weights=False
    )
    model = _drive(callback, [_row(0.95, 0), _row(0.91, 0), _row(0.92, 0)])
    assert callback.best_epoch == 0
    assert model.weights_value == 2


def test_multi_metric_never_met_warns_and_keeps_weights(caplog) -> None:
    callback = MultiMetricEarlyStopping({"val_accuracy": 0.94, "val_recall": 0.95}, patience=3)
    logs = [_row(0.80, 0.97), _row(0.90, 0.90), _row(0.85, 0.99), _row(0.99, 0.99)]
    with (
        caplog.at_level(logging.DEBUG, logger="cxr_pneumonia"),
        pytest.warns(UserWarning, match=r"no epoch met every target.*val_accuracy 0\.9000") as seen,
    ):
        model = _drive(callback, logs)
    assert len(seen) == 1
    assert "no epoch met every target" not in caplog.text  # said once, not logged as well
    assert callback.best_epoch is None
    assert callback.stopped_epoch == 2  # patience counted from the start
    assert model.weights_value == 2  # last epoch's weights, nothing restored


def test_multi_metric_missing_metric_lists_available_keys() -> None:
    callback = MultiMetricEarlyStopping({"val_recall": 0.9}, patience=2)
    with pytest.raises(TrainingError, match=r"'val_recall'.*available: loss"):
        _drive(callback, [{"loss": 0.4}])


def test_multi_metric_after_targets_reproduces_the_vgg19_notebook_run() -> None:
    """Targets first met at epoch 10 (1-based), no better epoch after: stop at epoch 12."""
    targets = {"val_accuracy": 0.94, "val_recall": 0.95}
    logs = [_row(0.80 + 0.01 * e, 0.90) for e in range(9)]  # epochs 1-9 miss the targets
    logs += [_row(0.95, 0.96), _row(0.94, 0.96), _row(0.95, 0.95)]  # 10 met; 11, 12 not better
    logs += [_row(0.99, 0.99)] * 3  # never reached
    notebook = MultiMetricEarlyStopping(targets, patience=2, mode="after_targets")
    model = _drive(notebook, logs)
    assert notebook.best_epoch == 9  # epoch 10
    assert notebook.stopped_epoch == 11  # epoch 12
    assert model.weights_value == 9
    # The default mode counts patience from the start: it gives up at epoch 2.
    default = MultiMetricEarlyStopping(targets, patience=2)
    with pytest.warns(UserWarning, match="no epoch met every target"):
        _drive(default, logs)
    assert default.stopped_epoch == 1


def test_multi_metric_after_targets_trains_on_until_met_on_random_rows() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")

    def run(mode: str, targets: dict[str, float]) -> tuple[list[float], MultiMetricEarlyStopping]:
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)]
        )
        model.compile(keras.optimizers.SGD(0.01), "mse")
        callback = MultiMetricEarlyStopping(targets, patience=2, mode=mode)  # type: ignore[arg-type]
        history = model.fit(x, y, epochs=6, batch_size=5, callbacks=[callback], verbose=0)
        return history.history["loss"], callback

    never = {"loss": -1.0}  # a squared error is never negative
    with pytest.warns(UserWarning, match="no epoch met every target"):
        losses, _ = run("from_start", never)
    assert len(losses) == 2
    with pytest.warns(UserWarning, match="no epoch met every target"):
        losses, callback = run("after_targets", never)
    assert len(losses) == 6  # waits for the targets up to fit's epochs
    assert callback.stopped_epoch is None
    losses, callback = run("after_targets", {"loss": 1e6})  # met at once: a normal best
    assert callback.best_epoch == int(np.argmin(losses))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patience": 0},
        {"patience": 1.5},
        {"min_delta": -0.1},
        {"monitor": ""},
        {"mode": "notebook"},
    ],
)
def test_multi_metric_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="MultiMetricEarlyStopping"):
        MultiMetricEarlyStopping({"val_accuracy": 0.9}, **kwargs)


def test_multi_metric_restores_best_weights_of_real_training() -> None:
    model = tiny_model()
    model.compile(keras.optimizers.SGD(0.05), "binary_crossentropy", metrics=["accuracy"])
    x = tiny_images(np.array([0, 1] * 5))
    y = np.array([0, 1] * 5)
    callback = MultiMetricEarlyStopping({"loss": 100.0}, patience=1, monitor="loss")
    snapshots: list[list[np.ndarray]] = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights())
    )
    history = model.fit(x, y, epochs=3, batch_size=5, callbacks=[record, callback], verbose=0)
    losses = history.history["loss"]
    best = int(np.argmin(losses))
    assert callback.best_epoch == best
    for restored, expected in zip(model.get_weights(), snapshots[best], strict=True):
        np.testing.assert_array_equal(restored, expected)


# --- default_callbacks ---------------------------------------------------------------


def test_default_callbacks_with_folder(tmp_path) -> None:
    callbacks = default_callbacks(tmp_path / "run", patience=4)
    kinds = [type(c).__name__ for c in callbacks]
    assert kinds == [
        "EarlyStopping",
        "ReduceLROnPlateau",
        "AtomicModelCheckpoint",
        "AtomicModelCheckpoint",
        "EpochCSVLogger",
        "AtomicBackupAndRestore",
    ]
    stopping, reduce_lr, best_loss, best_acc, log, backup = callbacks
    assert (stopping.monitor, stopping.patience, stopping.restore_best_weights) == (
        "val_loss",
        4,
        True,
    )
    assert reduce_lr.monitor == "val_loss"
    assert best_loss.filepath == str(tmp_path / "run" / BEST_LOSS_FILENAME)
    assert (best_loss.monitor, best_loss.save_best_only) == ("val_loss", True)
    assert best_acc.filepath == str(tmp_path / "run" / BEST_ACCURACY_FILENAME)
    assert best_acc.monitor == "val_accuracy"
    assert log.filename == str(tmp_path / "run" / LOG_FILENAME)
    assert log.append
    assert backup.backup_dir == str(tmp_path / "run" / BACKUP_DIRNAME)


def test_default_callbacks_without_folder_write_nothing() -> None:
    callbacks = default_callbacks(None)
    assert [type(c).__name__ for c in callbacks] == ["EarlyStopping", "ReduceLROnPlateau"]


def test_default_callbacks_without_validation_monitor_training_metrics(tmp_path) -> None:
    callbacks = default_callbacks(tmp_path, validation=False)
    monitors = [c.monitor for c in callbacks if hasattr(c, "monitor")]
    assert monitors == ["loss", "loss", "loss", "accuracy"]


def test_default_callbacks_reject_bad_numbers() -> None:
    with pytest.raises(ValueError, match="patience"):
        default_callbacks(None, patience=0)
    with pytest.raises(ValueError, match="reduce_lr_factor"):
        default_callbacks(None, reduce_lr_factor=1.0)


# --- warmup_cosine_decay -----------------------------------------------------------------


def test_warmup_cosine_rises_then_decays_to_final() -> None:
    schedule = warmup_cosine_decay(0.002, epochs=10, warmup=2, final=1e-5)
    rates = [schedule(epoch, 0.0) for epoch in range(10)]
    assert rates[0] == pytest.approx(0.002 / 3)
    assert rates[1] == pytest.approx(0.002 * 2 / 3)
    assert rates[2] == pytest.approx(0.002)
    assert rates[-1] == pytest.approx(1e-5)
    decay = rates[2:]
    assert all(a > b for a, b in itertools.pairwise(decay))  # strictly decreasing after warmup
    assert schedule(25, 0.0) == pytest.approx(1e-5)  # past the end: stays at final


@pytest.mark.parametrize(
    "kwargs",
    [
        {"peak": 0.0, "epochs": 5},
        {"peak": 0.01, "epochs": 0},
        {"peak": 0.01, "epochs": 5, "warmup": 5},
        {"peak": 0.01, "epochs": 5, "final": 0.1},
        {"peak": 0.01, "epochs": True},
    ],
)
def test_warmup_cosine_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="warmup_cosine_decay"):
        warmup_cosine_decay(**kwargs)


def test_warmup_cosine_drives_learning_rate_scheduler() -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")
    schedule = warmup_cosine_decay(0.01, epochs=3, warmup=1, final=0.0)
    history = model.fit(
        np.zeros((4, 3)),
        np.zeros(4),
        epochs=3,
        verbose=0,
        callbacks=[keras.callbacks.LearningRateScheduler(schedule)],
    )
    assert history.history["learning_rate"] == pytest.approx([0.005, 0.01, 0.0])


# --- AtomicBackupAndRestore ----------------------------------------------------------


class _StopAt(keras.callbacks.Callback):
    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.at:
            raise KeyboardInterrupt


def _backup_run(folder, *, epochs: int, stop_at: int | None = None, seed: int = 0):
    model = tiny_model(seed=seed)
    model.compile("sgd", "binary_crossentropy")
    labels = np.array([0, 1] * 4)
    callbacks = [AtomicBackupAndRestore(folder)]
    if stop_at is not None:
        callbacks.append(_StopAt(stop_at))
    history = model.fit(
        tiny_images(labels), labels, epochs=epochs, batch_size=4, callbacks=callbacks, verbose=0
    )
    return model, history


def test_atomic_backup_keeps_one_complete_backup_named_by_its_state(tmp_path) -> None:
    folder = tmp_path / "backup"
    (folder).mkdir()
    debris = folder / ".epoch-00001.weights.h5.tmp-0123456789ab.weights.h5"
    debris.write_bytes(b"half a file")
    mine = folder / "notes.txt"  # not ours by name: left alone
    mine.write_text("keep")
    with pytest.raises(KeyboardInterrupt):
        _backup_run(folder, epochs=4, stop_at=2)
    state = json.loads((folder / BACKUP_STATE_FILENAME).read_text())
    assert state["epoch"] == 2
    assert sorted(p.name for p in folder.iterdir()) == [
        BACKUP_STATE_FILENAME,
        "epoch-00002.weights.h5",
        "notes.txt",
    ]
    _, history = _backup_run(folder, epochs=4, seed=3)
    assert len(history.history["loss"]) == 2  # epochs 2 and 3 only
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]  # ours deleted once done


def test_atomic_backup_refuses_a_corrupt_backup_with_the_fix(tmp_path) -> None:
    folder = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        _backup_run(folder, epochs=3, stop_at=1)
    weights = folder / "epoch-00001.weights.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    weights.write_bytes(bytes(data))
    with pytest.raises(TrainingError, match=r"epoch-00001.weights.h5.*SHA-256.*start over"):
        _backup_run(folder, epochs=3)
    (folder / BACKUP_STATE_FILENAME).write_text("{not json")
    with pytest.raises(TrainingError, match="not a valid record"):
        _backup_run(folder, epochs=3)


def test_atomic_model_checkpoint_keeps_the_last_complete_file(tmp_path) -> None:
    target = tmp_path / "best.keras"
    model = tiny_model()
    model.compile("sgd", "binary_crossentropy")
    labels = np.array([0, 1] * 4)
    images = tiny_images(labels)
    checkpoint = AtomicModelCheckpoint(str(target), monitor="loss", save_best_only=False)
    model.fit(images, labels, epochs=1, callbacks=[checkpoint], verbose=0)
    before = target.read_bytes()

    def killed_while_saving(filepath, *args, **kwargs) -> None:
        with open(filepath, "wb") as handle:
            handle.write(b"half a model")
        raise KeyboardInterrupt

    model.save = killed_while_saving
    with pytest.raises(KeyboardInterrupt):
        model.fit(images, labels, epochs=1, callbacks=[checkpoint], verbose=0)
    assert target.read_bytes() == before  # still the complete earlier model
    assert keras.saving.load_model(target).count_params() == model.count_params()
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]
