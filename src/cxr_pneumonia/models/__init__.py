"""Model building: the registry of architectures and its helpers.

- `cxr_pneumonia.models.registry`: [`ModelSpec`][cxr_pneumonia.models.registry.ModelSpec],
  [`list_models`][cxr_pneumonia.models.registry.list_models],
  [`build_model`][cxr_pneumonia.models.registry.build_model] (the one entry point).
- `cxr_pneumonia.models.cnn`: the custom CNNs (``cnn``, ``cnn-small``).
- `cxr_pneumonia.models.stacks`: the source studies' small networks as
  layer tables (``cnn1``-``cnn3``, ``cnn-kfold``, ``dense-kfold``) and their
  one builder.
- `cxr_pneumonia.models.heads`: the classifier output (sigmoid or
  2-unit softmax).
- `cxr_pneumonia.models.backbones`: ImageNet backbones with a binary head,
  [`find_backbone`][cxr_pneumonia.models.backbones.find_backbone],
  [`set_backbone_trainable`][cxr_pneumonia.models.backbones.set_backbone_trainable].
- `cxr_pneumonia.models.layers`: the serialisable preprocessing layers.
- `cxr_pneumonia.models.tta`: [`with_flip_tta`][cxr_pneumonia.models.tta.with_flip_tta], flip
  test-time augmentation inside the model.

Never imports `cxr_pneumonia.data` or `cxr_pneumonia.training`.
"""

from __future__ import annotations

from cxr_pneumonia.models.backbones import (
    BACKBONE_NAME,
    Head,
    find_backbone,
    set_backbone_trainable,
)
from cxr_pneumonia.models.heads import OUTPUT_KINDS
from cxr_pneumonia.models.layers import FlipBatch, MeanOfHalves, PixelPreprocessing, RepeatChannels
from cxr_pneumonia.models.registry import (
    MODELS,
    ModelSpec,
    build_model,
    get_model_spec,
    imagenet_weights_path,
    list_models,
)
from cxr_pneumonia.models.stacks import STACKS
from cxr_pneumonia.models.tta import has_flip_tta, with_flip_tta

__all__ = [
    "BACKBONE_NAME",
    "MODELS",
    "OUTPUT_KINDS",
    "STACKS",
    "FlipBatch",
    "Head",
    "MeanOfHalves",
    "ModelSpec",
    "PixelPreprocessing",
    "RepeatChannels",
    "build_model",
    "find_backbone",
    "get_model_spec",
    "has_flip_tta",
    "imagenet_weights_path",
    "list_models",
    "set_backbone_trainable",
    "with_flip_tta",
]
