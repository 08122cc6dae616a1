"""Tests of cxr_pneumonia.evaluation: metrics, thresholds and running a model."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import FrozenInstanceError
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn import metrics as skm

from cxr_pneumonia.data.splits import DatasetSplits
from cxr_pneumonia.evaluation import (
    ECE_BINS,
    EvaluationReport,
    calibration_bins,
    choose_threshold,
    evaluate,
)

# --------------------------------------------------------------------------- #
# choose_threshold
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (0.01, 0.9),  # one positive of four is enough
        (0.25, 0.9),
        (0.5, 0.8),
        (0.75, 0.6),
        (0.76, 0.2),  # 3/4 < 0.76, so all four are needed
        (1.0, 0.2),
    ],
)
def test_choose_threshold_known_answers(target: float, expected: float) -> None:
    labels = [0, 1, 0, 1, 1, 0, 1]
    scores = [0.95, 0.9, 0.7, 0.8, 0.6, 0.1, 0.2]  # negatives do not matter
    assert choose_threshold(labels, scores, target_sensitivity=target) == expected


def test_choose_threshold_ties_among_positives() -> None:
    labels = [1, 1, 1, 1, 1, 0]
    scores = [0.9, 0.7, 0.7, 0.7, 0.1, 0.7]
    # 2 of 5 are needed: the 2nd highest is 0.7, which catches 4 (0.8 >= 0.4).
    assert choose_threshold(labels, scores, target_sensitivity=0.4) == 0.7
    assert choose_threshold(labels, scores, target_sensitivity=0.8) == 0.7
    assert choose_threshold(labels, scores, target_sensitivity=0.81) == 0.1
    assert choose_threshold(labels, scores, target_sensitivity=0.2) == 0.9
    report = EvaluationReport.from_scores(labels, scores, threshold=0.7)
    assert report.recall == 0.8  # ties at the threshold count as positive (>=)
    assert report.confusion_matrix.tolist() == [[0, 1], [1, 4]]


def test_choose_threshold_exact_fraction_is_not_lost_to_rounding() -> None:
    labels = np.ones(100, dtype=int)
    scores = np.linspace(0.01, 1.0, 100)  # 97th highest is scores[3]
    assert choose_threshold(labels, scores, target_sensitivity=0.97) == scores[3]


def test_choose_threshold_matches_counting_the_positives() -> None:
    """scikit-learn's roc_curve gives what counting the k highest positives gives, ties too."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(2, 60))
        labels = rng.integers(0, 2, n)
        labels[0] = 1
        scores = np.round(rng.random(n), int(rng.integers(1, 3)))  # many ties
        target = float(rng.choice([0.5, 0.8, 0.9, 0.97, 1.0, rng.random() or 0.1]))
        positives = np.sort(scores[labels == 1])[::-1]
        k = int(np.argmax(np.arange(1, len(positives) + 1) / len(positives) >= target)) + 1
        assert choose_threshold(labels, scores, target_sensitivity=target) == positives[k - 1]


def test_choose_threshold_is_the_highest_meeting_the_target() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=300)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
    report = EvaluationReport.from_scores(labels, scores)
    for target in (0.5, 0.8, 0.9, 0.97, 1.0):
        threshold = report.threshold_for(sensitivity=target)
        assert report.at_threshold(threshold).recall >= target
        higher = scores[scores > threshold]
        if len(higher):
            assert report.at_threshold(float(higher.min())).recall < target


@pytest.mark.parametrize(
    ("labels", "scores", "target", "match"),
    [
        ([0, 1], [0.1], 0.9, "same length"),
        ([], [], 0.9, "empty"),
        ([0, 2], [0.1, 0.2], 0.9, r"0 \(NORMAL\) or 1"),
        ([0, 1], [0.1, float("nan")], 0.9, "finite"),
        ([0, 1], [0.1, 0.2], 0.0, r"\(0, 1\]"),
        ([0, 1], [0.1, 0.2], 1.5, r"\(0, 1\]"),
        ([0, 0], [0.1, 0.2], 0.9, "no positive"),
        ([[0, 1]], [[0.1, 0.2]], 0.9, "1-D"),
    ],
)
def test_choose_threshold_rejects_bad_input(
    labels: list, scores: list, target: float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        choose_threshold(labels, scores, target_sensitivity=target)


# --------------------------------------------------------------------------- #
# EvaluationReport
# --------------------------------------------------------------------------- #


@pytest.fixture
def random_report_inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=200)
    scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1)
    return labels, scores


def test_report_metrics_agree_with_scikit_learn(
    random_report_inputs: tuple[np.ndarray, np.ndarray],
) -> None:
    labels, scores = random_report_inputs
    report = EvaluationReport.from_scores(labels, scores, threshold=0.4)
    predicted = (scores >= 0.4).astype(int)
    assert report.n == 200
    assert report.threshold == 0.4
    assert report.accuracy == pytest.approx(skm.accuracy_score(labels, predicted))
    assert report.precision == pytest.approx(skm.precision_score(labels, predicted))
    assert report.recall == pytest.approx(skm.recall_score(labels, predicted))
    assert report.sensitivity == report.recall
    assert report.specificity == pytest.approx(skm.recall_score(1 - labels, 1 - predicted))
    assert report.f1 == pytest.approx(skm.f1_score(labels, predicted))
    assert report.roc_auc == pytest.approx(skm.roc_auc_score(labels, scores))
    assert report.pr_auc == pytest.approx(skm.average_precision_score(labels, scores))
    assert report.brier == pytest.approx(skm.brier_score_loss(labels, scores))
    np.testing.assert_array_equal(report.confusion_matrix, skm.confusion_matrix(labels, predicted))
    assert "NORMAL" in report.classification_report
    assert "PNEUMONIA" in report.classification_report
    assert 0.0 <= report.ece <= 1.0


def test_expected_calibration_error_by_hand() -> None:
    labels = [0, 1, 1, 1]
    scores = [0.1, 0.1, 0.9, 0.9]
    # bin of 0.1: mean 0.1, half positive -> gap 0.4; bin of 0.9: gap 0.1.
    report = EvaluationReport.from_scores(labels, scores)
    assert report.ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    perfect = EvaluationReport.from_scores([0, 0, 1, 1], [0.0, 0.0, 1.0, 1.0])
    assert perfect.ece == 0.0  # 1.0 falls in the last bin, not outside
    assert perfect.brier == 0.0


def test_calibration_bins() -> None:
    mean, fraction, count = calibration_bins([0, 1, 1], [0.0, 0.5, 1.0], n_bins=2)
    np.testing.assert_array_equal(count, [1, 2])
    np.testing.assert_allclose(mean, [0.0, 0.75])
    np.testing.assert_allclose(fraction, [0.0, 1.0])
    mean, _, count = calibration_bins([0], [0.2])
    assert len(count) == ECE_BINS
    assert np.isnan(mean).sum() == ECE_BINS - 1
    with pytest.raises(ValueError, match="n_bins"):
        calibration_bins([0], [0.2], n_bins=0)


def test_single_class_gives_nan_aucs_and_a_warning() -> None:
    with pytest.warns(UserWarning, match="only one class"):
        report = EvaluationReport.from_scores([0, 0, 0], [0.1, 0.6, 0.3])
    assert math.isnan(report.roc_auc)
    assert math.isnan(report.pr_auc)
    assert report.accuracy == pytest.approx(2 / 3)
    assert report.recall == 0.0
    assert report.precision == 0.0
    assert report.specificity == pytest.approx(2 / 3)
    data = report.to_dict()
    assert data["roc_auc"] is None
    json.dumps(data, allow_nan=False)  # strict JSON
    assert "n/a" in report.to_markdown()
    with pytest.raises(ValueError, match="no positive"):
        report.threshold_for(sensitivity=0.9)


def test_zero_division_is_zero_without_warnings() -> None:
    report = EvaluationReport.from_scores([0, 1, 1], [0.1, 0.2, 0.3], threshold=0.9)
    assert report.precision == 0.0
    assert report.recall == 0.0
    assert report.f1 == 0.0
    assert report.specificity == 1.0


def test_at_threshold_rethresholds_without_touching_the_original() -> None:
    labels, scores = [0, 0, 1, 1], [0.2, 0.5, 0.5, 0.95]
    report = EvaluationReport.from_scores(labels, scores, threshold=0.9)
    lower = report.at_threshold(0.5)
    assert lower.threshold == 0.5
    assert lower.confusion_matrix.tolist() == [[1, 1], [0, 2]]  # 0.5 >= 0.5 is positive
    assert report.confusion_matrix.tolist() == [[2, 0], [1, 1]]  # unchanged
    assert lower.roc_auc == report.roc_auc
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        report.at_threshold(1.5)


def test_report_is_immutable(random_report_inputs: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = random_report_inputs
    report = EvaluationReport.from_scores(labels, scores)
    with pytest.raises(FrozenInstanceError):
        report.accuracy = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        report.scores[0] = 0.5
    with pytest.raises(ValueError, match="read-only"):
        report.confusion_matrix[0, 0] = 7
    scores[0] = 0.123  # the caller's array is copied, not kept
    assert report.scores[0] != 0.123


def test_to_dict_and_to_markdown(random_report_inputs: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = random_report_inputs
    report = EvaluationReport.from_scores(labels, scores, threshold=0.45)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["n"] == 200
    assert data["threshold"] == 0.45
    assert data["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert data["confusion_matrix"] == report.confusion_matrix.tolist()
    assert data["labels"] == labels.tolist()
    assert data["scores"] == pytest.approx(scores.tolist())
    for name in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc"):
        assert data[name] == pytest.approx(getattr(report, name))
    assert data["brier"] == pytest.approx(report.brier)
    assert data["ece"] == pytest.approx(report.ece)
    small = report.to_dict(include_scores=False)
    assert "scores" not in small
    assert "labels" not in small

    markdown = report.to_markdown()
    assert "| Recall (sensitivity) |" in markdown
    assert f"{report.roc_auc:.4f}" in markdown
    (tn, fp), (fn, tp) = report.confusion_matrix.tolist()
    assert f"| NORMAL | {tn} | {fp} |" in markdown
    assert f"| PNEUMONIA | {fn} | {tp} |" in markdown
    assert str(report) == markdown
    assert "scores" not in repr(report)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": [0, 1], "scores": [0.1, 1.2]}, r"probabilities in \[0, 1\]"),
        ({"labels": [0, 1], "scores": [0.1, 0.2], "threshold": -0.1}, "threshold"),
        ({"labels": [0, 1], "scores": [0.1, 0.2], "class_names": ("a",)}, "two names"),
    ],
)
def test_from_scores_rejects_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EvaluationReport.from_scores(**kwargs)


# --------------------------------------------------------------------------- #
# evaluate
# --------------------------------------------------------------------------- #

SIZE = 16


@pytest.fixture(scope="module")
def tiny_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    labels = np.array([0, 1] * 10, dtype=np.int32)
    images = rng.integers(0, 100, size=(20, SIZE, SIZE, 1), dtype=np.uint8)
    images[labels == 1, 4:12, 4:12, 0] += 120  # brighter centre for PNEUMONIA
    return images, labels


@pytest.fixture(scope="module")
def tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def expected_scores(tiny_model, tiny_data) -> np.ndarray:
    images, _ = tiny_data
    return np.asarray(tiny_model(images.astype("float32"), training=False))[:, 0]


class FakePredictor:
    """What evaluate needs of a Predictor: predict_arrays and threshold."""

    def __init__(self, threshold: float = 0.3, *, two_columns: bool = False) -> None:
        self.threshold = threshold
        self.two_columns = two_columns
        self.calls: list[int] = []

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        assert isinstance(images, np.ndarray)
        self.calls.append(len(images))
        p = images.reshape(len(images), -1).mean(axis=1) / 255.0
        return np.stack([1 - p, p], axis=1) if self.two_columns else p

    @staticmethod
    def expected(images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), -1).mean(axis=1) / 255.0


def test_evaluate_keras_model_on_arrays(tiny_model, tiny_data, expected_scores) -> None:
    images, labels = tiny_data
    report = evaluate(tiny_model, (images, labels), batch_size=8)
    assert report.n == 20
    assert report.threshold == 0.5
    np.testing.assert_array_equal(report.labels, labels)
    np.testing.assert_allclose(report.scores, expected_scores, rtol=1e-5, atol=1e-6)


def test_evaluate_keras_model_on_batched_and_unbatched_datasets(
    tiny_model, tiny_data, expected_scores
) -> None:
    import tensorflow as tf

    images, labels = tiny_data
    unbatched = tf.data.Dataset.from_tensor_slices((images, labels))
    for data, batch_size in (
        (unbatched, None),
        (unbatched.batch(6), None),
        (unbatched.batch(6), 4),
        (unbatched.batch(5).map(lambda x, y: (x, tf.reshape(y, (-1, 1)))), None),
    ):
        report = evaluate(tiny_model, data, batch_size=batch_size)
        np.testing.assert_array_equal(report.labels, labels)
        np.testing.assert_allclose(report.scores, expected_scores, rtol=1e-5, atol=1e-6)


def test_evaluate_keeps_labels_aligned_on_a_shuffled_dataset(tiny_data) -> None:
    import tensorflow as tf

    images, labels = tiny_data
    data = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(20, seed=1).batch(7)
    report = evaluate(FakePredictor(), data)
    order = np.argsort(report.scores)
    reference = evaluate(FakePredictor(), (images, labels))
    np.testing.assert_array_equal(
        report.labels[order], reference.labels[np.argsort(reference.scores)]
    )


def _splits(images: np.ndarray, labels: np.ndarray, *, test: bool) -> DatasetSplits:
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    present = ("train", "test") if test else ("train",)
    return DatasetSplits(
        train=dataset,
        validation=None,
        test=dataset if test else None,
        files={s: tuple(f"tiny/{s}/{i}" for i in range(len(labels))) for s in present},
        labels=dict.fromkeys(present, labels),
        patients={s: tuple(str(i) for i in range(len(labels))) for s in present},
        images=dict.fromkeys(present, images),
        class_weight={0: 1.0, 1: 1.0},
        image_size=(SIZE, SIZE),
        color_mode="grayscale",
        batch_size=8,
        source="tiny",
        seed=0,
    )


def test_evaluate_dataset_splits(tiny_model, tiny_data, expected_scores) -> None:
    images, labels = tiny_data
    report = evaluate(tiny_model, _splits(images, labels, test=True), threshold=0.45)
    assert report.threshold == 0.45
    assert report.class_names == ("NORMAL", "PNEUMONIA")
    np.testing.assert_allclose(report.scores, expected_scores, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no 'validation' split; it has: train, test"):
        evaluate(tiny_model, _splits(images, labels, test=True), split="validation")
    with pytest.raises(ValueError, match="no 'test' split; it has: train"):
        evaluate(tiny_model, _splits(images, labels, test=False), split="test")
    with pytest.raises(ValueError, match=r"unknown split 'tests'; choose one of: .*all"):
        evaluate(tiny_model, _splits(images, labels, test=False), split="tests")


def test_evaluate_without_a_test_split_scores_every_image(tiny_model, tiny_data) -> None:
    """A folder without split sub-folders is an evaluation set: nothing is held back."""
    import tensorflow as tf

    images, labels = tiny_data
    parts = {"train": slice(0, 12), "validation": slice(12, None)}
    splits = DatasetSplits(
        train=tf.data.Dataset.from_tensor_slices((images[:12], labels[:12])).batch(8),
        validation=tf.data.Dataset.from_tensor_slices((images[12:], labels[12:])).batch(8),
        test=None,
        files={s: tuple(f"tiny/{i}" for i in range(len(labels))[k]) for s, k in parts.items()},
        labels={s: labels[k] for s, k in parts.items()},
        patients={s: tuple(str(i) for i in range(len(labels))[k]) for s, k in parts.items()},
        images={s: images[k] for s, k in parts.items()},
        class_weight={0: 1.0, 1: 1.0},
        image_size=(SIZE, SIZE),
        color_mode="grayscale",
        batch_size=8,
        source="tiny",
        seed=0,
    )
    report = evaluate(tiny_model, splits)
    assert report.n == len(labels)  # train and validation: every image
    np.testing.assert_array_equal(report.labels, labels)
    reference = evaluate(tiny_model, (images, labels))
    np.testing.assert_allclose(report.scores, reference.scores, rtol=1e-6)
    assert evaluate(tiny_model, splits, split="all").n == len(labels)
    assert evaluate(tiny_model, splits, split="train").n == 12


def test_evaluate_train_split_never_augments(tiny_model, tiny_data, expected_scores) -> None:
    import dataclasses

    import tensorflow as tf

    images, labels = tiny_data
    splits = _splits(images, labels, test=False)
    # A training pipeline that shuffles and augments, as load_dataset's does.
    augmented = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(labels))
        .map(lambda x, y: (tf.image.random_flip_left_right(255 - x), y))
        .batch(8)
    )
    splits = dataclasses.replace(splits, train=augmented)
    first = evaluate(tiny_model, splits, split="train")
    second = evaluate(tiny_model, splits, split="train")
    np.testing.assert_array_equal(first.scores, second.scores)
    np.testing.assert_array_equal(first.labels, labels)  # file order
    np.testing.assert_allclose(first.scores, expected_scores, rtol=1e-5, atol=1e-6)


def test_evaluate_predictor_uses_its_threshold_and_batches(tiny_data) -> None:
    images, labels = tiny_data
    predictor = FakePredictor(threshold=0.3)
    report = evaluate(predictor, (images, labels), batch_size=8)
    assert predictor.calls == [8, 8, 4]
    assert report.threshold == 0.3
    np.testing.assert_allclose(report.scores, FakePredictor.expected(images))
    expected_positive = FakePredictor.expected(images) >= 0.3
    assert report.confusion_matrix[:, 1].sum() == expected_positive.sum()
    assert evaluate(predictor, (images, labels), threshold=0.6).threshold == 0.6


def test_evaluate_object_with_a_model_attribute(tiny_model, tiny_data, expected_scores) -> None:
    images, labels = tiny_data
    holder = SimpleNamespace(model=tiny_model, threshold=0.4)
    report = evaluate(holder, (images, labels))
    assert report.threshold == 0.4
    np.testing.assert_allclose(report.scores, expected_scores, rtol=1e-5, atol=1e-6)


def test_evaluate_reads_softmax_outputs(tiny_data) -> None:
    images, labels = tiny_data
    report = evaluate(FakePredictor(two_columns=True), (images, labels))
    np.testing.assert_allclose(report.scores, FakePredictor.expected(images))


def test_evaluate_single_class_warns(tiny_data) -> None:
    images, labels = tiny_data
    with pytest.warns(UserWarning, match="only one class") as record:
        report = evaluate(FakePredictor(), (images[labels == 1], labels[labels == 1]))
    assert record[0].filename == __file__  # stacklevel points at the caller
    assert math.isnan(report.roc_auc)


def test_evaluate_rejects_bad_arguments(tiny_data) -> None:
    images, labels = tiny_data
    with pytest.raises(TypeError, match=r"keras\.Model or an object with a predict_arrays"):
        evaluate(object(), (images, labels))
    with pytest.raises(TypeError, match=r"DatasetSplits, a tf\.data\.Dataset"):
        evaluate(FakePredictor(), [images, labels])
    with pytest.raises(ValueError, match="same length"):
        evaluate(FakePredictor(), (images, labels[:3]))
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(FakePredictor(), (images, labels), batch_size=0)
    with pytest.raises(ValueError, match="threshold"):
        evaluate(FakePredictor(), (images, labels), threshold=2.0)
    with pytest.raises(ValueError, match="no examples"):
        evaluate(FakePredictor(), (images[:0], labels[:0]))
    with pytest.raises(ValueError, match=r"0 \(NORMAL\) or 1"):
        evaluate(FakePredictor(), (images, labels + 1))


def test_evaluate_rejects_outputs_that_are_not_probabilities(tiny_data) -> None:
    class Logits(FakePredictor):
        def predict_arrays(self, images: np.ndarray) -> np.ndarray:
            return super().predict_arrays(images) * 10 - 5

    images, labels = tiny_data
    with pytest.raises(ValueError, match="sigmoid"):
        evaluate(Logits(), (images, labels))


def test_importing_evaluation_or_plots_does_not_import_matplotlib() -> None:
    code = (
        "import sys, cxr_pneumonia, cxr_pneumonia.evaluation, cxr_pneumonia.plots\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
