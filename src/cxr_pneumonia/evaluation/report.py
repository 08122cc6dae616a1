"""The evaluation report: [`EvaluationReport`][cxr_pneumonia.evaluation.report.EvaluationReport] and
how it is built from scores."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxr_pneumonia.data.splits import CLASS_NAMES
from cxr_pneumonia.evaluation.calibration import (
    ECE_BINS,
    calibration_bins,
    expected_calibration_error,
)
from cxr_pneumonia.evaluation.inputs import (
    as_labels_and_scores,
    check_probabilities,
    check_threshold,
)
from cxr_pneumonia.evaluation.thresholds import DEFAULT_TARGET_SENSITIVITY, choose_threshold

__all__ = ["EvaluationReport", "build_report"]


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

    Build one with [`evaluate`][cxr_pneumonia.evaluation.scoring.evaluate] (runs the model) or
    [`from_scores`][cxr_pneumonia.evaluation.report.EvaluationReport.from_scores] (from labels and
    scores you already have). The report keeps the raw labels and scores, so it can be
    re-thresholded ([`at_threshold`][cxr_pneumonia.evaluation.report.EvaluationReport.at_threshold])
    or asked for a threshold
    ([`threshold_for`][cxr_pneumonia.evaluation.report.EvaluationReport.threshold_for]) without
    running the model again.

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
            `ECE_BINS` (15) equal-width bins on ``[0, 1]``; ECE is the
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
        return build_report(labels, scores, threshold=threshold, class_names=class_names)

    @property
    def sensitivity(self) -> float:
        """Alias of `recall`: the recall of PNEUMONIA."""
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
            A new [`EvaluationReport`][cxr_pneumonia.evaluation.report.EvaluationReport].

        Raises:
            ValueError: If ``threshold`` is outside ``[0, 1]``.
        """
        return build_report(
            self.labels,
            self.scores,
            threshold=threshold,
            class_names=self.class_names,
            stacklevel=3,
        )

    def threshold_for(self, *, sensitivity: float = DEFAULT_TARGET_SENSITIVITY) -> float:
        """The highest threshold keeping sensitivity >= ``sensitivity`` on these scores.

        See [`choose_threshold`][cxr_pneumonia.evaluation.thresholds.choose_threshold].

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
        """The reliability-diagram bins of these scores (see
        [`calibration_bins`][cxr_pneumonia.evaluation.report.EvaluationReport.calibration_bins]).

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


def build_report(
    labels: Any,
    scores: Any,
    *,
    threshold: float,
    class_names: Sequence[str],
    stacklevel: int = 3,
) -> EvaluationReport:
    """Build the report of ``scores`` against ``labels`` at ``threshold``.

    Args:
        labels: True labels, 0 or 1.
        scores: Probabilities of PNEUMONIA, aligned with ``labels``.
        threshold: Decision threshold in ``[0, 1]`` (positive when ``score >= threshold``).
        class_names: The two class names, NORMAL first.
        stacklevel: ``stacklevel`` of the one-class warning (points at the caller's caller).

    Returns:
        The [`EvaluationReport`][cxr_pneumonia.evaluation.report.EvaluationReport].

    Raises:
        ValueError: If the inputs are malformed or the scores are not probabilities.

    Warns:
        UserWarning: When only one class is present (ROC and PR AUC are NaN).
    """
    from sklearn.metrics import (
        average_precision_score,
        classification_report,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y, s = as_labels_and_scores(labels, scores)
    check_probabilities(s)
    t = check_threshold(threshold)
    names = tuple(str(name) for name in class_names)
    if len(names) != 2:
        msg = f"class_names must have two names (NORMAL first); got {class_names!r}"
        raise ValueError(msg)

    predicted = (s >= t).astype(np.int64)
    confusion = np.asarray(confusion_matrix(y, predicted, labels=[0, 1]), dtype=np.int64)
    (tn, fp), (fn, tp) = confusion.tolist()
    n = len(y)
    # Per class, NORMAL first: the recall of NORMAL is the specificity. zero_division=0
    # reports 0.0 for an empty denominator (e.g. no predicted positive), without a warning.
    precisions, recalls, f1s, _ = precision_recall_fscore_support(
        y, predicted, labels=[0, 1], average=None, zero_division=0
    )
    precision, recall, f1 = float(precisions[1]), float(recalls[1]), float(f1s[1])
    specificity = float(recalls[0])

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
        specificity=specificity,
        f1=f1,
        roc_auc=roc_auc,
        pr_auc=pr_auc,
        brier=float(np.mean((s - y) ** 2)),
        ece=expected_calibration_error(y, s, ECE_BINS),
        confusion_matrix=confusion,
        classification_report=str(text),
        threshold=t,
        n=n,
        labels=y,
        scores=s,
        class_names=(names[0], names[1]),
    )
