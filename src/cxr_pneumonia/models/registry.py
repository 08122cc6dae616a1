"""The model registry: a table of [`ModelSpec`][cxr_pneumonia.models.registry.ModelSpec],
[`list_models`][cxr_pneumonia.models.registry.list_models] and
[`build_model`][cxr_pneumonia.models.registry.build_model].

==================  ========  ===========================================================
name                kind      what
==================  ========  ===========================================================
``cnn``             custom    the custom-CNN notebook's 8-block CNN (7.35 M params)
``cnn-small``       custom    our CPU-friendly separable residual CNN (0.21 M)
``cnn-medium``      custom    ``cnn-small`` wider and one stage deeper (1.07 M)
``cnn-kfold``       custom    the KFold study's L2-regularized small CNN baseline
``cnn1``            custom    the PyTorch report's CNN1 (conv-BN-act, 160 px)
``cnn2``            custom    the PyTorch report's CNN2 (5x5 then 3x3, dropout 0.2)
``cnn3``            custom    the PyTorch report's CNN3 (conv-act-pool, FC layers)
``dense-kfold``     custom    the KFold study's dense baseline (393,521 params)
``densenet121``     backbone  DenseNet-121 (Huang et al. 2017)
``efficientnetb0``  backbone  EfficientNet-B0 (Tan & Le 2019)
``resnet50``        backbone  ResNet-50 (He et al. 2016), pooled head
``resnet50-kfold``  backbone  ResNet-50 with the KFold study's Flatten + Dense 256 head
``vgg16``           backbone  VGG-16 (Simonyan & Zisserman 2015), pooled Dense 256 head
``vgg19``           backbone  VGG-19 (Simonyan & Zisserman 2015), pooled Dense 256 head
==================  ========  ===========================================================

Every model takes raw ``0..255`` pixels and preprocesses them in its graph
(`cxr_pneumonia.models.layers`), ends with a float32 classifier layer
(one sigmoid unit, or a 2-unit softmax with ``output="softmax"``, see
`cxr_pneumonia.models.heads`), and is named after its registry entry
(``model.name``), so a saved model says what it is.

The table is data: a [`ModelSpec`][cxr_pneumonia.models.registry.ModelSpec] names its
builder ([`build_cnn`][cxr_pneumonia.models.cnn.build_cnn], ``build_cnn_small`` and
``build_cnn_medium`` for our hand-written CNNs,
[`build_backbone_classifier`][cxr_pneumonia.models.backbones.build_backbone_classifier] for every
ImageNet base and head, `build_stack` for the layer tables of `STACKS`) and the options it passes; a
variant such as ``resnet50-kfold`` is one more row.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cxr_pneumonia.exceptions import UnknownModelError, WeightsUnavailableError
from cxr_pneumonia.models.backbones import Head, build_backbone_classifier
from cxr_pneumonia.models.cnn import build_cnn, build_cnn_medium, build_cnn_small
from cxr_pneumonia.models.heads import OUTPUT_KINDS, OutputKind
from cxr_pneumonia.models.stacks import ACTIVATIONS, STACKS, LayerSpec, build_stack

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

__all__ = ["MODELS", "ModelSpec", "build_model", "get_model_spec", "list_models"]

Weights = Literal["auto", "imagenet"] | str | os.PathLike[str] | None

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: how to build a model and what it is.

    Attributes:
        name: Registry name, also the built model's ``name``.
        builder: The function building it (``build_cnn``, ``build_cnn_small``,
            ``build_cnn_medium``, ``build_stack`` or ``build_backbone_classifier``).
        kind: ``"custom"`` (random initialization only) or ``"backbone"``
            (an ImageNet ``keras.applications`` base).
        description: One line for listings.
        reference: The paper the architecture comes from.
        default_input_shape: Input ``(height, width, channels)`` it is meant for.
        min_size: Smallest height and width it builds at.
        default_dropout: Dropout rate when ``build_model(dropout=None)``
            (``None``: the builder's own defaults).
        application: ``keras.applications`` constructor of the base.
        preprocessing: ``PixelPreprocessing`` mode of the base.
        head_units: ReLU dense layers of the head, before the output.
        pooling: How the head reduces the base's feature map (one of
            ``"avg"``, ``"max"``, ``"flatten"``).
        layers: The layer table of a stack model (``build_stack``), empty
            otherwise.
        default_activation: Hidden activation of a stack model
            (``"relu"``/``"sigmoid"``, changeable with
            ``build_model(activation=...)``); ``None`` for models without
            that option.
        default_output: ``"sigmoid"`` or ``"softmax"`` when
            ``build_model(output=None)``.
        weights_file: File name of the base's ImageNet ``include_top=False``
            weights in Keras' cache (``$KERAS_HOME/models``).
        weights_url: Where Keras downloads that file from.
        weights_hash: Its MD5 (as in ``keras.applications``), checked on
            every use.
    """

    name: str
    builder: Callable[..., keras.Model]
    kind: Literal["custom", "backbone"]
    description: str
    reference: str
    default_input_shape: tuple[int, int, int] = (224, 224, 1)
    min_size: int = 32
    default_dropout: float | None = None
    application: str | None = None
    preprocessing: str = "unit"
    head_units: tuple[int, ...] = ()
    pooling: str = "avg"
    layers: tuple[LayerSpec, ...] = ()
    default_activation: str | None = None
    default_output: OutputKind = "sigmoid"
    weights_file: str | None = None
    weights_url: str | None = None
    weights_hash: str | None = None


def _backbone(
    name: str,
    application: str,
    preprocessing: str,
    weights_file: str,
    weights_url: str,
    weights_hash: str,
    description: str,
    reference: str,
    head_units: tuple[int, ...] = (),
    default_dropout: float = 0.3,
    pooling: str = "avg",
    default_input_shape: tuple[int, int, int] = (224, 224, 1),
) -> ModelSpec:
    return ModelSpec(
        name=name,
        builder=build_backbone_classifier,
        kind="backbone",
        description=description,
        reference=reference,
        default_input_shape=default_input_shape,
        default_dropout=default_dropout,
        application=application,
        preprocessing=preprocessing,
        head_units=head_units,
        pooling=pooling,
        weights_file=weights_file,
        weights_url=weights_url,
        weights_hash=weights_hash,
    )


def _stack(
    name: str,
    description: str,
    reference: str,
    default_input_shape: tuple[int, int, int],
    *,
    activation: str = "relu",
    output: OutputKind = "sigmoid",
) -> ModelSpec:
    return ModelSpec(
        name=name,
        builder=build_stack,
        kind="custom",
        description=description,
        reference=reference,
        default_input_shape=default_input_shape,
        layers=STACKS[name],
        default_activation=activation,
        default_output=output,
    )


_KFOLD_STUDY = "ResNet50 K-fold cross-validation study on the Kermany et al. (2018) data"
_PYTORCH_REPORT = "PyTorch report: three custom CNNs and a ResNet-50 on the Kermany et al. data"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="cnn",
            builder=build_cnn,
            kind="custom",
            description="Eight 3x3 conv blocks (8..1024 filters), LeakyReLU, BN, dense 1024 head",
            reference="Reference custom-CNN notebook for the Kermany et al. (2018) data",
            default_input_shape=(224, 224, 1),
        ),
        ModelSpec(
            name="cnn-small",
            builder=build_cnn_small,
            kind="custom",
            description="CPU-friendly residual depthwise-separable CNN, ~0.21 M parameters",
            reference="cxr-pneumonia (this package)",
            default_input_shape=(224, 224, 1),
        ),
        ModelSpec(
            name="cnn-medium",
            builder=build_cnn_medium,
            kind="custom",
            description="cnn-small wider and one stage deeper, ~1.07 M parameters",
            reference="cxr-pneumonia (this package)",
            default_input_shape=(224, 224, 1),
        ),
        _stack(
            "dense-kfold",
            "Dense baseline: Flatten, dense 32, dense 8 (393,521 params at 64x64x3)",
            _KFOLD_STUDY,
            (64, 64, 3),
        ),
        _stack(
            "cnn-kfold",
            "L2-regularized small CNN baseline: conv 32, conv 64, dense 64",
            _KFOLD_STUDY,
            (64, 64, 3),
        ),
        _stack(
            "cnn1",
            "Three conv-BN-activation layers (one max-pool), linear; softmax",
            _PYTORCH_REPORT,
            (160, 160, 3),
            activation="sigmoid",
            output="softmax",
        ),
        _stack(
            "cnn2",
            "Four conv-BN-activation layers (5x5 then 3x3), two max-pools, dropout 0.2",
            _PYTORCH_REPORT,
            (160, 160, 3),
            activation="sigmoid",
            output="softmax",
        ),
        _stack(
            "cnn3",
            "Three conv-ReLU-max-pool blocks, dense 128 and 64; softmax",
            _PYTORCH_REPORT,
            (160, 160, 3),
            activation="relu",
            output="softmax",
        ),
        _backbone(
            "densenet121",
            "DenseNet121",
            "torch",
            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "https://storage.googleapis.com/tensorflow/keras-applications/densenet/"
            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "30ee3e1110167f948a6b9946edeeb738",
            "DenseNet-121 ImageNet base, global average pooling, dropout",
            "Huang et al. (2017), Densely Connected Convolutional Networks, CVPR",
        ),
        _backbone(
            "efficientnetb0",
            "EfficientNetB0",
            "raw",
            "efficientnetb0_notop.h5",
            "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
            "50bc09e76180e00e4465e1a485ddc09d",
            "EfficientNet-B0 ImageNet base, global average pooling, dropout",
            "Tan & Le (2019), EfficientNet: Rethinking Model Scaling for CNNs, ICML",
        ),
        _backbone(
            "resnet50",
            "ResNet50",
            "caffe",
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            f"{_KERAS_APPS}resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "4d473c1dd8becc155b73f8504c6f6626",
            "ResNet-50 ImageNet base, global average pooling, dropout",
            "He et al. (2016), Deep Residual Learning for Image Recognition, CVPR",
        ),
        _backbone(
            "resnet50-kfold",
            "ResNet50",
            "caffe",
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            f"{_KERAS_APPS}resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "4d473c1dd8becc155b73f8504c6f6626",
            "ResNet-50 ImageNet base, Flatten + dense 256 head (the KFold study's)",
            "He et al. (2016), Deep Residual Learning for Image Recognition, CVPR; " + _KFOLD_STUDY,
            head_units=(256,),
            default_dropout=0.0,
            pooling="flatten",
            default_input_shape=(64, 64, 3),
        ),
        _backbone(
            "vgg16",
            "VGG16",
            "caffe",
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            f"{_KERAS_APPS}vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "6d6bbae143d832006294945121d1f1fc",
            "VGG-16 ImageNet base, dense 256 + dropout head",
            "Simonyan & Zisserman (2015), Very Deep Convolutional Networks for "
            "Large-Scale Image Recognition, ICLR",
            head_units=(256,),
            default_dropout=0.5,
        ),
        _backbone(
            "vgg19",
            "VGG19",
            "caffe",
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            f"{_KERAS_APPS}vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "253f8cb515780f3b799900260a226db6",
            "VGG-19 ImageNet base, pooled dense 256 + dropout head",
            "Simonyan & Zisserman (2015), Very Deep Convolutional Networks for "
            "Large-Scale Image Recognition, ICLR",
            head_units=(256,),
            default_dropout=0.5,
        ),
    )
}
"""The registry: name -> [`ModelSpec`][cxr_pneumonia.models.registry.ModelSpec], sorted by name."""


def list_models() -> tuple[str, ...]:
    """Names of the registered models, sorted.

    Returns:
        The names, e.g. ``("cnn", "cnn-kfold", "cnn-medium", "cnn-small", ...)``.
    """
    return tuple(sorted(MODELS))


def get_model_spec(name: str) -> ModelSpec:
    """Look up a model's [`ModelSpec`][cxr_pneumonia.models.registry.ModelSpec].

    Args:
        name: A name from [`list_models`][cxr_pneumonia.models.registry.list_models].

    Returns:
        Its spec.

    Raises:
        UnknownModelError: If ``name`` is not registered.
    """
    spec = MODELS.get(name) if isinstance(name, str) else None
    if spec is None:
        msg = f"unknown model {name!r}; choose one of: {', '.join(list_models())}"
        raise UnknownModelError(msg)
    return spec


def build_model(
    name: str,
    *,
    input_shape: Sequence[int] = (224, 224, 1),
    weights: Weights = "auto",
    dropout: float | None = None,
    freeze_backbone: bool = True,
    strategy: tf.distribute.Strategy | None = None,
    output: OutputKind | None = None,
    activation: str | None = None,
    head: Head | None = None,
    seed: int | None = None,
) -> keras.Model:
    """Build a registered model, ready to compile.

    Every argument is checked before any graph is built. The model takes raw
    ``0..255`` pixels (``uint8`` or float) with the channel count of
    ``input_shape`` and does its own preprocessing; backbones accept 1 or 3
    channels (grayscale is repeated to RGB in the graph); for the custom CNNs
    the channel count of ``input_shape`` is what the model expects, and
    converting other inputs is the caller's job (``prepare_image(...,
    color_mode=...)``).

    Args:
        name: A name from [`list_models`][cxr_pneumonia.models.registry.list_models]; it becomes
            ``model.name``.
        input_shape: ``(height, width, channels)``, channels 1 or 3, height
            and width at least the spec's ``min_size`` (32).
        weights: ``"auto"``: ImageNet for backbones, random for custom CNNs;
            ``"imagenet"``: the base's ImageNet weights through Keras' cache
            (a file placed in ``$KERAS_HOME/models``, default
            ``~/.keras/models``, is used offline), backbones only; a path to
            a ``.weights.h5``, ``.keras`` or ``.h5`` file of this same model
            (built with the same arguments); ``None``: random weights.
        dropout: Dropout rate in ``[0, 1)``; ``None`` for the model's default.
        freeze_backbone: Freeze the ImageNet base (ignored by custom CNNs);
            see [`set_backbone_trainable`][cxr_pneumonia.models.backbones.set_backbone_trainable].
        strategy: Build the variables in this strategy's scope; ``None`` uses
            [`select_strategy`][cxr_pneumonia.devices.select_strategy]'s automatic choice. The
            model keeps it as ``model.distribute_strategy``, which
            ``model.fit`` trains with.
        output: ``"sigmoid"`` (one unit, the probability of PNEUMONIA) or
            ``"softmax"`` (two units, NORMAL then PNEUMONIA); ``None`` for
            the spec's ``default_output`` (softmax for ``cnn1``-``cnn3``, as
            the PyTorch report's two-class cross-entropy, sigmoid for the
            others). Both kinds train, evaluate, save and serve alike.
        activation: Hidden activation of a layer-table model (``cnn1``,
            ``cnn2``, ``cnn3``, ``cnn-kfold``, ``dense-kfold``): ``"relu"`` or
            ``"sigmoid"``; ``None`` for the spec's default. Refused for the
            other models.
        head: A [`Head`][cxr_pneumonia.models.backbones.Head] replacing an
            ImageNet model's head (pooling, dense widths, batch
            normalization), for a study whose head has no registry row;
            ``None`` keeps the spec's. Refused for the custom CNNs.
        seed: Seed of the random initial weights (and of the dropout layers'
            seed generators): the same seed gives the same model. It seeds
            Python, NumPy and TensorFlow globally
            (``keras.utils.set_random_seed``) just before the model is built;
            ``None`` leaves the global seeds alone.

    Returns:
        An uncompiled ``keras.Model`` with a float32 output: ``(N, 1)``
        sigmoid or ``(N, 2)`` softmax.

    Raises:
        UnknownModelError: If ``name`` is not registered.
        ValueError: For a bad ``input_shape``, ``dropout``, ``weights``
            (including ``"imagenet"`` for a custom CNN, and a weights file
            that does not fit the model), ``output`` or ``activation``.
        WeightsUnavailableError: If ImageNet weights can be neither found in
            the Keras cache nor downloaded, or a weights path does not exist.

    Examples:
        >>> model = build_model("cnn-small", input_shape=(224, 224, 1))
        >>> model.name
        'cnn-small'
    """
    spec = get_model_spec(name)
    shape = _check_input_shape(input_shape, spec)
    rate = _check_dropout(dropout)
    weights_path = _check_weights(weights, spec)
    output_kind = _check_output(output, spec)
    hidden = _check_activation(activation, spec)
    if head is not None and (spec.kind != "backbone" or not isinstance(head, Head)):
        msg = (
            f"head={head!r} is not allowed for {spec.name!r}: only the ImageNet models take a "
            "cxr_pneumonia.models.Head (e.g. Head(pooling='flatten', units=(256,)))"
        )
        raise ValueError(msg)
    if not isinstance(freeze_backbone, bool):
        msg = f"freeze_backbone={freeze_backbone!r} must be True or False"
        raise TypeError(msg)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        msg = f"seed={seed!r} must be an int >= 0 or None"
        raise ValueError(msg)
    if strategy is None:
        from cxr_pneumonia.devices import select_strategy

        strategy = select_strategy()
    else:
        _check_strategy(strategy)

    base_weights = None
    if spec.kind == "backbone" and weights in ("auto", "imagenet"):
        base_weights = imagenet_weights_path(spec)

    options: dict[str, Any] = {
        "dropout": rate if rate is not None else spec.default_dropout,
        "output": output_kind,
    }
    if spec.kind == "backbone":
        options.update(
            application=spec.application,
            preprocessing=spec.preprocessing,
            head_units=head.units if head is not None else spec.head_units,
            pooling=head.pooling if head is not None else spec.pooling,
            batch_norm=head.batch_norm if head is not None else False,
            base_weights=base_weights,
            freeze_backbone=freeze_backbone,
        )
    if spec.layers:
        options.update(layers_spec=spec.layers, activation=hidden)
    if seed is not None:
        import keras

        keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = spec.builder(shape, name=spec.name, **options)
        if weights_path is not None:
            _load_weights(model, weights_path)
    return model


def imagenet_weights_path(spec: ModelSpec) -> str:
    """Path of a backbone's ImageNet weights, from Keras' cache or downloaded there.

    Uses ``keras.utils.get_file`` with the spec's MD5, into
    ``$KERAS_HOME/models`` (``~/.keras/models`` when ``KERAS_HOME`` is unset),
    so a file placed there by hand works offline.

    Args:
        spec: A backbone spec.

    Returns:
        The local path of the ``*_notop.h5`` file.

    Raises:
        ValueError: If ``spec`` is not a backbone.
        WeightsUnavailableError: If the file is neither cached (with the right
            hash) nor downloadable.
    """
    if spec.weights_file is None or spec.weights_url is None:
        msg = f"model {spec.name!r} has no ImageNet weights (it is a {spec.kind} model)"
        raise ValueError(msg)
    import keras

    cache_dir = _keras_home()
    folder = Path(cache_dir) / "models"
    try:
        path = keras.utils.get_file(
            spec.weights_file,
            spec.weights_url,
            cache_subdir="models",
            file_hash=spec.weights_hash,
            cache_dir=cache_dir,
        )
    except Exception as exc:  # keras raises bare Exception for URL failures
        msg = (
            f"ImageNet weights for {spec.name!r} are not available: {spec.weights_file!r} is "
            f"not in {folder} (or its MD5 is not {spec.weights_hash}) and downloading it from "
            f"{spec.weights_url} failed ({type(exc).__name__}: {exc}). Place that file in "
            f"{folder} (the models folder under $KERAS_HOME, default ~/.keras), or pass "
            "weights=None to start from random weights."
        )
        raise WeightsUnavailableError(msg) from exc
    return str(path)


def _keras_home() -> str:
    """``$KERAS_HOME`` as set now, else Keras' own default (``~/.keras``)."""
    home = os.environ.get("KERAS_HOME")
    if home:
        return os.path.expanduser(home)
    return os.path.expanduser(os.path.join("~", ".keras"))


def _check_input_shape(input_shape: Sequence[int], spec: ModelSpec) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or shape != tuple(input_shape) or min(shape) <= 0:
        msg = (
            f"input_shape={input_shape!r} must be three positive integers "
            "(height, width, channels), e.g. (224, 224, 1)"
        )
        raise ValueError(msg)
    if shape[2] not in (1, 3):
        msg = f"input_shape={input_shape!r} has {shape[2]} channels; use 1 (grayscale) or 3 (RGB)"
        raise ValueError(msg)
    if min(shape[:2]) < spec.min_size:
        msg = (
            f"input_shape={input_shape!r} is too small for {spec.name!r}: height and width "
            f"must be at least {spec.min_size}"
        )
        raise ValueError(msg)
    return shape


def _check_output(output: str | None, spec: ModelSpec) -> OutputKind:
    if output is None:
        return spec.default_output
    if output not in OUTPUT_KINDS:
        msg = (
            f"output={output!r} is not an output kind; choose one of: "
            f"{', '.join(OUTPUT_KINDS)} (or None for {spec.name!r}'s default, "
            f"{spec.default_output!r})"
        )
        raise ValueError(msg)
    return output  # type: ignore[return-value]


def _check_activation(activation: str | None, spec: ModelSpec) -> str | None:
    if activation is None:
        return spec.default_activation
    if spec.default_activation is None:
        with_option = ", ".join(n for n, s in sorted(MODELS.items()) if s.default_activation)
        msg = (
            f"activation={activation!r} is not an option of {spec.name!r}; only the "
            f"layer-table models take one ({with_option}); leave it None"
        )
        raise ValueError(msg)
    if activation not in ACTIVATIONS:
        msg = f"activation={activation!r} is not allowed; choose one of: {', '.join(ACTIVATIONS)}"
        raise ValueError(msg)
    return activation


def _check_dropout(dropout: float | None) -> float | None:
    if dropout is None:
        return None
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        msg = f"dropout={dropout!r} must be None or a number in [0, 1)"
        raise ValueError(msg)
    return float(dropout)


def _check_weights(weights: Weights, spec: ModelSpec) -> Path | None:
    """Validate ``weights``; return the path of a weights file to load, if any."""
    if weights is None or weights == "auto":
        return None
    if weights == "imagenet":
        if spec.kind != "backbone":
            msg = (
                f"weights='imagenet' is not available for {spec.name!r}, a custom CNN with no "
                "pretrained weights; use weights=None (or 'auto') for random initialization, "
                "or a path to a weights file"
            )
            raise ValueError(msg)
        return None
    if not isinstance(weights, (str, os.PathLike)):
        msg = (
            f"weights={weights!r} must be 'auto', 'imagenet', None or the path of a "
            ".weights.h5 / .keras file"
        )
        raise ValueError(msg)
    path = Path(weights)
    if not path.name.endswith((".weights.h5", ".keras", ".h5")):
        msg = f"weights file {str(path)!r} must end with .weights.h5, .keras or .h5"
        raise ValueError(msg)
    if not path.is_file():
        msg = f"weights file {str(path)!r} does not exist"
        raise WeightsUnavailableError(msg)
    return path


def _check_strategy(strategy: object) -> None:
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.Strategy):
        msg = (
            f"strategy={strategy!r} must be a tf.distribute.Strategy "
            "(see cxr_pneumonia.select_strategy) or None"
        )
        raise TypeError(msg)


def _load_weights(model: keras.Model, path: Path) -> None:
    # Keras warns about every mismatching sub-container before it raises; those
    # warnings are noise next to our error, so they are only replayed on success.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except (ValueError, KeyError) as exc:
            failure: Exception | None = exc
        else:
            failure = None
    if failure is not None:
        msg = (
            f"weights file {str(path)!r} does not fit model {model.name!r} as built "
            f"(the same model name, input channels and options are needed): {failure}"
        )
        raise ValueError(msg) from failure
    for record in caught:
        warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
