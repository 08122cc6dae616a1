"""`cross_validate`: patient-grouped K-fold over the training files, a fresh model per fold."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from cxr_pneumonia.training import CrossValidationResult, cross_validate
from cxr_pneumonia.training import crossval as crossval_module
from cxr_pneumonia.training.fitting import DEFAULT_EPOCHS
from helpers_training import make_splits, tiny_model

METRICS = {"val_loss", "val_accuracy", "val_precision", "val_recall", "val_auc", "val_pr_auc"}


@pytest.fixture
def built(monkeypatch):
    """Replace build_model by the tiny test model; record each call."""
    calls: list[dict] = []

    def build(name, *, input_shape, **options):
        calls.append({"name": name, "input_shape": input_shape, **options})
        return tiny_model(input_shape[0], name=name)

    monkeypatch.setattr(crossval_module, "_build_model", build)
    return calls


@pytest.fixture
def folds_seen(monkeypatch):
    """Record the folds cross_validate trains on."""
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    original = crossval_module._grouped_kfold

    def spy(labels, groups, *, folds, seed):
        result = original(labels, groups, folds=folds, seed=seed)
        seen.extend(result)
        return result

    monkeypatch.setattr(crossval_module, "_grouped_kfold", spy)
    return seen


def test_cross_validate_two_folds(built, folds_seen, tmp_path) -> None:
    data = make_splits(24, 12)
    run = functools.partial(
        cross_validate,
        "tiny",
        data,
        folds=2,
        epochs=1,
        seed=3,
        model_options={"dropout": 0.1},
        checkpoint_dir=tmp_path,
        verbose=0,
    )
    result = run()
    assert isinstance(result, CrossValidationResult)
    assert result.folds == 2
    assert len(result.fold_metrics) == 2
    assert all(set(m) == METRICS for m in result.fold_metrics)
    assert set(result.mean) == set(result.std) == METRICS
    for metric in METRICS:
        values = [m[metric] for m in result.fold_metrics]
        assert result.mean[metric] == pytest.approx(np.mean(values))
        assert result.std[metric] == pytest.approx(np.std(values, ddof=1))
    # One fresh model per fold, shaped from the data, with the model options passed on.
    assert built == [{"name": "tiny", "input_shape": (16, 16, 1), "dropout": 0.1}] * 2
    # The folds cover the pooled train + validation files, each once in a validation part,
    # and never split a patient.
    patients = np.array(data.patients["train"] + data.patients["validation"])
    assert sum(n_val for _, n_val in result.fold_sizes) == 36
    assert sorted(np.concatenate([val for _, val in folds_seen]).tolist()) == list(range(36))
    for train_idx, val_idx in folds_seen:
        assert not set(patients[train_idx]) & set(patients[val_idx])
    assert [len(r.epochs) for r in result.training] == [1, 1]
    assert (tmp_path / "fold-0" / "training_log.csv").is_file()
    assert (tmp_path / "fold-1" / "best_val_loss.keras").is_file()
    assert "val_accuracy" in result.summary()
    # Run again on the same folder (the script re-run after an interruption): every fold is
    # finished, so nothing trains and the same models score the same.
    again = run()
    assert [r.epochs_run for r in again.training] == [0, 0]
    for before, after in zip(result.fold_metrics, again.fold_metrics, strict=True):
        assert after == pytest.approx(before)


def test_cross_validate_rejects_bad_arguments(built) -> None:
    data = make_splits(8, 4)
    with pytest.raises(ValueError, match="folds"):
        cross_validate("tiny", data, folds=1)
    with pytest.raises(ValueError, match="input_shape"):
        cross_validate("tiny", data, folds=2, model_options={"input_shape": (16, 16, 1)})
    assert built == []


def test_cross_validate_a_registry_model() -> None:
    models = pytest.importorskip("cxr_pneumonia.models")
    if "cnn-small" not in models.list_models():
        pytest.skip("no cnn-small in the registry")
    data = make_splits(8, 8, size=32)
    result = cross_validate(
        "cnn-small",
        data,
        folds=2,
        epochs=1,
        model_options={"weights": None},
        callbacks=None,
        verbose=0,
    )
    assert len(result.fold_metrics) == 2
    assert all(0.0 <= m["val_accuracy"] <= 1.0 for m in result.fold_metrics)


def test_cross_validate_a_builder_function_with_a_softmax_output() -> None:
    shapes: list[tuple[int, int, int]] = []

    def two_class_cnn(input_shape):
        shapes.append(input_shape)
        return tiny_model(input_shape[0], units=2, name="two_class_cnn")

    data = make_splits(24, 12)
    result = cross_validate(two_class_cnn, data, folds=2, epochs=1, learning_rate=0.05, verbose=0)
    assert shapes == [(16, 16, 1), (16, 16, 1)]  # a fresh model per fold
    assert result.name == "two_class_cnn"
    assert all(set(m) == METRICS for m in result.fold_metrics)
    assert all(0.0 <= m["val_recall"] <= 1.0 for m in result.fold_metrics)


def test_cross_validate_checks_the_builder() -> None:
    data = make_splits(24, 12)
    with pytest.raises(TypeError, match=r"must return a keras\.Model"):
        cross_validate(lambda shape: "model", data, folds=2, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="model_options apply to registry names"):
        cross_validate(tiny_model, data, folds=2, model_options={"dropout": 0.1})
    with pytest.raises(TypeError, match="registered model name or a function"):
        cross_validate(3, data, folds=2)  # type: ignore[arg-type]


def test_cross_validate_defaults_are_the_default_recipe(built, monkeypatch) -> None:
    """Without options a fold trains as fit does by default: 60 epochs, augmented."""
    made: list[tuple[bool, object]] = []
    original = crossval_module._make_dataset

    def spy(images, labels, *, batch_size, shuffle, augment, seed):
        made.append((shuffle, augment))
        return original(
            images, labels, batch_size=batch_size, shuffle=shuffle, augment=augment, seed=seed
        )

    fold_epochs: list[int] = []

    def fake_fit(model, data, *, epochs: int, seed, checkpoint_dir, **options):
        fold_epochs.append(epochs)
        model.compile(loss="binary_crossentropy", metrics=["accuracy"])

    monkeypatch.setattr(crossval_module, "_make_dataset", spy)
    monkeypatch.setattr(crossval_module, "fit", fake_fit)
    cross_validate("tiny", make_splits(12, 12), folds=2)
    assert fold_epochs == [DEFAULT_EPOCHS, DEFAULT_EPOCHS] == [60, 60]
    assert made == [(True, True), (False, False)] * 2  # augment the training part only
