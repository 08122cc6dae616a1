"""The model registry, builders, preprocessing layers and weights handling.

Tiny inputs only (32 px, the smallest size every keras.applications base
accepts) and ``weights=None``: no download ever happens here.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import keras
import numpy as np
import pytest

from cxr_pneumonia.exceptions import UnknownModelError, WeightsUnavailableError
from cxr_pneumonia.models import (
    BACKBONE_NAME,
    MODELS,
    Head,
    PixelPreprocessing,
    RepeatChannels,
    build_model,
    find_backbone,
    get_model_spec,
    list_models,
    set_backbone_trainable,
)
from cxr_pneumonia.models.cnn import CNN_MEDIUM_STAGES, build_cnn_medium, build_cnn_small

ALL_MODELS = (
    "cnn",
    "cnn-kfold",
    "cnn-medium",
    "cnn-small",
    "cnn1",
    "cnn2",
    "cnn3",
    "dense-kfold",
    "densenet121",
    "efficientnetb0",
    "resnet50",
    "resnet50-kfold",
    "vgg16",
    "vgg19",
)
SIZE = 32


def _pixels(channels: int, count: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, SIZE, SIZE, channels), dtype=np.uint8)


def _block_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point KERAS_HOME at an empty folder and make every download fail offline."""
    from keras.src.utils import file_utils

    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in tests")

    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    return home


# --- registry -----------------------------------------------------------------------


def test_list_models_reads_the_registry() -> None:
    assert list_models() == ALL_MODELS
    assert tuple(sorted(MODELS)) == list_models()
    for name in list_models():
        spec = get_model_spec(name)
        assert spec.name == name
        assert spec.kind in ("custom", "backbone")
        assert dataclasses.is_dataclass(spec)
        if spec.kind == "backbone":
            assert spec.application is not None
            assert spec.weights_file is not None
            assert spec.weights_file.endswith("notop.h5")
            assert spec.weights_hash is not None


def test_model_spec_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_model_spec("cnn").name = "other"  # type: ignore[misc]


def test_unknown_model_lists_the_choices() -> None:
    with pytest.raises(UnknownModelError) as info:
        build_model("resnet5")
    expected = "unknown model 'resnet5'; choose one of: " + ", ".join(ALL_MODELS)
    assert str(info.value) == expected
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"input_shape": (32, 32)}, ValueError),
        ({"input_shape": (32, 32, 2)}, ValueError),
        ({"input_shape": (16, 16, 1)}, ValueError),
        ({"input_shape": (32.5, 32, 1)}, ValueError),
        ({"dropout": 1.0}, ValueError),
        ({"dropout": -0.1}, ValueError),
        ({"weights": 3}, ValueError),
        ({"weights": "model.pt"}, ValueError),
        ({"freeze_backbone": "yes"}, TypeError),
        ({"strategy": "mirrored"}, TypeError),
        ({"output": "tanh"}, ValueError),
        ({"activation": "relu"}, ValueError),  # cnn-small has no activation option
        ({"head": Head(units=(8,))}, ValueError),  # nor a head
    ],
)
def test_arguments_are_checked_before_building(
    monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, object], error: type[Exception]
) -> None:
    def fail(*args: object, **kw: object) -> None:
        raise AssertionError("a graph was built before the arguments were checked")

    spec = dataclasses.replace(get_model_spec("cnn-small"), builder=fail)
    monkeypatch.setitem(MODELS, "cnn-small", spec)
    options: dict[str, object] = {"input_shape": (SIZE, SIZE, 1), "weights": None, **kwargs}
    with pytest.raises(error):
        build_model("cnn-small", **options)  # type: ignore[arg-type]


# --- every model --------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_builds_predicts_and_round_trips(name: str, tmp_path: Path) -> None:
    for channels in (1, 3):
        model = build_model(name, input_shape=(SIZE, SIZE, channels), weights=None)
        assert model.name == name
        assert model.output.dtype == "float32"
        images = _pixels(channels)
        probabilities = model.predict(images, verbose=0)
        width = 2 if get_model_spec(name).default_output == "softmax" else 1
        assert probabilities.shape == (2, width)
        assert probabilities.dtype == np.float32
        assert np.all((probabilities >= 0) & (probabilities <= 1))
    # The last model (3 channels): save, load in safe mode, same outputs.
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert loaded.name == name
    np.testing.assert_allclose(loaded.predict(images, verbose=0), probabilities, rtol=0, atol=0)


def test_uint8_and_float_inputs_agree() -> None:
    model = build_model("cnn-small", input_shape=(SIZE, SIZE, 1), weights=None)
    images = _pixels(1)
    from_uint8 = model(images, training=False)
    from_float = model(images.astype("float32"), training=False)
    np.testing.assert_allclose(np.asarray(from_uint8), np.asarray(from_float), atol=1e-6)


def test_cnn_matches_the_reference_parameter_count() -> None:
    model = build_model("cnn", input_shape=(300, 300, 3), weights=None)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert model.count_params() == 7_352_017
    assert trainable == 7_347_985
    # The notebook pools in all eight blocks at 300 px: 300 -> 1 px.
    assert len([la for la in model.layers if isinstance(la, keras.layers.MaxPooling2D)]) == 8


def test_cnn_layer_order_is_the_notebooks() -> None:
    """Conv2D -> BatchNormalization (from block 3) -> LeakyReLU -> MaxPooling2D."""
    model = build_model("cnn", input_shape=(300, 300, 3), weights=None)
    kinds = [type(la).__name__ for la in model.layers if la.name.startswith("block")]
    block2 = ["Conv2D", "LeakyReLU", "MaxPooling2D"]
    block3 = ["Conv2D", "BatchNormalization", "LeakyReLU", "MaxPooling2D"]
    assert kinds[3:6] == block2
    assert kinds[6:10] == block3
    assert kinds[:3] == block2


def _counts(model: keras.Model) -> tuple[int, int]:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return model.count_params(), trainable


@pytest.mark.parametrize(
    ("name", "shape", "total", "trainable"),
    [
        # Counts of the source studies' summaries.
        ("resnet50-kfold", (64, 64, 3), 25_685_377, 2_097_665),
        ("dense-kfold", (64, 64, 3), 393_521, 393_521),
        # Widths chosen here where the sources give none (see models/stacks.py).
        ("cnn-kfold", (64, 64, 3), 1_068_097, 1_068_097),
        ("cnn1", (160, 160, 3), 208_674, 208_594),
        ("cnn2", (160, 160, 3), 124_306, 124_114),
        ("cnn3", (160, 160, 3), 3_308_898, 3_308_898),
        # Pooled Dense-256 heads on frozen bases.
        ("vgg16", (300, 300, 3), 14_846_273, 131_585),
        ("vgg19", (300, 300, 3), 20_155_969, 131_585),
    ],
)
def test_source_models_parameter_counts(
    name: str, shape: tuple[int, int, int], total: int, trainable: int
) -> None:
    model = build_model(name, input_shape=shape, weights=None)
    assert _counts(model) == (total, trainable)


def test_pytorch_report_resnet50_is_the_registry_one_with_a_softmax() -> None:
    model = build_model("resnet50", input_shape=(160, 160, 3), weights=None, output="softmax")
    assert _counts(model) == (23_591_810, 4_098)


def test_head_option_replaces_a_backbones_head() -> None:
    head = Head(pooling="flatten", units=(64, 32), batch_norm=True)
    model = build_model("vgg19", input_shape=(SIZE, SIZE, 3), weights=None, head=head)
    kinds = [type(la).__name__ for la in model.layers[4:]]
    assert kinds == [
        "Flatten", "Dense", "BatchNormalization", "Dropout",
        "Dense", "BatchNormalization", "Dropout", "Dense",
    ]  # fmt: skip
    features = 1 * 1 * 512  # VGG-19 maps 32 px to 1 x 1
    expected = (features * 64 + 64) + 4 * 64 + (64 * 32 + 32) + 4 * 32 + (32 + 1)
    base = find_backbone(model).count_params()  # type: ignore[union-attr]
    assert model.count_params() - base == expected
    non_trainable = model.count_params() - _counts(model)[1] - base
    assert non_trainable == 2 * (64 + 32)  # the batch-norm statistics
    with pytest.raises(ValueError, match="choose one of: avg, max, flatten"):
        Head(pooling="mean")
    with pytest.raises(ValueError, match="integers >= 1"):
        Head(units=(0,))


def test_resnet50_kfold_head_is_flatten_dense_256() -> None:
    model = build_model("resnet50-kfold", input_shape=(64, 64, 3), weights=None)
    assert isinstance(model.get_layer("flatten"), keras.layers.Flatten)
    assert model.get_layer("flatten").output.shape[-1] == 2 * 2 * 2048
    assert model.get_layer("head_dense1").units == 256


def test_cnn_kfold_is_l2_regularized() -> None:
    model = build_model("cnn-kfold", input_shape=(SIZE, SIZE, 3), weights=None)
    regularized = [
        la.name for la in model.layers if getattr(la, "kernel_regularizer", None) is not None
    ]
    assert regularized == ["conv1", "conv2", "dense1"]
    assert len(model.losses) == 3


@pytest.mark.parametrize("name", ["cnn1", "cnn2", "cnn3"])
def test_report_cnns_take_a_hidden_activation(name: str) -> None:
    default = get_model_spec(name).default_activation
    for activation in ("relu", "sigmoid"):
        model = build_model(name, input_shape=(SIZE, SIZE, 3), weights=None, activation=activation)
        used = {la.activation.__name__ for la in model.layers if la.name.startswith("act")}
        assert used == {activation}
    assert default == ("relu" if name == "cnn3" else "sigmoid")
    with pytest.raises(ValueError, match="choose one of: relu, sigmoid"):
        build_model(name, input_shape=(SIZE, SIZE, 3), weights=None, activation="tanh")


def test_cnn1_layer_order_is_the_reports() -> None:
    model = build_model("cnn1", input_shape=(160, 160, 3), weights=None)
    kinds = [type(la).__name__ for la in model.layers[2:]]
    assert kinds == [
        "Conv2D", "BatchNormalization", "Activation",
        "Conv2D", "BatchNormalization", "MaxPooling2D", "Activation",
        "Conv2D", "BatchNormalization", "Activation",
        "Flatten", "Dense",
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["cnn", "cnn-small", "vgg19", "dense-kfold", "cnn1"])
def test_output_option_gives_sigmoid_or_softmax(name: str) -> None:
    images = _pixels(3, count=3)
    softmax = build_model(name, input_shape=(SIZE, SIZE, 3), weights=None, output="softmax")
    probabilities = np.asarray(softmax(images, training=False))
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    sigmoid = build_model(name, input_shape=(SIZE, SIZE, 3), weights=None, output="sigmoid")
    assert tuple(sigmoid.output.shape) == (None, 1)
    # Same body: the two differ by the output layer's one extra unit.
    hidden = sigmoid.get_layer("pneumonia").kernel.shape[0]
    assert softmax.count_params() - sigmoid.count_params() == hidden + 1


def test_cnn_builds_at_224_without_pooling_a_1x1_map() -> None:
    model = build_model("cnn", input_shape=(224, 224, 1), weights=None)
    assert model.get_layer("flatten").output.shape[-1] == 1024


def test_cnn_small_is_small() -> None:
    model = build_model("cnn-small", input_shape=(224, 224, 1), weights=None)
    assert model.count_params() < 1_000_000


def test_cnn_medium_is_cnn_small_wider_and_one_stage_deeper() -> None:
    small = build_model("cnn-small", input_shape=(224, 224, 1), weights=None)
    medium = build_model("cnn-medium", input_shape=(224, 224, 1), weights=None)
    assert 1_000_000 < medium.count_params() < 1_200_000
    assert medium.count_params() > 4 * small.count_params()
    # The same layer names as cnn-small (Grad-CAM and the OOD check find "gap" and the
    # stages alike), plus a fourth stage that halves the 7x7 map of 224 px to 4x4.
    small_names = {layer.name for layer in small.layers}
    medium_names = {layer.name for layer in medium.layers}
    assert small_names <= medium_names
    last = f"stage4_block{CNN_MEDIUM_STAGES[-1][1]}_out"
    assert tuple(medium.get_layer(last).output.shape) == (None, 4, 4, CNN_MEDIUM_STAGES[-1][0])
    assert medium.get_layer("gap").output.shape[-1] == CNN_MEDIUM_STAGES[-1][0]
    assert not any(name.startswith("stage4") for name in small_names)
    standard = build_cnn_medium((SIZE, SIZE, 1), preprocessing="standardize", dropout=0.1)
    assert standard.get_layer("preprocess").mode == "standardize"
    assert standard.get_layer("dropout").rate == 0.1
    assert standard.count_params() == build_cnn_medium((SIZE, SIZE, 1)).count_params()


def test_dropout_option_sets_the_rates() -> None:
    model = build_model("cnn", input_shape=(SIZE, SIZE, 1), weights=None, dropout=0.1)
    rates = {la.rate for la in model.layers if isinstance(la, keras.layers.Dropout)}
    assert rates == {0.1}


# --- backbones ----------------------------------------------------------------------


def test_backbone_is_frozen_and_can_be_unfrozen() -> None:
    model = build_model("efficientnetb0", input_shape=(SIZE, SIZE, 1), weights=None)
    base = find_backbone(model)
    assert base is not None
    assert base.name == BACKBONE_NAME
    assert not base.trainable
    head_only = len(model.trainable_weights)
    assert head_only == 2  # the output dense layer
    set_backbone_trainable(model, True)
    assert base.trainable
    assert len(model.trainable_weights) > head_only
    set_backbone_trainable(model, False)
    assert len(model.trainable_weights) == head_only

    unfrozen = build_model(
        "efficientnetb0", input_shape=(SIZE, SIZE, 3), weights=None, freeze_backbone=False
    )
    assert find_backbone(unfrozen).trainable  # type: ignore[union-attr]


def test_custom_cnn_has_no_backbone() -> None:
    model = build_model("cnn-small", input_shape=(SIZE, SIZE, 1), weights=None)
    assert find_backbone(model) is None
    with pytest.raises(ValueError, match="no 'backbone'"):
        set_backbone_trainable(model, True)


def test_vgg19_head_has_a_dense_layer() -> None:
    model = build_model("vgg19", input_shape=(SIZE, SIZE, 1), weights=None)
    assert model.get_layer("head_dense1").units == 256


# --- preprocessing layers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reference"),
    [
        ("caffe", keras.applications.vgg19.preprocess_input),
        ("torch", keras.applications.densenet.preprocess_input),
        ("raw", keras.applications.efficientnet.preprocess_input),
    ],
)
def test_preprocessing_matches_keras_applications(mode: str, reference: object) -> None:
    images = _pixels(3)
    expected = reference(images.astype("float32"))  # type: ignore[operator]
    got = PixelPreprocessing(mode)(images)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-4)


def test_unit_preprocessing_and_channel_repeat() -> None:
    images = _pixels(1)
    scaled = np.asarray(PixelPreprocessing("unit")(images))
    np.testing.assert_allclose(scaled, images / 255.0, atol=1e-6)
    rgb = np.asarray(RepeatChannels(3)(images))
    assert rgb.shape == (2, SIZE, SIZE, 3)
    assert np.array_equal(rgb[..., 2], images[..., 0])
    with pytest.raises(ValueError, match="preprocessing mode"):
        PixelPreprocessing("imagenet")


def test_standardize_preprocessing_ignores_global_brightness_and_contrast() -> None:
    rng = np.random.default_rng(0)
    images = rng.uniform(60, 160, size=(2, SIZE, SIZE, 1)).astype("float32")
    out = np.asarray(PixelPreprocessing("standardize")(images))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
    # the divisor adds one grey level
    std = images.std(axis=(1, 2, 3))
    np.testing.assert_allclose(
        out.std(axis=(1, 2, 3)), std / (std + 1.0), rtol=1e-4
    )  # 1 grey level
    shifted = np.asarray(PixelPreprocessing("standardize")(1.5 * (images - 100) + 110))
    np.testing.assert_allclose(shifted, out, atol=0.02)  # up to the epsilon's share
    flat = np.asarray(PixelPreprocessing("standardize")(np.full((1, 4, 4, 1), 255.0)))
    assert np.array_equal(flat, np.zeros_like(flat))  # no division by zero


def test_cnn_small_preprocessing_option() -> None:
    unit = build_model("cnn-small", input_shape=(SIZE, SIZE, 1))
    assert unit.get_layer("preprocess").mode == "unit"  # the shipped model's scaling
    standard = build_cnn_small((SIZE, SIZE, 1), preprocessing="standardize")
    assert standard.get_layer("preprocess").mode == "standardize"
    assert unit.count_params() == standard.count_params()
    with pytest.raises(ValueError, match="preprocessing mode"):
        build_cnn_small((SIZE, SIZE, 1), preprocessing="imagenet")


# --- weights ------------------------------------------------------------------------


def test_imagenet_is_refused_for_custom_cnns() -> None:
    for name in ("cnn", "cnn-small"):
        with pytest.raises(ValueError, match="not available for"):
            build_model(name, weights="imagenet")


def test_missing_imagenet_weights_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = _block_downloads(monkeypatch, tmp_path)
    with pytest.raises(WeightsUnavailableError) as info:
        build_model("resnet50", input_shape=(SIZE, SIZE, 1))  # weights="auto"
    message = str(info.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(home / "models") in message
    assert isinstance(info.value, OSError)


def test_imagenet_weights_placed_by_hand_work_offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    home = _block_downloads(monkeypatch, tmp_path)
    spec = get_model_spec("efficientnetb0")
    # A stand-in for the ImageNet file, in Keras' legacy h5 format, at the right place.
    source = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(SIZE, SIZE, 3)
    )
    target = home / "models" / spec.weights_file  # type: ignore[operator]
    target.parent.mkdir()
    with h5py.File(target, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    digest = hashlib.md5(target.read_bytes()).hexdigest()  # MD5, as Keras checks it
    monkeypatch.setitem(MODELS, spec.name, dataclasses.replace(spec, weights_hash=digest))

    model = build_model("efficientnetb0", input_shape=(SIZE, SIZE, 1), weights="imagenet")
    base = find_backbone(model)
    assert base is not None
    for got, want in zip(base.weights, source.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    # A corrupt file (wrong hash) is not trusted.
    target.write_bytes(b"not the weights")
    with pytest.raises(WeightsUnavailableError, match=spec.weights_file):
        build_model("efficientnetb0", input_shape=(SIZE, SIZE, 1), weights="imagenet")


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_weights_from_a_path(tmp_path: Path, suffix: str) -> None:
    source = build_model("cnn-small", input_shape=(SIZE, SIZE, 1), weights=None)
    path = tmp_path / f"trained{suffix}"
    if suffix == ".keras":
        source.save(path)
    else:
        source.save_weights(path)
    model = build_model("cnn-small", input_shape=(SIZE, SIZE, 1), weights=path)
    images = _pixels(1)
    np.testing.assert_array_equal(
        model.predict(images, verbose=0), source.predict(images, verbose=0)
    )


def test_weights_path_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_model("cnn-small", input_shape=(SIZE, SIZE, 1), weights=tmp_path / "x.weights.h5")
    other = build_model("cnn-small", input_shape=(SIZE, SIZE, 3), weights=None)
    path = tmp_path / "three.weights.h5"
    other.save_weights(path)
    with pytest.raises(ValueError, match="does not fit"):
        build_model("cnn", input_shape=(SIZE, SIZE, 1), weights=path)


# --- strategy and precision ---------------------------------------------------------


def test_model_keeps_its_strategy() -> None:
    import tensorflow as tf

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    model = build_model("cnn-small", input_shape=(SIZE, SIZE, 1), weights=None, strategy=strategy)
    assert model.distribute_strategy is strategy


def test_output_is_float32_under_mixed_precision() -> None:
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model("cnn-small", input_shape=(SIZE, SIZE, 1), weights=None)
        assert model.get_layer("stage1_block1_sep1").compute_dtype == "float16"
        assert model.predict(_pixels(1), verbose=0).dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy(previous)
