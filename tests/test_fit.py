"""`fit` end to end on tiny generated data: results, class weights, resume, fine-tuning."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import keras
import numpy as np
import pytest

from cxr_pneumonia.exceptions import TrainingError
from cxr_pneumonia.outputs import output_kind
from cxr_pneumonia.training import TrainingResult, fit
from cxr_pneumonia.training.callbacks import (
    LOG_FILENAME,
    MultiMetricEarlyStopping,
    TargetMetricsReached,
    default_callbacks,
    warmup_cosine_decay,
)
from cxr_pneumonia.training.fitting import match_labels
from cxr_pneumonia.training.options import ema_momentum_for
from helpers_training import make_splits, tiny_backbone_model, tiny_model


class _Interrupt(keras.callbacks.Callback):
    """Simulates a killed process: raises at the start of epoch ``at`` (0-based)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.at:
            msg = f"interrupted at epoch {epoch}"
            raise KeyboardInterrupt(msg)


def _logged_epochs(folder: Path) -> list[int]:
    with (folder / LOG_FILENAME).open() as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def data():
    return make_splits()


def test_fit_end_to_end(data, tmp_path) -> None:
    result = fit(
        tiny_model(), data, epochs=3, learning_rate=0.05, checkpoint_dir=tmp_path, verbose=0
    )
    assert isinstance(result, TrainingResult)
    for key in ("loss", "accuracy", "precision", "recall", "auc", "pr_auc"):
        assert len(result.history[key]) == 3
        assert len(result.history[f"val_{key}"]) == 3
    assert result.epochs == (1, 2, 3)
    assert result.phases == ("train",) * 3
    assert result.epochs_run == 3
    assert not result.resumed
    assert result.monitor == "val_loss"
    assert result.best_epoch == 1 + int(np.argmin(result.history["val_loss"]))
    assert result.best_metrics["val_loss"] == min(result.history["val_loss"])
    assert set(result.best_metrics) == {
        "val_loss",
        "val_accuracy",
        "val_precision",
        "val_recall",
        "val_auc",
        "val_pr_auc",
    }
    assert set(result.checkpoints) == {"best_val_loss", "best_val_accuracy", "log"}
    assert all(path.is_file() for path in result.checkpoints.values())
    assert _logged_epochs(tmp_path) == [1, 2, 3]
    assert not (tmp_path / "backup").exists()  # Keras removes the backup of a finished run
    assert result.wall_time > 0
    assert 0 < result.training_time <= result.wall_time  # the epochs, within the call
    record = result.record()
    assert json.loads(json.dumps(record)) == record  # plain JSON types
    assert record["epochs_run"] == 3
    assert record["best_epoch"] == result.best_epoch
    assert record["best_metrics"] == result.best_metrics
    assert record["kept_epoch"] == 3
    assert record["kept_reason"] == result.kept_reason
    assert record["monitor"] == "val_loss"
    assert record["wall_time"] == round(result.wall_time, 1)
    assert record["training_time"] == round(result.training_time, 1)
    assert result.replicas == 1
    reloaded = keras.saving.load_model(result.checkpoints["best_val_loss"])
    assert reloaded.count_params() == tiny_model().count_params()


def test_fit_without_checkpoint_dir_writes_nothing(data, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = fit(tiny_model(), data, epochs=2, callbacks=None, class_weight=None, verbose=0)
    assert result.checkpoints == {}
    assert result.epochs == (1, 2)
    assert list(tmp_path.iterdir()) == []


def test_fit_without_validation_monitors_training_metrics(tmp_path, caplog) -> None:
    data = make_splits(validation=False)
    with caplog.at_level(logging.WARNING, logger="cxr_pneumonia"):
        result = fit(tiny_model(), data, epochs=2, checkpoint_dir=tmp_path, verbose=0)
    assert "no validation split" in caplog.text
    assert not any(key.startswith("val_") for key in result.history)
    assert result.monitor == "loss"
    assert "val_loss" not in result.best_metrics
    assert result.best_metrics["loss"] == min(result.history["loss"])
    assert set(result.checkpoints) == {"best_loss", "best_accuracy", "log"}


def test_fit_user_callbacks_replace_the_defaults(data) -> None:
    stop = TargetMetricsReached({"loss": 100.0})
    result = fit(tiny_model(), data, epochs=3, callbacks=[stop], verbose=0)
    assert result.epochs == (1,)
    assert stop.reached_epoch == 0


def test_class_weights_scale_the_loss(data) -> None:
    def first_loss(weights: dict[int, float]) -> float:
        optimizer = keras.optimizers.SGD(learning_rate=1e-12)  # weights barely move
        result = fit(
            tiny_model(),
            data,
            epochs=1,
            optimizer=optimizer,
            class_weight=weights,
            callbacks=None,
            verbose=0,
        )
        return result.history["loss"][0]

    plain = first_loss({0: 1.0, 1: 1.0})
    heavy = first_loss({0: 1.0, 1: 10.0})
    # Half the images are PNEUMONIA and the untrained model is near 0.5 for all:
    # weighting them 10x scales the mean loss by about (1 + 10) / 2.
    assert heavy / plain == pytest.approx(5.5, rel=0.2)


def test_class_weights_move_the_decision(data) -> None:
    def mean_probability(weights: dict[int, float]) -> float:
        model = tiny_model()
        fit(
            model,
            data,
            epochs=3,
            learning_rate=0.05,
            class_weight=weights,
            callbacks=None,
            verbose=0,
        )
        return float(model.predict(data.validation, verbose=0).mean())

    assert mean_probability({0: 1.0, 1: 20.0}) > mean_probability({0: 20.0, 1: 1.0}) + 0.1


def test_balanced_class_weight_comes_from_the_data(data, monkeypatch) -> None:
    seen = {}
    original = keras.Model.fit

    def spy(self, *args, **kwargs):
        seen["class_weight"] = kwargs["class_weight"]
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    fit(tiny_model(), data, epochs=1, callbacks=None, verbose=0)
    assert seen["class_weight"] == dict(data.class_weight)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"optimizer": "adagrad"}, "adam, adamw, rmsprop, sgd"),
        ({"class_weight": "auto"}, "balanced"),
        ({"class_weight": {0: 1.0}}, "keys 0"),
        ({"class_weight": {0: 1.0, 1: -2.0}}, r"class_weight\[1\]"),
        ({"callbacks": "all"}, "callbacks"),
        ({"callbacks": ["not a callback"]}, "Callback instances"),
        ({"callbacks": [TargetMetricsReached({"val_acc": 0.9})]}, "'val_acc' is not a metric"),
        ({"verbose": 3}, "verbose"),
        ({"fine_tune_epochs": 1}, "no pretrained backbone"),
    ],
)
def test_fit_rejects_bad_options_before_training(data, options, match, tmp_path) -> None:
    with pytest.raises(ValueError, match=match):
        fit(tiny_model(), data, checkpoint_dir=tmp_path, **options)
    assert not (tmp_path / LOG_FILENAME).exists()


def test_fit_rejects_validation_targets_without_validation_data() -> None:
    data = make_splits(validation=False)
    stopping = MultiMetricEarlyStopping({"val_accuracy": 0.9, "val_recall": 0.9})
    with pytest.raises(TrainingError, match="'val_accuracy' but the data has no validation split"):
        fit(tiny_model(), data, callbacks=[stopping])


def test_fit_trains_a_softmax_model_with_the_same_logs(data, tmp_path) -> None:
    model = tiny_model(units=2)
    result = fit(
        model,
        data,
        epochs=4,
        learning_rate=0.05,
        class_weight="balanced",
        checkpoint_dir=tmp_path,
        verbose=0,
    )
    # Its checkpoints (saved with the compiled metrics) load back.
    reloaded = keras.saving.load_model(result.checkpoints["best_val_loss"])
    assert reloaded.output.shape[-1] == 2
    assert set(result.history) >= {"loss", "val_loss", "val_precision", "val_recall", "val_auc"}
    # The logged metrics are those of the PNEUMONIA column, as for a sigmoid model.
    images, labels = data.images["validation"], data.labels["validation"]
    p = model.predict(images, verbose=0)[:, 1]
    predicted = p > 0.5
    true_positives = int(np.sum(predicted & (labels == 1)))
    expected_recall = true_positives / int(np.sum(labels == 1))
    assert result.history["val_recall"][-1] == pytest.approx(expected_recall, abs=1e-6)
    assert result.history["val_accuracy"][-1] == pytest.approx(
        float(np.mean(predicted == (labels == 1))), abs=1e-6
    )
    assert result.history["val_auc"][-1] > 0.9  # brighter images are PNEUMONIA: learnable


def test_fit_refuses_other_output_shapes(data) -> None:
    with pytest.raises(ValueError, match=r"fit needs a classifier: .*\(N, 2\) \(softmax"):
        fit(tiny_model(units=3), data)


def test_fit_rejects_non_models_and_non_data(data) -> None:
    with pytest.raises(TypeError, match=r"keras\.Model"):
        fit("cnn", data)
    with pytest.raises(TypeError, match="DatasetSplits"):
        fit(tiny_model(), {"train": None})


def test_fit_resumes_after_an_interruption(data, tmp_path) -> None:
    with pytest.raises(KeyboardInterrupt):
        fit(
            tiny_model(),
            data,
            epochs=4,
            callbacks=[*default_callbacks(tmp_path), _Interrupt(at=2)],
            checkpoint_dir=tmp_path,
            verbose=0,
        )
    assert _logged_epochs(tmp_path) == [1, 2]
    before = json.loads((tmp_path / "run_state.json").read_text())["training_seconds"]
    assert before > 0  # the two finished epochs
    # A new process: a new model of the same architecture, the same folder.
    result = fit(tiny_model(seed=5), data, epochs=4, checkpoint_dir=tmp_path, verbose=0)
    assert result.resumed
    assert result.epochs_run == 2  # epochs 3 and 4 only
    assert result.epochs == (1, 2, 3, 4)
    assert _logged_epochs(tmp_path) == [1, 2, 3, 4]
    assert len(result.history["val_loss"]) == 4
    # The run's training time counts the interrupted call's epochs too, this call's does not.
    assert result.training_time > before
    assert result.training_time - before <= result.wall_time

    again = fit(tiny_model(seed=6), data, epochs=4, checkpoint_dir=tmp_path, verbose=0)
    assert again.epochs_run == 0  # finished: the final weights are just reloaded
    assert again.history == result.history
    assert again.training_time == result.training_time


def test_a_run_state_without_a_training_time_resumes_with_it_unknown(data, tmp_path) -> None:
    # A folder written before the run state counted seconds: its time is unknown, not zero.
    with pytest.raises(KeyboardInterrupt):
        fit(
            tiny_model(),
            data,
            epochs=2,
            callbacks=[*default_callbacks(tmp_path), _Interrupt(at=1)],
            checkpoint_dir=tmp_path,
            verbose=0,
        )
    path = tmp_path / "run_state.json"
    state = json.loads(path.read_text())
    del state["training_seconds"]
    path.write_text(json.dumps(state))
    result = fit(tiny_model(seed=5), data, epochs=2, checkpoint_dir=tmp_path, verbose=0)
    assert result.epochs_run == 1
    assert result.training_time is None
    assert "training_seconds" not in json.loads(path.read_text())


def test_a_finished_run_resumed_leaves_the_model_ready_to_evaluate(data, tmp_path) -> None:
    # cross_validate resumed after a finished fold evaluates the model fit returns: fit must
    # leave it compiled, with the final weights, exactly as a run that trained does.
    trained = tiny_model()
    fit(trained, data, epochs=2, checkpoint_dir=tmp_path, verbose=0)
    reloaded = tiny_model(seed=9)
    assert fit(reloaded, data, epochs=2, checkpoint_dir=tmp_path, verbose=0).epochs_run == 0
    validation = match_labels(data.validation, output_kind(reloaded))
    assert reloaded.evaluate(validation, verbose=0, return_dict=True) == pytest.approx(
        trained.evaluate(validation, verbose=0, return_dict=True)
    )


def test_resume_false_starts_over(data, tmp_path) -> None:
    with pytest.raises(KeyboardInterrupt):
        fit(
            tiny_model(),
            data,
            epochs=3,
            callbacks=[_Interrupt(at=1)],
            checkpoint_dir=tmp_path,
            verbose=0,
        )
    result = fit(tiny_model(), data, epochs=3, checkpoint_dir=tmp_path, resume=False, verbose=0)
    assert not result.resumed
    assert result.epochs_run == 3
    assert _logged_epochs(tmp_path) == [1, 2, 3]


def test_resume_refuses_another_model(data, tmp_path) -> None:
    with pytest.raises(KeyboardInterrupt):
        fit(
            tiny_model(),
            data,
            epochs=3,
            callbacks=[_Interrupt(at=1)],
            checkpoint_dir=tmp_path,
            verbose=0,
        )
    with pytest.raises(TrainingError, match="resume=False"):
        fit(tiny_model(name="other"), data, epochs=3, checkpoint_dir=tmp_path, verbose=0)


def test_fine_tune_phase_unfreezes_the_backbone(data, tmp_path) -> None:
    model = tiny_backbone_model()
    backbone = model.get_layer("backbone")
    assert not backbone.trainable
    frozen = [w.copy() for w in backbone.get_weights()]
    result = fit(
        model,
        data,
        epochs=2,
        fine_tune_epochs=2,
        fine_tune_learning_rate=1e-3,
        callbacks=None,
        checkpoint_dir=tmp_path,
        verbose=0,
    )
    assert backbone.trainable
    assert result.phases == ("train", "train", "fine_tune", "fine_tune")
    assert result.epochs == (1, 2, 3, 4)
    # callbacks=None: no schedule; the first phase runs at fit's default rate
    assert result.history["learning_rate"] == pytest.approx([2e-3, 2e-3, 1e-3, 1e-3])
    assert _logged_epochs(tmp_path) == [1, 2, 3, 4]
    assert any(
        not np.array_equal(a, b) for a, b in zip(frozen, backbone.get_weights(), strict=True)
    )


def test_fine_tune_uses_its_own_rate_and_optimizer(data) -> None:
    model = tiny_backbone_model()
    result = fit(
        model,
        data,
        epochs=1,
        fine_tune_epochs=1,
        optimizer=keras.optimizers.SGD(0.01),
        callbacks=None,
        verbose=0,
    )
    assert result.history["learning_rate"] == pytest.approx([0.01, 1e-5])
    assert isinstance(model.optimizer, keras.optimizers.SGD)


def test_interrupted_fine_tune_resumes_in_its_phase(data, tmp_path) -> None:
    with pytest.raises(KeyboardInterrupt):
        fit(
            tiny_backbone_model(),
            data,
            epochs=2,
            fine_tune_epochs=2,
            callbacks=[_Interrupt(at=3)],
            checkpoint_dir=tmp_path,
            verbose=0,
        )
    model = tiny_backbone_model(seed=3)
    result = fit(model, data, epochs=2, fine_tune_epochs=2, checkpoint_dir=tmp_path, verbose=0)
    assert result.epochs_run == 1  # epoch 4 only
    assert result.epochs == (1, 2, 3, 4)
    assert result.phases == ("train", "train", "fine_tune", "fine_tune")
    assert model.get_layer("backbone").trainable


def test_seed_makes_runs_repeat() -> None:
    # Fresh pipelines too: a tf.data pipeline that reshuffles every epoch is stateful.
    first = fit(tiny_model(seed=1), make_splits(), epochs=2, seed=7, callbacks=None, verbose=0)
    second = fit(tiny_model(seed=1), make_splits(), epochs=2, seed=7, callbacks=None, verbose=0)
    assert first.history == second.history


class _Overfit(keras.callbacks.Callback):
    """Fakes a validation loss that is best at epoch ``best`` (0-based) and worse after it."""

    def __init__(self, best: int) -> None:
        super().__init__()
        self.best = best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["val_loss"] = 1.0 + abs(epoch - self.best)


def test_result_says_which_weights_early_stopping_kept(data, capsys) -> None:
    stopping = keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    result = fit(tiny_model(), data, epochs=8, callbacks=[_Overfit(best=1), stopping], verbose=2)
    # Epoch 2 (1-based) is best; epochs 3 and 4 bring no improvement, so training stops at 4.
    assert result.epochs == (1, 2, 3, 4)
    assert result.best_epoch == 2
    assert result.kept_epoch == 2
    assert "restored by EarlyStopping" in result.kept_reason
    assert result.kept_metrics["val_loss"] == pytest.approx(1.0)
    assert result.kept_metrics == result.best_metrics
    out = capsys.readouterr().out
    assert "kept the weights of epoch 2 of 4" in out
    assert all(len(line) <= 100 for line in out.splitlines())
    assert "loss 1.0000" in out  # that epoch's logged figures


def test_result_kept_epoch_is_the_last_without_restoring_callbacks(data) -> None:
    result = fit(tiny_model(), data, epochs=3, callbacks=[_Overfit(best=0)], verbose=0)
    assert result.kept_epoch == 3
    assert result.best_epoch == 1
    assert "the last epoch" in result.kept_reason
    assert "the lowest val_loss was at epoch 1" in result.summary()


def test_ema_weights_are_the_validated_and_kept_ones(data) -> None:
    """With use_ema the logged val_loss of the last epoch is the loss of the returned model."""
    model = tiny_model()
    optimizer = keras.optimizers.Adam(learning_rate=0.05, use_ema=True)
    result = fit(model, data, epochs=3, optimizer=optimizer, callbacks=None, verbose=0)
    after = model.evaluate(data.validation, verbose=0, return_dict=True)["loss"]
    assert result.ema
    assert result.kept_epoch == 3
    assert after == pytest.approx(result.history["val_loss"][-1], abs=1e-6)
    assert "moving-average (EMA)" in result.summary()


def test_ema_weights_survive_early_stopping(data) -> None:
    model = tiny_model()
    optimizer = keras.optimizers.Adam(learning_rate=0.05, use_ema=True)
    stop = TargetMetricsReached({"loss": 100.0})  # stops after the first epoch
    result = fit(model, data, epochs=3, optimizer=optimizer, callbacks=[stop], verbose=0)
    after = model.evaluate(data.validation, verbose=0, return_dict=True)["loss"]
    assert result.epochs == (1,)
    assert after == pytest.approx(result.history["val_loss"][-1], abs=1e-6)


def test_progress_is_plain_lines_when_not_a_terminal(data, capsys) -> None:
    fit(tiny_model(), data, epochs=2, callbacks=None, verbose="auto")
    out = capsys.readouterr().out
    assert "\r" not in out
    assert "\x1b" not in out
    lines = out.splitlines()
    assert lines[0].startswith("epoch 1/2  loss ")
    assert lines[1].startswith("epoch 2/2  loss ")
    assert lines[2].startswith("kept the weights of epoch 2 of 2")
    assert all(len(line) <= 100 for line in lines)


def test_verbose_zero_writes_nothing(data, capsys) -> None:
    fit(tiny_model(), data, epochs=1, callbacks=None, verbose=0)
    assert capsys.readouterr().out == ""


def test_repr_is_short(data) -> None:
    result = fit(tiny_model(), data, epochs=2, callbacks=None, verbose=0)
    text = repr(result)
    assert text.startswith("TrainingResult(epochs=2, kept_epoch=2, best_epoch=")
    assert "history" not in text
    assert len(text) < 300


def test_tensorboard_dir_gets_event_files(data, tmp_path) -> None:
    fit(tiny_model(), data, epochs=1, callbacks=None, tensorboard_dir=tmp_path / "tb", verbose=0)
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert {path.parent.name for path in events} == {"train", "validation"}


def test_tensorboard_dir_without_tensorboard_says_how_to_install(data, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name)
    )
    with pytest.raises(ImportError, match=r"cxr-pneumonia\[tensorboard\]"):
        fit(tiny_model(), data, epochs=1, tensorboard_dir="tb", verbose=0)


def test_default_recipe_adamw_ema_and_warmup_cosine(data) -> None:
    model = tiny_model()
    result = fit(model, data, epochs=4, verbose=0)
    expected = warmup_cosine_decay(2e-3, epochs=4, warmup=2)
    assert result.history["learning_rate"] == pytest.approx([expected(e) for e in range(4)])
    assert result.epochs_run == 4  # no early stopping under the cosine schedule
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert model.optimizer.use_ema
    assert float(model.optimizer.weight_decay) == pytest.approx(1e-4)


def test_plateau_schedule_keeps_a_constant_rate_and_early_stopping(data) -> None:
    result = fit(tiny_model(), data, epochs=2, schedule="plateau", ema=False, verbose=0)
    assert result.history["learning_rate"] == pytest.approx([2e-3, 2e-3])
    assert any(
        isinstance(c, keras.callbacks.EarlyStopping)
        for c in default_callbacks(None, schedule="plateau")
    )
    assert not any(
        isinstance(c, (keras.callbacks.EarlyStopping, keras.callbacks.ReduceLROnPlateau))
        for c in default_callbacks(None, schedule="cosine")
    )


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"schedule": "linear"}, "schedule"),
        ({"ema": 1}, "ema"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"label_smoothing": -0.1}, "label_smoothing"),
        ({"label_smoothing": True}, "label_smoothing"),
    ],
)
def test_recipe_options_are_checked(data, options, match) -> None:
    with pytest.raises(ValueError, match=match):
        fit(tiny_model(), data, epochs=1, verbose=0, **options)


def test_label_smoothing_pulls_the_training_targets_towards_one_half(data) -> None:
    model = tiny_model()
    fit(model, data, epochs=1, label_smoothing=0.2, callbacks=None, verbose=0)
    # A PNEUMONIA label is trained as 0.9: the loss of predicting 0.9 is the
    # entropy of 0.9, and predicting 1 - 1e-7 costs more than predicting 0.9.
    entropy = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    at_target = float(model.loss(np.array([[1.0]]), np.array([[0.9]])))
    assert at_target == pytest.approx(entropy, rel=1e-4)
    assert float(model.loss(np.array([[1.0]]), np.array([[1 - 1e-7]]))) > at_target
    plain = tiny_model()
    fit(plain, data, epochs=1, callbacks=None, verbose=0)
    assert float(plain.loss(np.array([[1.0]]), np.array([[0.9]]))) == pytest.approx(-np.log(0.9))


def test_ema_momentum_shrinks_on_short_runs() -> None:
    assert ema_momentum_for(139 * 25) == pytest.approx(0.99)
    assert ema_momentum_for(200) == pytest.approx(0.95)
    assert ema_momentum_for(6) == 0.0
