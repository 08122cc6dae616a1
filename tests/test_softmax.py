"""2-unit softmax models work everywhere a sigmoid one does: outputs, bundles, Predictor,
SavedModel export and Grad-CAM give the same PNEUMONIA probability as a sigmoid twin."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from cxr_pneumonia.bundle import load_bundle, save_model
from cxr_pneumonia.exceptions import BundleError
from cxr_pneumonia.outputs import output_kind, positive_probability, positive_probability_tensor
from cxr_pneumonia.predictor import Predictor


def twins() -> tuple[keras.Model, keras.Model]:
    """A sigmoid model and a softmax model computing the same PNEUMONIA probability.

    softmax([0, z])[1] == sigmoid(z), so the softmax head's logits are 0 and
    the sigmoid head's z.
    """
    keras.utils.set_random_seed(3)
    models = []
    for units in (1, 2):
        inputs = keras.Input((32, 32, 1), name="image")
        x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
        x = keras.layers.Conv2D(2, 3, activation="relu", name="conv")(x)
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
        activation = "sigmoid" if units == 1 else "softmax"
        outputs = keras.layers.Dense(units, activation=activation, name="out")(x)
        models.append(keras.Model(inputs, outputs, name=f"tiny{units}"))
    sigmoid, softmax = models
    conv = [np.full((3, 3, 1, 2), 1 / 9, "float32"), np.zeros(2, "float32")]
    conv[0][..., 1] = -1 / 9
    for model in models:
        model.get_layer("conv").set_weights(conv)
    sigmoid.get_layer("out").set_weights([np.array([[20.0], [1.0]], "float32"), np.array([-7.0])])
    softmax.get_layer("out").set_weights(
        [np.array([[0.0, 20.0], [0.0, 1.0]], "float32"), np.array([0.0, -7.0], "float32")]
    )
    return sigmoid, softmax


def images(count: int = 6) -> np.ndarray:
    levels = np.linspace(20, 235, count)
    rng = np.random.default_rng(0)
    noise = rng.integers(-10, 10, size=(count, 32, 32, 1))
    return np.clip(levels[:, None, None, None] + noise, 0, 255).astype(np.uint8)


# --- the one conversion ------------------------------------------------------------


def test_positive_probability_reads_both_kinds() -> None:
    sigmoid = np.array([[0.2], [0.9]])
    softmax = np.array([[0.8, 0.2], [0.1, 0.9]])
    np.testing.assert_allclose(positive_probability(sigmoid), [0.2, 0.9])
    np.testing.assert_allclose(positive_probability(softmax), [0.2, 0.9])
    np.testing.assert_allclose(positive_probability(np.array([0.2, 0.9])), [0.2, 0.9])
    # PNEUMONIA first in class_names: the sigmoid is P(class 1) = P(NORMAL).
    np.testing.assert_allclose(positive_probability(sigmoid, positive_index=0), [0.8, 0.1])
    np.testing.assert_allclose(positive_probability(softmax, positive_index=0), [0.8, 0.1])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        positive_probability(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="positive_index must be 0 or 1"):
        positive_probability(sigmoid, positive_index=2)


def test_tensor_version_agrees() -> None:
    import tensorflow as tf

    softmax = np.array([[0.8, 0.2], [0.1, 0.9]], "float32")
    for index in (0, 1):
        got = positive_probability_tensor(tf.constant(softmax), positive_index=index)
        np.testing.assert_allclose(got.numpy(), positive_probability(softmax, positive_index=index))
        got = positive_probability_tensor(tf.constant(softmax[:, 1:]), positive_index=index)
        np.testing.assert_allclose(
            got.numpy(), positive_probability(softmax[:, 1:], positive_index=index), atol=1e-7
        )


def test_output_kind_reads_the_model() -> None:
    sigmoid, softmax = twins()
    assert output_kind(sigmoid) == "sigmoid"
    assert output_kind(softmax) == "softmax"
    three = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match=r"end the model with Dense\(1, 'sigmoid'\)"):
        output_kind(three)


def test_twins_agree() -> None:
    sigmoid, softmax = twins()
    batch = images()
    a = positive_probability(sigmoid.predict(batch, verbose=0))
    b = positive_probability(softmax.predict(batch, verbose=0))
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert np.ptp(a) > 0.5  # the comparisons below mean something


# --- bundles, Predictor, export, Grad-CAM ------------------------------------------


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("softmax")
    sigmoid, softmax = twins()
    return (
        save_model(sigmoid, folder / "sigmoid", threshold=0.5),
        save_model(softmax, folder / "softmax", threshold=0.5),
    )


def test_bundle_metadata_records_the_output_kind(bundles: tuple[Path, Path]) -> None:
    sigmoid_path, softmax_path = bundles
    assert load_bundle(sigmoid_path)[1].output == "sigmoid"
    model, metadata = load_bundle(softmax_path)
    assert metadata.output == "softmax"
    assert json.loads((softmax_path / "metadata.json").read_text())["output"] == "softmax"
    assert output_kind(model) == "softmax"


def test_bundle_refuses_an_output_kind_that_contradicts_the_model(
    bundles: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(bundles[1], copy)
    meta = json.loads((copy / "metadata.json").read_text())
    meta["output"] = "sigmoid"
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="has a softmax output but the metadata says 'sigmoid'"):
        load_bundle(copy)


def test_old_bundles_without_the_field_read_as_sigmoid(
    bundles: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(bundles[0], copy)
    meta = json.loads((copy / "metadata.json").read_text())
    del meta["output"]
    (copy / "metadata.json").write_text(json.dumps(meta))
    assert load_bundle(copy)[1].output == "sigmoid"


def test_predictor_gives_the_same_probabilities(bundles: tuple[Path, Path]) -> None:
    batch = images()
    with Predictor.load(bundles[0]) as a, Predictor.load(bundles[1]) as b:
        assert b.output_kind == "softmax"
        np.testing.assert_allclose(a.predict_arrays(batch), b.predict_arrays(batch), atol=1e-6)
        labels_a = [p.label for p in a.predict(list(batch))]
        labels_b = [p.label for p in b.predict(list(batch))]
    assert labels_a == labels_b
    assert set(labels_a) == {"NORMAL", "PNEUMONIA"}


def test_savedmodel_export_of_a_softmax_bundle(bundles: tuple[Path, Path], tmp_path: Path) -> None:
    import tensorflow as tf

    from cxr_pneumonia.export import SIGNATURE_KEY, export_model

    batch = images()
    out = export_model(bundles[1], tmp_path / "serving", format="savedmodel")
    signature = tf.saved_model.load(str(out)).signatures[SIGNATURE_KEY]
    got = signature(image=tf.constant(batch))
    with Predictor.load(bundles[0]) as reference:
        expected = reference.predict_arrays(batch)
    np.testing.assert_allclose(got["probability"].numpy(), expected, atol=1e-5)


def test_gradcam_of_a_softmax_model_matches_its_sigmoid_twin(bundles: tuple[Path, Path]) -> None:
    image = images()[4]
    with Predictor.load(bundles[0]) as a, Predictor.load(bundles[1]) as b:
        ea, eb = a.explain(image), b.explain(image)
    assert ea.prediction.label == eb.prediction.label
    np.testing.assert_allclose(ea.heatmap, eb.heatmap, atol=1e-4)
    assert float(np.max(eb.heatmap)) > 0
