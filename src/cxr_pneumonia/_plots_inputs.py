"""The inputs of the figures, checked and turned into numbers (no matplotlib).

A private part of `cxr_pneumonia.plots`: what each figure needs from its
arguments before anything is drawn, with the same messages. A report with both
classes and its AUC as text; a history as ``{metric: values}`` and the metrics
to draw; feature maps as ``(H, W, C)`` arrays; Grad-CAM's layer caption; a
split's images and labels, a seeded sample of one class, and an image as one
grey channel. Imports neither matplotlib nor `cxr_pneumonia.plots`
(plots -> _plots_inputs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cxr_pneumonia.evaluation import EvaluationReport

__all__ = [
    "NOT_METRICS",
    "chosen_metrics",
    "class_indices",
    "feature_map_layers",
    "format_auc",
    "gray",
    "history_values",
    "layer_caption",
    "need_both_classes",
]


def need_both_classes(report: EvaluationReport, what: str) -> None:
    if report.n_positive == 0 or report.n_negative == 0:
        msg = (
            f"a {what} needs both classes; the report has {report.n_positive} "
            f"{report.class_names[1]} and {report.n_negative} {report.class_names[0]} examples"
        )
        raise ValueError(msg)


def format_auc(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def history_values(history: Any) -> dict[str, list[float]]:
    """Accept a dict, a ``TrainingResult`` or a ``keras.callbacks.History``."""
    raw = history if isinstance(history, Mapping) else getattr(history, "history", None)
    if not isinstance(raw, Mapping):
        msg = (
            "history must be a dict of metric name -> per-epoch values, or an object with "
            f"a .history dict (TrainingResult, keras History); got {type(history).__name__}"
        )
        raise TypeError(msg)
    return {str(name): [float(v) for v in values] for name, values in raw.items()}


NOT_METRICS = ("learning_rate", "lr")


def chosen_metrics(
    values: Mapping[str, Sequence[float]], metrics: Sequence[str] | None
) -> list[str]:
    """The metrics ``plot_history`` draws: those asked for, or all but the learning rate."""
    available = [n for n in values if not n.startswith("val_") and n not in NOT_METRICS]
    available += [
        n[4:]
        for n in values
        if n.startswith("val_") and n[4:] not in values and n[4:] not in NOT_METRICS
    ]
    if metrics is None:
        chosen = available
    else:
        chosen = [metrics] if isinstance(metrics, str) else list(metrics)
        missing = [name for name in chosen if name not in values and f"val_{name}" not in values]
        if missing:
            msg = (
                f"metric(s) {', '.join(map(repr, missing))} not in the history; "
                f"it has: {', '.join(available) or 'nothing'}"
            )
            raise ValueError(msg)
    if not chosen:
        msg = "the history has no metrics to plot"
        raise ValueError(msg)
    return chosen


def feature_map_layers(
    feature_maps: Mapping[str, np.ndarray], *, max_channels: int
) -> list[tuple[str, np.ndarray]]:
    """Each layer's activations as ``(H, W, C)`` floats, after checking the arguments."""
    if not feature_maps:
        msg = "feature_maps is empty; pass at least one layer's activations"
        raise ValueError(msg)
    if max_channels < 1:
        msg = f"max_channels must be at least 1; got {max_channels!r}"
        raise ValueError(msg)
    layers: list[tuple[str, np.ndarray]] = []
    for name, activation in feature_maps.items():
        array = np.asarray(activation, dtype=np.float32)
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            msg = f"activations of {name!r} must be (H, W, C) or (1, H, W, C); got {array.shape}"
            raise ValueError(msg)
        layers.append((str(name), array))
    return layers


def layer_caption(explanation: Any) -> str:
    """``"Grad-CAM of layer X"``; an ensemble's ``m0/X, m1/X, ...`` shortened to fit."""
    layers = tuple(getattr(explanation, "layers", ())) or (explanation.layer,)
    if len(layers) == 1:
        return f"Grad-CAM of layer {layers[0]}"
    names = {layer.rsplit("/", 1)[-1] for layer in layers}
    which = names.pop() if len(names) == 1 else f"{layers[0]}, ..."
    return f"Grad-CAM of layer {which}, averaged over {len(layers)} members"


def class_indices(labels: np.ndarray, index: int, limit: int | None, seed: int) -> np.ndarray:
    chosen = np.flatnonzero(labels == index)
    if limit is not None and len(chosen) > limit:
        rng = np.random.default_rng(seed + index)
        chosen = np.sort(rng.choice(chosen, size=limit, replace=False))
    return chosen


def gray(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    return array[..., 0] if array.shape[-1] == 1 else array
