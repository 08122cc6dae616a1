"""The ``cxr-pneumonia`` command line, through its real entry points.

Most tests call ``main([...])`` in-process (fast, with ``capsys``); a few run
the installed console script in a subprocess to prove the entry point and its
exit codes. One tiny bundle (cnn-small, 32 px, 1 epoch) is trained once per
module by ``cxr-pneumonia train`` and reused by predict, explain, evaluate
and export.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_xray
from cxr_pneumonia import __version__, prepare_image
from cxr_pneumonia.bundle import load_bundle, read_metadata
from cxr_pneumonia.cli import main
from cxr_pneumonia.data import sources
from cxr_pneumonia.predictor import Predictor
from test_export import run_savedmodel, run_tflite

if TYPE_CHECKING:  # imported by pytest as a plugin below
    from http_server import LocalHTTPServer

pytest_plugins = ["http_server"]  # provides the `http_server` fixture

SCRIPT = Path(sys.executable).with_name("cxr-pneumonia")
PER_FOLDER = 6

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run(*argv)`` -> ``(exit code, stdout, stderr)`` of ``main(argv)`` in-process."""

    def call(*argv: str | os.PathLike[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([os.fspath(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def write_tree(root: Path) -> Path:
    """``root/{train,test}/{NORMAL,PNEUMONIA}`` with 6 tiny X-ray-like images each."""
    for split in ("train", "test"):
        for label, name in ((0, "NORMAL"), (1, "PNEUMONIA")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(PER_FOLDER):
                seed = k + (100 if split == "test" else 0)
                stem = f"IM-{seed:04d}-0001" if label == 0 else f"person{seed}_bacteria_{k}"
                pixels = synthetic_xray(label, size=40, seed=seed)
                Image.fromarray(pixels).save(folder / f"{stem}.png")
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def data_dir(workspace: Path) -> Path:
    return write_tree(workspace / "xrays")


@pytest.fixture(scope="module")
def cache_dir(workspace: Path) -> Path:
    return workspace / "cache"


@pytest.fixture(scope="module")
def bundle(workspace: Path, data_dir: Path, cache_dir: Path) -> Path:
    """Trained once by the CLI: `train` -> a bundle folder."""
    out = workspace / "bundle"
    code = main(
        [
            "train",
            "--data-dir",
            str(data_dir),
            "--cache-dir",
            str(cache_dir),
            "--no-progress",
            "--model",
            "cnn-small",
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--validation-fraction",
            "0.34",
            "--seed",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def test_images(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "test").rglob("*.png"))


# --- the installed console script -------------------------------------------------------


def script(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *argv], capture_output=True, text=True, timeout=300, check=False
    )


def test_console_script_prints_the_version() -> None:
    result = script("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cxr-pneumonia {__version__}"


def test_console_script_exit_code_is_mains_return_value(tmp_path: Path) -> None:
    usage = script("predict", str(tmp_path / "x.png"), "--threshold", "2")
    assert usage.returncode == 2
    assert "--threshold: must be between 0 and 1, got 2" in usage.stderr
    failed = script("predict", str(tmp_path / "missing.png"), "--model", str(tmp_path / "nope"))
    assert failed.returncode == 1
    assert "no model bundle" in failed.stderr


def test_console_script_lists_the_models() -> None:
    result = script("models")
    assert result.returncode == 0, result.stderr
    assert "cnn-small" in result.stdout
    # TensorFlow's C++ start-up lines (oneDNN, CUDA probes), where this
    # TensorFlow writes them at all (--verbose shows them), are muted.
    verbose = script("--verbose", "models")
    assert verbose.returncode == 0, verbose.stderr
    for native_log in ("I0000", "absl::InitializeLog"):
        if native_log in verbose.stderr:
            assert native_log not in result.stderr


# --- usage ------------------------------------------------------------------------------


def test_usage_errors_exit_2(run: Run, tmp_path: Path) -> None:
    assert run()[0] == 2  # no subcommand
    code, _, err = run("predict")
    assert code == 2
    assert "INPUT" in err
    assert run("predict", "x.png", "--format", "xml")[0] == 2
    assert run("predict", "x.png", "--threshold", "abc")[0] == 2
    assert run("train", "--epochs", "1", "--out", tmp_path / "b")[0] == 2  # no data option
    code, _, err = run("train", "--data-dir", "a", "--dataset", "b", "--out", tmp_path / "b")
    assert code == 2
    assert "not allowed with argument" in err
    assert run("export", "b", "--format", "onnx", "--out", "x")[0] == 2


def test_help_exits_0(run: Run) -> None:
    code, out, _ = run("--help")
    assert code == 0
    for command in ("predict", "explain", "train", "evaluate", "export", "download", "info"):
        assert command in out


def test_train_offers_every_augmentation_option(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each field of Augmentation is a train option, and the options reach load_dataset."""
    import dataclasses

    from cxr_pneumonia.cli import common
    from cxr_pneumonia.data import Augmentation

    code, out, _ = run("train", "--help")
    assert code == 0
    for item in dataclasses.fields(Augmentation):
        if item.name != "horizontal_flip":
            assert "--" + item.name.replace("_", "-") in out, item.name
    assert "--augment-on [auto|pipeline|device]" in out
    seen: dict[str, object] = {}

    def fake_load_data(data: object, **options: object) -> None:
        seen.update(options)
        raise ValueError("stop here")

    monkeypatch.setattr(common, "load_data", fake_load_data)
    code, _, err = run(
        "train", "--data-dir", tmp_path, "--out", tmp_path / "b", "--no-flip",
        "--vertical-flip", "--width-shift", "0.2", "--height-shift", "0", "--shear-degrees", "12",
        "--brightness-range", "0.5", "2", "--gamma", "0.7", "1.4", "--blur", "0", "1.5",
        "--sharpen", "0", "1", "--noise", "0.02", "--crop-scale", "0.6", "1",
    )  # fmt: skip
    assert code == 1
    assert "stop here" in err
    assert seen["augment"] == Augmentation(
        horizontal_flip=False,
        vertical_flip=True,
        width_shift=0.2,
        height_shift=0.0,
        shear_degrees=12.0,
        brightness_range=(0.5, 2.0),
        gamma=(0.7, 1.4),
        blur=(0.0, 1.5),
        sharpen=(0.0, 1.0),
        noise=0.02,
        crop_scale=(0.6, 1.0),
    )
    code, _, err = run(
        "train", "--data-dir", tmp_path, "--out", tmp_path / "b", "--gamma", "2", "1"
    )
    assert code == 1
    assert "gamma" in err
    assert "low <= high" in err


# --- predict ----------------------------------------------------------------------------


def test_predict_without_model_uses_the_shipped_one(run: Run, test_images: list[Path]) -> None:
    code, out, err = run("predict", test_images[0])
    assert code == 0, err
    assert str(test_images[0]) in out


def test_predict_without_a_shipped_model_says_why(
    run: Run, test_images: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxr_pneumonia.exceptions import BundleError

    def absent(cls: type[Predictor], **options: object) -> Predictor:
        raise BundleError("this installation of cxr-pneumonia ships no default model")

    monkeypatch.setattr(Predictor, "default", classmethod(absent))
    code, out, err = run("predict", test_images[0])
    assert code == 1
    assert "ships no default model" in err
    assert "--model BUNDLE" in err
    assert out == ""


def test_train_cosine_recipe_is_applied_and_recorded(
    workspace: Path, data_dir: Path, cache_dir: Path
) -> None:
    """The shipped model's recipe: AdamW + EMA, warmup-cosine schedule, custom augmentation."""
    out = workspace / "cosine-bundle"
    argv = [
        "train", "--data-dir", str(data_dir), "--cache-dir", str(cache_dir), "--no-progress",
        "--image-size", "32", "--batch-size", "4", "--validation-fraction", "0.34",
        "--epochs", "3", "--schedule", "cosine", "--warmup-epochs", "1",
        "--learning-rate", "0.004", "--optimizer", "adamw", "--weight-decay", "0.0001",
        "--ema", "--zoom", "0.2", "--contrast", "0.3", "--no-flip", "--tta", "--out", str(out),
        "--label-smoothing", "0.1", "--mixup", "0.2", "--tensorboard", str(workspace / "tb"),
    ]  # fmt: skip
    assert main(argv) == 0
    training = read_metadata(out).training
    assert training["kept_epoch"] == 3  # 1-based: the last of a fixed-length run
    assert 0 < training["training_time"] <= training["wall_time"] + 0.1
    assert "the last epoch" in training["kept_reason"]
    assert list((workspace / "tb").rglob("events.out.tfevents.*"))
    assert training["schedule"] == "cosine"
    assert training["warmup_epochs"] == 1
    assert training["optimizer"] == "adamw"
    assert training["weight_decay"] == pytest.approx(1e-4)
    assert training["ema"] is True
    assert training["label_smoothing"] == pytest.approx(0.1)
    assert training["mixup"] == pytest.approx(0.2)
    assert training["augmentation"]["zoom"] == pytest.approx(0.2)
    assert training["augmentation"]["contrast"] == pytest.approx(0.3)
    assert training["augmentation"]["horizontal_flip"] is False
    assert training["test_time_augmentation"] == "horizontal flip"
    model, _ = load_bundle(out)
    assert any(layer.name == "flip_batch" for layer in model.layers)
    assert training["epochs_run"] == 3  # a fixed-length run: no early stopping
    with (workspace / "cosine-bundle.checkpoints" / "training_log.csv").open() as handle:
        rates = [float(row["learning_rate"]) for row in csv.DictReader(handle)]
    assert rates == pytest.approx([0.002, 0.004, 1e-6])


def test_train_writes_a_bundle_with_its_provenance(bundle: Path, data_dir: Path) -> None:
    metadata = read_metadata(bundle)
    assert metadata.image_size == (32, 32)
    assert metadata.color_mode == "grayscale"
    assert metadata.model_name == "cnn-small"
    assert 0.0 <= metadata.threshold <= 1.0
    training = metadata.training
    assert training["command"].startswith("cxr-pneumonia train --data-dir ")
    assert "--epochs 1" in training["command"]
    assert training["seed"] == 3
    assert training["epochs_run"] == 1
    assert training["data"]["data_dir"] == str(data_dir.resolve())
    assert training["data"]["class_counts"]["validation"]["PNEUMONIA"] >= 1
    # The threshold keeps the target sensitivity on validation.
    assert metadata.metrics["target_sensitivity"] == 0.97
    assert metadata.metrics["val_recall"] >= 0.97
    assert metadata.metrics["val_threshold"] == pytest.approx(metadata.threshold)
    assert (bundle.parent / "bundle.checkpoints").is_dir()


def test_predict_table_by_default(run: Run, bundle: Path, data_dir: Path) -> None:
    code, out, err = run("predict", data_dir / "test", "--model", bundle)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["source", "label", "probability", "check"]
    assert set(lines[1]) <= {"-", " "}
    assert len(lines) == 2 + 2 * PER_FOLDER
    for line in lines[2:]:
        source, label, probability, check = line.split(None, 3)
        assert Path(source).is_file()
        assert label in ("NORMAL", "PNEUMONIA")
        assert 0.0 <= float(probability) <= 1.0
        assert check == "ok" or check.startswith("OUT-OF-DISTRIBUTION (score ")


def test_predict_folder_reads_every_decodable_suffix_and_names_the_rest(
    run: Run, bundle: Path, test_images: list[Path], tmp_path: Path
) -> None:
    from PIL import Image

    folder = tmp_path / "mixed"
    folder.mkdir()
    pixels = np.asarray(Image.open(test_images[0]))
    for suffix in (".jp2", ".j2k", ".jpe"):
        Image.fromarray(pixels).save(folder / f"scan{suffix}")
    (folder / "notes.txt").write_text("not an image")
    code, out, err = run("predict", folder, "--model", bundle, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted(Path(r["source"]).name for r in rows) == ["scan.j2k", "scan.jp2", "scan.jpe"]
    assert all(r["error"] == "" for r in rows)
    assert "notes.txt" in err
    assert "not an image suffix" in err


def test_predict_csv_matches_the_predictor(run: Run, bundle: Path, test_images: list[Path]) -> None:
    code, out, err = run("predict", *test_images[:3], "--model", bundle, "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["source"] for r in rows] == [str(p) for p in test_images[:3]]
    with Predictor.load(bundle) as predictor:
        expected = predictor.predict(test_images[:3])
    for row, prediction in zip(rows, expected, strict=True):
        assert row["label"] == prediction.label
        assert float(row["probability"]) == pytest.approx(prediction.probability, abs=1e-4)
        assert float(row["threshold"]) == pytest.approx(prediction.threshold, abs=1e-4)
        assert row["error"] == ""


def test_predict_json_with_a_glob_and_a_threshold(run: Run, bundle: Path, data_dir: Path) -> None:
    pattern = str(data_dir / "test" / "*" / "person*.png")
    code, out, err = run(
        "predict", pattern, "--model", bundle, "--format", "json", "--threshold", "0"
    )
    assert code == 0, err
    records = json.loads(out)
    assert len(records) == PER_FOLDER
    for record in records:
        assert "PNEUMONIA" in record["source"]
        assert record["label"] == "PNEUMONIA"  # threshold 0: everything is positive
        assert record["threshold"] == 0.0
        assert isinstance(record["probability"], float)
        assert isinstance(record["in_distribution"], bool)
        assert isinstance(record["ood_score"], float)
        assert record["error"] is None


def test_train_fits_the_ood_check_on_its_data(bundle: Path) -> None:
    ood = read_metadata(bundle).ood
    assert ood is not None
    assert ood["feature_layers"] == ["cnn-small/gap"]  # through the default flip TTA
    training = read_metadata(bundle).training["data"]["class_counts"]
    assert ood["stats"]["n_fit"] == sum(training["train"].values())
    assert ood["stats"]["n_calibration"] == sum(training["validation"].values())


@pytest.fixture
def blank_png(tmp_path: Path) -> Path:
    path = tmp_path / "blank.png"
    Image.new("L", (40, 40), 255).save(path)
    return path


@pytest.fixture(scope="module")
def picky_bundle(bundle: Path, workspace: Path) -> Path:
    """The trained bundle with its OOD check's threshold moved to flag what scores above 0.

    A one-epoch model on a dozen images is too weak to separate images reliably;
    the command line's handling of flagged inputs is what these tests check
    (tests/test_ood.py checks the separation itself).
    """
    picky = workspace / "picky"
    shutil.copytree(bundle, picky)
    metadata = json.loads((picky / "metadata.json").read_text())
    metadata["ood"]["threshold"] = 0.0
    (picky / "metadata.json").write_text(json.dumps(metadata))
    return picky


def test_predict_shows_flagged_rows(
    run: Run, picky_bundle: Path, test_images: list[Path], blank_png: Path
) -> None:
    code, out, err = run("predict", test_images[0], blank_png, "--model", picky_bundle)
    assert code == 0, err
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert "OUT-OF-DISTRIBUTION (score " in rows[str(blank_png)]
    assert "2 of 2 input(s) do not look like the chest X-rays" in err
    code, out, err = run("predict", blank_png, "--model", picky_bundle, "--format", "csv")
    (row,) = csv.DictReader(io.StringIO(out))
    assert row["in_distribution"] == "false"
    assert float(row["ood_score"]) > 0
    assert row["label"] in ("NORMAL", "PNEUMONIA")  # flagged, still answered


def test_predict_ood_error_refuses_the_image_and_exits_1(
    run: Run, bundle: Path, test_images: list[Path], blank_png: Path
) -> None:
    code, out, err = run(
        "predict",
        test_images[0],
        blank_png,
        "--model",
        bundle,
        "--ood",
        "error",
        "--format",
        "json",
    )
    assert code == 1
    records = json.loads(out)
    assert records[0]["error"] is None
    assert records[1]["label"] is None
    assert f"{blank_png}: does not look like a chest X-ray" in err


def test_predict_ood_ignore_leaves_the_fields_empty(
    run: Run, bundle: Path, blank_png: Path
) -> None:
    code, out, err = run(
        "predict", blank_png, "--model", bundle, "--ood", "ignore", "--format", "json"
    )
    assert code == 0, err
    (record,) = json.loads(out)
    assert record["in_distribution"] is None
    assert record["ood_score"] is None


def test_explain_says_when_the_image_is_no_xray(
    run: Run, picky_bundle: Path, blank_png: Path, tmp_path: Path
) -> None:
    code, out, err = run("explain", blank_png, "--out", tmp_path / "h.png", "--model", picky_bundle)
    assert code == 0, err
    assert "Grad-CAM" in out
    assert "OUT-OF-DISTRIBUTION" in err
    code, _, err = run(
        "explain", blank_png, "--out", tmp_path / "r.png", "--model", picky_bundle, "--ood", "error"
    )
    assert code == 1
    assert "does not look like a chest X-ray" in err
    assert not (tmp_path / "r.png").exists()


def test_ood_fit_adds_a_check_to_a_bundle_without_one(
    run: Run, bundle: Path, data_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    metadata = json.loads((old / "metadata.json").read_text())
    del metadata["ood"]
    (old / "metadata.json").write_text(json.dumps(metadata))
    (old / "ood.npz").unlink()
    code, out, err = run(
        "ood-fit", old, "--data-dir", data_dir, "--cache-dir", cache_dir, "--no-progress"
    )
    assert code == 0, err
    assert "threshold" in out
    refitted = read_metadata(old).ood
    assert refitted is not None
    # The bundle's own split (fraction 0.34, seed 3) is reused: same images as in training.
    assert refitted["stats"] == read_metadata(bundle).ood["stats"]
    assert refitted["threshold"] == pytest.approx(read_metadata(bundle).ood["threshold"], rel=1e-5)


def test_predict_reports_each_bad_input_and_exits_1(
    run: Run, bundle: Path, test_images: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    missing = tmp_path / "missing.jpeg"
    code, out, err = run(
        "predict", test_images[0], broken, missing, "--model", bundle, "--format", "json"
    )
    assert code == 1
    records = json.loads(out)
    assert [r["source"] for r in records] == [str(test_images[0]), str(broken), str(missing)]
    assert records[0]["error"] is None
    assert records[1]["label"] is None
    assert records[1]["probability"] is None
    assert records[1]["error"]
    error_lines = [line for line in err.splitlines() if line.startswith("cxr-pneumonia: error:")]
    assert len(error_lines) == 2
    assert str(broken) in error_lines[0]
    assert str(missing) in error_lines[1]


def test_predict_errors_raise_stops_at_the_first_bad_input(
    run: Run, bundle: Path, test_images: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG truncated")
    code, out, err = run("predict", broken, test_images[0], "--model", bundle, "--errors", "raise")
    assert code == 1
    assert out == ""
    assert str(broken) in err


def test_predict_glob_without_match_fails_with_its_pattern(
    run: Run, bundle: Path, tmp_path: Path
) -> None:
    pattern = str(tmp_path / "nothing-*.png")
    code, out, err = run("predict", pattern, "--model", bundle)
    assert code == 1
    assert out == ""
    assert f"{pattern}: no file matches this pattern" in err


def test_predict_with_a_broken_bundle_exits_1(run: Run, tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "b").mkdir()
    code, _, err = run("predict", data_dir / "test", "--model", tmp_path / "b")
    assert code == 1
    assert "not a complete model bundle" in err


# --- explain ----------------------------------------------------------------------------


def test_explain_writes_a_gradcam_overlay(
    run: Run, bundle: Path, test_images: list[Path], tmp_path: Path
) -> None:
    out_file = tmp_path / "maps" / "heatmap.png"
    code, out, err = run("explain", test_images[0], "--out", out_file, "--model", bundle)
    assert code == 0, err
    assert "Grad-CAM" in out
    assert str(out_file) in out
    with Image.open(out_file) as overlay:
        assert overlay.size == (40, 40)  # the input image's own size
        assert overlay.mode == "RGB"


def test_explain_refuses_an_output_that_is_not_an_image(
    run: Run, bundle: Path, test_images: list[Path], tmp_path: Path
) -> None:
    code, _, err = run("explain", test_images[0], "--out", tmp_path / "map.txt", "--model", bundle)
    assert code == 1
    assert "heatmap.png" in err


# --- evaluate ---------------------------------------------------------------------------


def test_evaluate_table_and_json(run: Run, bundle: Path, data_dir: Path, cache_dir: Path) -> None:
    common = ("evaluate", bundle, "--data-dir", data_dir, "--cache-dir", cache_dir, "--no-progress")
    code, out, err = run(*common)
    assert code == 0, err
    assert "| Accuracy |" in out
    assert f"**{2 * PER_FOLDER} images**" in out
    code, out, err = run(*common, "--format", "json", "--threshold", "0.5")
    assert code == 0, err
    report = json.loads(out)
    assert report["split"] == "test"
    assert report["n"] == 2 * PER_FOLDER
    assert report["threshold"] == 0.5
    assert 0.0 <= report["accuracy"] <= 1.0
    assert "scores" not in report
    code, out, err = run(*common, "--format", "json", "--split", "validation")
    assert code == 0, err
    assert json.loads(out)["split"] == "validation"


def test_evaluate_on_a_missing_folder_exits_1(run: Run, bundle: Path, tmp_path: Path) -> None:
    code, _, err = run("evaluate", bundle, "--data-dir", tmp_path / "nope", "--no-progress")
    assert code == 1
    assert str(tmp_path / "nope") in err


# --- export -----------------------------------------------------------------------------


def test_export_both_formats_agree_with_the_bundle(
    run: Run, bundle: Path, test_images: list[Path], tmp_path: Path
) -> None:
    images = np.stack(
        [prepare_image(p, size=(32, 32), color_mode="grayscale") for p in test_images]
    )
    with Predictor.load(bundle) as predictor:
        expected = predictor.predict_arrays(images)
    saved = tmp_path / "serving" / "1"
    code, out, err = run("export", bundle, "--format", "savedmodel", "--out", saved)
    assert code == 0, err
    assert out.strip() == str(saved)
    np.testing.assert_allclose(run_savedmodel(saved, images)["probability"], expected, atol=1e-5)

    tflite = tmp_path / "model.tflite"
    code, out, err = run("export", bundle, "--format", "tflite", "--out", tflite)
    assert code == 0, err
    np.testing.assert_allclose(run_tflite(tflite, images)["probability"], expected, atol=1e-5)

    code, _, err = run("export", bundle, "--format", "tflite", "--out", tflite)
    assert code == 1
    assert "--overwrite" in err


# --- train: failures before any training ------------------------------------------------


def test_train_deterministic_reaches_fit_with_the_seed(
    run: Run, data_dir: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cxr_pneumonia.training as training

    seen: dict[str, object] = {}

    def fake_fit(model: object, data: object, **options: object) -> None:
        seen.update(options)
        msg = "stop here"
        raise RuntimeError(msg)

    monkeypatch.setattr(training, "fit", fake_fit)
    monkeypatch.setenv("CXR_PNEUMONIA_CACHE_DIR", str(cache_dir))
    with pytest.raises(RuntimeError, match="stop here"):
        run(
            "train", "--data-dir", data_dir, "--epochs", "1", "--seed", "3", "--deterministic",
            "--out", tmp_path / "b",
        )  # fmt: skip
    assert seen["deterministic"] is True
    assert seen["seed"] == 3


def test_train_refuses_an_existing_bundle_before_training(
    run: Run, bundle: Path, data_dir: Path
) -> None:
    before = (bundle / "metadata.json").read_bytes()
    code, _, err = run("train", "--data-dir", data_dir, "--epochs", "1", "--out", bundle)
    assert code == 1
    assert "--overwrite" in err
    assert (bundle / "metadata.json").read_bytes() == before


def test_train_overwrite_refuses_a_folder_that_is_not_a_bundle(
    run: Run, data_dir: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "my-documents"
    (mine / "tables").mkdir(parents=True)
    (mine / "thesis.txt").write_text("years of work")
    code, _, err = run(
        "train", "--data-dir", data_dir, "--epochs", "1", "--out", mine, "--overwrite"
    )
    assert code == 1
    assert "refusing to overwrite" in err
    assert "without a bundle's metadata.json" in err
    assert (mine / "thesis.txt").read_text() == "years of work"
    assert (mine / "tables").is_dir()


def test_train_unknown_model_exits_1_with_the_choices(
    run: Run, data_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    code, _, err = run(
        "train", "--data-dir", data_dir, "--cache-dir", cache_dir, "--no-progress",
        "--image-size", "32", "--model", "resnet5", "--out", tmp_path / "b",
    )  # fmt: skip
    assert code == 1
    assert "unknown model 'resnet5'; choose one of:" in err
    assert not (tmp_path / "b").exists()


# --- data, registries, info -------------------------------------------------------------


def test_summary_describes_the_splits(run: Run, data_dir: Path, cache_dir: Path) -> None:
    code, out, err = run(
        "summary", "--data-dir", data_dir, "--cache-dir", cache_dir, "--image-size", "32",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "32x32 grayscale" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}
    assert rows["test"][1] == str(2 * PER_FOLDER)
    assert int(rows["train"][1]) + int(rows["validation"][1]) == 2 * PER_FOLDER


def test_download_fetches_a_registered_dataset_into_the_cache(
    run: Run,
    http_server: LocalHTTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sources, "_REGISTRY", dict(sources._REGISTRY))
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buffer, train_images=rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
             train_labels=np.array([0, 1, 0, 1]))  # fmt: skip
    data = buffer.getvalue()
    (http_server.root / "tiny.npz").write_bytes(data)
    sources.register_dataset("tiny-mirror", url=http_server.url("tiny.npz"), known_hash=None)
    cache = tmp_path / "cache"
    code, out, err = run("download", "tiny-mirror", "--cache-dir", cache, "--no-progress")
    assert code == 0, err
    path = Path(out.strip())
    assert path.is_relative_to(cache)
    assert path.read_bytes() == data
    assert http_server.hits["tiny.npz"] == 1
    code, out, _ = run("datasets")
    assert code == 0
    assert "tiny-mirror" in out

    code, out, err = run("download", "tiny-mirrror", "--cache-dir", cache, "--no-progress")
    assert code == 1
    assert out == ""
    assert "tiny-mirrror" in err
    assert "tiny-mirror" in err  # the choices


def test_datasets_lists_the_registry(run: Run) -> None:
    code, out, err = run("datasets")
    assert code == 0, err
    header, _rule, *rows = out.splitlines()
    assert header.split()[:3] == ["name", "kind", "hash"]
    names = [row.split()[0] for row in rows]
    assert names == list(sources.list_datasets())
    assert "kermany2018" in names


def test_models_lists_the_registry_with_descriptions(run: Run) -> None:
    from cxr_pneumonia.models import get_model_spec, list_models

    code, out, err = run("models")
    assert code == 0, err
    rows = out.splitlines()[2:]
    assert [row.split()[0] for row in rows] == list(list_models())
    spec = get_model_spec("cnn-small")
    assert any(row.startswith("cnn-small") and spec.description in row for row in rows)


def test_info_reports_versions_devices_and_cache(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras
    import tensorflow as tf

    monkeypatch.setenv("CXR_PNEUMONIA_CACHE_DIR", str(tmp_path / "my-cache"))
    code, out, err = run("info", "--format", "json")
    assert code == 0, err
    info = json.loads(out)
    assert info["cxr-pneumonia"] == __version__
    assert info["tensorflow"] == tf.__version__
    assert info["keras"] == keras.__version__
    assert info["cache_dir"] == str(tmp_path / "my-cache")
    assert info["devices"]["replicas"] >= 1
    assert "default_model" in info


def test_the_cli_leaves_logging_as_it_found_it(run: Run) -> None:
    import logging

    logger = logging.getLogger("cxr_pneumonia")
    handlers, level = list(logger.handlers), logger.level
    run("datasets")
    assert logger.handlers == handlers
    assert logger.level == level


def test_info_prints_a_table_by_default(run: Run) -> None:
    code, out, err = run("info")
    assert code == 0, err
    header, rule, *rows = out.splitlines()
    assert header.split() == ["item", "value"]
    assert set(rule) <= {"-", " "}
    assert any(row.split()[0] == "cxr-pneumonia" and row.split()[1] == __version__ for row in rows)


# --- one output convention, options declared once -----------------------------------------


@pytest.mark.parametrize("command", ["datasets", "models"])
def test_registries_print_json_on_request(run: Run, command: str) -> None:
    code, out, err = run(command, "--format", "json")
    assert code == 0, err
    names = [record["name"] for record in json.loads(out)]
    assert "kermany2018" in names or "cnn-small" in names


def test_summary_plots_draws_the_data_figures(
    run: Run, data_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    folder = tmp_path / "figures"
    code, out, err = run(
        "summary", "--data-dir", data_dir, "--cache-dir", cache_dir, "--image-size", "32",
        "--no-progress", "--plots", folder, "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert set(record["figures"]) == {"class-counts", "samples", "image-statistics"}
    for path in record["figures"].values():
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in folder.iterdir()) == [
        "class-counts.png", "image-statistics.png", "samples.png",
    ]  # fmt: skip


def _tree_with_val(root: Path) -> Path:
    write_tree(root)
    for label, name in ((0, "NORMAL"), (1, "PNEUMONIA")):
        folder = root / "val" / name
        folder.mkdir(parents=True)
        for k in range(3):
            stem = f"IM-{500 + k:04d}-0001" if label == 0 else f"person{500 + k}_virus_{k}"
            Image.fromarray(synthetic_xray(label, size=40, seed=500 + k)).save(
                folder / f"{stem}.png"
            )
    return root


def test_summary_and_train_take_the_users_val_folder(
    run: Run, tmp_path: Path, cache_dir: Path
) -> None:
    root = _tree_with_val(tmp_path / "xrays")
    common = ("--data-dir", root, "--cache-dir", cache_dir, "--image-size", "32", "--no-progress")
    code, out, err = run("summary", *common, "--validation", "folder", "--format", "json")
    assert code == 0, err
    counts = json.loads(out)["class_counts"]
    assert counts["validation"] == {"NORMAL": 3, "PNEUMONIA": 3}
    assert sum(counts["train"].values()) == 2 * PER_FOLDER  # all of train/
    # A PyTorch-report CNN (2-unit softmax) trained on it, end to end.
    out_dir = tmp_path / "cnn1"
    code, out, err = run(
        "train", *common, "--validation", "folder", "--model", "cnn1", "--activation", "relu",
        "--epochs", "1", "--batch-size", "4", "--out", out_dir,
    )  # fmt: skip
    assert code == 0, err
    metadata = json.loads((out_dir / "metadata.json").read_text())
    assert metadata["output"] == "softmax"
    assert metadata["training"]["data"]["validation"] == "folder"
    code, out, err = run("predict", next(root.glob("test/PNEUMONIA/*.png")), "--model", out_dir)
    assert code == 0, err
    assert "PNEUMONIA" in out or "NORMAL" in out


def test_summary_prints_json_on_request(run: Run, data_dir: Path, cache_dir: Path) -> None:
    code, out, err = run(
        "summary", "--data-dir", data_dir, "--cache-dir", cache_dir, "--image-size", "32",
        "--no-progress", "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert record["image_size"] == [32, 32]
    assert sum(record["class_counts"]["test"].values()) == 2 * PER_FOLDER


def test_tables_are_drawn_with_rich_on_a_terminal(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxr_pneumonia.cli import output

    monkeypatch.setattr(output, "is_terminal", lambda: True)
    code, out, err = run("models")
    assert code == 0, err
    assert "━" in out or "─" in out  # a rich table's rules
    assert "cnn-small" in out


def every_command() -> list[tuple[str, object]]:
    from cxr_pneumonia.cli import cli

    return sorted(cli.commands.items())


@pytest.mark.parametrize(("name", "command"), every_command())
def test_every_option_says_what_it_does_and_its_default(name: str, command: object) -> None:
    import click

    assert isinstance(command, click.Command)
    assert command.help, name
    assert "Examples:" in (command.epilog or ""), f"{name} has no example"
    assert "cxr-pneumonia " + name in (command.epilog or "")
    for param in command.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        flag = param.opts[0]
        assert param.help, f"{name} {flag} has no help"
        assert param.required or param.show_default is not False or param.is_flag, (
            f"{name} {flag} does not show its default"
        )


@pytest.mark.parametrize(
    ("command", "option", "function", "parameter"),
    [
        ("train", "epochs", "cxr_pneumonia.training.fitting:fit", "epochs"),
        ("train", "learning_rate", "cxr_pneumonia.training.fitting:fit", "learning_rate"),
        ("train", "optimizer", "cxr_pneumonia.training.fitting:fit", "optimizer"),
        ("train", "fine_tune_learning_rate", "cxr_pneumonia.training.fitting:fit",
         "fine_tune_learning_rate"),
        ("train", "batch_size", "cxr_pneumonia.data.loading:load_dataset", "batch_size"),
        ("train", "color_mode", "cxr_pneumonia.data.loading:load_dataset", "color_mode"),
        ("train", "validation_fraction", "cxr_pneumonia.data.loading:load_dataset",
         "validation_fraction"),
        ("train", "target_sensitivity", "cxr_pneumonia.evaluation.thresholds:choose_threshold",
         "target_sensitivity"),
        ("train", "warmup_epochs", "cxr_pneumonia.training.fitting:fit", "warmup_epochs"),
        ("train", "weight_decay", "cxr_pneumonia.training.fitting:fit", "weight_decay"),
        ("train", "ema", "cxr_pneumonia.training.fitting:fit", "ema"),
        ("train", "label_smoothing", "cxr_pneumonia.training.fitting:fit", "label_smoothing"),
        ("train", "mixup", "cxr_pneumonia.training.fitting:fit", "mixup"),
        ("train", "schedule", "cxr_pneumonia.training.fitting:fit", "schedule"),
        ("explain", "alpha", "cxr_pneumonia.predictor:Predictor.explain", "alpha"),
        ("predict", "batch_size", "cxr_pneumonia.predictor:Predictor.__init__", "batch_size"),
        ("evaluate", "validation_fraction", "cxr_pneumonia.data.loading:load_dataset",
         "validation_fraction"),
    ],
)  # fmt: skip
def test_library_options_take_the_library_default(
    command: str, option: str, function: str, parameter: str
) -> None:
    """The option's default is the function's: read from its source, checked by importing it."""
    import importlib
    import inspect

    from cxr_pneumonia.cli import cli

    module, _, qualname = function.partition(":")
    target: object = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    expected = inspect.signature(target).parameters[parameter].default  # type: ignore[arg-type]
    param = next(p for p in cli.commands[command].params if p.name == option)
    assert param.default == expected


def test_option_ranges_come_from_the_docstring() -> None:
    from cxr_pneumonia.cli import cli

    def kind(command: str, option: str) -> object:
        return next(p for p in cli.commands[command].params if p.name == option).type

    # load_dataset: "validation_fraction ... in ``[0, 1)``"; fit: "epochs (``>= 1``)".
    assert kind("train", "validation_fraction").requirement() == "must be in [0, 1)"  # type: ignore[attr-defined]
    assert kind("train", "epochs").requirement() == "must be a positive integer"  # type: ignore[attr-defined]
    assert kind("explain", "alpha").requirement() == "must be between 0 and 1"  # type: ignore[attr-defined]


def test_library_option_refuses_a_parameter_the_function_lacks() -> None:
    from cxr_pneumonia.cli.options import library_option

    with pytest.raises(TypeError, match="has no parameter 'epoch'"):
        library_option("cxr_pneumonia.training.fitting:fit", "epoch")


def test_declaring_the_options_starts_no_tensorflow() -> None:
    code = (
        "import sys, cxr_pneumonia.cli; "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- issue 15: evaluation sets without split folders, weights checked first ----------------


def test_evaluate_scores_every_image_of_a_plain_folder(
    run: Run, bundle: Path, workspace: Path, cache_dir: Path
) -> None:
    plain = workspace / "plain"
    if not plain.exists():
        for label, name in ((0, "NORMAL"), (1, "PNEUMONIA")):
            (plain / name).mkdir(parents=True)
            for k in range(PER_FOLDER):
                stem = f"IM-{k + 300:04d}-0001" if label == 0 else f"person{k + 300}_virus_{k}"
                Image.fromarray(synthetic_xray(label, size=40, seed=300 + k)).save(
                    plain / name / f"{stem}.png"
                )
    code, out, err = run(
        "evaluate", bundle, "--data-dir", plain, "--cache-dir", cache_dir, "--no-progress",
        "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["split"] == "all"
    assert report["n"] == 2 * PER_FOLDER  # none held back as validation

    from cxr_pneumonia import evaluate, load_dataset

    splits = load_dataset(
        data_dir=plain, cache_dir=cache_dir, image_size=(32, 32), progress=False, augment=False
    )
    with Predictor.load(bundle) as predictor:
        assert evaluate(predictor, splits).n == 2 * PER_FOLDER
        assert evaluate(predictor, splits, split="train").n < 2 * PER_FOLDER


def test_train_checks_backbone_weights_before_decoding_data(
    run: Run, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    from cxr_pneumonia.cli import common

    def offline(*args: object, **kwargs: object) -> str:
        raise OSError("network unreachable")

    loaded: list[object] = []
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr(common, "load_data", lambda *a, **k: loaded.append(a))
    code, _, err = run(
        "train", "--data-dir", data_dir, "--model", "densenet121", "--out", tmp_path / "b"
    )
    assert code == 1
    assert "--weights none" in err
    assert "weights=None" not in err
    assert loaded == []  # refused before a single image was decoded
