"""Device selection: strategies on logical CPU devices and a loopback cluster.

Logical devices must be configured before TensorFlow initialises its devices,
and a multi-worker strategy is once per process, so those tests run in fresh
Python subprocesses (bounded by timeouts) and keep this process clean.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from cxr_pneumonia.devices import device_info, select_strategy

TIMEOUT = 240  # seconds per subprocess; these run on a shared, busy CPU

TRAIN_TINY_MODEL = """
import numpy as np
import tensorflow as tf
from cxr_pneumonia.models import build_model

tf.keras.utils.set_random_seed(0)
model = build_model("cnn-small", input_shape=(32, 32, 1), weights=None, strategy=strategy)
with model.distribute_strategy.scope():  # Keras 3: the optimizer's variables too
    model.compile(optimizer="adam", loss="binary_crossentropy")
rng = np.random.default_rng(0)
images = rng.integers(0, 256, size=(16, 32, 32, 1), dtype=np.uint8)
labels = rng.integers(0, 2, size=(16, 1)).astype("float32")
dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
history = model.fit(dataset.with_options(options), epochs=2, verbose=0)
result = {
    "replicas": model.distribute_strategy.num_replicas_in_sync,
    "same_strategy": model.distribute_strategy is strategy,
    "loss": [float(v) for v in history.history["loss"]],
    "info": device_info(strategy),
}
print("RESULT " + json.dumps(result))
"""


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)
    return env


def _result(stdout: str) -> dict[str, object]:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result line in the child's output:\n{stdout}"
    return json.loads(lines[-1][len("RESULT ") :])


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


def test_mirrored_strategy_over_two_logical_cpus() -> None:
    code = (
        textwrap.dedent(
            """
        import json
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        from cxr_pneumonia.devices import device_info, select_strategy
        strategy = select_strategy(devices=["/cpu:0", "/cpu:1"])
        """
        )
        + TRAIN_TINY_MODEL
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_child_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = _result(done.stdout)
    assert result["replicas"] == 2
    assert result["same_strategy"] is True
    assert len(result["loss"]) == 2  # type: ignore[arg-type]
    assert all(v == v for v in result["loss"])  # type: ignore[attr-defined]  # no NaN
    assert result["info"]["strategy"] == "MirroredStrategy"  # type: ignore[index]
    assert len(result["info"]["devices"]) == 2  # type: ignore[index]


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


MULTI_WORKER = """
import json
import numpy as np
import tensorflow as tf
from cxr_pneumonia.devices import device_info, select_strategy
from cxr_pneumonia.models import build_model

strategy = select_strategy()  # automatic: TF_CONFIG -> MultiWorkerMirroredStrategy
total = strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)
model = build_model("cnn-small", input_shape=(32, 32, 1), weights=None)  # automatic strategy
result = {
    "info": device_info(),
    "all_reduce": float(total),
    "same_strategy": model.distribute_strategy is strategy,
    "replicas": model.distribute_strategy.num_replicas_in_sync,
}
try:
    with strategy.scope():
        model.compile(optimizer="adam", loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(16, 32, 32, 1), dtype=np.uint8)
    labels = rng.integers(0, 2, size=(16, 1)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    result["loss"] = model.fit(dataset, epochs=1, verbose=0).history["loss"]
except Exception as exc:  # Keras 3 fit under MultiWorkerMirroredStrategy (see the test)
    result["fit_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
print("RESULT " + json.dumps(result))
"""


def test_two_workers_on_loopback_through_tf_config() -> None:
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", MULTI_WORKER],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_child_env(
                TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            ),
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=TIMEOUT))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    results = []
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-3000:]
        result = _result(stdout)
        results.append(result)
        assert result["info"]["strategy"] == "MultiWorkerMirroredStrategy"  # type: ignore[index]
        assert result["info"]["workers"] == 2  # type: ignore[index]
        assert result["info"]["replicas"] == 2  # type: ignore[index]
        assert result["all_reduce"] == 2.0  # one replica on each worker took part
        assert result["same_strategy"] is True
        assert result["replicas"] == 2
    errors = [r["fit_error"] for r in results if "fit_error" in r]
    if errors:
        # Keras 3 model.fit under MultiWorkerMirroredStrategy fails in its own
        # symbolic build (keras-team/keras#20585, tensorflow/tensorflow#72388).
        pytest.xfail(f"Keras 3 fit under MultiWorkerMirroredStrategy: {errors[0]}")
    assert results[0]["loss"] == results[1]["loss"]  # one model, trained in sync
