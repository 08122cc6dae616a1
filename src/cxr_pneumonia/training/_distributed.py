"""Distribution helpers of [`fit`][cxr_pneumonia.training.fitting.fit]: global batches, workers.

With several replicas, ``fit`` re-batches the per-replica pipelines to global
batches (`rebatch`). Under a ``MultiWorkerMirroredStrategy`` spanning
several workers it trains with `fit_multi_worker`, a small synchronous
loop around Keras' own ``train_step`` / ``test_step``, because Keras 3.15's
``Model.fit`` fails there (keras-team/keras#20585,
tensorflow/tensorflow#72388); each non-chief worker writes its files in its
own sub-folder (`worker_folder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import keras

from cxr_pneumonia.exceptions import TrainingError

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "distribute",
    "fit_multi_worker",
    "is_multi_worker",
    "rebatch",
    "train_steps",
    "worker_folder",
]


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` is a ``MultiWorkerMirroredStrategy`` spanning several workers."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    return int(strategy.num_replicas_in_sync) > len(strategy.extended.worker_devices)


def worker_folder(folder: Path, strategy: tf.distribute.Strategy) -> Path:
    """The chief writes in ``folder``, another worker in ``folder/<task type>-<task id>``.

    Every worker runs the callbacks; on a folder shared by the workers, their
    checkpoints, logs and backups would overwrite each other.
    """
    if strategy.extended.should_checkpoint:
        return folder
    resolver = strategy.cluster_resolver
    return folder / f"{resolver.task_type}-{resolver.task_id}"


def distribute(
    strategy: tf.distribute.Strategy,
    dataset: tf.data.Dataset,
    class_weight: dict[int, float] | None = None,
) -> tf.distribute.DistributedDataset:
    """Shard a pipeline of global batches over the workers, with class weights as sample weights."""
    import tensorflow as tf

    if class_weight is not None:
        table = tf.constant([class_weight[0], class_weight[1]], dtype=tf.float32)

        def weigh(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            # one-hot (N, 2) labels of a softmax model, or (N,) class indices
            classes = tf.argmax(y, axis=-1) if y.shape.rank == 2 else tf.reshape(y, [-1])
            return x, y, tf.gather(table, tf.cast(classes, tf.int32))

        dataset = dataset.map(weigh)
    # Our pipelines read arrays, not files: every worker walks the same seeded order
    # and keeps its share of each global batch.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def fit_multi_worker(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    *,
    epochs: int,
    initial_epoch: int,
    class_weight: dict[int, float] | None,
    callbacks: list[keras.callbacks.Callback],
    verbose: Literal["auto", 0, 1, 2] | int,
) -> None:
    """``model.fit`` for a strategy spanning several workers, as a plain loop.

    Keras 3.15's ``Model.fit`` can't train under a multi-worker
    ``MultiWorkerMirroredStrategy``: before the first step it reduces the first
    data batch (a tuple of ``PerReplica`` values) with ``strategy.reduce``,
    which takes no nested structures across workers ("Attempt to convert a
    value (PerReplica...) to a Tensor", keras-team/keras#20585), and its train
    function then reduces the scalar step logs with ``reduce(..., axis=0)``
    ("Invalid reduction dimension 0 for input with 0 dimensions",
    tensorflow/tensorflow#72388).

    This loop runs Keras' own ``model.train_step`` and ``model.test_step`` with
    ``strategy.run`` (the optimizer all-reduces the gradients, the loss is
    scaled per replica, as in ``fit``) and:

    - builds the optimizer in the strategy's scope before the first step;
    - never reduces data nor step logs; reads the metrics once per epoch in
      cross-replica context, all-reduced over every worker, so all workers
      pass the same logs to their callbacks and take the same decisions;
    - averages the non-trainable weights (BatchNormalization's moving
      statistics) over the replicas after each epoch's training, so the
      workers end with the same weights;
    - drives the callbacks as ``fit`` does (``on_train_begin``,
      ``on_epoch_begin``, batch hooks without logs, ``on_test_*`` around the
      validation, ``on_epoch_end`` with the ``val_*`` logs, ``on_train_end``;
      the epoch restored by ``BackupAndRestore`` is honoured), but reads
      ``model.stop_training`` only at the end of an epoch: a worker leaving an
      epoch early would leave the others waiting in a collective.
    """
    import tensorflow as tf

    strategy = model.distribute_strategy
    if not model.optimizer.built:  # its variables in the scope, not in a replica's step
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)
    train_data = distribute(strategy, train_ds, class_weight)
    val_data = distribute(strategy, val_ds) if val_ds is not None else None

    @tf.function(reduce_retracing=True)
    def train_step(batch: Any) -> None:
        strategy.run(model.train_step, args=(batch,))

    @tf.function(reduce_retracing=True)
    def test_step(batch: Any) -> None:
        strategy.run(model.test_step, args=(batch,))

    # Keras 3 updates non-trainable weights (BatchNormalization's moving statistics)
    # with each replica's own batch statistics and no aggregation: the workers'
    # copies drift apart. They are exponential moving averages, linear in the batch
    # statistics, so averaging them over the replicas once per epoch gives exactly
    # what averaging every update (tf.keras 2's BatchNormalization) would.
    local_state = [v for v in model.non_trainable_weights if "float" in str(v.dtype)]

    @tf.function
    def average_local_state() -> None:
        def average() -> None:
            context = tf.distribute.get_replica_context()
            means = context.all_reduce("MEAN", [tf.identity(v.value) for v in local_state])
            for variable, mean in zip(local_state, means, strict=True):
                variable.assign(mean)

        strategy.run(average)

    hooks = keras.callbacks.CallbackList(
        callbacks,
        add_history=True,
        add_progbar=verbose != 0,
        model=model,
        verbose=verbose,
        epochs=epochs,
        steps=None,
    )
    model.stop_training = False
    hooks.on_train_begin()
    initial_epoch = getattr(model, "_initial_epoch", None) or initial_epoch  # BackupAndRestore
    logs: dict[str, Any] | None = None
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        hooks.on_epoch_begin(epoch)
        for step, batch in enumerate(train_data):
            hooks.on_train_batch_begin(step)
            train_step(batch)
            hooks.on_train_batch_end(step)
        if local_state:
            average_local_state()
        logs = dict(model.get_metrics_result())
        if val_data is not None:
            model.reset_metrics()
            hooks.on_test_begin()
            for step, batch in enumerate(val_data):
                hooks.on_test_batch_begin(step)
                test_step(batch)
                hooks.on_test_batch_end(step)
            val_logs = dict(model.get_metrics_result())
            hooks.on_test_end(val_logs)
            logs.update({f"val_{name}": value for name, value in val_logs.items()})
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    model.optimizer.finalize_variable_values(model.trainable_weights)
    hooks.on_train_end(logs)


# --------------------------------------------------------------------------- fit


def train_steps(examples: int, *, batch_size: int, replicas: int) -> int:
    """Training steps per epoch: global batches, less a last one too small to share.

    A global batch is split over the replicas; one of fewer images than replicas
    leaves a replica with none, and the gradient of ``BatchNormalization`` on an
    empty batch fails ("Unable to broadcast tensor of shape [1,1,1,C] to
    [0,H,W,C]"). `rebatch` drops such a last training batch: fewer images than
    replicas, a different few in each shuffled epoch.
    """
    global_batch = batch_size * replicas
    steps = -(-examples // global_batch)
    if 0 < examples % global_batch < replicas:
        steps -= 1
    return steps


def rebatch(
    dataset: tf.data.Dataset,
    *,
    batch_size: int,
    replicas: int,
    examples: int,
    training: bool = False,
) -> tf.data.Dataset:
    """Re-batch a pipeline of per-replica batches to global batches of ``replicas`` times the size.

    ``rebatch`` loses the cardinality, and Keras then warns at the end of the
    first epoch that the input "ran out of data". When the pipeline holds
    ``examples`` in batches of ``batch_size`` (all full but the last), it makes
    ``ceil(examples / (batch_size * replicas))`` global batches: that
    cardinality is asserted back. With ``training``, a last global batch of
    fewer images than replicas is left out (see `train_steps`); validation
    keeps every image (a replica's empty batch is harmless in ``test_step``).

    Raises:
        TrainingError: If ``training`` and there are fewer ``examples`` than
            replicas: no replica would have an image to train on in a step.
    """
    import tensorflow as tf

    if training and 0 < examples < replicas:
        msg = (
            f"{examples} training image(s) can't be shared by {replicas} replicas: every "
            "replica needs at least one image per step; build the model with a strategy "
            "of fewer devices (build_model(..., strategy=select_strategy(devices=[...]))) "
            "or train on more images"
        )
        raise TrainingError(msg)
    rebatched = dataset.rebatch(batch_size * replicas)
    if examples > 0 and int(dataset.cardinality()) == -(-examples // batch_size):
        global_batches = -(-examples // (batch_size * replicas))
        if training:
            steps = train_steps(examples, batch_size=batch_size, replicas=replicas)
            rebatched = rebatched.take(steps)
            global_batches = steps
        return rebatched.apply(tf.data.experimental.assert_cardinality(global_batches))
    if training:  # a pipeline of unknown length: look at each batch's size

        def shared_by_all(*batch: tf.Tensor) -> tf.Tensor:
            return tf.shape(tf.nest.flatten(batch)[0])[0] >= replicas

        rebatched = rebatched.filter(shared_by_all)
    return rebatched
