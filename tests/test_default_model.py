"""The default model shipped in the package: present, self-describing, and right.

These tests load the real bundle in ``cxr_pneumonia/assets/default_model``
(built by ``scripts/train_default_model.sh``), offline.
"""

from __future__ import annotations

import importlib.resources
import shlex
from pathlib import Path

import numpy as np
import pytest

from cxr_pneumonia.bundle import read_metadata
from cxr_pneumonia.predictor import Predictor
from cxr_pneumonia.training.fitting import DEFAULT_EPOCHS

ASSETS = importlib.resources.files("cxr_pneumonia") / "assets"
SAMPLES = Path(str(ASSETS / "samples"))
DATA_DIR = "../shared/data/kermany2018-224"  # the script's default data folder


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.default()


def script_command() -> list[str]:
    """The cxr-pneumonia command of scripts/train_default_model.sh, for the default data."""
    script = (Path(__file__).parent.parent / "scripts" / "train_default_model.sh").read_text()
    lines = script.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("cxr-pneumonia "))
    words: list[str] = []
    for line in lines[start:]:
        words += shlex.split(line.rstrip("\\").replace('"$data_dir"', DATA_DIR))
        if not line.endswith("\\"):
            return words
    raise AssertionError("the script's command does not end")


def test_default_bundle_is_small_and_records_how_it_was_made() -> None:
    folder = Path(str(ASSETS / "default_model"))
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size < 5 * 1024 * 1024, f"the shipped bundle is {size / 1e6:.1f} MB"
    metadata = read_metadata(folder)
    assert metadata.model_name == "cnn-small-x3"
    assert metadata.class_names == ("NORMAL", "PNEUMONIA")
    assert 0.0 < metadata.threshold < 1.0
    # The command of scripts/train_default_model.sh, which rebuilt it, word for word.
    assert shlex.split(metadata.training["command"]) == script_command()
    assert metadata.training["epochs"] == DEFAULT_EPOCHS  # the default recipe's length
    assert metadata.training["test_time_augmentation"] == "horizontal flip"
    # Three cnn-small members of the default recipe, each with its provenance.
    assert [m["name"] for m in metadata.members] == ["cnn-small"] * 3
    assert [m["training"]["seed"] for m in metadata.members] == [0, 1, 2]
    assert [m["training"]["epochs_run"] for m in metadata.members] == [DEFAULT_EPOCHS] * 3
    assert all(len(m["weights_sha256"]) == 64 for m in metadata.members)
    # The validation figures it was shipped with, at its threshold.
    assert metadata.metrics["target_sensitivity"] == pytest.approx(0.97)
    assert metadata.metrics["val_recall"] >= 0.97
    assert metadata.metrics["val_roc_auc"] >= 0.98


# Options of the script that say where, how many and what to keep, not how to train one model.
NOT_RECIPE = {"--data-dir", "--out", "--checkpoint-dir", "--overwrite", "--ensemble"}


def test_the_scripts_recipe_is_train_without_flags() -> None:
    """Every recipe flag the script spells out is ``train``'s default: no flag, same model."""
    import click

    from cxr_pneumonia.cli.train import train

    options = {
        name: param
        for param in train.params
        if isinstance(param, click.Option)
        for name in param.opts
    }
    words = script_command()[2:]  # past "cxr-pneumonia train"
    spelled = set()
    while words:
        flag = words.pop(0)
        param = options[flag]
        spelled.add(param.name)
        if param.is_flag:
            assert flag in NOT_RECIPE or param.default is True, f"{flag} is not on by default"
            continue
        assert param.nargs == 1, flag  # the script spells no range options
        value = words.pop(0)
        if flag not in NOT_RECIPE:
            assert param.type_cast_value(click.Context(train), value) == param.default, flag
    assert {"epochs", "optimizer", "schedule", "zoom", "seed"} <= spelled


def test_default_model_gets_the_shipped_samples_right(predictor: Predictor) -> None:
    samples = sorted(SAMPLES.glob("*.jpeg"))
    assert len(samples) == 2
    predictions = predictor.predict(samples)
    for path, prediction in zip(samples, predictions, strict=True):
        expected = path.name.split("-", 1)[0].upper()
        assert prediction.label == expected, f"{path.name}: {prediction}"


def test_default_model_scores_the_same_image_the_same_in_any_form(predictor: Predictor) -> None:
    from PIL import Image

    path = sorted(SAMPLES.glob("*.jpeg"))[0]
    with Image.open(path) as image:
        gray = np.asarray(image.convert("L"))
    sixteen_bit = gray.astype(np.uint16) * 257
    by_path, by_array, by_16bit = predictor.predict([path, gray, sixteen_bit])
    assert by_array.probability == pytest.approx(by_16bit.probability, abs=1e-6)
    assert by_path.probability == pytest.approx(by_array.probability, abs=0.02)


@pytest.mark.slow
def test_default_model_on_its_validation_split(predictor: Predictor, shared_data: Path) -> None:
    """Re-draw the recorded patient-grouped validation split and check the figures hold."""
    from cxr_pneumonia.data import load_dataset
    from cxr_pneumonia.evaluation import evaluate

    training = predictor.metadata.training
    data = load_dataset(
        data_dir=shared_data / "kermany2018-224",
        image_size=predictor.image_size,
        color_mode=predictor.color_mode,
        validation_fraction=training["data"]["validation_fraction"],
        seed=training["seed"],
        augment=False,
        progress=False,
    )
    report = evaluate(predictor, data, split="validation")
    assert report.roc_auc >= 0.98
    assert report.recall >= 0.96
    assert report.accuracy >= 0.93
