"""Mixup inside the training step of [`fit`][cxr_pneumonia.training.fitting.fit]: ``fit(mixup=)``.

Mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018)
trains on convex combinations of pairs of examples: the image
``lam * x_i + (1 - lam) * x_j`` with the label ``lam * y_i + (1 - lam) * y_j``,
``lam ~ Beta(alpha, alpha)``. Here every image of a batch is mixed with another
image of the same batch (a random permutation), each with its own ``lam``.

With sample weights (the class weights Keras looks up from the integer labels
before the step), the loss of a blend is the blend of the two weighted losses,
``lam * w_i * L(y_i) + (1 - lam) * w_j * L(y_j)``, as in the paper's code with
a weighted loss, so balanced class weights stay balanced. Cross-entropy is
linear in the label, so that is one weighted loss ``w * L(y)`` with the weight
``w = lam * w_i + (1 - lam) * w_j`` and the label mixed by
``lam * w_i / w`` instead of ``lam``: a half-and-half blend of a NORMAL image
(weight 1.95 on this data) and a PNEUMONIA one (0.67) is trained towards
PNEUMONIA 0.26, not 0.5. Keras' ``class_weight`` can't do this for soft labels:
it would look a blend's weight up from its rounded label, the full weight of
its majority class.

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

from cxr_pneumonia.data.augment import replaced_train_step, train_step_key

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

__all__ = ["check_mixup", "mix_batch", "mixing", "mixup_in_train_step"]

# Folded into the step's key so that mixup draws apart from the augmentation's.
_MIXUP_STREAM = 0x6D6978
# Gamma candidates per draw; with shape >= 1 Marsaglia and Tsang's method accepts more
# than 95 % of them, so all 16 are rejected with probability below 1e-20.
_CANDIDATES = 16
_ALPHA_RANGE = (1e-3, 1e3)
"""Alphas (besides 0) whose draws float32 holds: far outside, ``lam`` is NaN."""


def check_mixup(value: object) -> float:
    """``fit``'s ``mixup``: ``0`` (off) or a number in ``[0.001, 1000]``."""
    low, high = _ALPHA_RANGE
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value == 0 or low <= value <= high)
    ):
        msg = (
            f"fit mixup must be 0 (no mixup) or a number in [{low:g}, {high:g}], the alpha of "
            f"the Beta(alpha, alpha) mixing weights (0.2 is usual); got {value!r}"
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

    Images become ``float32`` ``lam * x_i + (1 - lam) * x_j`` (see
    [`mixing`][cxr_pneumonia.training._mixup.mixing]). Without sample weights
    the labels (``(B,)`` or one-hot ``(B, 2)``) are mixed with ``lam`` too; with
    them, the weights are mixed with ``lam`` and the labels with
    ``lam * w_i / (lam * w_i + (1 - lam) * w_j)``, so that the weighted
    cross-entropy of the blend is the blend of the two weighted losses.
    """
    import tensorflow as tf

    images, labels, *rest = data
    lam, partner = mixing(key, tf.shape(images)[0], alpha)

    def mix(values: tf.Tensor, share: tf.Tensor) -> tf.Tensor:
        values = tf.cast(values, tf.float32)
        share = tf.reshape(share, [-1] + [1] * (values.shape.rank - 1))
        return share * values + (1.0 - share) * tf.gather(values, partner)

    weights = rest[0] if rest else None
    if weights is None:
        return (mix(images, lam), mix(labels, lam), *rest)
    weights = tf.reshape(tf.cast(weights, tf.float32), [-1])
    mixed_weights = mix(weights, lam)
    label_share = tf.math.divide_no_nan(lam * weights, mixed_weights)
    label_share = tf.where(mixed_weights > 0, label_share, lam)  # both weights 0: no loss anyway
    return (mix(images, lam), mix(labels, label_share), mixed_weights, *rest[1:])


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

    Raises:
        ValueError: If the model is not compiled, or (in its first step) the
            batches are not ``(images, labels[, sample_weights])``.
    """
    if getattr(model, "optimizer", None) is None:
        msg = f"model {model.name!r} is not compiled; compile it before mixing in its steps"
        raise ValueError(msg)
    original = model.train_step
    base_seed = int(seed)

    def train_step(data: Any) -> Any:
        key = train_step_key(model, base_seed, stream=_MIXUP_STREAM)
        if not isinstance(data, (tuple, list)) or len(data) < 2:
            got = f"a {len(data)}-tuple" if isinstance(data, (tuple, list)) else type(data).__name__
            msg = (
                "mixup needs batches of (images, labels) or (images, labels, sample_weights); "
                f"got {got}"
            )
            raise ValueError(msg)
        return original(mix_batch(tuple(data), key, alpha))

    with replaced_train_step(model, train_step):
        yield
