"""`export_model`: a SavedModel for TF Serving and a TFLite file that agree with the bundle."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cxr_pneumonia.bundle import save_model
from cxr_pneumonia.exceptions import BundleError
from cxr_pneumonia.export import EXPORT_FORMATS, SIGNATURE_KEY, export_model
from cxr_pneumonia.predictor import Predictor

SIZE = 32


def tflite_interpreter(path: Path) -> Any:
    """A TFLite interpreter: LiteRT's when installed, else TensorFlow's (deprecated since 2.20)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():
            # tf.lite.Interpreter warns (UserWarning) that LiteRT replaces it; checked by hand.
            warnings.filterwarnings(
                "ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated"
            )
            return tf.lite.Interpreter(model_path=str(path))
    return Interpreter(model_path=str(path))


def run_savedmodel(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Call the ``serving_default`` signature as TF Serving would."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures[SIGNATURE_KEY]
    outputs = signature(image=tf.constant(images, dtype=tf.uint8))
    return {name: value.numpy() for name, value in outputs.items()}


def run_tflite(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Run the TFLite file's ``serving_default`` signature on a batch."""
    runner = tflite_interpreter(path).get_signature_runner(SIGNATURE_KEY)
    return dict(runner(image=images))


def random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 1), dtype=np.uint8)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained cnn-small bundle whose weights are randomised so scores spread out."""
    from cxr_pneumonia.models import build_model

    model = build_model("cnn-small", input_shape=(SIZE, SIZE, 1), weights=None)
    rng = np.random.default_rng(0)
    for variable in model.trainable_weights:
        variable.assign(rng.normal(0.0, 0.3, tuple(variable.shape)).astype("float32"))
    return save_model(model, tmp_path_factory.mktemp("export") / "bundle", threshold=0.4)


@pytest.fixture(scope="module")
def reference(bundle: Path) -> tuple[np.ndarray, np.ndarray]:
    images = random_images(5)
    with Predictor.load(bundle) as predictor:
        probabilities = predictor.predict_arrays(images)
    assert np.ptp(probabilities) > 1e-3  # the comparison below means something
    return images, probabilities


def test_savedmodel_signature_gives_the_bundles_probabilities(
    bundle: Path, reference: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    import tensorflow as tf

    images, expected = reference
    out = export_model(bundle, tmp_path / "serving" / "1", format="savedmodel")
    assert out == tmp_path / "serving" / "1"
    assert (out / "saved_model.pb").is_file()
    signature = tf.saved_model.load(str(out)).signatures[SIGNATURE_KEY]
    (spec,) = signature.structured_input_signature[1].values()
    assert spec.dtype == tf.uint8
    assert spec.name == "image"
    assert tuple(spec.shape) == (None, SIZE, SIZE, 1)
    got = run_savedmodel(out, images)
    np.testing.assert_allclose(got["probability"], expected, atol=1e-5)
    np.testing.assert_array_equal(got["pneumonia"], got["probability"] >= 0.4)
    assert not list(tmp_path.joinpath("serving").glob(".*"))  # no temporary folder left


def test_tflite_file_gives_the_bundles_probabilities(
    bundle: Path, reference: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    images, expected = reference
    out = export_model(bundle, tmp_path / "model.tflite", format="tflite")
    assert out.is_file()
    got = run_tflite(out, images)
    np.testing.assert_allclose(got["probability"], expected, atol=1e-5)
    np.testing.assert_array_equal(got["pneumonia"], got["probability"] >= 0.4)
    one = run_tflite(out, images[:1])  # any batch size
    np.testing.assert_allclose(one["probability"], expected[:1], atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]


def test_existing_output_needs_overwrite(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.tflite"
    out.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_model(bundle, out, format="tflite")
    assert out.read_bytes() == b"old"


def test_overwrite_replaces_a_folder_with_a_file(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.tflite"
    out.mkdir()
    (out / "junk").write_text("x")
    export_model(bundle, out, format="tflite", overwrite=True)
    assert out.is_file()
    assert out.read_bytes()[4:8] == b"TFL3"  # the FlatBuffer identifier of TFLite files


def test_unknown_format_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown export format 'onnx'; choose one of"):
        export_model(tmp_path / "no-bundle", tmp_path / "out", format="onnx")
    assert EXPORT_FORMATS == ("savedmodel", "tflite")


def test_missing_bundle_is_a_bundle_error_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no model bundle"):
        export_model(tmp_path / "missing", tmp_path / "out" / "m.tflite", format="tflite")
    assert not (tmp_path / "out").exists()
