"""Figures of data sets, evaluation results and training histories (the ``plot`` extra).

Needs matplotlib: ``pip install 'cxr-pneumonia[plot]'``. matplotlib is imported
only when a function here is called, so ``import cxr_pneumonia`` never needs it.

Every function returns a ``matplotlib.figure.Figure`` built directly on the Agg
(PNG) canvas, without pyplot: no global backend or state is changed, no window
is opened, and figures are freed like any Python object. With ``path`` the
figure is also saved there as a PNG. To show a figure in a notebook, display
the returned object (Jupyter renders ``Figure`` objects).

Examples:
    >>> from cxr_pneumonia.plots import plot_roc
    >>> plot_roc(report, "roc.png")        # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from cxr_pneumonia._plots_inputs import (
    chosen_metrics,
    class_indices,
    feature_map_layers,
    format_auc,
    gray,
    history_values,
    layer_caption,
    need_both_classes,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from cxr_pneumonia import Explanation
    from cxr_pneumonia.data.splits import DatasetSplits
    from cxr_pneumonia.evaluation import EvaluationReport
    from cxr_pneumonia.robustness import ShiftReport

__all__ = [
    "image_statistics",
    "plot_calibration",
    "plot_class_counts",
    "plot_confusion_matrix",
    "plot_feature_maps",
    "plot_gradcam",
    "plot_history",
    "plot_image_statistics",
    "plot_model",
    "plot_precision_recall",
    "plot_roc",
    "plot_samples",
    "plot_shift_report",
]

PathLike = Union[str, "os.PathLike[str]"]

_INSTALL_HINT = "pip install 'cxr-pneumonia[plot]'"
_DPI = 100


def _new_figure(width: float, height: float) -> Figure:
    """A Figure on its own Agg canvas (no pyplot, no global backend change)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        msg = f"plotting needs matplotlib, which is not installed; install it with: {_INSTALL_HINT}"
        raise ImportError(msg) from error
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _finish(figure: Figure, path: PathLike | None) -> Figure:
    if path is not None:
        figure.savefig(os.fspath(path), format="png", dpi=_DPI)
    return figure


def plot_roc(report: EvaluationReport, path: PathLike | None = None) -> Figure:
    """Plot the ROC curve of a report, with its operating point.

    Args:
        report: An [`EvaluationReport`][cxr_pneumonia.evaluation.report.EvaluationReport].
        path: Where to save the figure as a PNG; ``None`` saves nothing.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: If matplotlib is not installed.
        ValueError: If the report has only one class (no ROC curve exists).
    """
    from sklearn.metrics import roc_curve

    need_both_classes(report, "ROC curve")
    figure = _new_figure(5.0, 5.0)
    ax = figure.add_subplot()
    fpr, tpr, _ = roc_curve(report.labels, report.scores)
    ax.plot(fpr, tpr, color="C0", lw=2, label=f"ROC (AUC = {format_auc(report.roc_auc)})")
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="chance")
    ax.plot(
        1.0 - report.specificity,
        report.recall,
        "o",
        color="C3",
        label=f"threshold {report.threshold:.3f}",
    )
    _unit_square(ax)
    ax.set_xlabel("False positive rate (1 - specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    ax.set_title(f"ROC curve (n = {report.n})")
    ax.legend(loc="lower right")
    return _finish(figure, path)


def plot_precision_recall(report: EvaluationReport, path: PathLike | None = None) -> Figure:
    """Plot the precision-recall curve of a report, with its operating point.

    The dashed line is the precision of a random classifier (the share of
    PNEUMONIA examples).

    Args:
        report: An [`EvaluationReport`][cxr_pneumonia.evaluation.report.EvaluationReport].
        path: Where to save the figure as a PNG; ``None`` saves nothing.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: If matplotlib is not installed.
        ValueError: If the report has only one class.
    """
    from sklearn.metrics import precision_recall_curve

    need_both_classes(report, "precision-recall curve")
    figure = _new_figure(5.0, 5.0)
    ax = figure.add_subplot()
    precision, recall, _ = precision_recall_curve(report.labels, report.scores)
    ax.step(
        recall,
        precision,
        where="post",
        color="C0",
        lw=2,
        label=f"PR (AP = {format_auc(report.pr_auc)})",
    )
    prevalence = report.n_positive / report.n
    ax.axhline(prevalence, color="0.6", ls="--", lw=1, label=f"chance ({prevalence:.2f})")
    ax.plot(
        report.recall,
        report.precision,
        "o",
        color="C3",
        label=f"threshold {report.threshold:.3f}",
    )
    _unit_square(ax)
    ax.set_xlabel("Recall (sensitivity)")
    ax.set_ylabel("Precision (PPV)")
    ax.set_title(f"Precision-recall curve (n = {report.n})")
    ax.legend(loc="lower left")
    return _finish(figure, path)


def plot_confusion_matrix(
    report: EvaluationReport,
    path: PathLike | None = None,
    *,
    normalize: bool = False,
) -> Figure:
    """Plot the confusion matrix of a report (rows true class, columns predicted).

    Args:
        report: An [`EvaluationReport`][cxr_pneumonia.evaluation.report.EvaluationReport].
        path: Where to save the figure as a PNG; ``None`` saves nothing.
        normalize: Color and label each cell by its share of its row (the
            per-class recall); counts are still shown in brackets.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: If matplotlib is not installed.
    """
    figure = _new_figure(4.8, 4.2)
    ax = figure.add_subplot()
    counts = np.asarray(report.confusion_matrix, dtype=np.int64)
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(
        counts, row_totals, out=np.zeros(counts.shape, dtype=np.float64), where=row_totals > 0
    )
    values = shares if normalize else counts
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, counts.max()))
    figure.colorbar(image, ax=ax, shrink=0.8)
    threshold = (1 if normalize else max(1, counts.max())) / 2
    for row in range(2):
        for col in range(2):
            text = (
                f"{shares[row, col]:.1%}\n({counts[row, col]})"
                if normalize
                else f"{counts[row, col]}\n({shares[row, col]:.1%})"
            )
            ax.text(
                col,
                row,
                text,
                ha="center",
                va="center",
                fontsize=12,
                color="white" if values[row, col] > threshold else "black",
            )
    ax.set_xticks([0, 1], labels=list(report.class_names))
    ax.set_yticks([0, 1], labels=list(report.class_names))
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(f"Confusion matrix (threshold {report.threshold:.3f})")
    return _finish(figure, path)


def plot_calibration(
    report: EvaluationReport,
    path: PathLike | None = None,
    *,
    n_bins: int | None = None,
) -> Figure:
    """Plot a reliability diagram (calibration curve) and the histogram of scores.

    Uses the same equal-width bins as the report's expected calibration error.

    Args:
        report: An [`EvaluationReport`][cxr_pneumonia.evaluation.report.EvaluationReport].
        path: Where to save the figure as a PNG; ``None`` saves nothing.
        n_bins: Number of equal-width bins; ``None`` uses
            `ECE_BINS` (15), the bins of
            ``report.ece``.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: If matplotlib is not installed.
        ValueError: If ``n_bins`` is not a positive integer.
    """
    from cxr_pneumonia.evaluation import ECE_BINS

    bins = ECE_BINS if n_bins is None else n_bins
    mean_score, fraction_positive, count = report.calibration_bins(bins)
    figure = _new_figure(5.0, 6.0)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    filled = count > 0
    top.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfectly calibrated")
    top.plot(
        mean_score[filled],
        fraction_positive[filled],
        "o-",
        color="C0",
        lw=2,
        label=f"model (ECE = {report.ece:.3f})" if bins == ECE_BINS else "model",
    )
    top.set_xlim(0.0, 1.0)
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel(f"Fraction {report.class_names[1]}")
    top.set_title(f"Calibration (Brier = {report.brier:.3f}, n = {report.n})")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    edges = np.linspace(0.0, 1.0, bins + 1)
    bottom.bar(edges[:-1], count, width=1.0 / bins, align="edge", color="C0", alpha=0.6)
    bottom.set_xlabel(f"Predicted probability of {report.class_names[1]}")
    bottom.set_ylabel("Count")
    bottom.grid(alpha=0.3)
    return _finish(figure, path)


def plot_history(
    history: Mapping[str, Sequence[float]] | Any,
    path: PathLike | None = None,
    *,
    metrics: Sequence[str] | None = None,
) -> Figure:
    """Plot training curves: one panel per metric, training and validation together.

    Args:
        history: Per-epoch values by metric name, e.g. ``{"loss": [...],
            "val_loss": [...]}`` (a ``TrainingResult.history``); a
            ``TrainingResult`` or a Keras ``History`` is accepted too.
        path: Where to save the figure as a PNG; ``None`` saves nothing.
        metrics: The metrics to draw, without the ``val_`` prefix (their
            ``val_`` twins are drawn in the same panel). ``None`` draws every
            metric in the history except the learning rate.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: If matplotlib is not installed.
        TypeError: If ``history`` is not a mapping and has no ``.history`` mapping.
        ValueError: If the history is empty or a requested metric is absent
            (the message lists those present).
    """
    values = history_values(history)
    chosen = chosen_metrics(values, metrics)

    columns = min(len(chosen), 3)
    rows = math.ceil(len(chosen) / columns)
    figure = _new_figure(4.2 * columns, 3.4 * rows)
    from matplotlib.ticker import MaxNLocator

    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for ax, name in zip(axes, chosen, strict=False):
        for key, label, style in ((name, "train", "-"), (f"val_{name}", "validation", "--")):
            series = values.get(key)
            if series:
                epochs = np.arange(1, len(series) + 1)
                ax.plot(epochs, series, style, marker="o", ms=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    return _finish(figure, path)


def plot_feature_maps(
    feature_maps: Mapping[str, np.ndarray],
    path: PathLike | None = None,
    *,
    max_channels: int = 16,
) -> Figure:
    """Draw convolutional activations as a grid: one row per layer, one cell per channel.

    Args:
        feature_maps: Activations by layer name, each ``(H, W, C)`` or
            ``(1, H, W, C)`` (e.g. what ``feature_maps`` of the predictor
            module returns for one image).
        path: Where to save the figure as a PNG; ``None`` saves nothing.
        max_channels: Channels drawn per layer (the first ones).

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: If matplotlib is not installed.
        ValueError: If ``feature_maps`` is empty, ``max_channels < 1`` or an
            activation does not have an image shape.
    """
    layers = feature_map_layers(feature_maps, max_channels=max_channels)
    columns = min(max_channels, max(a.shape[-1] for _, a in layers))
    # One sub-figure per layer, its name as a title above the row: long names
    # ("cnn-small/stage3_block2_conv") are never cut off and never overlap.
    titles = [
        f"{name}  ({min(columns, a.shape[-1])} of {a.shape[-1]} channels)" for name, a in layers
    ]
    longest = max(len(title) for title in titles)  # about 0.08 inch a character at 9 points
    figure = _new_figure(max(4.0, 1.1 * columns, 0.08 * longest + 0.3), 1.55 * len(layers))
    rows = figure.subfigures(len(layers), 1, squeeze=False)[:, 0]
    for subfigure, (_, array), title in zip(rows, layers, titles, strict=True):
        channels = array.shape[-1]
        subfigure.suptitle(title, x=0.0, ha="left", fontsize=9)
        axes = subfigure.subplots(1, columns, squeeze=False)[0]
        for col, ax in enumerate(axes):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= channels:
                ax.set_visible(False)
                continue
            ax.imshow(array[..., col], cmap="viridis")
    return _finish(figure, path)


def plot_gradcam(
    explanation: Explanation,
    path: PathLike | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Draw a Grad-CAM explanation: the overlay, its colour scale, the prediction.

    The title gives the predicted label, the probability of PNEUMONIA and the
    threshold; a colour bar reads the heat colours (0: the layer's activations
    did not push towards the predicted class, 1: they pushed most).

    Args:
        explanation: From ``explain`` (or ``Predictor.explain``).
        path: Where to save the figure as a PNG; ``None`` saves nothing.
        title: A first title line, e.g. the file name; ``None`` for none.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: If matplotlib is not installed.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    from cxr_pneumonia.gradcam import jet_colormap  # the overlay's own colours

    prediction = explanation.prediction
    overlay = np.asarray(explanation.overlay)
    height, width = overlay.shape[:2]
    side = 4.2
    figure = _new_figure(side * width / height + 1.0, side + 0.7)
    ax = figure.subplots()
    ax.imshow(overlay)
    ax.set_xticks([])
    ax.set_yticks([])
    lines = [title] if title else []
    probability = "n/a" if prediction.probability is None else f"{prediction.probability:.3f}"
    lines.append(
        f"{prediction.label}: P(PNEUMONIA) = {probability}, threshold {prediction.threshold:.3f}"
    )
    ax.set_title("\n".join(lines), fontsize=10)
    ax.set_xlabel(layer_caption(explanation), fontsize=8)
    colours = ListedColormap(jet_colormap(np.linspace(0.0, 1.0, 256)) / 255.0)
    scale = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=colours)
    bar = figure.colorbar(scale, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("Grad-CAM weight (relative)", fontsize=8)
    return _finish(figure, path)


def _unit_square(ax: Axes) -> None:
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)


def plot_shift_report(
    report: ShiftReport,
    path: PathLike | None = None,
    *,
    metrics: Sequence[str] = ("roc_auc", "sensitivity", "specificity"),
) -> Figure:
    """Draw a shift report: one panel per metric, one bar per (shift, strength).

    Each bar is the metric under one shift; the dashed line is the unshifted
    baseline; bars below it are orange, the worst one red, so the shifts that
    hurt stand out. The x axis starts just below the lowest value.

    Args:
        report: A [`ShiftReport`][cxr_pneumonia.robustness.ShiftReport].
        path: Where to save the figure as a PNG; ``None`` saves nothing.
        metrics: Which metrics to draw, from
            [`SHIFT_METRICS`][cxr_pneumonia.robustness.SHIFT_METRICS].

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: If matplotlib is not installed.
        ValueError: If ``metrics`` is empty or names an unknown metric, or the
            report has no shifted rows.
    """
    from cxr_pneumonia.robustness import SHIFT_METRICS

    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in SHIFT_METRICS]
    if not metrics or unknown:
        msg = f"metrics must be some of: {', '.join(SHIFT_METRICS)}; got {list(metrics)!r}"
        raise ValueError(msg)
    rows = list(report.rows)
    if not rows:
        msg = "the shift report has no shifted rows to draw"
        raise ValueError(msg)
    titles = {"roc_auc": "ROC AUC", "sensitivity": "Sensitivity", "specificity": "Specificity"}
    titles["accuracy"] = "Accuracy"
    figure = _new_figure(3.0 * len(metrics) + 1.4, 0.22 * len(rows) + 1.4)
    axes = figure.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    positions = np.arange(len(rows))
    for ax, metric in zip(axes, metrics, strict=True):
        values = np.array([getattr(r, metric) for r in rows], dtype=np.float64)
        base = float(getattr(report.baseline, metric))
        worst = report.worst(metric)
        colors = [
            "#d62728" if r is worst else ("#ff7f0e" if v < base else "#1f77b4")
            for r, v in zip(rows, values, strict=True)
        ]
        shown = np.nan_to_num(values, nan=0.0)
        ax.barh(positions, shown, color=colors, height=0.7)
        if not math.isnan(base):
            ax.axvline(base, color="black", linestyle="--", linewidth=1, label="no shift")
        finite = values[np.isfinite(values)]
        low = min(float(finite.min()) if finite.size else 0.0, base if not math.isnan(base) else 1)
        ax.set_xlim(max(0.0, low - 0.05 * (1.0 - low) - 0.01), 1.0)
        ax.set_title(f"{titles[metric]} (worst: {worst.label})", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
    axes[0].set_yticks(positions, labels=[r.label for r in rows], fontsize=8)
    axes[0].invert_yaxis()
    axes[0].legend(loc="lower left", fontsize=8)
    where = f"{report.split} split, " if report.split else ""
    figure.suptitle(
        f"Acquisition shifts: {where}{report.n} images, threshold {report.threshold:.3f}",
        fontsize=10,
    )
    return _finish(figure, path)


# --------------------------------------------------------------------------- data


def plot_class_counts(data: DatasetSplits, path: PathLike | None = None) -> Figure:
    """Bar chart of the images per class in each split, each bar labelled with its count.

    Args:
        data: A [`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits] (from
            ``load_dataset``).
        path: Where to save the figure as a PNG; ``None`` saves nothing.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: If matplotlib is not installed.
        ValueError: If the data has no split.
    """
    counts = data.class_counts
    if not counts:
        msg = "the data has no split to count"
        raise ValueError(msg)
    splits = list(counts)
    names = list(data.class_names)
    figure = _new_figure(1.6 + 1.4 * len(splits), 3.4)
    ax = figure.subplots()
    width = 0.8 / len(names)
    positions = np.arange(len(splits))
    for index, name in enumerate(names):
        values = [counts[split].get(name, 0) for split in splits]
        bars = ax.bar(positions + (index - (len(names) - 1) / 2) * width, values, width, label=name)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(positions, splits)
    ax.set_ylabel("images")
    ax.set_title(f"Class counts: {data.source}", fontsize=10)
    ax.legend()
    ax.margins(y=0.12)
    return _finish(figure, path)


def plot_samples(
    data: DatasetSplits,
    path: PathLike | None = None,
    *,
    split: str = "train",
    per_class: int = 4,
    seed: int = 0,
) -> Figure:
    """A grid of sample images: one row per class, ``per_class`` random images each.

    Images are drawn as the model sees them (decoded and resized, not augmented),
    each titled with its file name.

    Args:
        data: A [`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits].
        path: Where to save the figure as a PNG; ``None`` saves nothing.
        split: Which split to draw from.
        per_class: Images per class (``>= 1``).
        seed: Seed of the random choice.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: If matplotlib is not installed.
        ValueError: If the split has no images or ``per_class < 1``.
    """
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        msg = f"per_class must be an int >= 1; got {per_class!r}"
        raise ValueError(msg)
    images, labels = data.arrays(split)
    files = data.files.get(split, ())
    names = list(data.class_names)
    figure = _new_figure(1.9 * per_class, 2.1 * len(names))
    axes = figure.subplots(len(names), per_class, squeeze=False)
    for row, name in enumerate(names):
        chosen = class_indices(labels, row, per_class, seed)
        for col in range(per_class):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(chosen):
                ax.set_visible(False)
                continue
            index = int(chosen[col])
            ax.imshow(gray(images[index]), cmap="gray", vmin=0, vmax=255)
            title = os.path.basename(str(files[index])) if index < len(files) else str(index)
            ax.set_title(title[:24], fontsize=7)
            if col == 0:
                ax.set_ylabel(name, fontsize=10)
    return _finish(figure, path)


def image_statistics(
    data: DatasetSplits, *, split: str = "train", max_images: int | None = 2000, seed: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """Per-class statistics of the images: per-image mean and standard deviation, mean image.

    Args:
        data: A [`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits].
        split: Which split.
        max_images: Images per class to read at most (a random subset; ``None``
            for all).
        seed: Seed of the subset.

    Returns:
        ``{class name: {"mean": (n,), "std": (n,), "mean_image": (H, W)}}``,
        intensities on the ``0..255`` scale (RGB images averaged over channels).

    Raises:
        ValueError: If the split has no images.
    """
    images, labels = data.arrays(split)
    result: dict[str, dict[str, np.ndarray]] = {}
    for index, name in enumerate(data.class_names):
        chosen = class_indices(labels, index, max_images, seed)
        height, width = images.shape[1], images.shape[2]
        means = np.empty(len(chosen), dtype=np.float64)
        stds = np.empty(len(chosen), dtype=np.float64)
        total = np.zeros((height, width), dtype=np.float64)
        for start in range(0, len(chosen), 256):  # a memory map is read in slices
            batch = np.asarray(images[chosen[start : start + 256]], dtype=np.float64).mean(axis=-1)
            means[start : start + len(batch)] = batch.mean(axis=(1, 2))
            stds[start : start + len(batch)] = batch.std(axis=(1, 2))
            total += batch.sum(axis=0)
        mean_image = total / max(len(chosen), 1)
        result[name] = {"mean": means, "std": stds, "mean_image": mean_image}
    return result


def plot_image_statistics(
    data: DatasetSplits,
    path: PathLike | None = None,
    *,
    split: str = "train",
    max_images: int | None = 2000,
    seed: int = 0,
) -> Figure:
    """Per-class image statistics: histograms of per-image mean intensity and contrast
    (standard deviation), and each class's mean image.

    Args:
        data: A [`DatasetSplits`][cxr_pneumonia.data.splits.DatasetSplits].
        path: Where to save the figure as a PNG; ``None`` saves nothing.
        split: Which split.
        max_images: Images per class to read at most (see
            [`image_statistics`][cxr_pneumonia.plots.image_statistics]).
        seed: Seed of the subset.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: If matplotlib is not installed.
        ValueError: If the split has no images.
    """
    stats = image_statistics(data, split=split, max_images=max_images, seed=seed)
    names = list(stats)
    figure = _new_figure(3.2 * (2 + len(names)), 3.2)
    axes = figure.subplots(1, 2 + len(names), squeeze=False)[0]
    bins = np.linspace(0, 255, 52)
    for ax, key, label in (
        (axes[0], "mean", "mean intensity"),
        (axes[1], "std", "std of intensity"),
    ):
        for name in names:
            values = stats[name][key]
            ax.hist(values, bins=bins if key == "mean" else 40, alpha=0.55, label=name)
        ax.set_xlabel(f"per-image {label} (0-255)")
        ax.set_ylabel("images")
        ax.legend(fontsize=8)
    for ax, name in zip(axes[2:], names, strict=True):
        ax.imshow(stats[name]["mean_image"], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"mean {name} image (n={len(stats[name]['mean'])})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(f"Image statistics: {data.source}, {split}", fontsize=10)
    return _finish(figure, path)


# --------------------------------------------------------------------------- models


_GRAPHVIZ_HINT = (
    "install Graphviz: apt-get install graphviz (Debian/Ubuntu), brew install graphviz "
    "(macOS) or conda install graphviz"
)


def plot_model(model: Any, path: PathLike, **options: Any) -> None:
    """Draw a Keras model's layer graph to ``path`` (``keras.utils.plot_model``).

    Unlike Keras, which in a notebook only prints a message when a
    requirement is missing and returns nothing, this raises with the fix.

    Args:
        model: A ``keras.Model``.
        path: Output file; its suffix picks the format (``.png``, ``.svg``, ``.pdf``).
        **options: More ``keras.utils.plot_model`` options; ``show_shapes``
            defaults to ``True`` here.

    Raises:
        ImportError: If pydot is not installed (``pip install 'cxr-pneumonia[plot]'``).
        RuntimeError: If Graphviz's ``dot`` program is not on ``PATH``
            (``apt-get install graphviz``).
    """
    import shutil

    try:
        import pydot  # noqa: F401
    except ImportError as error:
        msg = f"plot_model needs pydot, which is not installed; install it with: {_INSTALL_HINT}"
        raise ImportError(msg) from error
    if shutil.which("dot") is None:
        msg = f"plot_model needs Graphviz's 'dot' program, which is not on PATH; {_GRAPHVIZ_HINT}"
        raise RuntimeError(msg)
    import keras

    options.setdefault("show_shapes", True)
    keras.utils.plot_model(model, to_file=os.fspath(path), **options)
