"""The out-of-distribution check: features, fitting, scoring, bundles and the Predictor."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import synthetic_xray
from cxr_pneumonia import predictor as predictor_module
from cxr_pneumonia.bundle import (
    METADATA_FILE,
    MODEL_FILE,
    add_ood_check,
    load_ood_check,
    read_metadata,
    save_model,
)
from cxr_pneumonia.exceptions import BundleError, OutOfDistributionError
from cxr_pneumonia.models import with_flip_tta
from cxr_pneumonia.ood import (
    OOD_FILE,
    OODCheck,
    _gaussian,
    default_feature_layers,
    extract_features,
    feature_model,
    fit_ood_check,
    make_feature_function,
)
from cxr_pneumonia.predictor import Predictor

SIZE = 32


def tiny_model(seed: int = 0, name: str = "tiny") -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(12, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="out")(x)
    return keras.Model(inputs, outputs, name=name)


def ensemble(members: list[keras.Model]) -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    outputs = keras.layers.Average(name="average")([m(inputs) for m in members])
    return keras.Model(inputs, outputs, name="ensemble")


def xrays(count: int, start: int = 0) -> np.ndarray:
    return np.stack(
        [synthetic_xray(i % 2, SIZE, seed=start + i)[..., None] for i in range(count)]
    ).astype(np.uint8)


def text_image() -> np.ndarray:
    image = Image.new("L", (SIZE * 4, SIZE * 4), 250)
    draw = ImageDraw.Draw(image)
    for row in range(0, SIZE * 4, 10):
        draw.text((2, row), "Invoice total 1234.00", fill=0)
    return np.asarray(image.resize((SIZE, SIZE)))[..., None]


def not_xrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {
        "white": np.full((SIZE, SIZE, 1), 255, np.uint8),
        "black": np.zeros((SIZE, SIZE, 1), np.uint8),
        "noise": rng.integers(0, 256, (SIZE, SIZE, 1)).astype(np.uint8),
        "text": text_image(),
    }


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return tiny_model()


@pytest.fixture(scope="module")
def check(model: keras.Model) -> OODCheck:
    return fit_ood_check(model, xrays(160), xrays(100, start=1000))


# --- features ------------------------------------------------------------------------------


def test_default_feature_layers_walk_back_over_dropout(model: keras.Model) -> None:
    assert default_feature_layers(model) == ("gap",)


def test_default_feature_layers_look_inside_wrappers() -> None:
    assert default_feature_layers(with_flip_tta(tiny_model())) == ("tiny/gap",)
    members = [tiny_model(seed=i, name=f"member{i}") for i in range(2)]
    assert default_feature_layers(ensemble(members)) == ("member0/gap", "member1/gap")


def test_default_feature_layers_refuse_a_model_without_classifier() -> None:
    inputs = keras.Input((SIZE, SIZE, 1))
    headless = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs), name="headless")
    with pytest.raises(ValueError, match="no Dense classifier"):
        default_feature_layers(headless)


def test_feature_model_returns_prediction_and_features_in_one_pass(model: keras.Model) -> None:
    images = xrays(4)
    output, gap = feature_model(model, ["gap"])(images.astype("float32"))
    np.testing.assert_allclose(output, model(images.astype("float32")), rtol=1e-5, atol=1e-6)
    conv = keras.Model(model.inputs[0], model.get_layer("conv2").output)(images.astype("float32"))
    np.testing.assert_allclose(gap, np.mean(conv, axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_feature_model_names_an_unknown_layer(model: keras.Model) -> None:
    with pytest.raises(ValueError, match="no layer 'nope'"):
        feature_model(model, ["nope"])


def test_features_of_a_tta_model_average_image_and_mirror() -> None:
    inner = tiny_model()
    wrapped = with_flip_tta(inner)
    images = xrays(3)
    outputs, (features,) = extract_features(
        make_feature_function(wrapped, ["tiny/gap"], (SIZE, SIZE, 1)), images
    )
    gap = keras.Model(inner.inputs[0], inner.get_layer("gap").output)
    expected = (gap(images.astype("float32")) + gap(images[:, :, ::-1].astype("float32"))) / 2
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        outputs, wrapped(images.astype("float32")).numpy(), rtol=1e-5, atol=1e-6
    )


def test_ensemble_features_one_block_per_member() -> None:
    members = [tiny_model(seed=i, name=f"member{i}") for i in range(2)]
    function = make_feature_function(
        ensemble(members), ["member0/gap", "member1/gap"], (SIZE, SIZE, 1)
    )
    _, features = extract_features(function, xrays(5))
    assert [f.shape for f in features] == [(5, 12), (5, 12)]
    assert not np.allclose(features[0], features[1])


def test_an_ensemble_bundle_of_tta_members_gets_a_check_per_member(tmp_path: Path) -> None:
    from cxr_pneumonia.ensembles import ensemble as make_ensemble

    members = [with_flip_tta(tiny_model(seed=i, name=f"m{i}")) for i in range(2)]
    combined = make_ensemble(members)
    layers = default_feature_layers(combined)
    assert len(layers) == 2
    assert all(layer.endswith("/gap") for layer in layers)
    path = save_model(combined, tmp_path / "ens", ood_data={"train": xrays(40)})
    predictor = Predictor.load(path, num_workers=1)
    assert predictor.ood_check is not None
    assert predictor.ood_check.feature_layers == layers
    predictions = predictor.predict([*xrays(2, start=50), not_xrays()["noise"]])
    assert [p.in_distribution for p in predictions][-1] is False


# --- fitting and scoring ---------------------------------------------------------------------


def test_shrunk_precision_matches_scikit_learn_ledoit_wolf() -> None:
    from sklearn.covariance import LedoitWolf

    values = np.random.default_rng(0).normal(size=(50, 6)) @ np.diag([1, 2, 3, 0.5, 0.1, 4])
    mean, precision = _gaussian(values)
    expected = LedoitWolf().fit(values)
    np.testing.assert_allclose(mean, expected.location_)
    np.testing.assert_allclose(precision, expected.precision_, rtol=1e-4)


def test_check_accepts_validation_xrays_and_flags_other_images(
    model: keras.Model, check: OODCheck
) -> None:
    function = make_feature_function(model, check.feature_layers, (SIZE, SIZE, 1))
    _, held_out = extract_features(function, xrays(100, start=5000))
    assert check.accepts(check.score(held_out)).mean() >= 0.95
    others = not_xrays()
    _, features = extract_features(function, np.stack(list(others.values())))
    scores = check.score(features)
    assert not check.accepts(scores).any(), dict(zip(others, scores, strict=True))
    assert check.stats["calibration"] == "validation"
    assert check.stats["n_fit"] == 160
    assert check.stats["calibration_accepted"] >= 0.99


def test_threshold_is_the_acceptance_quantile_of_validation_scores(model: keras.Model) -> None:
    validation = xrays(100, start=1000)
    strict = fit_ood_check(model, xrays(160), validation, acceptance=0.9, shifted_copies=0)
    function = make_feature_function(model, strict.feature_layers, (SIZE, SIZE, 1))
    _, features = extract_features(function, validation)
    accepted = strict.accepts(strict.score(features)).mean()
    assert 0.9 <= accepted <= 0.92


def test_shifted_copies_join_the_fit_and_the_calibration(model: keras.Model) -> None:
    train, validation = xrays(60), xrays(40, start=1000)
    plain = fit_ood_check(model, train, validation, shifted_copies=0)
    shifted = fit_ood_check(model, train, validation, shifted_copies=2, seed=4)
    again = fit_ood_check(model, train, validation, shifted_copies=2, seed=4)
    assert shifted.stats["shifted_copies"] == 2
    assert shifted.stats["n_calibration"] == 40
    assert again.threshold == shifted.threshold  # the shifts' draw is seeded
    assert not np.allclose(plain.means[0], shifted.means[0])


def test_without_validation_images_the_threshold_comes_from_training(model: keras.Model) -> None:
    fitted = fit_ood_check(model, xrays(60), None)
    assert fitted.stats["calibration"] == "train"
    assert fitted.stats["n_calibration"] == 60


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"acceptance": 0.3}, "acceptance must be"),
        ({"acceptance": True}, "acceptance must be"),
        ({"layers": ["missing"]}, "no layer 'missing'"),
        ({"shifted_copies": -1}, "shifted_copies must be"),
    ],
)
def test_fit_refuses_bad_options(model: keras.Model, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_ood_check(model, xrays(4), **kwargs)


def test_fit_refuses_images_of_the_wrong_shape(model: keras.Model) -> None:
    with pytest.raises(ValueError, match=r"train_images must be uint8 images \(N, 32, 32, 1\)"):
        fit_ood_check(model, np.zeros((4, 16, 16, 1), np.uint8))
    with pytest.raises(ValueError, match="at least 2 images"):
        fit_ood_check(model, xrays(1))


def test_non_finite_features_are_never_accepted(check: OODCheck) -> None:
    features = np.full((1, check.dims[0]), np.nan)
    scores = check.score([features])
    assert np.isinf(scores[0])
    assert not check.accepts(scores)[0]


def test_check_round_trips_through_metadata_and_bytes(check: OODCheck) -> None:
    again = OODCheck.from_parts(json.loads(json.dumps(check.to_metadata())), check.to_bytes())
    assert again.feature_layers == check.feature_layers
    assert again.threshold == check.threshold
    features = [np.random.default_rng(0).normal(size=(5, check.dims[0]))]
    np.testing.assert_allclose(again.score(features), check.score(features), rtol=1e-5)


def test_from_parts_names_what_is_wrong(check: OODCheck) -> None:
    meta = check.to_metadata()
    with pytest.raises(ValueError, match="feature_layers"):
        OODCheck.from_parts({**meta, "feature_layers": "gap"}, check.to_bytes())
    with pytest.raises(ValueError, match="does not hold the arrays of 2"):
        OODCheck.from_parts({**meta, "feature_layers": ["gap", "x"]}, check.to_bytes())
    with pytest.raises(ValueError, match="method 'knn' is not supported"):
        OODCheck.from_parts({**meta, "method": "knn"}, check.to_bytes())


# --- bundles -------------------------------------------------------------------------------------


def test_save_model_fits_and_stores_the_check(tmp_path: Path, model: keras.Model) -> None:
    splits = {"train": xrays(80), "validation": xrays(40, start=1000)}
    path = save_model(model, tmp_path / "b", ood_data=splits)
    meta = read_metadata(path)
    assert meta.ood is not None
    assert meta.ood["feature_layers"] == ["gap"]
    assert meta.ood["stats"]["n_fit"] == 80
    assert (path / OOD_FILE).stat().st_size < 4096  # 12 features: a mean and a 12x12 matrix
    loaded = load_ood_check(path)
    assert loaded is not None
    assert loaded.threshold == pytest.approx(meta.ood["threshold"])


def test_save_model_refuses_both_data_and_check(
    tmp_path: Path, model: keras.Model, check: OODCheck
) -> None:
    with pytest.raises(ValueError, match="not both"):
        save_model(model, tmp_path / "b", ood_data={"train": xrays(4)}, ood_check=check)
    with pytest.raises(ValueError, match="ood_data must be"):
        save_model(model, tmp_path / "c", ood_data=xrays(4))
    assert not (tmp_path / "b").exists()


def test_save_model_refuses_a_check_of_another_model(tmp_path: Path, check: OODCheck) -> None:
    other = with_flip_tta(tiny_model())
    with pytest.raises(ValueError, match="no layer 'gap'"):
        save_model(other, tmp_path / "b", ood_check=check)


def test_tampered_or_missing_check_file_is_refused(
    tmp_path: Path, model: keras.Model, check: OODCheck
) -> None:
    path = save_model(model, tmp_path / "b", ood_check=check)
    data = bytearray((path / OOD_FILE).read_bytes())
    data[-20] ^= 0xFF
    (path / OOD_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the SHA-256"):
        Predictor.load(path)
    (path / OOD_FILE).unlink()
    with pytest.raises(BundleError, match="ood-fit"):
        load_ood_check(path)


def test_add_ood_check_to_an_existing_bundle(
    tmp_path: Path, model: keras.Model, check: OODCheck
) -> None:
    path = save_model(model, tmp_path / "old", threshold=0.3)
    assert load_ood_check(path) is None
    before = read_metadata(path)
    model_bytes = (path / MODEL_FILE).read_bytes()
    add_ood_check(path, check)
    after = read_metadata(path)
    assert (path / MODEL_FILE).read_bytes() == model_bytes
    assert after.sha256 == before.sha256
    assert after.threshold == 0.3
    assert after.ood is not None
    assert after.ood["threshold"] == check.threshold
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # nothing left beside it
    assert Predictor.load(path).ood_check is not None


def test_add_ood_check_refuses_a_check_for_other_layers(tmp_path: Path, check: OODCheck) -> None:
    path = save_model(with_flip_tta(tiny_model()), tmp_path / "tta")
    with pytest.raises(BundleError, match="does not fit this model"):
        add_ood_check(path, check)
    assert read_metadata(path).ood is None


def test_metadata_without_ood_keeps_the_old_format(tmp_path: Path, model: keras.Model) -> None:
    path = save_model(model, tmp_path / "b")
    assert "ood" not in json.loads((path / METADATA_FILE).read_text())


# --- the Predictor ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checked_bundle(
    tmp_path_factory: pytest.TempPathFactory, model: keras.Model, check: OODCheck
) -> Path:
    return save_model(model, tmp_path_factory.mktemp("b") / "checked", ood_check=check)


def test_predictions_are_flagged(checked_bundle: Path) -> None:
    predictor = Predictor.load(checked_bundle, num_workers=1)
    good = predictor.predict(list(xrays(20, start=7000)))
    assert sum(p.in_distribution is True for p in good) >= 19
    assert all(p.ood_score is not None and p.label is not None for p in good)
    bad = predictor.predict(list(not_xrays().values()))
    assert [p.in_distribution for p in bad] == [False] * 4
    assert all(p.label is not None and p.ood_score > predictor.ood_check.threshold for p in bad)


def test_flagged_predictions_keep_the_same_probability(checked_bundle: Path) -> None:
    checked = Predictor.load(checked_bundle, num_workers=1)
    unchecked = Predictor.load(checked_bundle, num_workers=1, ood="ignore")
    images = [*xrays(3), *not_xrays().values()]
    a, b = checked.predict(images), unchecked.predict(images)
    assert [p.probability for p in a] == pytest.approx([p.probability for p in b], abs=1e-6)
    assert all(p.in_distribution is None and p.ood_score is None for p in b)


def test_ood_error_policy_refuses_and_names_the_input(tmp_path: Path, checked_bundle: Path) -> None:
    file = tmp_path / "invoice.png"
    Image.fromarray(text_image()[..., 0]).save(file)
    predictor = Predictor.load(checked_bundle, num_workers=1, ood="error")
    assert predictor.predict(xrays(1)[0]).label is not None
    with pytest.raises(OutOfDistributionError, match=r"invoice\.png: does not look like a chest"):
        predictor.predict([xrays(1)[0], file])
    skipped = predictor.predict([xrays(1)[0], file], errors="skip")
    assert skipped[0].ok
    assert skipped[1].label is None
    assert skipped[1].in_distribution is False
    assert "does not look like a chest X-ray" in str(skipped[1].error)


def test_invalid_ood_policy(checked_bundle: Path) -> None:
    with pytest.raises(ValueError, match="ood='maybe' is not supported"):
        Predictor.load(checked_bundle, ood="maybe")  # type: ignore[arg-type]


def test_old_bundle_predicts_unflagged_with_one_note(
    tmp_path: Path, model: keras.Model, caplog: pytest.LogCaptureFixture
) -> None:
    path = save_model(model, tmp_path / "old")
    predictor_module._noted_missing_check.clear()
    with caplog.at_level(logging.WARNING, logger="cxr_pneumonia"):
        first = Predictor.load(path, num_workers=1)
        Predictor.load(path, num_workers=1)
    notes = [r for r in caplog.records if "no out-of-distribution check" in r.getMessage()]
    assert len(notes) == 1
    assert "ood-fit" in notes[0].getMessage()
    prediction = first.predict(xrays(1)[0])
    assert prediction.label is not None
    assert prediction.in_distribution is None
    assert prediction.ood_score is None
