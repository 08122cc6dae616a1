"""Automatic choice of devices: the ``tf.distribute`` strategy, precision, XLA, augmentation.

[`plan_devices`][cxr_pneumonia.devices.plan_devices] decides from the machine's
GPUs (a pure function of the device list, so the decision is tested on a CPU
with a faked list):

1. ``TF_CONFIG`` is set (a multi-worker cluster) ->
   ``tf.distribute.MultiWorkerMirroredStrategy``;
2. one GPU -> TensorFlow's default strategy on it, XLA compilation of the
   training step (``jit_compile``), the augmentation inside the training step;
3. several GPUs -> ``MirroredStrategy`` over all of them (no XLA: Keras
   disables it under ``tf.distribute``), augmentation inside the step;
4. no GPU -> TensorFlow's default strategy on the CPU: nothing changes.

With GPUs, memory growth is turned on for every one, and the
``"mixed_float16"`` Keras policy is set when every GPU has compute capability
7.0 or more (models keep a float32 output).
[`select_strategy`][cxr_pneumonia.devices.select_strategy] applies the plan;
[`fit`][cxr_pneumonia.training.fitting.fit] reads its XLA and augmentation
choices.

The automatic choice is made once per process and reused (TensorFlow allows
a single multi-worker strategy per process, and memory growth can only be set
before the GPUs are used). Nothing happens at import time.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["DevicePlan", "device_info", "plan_devices", "select_strategy"]

logger = logging.getLogger("cxr_pneumonia")

MIXED_PRECISION_MIN_CAPABILITY = (7, 0)
"""GPUs from this compute capability on (Volta, Turing, Ampere...) get float16 compute."""

_automatic: tf.distribute.Strategy | None = None


@dataclass(frozen=True)
class DevicePlan:
    """What the automatic choice does on a machine.

    See [`plan_devices`][cxr_pneumonia.devices.plan_devices].

    Attributes:
        strategy: ``"default"`` (one device), ``"mirrored"`` (all GPUs) or
            ``"multi_worker"`` (``TF_CONFIG``).
        gpus: Names of the GPUs used (``()`` on a CPU).
        mixed_precision: Whether the ``"mixed_float16"`` policy is set.
        jit_compile: Whether [`fit`][cxr_pneumonia.training.fitting.fit] compiles the training
            step with XLA (when the model supports it).
        augment_on: Where ``fit(augment_on="auto")`` augments: ``"device"``
            (inside the training step) or ``"pipeline"`` (``tf.data``).
    """

    strategy: Literal["default", "mirrored", "multi_worker"]
    gpus: tuple[str, ...]
    mixed_precision: bool
    jit_compile: bool
    augment_on: Literal["pipeline", "device"]


def plan_devices(
    gpus: Sequence[tuple[str, tuple[int, int]]] | None = None,
    *,
    multi_worker: bool | None = None,
) -> DevicePlan:
    """Decide the device set-up for a machine (see the module docstring).

    Args:
        gpus: ``(name, compute capability)`` of each GPU, e.g.
            ``[("/physical_device:GPU:0", (9, 0))]``; ``None`` reads this
            machine's (``tf.config.list_physical_devices("GPU")``).
        multi_worker: Whether the process is a worker of a cluster; ``None``
            reads ``TF_CONFIG``.

    Returns:
        A [`DevicePlan`][cxr_pneumonia.devices.DevicePlan]. On a machine without
        GPU: the default strategy, float32, no XLA, augmentation in the pipeline
        (nothing changes).

    Examples:
        >>> plan_devices([("/physical_device:GPU:0", (8, 0))], multi_worker=False).jit_compile
        True
        >>> plan_devices([], multi_worker=False).augment_on
        'pipeline'
    """
    if gpus is None:
        gpus = _visible_gpus()
    if multi_worker is None:
        multi_worker = bool(os.environ.get("TF_CONFIG"))
    names = tuple(name for name, _ in gpus)
    mixed = bool(gpus) and all(
        tuple(capability) >= MIXED_PRECISION_MIN_CAPABILITY for _, capability in gpus
    )
    placement: Literal["pipeline", "device"] = "device" if gpus else "pipeline"
    if multi_worker:
        return DevicePlan("multi_worker", names, mixed, False, placement)
    if not gpus:
        return DevicePlan("default", (), False, False, "pipeline")
    if len(gpus) == 1:
        return DevicePlan("default", names, mixed, True, placement)
    return DevicePlan("mirrored", names, mixed, False, placement)


def _visible_gpus() -> list[tuple[str, tuple[int, int]]]:
    import tensorflow as tf

    return [(gpu.name, _capability(gpu)) for gpu in tf.config.list_physical_devices("GPU")]


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

    gpus = tf.config.list_physical_devices("GPU")
    plan = plan_devices([(gpu.name, _capability(gpu)) for gpu in gpus])
    if plan.strategy == "multi_worker":
        logger.info("TF_CONFIG is set: using MultiWorkerMirroredStrategy")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: keep whatever was set
            logger.warning("memory growth could not be set on %s (GPUs already in use)", gpu.name)
    if plan.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
        logger.info("GPUs support float16: using the mixed_float16 policy")
    if plan.strategy == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if plan.strategy == "mirrored":
        names = [f"/gpu:{index}" for index in range(len(gpus))]
        logger.info("using MirroredStrategy over %s", ", ".join(names))
        return tf.distribute.MirroredStrategy(devices=names)
    if gpus:
        logger.info("one GPU: the default strategy on it, XLA-compiled training steps")
    return tf.distribute.get_strategy()


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
