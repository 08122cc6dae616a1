"""The command line of issue 11: ``shift-report``, ``ensemble`` and ``train --ensemble``."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

from cxr_pneumonia.bundle import load_bundle, read_metadata, save_model
from cxr_pneumonia.cli import main
from cxr_pneumonia.data import load_dataset
from cxr_pneumonia.evaluation import evaluate
from cxr_pneumonia.models import build_model
from cxr_pneumonia.predictor import Predictor
from cxr_pneumonia.shifts import DEFAULT_SHIFTS
from test_cli import write_tree

SIZE = 32


def run(capsys: pytest.CaptureFixture[str], *argv: str | os.PathLike[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([os.fspath(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-robust")


@pytest.fixture(scope="module")
def data_dir(workspace: Path) -> Path:
    return write_tree(workspace / "xrays")


def spread_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = build_model("cnn-small", input_shape=(SIZE, SIZE, 1), weights=None)
    dense = model.get_layer("pneumonia")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 40.0, bias])
    return model


@pytest.fixture(scope="module")
def bundle(workspace: Path) -> Path:
    """A cnn-small bundle whose training record names its validation split."""
    training = {"seed": 3, "data": {"validation_fraction": 0.34}}
    return save_model(spread_model(1), workspace / "b1", threshold=0.45, training=training)


def test_shift_report_table_json_markdown_and_plot(
    capsys: pytest.CaptureFixture[str], bundle: Path, data_dir: Path, workspace: Path
) -> None:
    common = ["--data-dir", data_dir, "--cache-dir", workspace / "cache", "--no-progress"]
    code, out, err = run(
        capsys, "shift-report", bundle, *common, "--split", "test", "--shifts", "gamma,crop"
    )
    assert code == 0, err
    assert f"{bundle} on {data_dir}, split test" in out
    lines = out.splitlines()
    assert lines[2].startswith("12 images (split test of ")
    assert lines[2].endswith("threshold 0.4500, 7 shifted copies")
    assert lines[4].startswith("shift")
    assert "specificity" in lines[4]
    assert len([line for line in lines if line.startswith("gamma ")]) == 4
    assert len([line for line in lines if line.startswith("crop ")]) == 3
    assert "worst case:" in lines

    plot = workspace / "figures" / "shifts.png"
    code, out, err = run(
        capsys,
        "shift-report",
        bundle,
        *common,
        "--split",
        "test",
        "--shifts",
        "jpeg",
        "--format",
        "json",
        "--plot",
        plot,
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["bundle"] == str(bundle)
    assert report["split"] == "test"
    assert report["threshold"] == 0.45
    assert [(r["shift"], r["strength"]) for r in report["rows"]] == [
        ("jpeg", q) for q in DEFAULT_SHIFTS["jpeg"]
    ]
    assert set(report["worst"]) == {"roc_auc", "sensitivity", "specificity", "accuracy"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, out, err = run(
        capsys, "shift-report", bundle, *common, "--split", "test", "--shifts", "blur",
        "--format", "markdown", "--threshold", "0.2",
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("**12 images** (split test of")
    assert "threshold 0.2000" in out
    assert "| blur | 2 |" in out


def test_shift_report_uses_the_bundles_validation_split(
    capsys: pytest.CaptureFixture[str], bundle: Path, data_dir: Path, workspace: Path
) -> None:
    code, out, err = run(
        capsys, "shift-report", bundle, "--data-dir", data_dir, "--cache-dir",
        workspace / "cache", "--no-progress", "--shifts", "noise", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    assert "validation split: fraction 0.34, seed 3" in err
    report = json.loads(out)
    assert report["split"] == "validation"
    assert report["seed"] == 3
    assert 0 < report["n"] < 12


def test_shift_report_compares_several_bundles_on_the_same_images(
    capsys: pytest.CaptureFixture[str],
    bundle: Path,
    second_bundle: Path,
    data_dir: Path,
    workspace: Path,
) -> None:
    common = ["--data-dir", data_dir, "--cache-dir", workspace / "cache", "--no-progress"]
    code, out, err = run(
        capsys, "shift-report", bundle, second_bundle, *common, "--split", "test",
        "--shifts", "contrast", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert list(result["reports"]) == [str(bundle), str(second_bundle)]
    first, second = result["reports"].values()
    assert first["threshold"] == 0.45
    assert second["threshold"] == 0.25  # each bundle at its own threshold
    assert first["n"] == second["n"] == 12
    code, out, err = run(
        capsys, "shift-report", bundle, second_bundle, *common, "--split", "test",
        "--shifts", "contrast",
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[2] == "**12 images**, 3 shifted copies"
    assert lines[4].startswith("| Model | Threshold | ROC AUC none | ROC AUC mean |")
    assert lines[6].startswith(f"| {bundle} | 0.4500 |")
    assert lines[7].startswith(f"| {second_bundle} | 0.2500 |")
    code, _, err = run(
        capsys, "shift-report", bundle, second_bundle, *common, "--plot", workspace / "x.png"
    )
    assert code == 1
    assert "--plot draws one bundle's report; got 2 bundles" in err
    code, _, err = run(capsys, "shift-report", bundle, *common, "--average")
    assert code == 1
    assert "--average needs two or more bundles; got 1" in err


def test_shift_report_average_is_what_the_ensemble_of_the_bundles_scores(
    capsys: pytest.CaptureFixture[str],
    bundle: Path,
    second_bundle: Path,
    data_dir: Path,
    workspace: Path,
) -> None:
    common = ["--data-dir", data_dir, "--cache-dir", workspace / "cache", "--no-progress"]
    options = [*common, "--split", "test", "--shifts", "contrast,blur", "--format", "json"]
    code, out, err = run(capsys, "shift-report", bundle, second_bundle, *options, "--average")
    assert code == 0, err
    reports = json.loads(out)["reports"]
    assert list(reports) == [str(bundle), str(second_bundle), "mean of 2"]
    mean = reports["mean of 2"]
    assert mean["threshold"] == pytest.approx(0.35)  # the mean of 0.45 and 0.25
    code, _, err = run(
        capsys, "ensemble", bundle, second_bundle, "--out", workspace / "both", "--no-tta"
    )
    assert code == 0, err
    code, out, err = run(capsys, "shift-report", workspace / "both", *options)
    assert code == 0, err
    built = json.loads(out)
    assert built["threshold"] == pytest.approx(0.35)
    rows = zip([mean["baseline"], *mean["rows"]], [built["baseline"], *built["rows"]], strict=True)
    for got, want in rows:
        assert (got["shift"], got["strength"]) == (want["shift"], want["strength"])
        for metric in ("roc_auc", "sensitivity", "specificity", "accuracy"):
            assert got[metric] == pytest.approx(want[metric], abs=1e-6), (got, metric)


def test_shift_report_refuses_unknown_shifts_and_bad_plot_names(
    capsys: pytest.CaptureFixture[str], bundle: Path, data_dir: Path
) -> None:
    code, _, err = run(capsys, "shift-report", bundle, "--data-dir", data_dir, "--shifts", "fog")
    assert code == 1
    assert "unknown shift 'fog'; choose one of: gamma, contrast" in err
    code, _, err = run(
        capsys, "shift-report", bundle, "--data-dir", data_dir, "--plot", "shifts.pdf"
    )
    assert code == 1
    assert "--plot shifts.pdf: give a PNG file name" in err


# --- ensembles ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def second_bundle(workspace: Path) -> Path:
    training = {"seed": 3, "data": {"validation_fraction": 0.34}}
    return save_model(spread_model(2), workspace / "b2", threshold=0.25, training=training)


def test_ensemble_of_bundles_without_data_takes_the_mean_threshold(
    capsys: pytest.CaptureFixture[str], bundle: Path, second_bundle: Path, workspace: Path
) -> None:
    out = workspace / "mean-threshold"
    code, stdout, err = run(capsys, "ensemble", bundle, second_bundle, "--out", out)
    assert code == 0, err
    assert stdout.strip() == str(out)
    assert "no --data-dir: the threshold is the mean of the members' thresholds (0.3500)" in err
    model, metadata = load_bundle(out)
    assert metadata.threshold == pytest.approx(0.35)
    assert metadata.model_name == "cnn-small-x2"
    assert [m["source"] for m in metadata.members] == [str(bundle), str(second_bundle)]
    assert metadata.training["threshold_from"] == "mean of the members' thresholds"
    assert metadata.training["seed"] == 3  # the split a later shift-report should use
    x = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 1), dtype=np.uint8)
    members = [load_bundle(b)[0] for b in (bundle, second_bundle)]
    # By default each member averages the image and its mirror image, as `train --tta` saves.
    assert [m["flip_tta"] for m in metadata.members] == ["added", "added"]
    flipped = [(m.predict_on_batch(x) + m.predict_on_batch(x[:, :, ::-1])) / 2 for m in members]
    np.testing.assert_allclose(model.predict_on_batch(x), np.mean(flipped, axis=0), atol=1e-6)
    plain_out = workspace / "mean-threshold-no-tta"
    code, _, err = run(capsys, "ensemble", bundle, second_bundle, "--out", plain_out, "--no-tta")
    assert code == 0, err
    plain, plain_metadata = load_bundle(plain_out)
    assert all("flip_tta" not in m for m in plain_metadata.members)
    mean = np.mean([m.predict_on_batch(x) for m in members], axis=0)
    np.testing.assert_allclose(plain.predict_on_batch(x), mean, atol=1e-6)
    # A member that already averages over flips (here: an ensemble of such members, or not)
    # is not wrapped twice.
    code, _, err = run(capsys, "ensemble", out, plain_out, "--out", workspace / "nested")
    assert code == 0, err
    _, nested = load_bundle(workspace / "nested")
    assert [m["flip_tta"] for m in nested.members] == ["own", "added"]
    # An existing bundle is kept unless --overwrite.
    code, _, err = run(capsys, "ensemble", bundle, second_bundle, "--out", out)
    assert code == 1
    assert "already exists; pass --overwrite" in err


def test_ensemble_with_data_chooses_the_threshold_on_validation(
    capsys: pytest.CaptureFixture[str],
    bundle: Path,
    second_bundle: Path,
    data_dir: Path,
    workspace: Path,
) -> None:
    out = workspace / "validated"
    code, _, err = run(
        capsys, "ensemble", bundle, second_bundle, "--out", out, "--data-dir", data_dir,
        "--cache-dir", workspace / "cache", "--no-progress", "--target-sensitivity", "0.8",
    )  # fmt: skip
    assert code == 0, err
    model, metadata = load_bundle(out)
    data = load_dataset(
        data_dir=data_dir,
        cache_dir=workspace / "cache",
        image_size=(SIZE, SIZE),
        validation_fraction=0.34,
        seed=3,
        augment=False,
        progress=False,
    )
    report = evaluate(model, data, split="validation")
    assert metadata.threshold == pytest.approx(report.threshold_for(sensitivity=0.8))
    assert metadata.metrics["target_sensitivity"] == 0.8
    assert metadata.metrics["val_n"] == report.n
    assert metadata.training["threshold_from"] == "validation"
    assert metadata.training["data"]["validation_fraction"] == 0.34


def test_ensemble_warns_only_about_splits_that_are_recorded_and_differ(
    bundle: Path, workspace: Path
) -> None:
    from cxr_pneumonia.cli.common import splits_differ

    member = save_model(spread_model(3), workspace / "member", training={"seed": 4})
    other = save_model(
        spread_model(4),
        workspace / "other-split",
        training={"seed": 3, "data": {"validation_fraction": 0.2}},
    )
    first, unknown, different = map(read_metadata, (bundle, member, other))
    assert not splits_differ([first, unknown])  # a fit_ensemble member: its split is unknown
    assert not splits_differ([first, first])
    assert splits_differ([first, unknown, different])


def test_validation_split_prefers_options_then_the_record_then_the_defaults(
    bundle: Path, workspace: Path
) -> None:
    from cxr_pneumonia.cli.common import validation_split

    recorded = read_metadata(bundle)  # fraction 0.34, seed 3
    bare = read_metadata(save_model(spread_model(5), workspace / "no-record"))
    assert validation_split(recorded, None, None) == (0.34, 3)
    assert validation_split(recorded, 0.2, 0) == (0.2, 0)
    defaults = inspect.signature(load_dataset).parameters
    assert validation_split(bare, None, None) == (
        defaults["validation_fraction"].default,
        defaults["seed"].default,
    )
    assert validation_split(bare, None, None) == (0.15, 0)  # the default recipe's split


def test_ensemble_refuses_members_that_do_not_match(
    capsys: pytest.CaptureFixture[str], bundle: Path, workspace: Path
) -> None:
    keras.utils.set_random_seed(0)
    wide = build_model("cnn-small", input_shape=(40, 40, 1), weights=None)
    other = save_model(wide, workspace / "wide")
    code, _, err = run(capsys, "ensemble", bundle, other, "--out", workspace / "bad")
    assert code == 1
    assert "has image size (40, 40) but member 0" in err
    assert not (workspace / "bad").exists()
    code, _, err = run(capsys, "ensemble", bundle, "--out", workspace / "bad")
    assert code == 1
    assert "at least two members; got 1" in err


def test_train_ensemble_trains_k_seeds_and_saves_one_bundle(
    capsys: pytest.CaptureFixture[str], data_dir: Path, workspace: Path
) -> None:
    out = workspace / "trained-x2"
    code, _, err = run(
        capsys, "train", "--data-dir", data_dir, "--cache-dir", workspace / "cache",
        "--no-progress", "--image-size", str(SIZE), "--epochs", "1", "--batch-size", "4",
        "--validation-fraction", "0.34", "--seed", "3", "--ensemble", "2", "--tta",
        "--out", out,
    )  # fmt: skip
    assert code == 0, err
    predictor = Predictor.load(out)
    metadata = predictor.metadata
    assert metadata.model_name == "cnn-small-x2"
    assert metadata.training["ensemble"] == 2
    assert metadata.training["member_seeds"] == [3, 4]
    assert [m["training"]["seed"] for m in metadata.members] == [3, 4]
    assert metadata.training["training_time"] == pytest.approx(
        sum(m["training"]["training_time"] for m in metadata.members), abs=0.11
    )
    assert "val_roc_auc" in metadata.metrics
    for k in range(2):
        assert (Path(f"{out}.checkpoints") / f"member-{k}" / "bundle" / "metadata.json").is_file()
    # Rerun: both members load from their finished bundles; this call trained nothing.
    code, _, err = run(
        capsys, "train", "--data-dir", data_dir, "--cache-dir", workspace / "cache",
        "--no-progress", "--image-size", str(SIZE), "--epochs", "1", "--batch-size", "4",
        "--validation-fraction", "0.34", "--seed", "3", "--ensemble", "2", "--tta",
        "--out", out, "--overwrite",
    )  # fmt: skip
    assert code == 0, err
    again = read_metadata(out).training
    assert again["wall_time"] == 0.0
    assert isinstance(again["wall_time"], float)  # not int 0, as a sum of nothing was
    assert again["training_time"] == metadata.training["training_time"]
    # The threshold is the ensemble's own, at the target sensitivity on validation.
    data = load_dataset(
        data_dir=data_dir,
        cache_dir=workspace / "cache",
        image_size=(SIZE, SIZE),
        validation_fraction=0.34,
        seed=3,
        augment=False,
        progress=False,
    )
    report = evaluate(predictor, data, split="validation")
    assert metadata.threshold == pytest.approx(report.threshold_for(sensitivity=0.97))
    # An ensemble bundle is an ordinary bundle for the other commands.
    code, out_text, err = run(
        capsys, "shift-report", out, "--data-dir", data_dir, "--cache-dir",
        workspace / "cache", "--no-progress", "--shifts", "gamma", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out_text)["threshold"] == pytest.approx(metadata.threshold)


def test_train_ensemble_of_several_models(
    capsys: pytest.CaptureFixture[str], data_dir: Path, workspace: Path
) -> None:
    out = workspace / "two-kinds"
    common = ["--data-dir", data_dir, "--cache-dir", workspace / "cache", "--no-progress"]
    code, _, err = run(
        capsys, "train", *common, "--image-size", str(SIZE), "--epochs", "1",
        "--batch-size", "4", "--validation-fraction", "0.34", "--seed", "3",
        "--model", "cnn-small,cnn-kfold", "--ensemble", "2", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    _, metadata = load_bundle(out)
    assert metadata.model_name == "cnn-small_cnn-kfold-x2"
    assert [m["name"] for m in metadata.members] == ["cnn-small", "cnn-kfold"]
    assert metadata.training["model"] == "cnn-small,cnn-kfold"
    code, _, err = run(
        capsys, "train", *common, "--model", "cnn-small,cnn-kfold,cnn1", "--ensemble", "2",
        "--out", workspace / "refused",
    )  # fmt: skip
    assert code == 2
    assert "several models need --ensemble K >= 3" in err
    assert not (workspace / "refused").exists()
