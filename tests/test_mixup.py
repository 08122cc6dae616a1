"""Mixup in the training step: the Beta draws, the mixed batch, its key, and `fit(mixup=)`."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from cxr_pneumonia.data.augment import Augmentation, augment_batch, augmentation_in_train_step
from cxr_pneumonia.training import fit
from cxr_pneumonia.training._mixup import (
    _MIXUP_STREAM,
    mix_batch,
    mixing,
    mixup_in_train_step,
)
from helpers_training import make_splits, tiny_model
from test_augment_step import recording_model


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
def test_mix_batch_blends_images_labels_and_weights_with_one_weight(one_hot: bool) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 4, 4, 1), dtype=np.uint8)
    labels = np.array([0, 1, 1, 0, 1, 0, 1, 1], dtype=np.int32)
    weights = np.where(labels == 1, 0.6, 2.0).astype(np.float32)  # balanced class weights
    targets = np.eye(2, dtype=np.float32)[labels] if one_hot else labels
    key = _key(4, 2)
    mixed_images, mixed_labels, mixed_weights = (
        t.numpy() for t in mix_batch((tf.constant(images), tf.constant(targets), weights), key, 1.0)
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
        # the class weight of a mixed image is the mix of its parts' class weights
        assert mixed_weights[i] == pytest.approx(lam[i] * weights[i] + (1 - lam[i]) * weights[j])
    if one_hot:
        np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0, atol=1e-6)
    assert np.any((mixed_labels > 0.01) & (mixed_labels < 0.99))  # some labels are soft


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


def test_fit_mixes_the_class_weights_keras_looked_up_not_truncated_labels() -> None:
    """With an untrained model near 0.5 everywhere the loss is log 2 times the mean weight.

    Class weights looked up from mixed labels truncated to integers would be
    mostly NORMAL's (a label is 1 only when both parts are PNEUMONIA): a mean
    weight near 3.25 instead of (1 + 10) / 2.
    """

    def first_loss(weights: dict[int, float], mixup: float) -> float:
        result = fit(
            tiny_model(),
            make_splits(),
            epochs=1,
            optimizer=keras.optimizers.SGD(learning_rate=1e-12),  # weights barely move
            class_weight=weights,
            mixup=mixup,
            callbacks=None,
            verbose=0,
        )
        return result.history["loss"][0]

    plain = first_loss({0: 1.0, 1: 1.0}, 1.0)
    assert first_loss({0: 1.0, 1: 10.0}, 1.0) / plain == pytest.approx(5.5, rel=0.2)


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


def test_fit_with_mixup_leaves_the_model_its_own_train_step() -> None:
    model = tiny_model()
    fit(model, make_splits(), epochs=1, mixup=0.2, augment_on="device", callbacks=None, verbose=0)
    assert "train_step" not in model.__dict__


@pytest.mark.parametrize("value", [-0.1, True, float("nan"), float("inf"), "0.2"])
def test_fit_rejects_a_bad_mixup_before_training(value: object) -> None:
    with pytest.raises(ValueError, match="fit mixup must be a number >= 0"):
        fit(tiny_model(), make_splits(), epochs=1, mixup=value, verbose=0)
