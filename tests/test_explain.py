"""Grad-CAM and feature maps, for flat models and backbones nested as sub-models."""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
from PIL import Image

from cxr_pneumonia.gradcam import conv_layer_names, grad_cam, jet_colormap, layer_outputs
from cxr_pneumonia.images import prepare_image
from cxr_pneumonia.predictor import Explanation, Prediction, Predictor, explain, feature_maps


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(2)
    inputs = keras.Input((32, 32, 1), name="image")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(6, 3, name="conv2")(x)
    x = keras.layers.Activation("relu", name="conv2_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="out")(x)
    return keras.Model(inputs, outputs, name="tiny")


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(tiny_model())


def image(seed: int, size: tuple[int, int] = (40, 56)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = rng.uniform(0.2, 0.8, size=2)
    blob = 150 * np.exp(-(((xx / w - cx) ** 2 + (yy / h - cy) ** 2) / 0.02))
    return np.clip(50 + blob + rng.normal(0, 10, (h, w)), 0, 255).astype(np.uint8)


def check(result: Explanation, size: tuple[int, int]) -> None:
    assert isinstance(result.prediction, Prediction)
    assert result.heatmap.shape == size
    assert result.heatmap.dtype == np.float32
    assert 0.0 <= result.heatmap.min() <= result.heatmap.max() <= 1.0
    assert result.overlay.mode == "RGB"
    assert result.overlay.size == (size[1], size[0])


def test_heatmap_at_input_size_and_responds(predictor: Predictor) -> None:
    first, second = explain(predictor, image(0)), explain(predictor, image(1))
    check(first, (40, 56))
    assert first.layer == "conv2_relu"
    assert first.heatmap.max() == pytest.approx(1.0)
    assert np.abs(first.heatmap - second.heatmap).max() > 0.1
    assert first.prediction == predictor.predict(image(0))


def test_inputs_of_any_kind(predictor: Predictor, tmp_path) -> None:
    pixels = image(3, size=(64, 48))
    path = tmp_path / "x.png"
    Image.fromarray(pixels).save(path)
    buffer = io.BytesIO(path.read_bytes())
    for x in (path, str(path), path.read_bytes(), buffer, Image.fromarray(pixels), pixels):
        result = predictor.explain(x)
        check(result, (64, 48))
    assert predictor.explain(path).prediction.source == str(path)


def test_explicit_and_bad_layer(predictor: Predictor) -> None:
    assert explain(predictor, image(0), layer="conv1").layer == "conv1"
    with pytest.raises(ValueError, match=r"no layer named 'nope'.*conv1, conv2"):
        explain(predictor, image(0), layer="nope")
    with pytest.raises(ValueError, match="does not output a feature map"):
        explain(predictor, image(0), layer="gap")


def test_bare_keras_model(predictor: Predictor) -> None:
    result = explain(predictor.model, image(0))
    np.testing.assert_allclose(result.heatmap, explain(predictor, image(0)).heatmap, atol=1e-5)


def test_feature_maps(predictor: Predictor) -> None:
    maps = feature_maps(predictor, image(0))
    assert list(maps) == ["conv1", "conv2"]
    assert maps["conv1"].shape == (30, 30, 4)
    assert maps["conv2"].shape == (28, 28, 6)
    assert maps["conv1"].dtype == np.float32
    only = feature_maps(predictor, image(0), layers=["conv2_relu"])
    assert list(only) == ["conv2_relu"]
    assert only["conv2_relu"].min() >= 0
    assert conv_layer_names(predictor.model) == ["conv1", "conv2"]


def test_gradcam_works_on_a_model_and_a_prepared_batch(predictor: Predictor) -> None:
    batch = np.stack([prepare_image(image(i), size=(32, 32)) for i in range(3)])
    cams = grad_cam(predictor.model, batch, class_index=1)
    assert cams.shape == (3, 28, 28)
    assert cams.dtype == np.float32
    # one image at a time gives the same heatmaps as the batch
    for i in range(3):
        alone = grad_cam(predictor.model, batch[i : i + 1], class_index=1)[0]
        np.testing.assert_allclose(alone, cams[i], atol=1e-5)
    # the other class's evidence is another map
    other = grad_cam(predictor.model, batch, class_index=0)
    assert np.abs(other - cams).max() > 0.1
    maps = layer_outputs(predictor.model, batch, layers=["conv1"])
    assert maps["conv1"].shape == (3, 30, 30, 4)
    with pytest.raises(ValueError, match="class_index must be 0 or 1"):
        grad_cam(predictor.model, batch, class_index=2)


def test_explain_uses_the_predicted_class(predictor: Predictor) -> None:
    x = image(0)
    result = predictor.explain(x)
    batch = prepare_image(x, size=(32, 32))[np.newaxis]
    index = predictor.class_names.index(result.prediction.label)
    cam = grad_cam(predictor.model, batch, class_index=index)[0]
    expected = np.asarray(
        Image.fromarray(cam).resize((56, 40), resample=Image.Resampling.BILINEAR)
    ).clip(0, 1)
    np.testing.assert_allclose(result.heatmap, expected / expected.max(), atol=1e-5)


def test_jet_colormap_is_matplotlibs_jet() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    for values in (
        np.linspace(0.0, 1.0, 10_001),
        rng.random(50_000).astype(np.float32),
        np.arange(257, dtype=np.float32) / 256,  # every table edge
    ):
        expected = matplotlib.colormaps["jet"](values, bytes=True)[..., :3]
        np.testing.assert_array_equal(jet_colormap(values), expected)
    np.testing.assert_array_equal(jet_colormap(np.array([-1.0, 2.0])), jet_colormap([0.0, 1.0]))


def test_jet_colormap() -> None:
    colors = jet_colormap(np.array([0.0, 0.5, 1.0]))
    assert colors.dtype == np.uint8
    assert colors[0, 2] > 100  # blue at 0
    assert colors[0, 0] == 0
    assert colors[1, 1] == 255  # green in the middle
    assert colors[2, 0] > 100  # red at 1
    assert colors[2, 2] == 0


# --- registry models at 32 px: the last stage is 1 x 1 there, so the response to the
# image is checked on an earlier stage named explicitly. ---------------------------------


@pytest.fixture(scope="module")
def models():
    return pytest.importorskip("cxr_pneumonia.models")


@pytest.mark.parametrize(
    ("name", "default", "earlier"),
    [
        ("cnn-small", "stage3_block2_out", "stem2_relu"),
        ("cnn", "block8_act", "block2_act"),
    ],
)
def test_registry_cnns(models, name: str, default: str, earlier: str) -> None:
    predictor = Predictor(models.build_model(name, input_shape=(32, 32, 1), weights=None))
    result = predictor.explain(image(0))
    check(result, (40, 56))
    assert result.layer == default
    first = predictor.explain(image(0), layer=earlier)
    second = predictor.explain(image(1), layer=earlier)
    check(first, (40, 56))
    assert np.abs(first.heatmap - second.heatmap).max() > 0.05


def test_nested_backbone(models) -> None:
    model = models.build_model("resnet50", input_shape=(32, 32, 1), weights=None)
    predictor = Predictor(model)
    result = predictor.explain(image(0))
    check(result, (40, 56))
    assert result.layer == "backbone/conv5_block3_out"
    first = predictor.explain(image(0), layer="backbone/conv3_block4_out")
    second = predictor.explain(image(1), layer="conv3_block4_out")  # inner name alone works
    assert second.layer == "backbone/conv3_block4_out"
    assert np.abs(first.heatmap - second.heatmap).max() > 0.05
    maps = feature_maps(predictor, image(0), layers=["backbone/conv1_conv", "conv4_block6_out"])
    assert maps["backbone/conv1_conv"].shape == (16, 16, 64)
    assert maps["backbone/conv4_block6_out"].shape == (2, 2, 1024)
    with pytest.raises(ValueError, match="backbone/conv1_conv"):
        predictor.explain(image(0), layer="conv99")
