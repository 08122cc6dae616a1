"""Metrics of a 2-unit softmax model read off its PNEUMONIA column.

``fit`` compiles a softmax model on one-hot labels ``(N, 2)``; these metrics
score column 1 (PNEUMONIA) alone, so ``auc`` and ``pr_auc`` mean what they
mean for a sigmoid model. Registered serialisable classes: a checkpoint saved
with its compile configuration loads back (``keras.metrics.AUC``'s own
``label_weights`` do not survive a save and load in Keras 3.15).
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["PositiveColumnAUC"]


@keras.saving.register_keras_serializable(package="cxr_pneumonia")
class PositiveColumnAUC(keras.metrics.AUC):
    """``keras.metrics.AUC`` of column 1 of one-hot labels and softmax outputs.

    Args:
        **kwargs: Passed to ``keras.metrics.AUC`` (``curve``, ``name``...).
    """

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """Accumulate the confusion counts of the PNEUMONIA column."""
        return super().update_state(y_true[..., 1], y_pred[..., 1], sample_weight=sample_weight)
