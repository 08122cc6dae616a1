"""Evaluate a classifier: :func:`evaluate`, :class:`EvaluationReport`, :func:`choose_threshold`.

Conventions used everywhere in this module:

- Labels are ``0`` (NORMAL) and ``1`` (PNEUMONIA); a *score* is the model's
  probability of PNEUMONIA, in ``[0, 1]``.
- A prediction is positive (PNEUMONIA) when ``score >= threshold``. The same
  ``>=`` is used by :func:`evaluate`, :meth:`EvaluationReport.at_threshold` and
  :func:`choose_threshold`, so the threshold :func:`choose_threshold` returns
  really gives the promised sensitivity on the scores it was chosen on.
- Sensitivity is the recall of PNEUMONIA, specificity the recall of NORMAL.

Example:
    >>> report = evaluate(model, splits, split="test")            # doctest: +SKIP
    >>> t = report.threshold_for(sensitivity=0.97)                  # doctest: +SKIP
    >>> print(report.at_threshold(t).to_markdown())                 # doctest: +SKIP

scikit-learn and TensorFlow are imported only when a function needs them, and
matplotlib never (figures are in :mod:`cxr_pneumonia.plots`).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from cxr_pneumonia.data.splits import CLASS_NAMES, DatasetSplits

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "DEFAULT_TARGET_SENSITIVITY",
    "ECE_BINS",
    "EvaluationData",
    "EvaluationReport",
    "calibration_bins",
    "choose_threshold",
    "evaluate",
]

DEFAULT_TARGET_SENSITIVITY = 0.97
"""Default target of :func:`choose_threshold`: missing a sick child is the costly error."""

ECE_BINS = 15
"""Number of equal-width probability bins of the expected calibration error."""

DEFAULT_BATCH_SIZE = 32

EvaluationData = Union[DatasetSplits, "tf.data.Dataset", tuple[np.ndarray, np.ndarray]]
"""What :func:`evaluate` accepts as data."""


# --------------------------------------------------------------------------- #
# Input checks and metrics on (labels, scores)
# --------------------------------------------------------------------------- #


def _as_labels_and_scores(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert ``labels`` and ``scores`` to 1-D ``int64`` and ``float64`` arrays."""
    labels_array = np.asarray(labels)
    scores_array = np.asarray(scores, dtype=np.float64)
    if labels_array.ndim != 1 or scores_array.ndim != 1:
        msg = (
            f"labels and scores must be 1-D; got shapes {labels_array.shape} and "
            f"{scores_array.shape}"
        )
        raise ValueError(msg)
    if len(labels_array) != len(scores_array):
        msg = (
            f"labels and scores must have the same length; got {len(labels_array)} labels "
            f"and {len(scores_array)} scores"
        )
        raise ValueError(msg)
    if len(labels_array) == 0:
        msg = "labels and scores are empty; at least one example is needed"
        raise ValueError(msg)
    if labels_array.dtype == bool:
        labels_array = labels_array.astype(np.int64)
    valid = np.isin(labels_array, (0, 1))
    if not np.all(valid):
        bad = sorted({repr(v) for v in labels_array[~valid].tolist()})[:5]
        msg = f"labels must be 0 (NORMAL) or 1 (PNEUMONIA); got {', '.join(bad)}"
        raise ValueError(msg)
    if not np.all(np.isfinite(scores_array)):
        count = int(np.count_nonzero(~np.isfinite(scores_array)))
        msg = f"scores must be finite; {count} of {len(scores_array)} are NaN or infinite"
        raise ValueError(msg)
    return labels_array.astype(np.int64), scores_array


def _check_probabilities(scores: np.ndarray) -> None:
    low, high = float(scores.min()), float(scores.max())
    if low < 0.0 or high > 1.0:
        msg = (
            f"scores must be probabilities in [0, 1]; got values from {low:g} to {high:g}. "
            "Does the model end with a sigmoid (or softmax) activation?"
        )
        raise ValueError(msg)


def _check_threshold(threshold: float) -> float:
    value = float(threshold)
    if not 0.0 <= value <= 1.0:
        msg = f"threshold must be in [0, 1]; got {threshold!r}"
        raise ValueError(msg)
    return value


def _ratio(numerator: int, denominator: int) -> float:
    """``numerator / denominator``, or 0.0 for a zero denominator (``zero_division=0``)."""
    return numerator / denominator if denominator else 0.0


def calibration_bins(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    *,
    n_bins: int = ECE_BINS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group scores into equal-width probability bins, as a reliability diagram does.

    Bin ``b`` holds the scores in ``[b / n_bins, (b + 1) / n_bins)``; the last
    bin also holds ``1.0``.

    Args:
        labels: True labels, 0 or 1.
        scores: Predicted probabilities of PNEUMONIA, in ``[0, 1]``.
        n_bins: Number of bins.

    Returns:
        ``(mean_score, fraction_positive, count)``, three arrays of length
        ``n_bins``; the first two are NaN for empty bins.

    Raises:
        ValueError: If the inputs are malformed, the scores are not in
            ``[0, 1]`` or ``n_bins < 1``.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        msg = f"n_bins must be a positive integer; got {n_bins!r}"
        raise ValueError(msg)
    y, s = _as_labels_and_scores(labels, scores)
    _check_probabilities(s)
    index = np.minimum((s * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    score_sum = np.bincount(index, weights=s, minlength=n_bins)
    positive_sum = np.bincount(index, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.where(count > 0, score_sum / count, np.nan)
        fraction_positive = np.where(count > 0, positive_sum / count, np.nan)
    return mean_score, fraction_positive, count


def _expected_calibration_error(labels: np.ndarray, scores: np.ndarray, n_bins: int) -> float:
    mean_score, fraction_positive, count = calibration_bins(labels, scores, n_bins=n_bins)
    filled = count > 0
    gaps = np.abs(fraction_positive[filled] - mean_score[filled])
    return float(np.sum(count[filled] * gaps) / len(labels))


def choose_threshold(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    *,
    target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
) -> float:
    """Return the highest threshold that keeps sensitivity at or above a target.

    A prediction is positive when ``score >= threshold``. Among all thresholds
    whose sensitivity (recall of PNEUMONIA) on these scores is at least
    ``target_sensitivity``, the highest is returned, which is the one with the
    best specificity. It is always one of the positives' scores: the
    ``k``-th highest, where ``k`` is the fewest positives whose share reaches the
    target. Ties are safe: positives tied at the returned score are all
    predicted positive, so the sensitivity may exceed the target, never fall
    short of it.

    The notebooks chose recall as the metric that matters: missing a sick child
    is the costly error. Choose the threshold on a validation split and report
    it on the test split; on the scores it was chosen on it is optimistic.

    Args:
        labels: True labels, 0 (NORMAL) or 1 (PNEUMONIA).
        scores: Predicted probabilities (or any scores where higher means more
            likely PNEUMONIA), aligned with ``labels``.
        target_sensitivity: The minimum sensitivity, in ``(0, 1]``.

    Returns:
        The threshold, a float.

    Raises:
        ValueError: If ``labels`` and ``scores`` differ in length, are empty or
            not 1-D, a label is not 0 or 1, a score is not finite, the target
            is not in ``(0, 1]``, or there is no positive example.

    Example:
        >>> choose_threshold([0, 1, 1, 1, 1], [0.1, 0.2, 0.6, 0.8, 0.9], target_sensitivity=0.75)
        0.6
    """
    target = float(target_sensitivity)
    if not 0.0 < target <= 1.0:
        msg = f"target_sensitivity must be in (0, 1]; got {target_sensitivity!r}"
        raise ValueError(msg)
    y, s = _as_labels_and_scores(labels, scores)
    positives = np.sort(s[y == 1])[::-1]
    n_positive = len(positives)
    if n_positive == 0:
        msg = (
            f"no positive (PNEUMONIA, label 1) example among {len(y)}; sensitivity is "
            "undefined, so no threshold can be chosen. Use data that contains both classes."
        )
        raise ValueError(msg)
    # Sensitivity when the k highest positives are caught is k / P, computed
    # exactly as the report computes it (tp / P), so the two always agree.
    reached = np.arange(1, n_positive + 1) / n_positive >= target
    k = int(np.argmax(reached)) + 1
    return float(positives[k - 1])


# --------------------------------------------------------------------------- #
# The report
# --------------------------------------------------------------------------- #

_METRIC_ROWS: tuple[tuple[str, str], ...] = (
    ("accuracy", "Accuracy"),
    ("precision", "Precision (PPV)"),
    ("recall", "Recall (sensitivity)"),
    ("specificity", "Specificity"),
    ("f1", "F1"),
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC (average precision)"),
    ("brier", "Brier score"),
    ("ece", f"Expected calibration error ({ECE_BINS} bins)"),
)


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True, eq=False)
class EvaluationReport:
    """The metrics of a binary classifier on one data set, at one threshold.

    Build one with :func:`evaluate` (runs the model) or
    :meth:`from_scores` (from labels and scores you already have). The report
    keeps the raw labels and scores, so it can be re-thresholded
    (:meth:`at_threshold`) or asked for a threshold (:meth:`threshold_for`)
    without running the model again.

    Threshold-dependent metrics (accuracy, precision, recall, specificity, F1,
    the confusion matrix, the classification report) count a prediction as
    PNEUMONIA when ``score >= threshold``. A ratio whose denominator is zero
    (e.g. precision when nothing is predicted positive) is ``0.0``, as in
    scikit-learn's ``zero_division=0``. When only one class is present the
    AUCs are undefined: they are NaN and a warning is issued.

    Attributes:
        accuracy: Share of correct predictions.
        precision: Positive predictive value, ``TP / (TP + FP)``.
        recall: Sensitivity, the recall of PNEUMONIA, ``TP / (TP + FN)``.
        specificity: The recall of NORMAL, ``TN / (TN + FP)``.
        f1: Harmonic mean of precision and recall.
        roc_auc: Area under the ROC curve (threshold-free), NaN with one class.
        pr_auc: Average precision (scikit-learn's step-wise area under the
            precision-recall curve), NaN with one class.
        brier: Brier score, the mean of ``(score - label) ** 2`` (lower is better).
        ece: Expected calibration error: scores are put into
            :data:`ECE_BINS` (15) equal-width bins on ``[0, 1]``; ECE is the
            mean over bins, weighted by bin size, of
            ``|fraction of positives - mean score|``. Computed on the
            probability of PNEUMONIA (not on the top-label confidence).
        confusion_matrix: ``int64`` array of shape ``(2, 2)``, rows the true
            class, columns the predicted class, NORMAL first:
            ``[[TN, FP], [FN, TP]]``.
        classification_report: scikit-learn's ``classification_report`` text.
        threshold: The decision threshold used.
        n: Number of examples.
        labels: True labels, ``int64`` array of shape ``(n,)`` (read-only).
        scores: Probabilities of PNEUMONIA, ``float64`` array ``(n,)`` (read-only).
        class_names: Class names in label order.
    """

    accuracy: float
    precision: float
    recall: float
    specificity: float
    f1: float
    roc_auc: float
    pr_auc: float
    brier: float
    ece: float
    confusion_matrix: np.ndarray
    classification_report: str = field(repr=False)
    threshold: float
    n: int
    labels: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)
    class_names: tuple[str, str] = CLASS_NAMES

    @classmethod
    def from_scores(
        cls,
        labels: Sequence[int] | np.ndarray,
        scores: Sequence[float] | np.ndarray,
        *,
        threshold: float = 0.5,
        class_names: Sequence[str] = CLASS_NAMES,
    ) -> EvaluationReport:
        """Compute a report from true labels and predicted probabilities.

        Args:
            labels: True labels, 0 (NORMAL) or 1 (PNEUMONIA).
            scores: Probabilities of PNEUMONIA in ``[0, 1]``, aligned with ``labels``.
            threshold: Decision threshold in ``[0, 1]``; PNEUMONIA when
                ``score >= threshold``.
            class_names: The two class names in label order.

        Returns:
            The report.

        Raises:
            ValueError: If the labels or scores are malformed (lengths differ,
                empty, labels not 0/1, scores not finite or outside
                ``[0, 1]``), the threshold is outside ``[0, 1]`` or
                ``class_names`` does not have two names.
        """
        return _build_report(labels, scores, threshold=threshold, class_names=class_names)

    @property
    def sensitivity(self) -> float:
        """Alias of :attr:`recall`: the recall of PNEUMONIA."""
        return self.recall

    @property
    def n_positive(self) -> int:
        """Number of PNEUMONIA (label 1) examples."""
        return int(np.count_nonzero(self.labels == 1))

    @property
    def n_negative(self) -> int:
        """Number of NORMAL (label 0) examples."""
        return self.n - self.n_positive

    def at_threshold(self, threshold: float) -> EvaluationReport:
        """Return a new report on the same labels and scores at another threshold.

        The model is not run again.

        Args:
            threshold: Decision threshold in ``[0, 1]``.

        Returns:
            A new :class:`EvaluationReport`.

        Raises:
            ValueError: If ``threshold`` is outside ``[0, 1]``.
        """
        return _build_report(
            self.labels,
            self.scores,
            threshold=threshold,
            class_names=self.class_names,
            stacklevel=3,
        )

    def threshold_for(self, *, sensitivity: float = DEFAULT_TARGET_SENSITIVITY) -> float:
        """The highest threshold keeping sensitivity >= ``sensitivity`` on these scores.

        See :func:`choose_threshold`.

        Args:
            sensitivity: The target sensitivity, in ``(0, 1]``.

        Returns:
            The threshold.

        Raises:
            ValueError: If the target is not in ``(0, 1]`` or there is no
                PNEUMONIA example.
        """
        return choose_threshold(self.labels, self.scores, target_sensitivity=sensitivity)

    def calibration_bins(self, n_bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The reliability-diagram bins of these scores (see :func:`calibration_bins`).

        Args:
            n_bins: Number of equal-width bins.

        Returns:
            ``(mean_score, fraction_positive, count)``, NaN for empty bins.
        """
        return calibration_bins(self.labels, self.scores, n_bins=n_bins)

    def to_dict(self, *, include_scores: bool = True) -> dict[str, Any]:
        """A JSON-serialisable dictionary of the report.

        Args:
            include_scores: Whether to include the raw ``labels`` and ``scores``
                lists (``n`` entries each).

        Returns:
            A dict of plain Python floats, ints, strings and lists; undefined
            metrics (NaN AUCs) become ``None`` so ``json.dumps`` gives strict JSON.
        """
        result: dict[str, Any] = {
            "n": self.n,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "threshold": float(self.threshold),
            "class_names": list(self.class_names),
        }
        for name, _ in _METRIC_ROWS:
            result[name] = _json_float(getattr(self, name))
        result["confusion_matrix"] = self.confusion_matrix.tolist()
        result["classification_report"] = self.classification_report
        if include_scores:
            result["labels"] = self.labels.tolist()
            result["scores"] = self.scores.tolist()
        return result

    def to_markdown(self) -> str:
        """A readable Markdown summary: a metrics table and the confusion matrix.

        Returns:
            Markdown text.
        """
        negative, positive = self.class_names
        lines = [
            f"**{self.n} images** ({self.n_positive} {positive}, {self.n_negative} {negative}), "
            f"threshold {self.threshold:.4f} ({positive} when score >= threshold)",
            "",
            "| Metric | Value |",
            "|:--|--:|",
        ]
        for name, title in _METRIC_ROWS:
            value = getattr(self, name)
            lines.append(f"| {title} | {'n/a' if math.isnan(value) else f'{value:.4f}'} |")
        (tn, fp), (fn, tp) = self.confusion_matrix.tolist()
        lines += [
            "",
            "| true \\ predicted | " + " | ".join(self.class_names) + " |",
            "|:--|--:|--:|",
            f"| {negative} | {tn} | {fp} |",
            f"| {positive} | {fn} | {tp} |",
        ]
        return "\n".join(lines)

    def to_text(self) -> str:
        """The summary as plain text: aligned columns, no Markdown markup.

        Returns:
            Text for a log file or a pipe.
        """
        negative, positive = self.class_names
        rows = [
            (title, "n/a" if math.isnan(getattr(self, name)) else f"{getattr(self, name):.4f}")
            for name, title in _METRIC_ROWS
        ]
        width = max(len(title) for title, _ in rows)
        lines = [self._headline(), ""]
        lines += [f"  {title.ljust(width)}  {value:>6}" for title, value in rows]
        (tn, fp), (fn, tp) = self.confusion_matrix.tolist()
        names = [negative, positive]
        cells = [[str(tn), str(fp)], [str(fn), str(tp)]]
        column = max(len(name) for name in [*names, *(c for row in cells for c in row)])
        label = max(len("true \\ predicted"), *(len(name) for name in names))
        lines += [
            "",
            "  "
            + "true \\ predicted".ljust(label)
            + "".join(f"  {name:>{column}}" for name in names),
        ]
        for name, row in zip(names, cells, strict=True):
            lines.append("  " + name.ljust(label) + "".join(f"  {c:>{column}}" for c in row))
        return "\n".join(lines)

    def _headline(self) -> str:
        negative, positive = self.class_names
        return (
            f"{self.n} images ({self.n_positive} {positive}, {self.n_negative} {negative}), "
            f"threshold {self.threshold:.4f} ({positive} when score >= threshold)"
        )

    def __rich__(self) -> Any:
        """A terminal rendering (``rich.console.Console().print(report)``): two tables."""
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        negative, positive = self.class_names
        metrics = Table(box=box.SIMPLE_HEAD)
        metrics.add_column("metric")
        metrics.add_column("value", justify="right")
        for name, title in _METRIC_ROWS:
            value = getattr(self, name)
            metrics.add_row(title, "n/a" if math.isnan(value) else f"{value:.4f}")
        (tn, fp), (fn, tp) = self.confusion_matrix.tolist()
        confusion = Table(box=box.SIMPLE_HEAD)
        confusion.add_column("true \\ predicted")
        confusion.add_column(negative, justify="right")
        confusion.add_column(positive, justify="right")
        confusion.add_row(negative, str(tn), str(fp))
        confusion.add_row(positive, str(fn), str(tp))
        return Group(Text(self._headline(), style="bold"), metrics, confusion)

    def __repr__(self) -> str:
        (tn, fp), (fn, tp) = self.confusion_matrix.tolist()
        figures = ", ".join(
            f"{name}={getattr(self, name):.4f}"
            for name in ("accuracy", "recall", "specificity", "roc_auc")
        )
        return (
            f"EvaluationReport(n={self.n}, threshold={self.threshold:.4f}, {figures}, "
            f"confusion_matrix=[[{tn}, {fp}], [{fn}, {tp}]])"
        )

    def __str__(self) -> str:
        return self.to_markdown()


def _build_report(
    labels: Any,
    scores: Any,
    *,
    threshold: float,
    class_names: Sequence[str],
    stacklevel: int = 3,
) -> EvaluationReport:
    from sklearn.metrics import average_precision_score, classification_report, roc_auc_score

    y, s = _as_labels_and_scores(labels, scores)
    _check_probabilities(s)
    t = _check_threshold(threshold)
    names = tuple(str(name) for name in class_names)
    if len(names) != 2:
        msg = f"class_names must have two names (NORMAL first); got {class_names!r}"
        raise ValueError(msg)

    predicted = (s >= t).astype(np.int64)
    tp = int(np.count_nonzero((predicted == 1) & (y == 1)))
    tn = int(np.count_nonzero((predicted == 0) & (y == 0)))
    fp = int(np.count_nonzero((predicted == 1) & (y == 0)))
    fn = int(np.count_nonzero((predicted == 0) & (y == 1)))
    n = len(y)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)

    if tp + fn == 0 or tn + fp == 0:
        present = names[1] if tn + fp == 0 else names[0]
        warnings.warn(
            f"only one class ({present}) among the {n} labels: ROC AUC and PR AUC are "
            "undefined (NaN), and sensitivity or specificity is reported as 0.0",
            UserWarning,
            stacklevel=stacklevel,
        )
        roc_auc = pr_auc = math.nan
    else:
        roc_auc = float(roc_auc_score(y, s))
        pr_auc = float(average_precision_score(y, s))

    confusion = np.array([[tn, fp], [fn, tp]], dtype=np.int64)
    confusion.setflags(write=False)
    y = y.copy()
    s = s.copy()
    y.setflags(write=False)
    s.setflags(write=False)
    text = classification_report(
        y, predicted, labels=[0, 1], target_names=list(names), digits=4, zero_division=0
    )
    return EvaluationReport(
        accuracy=(tp + tn) / n,
        precision=precision,
        recall=recall,
        specificity=_ratio(tn, tn + fp),
        f1=f1,
        roc_auc=roc_auc,
        pr_auc=pr_auc,
        brier=float(np.mean((s - y) ** 2)),
        ece=_expected_calibration_error(y, s, ECE_BINS),
        confusion_matrix=confusion,
        classification_report=str(text),
        threshold=t,
        n=n,
        labels=y,
        scores=s,
        class_names=(names[0], names[1]),
    )


# --------------------------------------------------------------------------- #
# Running the model
# --------------------------------------------------------------------------- #


def _batches(
    data: Any, *, split: str, batch_size: int | None
) -> tuple[Iterator[tuple[np.ndarray, np.ndarray]], tuple[str, ...] | None]:
    """Turn ``data`` into an iterator of ``(images, labels)`` numpy batches.

    Returns the iterator and the data's class names, if it knows them.
    """
    if isinstance(data, DatasetSplits):
        dataset = data.dataset(split)  # ValueError naming the present splits
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


def _positive_probability(outputs: Any) -> np.ndarray:
    """Reduce a batch of model outputs to the probability of PNEUMONIA, shape ``(batch,)``."""
    if isinstance(outputs, (dict, list, tuple)):
        msg = f"the model must have one output; got {type(outputs).__name__} of outputs"
        raise ValueError(msg)
    array = np.asarray(outputs, dtype=np.float64)
    if array.ndim == 1:
        return array
    if array.ndim == 2 and array.shape[1] == 1:
        return array[:, 0]
    if array.ndim == 2 and array.shape[1] == 2:
        return array[:, 1]  # softmax over (NORMAL, PNEUMONIA)
    msg = (
        "the model output must have shape (batch,), (batch, 1) (sigmoid) or (batch, 2) "
        f"(softmax, NORMAL first); got {array.shape}"
    )
    raise ValueError(msg)


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
    split: str = "test",
    threshold: float | None = None,
    batch_size: int | None = None,
) -> EvaluationReport:
    """Run a model over labelled images and report its metrics.

    Inference makes one pass over the data, batch by batch: a
    :class:`~cxr_pneumonia.Predictor` (any object with a
    ``predict_arrays(images) -> probabilities`` method) is called on each
    batch of ``uint8`` arrays; a ``keras.Model`` (or, failing
    ``predict_arrays``, an object's ``.model``) runs its compiled predict
    step (``predict_on_batch``) on each batch. Labels are collected in the same
    pass, so shuffled datasets are fine.

    Model outputs of shape ``(batch,)`` or ``(batch, 1)`` are read as the
    probability of PNEUMONIA, ``(batch, 2)`` as a softmax with NORMAL first.

    Args:
        model_or_predictor: A ``keras.Model`` or a ``Predictor``.
        data: A :class:`~cxr_pneumonia.data.splits.DatasetSplits` (``split``
            is evaluated), a ``tf.data.Dataset`` of ``(images, labels)``,
            batched or not, or a tuple ``(images, labels)`` of arrays. Images
            must already have the model's input size and color mode.
        split: Which split of a ``DatasetSplits`` to use: ``"train"``,
            ``"validation"`` or ``"test"``. Ignored for other data.
        threshold: Decision threshold in ``[0, 1]`` (PNEUMONIA when
            ``score >= threshold``). ``None`` uses the predictor's
            ``threshold`` attribute if it has one, else 0.5.
        batch_size: Images per inference batch. ``None`` keeps a batched
            dataset's batches and uses 32 otherwise; a number re-batches.

    Returns:
        The :class:`EvaluationReport`.

    Raises:
        ValueError: If the split is absent (the message lists the present
            ones), the data is empty or has labels other than 0/1, the model's
            outputs are not probabilities, or ``threshold``/``batch_size`` is
            out of range.
        TypeError: If ``model_or_predictor`` or ``data`` is of an unsupported type.

    Example:
        >>> report = evaluate(model, splits, split="test")   # doctest: +SKIP
        >>> report.recall, report.roc_auc                    # doctest: +SKIP
    """
    if threshold is None:
        own = getattr(model_or_predictor, "threshold", None)
        threshold = 0.5 if own is None else float(own)
    threshold = _check_threshold(threshold)
    _check_batch_size(batch_size)
    score_batch = _scorer(model_or_predictor)
    batches, data_class_names = _batches(data, split=split, batch_size=batch_size)

    all_labels: list[np.ndarray] = []
    all_scores: list[np.ndarray] = []
    for images, labels in batches:
        flat = _flat_labels(labels)
        if len(flat) == 0:
            continue
        scores = _positive_probability(score_batch(images))
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
    return _build_report(
        np.concatenate(all_labels),
        np.concatenate(all_scores),
        threshold=threshold,
        class_names=class_names,
        stacklevel=3,
    )
