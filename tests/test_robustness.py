"""The shift report, on a model whose output is known: the mean brightness of the image."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from cxr_pneumonia.ensembles import ensemble
from cxr_pneumonia.evaluation import EvaluationReport, choose_threshold
from cxr_pneumonia.robustness import (
    SHIFT_METRICS,
    ShiftReport,
    ShiftResult,
    average_shift_reports,
    compare_shift_reports,
    shift_report,
)
from cxr_pneumonia.shifts import DEFAULT_SHIFTS, apply_shift
from helpers_training import make_splits


def brightness_model(size: int = 16) -> keras.Model:
    """Probability of PNEUMONIA = the mean pixel value / 255."""
    inputs = keras.Input((size, size, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, outputs, name="brightness")


def flat_images(size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Grey images; PNEUMONIA ones brighter on average, with overlap."""
    rng = np.random.default_rng(0)
    labels = np.array([i % 2 for i in range(40)], dtype=np.int32)
    levels = np.where(labels == 1, rng.integers(110, 200, 40), rng.integers(50, 140, 40))
    images = np.broadcast_to(levels[:, None, None, None], (40, size, size, 1)).astype(np.uint8)
    images = images + rng.integers(0, 3, images.shape).astype(np.uint8)
    return images, labels


def expected(images: np.ndarray, labels: np.ndarray, threshold: float) -> EvaluationReport:
    scores = images.astype(np.float64).mean(axis=(1, 2, 3)) / 255
    return EvaluationReport.from_scores(labels, scores, threshold=threshold)


def test_rows_are_the_metrics_of_the_model_on_the_shifted_images() -> None:
    images, labels = flat_images()
    shifts = {"brightness": [-0.2, 0.2], "contrast": [0.6], "noise": [8.0]}
    report = shift_report(brightness_model(), (images, labels), shifts=shifts, seed=5)
    assert [(r.shift, r.strength) for r in report.rows] == [
        ("brightness", -0.2),
        ("brightness", 0.2),
        ("contrast", 0.6),
        ("noise", 8.0),
    ]
    assert report.threshold == 0.5
    assert report.n == 40
    assert report.split is None
    base = expected(images, labels, 0.5)
    assert report.baseline.roc_auc == pytest.approx(base.roc_auc)
    assert report.baseline.specificity == pytest.approx(base.specificity)
    for row in report.rows:
        want = expected(apply_shift(images, row.shift, row.strength, seed=5), labels, 0.5)
        assert row.roc_auc == pytest.approx(want.roc_auc, abs=1e-6), row.label
        assert row.sensitivity == pytest.approx(want.recall), row.label
        assert row.specificity == pytest.approx(want.specificity), row.label
        assert row.accuracy == pytest.approx(want.accuracy), row.label
    # Brighter images read as PNEUMONIA: specificity drops, sensitivity rises.
    darker, brighter = report.rows_for("brightness")
    assert brighter.specificity < report.baseline.specificity
    assert brighter.sensitivity >= report.baseline.sensitivity
    assert darker.sensitivity < report.baseline.sensitivity
    assert report.worst("specificity") is brighter
    assert report.worst("sensitivity") is darker
    # A constant offset keeps the ranking: the AUC is unchanged.
    assert brighter.roc_auc == pytest.approx(report.baseline.roc_auc, abs=1e-9)


def darkness_model(size: int = 16) -> keras.Model:
    """A second, different model: 1 - the mean of the squared pixel values / 255**2."""
    inputs = keras.Input((size, size, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Lambda(lambda t: t * t)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Lambda(lambda t: 1.0 - t)(x)
    return keras.Model(inputs, outputs, name="darkness")


SOME_SHIFTS = {"brightness": [-0.2, 0.2], "contrast": [0.6], "noise": [8.0]}


def test_a_report_reads_its_own_probabilities_at_another_threshold() -> None:
    images, labels = flat_images()
    report = shift_report(brightness_model(), (images, labels), shifts=SOME_SHIFTS, seed=5)
    assert report.labels is not None
    assert report.scores is not None
    np.testing.assert_array_equal(report.labels, labels)
    assert len(report.scores) == 1 + len(report.rows)
    np.testing.assert_allclose(report.scores[0], images.mean(axis=(1, 2, 3)) / 255, atol=1e-6)
    moved = report.at_threshold(0.4)
    rerun = shift_report(
        brightness_model(), (images, labels), shifts=SOME_SHIFTS, seed=5, threshold=0.4
    )
    assert moved == rerun  # every row's metrics, the threshold and the settings
    assert moved.baseline.specificity < report.baseline.specificity  # the threshold moved
    assert moved.baseline.roc_auc == report.baseline.roc_auc
    with pytest.raises(ValueError, match="threshold"):
        report.at_threshold(1.5)


def test_the_average_of_reports_is_the_report_of_the_ensemble() -> None:
    images, labels = flat_images()
    models = [brightness_model(), darkness_model()]
    reports = [shift_report(m, (images, labels), shifts=SOME_SHIFTS, seed=5) for m in models]
    both = ensemble(models)
    direct = shift_report(both, (images, labels), shifts=SOME_SHIFTS, seed=5, threshold=0.45)
    averaged = average_shift_reports(reports, threshold=0.45)
    assert averaged.threshold == 0.45
    pairs = zip((averaged.baseline, *averaged.rows), (direct.baseline, *direct.rows), strict=True)
    for got, want in pairs:
        assert (got.shift, got.strength) == (want.shift, want.strength)
        for metric in SHIFT_METRICS:
            assert getattr(got, metric) == pytest.approx(getattr(want, metric), abs=1e-6)
    assert averaged.baseline.roc_auc != reports[0].baseline.roc_auc  # not just one member
    # Without a threshold: the mean of the members' (as `ensemble` without data).
    assert average_shift_reports(reports).threshold == 0.5
    # For a target sensitivity: chosen on the averaged unshifted scores.
    chosen = average_shift_reports(reports, target_sensitivity=0.9)
    assert chosen.threshold == choose_threshold(labels, chosen.scores[0], target_sensitivity=0.9)
    assert chosen.baseline.sensitivity >= 0.9


def test_averaging_refuses_reports_that_do_not_match() -> None:
    images, labels = flat_images()
    report = shift_report(brightness_model(), (images, labels), shifts=SOME_SHIFTS, seed=5)
    other_shifts = shift_report(brightness_model(), (images, labels), shifts=["gamma"], seed=5)
    other_seed = shift_report(brightness_model(), (images, labels), shifts=SOME_SHIFTS, seed=6)
    other_labels = shift_report(
        brightness_model(), (images, 1 - labels), shifts=SOME_SHIFTS, seed=5
    )
    for other in (other_shifts, other_seed, other_labels):
        with pytest.raises(ValueError, match="report 1 differs from report 0"):
            average_shift_reports([report, other])
    with pytest.raises(ValueError, match="reports is empty"):
        average_shift_reports([])
    with pytest.raises(ValueError, match="not both"):
        average_shift_reports([report], threshold=0.5, target_sensitivity=0.9)
    bare = ShiftReport.from_dict(report.to_dict())  # written without its probabilities
    with pytest.raises(ValueError, match="no probabilities"):
        average_shift_reports([report, bare])
    with pytest.raises(ValueError, match="no probabilities"):
        bare.at_threshold(0.3)


def test_a_report_comes_back_from_its_json_with_or_without_probabilities() -> None:
    images, labels = flat_images()
    report = shift_report(brightness_model(), (images, labels), shifts=SOME_SHIFTS, seed=5)
    full = ShiftReport.from_dict(json.loads(report.to_json(include_scores=True)))
    assert full == report
    assert full.at_threshold(0.4) == report.at_threshold(0.4)  # the probabilities came back
    bare = ShiftReport.from_dict(json.loads(report.to_json()))
    assert bare == report
    assert bare.scores is None
    assert "scores" not in report.to_dict()
    with pytest.raises(ValueError, match="not a shift report"):
        ShiftReport.from_dict({"rows": []})
    broken = report.to_dict(include_scores=True)
    broken["scores"] = broken["scores"][:-1]
    with pytest.raises(ValueError, match="do not match its rows"):
        ShiftReport.from_dict(broken)


class RecordingPredictor:
    """Has what a Predictor offers evaluate: a threshold and predict_arrays."""

    threshold = 0.6

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        self.batches.append(images.copy())
        return images.astype(np.float64).mean(axis=(1, 2, 3)) / 255


def test_the_predictor_threshold_and_the_batch_size_are_used() -> None:
    images, labels = flat_images()
    predictor = RecordingPredictor()
    report = shift_report(predictor, (images, labels), shifts=["gamma"], batch_size=16)
    assert report.threshold == 0.6
    assert len(report.rows) == len(DEFAULT_SHIFTS["gamma"])
    # 40 images in batches of 16, once unshifted and once per gamma strength
    assert [len(b) for b in predictor.batches] == [16, 16, 8] * (1 + len(report.rows))
    np.testing.assert_array_equal(np.concatenate(predictor.batches[:3]), images)
    np.testing.assert_array_equal(
        np.concatenate(predictor.batches[3:6]), apply_shift(images, "gamma", 0.67)
    )
    assert report.baseline.specificity == pytest.approx(expected(images, labels, 0.6).specificity)
    overridden = shift_report(predictor, (images, labels), shifts={"gamma": [1.5]}, threshold=0.3)
    assert overridden.threshold == 0.3


def test_a_dataset_split_is_scored_from_its_decoded_images() -> None:
    data = make_splits(n_train=8, n_val=12)
    report = shift_report(brightness_model(), data, shifts={"crop": [0.9], "rotation": [5]})
    assert report.split == "validation"
    assert report.source == "tiny"
    assert report.n == 12
    base = expected(np.asarray(data.images["validation"]), data.labels["validation"], 0.5)
    assert report.baseline.accuracy == pytest.approx(base.accuracy)
    with pytest.raises(ValueError, match="no 'test' split"):
        shift_report(brightness_model(), data, split="test", shifts=["gamma"])


def test_default_shifts_cover_the_whole_table() -> None:
    images, labels = flat_images()
    report = shift_report(RecordingPredictor(), (images, labels))
    assert report.shifts == tuple(DEFAULT_SHIFTS)
    assert len(report.rows) == sum(len(s) for s in DEFAULT_SHIFTS.values())
    assert report.seconds > 0


def test_inputs_that_cannot_be_scored_are_refused() -> None:
    images, labels = flat_images()
    model = brightness_model(size=16)
    with pytest.raises(ValueError, match=r"the images are \(8, 8, 1\) but the model takes"):
        shift_report(model, (images[:, :8, :8], labels), shifts=["gamma"])
    with pytest.raises(ValueError, match=r"needs both classes.*20 NORMAL and 0 PNEUMONIA"):
        shift_report(model, (images[labels == 0], labels[labels == 0]), shifts=["gamma"])
    with pytest.raises(ValueError, match="unknown shift 'fog'"):
        shift_report(model, (images, labels), shifts=["fog"])
    with pytest.raises(ValueError, match="contrast strength"):
        shift_report(model, (images, labels), shifts={"contrast": [-1]})
    with pytest.raises(TypeError, match="DatasetSplits or a tuple"):
        shift_report(model, [images, labels], shifts=["gamma"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ in length"):
        shift_report(model, (images, labels[:-1]), shifts=["gamma"])


def row(shift: str, strength: float, auc: float, sens: float, spec: float) -> ShiftResult:
    return ShiftResult(shift, strength, auc, sens, spec, (sens + spec) / 2, 100)


def made_report() -> ShiftReport:
    return ShiftReport(
        baseline=row("none", 0, 0.99, 0.97, 0.95),
        rows=(
            row("contrast", 0.6, 0.98, 0.99, 0.80),
            row("blur", 2, 0.95, 0.90, 0.93),
            row("crop", 0.85, float("nan"), 0.90, 0.80),
        ),
        threshold=0.41,
        split="validation",
        source="kermany2018",
    )


def test_worst_case_takes_the_first_lowest_and_skips_undefined_values() -> None:
    report = made_report()
    worst = report.worst_case
    assert worst["roc_auc"].label == "blur 2"  # the NaN of crop is skipped
    assert worst["specificity"].label == "contrast 0.6"  # first of the tie at 0.80
    assert worst["sensitivity"].label == "blur 2"  # first of the tie at 0.90
    empty = ShiftReport(baseline=report.baseline, rows=(), threshold=0.5)
    assert empty.worst("roc_auc") is report.baseline
    with pytest.raises(ValueError, match="unknown metric 'f1'; choose one of: roc_auc"):
        report.worst("f1")
    with pytest.raises(ValueError, match="no 'fog' rows; it has: contrast, blur, crop"):
        report.rows_for("fog")


def test_dict_json_markdown_and_repr() -> None:
    report = made_report()
    data = json.loads(report.to_json())
    assert data["threshold"] == 0.41
    assert data["baseline"]["specificity"] == 0.95
    assert data["rows"][2]["roc_auc"] is None  # NaN is not JSON
    assert data["worst"]["specificity"] == {
        "shift": "contrast",
        "strength": 0.6,
        "value": 0.8,
        "change": pytest.approx(-0.15),
    }
    text = report.to_markdown()
    assert "| contrast | 0.6 |" in text
    assert "**0.8000** (-0.150)" in text  # the worst specificity, bold, with its change
    assert "| Specificity | 0.8000 | -0.1500 | contrast 0.6 |" in text
    assert "| crop | 0.85 | n/a |" in text
    assert str(report) == text
    text_repr = repr(report)
    assert "\n" not in text_repr
    assert len(text_repr) < 300
    assert "specificity=0.8000 (contrast 0.6)" in text_repr
    assert math.isnan(report.rows[2].roc_auc)


def test_plain_text_and_terminal_renderings() -> None:
    from rich.console import Console

    report = made_report()
    text = report.to_text().splitlines()
    assert text[0] == (
        "100 images (split validation of kermany2018), threshold 0.4100, 3 shifted copies"
    )
    assert text[2].split() == ["shift", "strength", *SHIFT_METRICS]
    assert text[4].split() == ["none", "0.9900", "0.9700", "0.9500", "0.9600"]
    assert text[5].startswith("contrast  0.6")
    assert "0.8000 (-0.150)" in text[5]
    assert "**" not in report.to_text()  # no markup in plain text
    assert text[-3:] == [
        "  sensitivity  0.9000  (blur 2)",
        "  specificity  0.8000  (contrast 0.6)",
        "  accuracy     0.8500  (crop 0.85)",
    ]
    console = Console(width=120, file=io.StringIO(), color_system="standard")
    console.print(report)
    rendered = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Specificity" in rendered
    assert "\x1b[1;31m0.8000 (-0.150)" in rendered  # the worst specificity, bold red
    assert "\x1b[33m0.9300 (-0.020)" in rendered  # below the baseline, yellow


def test_the_plot_draws_one_panel_per_metric(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from cxr_pneumonia.plots import plot_shift_report

    report = made_report()
    out = tmp_path / "shifts.png"
    figure = plot_shift_report(report, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    panels = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [
        "ROC AUC (worst: blur 2)",
        "Sensitivity (worst: blur 2)",
        "Specificity (worst: contrast 0.6)",
    ]
    bars = panels[2].patches
    assert len(bars) == 3
    assert [b.get_width() for b in bars] == pytest.approx([0.80, 0.93, 0.80])
    red = bars[0].get_facecolor()
    assert red != bars[1].get_facecolor()  # the worst stands out
    with pytest.raises(ValueError, match="metrics must be some of"):
        plot_shift_report(report, metrics=["f1"])
    empty = ShiftReport(baseline=report.baseline, rows=(), threshold=0.5)
    with pytest.raises(ValueError, match="no shifted rows"):
        plot_shift_report(empty)


def test_mean_and_comparison_of_reports() -> None:
    report = made_report()
    assert report.mean("specificity") == pytest.approx((0.80 + 0.93 + 0.80) / 3)
    assert report.mean("roc_auc") == pytest.approx((0.98 + 0.95) / 2)  # NaN skipped
    assert report.to_dict()["mean"]["sensitivity"] == pytest.approx((0.99 + 0.90 + 0.90) / 3)
    better = ShiftReport(
        baseline=row("none", 0, 0.995, 0.97, 0.97),
        rows=(
            row("contrast", 0.6, 0.99, 0.97, 0.95),
            row("blur", 2, 0.99, 0.96, 0.94),
            row("crop", 0.85, 0.985, 0.97, 0.90),
        ),
        threshold=0.5,
    )
    table = compare_shift_reports({"default": report, "better": better})
    lines = table.splitlines()
    assert lines[0] == "**100 images**, 3 shifted copies"
    assert lines[2].startswith("| Model | Threshold | ROC AUC none | ROC AUC mean | ROC AUC worst")
    assert lines[4].startswith("| default | 0.4100 | 0.9900 | 0.9650 | 0.9500 (blur 2) |")
    assert lines[5].endswith("| 0.9700 | 0.9300 | 0.9000 (crop 0.85) |")
    shorter = ShiftReport(baseline=report.baseline, rows=report.rows[:2], threshold=0.5)
    with pytest.raises(ValueError, match=r"differ in images .* or shifts"):
        compare_shift_reports({"a": report, "b": shorter})
    with pytest.raises(ValueError, match="reports is empty"):
        compare_shift_reports({})


@pytest.mark.slow
def test_the_shipped_model_holds_up_on_real_validation_images(shared_data: Path) -> None:
    from cxr_pneumonia.data import load_dataset
    from cxr_pneumonia.predictor import Predictor

    predictor = Predictor.default()
    data = load_dataset(
        data_dir=shared_data / "kermany2018-224",
        image_size=predictor.image_size,
        color_mode=predictor.color_mode,
        validation_fraction=0.15,
        seed=0,
        augment=False,
        progress=False,
    )
    all_labels = np.asarray(data.labels["validation"])
    pick = np.concatenate([np.flatnonzero(all_labels == c)[:100] for c in (0, 1)])
    images, labels = np.asarray(data.images["validation"])[pick], all_labels[pick]
    report = shift_report(predictor, (images, labels), shifts={"contrast": [0.6], "crop": [0.85]})
    assert report.threshold == predictor.threshold
    assert report.baseline.roc_auc > 0.97
    assert report.worst("roc_auc").roc_auc > 0.9
    assert report.worst("specificity").specificity > 0.6


def test_each_row_is_logged_as_it_is_scored(caplog: pytest.LogCaptureFixture) -> None:
    images, labels = flat_images()
    with caplog.at_level("INFO", logger="cxr_pneumonia"):
        shift_report(RecordingPredictor(), (images, labels), shifts={"blur": [1.0, 2.0]})
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "shift report: 40 images, 2 shifted copies"
    assert lines[1].startswith("[1/2] blur 1           AUC ")
    assert lines[2].startswith("[2/2] blur 2           AUC ")
