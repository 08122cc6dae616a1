"""The shipped default model's out-of-distribution check, offline and on the real data.

The fast tests need only the package: the shipped bundle carries its check,
its samples are accepted, and images that are no chest X-ray are flagged. The
``slow`` test redraws the bundle's patient-grouped validation split from
``../shared/data`` and the non-chest-X-ray corpus of
``scripts/make_ood_corpus.py``, and checks the figures the model card reports.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cxr_pneumonia.bundle import read_metadata
from cxr_pneumonia.images import prepare_image
from cxr_pneumonia.predictor import Predictor

ASSETS = importlib.resources.files("cxr_pneumonia") / "assets"
SAMPLES = sorted(Path(str(ASSETS / "samples")).glob("*.jpeg"))
CORPUS_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_ood_corpus.py"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.default()


def text_page() -> Image.Image:
    page = Image.new("L", (600, 800), 245)
    draw = ImageDraw.Draw(page)
    for row in range(40, 760, 18):
        draw.text((40, row), "Invoice 2291  total due 1,204.50  payment within 30 days", fill=0)
    return page


def test_the_shipped_bundle_carries_a_small_check() -> None:
    folder = Path(str(ASSETS / "default_model"))
    ood = read_metadata(folder).ood
    assert ood is not None
    # One block of pooled features per member of the shipped 3-model ensemble.
    assert ood["feature_layers"] == [f"member_{k}/cnn-small/gap" for k in range(3)]
    assert ood["dims"] == [192] * 3
    assert ood["acceptance"] == pytest.approx(0.99)
    assert ood["stats"]["calibration"] == "validation"
    assert (folder / ood["file"]).stat().st_size < 1024 * 1024


def test_the_shipped_samples_are_accepted(predictor: Predictor) -> None:
    assert [p.in_distribution for p in predictor.predict(SAMPLES)] == [True, True]


def test_images_that_are_no_xray_are_flagged(predictor: Predictor) -> None:
    rng = np.random.default_rng(0)
    others = {
        "white": np.full((256, 256), 255, np.uint8),
        "black": np.zeros((256, 256), np.uint8),
        "noise": rng.integers(0, 256, (256, 256)).astype(np.uint8),
        "gradient": np.tile(np.linspace(0, 255, 256), (256, 1)).astype(np.uint8),
        "text": np.asarray(text_page()),
    }
    predictions = predictor.predict(list(others.values()))
    flags = {name: p.in_distribution for name, p in zip(others, predictions, strict=True)}
    assert flags == dict.fromkeys(others, False)


def _corpus_module():
    spec = importlib.util.spec_from_file_location("make_ood_corpus", CORPUS_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_default_model_check_on_real_data(
    predictor: Predictor, shared_data: Path, tmp_path: Path
) -> None:
    """Validation X-rays accepted, shifted ones mostly accepted, the corpus flagged."""
    from cxr_pneumonia.data import load_dataset
    from cxr_pneumonia.shifts import apply_shift

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
    validation = np.asarray(data.images["validation"])
    threshold = predictor.ood_check.threshold
    assert np.mean(predictor.ood_scores(validation) <= threshold) >= 0.98
    for name, strength in [
        ("gamma", 1.25),
        ("contrast", 0.8),
        ("blur", 1.0),
        ("crop", 0.9),
        ("rotation", 5.0),
        ("jpeg", 50.0),
        ("resample", 2.0),
    ]:
        moved = apply_shift(validation, name, strength, seed=0)
        accepted = np.mean(predictor.ood_scores(moved) <= threshold)
        assert accepted >= 0.9, f"{name} {strength}: {accepted:.3f} accepted"

    corpus = _corpus_module()
    rows = corpus.build(tmp_path / "corpus", seed=0)
    assert len(rows) >= 250  # about 300 without scikit-image (the corpus extra), 407 with
    images = np.stack(
        [
            prepare_image(
                tmp_path / "corpus" / file,
                size=predictor.image_size,
                color_mode=predictor.color_mode,
            )
            for file, _, _ in rows
        ]
    )
    flagged = predictor.ood_scores(images) > threshold
    assert flagged.mean() >= 0.95, f"{flagged.mean():.3f} of the corpus flagged"
