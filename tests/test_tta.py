"""Flip test-time augmentation inside the model: same meaning everywhere it is used."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import synthetic_xray
from cxr_pneumonia.bundle import load_bundle, save_model
from cxr_pneumonia.ensembles import ensemble
from cxr_pneumonia.models import build_model, has_flip_tta, with_flip_tta
from cxr_pneumonia.predictor import Predictor, explain, feature_maps


@pytest.fixture(scope="module")
def base() -> keras.Model:
    keras.utils.set_random_seed(1)
    model = build_model("cnn-small", input_shape=(32, 32, 1), weights=None)
    # Spread the output so flips make a visible difference.
    dense = model.get_layer("pneumonia")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 50.0, bias])
    return model


@pytest.fixture(scope="module")
def tta(base: keras.Model) -> keras.Model:
    return with_flip_tta(base)


def images(n: int = 5) -> np.ndarray:
    return np.stack([synthetic_xray(i % 2, 32, seed=i)[:, :, None] for i in range(n)])


def test_output_is_the_mean_over_image_and_mirror(base: keras.Model, tta: keras.Model) -> None:
    x = images()
    plain = base.predict_on_batch(x)
    mirrored = base.predict_on_batch(x[:, :, ::-1, :])
    assert not np.allclose(plain, mirrored)  # the check below means something
    np.testing.assert_allclose(tta.predict_on_batch(x), (plain + mirrored) / 2, atol=1e-6)
    assert tta.name == base.name
    assert tta.count_params() == base.count_params()  # weights shared, not copied


def test_wrapping_twice_is_refused(tta: keras.Model) -> None:
    with pytest.raises(ValueError, match="already averages"):
        with_flip_tta(tta)


def test_has_flip_tta_sees_wrapped_models_and_ensembles_of_them(
    base: keras.Model, tta: keras.Model
) -> None:
    other = build_model("cnn-small", input_shape=(32, 32, 1), weights=None)
    assert not has_flip_tta(base)
    assert has_flip_tta(tta)
    assert has_flip_tta(ensemble([tta, with_flip_tta(other)]))  # every member averages
    assert not has_flip_tta(ensemble([tta, other]))  # one member does not
    both = ensemble([base, other], tta=True)
    assert has_flip_tta(both)
    x = images()
    flipped = [
        (m.predict_on_batch(x) + m.predict_on_batch(x[:, :, ::-1])) / 2 for m in (base, other)
    ]
    np.testing.assert_allclose(both.predict_on_batch(x), np.mean(flipped, axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="already averages"):
        with_flip_tta(both)


def test_bundle_round_trip_in_safe_mode(base: keras.Model, tmp_path: Path) -> None:
    import io
    import zipfile

    import h5py

    trained = keras.models.clone_model(base)
    trained.set_weights(base.get_weights())
    trained.compile(optimizer="adam", loss="binary_crossentropy")
    trained.fit(images(4), np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    tta = with_flip_tta(trained)  # the trained model, with its optimizer, nested
    path = save_model(tta, tmp_path / "tta", threshold=0.5)
    with zipfile.ZipFile(path / "model.keras") as archive:
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        names: list[str] = []
        weights.visit(names.append)
    assert not [name for name in names if "optimizer" in name]
    loaded, metadata = load_bundle(path)
    assert metadata.model_name == "cnn-small"
    np.testing.assert_allclose(
        loaded.predict_on_batch(images()), tta.predict_on_batch(images()), atol=1e-6
    )


def test_predictor_grad_cam_and_feature_maps_work_through_the_wrapper(
    tta: keras.Model, tmp_path: Path
) -> None:
    predictor = Predictor.load(save_model(tta, tmp_path / "tta", threshold=0.5))
    x = images(3)
    np.testing.assert_allclose(
        predictor.predict_arrays(x), tta.predict_on_batch(x).reshape(-1), atol=1e-6
    )
    image = synthetic_xray(1, 48, seed=3)
    result = explain(predictor, image, layer="stage1_block1_out")
    assert result.heatmap.shape == (48, 48)
    assert result.layer == "cnn-small/stage1_block1_out"
    assert result.heatmap.min() >= 0.0
    assert result.heatmap.max() <= 1.0
    maps = feature_maps(predictor, image, layers=["stem1_relu"])
    assert maps["cnn-small/stem1_relu"].shape == (16, 16, 16)  # the unflipped image only
