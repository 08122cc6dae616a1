"""What a Predictor returns, and how it is made from the model's outputs.

[`Prediction`][cxr_pneumonia.predictor.Prediction] and
[`Explanation`][cxr_pneumonia.predictor.Explanation] are defined here and
belong to [`cxr_pneumonia.predictor`][cxr_pneumonia.predictor], the public
entry point, which re-exports them. `make_prediction` turns a probability
(and an OOD score) into a Prediction, `class_indices` finds the positive
class, `check_threshold` checks a threshold given for one call,
`refusal_message` says why ``ood="error"`` refuses an input, and
`explanation_layers` and `explanation` choose the Grad-CAM layers and
average their heatmaps (computed by `cxr_pneumonia.gradcam`) into an
Explanation.

This module does not import ``predictor`` (predictor -> _predictor_results).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from cxr_pneumonia.gradcam import grad_cam, overlay, resize_heatmap

if TYPE_CHECKING:
    import keras

    from cxr_pneumonia.ood import OODCheck

__all__ = [
    "Explanation",
    "Prediction",
    "check_threshold",
    "class_indices",
    "explanation",
    "explanation_layers",
    "make_prediction",
    "refusal_message",
]

_POSITIVE_CLASS = "PNEUMONIA"


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one input.

    Attributes:
        label: The predicted class name (``"NORMAL"`` or ``"PNEUMONIA"``), or
            ``None`` when the input could not be read (see ``error``).
        probability: Probability of PNEUMONIA in ``[0, 1]``, or ``None`` when
            the input could not be read.
        threshold: Decision threshold used: PNEUMONIA when
            ``probability >= threshold``.
        source: The input's path (``str``) when it was given as a path,
            otherwise its index in the batch (``0`` for a single input).
        error: ``None``, or why the input was skipped (``errors="skip"``).
        in_distribution: ``True`` when the input looks like the model's
            training images, ``False`` when the out-of-distribution check
            flags it (not a chest X-ray, or far from the training data: the
            label is then not to be trusted), ``None`` when not checked (the
            bundle has no check, ``ood="ignore"``, or the input was unreadable).
        ood_score: The check's score (higher is farther from the training
            images; flagged above the bundle's ``ood["threshold"]``), or ``None``.
    """

    label: str | None
    probability: float | None
    threshold: float
    source: str | int
    error: str | None = None
    in_distribution: bool | None = None
    ood_score: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the input was predicted (``error`` is ``None``)."""
        return self.error is None


@dataclass(frozen=True)
class Explanation:
    """A Grad-CAM explanation of one prediction.

    Attributes:
        prediction: The prediction explained.
        heatmap: ``float32`` array ``(height, width)`` in ``[0, 1]`` at the input
            image's own size: where the evidence for the predicted class lies.
        overlay: The input image (RGB) with the heatmap blended in a jet
            colormap.
        layer: Name of the layer whose activations were used (``"outer/inner"``
            for a layer inside a nested model); when several layers were
            averaged (an ensemble's members), their names joined by ``", "``.
        layers: Every layer whose heatmap was averaged, in order (one for a
            single model, one per member for an ensemble).
    """

    prediction: Prediction
    heatmap: np.ndarray = field(repr=False, compare=False)
    overlay: Image.Image = field(repr=False, compare=False)
    layer: str
    layers: tuple[str, ...] = ()


def make_prediction(
    probability: float,
    threshold: float,
    source: str | int,
    ood_score: float | None,
    *,
    class_names: Sequence[str],
    indices: tuple[int, int],
    ood_check: OODCheck | None,
) -> Prediction:
    """The Prediction for ``probability``; ``indices`` are ``(positive, negative)``."""
    positive, negative = indices
    index = positive if probability >= threshold else negative
    in_distribution = None
    if ood_score is not None and ood_check is not None:
        in_distribution = bool(ood_check.accepts(np.asarray([ood_score]))[0])
    return Prediction(
        class_names[index],
        probability,
        threshold,
        source,
        None,
        in_distribution,
        ood_score,
    )


def refusal_message(
    source: str | int, single: bool, score: float | None, ood_check: OODCheck | None
) -> str:
    """Why ``ood="error"`` refuses the input ``source`` (the error's message)."""
    name = source if isinstance(source, str) else ("the input" if single else f"input {source}")
    threshold = ood_check.threshold if ood_check is not None else float("nan")
    return (
        f"{name}: does not look like a chest X-ray the model was trained on (OOD score "
        f"{score:.3g} > threshold {threshold:.3g}); not predicted. Send a frontal chest "
        "radiograph, or use ood='flag' to get a (flagged) prediction anyway"
    )


def explanation_layers(
    layer: str | Sequence[str] | None, members: Sequence[dict[str, Any]]
) -> list[str | None]:
    """The layer names to explain (``None``: the default): ``layer``, or each member's."""
    if layer is None and members:
        names: list[str | None] = [str(m["layer"]) for m in members]
    elif layer is None or isinstance(layer, str):
        names = [layer]
    else:
        names = list(layer)
        if not names:
            msg = "layer is an empty list; name at least one layer, or pass None"
            raise ValueError(msg)
    return names


def explanation(
    prediction: Prediction,
    *,
    model: keras.Model,
    batch: np.ndarray,
    original: np.ndarray,
    class_index: int,
    paths: tuple[str, ...],
    alpha: float,
) -> Explanation:
    """Grad-CAM of ``class_index`` at each of ``paths``, averaged (peak scaled to 1)."""
    heatmaps = [
        resize_heatmap(
            grad_cam(model, batch, class_index=class_index, layer=path)[0],
            original.shape[:2],
        )
        for path in paths
    ]
    heatmap = heatmaps[0]
    if len(heatmaps) > 1:
        heatmap = np.mean(heatmaps, axis=0).astype(np.float32)
        peak = float(heatmap.max())
        if peak > 0:
            heatmap = (heatmap / peak).astype(np.float32)
    return Explanation(
        prediction=prediction,
        heatmap=heatmap,
        overlay=overlay(original, heatmap, alpha=float(alpha)),
        layer=", ".join(paths),
        layers=paths,
    )


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float, if it is a number in ``[0, 1]``; else ValueError."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        msg = f"threshold must be a number in [0, 1], got {threshold!r}"
        raise ValueError(msg)
    value = float(threshold)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        msg = f"threshold must be a number in [0, 1], got {threshold!r}"
        raise ValueError(msg)
    return value


def class_indices(class_names: Sequence[str]) -> tuple[int, int]:
    """``(positive, negative)`` output indices of a binary classifier's classes."""
    if len(class_names) != 2:
        msg = f"the Predictor handles binary classifiers; got class_names={list(class_names)}"
        raise ValueError(msg)
    positive = class_names.index(_POSITIVE_CLASS) if _POSITIVE_CLASS in class_names else 1
    return positive, 1 - positive
