"""Mixup inside the training step of [`fit`][cxr_pneumonia.training.fitting.fit]: ``fit(mixup=)``.

Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018)
trains on convex combinations of pairs of examples: the image
``lam * x_i + (1 - lam) * x_j`` with the label ``lam * y_i + (1 - lam) * y_j``,
``lam ~ Beta(alpha, alpha)``. Here every image of a batch is mixed with another
image of the same batch (a random permutation), each with its own ``lam``, and
the sample weights of the batch (the class weights Keras looks up from the
integer labels before the step) are mixed with the same ``lam``: an image that
is 70 % NORMAL weighs 70 % of a NORMAL image's class weight plus 30 % of a
PNEUMONIA one's. Keras can't do that on its own: its ``class_weight`` looks a
label up as an integer and would truncate a mixed one.

The draws are stateless, keyed by ``seed``, the optimizer's step counter (saved
in checkpoints, so a resumed run mixes as an uninterrupted one would) and the
replica. ``Beta`` is drawn from two ``Gamma`` draws made of uniform and normal
draws only (Marsaglia and Tsang's method, a fixed number of candidates), so the
step still compiles with XLA, which has no kernel for ``tf.random.stateless_gamma``
(nor ``stateless_shuffle``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cxr_pneumonia.data.augment import replaced_train_step

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

__all__ = ["check_mixup", "mix_batch", "mixing", "mixup_in_train_step"]

# Folded into the step's key so that mixup draws apart from the augmentation's.
_MIXUP_STREAM = 0x6D6978
# Gamma candidates per draw; with shape >= 1 Marsaglia and Tsang's method accepts more
# than 95 % of them, so all 16 are rejected with probability below 1e-20.
_CANDIDATES = 16


def check_mixup(value: object) -> float:
    """``fit``'s ``mixup``: a finite number ``>= 0`` (``0``: off)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        msg = (
            "fit mixup must be a number >= 0, the alpha of the Beta(alpha, alpha) mixing "
            f"weights (0: no mixup; 0.2 is usual); got {value!r}"
        )
        raise ValueError(msg)
    return float(value)


def _log_gamma_draw(key: tf.Tensor, count: tf.Tensor, shape: float) -> tf.Tensor:
    """``log`` of ``count`` draws of ``Gamma(shape, 1)``, from uniform and normal draws only."""
    import tensorflow as tf

    fold_in = tf.random.experimental.stateless_fold_in
    boosted = shape + 1.0 if shape < 1 else shape  # Gamma(a) = Gamma(a + 1) * U ** (1 / a)
    d = boosted - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    size = tf.stack([count, _CANDIDATES])
    x = tf.random.stateless_normal(size, seed=fold_in(key, 0))
    u = tf.random.stateless_uniform(size, seed=fold_in(key, 1), minval=1e-12, maxval=1.0)
    v = (1.0 + c * x) ** 3
    safe_v = tf.maximum(v, 1e-12)
    accepted = (v > 0) & (tf.math.log(u) < 0.5 * x * x + d - d * safe_v + d * tf.math.log(safe_v))
    first = tf.argmax(tf.cast(accepted, tf.int32), axis=1, output_type=tf.int32)
    chosen = tf.gather(safe_v, first, axis=1, batch_dims=1)
    # No candidate accepted (probability < 1e-20): the distribution's centre.
    chosen = tf.where(tf.reduce_any(accepted, axis=1), chosen, tf.ones_like(chosen))
    log_draw = tf.math.log(d * chosen)
    if shape < 1:
        boost = tf.random.stateless_uniform(
            tf.reshape(count, [1]), seed=fold_in(key, 2), minval=1e-12, maxval=1.0
        )
        log_draw += tf.math.log(boost) / shape
    return log_draw


def mixing(key: tf.Tensor, count: tf.Tensor, alpha: float) -> tuple[tf.Tensor, tf.Tensor]:
    """The mixing weights and partners of a batch of ``count`` examples.

    Args:
        key: ``int64`` ``(2,)`` seed of the stateless draws.
        count: Examples in the batch (scalar ``int32`` tensor).
        alpha: ``> 0``: the weights are drawn from ``Beta(alpha, alpha)``.

    Returns:
        ``(lam, partner)``: ``float32`` ``(count,)`` weights in ``[0, 1]`` and
        ``int32`` ``(count,)`` indices, a permutation of the batch; example ``i``
        becomes ``lam[i] * example[i] + (1 - lam[i]) * example[partner[i]]``.
    """
    import tensorflow as tf

    fold_in = tf.random.experimental.stateless_fold_in
    count = tf.cast(count, tf.int32)
    first = _log_gamma_draw(fold_in(key, 0), count, alpha)
    second = _log_gamma_draw(fold_in(key, 1), count, alpha)
    lam = tf.math.sigmoid(first - second)  # G1 / (G1 + G2), computed from the logs
    # a random permutation (argsort of uniforms: XLA has no kernel for stateless_shuffle)
    partner = tf.argsort(tf.random.stateless_uniform(tf.reshape(count, [1]), seed=fold_in(key, 2)))
    return lam, partner


def mix_batch(data: tuple[tf.Tensor, ...], key: tf.Tensor, alpha: float) -> tuple[tf.Tensor, ...]:
    """Mix a training batch ``(images, labels[, sample_weights])`` with itself.

    Images become ``float32``; labels (``(B,)`` or one-hot ``(B, 2)``) and
    sample weights are mixed with the same weights as their images. See
    [`mixing`][cxr_pneumonia.training._mixup.mixing].
    """
    import tensorflow as tf

    images, labels, *rest = data
    lam, partner = mixing(key, tf.shape(images)[0], alpha)

    def mix(values: tf.Tensor) -> tf.Tensor:
        values = tf.cast(values, tf.float32)
        weight = tf.reshape(lam, [-1] + [1] * (values.shape.rank - 1))
        return weight * values + (1.0 - weight) * tf.gather(values, partner)

    mixed = [mix(images), mix(labels)]
    mixed += [mix(weights) if weights is not None else None for weights in rest]
    return tuple(mixed)


@contextlib.contextmanager
def mixup_in_train_step(model: keras.Model, alpha: float, *, seed: int) -> Iterator[None]:
    """Mix every training batch inside ``model.train_step`` while the block runs.

    Validation and prediction steps are untouched. Enter it *before*
    [`augmentation_in_train_step`][cxr_pneumonia.data.augment.augmentation_in_train_step]
    so that the images are augmented first and mixed after, as they are when
    the pipeline augments them.

    Args:
        model: A compiled ``keras.Model`` (its optimizer counts the steps).
        alpha: ``> 0``; see [`mixing`][cxr_pneumonia.training._mixup.mixing].
        seed: Seed of the draws.

    Yields:
        Nothing; the model's previous ``train_step`` is back when the block exits.
    """
    import tensorflow as tf

    if getattr(model, "optimizer", None) is None:
        msg = f"model {model.name!r} is not compiled; compile it before mixing in its steps"
        raise ValueError(msg)
    original = model.train_step
    base_seed = int(seed)

    def train_step(data: Any) -> Any:
        step = tf.cast(model.optimizer.iterations, tf.int64)
        key = tf.stack([tf.constant(base_seed, tf.int64), step])
        key = tf.random.experimental.stateless_fold_in(key, _MIXUP_STREAM)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            replica = tf.cast(context.replica_id_in_sync_group, tf.int64)
            key = tf.random.experimental.stateless_fold_in(key, replica)
        if not isinstance(data, (tuple, list)) or len(data) < 2:
            msg = "mixup needs batches of (images, labels) or (images, labels, sample_weights)"
            raise ValueError(msg)
        return original(mix_batch(tuple(data), key, alpha))

    with replaced_train_step(model, train_step):
        yield
