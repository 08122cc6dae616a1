"""Device selection, and ``fit`` on two logical CPUs and on a two-worker loopback cluster.

Logical devices must be configured before TensorFlow initialises its devices,
and a multi-worker strategy is once per process, so those tests run our
``fit`` in fresh Python subprocesses (bounded by timeouts, killed on expiry)
and keep this process clean.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import keras
import pytest

from cxr_pneumonia.devices import device_info, select_strategy
from cxr_pneumonia.training import fit
from helpers_training import make_splits, tiny_model

TIMEOUT = 120  # seconds for a group of subprocesses; they run on a shared, busy CPU
TESTS = Path(__file__).resolve().parent

# The child's preamble defines `strategy`; this part trains with our `fit` and prints
# one RESULT line. 24 training images in per-replica batches of 4: 6 batches on one
# replica, 3 global batches of 8 on two (a worker of a cluster runs those 3 steps on
# its half of each global batch).
FIT_TINY_MODEL = """
import hashlib
import json
import os
import keras
import numpy as np
from cxr_pneumonia.devices import device_info
from cxr_pneumonia.training import fit
from helpers_training import make_splits

with strategy.scope():  # what build_model(..., strategy=strategy) does, on a tinier model
    model = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(),  # non-trainable state, updated per replica
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="tiny_bn",
    )
data = make_splits(n_train=int(os.environ.get("N_TRAIN", "24")), n_val=8, size=16, batch_size=4)
result = fit(
    model,
    data,
    epochs=2,
    learning_rate=0.01,
    callbacks="default" if CHECKPOINT_DIR else None,
    checkpoint_dir=CHECKPOINT_DIR,
    seed=0,
    verbose=0,
    mixup=float(os.environ.get("MIXUP", "0")),
)
weights = b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights())
print("RESULT " + json.dumps({
    "replicas": result.replicas,
    "model_replicas": model.distribute_strategy.num_replicas_in_sync,
    "same_strategy": model.distribute_strategy is strategy,
    "history": result.history,
    "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
    # the loss tracker's count, all replicas summed: images of the last validation
    "validated": float(keras.ops.convert_to_numpy(model.metrics[0].count)),
    "checkpoints": {role: str(path) for role, path in result.checkpoints.items()},
    "weights": hashlib.sha256(weights).hexdigest(),
    "info": device_info(strategy),
    "all_reduce": ALL_REDUCE,
}))
"""

TWO_LOGICAL_CPUS = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from cxr_pneumonia.devices import select_strategy
strategy = select_strategy(devices=["/cpu:0", "/cpu:1"])
CHECKPOINT_DIR = None
ALL_REDUCE = None
import keras
keras.utils.set_random_seed(0)
"""

LOOPBACK_WORKER = """
import json, os
import keras
import tensorflow as tf
from cxr_pneumonia.devices import select_strategy
strategy = select_strategy()  # automatic: TF_CONFIG -> MultiWorkerMirroredStrategy
ALL_REDUCE = float(strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None))
# Different initial weights on each worker: the strategy must broadcast the chief's.
keras.utils.set_random_seed(100 + json.loads(os.environ["TF_CONFIG"])["task"]["index"])
CHECKPOINT_DIR = os.environ["CHECKPOINT_DIR"]
"""


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    path = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p)
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=path, **extra)
    return env


def _run_children(code: str, envs: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Run ``code`` in one subprocess per env, all at once; their RESULT lines, once all succeed."""
    children = [
        subprocess.Popen(
            [sys.executable, "-W", "error::UserWarning", "-c", code],  # as our pytest config
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for env in envs
    ]
    deadline = time.monotonic() + TIMEOUT
    outputs = []
    try:
        for child in children:
            outputs.append(child.communicate(timeout=max(deadline - time.monotonic(), 1)))
    finally:
        for child in children:
            if child.poll() is None:  # timed out, or a peer failed: don't leave it waiting
                child.kill()
                child.communicate()
    failed = [
        f"child {i} exited with {child.returncode}:\n{stderr[-3000:]}"
        for i, (child, (_, stderr)) in enumerate(zip(children, outputs, strict=True))
        if child.returncode != 0
    ]
    assert not failed, "\n".join(failed)
    results = []
    for stdout, stderr in outputs:
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, f"no result line in the child's output:\n{stdout}\n{stderr[-3000:]}"
        results.append(json.loads(lines[-1][len("RESULT ") :]))
    return results


def _check_training(result: dict[str, Any], steps_per_epoch: int = 3) -> None:
    assert result["replicas"] == 2
    assert result["model_replicas"] == 2
    assert result["same_strategy"] is True
    # 2 epochs in global batches of 2 x 4: 24 images make 3, 17 make 2 (the last left out)
    assert result["steps"] == 2 * steps_per_epoch
    assert result["validated"] == 8  # each image once: the replicas shared the batches
    history = result["history"]
    assert len(history["loss"]) == len(history["val_loss"]) == 2
    assert all(math.isfinite(v) for key in ("loss", "val_loss") for v in history[key])
    assert history["loss"][-1] < history["loss"][0]  # the tiny data is easy to learn


def test_explicit_devices_must_be_a_list_of_names() -> None:
    for devices in ([], "/cpu:0", [0]):
        with pytest.raises(ValueError, match="devices="):
            select_strategy(devices)  # type: ignore[arg-type]


def test_automatic_choice_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this test describes a machine without GPU")
    strategy = select_strategy()
    assert strategy is select_strategy()  # chosen once per process
    info = device_info()
    assert info["replicas"] == 1
    assert info["precision"] == "float32"
    assert info["workers"] == 1
    assert info["strategy"] == "DefaultStrategy"
    assert info["devices"]


@pytest.mark.parametrize("optimizer", ["adam", "instance"])
def test_fit_creates_the_optimizer_in_the_models_strategy(optimizer: str) -> None:
    # A Keras optimizer made outside a MirroredStrategy's scope can't build in it.
    strategy = select_strategy(devices=["/cpu:0"])
    with strategy.scope():
        model = tiny_model()
    chosen = keras.optimizers.Adam(0.01) if optimizer == "instance" else optimizer
    result = fit(model, make_splits(), epochs=1, optimizer=chosen, callbacks=None, verbose=0)
    assert result.replicas == 1
    assert model.optimizer.built
    assert math.isfinite(result.history["loss"][0])


@pytest.mark.parametrize("mixup", ["0", "0.2"])
def test_fit_on_two_logical_cpus(mixup: str) -> None:
    (result,) = _run_children(TWO_LOGICAL_CPUS + FIT_TINY_MODEL, [_child_env(MIXUP=mixup)])
    _check_training(result)
    assert result["info"]["strategy"] == "MirroredStrategy"
    assert len(result["info"]["devices"]) == 2


def test_fit_on_two_logical_cpus_leaves_out_a_last_image_it_cannot_share() -> None:
    # 17 images in global batches of 8: a last batch of 1 would leave one replica
    # without an image (BatchNormalization's gradient then fails on its empty batch).
    env = _child_env(N_TRAIN="17")
    (result,) = _run_children(TWO_LOGICAL_CPUS + FIT_TINY_MODEL, [env])
    _check_training(result, steps_per_epoch=2)


def _free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_fit_on_two_workers_on_loopback_through_tf_config(tmp_path: Path) -> None:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    envs = [
        _child_env(
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
            CHECKPOINT_DIR=str(tmp_path),
        )
        for i in range(2)
    ]
    chief, other = _run_children(LOOPBACK_WORKER + FIT_TINY_MODEL, envs)
    for result in (chief, other):
        _check_training(result)
        assert result["info"]["strategy"] == "MultiWorkerMirroredStrategy"
        assert result["info"]["workers"] == 2
        assert len(result["info"]["devices"]) == 1  # one replica on each worker
        assert result["all_reduce"] == 2.0  # both workers took part
    # One model trained in sync: same weights (BatchNormalization statistics included)
    # and the same all-reduced metrics on both workers.
    assert chief["weights"] == other["weights"]
    assert chief["history"] == other["history"]
    # Every worker runs the callbacks: the chief writes in checkpoint_dir, the other in a
    # sub-folder.
    assert Path(chief["checkpoints"]["log"]) == tmp_path / "training_log.csv"
    assert Path(other["checkpoints"]["log"]) == tmp_path / "worker-1" / "training_log.csv"
    assert (tmp_path / "best_val_loss.keras").is_file()
    assert (tmp_path / "worker-1" / "best_val_loss.keras").is_file()


@pytest.mark.parametrize("one_hot", [False, True])
def test_the_multi_worker_pipeline_weighs_each_image_by_its_class(one_hot: bool) -> None:
    import numpy as np
    import tensorflow as tf

    from cxr_pneumonia.training._distributed import distribute

    labels = np.array([0, 1, 1, 0])
    targets = np.eye(2, dtype=np.float32)[labels] if one_hot else labels
    batches = tf.data.Dataset.from_tensor_slices((np.zeros((4, 2, 2, 1)), targets)).batch(4)
    ((_, _, weights),) = list(distribute(tf.distribute.get_strategy(), batches, {0: 2.0, 1: 0.5}))
    assert weights.numpy().tolist() == [2.0, 0.5, 0.5, 2.0]  # one weight per image


def _batch_sizes(dataset: Any) -> list[int]:
    return [int(labels.shape[0]) for _, labels in dataset]


def _per_replica_batches(examples: int, batch_size: int = 4) -> Any:
    import numpy as np
    import tensorflow as tf

    images = np.zeros((examples, 2, 2, 1), np.float32)
    return tf.data.Dataset.from_tensor_slices((images, np.arange(examples))).batch(batch_size)


@pytest.mark.parametrize(
    ("examples", "replicas", "train", "validation"),
    [
        (17, 2, [8, 8], [8, 8, 1]),  # a last image alone: one replica would get none
        (18, 2, [8, 8, 2], [8, 8, 2]),  # one image each
        (26, 3, [12, 12], [12, 12, 2]),
        (27, 3, [12, 12, 3], [12, 12, 3]),
        (16, 2, [8, 8], [8, 8]),
    ],
)
def test_rebatch_leaves_out_a_last_training_batch_smaller_than_the_replicas(
    examples: int, replicas: int, train: list[int], validation: list[int]
) -> None:
    from cxr_pneumonia.training._distributed import rebatch, train_steps

    per_replica = _per_replica_batches(examples)
    options = {"batch_size": 4, "replicas": replicas, "examples": examples}
    training = rebatch(per_replica, training=True, **options)
    assert _batch_sizes(training) == train
    assert (
        int(training.cardinality())
        == len(train)
        == train_steps(examples, batch_size=4, replicas=replicas)
    )
    validating = rebatch(per_replica, **options)
    assert _batch_sizes(validating) == validation
    assert int(validating.cardinality()) == len(validation)


def test_rebatch_of_a_pipeline_of_unknown_length_filters_the_last_training_batch() -> None:
    from cxr_pneumonia.training._distributed import rebatch

    unknown = _per_replica_batches(17).filter(lambda images, labels: True)
    training = rebatch(unknown, batch_size=4, replicas=2, examples=17, training=True)
    assert _batch_sizes(training) == [8, 8]


def test_fewer_training_images_than_replicas_is_a_clear_error() -> None:
    from cxr_pneumonia.exceptions import TrainingError
    from cxr_pneumonia.training._distributed import rebatch

    with pytest.raises(TrainingError, match=r"1 training image.* 2 replicas"):
        rebatch(_per_replica_batches(1), batch_size=4, replicas=2, examples=1, training=True)
