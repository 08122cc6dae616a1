"""Mixup in the training step: the Beta draws, the mixed batch, its key, and `fit(mixup=)`."""

from __future__ import annotations

import dataclasses
import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from cxr_pneumonia.data.augment import (
    Augmentation,
    augment_batch,
    augmentation_in_train_step,
    replaced_train_step,
)
from cxr_pneumonia.training import fit
from cxr_pneumonia.training._mixup import (
    _MIXUP_STREAM,
    mix_batch,
    mixing,
    mixup_in_train_step,
)
from helpers_training import make_splits, tiny_model
from test_augment_step import recording_model

fit_module = importlib.import_module("cxr_pneumonia.training.fitting")


def _key(*values: int) -> tf.Tensor:
    return tf.constant(values, tf.int64)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0])
def test_mixing_weights_follow_beta_alpha_alpha(alpha: float) -> None:
    draws = np.concatenate(
        [mixing(_key(3, i), tf.constant(256), alpha)[0].numpy() for i in range(40)]
    )
    assert draws.min() >= 0
    assert draws.max() <= 1
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)); 10,240 draws.
    assert draws.mean() == pytest.approx(0.5, abs=0.015)
    assert draws.var() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.06)
    if alpha < 1:  # U-shaped: most pairs are mostly one image
        assert np.mean((draws < 0.1) | (draws > 0.9)) > 0.5


def test_mixing_partners_are_a_permutation_drawn_from_the_key() -> None:
    lam, partner = mixing(_key(1, 2), tf.constant(32), 0.4)
    assert sorted(partner.numpy().tolist()) == list(range(32))
    again, same_partner = mixing(_key(1, 2), tf.constant(32), 0.4)
    np.testing.assert_array_equal(lam.numpy(), again.numpy())
    np.testing.assert_array_equal(partner.numpy(), same_partner.numpy())
    other, other_partner = mixing(_key(1, 3), tf.constant(32), 0.4)
    assert not np.array_equal(lam.numpy(), other.numpy())
    assert not np.array_equal(partner.numpy(), other_partner.numpy())


def test_mixing_compiles_with_xla() -> None:
    """A GPU compiles the training step with XLA: every op of the draw needs an XLA kernel."""
    compiled = tf.function(lambda key: mixing(key, tf.constant(16), 0.2), jit_compile=True)
    lam, partner = compiled(_key(5, 6))
    assert np.all((lam.numpy() >= 0) & (lam.numpy() <= 1))
    assert sorted(partner.numpy().tolist()) == list(range(16))


@pytest.mark.parametrize("one_hot", [False, True])
def test_mix_batch_without_weights_blends_images_and_labels_alike(one_hot: bool) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 4, 4, 1), dtype=np.uint8)
    labels = np.array([0, 1, 1, 0, 1, 0, 1, 1], dtype=np.int32)
    targets = np.eye(2, dtype=np.float32)[labels] if one_hot else labels
    key = _key(4, 2)
    mixed_images, mixed_labels = (
        t.numpy() for t in mix_batch((tf.constant(images), tf.constant(targets)), key, 1.0)
    )
    lam, partner = (t.numpy() for t in mixing(key, tf.constant(8), 1.0))
    assert mixed_images.dtype == np.float32
    for i, j in enumerate(partner):
        np.testing.assert_allclose(
            mixed_images[i], lam[i] * images[i] + (1 - lam[i]) * images[j], rtol=1e-5, atol=1e-3
        )
        np.testing.assert_allclose(
            mixed_labels[i], lam[i] * targets[i] + (1 - lam[i]) * targets[j], atol=1e-6
        )
    if one_hot:
        np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0, atol=1e-6)
    assert np.any((mixed_labels > 0.01) & (mixed_labels < 0.99))  # some labels are soft


@pytest.mark.parametrize("one_hot", [False, True])
def test_the_weighted_loss_of_a_blend_is_the_blend_of_the_weighted_losses(one_hot: bool) -> None:
    """Balanced class weights stay balanced: w * L(y) == lam w_i L(y_i) + (1 - lam) w_j L(y_j)."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 4, 4, 1), dtype=np.uint8)
    labels = np.array([0, 1, 1, 0, 1, 0, 1, 1], dtype=np.int32)
    weights = np.where(labels == 1, 0.67, 1.95).astype(np.float32)  # this data's balance
    targets = np.eye(2, dtype=np.float32)[labels] if one_hot else labels.astype(np.float32)
    key = _key(4, 2)
    mixed_images, mixed_labels, mixed_weights = (
        t.numpy() for t in mix_batch((tf.constant(images), tf.constant(targets), weights), key, 1.0)
    )
    lam, partner = (t.numpy() for t in mixing(key, tf.constant(8), 1.0))
    np.testing.assert_allclose(
        mixed_weights, lam * weights + (1 - lam) * weights[partner], rtol=1e-6
    )
    loss = (
        keras.losses.CategoricalCrossentropy(reduction=None)
        if one_hot
        else keras.losses.BinaryCrossentropy(reduction=None)
    )
    prediction = rng.uniform(0.05, 0.95, (8, 1)).astype(np.float32)
    if one_hot:
        prediction = np.concatenate([1 - prediction, prediction], axis=1)
    else:
        targets, mixed_labels = targets[:, None], mixed_labels[:, None]

    def losses(y: np.ndarray) -> np.ndarray:
        return keras.ops.convert_to_numpy(loss(y, prediction))

    want = lam * weights * losses(targets) + (1 - lam) * weights[partner] * losses(targets[partner])
    np.testing.assert_allclose(mixed_weights * losses(mixed_labels), want, rtol=1e-4)
    mixed_images_want = (
        lam[:, None, None, None] * images + (1 - lam[:, None, None, None]) * images[partner]
    )
    np.testing.assert_allclose(mixed_images, mixed_images_want, rtol=1e-5, atol=1e-3)
    # both images of an even NORMAL/PNEUMONIA pair become the same blend, trained towards
    # the class of the heavier weight
    even = mix_batch(
        (tf.zeros((2, 1, 1, 1)), tf.constant([0.0, 1.0]), tf.constant([1.95, 0.67])),
        _key(0, 0),
        1e3,  # lam all but 1/2
    )[1].numpy()
    np.testing.assert_allclose(even, [0.67 / 2.62] * 2, atol=0.02)  # PNEUMONIA 0.26, not 0.5


def test_the_step_sees_the_batch_mixed_with_its_step_as_key() -> None:
    images = np.random.default_rng(1).integers(0, 256, (8, 16, 16, 1), dtype=np.uint8)
    labels = np.arange(8) % 2
    model, recorder = recording_model(4)
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    with mixup_in_train_step(model, 0.4, seed=7):
        model.fit(batches, epochs=1, verbose=0, shuffle=False)
    # The second (last) step ran with the key (7, 1), folded with mixup's stream.
    key = tf.random.experimental.stateless_fold_in(_key(7, 1), _MIXUP_STREAM)
    want = mix_batch((tf.constant(images[4:]), tf.constant(labels[4:])), key, 0.4)[0].numpy()
    np.testing.assert_allclose(recorder.seen.numpy(), want, rtol=1e-6)
    assert not np.allclose(want, images[4:])
    assert "train_step" not in model.__dict__  # the class's step again


def test_mixup_inside_device_augmentation_augments_first_and_unwinds() -> None:
    aug = Augmentation(rotation=20, noise=0.02)
    images = np.random.default_rng(2).integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    labels = np.arange(4) % 2
    model, recorder = recording_model(4)
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    with mixup_in_train_step(model, 0.4, seed=3), augmentation_in_train_step(model, aug, seed=3):
        model.fit(batches, epochs=1, verbose=0, shuffle=False)
        assert "train_step" in model.__dict__
    augmented = augment_batch(tf.constant(images), _key(3, 0), aug)
    key = tf.random.experimental.stateless_fold_in(_key(3, 0), _MIXUP_STREAM)
    want = mix_batch((augmented, tf.constant(labels)), key, 0.4)[0].numpy()
    np.testing.assert_allclose(recorder.seen.numpy(), want, rtol=1e-5, atol=1e-3)
    assert "train_step" not in model.__dict__


def test_fit_blends_the_class_weights_keras_looked_up_from_the_labels() -> None:
    """The step gets (images, labels, class weights) from Keras and blends all three."""
    images = np.random.default_rng(3).integers(0, 256, (8, 16, 16, 1), dtype=np.uint8)
    labels = np.array([0, 1, 1, 1, 0, 1, 1, 0])
    model, _ = recording_model(8)
    seen_labels = tf.Variable(tf.zeros(8))
    seen_weights = tf.Variable(tf.zeros(8))
    plain_step = model.train_step

    def recording_step(data):
        _, y, weights = data
        seen_labels.assign(tf.reshape(tf.cast(y, tf.float32), [-1]))
        seen_weights.assign(tf.reshape(weights, [-1]))
        return plain_step(data)

    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    with (
        replaced_train_step(model, recording_step),
        mixup_in_train_step(model, 0.4, seed=5),
    ):
        model.fit(batches, epochs=1, verbose=0, shuffle=False, class_weight={0: 3.0, 1: 0.5})
    looked_up = np.where(labels == 1, 0.5, 3.0).astype(np.float32)
    key = tf.random.experimental.stateless_fold_in(_key(5, 0), _MIXUP_STREAM)
    _, want_labels, want_weights = mix_batch(
        (tf.constant(images), tf.constant(labels), tf.constant(looked_up)), key, 0.4
    )
    np.testing.assert_allclose(seen_weights.numpy(), want_weights.numpy(), rtol=1e-6)
    np.testing.assert_allclose(seen_labels.numpy(), want_labels.numpy(), rtol=1e-6)
    assert len(set(np.round(seen_weights.numpy(), 4))) > 2  # blended, not just 3.0 or 0.5


def test_another_seed_blends_other_pairs() -> None:
    images = np.random.default_rng(4).integers(0, 256, (8, 16, 16, 1), dtype=np.uint8)
    batches = tf.data.Dataset.from_tensor_slices((images, np.arange(8) % 2)).batch(8)
    seen = []
    for seed in (1, 2):
        model, recorder = recording_model(8)
        with mixup_in_train_step(model, 1.0, seed=seed):
            model.fit(batches, epochs=1, verbose=0, shuffle=False)
        seen.append(recorder.seen.numpy())
    assert not np.allclose(seen[0], seen[1])


def test_fit_with_mixup_repeats_with_its_seed_and_differs_from_without() -> None:
    def history(mixup: float) -> dict[str, list[float]]:
        result = fit(
            tiny_model(seed=1), make_splits(), epochs=2, seed=7, mixup=mixup, callbacks=None,
            verbose=0,
        )  # fmt: skip
        return result.history

    first, second = history(0.4), history(0.4)
    assert first == second
    assert first["loss"] != history(0.0)["loss"]
    assert all(np.isfinite(first["val_loss"]))


def test_fit_with_mixup_and_device_augmentation_leaves_the_model_its_own_train_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered = []
    for name in ("mixup_in_train_step", "augmentation_in_train_step"):
        real = getattr(fit_module, name)

        def spying(*args, _real=real, _name=name, **kwargs):
            entered.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(fit_module, name, spying)
    data = dataclasses.replace(make_splits(), augmentation=Augmentation(rotation=10))
    model = tiny_model()
    result = fit(model, data, epochs=1, mixup=0.2, augment_on="device", callbacks=None, verbose=0)
    assert entered == ["mixup_in_train_step", "augmentation_in_train_step"]  # augmented, then mixed
    assert np.isfinite(result.history["loss"][0])
    assert "train_step" not in model.__dict__


def test_fit_with_mixup_trains_a_softmax_model_on_a_partial_last_batch() -> None:
    data = make_splits(n_train=22, batch_size=8)  # batches of 8, 8 and 6
    result = fit(tiny_model(units=2), data, epochs=2, mixup=0.4, callbacks=None, verbose=0)
    assert all(np.isfinite(result.history[key]).all() for key in ("loss", "val_loss", "val_auc"))


@pytest.mark.parametrize("value", [-0.1, True, float("nan"), float("inf"), "0.2", 1e-5, 1e4])
def test_fit_rejects_a_bad_mixup_before_training(value: object) -> None:
    with pytest.raises(
        ValueError, match=r"fit mixup must be 0 \(no mixup\) or a number in \[0.001, 1000\]"
    ):
        fit(tiny_model(), make_splits(), epochs=1, mixup=value, verbose=0)
