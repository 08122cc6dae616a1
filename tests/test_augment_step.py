"""Augmentation inside the training step, and the device plan that chooses it (on a CPU)."""

from __future__ import annotations

import dataclasses
import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from cxr_pneumonia.data.augment import Augmentation, augment_batch, augmentation_in_train_step
from cxr_pneumonia.devices import DevicePlan, plan_devices
from cxr_pneumonia.training import fit
from helpers_training import make_splits, tiny_model

fit_module = importlib.import_module("cxr_pneumonia.training.fitting")

AUG = Augmentation(rotation=20, noise=0.02, gamma=(0.8, 1.25))


class Recorder(keras.layers.Layer):
    """Keeps the last batch it saw in training, so a test can read what the step fed the model."""

    def __init__(self, shape: tuple[int, ...], **kwargs) -> None:
        super().__init__(**kwargs)
        self.seen = self.add_weight(shape=shape, initializer="zeros", trainable=False)

    def call(self, inputs, training=None):
        if training:
            self.seen.assign(tf.cast(inputs, "float32"))
        return inputs


def recording_model(batch: int, size: int = 16) -> tuple[keras.Model, Recorder]:
    recorder = Recorder((batch, size, size, 1))
    inputs = keras.Input((size, size, 1), batch_size=batch)
    x = recorder(inputs)
    x = keras.layers.Rescaling(1 / 255)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="binary_crossentropy")
    return model, recorder


def test_the_step_sees_the_batch_augmented_with_its_step_as_key():
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 1), dtype=np.uint8)
    labels = np.arange(8) % 2
    model, recorder = recording_model(4)
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    with augmentation_in_train_step(model, AUG, seed=7):
        model.fit(batches, epochs=1, verbose=0, shuffle=False)
    assert int(model.optimizer.iterations.numpy()) == 2
    # The second (last) step ran with the key (7, 1) on the second batch.
    want = augment_batch(tf.constant(images[4:]), tf.constant([7, 1], tf.int64), AUG).numpy()
    np.testing.assert_array_equal(recorder.seen.numpy(), want.astype(np.float32))
    assert not np.array_equal(want, images[4:])


def test_the_models_own_step_is_back_afterwards_and_prediction_is_untouched():
    images = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    model, recorder = recording_model(4)
    batches = tf.data.Dataset.from_tensors((images, np.zeros(4, int)))
    before = model.predict(images, verbose=0)
    with augmentation_in_train_step(model, AUG, seed=0):
        assert "train_step" in vars(model)
        np.testing.assert_allclose(model.predict(images, verbose=0), before)
        model.fit(batches, epochs=1, verbose=0, shuffle=False)
    assert "train_step" not in vars(model)
    model.fit(
        batches, epochs=1, verbose=0, shuffle=False
    )  # the plain step again: the batch as it is
    np.testing.assert_array_equal(recorder.seen.numpy(), images.astype(np.float32))


def test_an_uncompiled_model_is_refused():
    with (
        pytest.raises(ValueError, match="not compiled"),
        augmentation_in_train_step(tiny_model(), AUG, seed=0),
    ):
        pass


# --- the device plan --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpus", "multi_worker", "want"),
    [
        ([], False, DevicePlan("default", (), False, False, "pipeline")),
        (
            [("GPU:0", (9, 0))],
            False,
            DevicePlan("default", ("GPU:0",), True, True, "device"),
        ),
        (
            [("GPU:0", (6, 1))],  # Pascal: no fast float16
            False,
            DevicePlan("default", ("GPU:0",), False, True, "device"),
        ),
        (
            [("GPU:0", (8, 0)), ("GPU:1", (8, 6))],
            False,
            DevicePlan("mirrored", ("GPU:0", "GPU:1"), True, False, "device"),
        ),
        (
            [("GPU:0", (8, 0)), ("GPU:1", (6, 0))],
            False,
            DevicePlan("mirrored", ("GPU:0", "GPU:1"), False, False, "device"),
        ),
        ([], True, DevicePlan("multi_worker", (), False, False, "pipeline")),
        (
            [("GPU:0", (8, 0))],
            True,
            DevicePlan("multi_worker", ("GPU:0",), True, False, "device"),
        ),
    ],
)
def test_device_plan_for_a_faked_device_list(gpus, multi_worker, want):
    assert plan_devices(gpus, multi_worker=multi_worker) == want


def test_device_plan_of_this_cpu_machine_changes_nothing(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this test describes a machine without GPU")
    assert plan_devices() == DevicePlan("default", (), False, False, "pipeline")


# --- fit chooses ---------------------------------------------------------------------


@pytest.fixture
def spy(monkeypatch):
    calls = []
    real = fit_module.augmentation_in_train_step

    def spying(model, aug, *, seed):
        calls.append((aug, seed))
        return real(model, aug, seed=seed)

    monkeypatch.setattr(fit_module, "augmentation_in_train_step", spying)
    return calls


def _augmented_splits():
    return dataclasses.replace(make_splits(n_train=16, n_val=8), augmentation=AUG)


def test_fit_on_a_cpu_augments_in_the_pipeline(spy):
    model = tiny_model()
    fit(model, _augmented_splits(), epochs=1, callbacks=None, verbose=0)
    assert spy == []
    assert model.jit_compile is False


def test_fit_on_a_faked_gpu_augments_in_the_step_and_compiles_with_xla(spy, monkeypatch):
    one_gpu = plan_devices([("GPU:0", (9, 0))], multi_worker=False)
    monkeypatch.setattr(fit_module, "plan_devices", lambda: one_gpu)
    model = tiny_model()
    result = fit(model, _augmented_splits(), epochs=2, callbacks=None, verbose=0, seed=0)
    assert spy == [(AUG, 0)]
    assert model.jit_compile is True
    assert np.isfinite(result.history["loss"]).all()
    assert "train_step" not in vars(model)


def test_fit_device_placement_can_be_forced_and_is_validated(spy):
    fit(tiny_model(), _augmented_splits(), epochs=1, callbacks=None, verbose=0, augment_on="device")
    assert spy == [(AUG, 0)]
    with pytest.raises(ValueError, match="augment_on"):
        fit(tiny_model(), _augmented_splits(), epochs=1, augment_on="gpu")  # type: ignore[arg-type]
    # Without an augmentation there is nothing to move.
    fit(tiny_model(), make_splits(), epochs=1, callbacks=None, verbose=0, augment_on="device")
    assert len(spy) == 1
