"""How a model holds up under acquisition shifts:
[`shift_report`][cxr_pneumonia.robustness.shift_report],
[`ShiftReport`][cxr_pneumonia.robustness.ShiftReport].

A validation split drawn from the training distribution says little about
images from another scanner or hospital: a model can score ROC AUC 0.998 there
and lose ten points of specificity on a test set whose images are a little
flatter or framed a little tighter. [`shift_report`][cxr_pneumonia.robustness.shift_report] scores a
model on a labelled split under each shift of [`cxr_pneumonia.shifts`][cxr_pneumonia.shifts] at a
few strengths: ROC AUC, and sensitivity and specificity at the model's decision threshold (the
threshold does not move with the images, as in deployment), beside the unshifted baseline, and picks
the worst case of each metric.

The split is decoded once (a [`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits] already
holds its ``uint8`` pixels), each shift is applied to those arrays, and the
model runs over them in batches through [`evaluate`][cxr_pneumonia.evaluation.scoring.evaluate].

A report keeps every probability it scored, so the expensive part runs once per
model: [`at_threshold`][cxr_pneumonia.robustness.ShiftReport.at_threshold] re-reads it at
another threshold, and [`average_shift_reports`][cxr_pneumonia.robustness.average_shift_reports]
gives the report of the mean of several models' probabilities (what their
[`ensemble`][cxr_pneumonia.ensembles.ensemble] scores) without running any of them again; choosing
ensemble members this way takes seconds. ``to_json(include_scores=True)`` and
[`from_dict`][cxr_pneumonia.robustness.ShiftReport.from_dict] keep the probabilities on disk.

This module computes the reports and is their public entry point. Their renderings (Markdown,
plain text, the ``rich`` table, and the comparison table of
[`compare_shift_reports`][cxr_pneumonia.robustness.compare_shift_reports]) live in the private
``_robustness_render``, which the methods and functions here call; it does not import this module.

Examples:
    >>> predictor = Predictor.load("bundles/cnn")                       # doctest: +SKIP
    >>> data = load_dataset(data_dir="chest_xray", image_size=predictor.image_size,
    ...                     color_mode=predictor.color_mode)             # doctest: +SKIP
    >>> report = shift_report(predictor, data, split="validation")      # doctest: +SKIP
    >>> report.worst("specificity")                                     # doctest: +SKIP
    ShiftResult(shift='contrast', strength=0.6, roc_auc=0.99, sensitivity=0.99, ...)
    >>> print(report.to_markdown())                                     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxr_pneumonia._robustness_render import (
    comparison_table,
    format_value,
    markdown,
    plain_text,
    rich_renderable,
)
from cxr_pneumonia.data.splits import CLASS_NAMES, DatasetSplits
from cxr_pneumonia.evaluation import EvaluationReport, choose_threshold, evaluate
from cxr_pneumonia.shifts import DEFAULT_SHIFTS, get_shift

__all__ = [
    "BASELINE",
    "SHIFT_METRICS",
    "ShiftReport",
    "ShiftResult",
    "average_shift_reports",
    "compare_shift_reports",
    "shift_report",
]

logger = logging.getLogger("cxr_pneumonia")

BASELINE = "none"
"""The ``shift`` name of the unshifted row."""

SHIFT_METRICS: tuple[str, ...] = ("roc_auc", "sensitivity", "specificity", "accuracy")
"""The metrics of every row; the worst case is reported for each."""


@dataclass(frozen=True)
class ShiftResult:
    """The metrics of a model on one shifted copy of a split.

    Attributes:
        shift: The shift's name in [`SHIFTS`][cxr_pneumonia.shifts.SHIFTS], or
            ``"none"`` for the unshifted baseline.
        strength: The shift's strength (the identity for the baseline).
        roc_auc: Area under the ROC curve (NaN with one class).
        sensitivity: Recall of PNEUMONIA at the report's threshold.
        specificity: Recall of NORMAL at the report's threshold.
        accuracy: Share of correct predictions at the report's threshold.
        n: Number of images.
    """

    shift: str
    strength: float
    roc_auc: float
    sensitivity: float
    specificity: float
    accuracy: float
    n: int

    @property
    def label(self) -> str:
        """``"shift strength"``, e.g. ``"contrast 0.6"``, or ``"none"`` for the baseline."""
        return BASELINE if self.shift == BASELINE else f"{self.shift} {self.strength:g}"

    def to_dict(self) -> dict[str, Any]:
        """The row as plain JSON types (NaN becomes ``None``).

        Returns:
            A dict.
        """
        result: dict[str, Any] = {"shift": self.shift, "strength": self.strength}
        result.update({name: _json_float(getattr(self, name)) for name in SHIFT_METRICS})
        result["n"] = self.n
        return result

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ShiftResult:
        """The row from [`to_dict`][cxr_pneumonia.robustness.ShiftResult.to_dict]'s output.

        Args:
            record: A dict as ``to_dict`` writes it (``None`` metrics become NaN).

        Returns:
            The row.

        Raises:
            ValueError: If a key is missing or a value is not a number.
        """
        try:
            metrics = {
                name: math.nan if record[name] is None else float(record[name])
                for name in SHIFT_METRICS
            }
            return cls(
                shift=str(record["shift"]),
                strength=float(record["strength"]),
                n=int(record["n"]),
                **metrics,
            )
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"not a shift report row ({exc!r}): {dict(record)!r}"
            raise ValueError(msg) from exc

    @classmethod
    def from_scores(
        cls,
        shift: str,
        strength: float,
        labels: np.ndarray,
        scores: np.ndarray,
        threshold: float,
    ) -> ShiftResult:
        """The row of one shifted copy from its labels and probabilities.

        Args:
            shift: The shift's name, or ``"none"``.
            strength: Its strength.
            labels: True labels, 0 or 1.
            scores: Probabilities of PNEUMONIA, aligned with ``labels``.
            threshold: The decision threshold.

        Returns:
            The row.

        Raises:
            ValueError: If the labels or scores are malformed (see
                [`EvaluationReport.from_scores`][cxr_pneumonia.evaluation.report.EvaluationReport.from_scores]).
        """
        return cls.from_report(
            shift, strength, EvaluationReport.from_scores(labels, scores, threshold=threshold)
        )

    @classmethod
    def from_report(cls, shift: str, strength: float, report: EvaluationReport) -> ShiftResult:
        """The row of one shifted copy from its evaluation report.

        Args:
            shift: The shift's name, or ``"none"``.
            strength: Its strength.
            report: The [`EvaluationReport`][cxr_pneumonia.evaluation.report.EvaluationReport]
                of the model on the shifted copy.

        Returns:
            The row.
        """
        return cls(
            shift=shift,
            strength=strength,
            roc_auc=report.roc_auc,
            sensitivity=report.recall,
            specificity=report.specificity,
            accuracy=report.accuracy,
            n=report.n,
        )


@dataclass(frozen=True)
class ShiftReport:
    """A model's metrics on a split under controlled acquisition shifts.

    Build one with [`shift_report`][cxr_pneumonia.robustness.shift_report].

    Attributes:
        baseline: The metrics on the unshifted images.
        rows: One [`ShiftResult`][cxr_pneumonia.robustness.ShiftResult] per (shift, strength), in
            the order asked for.
        threshold: The decision threshold of sensitivity and specificity.
        split: The split scored (``None`` for arrays given directly).
        seed: Seed of the random shifts (noise).
        source: The data set's name or folder, if known.
        class_names: Class names in label order.
        seconds: Wall time of the whole report.
        labels: The true labels, 0 or 1, when the report keeps its probabilities.
        scores: The probabilities of PNEUMONIA, the baseline's first and then one
            array per row (aligned with ``labels``), or ``None`` for a report
            read back without them.
    """

    baseline: ShiftResult
    rows: tuple[ShiftResult, ...]
    threshold: float
    split: str | None = None
    seed: int = 0
    source: str | None = None
    class_names: tuple[str, str] = CLASS_NAMES
    seconds: float = field(default=0.0, compare=False)
    labels: np.ndarray | None = field(default=None, compare=False, repr=False)
    scores: tuple[np.ndarray, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def n(self) -> int:
        """Number of images scored per row."""
        return self.baseline.n

    @property
    def shifts(self) -> tuple[str, ...]:
        """The shift names present, in row order."""
        return tuple(dict.fromkeys(row.shift for row in self.rows))

    def rows_for(self, shift: str) -> tuple[ShiftResult, ...]:
        """The rows of one shift, in strength order as asked for.

        Args:
            shift: A shift name present in the report.

        Returns:
            Its rows.

        Raises:
            ValueError: If the report has no row of that shift.
        """
        found = tuple(row for row in self.rows if row.shift == shift)
        if not found:
            msg = f"the report has no {shift!r} rows; it has: {', '.join(self.shifts) or 'none'}"
            raise ValueError(msg)
        return found

    def worst(self, metric: str = "specificity") -> ShiftResult:
        """The shifted row with the lowest value of ``metric`` (the first of ties).

        Rows where the metric is undefined (NaN) are skipped; when every row
        is, or the report has no shifted rows, the baseline is returned.

        Args:
            metric: One of [`SHIFT_METRICS`][cxr_pneumonia.robustness.SHIFT_METRICS].

        Returns:
            The worst row.

        Raises:
            ValueError: For an unknown metric.
        """
        _check_metric(metric)
        defined = [row for row in self.rows if not math.isnan(getattr(row, metric))]
        if not defined:
            return self.baseline
        return min(defined, key=lambda row: getattr(row, metric))

    @property
    def worst_case(self) -> dict[str, ShiftResult]:
        """``{metric: worst row}`` for every metric of
        [`SHIFT_METRICS`][cxr_pneumonia.robustness.SHIFT_METRICS]."""
        return {metric: self.worst(metric) for metric in SHIFT_METRICS}

    def mean(self, metric: str = "specificity") -> float:
        """The mean of ``metric`` over the shifted rows (NaN rows skipped).

        Steadier than [`worst`][cxr_pneumonia.robustness.ShiftReport.worst] for comparing models:
        one fragile shift decides the worst case, every shift counts in the mean.

        Args:
            metric: One of [`SHIFT_METRICS`][cxr_pneumonia.robustness.SHIFT_METRICS].

        Returns:
            The mean, or the baseline's value when no row defines it.

        Raises:
            ValueError: For an unknown metric.
        """
        _check_metric(metric)
        values = [getattr(row, metric) for row in self.rows]
        defined = [v for v in values if not math.isnan(v)]
        return float(np.mean(defined)) if defined else float(getattr(self.baseline, metric))

    def at_threshold(self, threshold: float) -> ShiftReport:
        """The same report read at another decision threshold, from its probabilities.

        ROC AUC does not change; sensitivity, specificity and accuracy do. No
        model runs.

        Args:
            threshold: The new threshold, in ``[0, 1]``.

        Returns:
            A new report.

        Raises:
            ValueError: If the report has no probabilities (read back from
                JSON written without them) or the threshold is outside ``[0, 1]``.
        """
        labels, scores = self._probabilities()
        plan = [(self.baseline.shift, self.baseline.strength)]
        plan += [(row.shift, row.strength) for row in self.rows]
        results = [
            ShiftResult.from_scores(name, strength, labels, values, threshold)
            for (name, strength), values in zip(plan, scores, strict=True)
        ]
        return dataclasses.replace(
            self, baseline=results[0], rows=tuple(results[1:]), threshold=float(threshold)
        )

    def _probabilities(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        if self.labels is None or self.scores is None:
            msg = (
                "this shift report has no probabilities (it was read from JSON written without "
                "them); make it with shift_report(...), or save it with "
                "to_json(include_scores=True)"
            )
            raise ValueError(msg)
        return self.labels, self.scores

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ShiftReport:
        """The report from [`to_dict`][cxr_pneumonia.robustness.ShiftReport.to_dict]'s output
        (or its JSON, parsed).

        Args:
            record: A dict as ``to_dict`` writes it; its probabilities come back
                when it was written with ``include_scores=True``.

        Returns:
            The report.

        Raises:
            ValueError: If the dict is not a shift report, or its probabilities
                do not match its rows.
        """
        try:
            baseline = ShiftResult.from_dict(record["baseline"])
            rows = tuple(ShiftResult.from_dict(row) for row in record["rows"])
            names = record.get("class_names") or CLASS_NAMES
            report = cls(
                baseline=baseline,
                rows=rows,
                threshold=float(record["threshold"]),
                split=record.get("split"),
                seed=int(record.get("seed", 0)),
                source=record.get("source"),
                class_names=(str(names[0]), str(names[1])),
                seconds=float(record.get("seconds", 0.0)),
            )
        except (KeyError, TypeError, IndexError) as exc:
            msg = f"not a shift report ({exc!r}); give the dict ShiftReport.to_dict() writes"
            raise ValueError(msg) from exc
        if record.get("scores") is None:
            return report
        labels = np.asarray(record.get("labels"), dtype=np.int64)
        scores = tuple(np.asarray(values, dtype=np.float64) for values in record["scores"])
        if len(scores) != 1 + len(rows) or any(len(v) != len(labels) for v in scores):
            msg = (
                f"the report's probabilities do not match its rows: {len(scores)} arrays for "
                f"{1 + len(rows)} rows (baseline included), {len(labels)} labels"
            )
            raise ValueError(msg)
        return dataclasses.replace(report, labels=labels, scores=scores)

    def to_dict(self, *, include_scores: bool = False) -> dict[str, Any]:
        """A JSON-ready dictionary: settings, baseline, rows and worst cases.

        Args:
            include_scores: Also write ``labels`` and ``scores`` (the
                probabilities of every row, baseline first), so that
                [`from_dict`][cxr_pneumonia.robustness.ShiftReport.from_dict] gives back a report
                that [`at_threshold`][cxr_pneumonia.robustness.ShiftReport.at_threshold] and
                [`average_shift_reports`][cxr_pneumonia.robustness.average_shift_reports] can use.

        Returns:
            A dict of plain types; undefined metrics (NaN) are ``None``.

        Raises:
            ValueError: If ``include_scores`` and the report has no probabilities.
        """
        worst = {
            metric: {
                "shift": row.shift,
                "strength": row.strength,
                "value": _json_float(getattr(row, metric)),
                "change": _json_float(getattr(row, metric) - getattr(self.baseline, metric)),
            }
            for metric, row in self.worst_case.items()
        }
        result: dict[str, Any] = {
            "split": self.split,
            "source": self.source,
            "n": self.n,
            "threshold": float(self.threshold),
            "seed": self.seed,
            "class_names": list(self.class_names),
            "seconds": round(self.seconds, 1),
            "baseline": self.baseline.to_dict(),
            "rows": [row.to_dict() for row in self.rows],
            "worst": worst,
            "mean": {metric: _json_float(self.mean(metric)) for metric in SHIFT_METRICS},
        }
        if include_scores:
            labels, scores = self._probabilities()
            result["labels"] = [int(v) for v in labels]
            result["scores"] = [[float(v) for v in values] for values in scores]
        return result

    def to_json(self, *, indent: int | None = 2, include_scores: bool = False) -> str:
        """The report as strict JSON text (see
        [`to_dict`][cxr_pneumonia.robustness.ShiftReport.to_dict]).

        Args:
            indent: Indentation, or ``None`` for one line.
            include_scores: Also write the probabilities (see ``to_dict``).

        Returns:
            JSON text.

        Raises:
            ValueError: If ``include_scores`` and the report has no probabilities.
        """
        return json.dumps(
            self.to_dict(include_scores=include_scores), indent=indent, allow_nan=False
        )

    def to_markdown(self) -> str:
        """Markdown: a summary line, the table of rows and the worst cases.

        Each metric's worst value in the table is in bold; every value is
        followed by its change from the baseline.

        Returns:
            Markdown text.
        """
        return markdown(self, metrics=SHIFT_METRICS, baseline_label=BASELINE)

    def to_text(self) -> str:
        """The report as plain text: aligned columns, then the worst cases (no markup).

        Returns:
            Text for a log file or a pipe.
        """
        return plain_text(self, metrics=SHIFT_METRICS, baseline_label=BASELINE)

    def __rich__(self) -> Any:
        """A terminal rendering (``Console().print(report)``): the table, the worst in red."""
        return rich_renderable(self, metrics=SHIFT_METRICS, baseline_label=BASELINE)

    def __str__(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:
        worst = ", ".join(
            f"{metric}={format_value(getattr(row, metric))} ({row.label})"
            for metric, row in self.worst_case.items()
            if metric != "accuracy"
        )
        base = ", ".join(
            f"{metric}={format_value(getattr(self.baseline, metric))}"
            for metric in SHIFT_METRICS
            if metric != "accuracy"
        )
        return (
            f"ShiftReport(split={self.split!r}, n={self.n}, threshold={self.threshold:.4f}, "
            f"rows={len(self.rows)}, baseline: {base}; worst: {worst})"
        )


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _check_metric(metric: str) -> None:
    if metric not in SHIFT_METRICS:
        msg = f"unknown metric {metric!r}; choose one of: {', '.join(SHIFT_METRICS)}"
        raise ValueError(msg)


ShiftSpec = Mapping[str, Sequence[float]] | Sequence[str]
"""What [`shift_report`][cxr_pneumonia.robustness.shift_report] accepts as ``shifts``: name ->
strengths, or names."""


def _shift_plan(shifts: ShiftSpec) -> list[tuple[str, float]]:
    if isinstance(shifts, str):
        shifts = [shifts]
    items: list[tuple[str, Sequence[float]]]
    if isinstance(shifts, Mapping):
        items = [(name, strengths) for name, strengths in shifts.items()]
    else:
        items = [(name, get_shift(name).strengths) for name in shifts]
    plan: list[tuple[str, float]] = []
    for name, strengths in items:
        shift = get_shift(name)
        if isinstance(strengths, (int, float)):
            strengths = [strengths]
        for strength in strengths:
            plan.append((name, shift.check_strength(strength)))
    return plan


def _split_arrays(
    data: DatasetSplits | tuple[np.ndarray, np.ndarray], split: str
) -> tuple[np.ndarray, np.ndarray, str | None, str | None, tuple[str, str]]:
    if isinstance(data, DatasetSplits):
        images, labels = data.arrays(split)  # ValueError naming the splits present
        return (
            np.asarray(images),
            labels,
            split,
            data.source,
            data.class_names,
        )
    if isinstance(data, tuple) and len(data) == 2:
        images, labels = np.asarray(data[0]), np.asarray(data[1])
        if len(images) != len(labels):
            msg = f"images and labels differ in length: {len(images)} and {len(labels)}"
            raise ValueError(msg)
        return images, labels, None, None, CLASS_NAMES
    msg = (
        "data must be a DatasetSplits or a tuple (images, labels) of arrays (uint8 images "
        f"(N, H, W, C), labels 0/1); got {type(data).__name__}. A tf.data.Dataset can't be "
        "shifted: its pixels are not held in memory"
    )
    raise TypeError(msg)


def _expected_shape(model_or_predictor: Any) -> tuple[Any, ...] | None:
    metadata = getattr(model_or_predictor, "metadata", None)
    shape = getattr(metadata, "input_shape", None)
    if shape is not None:
        return tuple(shape)
    model = getattr(model_or_predictor, "model", model_or_predictor)
    inputs = getattr(model, "inputs", None)
    if inputs and len(inputs) == 1 and len(inputs[0].shape) == 4:
        return tuple(inputs[0].shape[1:])
    return None


def shift_report(
    model_or_predictor: Any,
    data: DatasetSplits | tuple[np.ndarray, np.ndarray],
    *,
    split: str = "validation",
    threshold: float | None = None,
    shifts: ShiftSpec = DEFAULT_SHIFTS,
    batch_size: int | None = None,
    seed: int = 0,
) -> ShiftReport:
    """Score a model on a labelled split under controlled acquisition shifts.

    Every (shift, strength) of ``shifts`` is applied to the split's decoded
    ``uint8`` images ([`cxr_pneumonia.shifts`][cxr_pneumonia.shifts]), and the model is run on
    the shifted copy; the same threshold is used throughout, so a shift that
    moves the scores shows as lost sensitivity or specificity even when the
    ranking (ROC AUC) holds.

    Args:
        model_or_predictor: A [`Predictor`][cxr_pneumonia.predictor.Predictor] (its bundle's
            threshold is used) or a ``keras.Model`` (threshold 0.5), as for
            [`evaluate`][cxr_pneumonia.evaluation.scoring.evaluate].
        data: A [`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits] loaded at the model's
            image size and color mode (its ``images[split]`` are used), or a
            tuple ``(images, labels)``: ``uint8`` ``(N, H, W, C)`` and 0/1.
        split: Which split of a ``DatasetSplits`` to score.
        threshold: Decision threshold in ``[0, 1]``; default: the predictor's
            ``threshold`` attribute, else 0.5.
        shifts: ``{name: strengths}`` (default
            [`DEFAULT_SHIFTS`][cxr_pneumonia.shifts.DEFAULT_SHIFTS]) or a list of shift names (each
            at its default strengths).
        batch_size: Images per inference batch (default: the predictor's, or 32).
        seed: Seed of the random shifts (noise).

    Returns:
        The [`ShiftReport`][cxr_pneumonia.robustness.ShiftReport].

    Raises:
        ValueError: If the split is absent, the images do not fit the model's
            input, the labels are not 0/1 or lack a class, a shift name or
            strength is invalid, or ``threshold`` is out of range.
        TypeError: If ``data`` or ``model_or_predictor`` is of an unsupported type.

    Examples:
        >>> report = shift_report(predictor, data, shifts={"contrast": [0.6]})  # doctest: +SKIP
        >>> report.rows[0].specificity                                          # doctest: +SKIP
        0.851
    """
    started = time.perf_counter()
    plan = _shift_plan(shifts)
    images, labels, split_name, source, class_names = _split_arrays(data, split)
    if images.dtype != np.uint8 or images.ndim != 4:
        msg = f"the images must be uint8 (N, H, W, C); got {images.dtype} {images.shape}"
        raise ValueError(msg)
    expected = _expected_shape(model_or_predictor)
    if expected is not None and any(
        want is not None and got != want
        for got, want in zip(images.shape[1:], expected, strict=True)
    ):
        msg = (
            f"the images are {images.shape[1:]} but the model takes {expected}; load the data "
            "at the model's image size and color mode (load_dataset(..., image_size=..., "
            "color_mode=...), or Predictor.image_size and .color_mode)"
        )
        raise ValueError(msg)
    flat = np.asarray(labels).reshape(-1)
    if not (np.any(flat == 1) and np.any(flat == 0)):
        msg = (
            f"a shift report needs both classes among the labels (ROC AUC, sensitivity and "
            f"specificity); got {np.count_nonzero(flat == 0)} NORMAL and "
            f"{np.count_nonzero(flat == 1)} PNEUMONIA"
        )
        raise ValueError(msg)
    if threshold is None:
        own = getattr(model_or_predictor, "threshold", None)
        threshold = 0.5 if own is None else float(own)

    probabilities: list[np.ndarray] = []

    def score(shifted: np.ndarray, name: str, strength: float) -> ShiftResult:
        report = evaluate(
            model_or_predictor, (shifted, labels), threshold=threshold, batch_size=batch_size
        )
        probabilities.append(np.asarray(report.scores))
        return ShiftResult.from_report(name, strength, report)

    logger.info("shift report: %d images, %d shifted copies", len(images), len(plan))
    baseline = score(images, BASELINE, 0.0)
    rows = []
    width = len(str(len(plan)))
    for index, (name, strength) in enumerate(plan, start=1):
        shifted = get_shift(name)(images, strength, seed=seed)
        row = score(shifted, name, strength)
        logger.info(
            "[%*d/%d] %-16s AUC %.4f  sensitivity %.4f  specificity %.4f  (%.0f s)",
            width,
            index,
            len(plan),
            row.label,
            row.roc_auc,
            row.sensitivity,
            row.specificity,
            time.perf_counter() - started,
        )
        rows.append(row)
    return ShiftReport(
        baseline=baseline,
        rows=tuple(rows),
        threshold=float(threshold),
        split=split_name,
        seed=seed,
        source=source,
        class_names=class_names,
        seconds=time.perf_counter() - started,
        labels=flat.astype(np.int64),
        scores=tuple(probabilities),
    )


def average_shift_reports(
    reports: Sequence[ShiftReport],
    *,
    threshold: float | None = None,
    target_sensitivity: float | None = None,
) -> ShiftReport:
    """The shift report of the mean of several models' probabilities, without running them.

    An [`ensemble`][cxr_pneumonia.ensembles.ensemble] outputs the mean of its members'
    probabilities, so the report of the ensemble of the models behind
    ``reports`` is this one (to float rounding): choosing members from cached
    reports takes seconds instead of a model run per candidate.

    Args:
        reports: Reports of the models, made on the same images with the same
            shifts and seed, each keeping its probabilities (made by
            [`shift_report`][cxr_pneumonia.robustness.shift_report], or read back from JSON
            written with ``include_scores=True``).
        threshold: The decision threshold of the average.
        target_sensitivity: Instead of ``threshold``: choose the highest
            threshold that keeps this sensitivity on the averaged baseline
            (the unshifted split), as ``cxr-pneumonia ensemble --data-dir``
            does on validation.

    Returns:
        The averaged report; without ``threshold`` or ``target_sensitivity``
        its threshold is the mean of the reports' thresholds (as
        [`ensemble`][cxr_pneumonia.ensembles.ensemble] without data).

    Raises:
        ValueError: If ``reports`` is empty, a report has no probabilities,
            the reports differ in images, labels, shifts or seed, both
            ``threshold`` and ``target_sensitivity`` are given, or either is
            out of range.

    Examples:
        >>> reports = {name: shift_report(Predictor.load(path), data) for name, path in ...}
        ...                                                                # doctest: +SKIP
        >>> pair = average_shift_reports([reports["a"], reports["b"]], target_sensitivity=0.97)
        ...                                                                # doctest: +SKIP
        >>> print(compare_shift_reports({"a": reports["a"], "a+b": pair}))  # doctest: +SKIP
    """
    if not reports:
        msg = "reports is empty; pass the shift reports of at least one model"
        raise ValueError(msg)
    if threshold is not None and target_sensitivity is not None:
        msg = "give threshold or target_sensitivity, not both"
        raise ValueError(msg)
    first = reports[0]
    probabilities = [report._probabilities() for report in reports]
    labels = probabilities[0][0]
    plan = [(row.shift, row.strength) for row in first.rows]
    for index, (report, (other, _)) in enumerate(zip(reports, probabilities, strict=True)):
        if index and (
            [(row.shift, row.strength) for row in report.rows] != plan
            or report.seed != first.seed
            or not np.array_equal(other, labels)
        ):
            msg = (
                f"report {index} differs from report 0 in its images, labels, shifts or seed; "
                "average reports made on the same split with the same shifts and seed"
            )
            raise ValueError(msg)
    per_row = zip(*(scores for _, scores in probabilities), strict=True)  # baseline, then rows
    mean = tuple(np.mean(rows, axis=0) for rows in per_row)
    if target_sensitivity is not None:
        threshold = choose_threshold(labels, mean[0], target_sensitivity=target_sensitivity)
    elif threshold is None:
        threshold = float(np.mean([report.threshold for report in reports]))
    averaged = dataclasses.replace(first, scores=mean, seconds=0.0)
    return averaged.at_threshold(threshold)


def compare_shift_reports(reports: Mapping[str, ShiftReport]) -> str:
    """A Markdown table comparing models by their shift reports, one row per model.

    For ROC AUC, sensitivity and specificity: the unshifted value, the mean
    over the shifts and the worst case (with its shift). Compare reports made
    on the same split with the same shifts.

    Args:
        reports: ``{model name: report}``, in the order to show.

    Returns:
        Markdown text.

    Raises:
        ValueError: If ``reports`` is empty, or the reports differ in images
            or shifts (they would not be comparable).

    Examples:
        >>> print(compare_shift_reports({"default": a, "mixup": b}))  # doctest: +SKIP
    """
    return comparison_table(reports)
