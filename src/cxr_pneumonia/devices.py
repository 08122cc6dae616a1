"""Automatic choice of devices: the ``tf.distribute`` strategy and the precision.

[`select_strategy`][cxr_pneumonia.devices.select_strategy] with ``devices=None`` decides, in this
order:

1. ``TF_CONFIG`` is set (a multi-worker cluster) ->
   ``tf.distribute.MultiWorkerMirroredStrategy``;
2. GPUs are visible -> memory growth on every GPU, ``MirroredStrategy`` over
   all of them, and the ``"mixed_float16"`` Keras policy when every GPU has
   compute capability 7.0 or more (models keep a float32 output);
3. otherwise TensorFlow's default strategy (one CPU or GPU device).

The automatic choice is made once per process and reused (TensorFlow allows
a single multi-worker strategy per process, and memory growth can only be set
before the GPUs are used). Nothing happens at import time.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["device_info", "select_strategy"]

logger = logging.getLogger("cxr_pneumonia")

MIXED_PRECISION_MIN_CAPABILITY = (7, 0)
"""GPUs from this compute capability on (Volta, Turing, Ampere...) get float16 compute."""

_automatic: tf.distribute.Strategy | None = None

# TensorFlow's class names behind the public aliases.
_PUBLIC_NAMES = {
    "CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy",
    "_DefaultDistributionStrategy": "DefaultStrategy",
}


def select_strategy(devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """Choose the distribution strategy to build and train models with.

    Args:
        devices: ``None`` for the automatic choice (see the module docstring),
            or device names (``["/gpu:0", "/gpu:1"]``, ``["/cpu:0", "/cpu:1"]``
            for logical CPU devices) for a ``MirroredStrategy`` over exactly
            those.

    Returns:
        A ``tf.distribute.Strategy``; build models in its ``scope()``
        (``build_model(..., strategy=...)`` does), and
        [`cxr_pneumonia.fit`][cxr_pneumonia.training.fitting.fit] trains with it
        (``model.distribute_strategy``).

    Raises:
        ValueError: If ``devices`` is an empty list or not a list of strings.
    """
    import tensorflow as tf

    if devices is not None:
        if isinstance(devices, str) or not devices or not all(isinstance(d, str) for d in devices):
            msg = (
                f"devices={devices!r} must be None (automatic) or a non-empty list of "
                'device names such as ["/gpu:0", "/gpu:1"]'
            )
            raise ValueError(msg)
        return tf.distribute.MirroredStrategy(devices=list(devices))
    global _automatic  # one automatic choice per process, made lazily
    if _automatic is None:
        _automatic = _automatic_strategy()
    return _automatic


def _automatic_strategy() -> tf.distribute.Strategy:
    import keras
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        logger.info("TF_CONFIG is set: using MultiWorkerMirroredStrategy")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return tf.distribute.get_strategy()
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: keep whatever was set
            logger.warning("memory growth could not be set on %s (GPUs already in use)", gpu.name)
    if all(_capability(gpu) >= MIXED_PRECISION_MIN_CAPABILITY for gpu in gpus):
        keras.mixed_precision.set_global_policy("mixed_float16")
        logger.info("GPUs support float16: using the mixed_float16 policy")
    names = [f"/gpu:{index}" for index in range(len(gpus))]
    logger.info("using MirroredStrategy over %s", ", ".join(names))
    return tf.distribute.MirroredStrategy(devices=names)


def _capability(gpu: Any) -> tuple[int, int]:
    import tensorflow as tf

    details = tf.config.experimental.get_device_details(gpu)
    capability = details.get("compute_capability")
    return tuple(capability) if capability else (0, 0)


def device_info(strategy: tf.distribute.Strategy | None = None) -> dict[str, Any]:
    """Describe a strategy (by default the automatic choice).

    Args:
        strategy: A strategy, or ``None`` for
            [`select_strategy`][cxr_pneumonia.devices.select_strategy]'s automatic choice (which
            this call makes if not made yet).

    Returns:
        A dict with ``strategy`` (``"DefaultStrategy"``, ``"MirroredStrategy"``,
        ``"MultiWorkerMirroredStrategy"``...), ``devices`` (device names the
        replicas run on), ``replicas`` (replicas in sync, all workers
        included), ``workers`` (from ``TF_CONFIG``, else 1) and ``precision``
        (the global Keras dtype policy, e.g. ``"float32"`` or
        ``"mixed_float16"``).
    """
    import keras

    chosen = select_strategy() if strategy is None else strategy
    extended = chosen.extended
    try:
        devices: Sequence[str] = tuple(extended.worker_devices)
    except RuntimeError:  # the default strategy has no worker devices
        devices = ()
    if not devices:
        import tensorflow as tf

        devices = tuple(d.name for d in tf.config.list_logical_devices()[:1])
    return {
        "strategy": _PUBLIC_NAMES.get(type(chosen).__name__, type(chosen).__name__),
        "devices": [str(d) for d in devices],
        "replicas": int(chosen.num_replicas_in_sync),
        "workers": _workers(),
        "precision": keras.mixed_precision.global_policy().name,
    }


def _workers() -> int:
    config = os.environ.get("TF_CONFIG")
    if not config:
        return 1
    try:
        cluster = json.loads(config).get("cluster", {})
    except (ValueError, AttributeError):
        return 1
    return sum(len(v) for k, v in cluster.items() if k in ("chief", "worker")) or 1
