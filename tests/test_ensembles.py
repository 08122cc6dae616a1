"""Ensembles are ordinary models and bundles: mean of members, save, load, export, predict."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import synthetic_xray
from cxr_pneumonia.bundle import METADATA_FILE, MODEL_FILE, load_bundle, save_model
from cxr_pneumonia.ensembles import ensemble, weights_sha256
from cxr_pneumonia.exceptions import BundleError, EnsembleError
from cxr_pneumonia.export import export_model
from cxr_pneumonia.models import build_model, with_flip_tta
from cxr_pneumonia.predictor import Predictor
from test_export import run_savedmodel, run_tflite

SIZE = 32


def member(seed: int, *, tta: bool = False, channels: int = 1, size: int = SIZE) -> keras.Model:
    """A cnn-small with a spread-out output (so members disagree visibly)."""
    keras.utils.set_random_seed(seed)
    model = build_model("cnn-small", input_shape=(size, size, channels), weights=None)
    dense = model.get_layer("pneumonia")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 40.0, bias])
    return with_flip_tta(model) if tta else model


def softmax_member(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax", kernel_initializer="he_normal")(x)
    return keras.Model(inputs, outputs, name=f"soft{seed}")


def images(n: int = 6) -> np.ndarray:
    return np.stack([synthetic_xray(i % 2, SIZE, seed=i)[:, :, None] for i in range(n)])


@pytest.fixture(scope="module")
def members() -> list[keras.Model]:
    return [member(1), member(2, tta=True), member(3)]


@pytest.fixture(scope="module")
def bundles(members: list[keras.Model], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("members")
    paths = []
    for i, model in enumerate(members):
        paths.append(
            save_model(
                model,
                root / f"m{i}",
                threshold=0.3 + 0.1 * i,
                model_name="cnn-small",
                metrics={"val_roc_auc": 0.9 + i / 100},
                training={"seed": i, "command": f"cxr-pneumonia train --seed {i}"},
            )
        )
    return paths


def test_output_is_the_mean_of_the_members(members: list[keras.Model]) -> None:
    x = images()
    outputs = [m.predict_on_batch(x) for m in members]
    assert not np.allclose(outputs[0], outputs[1], atol=1e-3)  # the check below means something
    model = ensemble(members, name="trio")
    np.testing.assert_allclose(model.predict_on_batch(x), np.mean(outputs, axis=0), atol=1e-6)
    assert model.name == "trio"
    assert [layer.name for layer in model.layers] == [
        "image",
        "member_0",
        "member_1",
        "member_2",
        "mean_of_members",
    ]
    assert model.count_params() == sum(m.count_params() for m in members)  # shared, not copied


def test_softmax_members_average_per_class() -> None:
    a, b = softmax_member(1), softmax_member(2)
    x = images()
    mean = (a.predict_on_batch(x) + b.predict_on_batch(x)) / 2
    out = ensemble([a, b]).predict_on_batch(x)
    assert out.shape == (len(x), 2)
    np.testing.assert_allclose(out, mean, atol=1e-6)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-6)


def test_bundle_round_trip_records_members_and_verifies_the_hash(
    members: list[keras.Model], bundles: list[Path], tmp_path: Path
) -> None:
    model = ensemble([bundles[0], Predictor.load(bundles[1]), members[2]])
    path = save_model(model, tmp_path / "ens", threshold=0.42, model_name="cnn-small-x3")
    loaded, metadata = load_bundle(path)
    x = images()
    np.testing.assert_allclose(
        loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6, rtol=1e-6
    )
    assert metadata.model_name == "cnn-small-x3"
    assert metadata.ensemble is not None
    assert metadata.ensemble["combine"] == "mean"
    records = metadata.members
    assert [r["layer"] for r in records] == ["member_0", "member_1", "member_2"]
    first_meta = json.loads((bundles[0] / METADATA_FILE).read_text())
    assert records[0]["source"] == str(bundles[0])
    assert records[0]["sha256"] == first_meta["sha256"]
    assert records[0]["threshold"] == pytest.approx(0.3)
    assert records[0]["training"]["command"] == "cxr-pneumonia train --seed 0"
    assert records[1]["metrics"] == {"val_roc_auc": 0.91}
    assert records[1]["source"] is None  # a Predictor: its model, not a folder
    assert records[2]["sha256"] is None  # an in-memory model has no bundle file
    assert records[2]["name"] == members[2].name
    for record, original in zip(records, members, strict=True):
        assert record["weights_sha256"] == weights_sha256(original)
    # The provenance is in model.keras too, and survives a second save.
    resaved, _ = load_bundle(save_model(loaded, tmp_path / "again"))
    again = load_bundle(tmp_path / "again")[1]
    assert again.members == records
    assert resaved.get_layer("mean_of_members").members == list(records)
    # Any change to model.keras is caught, as for every bundle.
    with (path / MODEL_FILE).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="does not match the SHA-256"):
        load_bundle(path)


def test_predictor_and_exports_agree_with_the_mean(
    members: list[keras.Model], tmp_path: Path
) -> None:
    model = ensemble(members[:2])
    path = save_model(model, tmp_path / "ens", threshold=0.5)
    x = images()
    mean = np.mean([m.predict_on_batch(x)[:, 0] for m in members[:2]], axis=0)
    predictor = Predictor.load(path)
    np.testing.assert_allclose(predictor.predict_arrays(x), mean, atol=1e-5)
    labels = [p.label for p in predictor.predict(list(x))]
    assert labels == ["PNEUMONIA" if p >= 0.5 else "NORMAL" for p in mean]
    saved = export_model(path, tmp_path / "serving", format="savedmodel")
    np.testing.assert_allclose(run_savedmodel(saved, x)["probability"], mean, atol=1e-5)
    lite = export_model(path, tmp_path / "ens.tflite", format="tflite")
    np.testing.assert_allclose(run_tflite(lite, x)["probability"], mean, atol=1e-4)


def test_mismatched_members_are_refused(bundles: list[Path], tmp_path: Path) -> None:
    a = member(1)
    with pytest.raises(EnsembleError, match=r"image size \(40, 40\) but member 0 .*\(32, 32\)"):
        ensemble([a, member(2, size=40)])
    with pytest.raises(EnsembleError, match=r"color mode 'rgb' but .* has 'grayscale'"):
        ensemble([a, member(2, channels=3)])
    with pytest.raises(EnsembleError, match=r"output width 2 but .* has 1"):
        ensemble([a, softmax_member(2)])
    other = save_model(member(4), tmp_path / "other", class_names=("HEALTHY", "SICK"))
    with pytest.raises(EnsembleError, match=r"member 1 \(.*other\) has class names"):
        ensemble([bundles[0], other])
    with pytest.raises(EnsembleError, match="at least two members; got 1"):
        ensemble([a])
    with pytest.raises(EnsembleError, match="at least two members; got 1"):
        ensemble(bundles[0])  # type: ignore[arg-type]
    with pytest.raises(EnsembleError, match="same model object"):
        ensemble([a, a])
    with pytest.raises(TypeError, match=r"member 1 must be a keras\.Model, a bundle folder"):
        ensemble([a, 42])
    with pytest.raises(BundleError, match=r"member 1: no model bundle at .*missing"):
        ensemble([a, tmp_path / "missing"])
    two_outputs = keras.Model(a.inputs, [a.outputs[0], a.outputs[0]], name="two")
    with pytest.raises(EnsembleError, match="must return one"):
        ensemble([a, two_outputs])


def test_weights_digest_identifies_weights() -> None:
    a, b = member(1), member(1)
    assert weights_sha256(a) == weights_sha256(b)
    assert weights_sha256(a) != weights_sha256(member(2))


def test_grad_cam_averages_the_members_heatmaps(members: list[keras.Model], tmp_path: Path) -> None:
    path = save_model(ensemble(members[:2]), tmp_path / "ens")
    predictor = Predictor.load(path)
    image = synthetic_xray(1, 48, seed=4)  # another size than the model's: heatmap at 48 x 48
    result = predictor.explain(image)
    assert result.heatmap.shape == (48, 48)
    assert len(result.layers) == 2
    first, second = result.layers
    stage = first.split("/")[-1]
    assert first == f"member_0/{stage}"
    assert second == f"member_1/cnn-small/{stage}"  # inside the flip-TTA wrapper's model
    assert result.layer == f"{first}, {second}"
    one = predictor.explain(image, layer=first).heatmap
    two = predictor.explain(image, layer=second).heatmap
    assert not np.allclose(one, two, atol=0.05)  # the members look at different things
    mean = (one + two) / 2
    np.testing.assert_allclose(result.heatmap, mean / mean.max(), atol=1e-5)
    assert float(result.heatmap.max()) == pytest.approx(1.0)
    # A member's name means its last convolutional stage; a list is averaged.
    assert predictor.explain(image, layer="member_1").layers == (second,)
    listed = predictor.explain(image, layer=["member_0", "member_1"])
    np.testing.assert_allclose(listed.heatmap, result.heatmap, atol=1e-6)
    # A bare in-memory ensemble explains the same way (its members are in its layer config).
    from cxr_pneumonia.predictor import explain

    assert explain(ensemble(members[:2]), image).layers == result.layers
    assert predictor.explain(image, layer="cnn-small").layers == (second,)
    two_tta = Predictor(ensemble([members[1], member(5, tta=True)]))
    with pytest.raises(ValueError, match="'cnn-small' names several sub-models"):
        two_tta.explain(image, layer="cnn-small")
    with pytest.raises(ValueError, match="empty list"):
        predictor.explain(image, layer=[])
