"""Score a model on data and report: [`evaluate`][cxr_pneumonia.evaluation.scoring.evaluate].

The conventions are those of `cxr_pneumonia.evaluation`.

Examples:
    >>> report = evaluate(model, splits, split="test")            # doctest: +SKIP
    >>> t = report.threshold_for(sensitivity=0.97)                  # doctest: +SKIP
    >>> print(report.at_threshold(t).to_markdown())                 # doctest: +SKIP

scikit-learn and TensorFlow are imported only when a function needs them, and
matplotlib never (figures are in `cxr_pneumonia.plots`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from cxr_pneumonia.data.splits import CLASS_NAMES, SPLIT_NAMES, DatasetSplits
from cxr_pneumonia.evaluation.inputs import check_threshold
from cxr_pneumonia.evaluation.report import EvaluationReport, build_report
from cxr_pneumonia.outputs import positive_probability

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["EvaluationData", "evaluate", "resolve_split"]

DEFAULT_BATCH_SIZE = 32

EvaluationData = Union[DatasetSplits, "tf.data.Dataset", tuple[np.ndarray, np.ndarray]]
"""What [`evaluate`][cxr_pneumonia.evaluation.scoring.evaluate] accepts as data."""


def resolve_split(data: DatasetSplits, split: str | None) -> str:
    """The split [`evaluate`][cxr_pneumonia.evaluation.scoring.evaluate] scores.

    ``split`` itself, or for ``None``: ``"test"`` when the data has one, else
    ``"all"``.

    Args:
        data: The data set.
        split: A split name, ``"all"``, or ``None`` for the default.

    Returns:
        ``"train"``, ``"validation"``, ``"test"`` or ``"all"``.

    Raises:
        ValueError: If ``split`` is none of these.
    """
    if split is None:
        return "test" if data.test is not None else "all"
    if split != "all" and split not in SPLIT_NAMES:
        msg = f"unknown split {split!r}; choose one of: {', '.join((*SPLIT_NAMES, 'all'))}"
        raise ValueError(msg)
    return split


def _batches(
    data: Any, *, split: str | None, batch_size: int | None
) -> tuple[Iterator[tuple[np.ndarray, np.ndarray]], tuple[str, ...] | None]:
    """Turn ``data`` into an iterator of ``(images, labels)`` numpy batches.

    Returns the iterator and the data's class names, if it knows them.
    """
    if isinstance(data, DatasetSplits):
        chosen = resolve_split(data, split)
        size = batch_size if batch_size is not None else data.batch_size
        if chosen == "all":
            parts = [name for name in SPLIT_NAMES if name in data.labels]
            every = np.concatenate([data.images[name] for name in parts])
            every_label = np.concatenate([data.labels[name] for name in parts])
            return _array_batches(every, every_label, size), tuple(data.class_names)
        dataset = data.dataset(chosen)  # ValueError naming the present splits
        images, labels = data.images.get(chosen), data.labels.get(chosen)
        if images is not None and labels is not None:
            # The decoded images as they are: the training pipeline augments and
            # shuffles, and evaluation must neither (two calls, one figure).
            return _array_batches(images, labels, size), tuple(data.class_names)
        if chosen == "train":
            msg = (
                "this DatasetSplits has no decoded training images (data.images['train']) "
                "to evaluate unaugmented; pass (images, labels) arrays instead"
            )
            raise ValueError(msg)
        return _dataset_batches(dataset, batch_size), tuple(data.class_names)
    if isinstance(data, tuple) and len(data) == 2:
        return _array_batches(data[0], data[1], batch_size), None
    if _is_tf_dataset(data):
        return _dataset_batches(data, batch_size), None
    msg = (
        f"data must be a DatasetSplits, a tf.data.Dataset of (images, labels) or a tuple "
        f"(images, labels) of arrays; got {type(data).__name__}"
    )
    raise TypeError(msg)


def _is_tf_dataset(data: Any) -> bool:
    tf = sys.modules.get("tensorflow")  # a Dataset exists only if TensorFlow is imported
    return tf is not None and isinstance(data, tf.data.Dataset)


def _check_batch_size(batch_size: int | None) -> None:
    if batch_size is None:
        return
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        msg = f"batch_size must be a positive integer or None; got {batch_size!r}"
        raise ValueError(msg)


def _array_batches(
    images: Any, labels: Any, batch_size: int | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    images = np.asarray(images)
    labels = np.asarray(labels)
    if len(images) != len(labels):
        msg = f"images and labels must have the same length; got {len(images)} and {len(labels)}"
        raise ValueError(msg)
    size = batch_size or DEFAULT_BATCH_SIZE
    return ((images[i : i + size], labels[i : i + size]) for i in range(0, len(images), size))


def _dataset_batches(
    dataset: tf.data.Dataset, batch_size: int | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    spec = dataset.element_spec
    if not isinstance(spec, (tuple, list)) or len(spec) < 2:
        msg = (
            "the dataset must yield (images, labels) pairs (a third element, sample "
            f"weights, is ignored); its elements are {spec!r}"
        )
        raise ValueError(msg)
    label_rank = spec[1].shape.rank
    batched = label_rank is None or label_rank >= 1
    if not batched:
        dataset = dataset.batch(batch_size or DEFAULT_BATCH_SIZE)
    elif batch_size is not None:
        dataset = dataset.rebatch(batch_size)
    return ((element[0], element[1]) for element in dataset.as_numpy_iterator())


def _scorer(model_or_predictor: Any) -> Any:
    """Return a function mapping a numpy batch of images to a numpy batch of outputs."""
    predict_arrays = getattr(model_or_predictor, "predict_arrays", None)
    if callable(predict_arrays):
        return predict_arrays
    import keras

    model = model_or_predictor
    if not isinstance(model, keras.Model):
        model = getattr(model_or_predictor, "model", None)  # a predictor exposing its model
    if isinstance(model, keras.Model):
        # predict_on_batch runs the model's compiled (tf.function) predict step,
        # cached on the model, with no per-call progress bar or dataset setup.
        return model.predict_on_batch
    msg = (
        "model_or_predictor must be a keras.Model or an object with a "
        "predict_arrays(images) method or a keras.Model .model attribute (a Predictor); "
        f"got {type(model_or_predictor).__name__}"
    )
    raise TypeError(msg)


def _flat_labels(labels: np.ndarray) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 2:
        return np.argmax(array, axis=1)  # one-hot
    if array.ndim == 2 and array.shape[1] == 1:
        return array[:, 0]
    if array.ndim != 1:
        msg = (
            f"labels must have shape (batch,), (batch, 1) or one-hot (batch, 2); got {array.shape}"
        )
        raise ValueError(msg)
    return array


def evaluate(
    model_or_predictor: Any,
    data: EvaluationData,
    *,
    split: str | None = None,
    threshold: float | None = None,
    batch_size: int | None = None,
) -> EvaluationReport:
    """Run a model over labelled images and report its metrics.

    Inference makes one pass over the data, batch by batch: a
    [`Predictor`][cxr_pneumonia.predictor.Predictor] (any object with a
    ``predict_arrays(images) -> probabilities`` method) is called on each
    batch of ``uint8`` arrays; a ``keras.Model`` (or, failing
    ``predict_arrays``, an object's ``.model``) runs its compiled predict
    step (``predict_on_batch``) on each batch. Labels are collected in the same
    pass, so shuffled datasets are fine.

    Model outputs of shape ``(batch,)`` or ``(batch, 1)`` are read as the
    probability of PNEUMONIA, ``(batch, 2)`` as a softmax with NORMAL first.

    Args:
        model_or_predictor: A ``keras.Model`` or a ``Predictor``.
        data: A [`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits] (``split``
            is evaluated), a ``tf.data.Dataset`` of ``(images, labels)``,
            batched or not, or a tuple ``(images, labels)`` of arrays. Images
            must already have the model's input size and color mode.
        split: Which split of a ``DatasetSplits`` to use: ``"train"``,
            ``"validation"``, ``"test"``, or ``"all"`` (every image of every
            split). ``None``: ``"test"`` when the data has one, else
            ``"all"``: a folder without split sub-folders is an evaluation
            set, and every image of it is scored. Ignored for other data.
            The decoded images are scored as they are, in file order:
            evaluation never augments, also for ``"train"``, whose training
            pipeline does.
        threshold: Decision threshold in ``[0, 1]`` (PNEUMONIA when
            ``score >= threshold``). ``None`` uses the predictor's
            ``threshold`` attribute if it has one, else 0.5.
        batch_size: Images per inference batch. ``None`` keeps a batched
            dataset's batches and uses 32 otherwise; a number re-batches.

    Returns:
        The [`EvaluationReport`][cxr_pneumonia.evaluation.report.EvaluationReport].

    Raises:
        ValueError: If the split is absent (the message lists the present
            ones), the data is empty or has labels other than 0/1, the model's
            outputs are not probabilities, or ``threshold``/``batch_size`` is
            out of range.
        TypeError: If ``model_or_predictor`` or ``data`` is of an unsupported type.

    Examples:
        >>> report = evaluate(model, splits, split="test")   # doctest: +SKIP
        >>> report.recall, report.roc_auc                    # doctest: +SKIP
    """
    if threshold is None:
        own = getattr(model_or_predictor, "threshold", None)
        threshold = 0.5 if own is None else float(own)
    threshold = check_threshold(threshold)
    _check_batch_size(batch_size)
    score_batch = _scorer(model_or_predictor)
    batches, data_class_names = _batches(data, split=split, batch_size=batch_size)

    all_labels: list[np.ndarray] = []
    all_scores: list[np.ndarray] = []
    for images, labels in batches:
        flat = _flat_labels(labels)
        if len(flat) == 0:
            continue
        scores = positive_probability(score_batch(images))
        if len(scores) != len(flat):
            msg = f"the model returned {len(scores)} scores for a batch of {len(flat)} images"
            raise ValueError(msg)
        all_labels.append(flat)
        all_scores.append(scores)
    if not all_labels:
        msg = "the data has no examples to evaluate on"
        raise ValueError(msg)

    # Labels follow the package convention (0 NORMAL, 1 PNEUMONIA) whatever a
    # model's output order, so the names come from the data, not the model.
    class_names = data_class_names or CLASS_NAMES
    return build_report(
        np.concatenate(all_labels),
        np.concatenate(all_scores),
        threshold=threshold,
        class_names=class_names,
        stacklevel=3,
    )
