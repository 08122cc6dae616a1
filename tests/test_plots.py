"""Tests of cxr_pneumonia.plots: figures are built and saved as valid PNGs; errors are clear."""

from __future__ import annotations

import itertools
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cxr_pneumonia.evaluation import EvaluationReport

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure

from cxr_pneumonia import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature and IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def report() -> EvaluationReport:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=300)
    scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1)
    return EvaluationReport.from_scores(labels, scores, threshold=0.45)


HISTORY = {
    "loss": [0.9, 0.6, 0.45, 0.4],
    "val_loss": [0.95, 0.7, 0.6, 0.62],
    "accuracy": [0.6, 0.75, 0.82, 0.85],
    "val_accuracy": [0.55, 0.7, 0.78, 0.77],
    "learning_rate": [1e-3, 1e-3, 5e-4, 5e-4],
}


@pytest.mark.parametrize(
    "draw",
    [
        plots.plot_roc,
        plots.plot_precision_recall,
        plots.plot_confusion_matrix,
        lambda r, p: plots.plot_confusion_matrix(r, p, normalize=True),
        plots.plot_calibration,
        lambda r, p: plots.plot_calibration(r, p, n_bins=5),
    ],
    ids=["roc", "pr", "confusion", "confusion-normalized", "calibration", "calibration-5"],
)
def test_report_figures_are_saved_as_png(
    draw: Callable[[EvaluationReport, Path], Figure], report: EvaluationReport, tmp_path: Path
) -> None:
    path = tmp_path / "figure.png"
    figure = draw(report, path)
    assert isinstance(figure, Figure)
    width, height = png_size(path)
    assert 300 <= width <= 2000
    assert 300 <= height <= 2000
    assert path.stat().st_size > 5_000  # something was drawn


def test_without_path_nothing_is_saved(
    report: EvaluationReport, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    figure = plots.plot_roc(report)
    assert isinstance(figure, Figure)
    assert list(tmp_path.iterdir()) == []


def test_plotting_leaves_pyplot_alone(report: EvaluationReport) -> None:
    plots.plot_roc(report)
    assert (
        "matplotlib.pyplot" not in sys.modules or not sys.modules["matplotlib.pyplot"].get_fignums()
    )


@pytest.mark.parametrize(
    "history",
    [HISTORY, SimpleNamespace(history=HISTORY)],  # a dict, or a TrainingResult-like object
    ids=["dict", "result"],
)
def test_plot_history(history: object, tmp_path: Path) -> None:
    path = tmp_path / "history.png"
    figure = plots.plot_history(history, path)
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles == ["loss", "accuracy"]  # learning rate skipped by default
    assert [line.get_label() for line in figure.axes[0].lines] == ["train", "validation"]
    width, height = png_size(path)
    assert width > height > 200


def test_plot_history_selected_metrics(tmp_path: Path) -> None:
    figure = plots.plot_history(HISTORY, tmp_path / "h.png", metrics=["accuracy"])
    assert [ax.get_title() for ax in figure.axes] == ["accuracy"]
    figure = plots.plot_history({"val_auc": [0.7, 0.8]}, metrics=("auc",))
    assert [line.get_label() for line in figure.axes[0].lines] == ["validation"]


def test_plot_history_errors() -> None:
    with pytest.raises(ValueError, match="'recall' not in the history; it has: loss, accuracy"):
        plots.plot_history(HISTORY, metrics=["recall"])
    with pytest.raises(ValueError, match="no metrics"):
        plots.plot_history({})
    with pytest.raises(TypeError, match="history must be a dict"):
        plots.plot_history([0.1, 0.2])


def test_plot_feature_maps(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    maps = {
        "conv1": rng.random((1, 16, 16, 8), dtype=np.float32),
        "conv2": rng.random((8, 8, 20), dtype=np.float32),
    }
    path = tmp_path / "maps.png"
    figure = plots.plot_feature_maps(maps, path, max_channels=10)
    assert len([ax for ax in figure.axes if ax.get_visible()]) == 8 + 10
    png_size(path)
    with pytest.raises(ValueError, match="empty"):
        plots.plot_feature_maps({})
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        plots.plot_feature_maps({"dense": np.zeros((2, 3, 4, 5))})


def _label_boxes(figure: Figure) -> list:
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    return [
        (text.get_text(), text.get_window_extent(renderer))
        for text in figure.findobj(match=lambda o: hasattr(o, "get_text"))
        if getattr(text, "get_text", None) and text.get_text() and text.get_visible()
    ]


def test_feature_map_row_labels_fit_and_do_not_overlap() -> None:
    rng = np.random.default_rng(0)
    names = [f"cnn-small/stage{i}_block2_depthwise_conv_long_name" for i in range(4)]
    maps = {name: rng.random((6, 6, 3), dtype=np.float32) for name in names}
    figure = plots.plot_feature_maps(maps, max_channels=3)
    boxes = dict(_label_boxes(figure))
    width, height = figure.bbox.width, figure.bbox.height
    labels = [boxes[f"{name}  (3 of 3 channels)"] for name in names]
    for box in labels:  # whole, inside the figure
        assert box.x0 >= 0
        assert box.x1 <= width
        assert box.y0 >= 0
        assert box.y1 <= height
    for first, second in itertools.combinations(labels, 2):
        assert not first.overlaps(second)


def test_plot_gradcam_shows_label_probability_and_colour_bar(tmp_path: Path) -> None:
    from PIL import Image

    explanation = SimpleNamespace(
        prediction=SimpleNamespace(label="PNEUMONIA", probability=0.8731, threshold=0.4092),
        overlay=Image.new("RGB", (40, 30), (10, 200, 30)),
        heatmap=np.zeros((30, 40), dtype=np.float32),
        layer="cnn-small/stage3",
    )
    path = tmp_path / "gradcam.png"
    figure = plots.plot_gradcam(explanation, path, title="person1.jpeg")
    texts = [text for text, _ in _label_boxes(figure)]
    assert "person1.jpeg\nPNEUMONIA: P(PNEUMONIA) = 0.873, threshold 0.409" in texts
    assert "Grad-CAM weight (relative)" in texts
    assert len(figure.axes) == 2  # the image and its colour bar
    png_size(path)


def test_curves_need_both_classes() -> None:
    with pytest.warns(UserWarning, match="only one class"):
        single = EvaluationReport.from_scores([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ValueError, match="ROC curve needs both classes"):
        plots.plot_roc(single)
    with pytest.raises(ValueError, match="precision-recall curve needs both classes"):
        plots.plot_precision_recall(single)
    plots.plot_confusion_matrix(single)  # these work with one class
    plots.plot_calibration(single)


def test_missing_matplotlib_says_how_to_install(report: EvaluationReport, monkeypatch) -> None:
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'cxr-pneumonia\[plot\]'"):
        plots.plot_confusion_matrix(report)


# --- data figures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def splits():
    from helpers_training import make_splits

    return make_splits(24, 12, size=16)


def test_plot_class_counts_labels_every_bar(splits, tmp_path: Path) -> None:
    figure = plots.plot_class_counts(splits, tmp_path / "counts.png")
    assert png_size(tmp_path / "counts.png")[0] > 100
    (ax,) = figure.axes
    labels = sorted(int(t.get_text()) for t in ax.texts)
    expected = sorted(n for split in splits.class_counts.values() for n in split.values())
    assert labels == expected
    assert [t.get_text() for t in ax.get_xticklabels()] == ["train", "validation"]


def test_plot_samples_draws_each_class(splits, tmp_path: Path) -> None:
    figure = plots.plot_samples(splits, tmp_path / "samples.png", per_class=3, seed=1)
    png_size(tmp_path / "samples.png")
    drawn = [ax for ax in figure.axes if ax.get_visible() and ax.images]
    assert len(drawn) == 6
    ylabels = [ax.get_ylabel() for ax in figure.axes if ax.get_ylabel()]
    assert ylabels == ["NORMAL", "PNEUMONIA"]
    # Row 2 shows PNEUMONIA images only (brighter in the helper's data).
    first_row = np.mean([ax.images[0].get_array().mean() for ax in figure.axes[:3]])
    second_row = np.mean([ax.images[0].get_array().mean() for ax in figure.axes[3:6]])
    assert second_row > first_row + 50
    with pytest.raises(ValueError, match=r"has no 'test' split; it has: train, validation$"):
        plots.plot_samples(splits, split="test")
    with pytest.raises(ValueError, match="per_class"):
        plots.plot_samples(splits, per_class=0)


def test_image_statistics_per_class(splits, tmp_path: Path) -> None:
    stats = plots.image_statistics(splits, split="train", max_images=None)
    images, labels = splits.images["train"], splits.labels["train"]
    for index, name in enumerate(splits.class_names):
        chosen = images[labels == index][..., 0].astype(float)
        np.testing.assert_allclose(stats[name]["mean"], chosen.mean(axis=(1, 2)))
        np.testing.assert_allclose(stats[name]["std"], chosen.std(axis=(1, 2)))
        np.testing.assert_allclose(stats[name]["mean_image"], chosen.mean(axis=0))
    limited = plots.image_statistics(splits, max_images=3)
    assert all(len(v["mean"]) == 3 for v in limited.values())
    figure = plots.plot_image_statistics(splits, tmp_path / "stats.png")
    png_size(tmp_path / "stats.png")
    assert len(figure.axes) == 4


def test_plot_model_says_how_to_get_pydot_and_graphviz(monkeypatch, tmp_path: Path) -> None:
    import shutil

    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    monkeypatch.setitem(sys.modules, "pydot", None)
    with pytest.raises(ImportError, match=r"needs pydot.*cxr-pneumonia\[plot\]"):
        plots.plot_model(model, tmp_path / "model.png")
    monkeypatch.undo()
    pytest.importorskip("pydot")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        plots.plot_model(model, tmp_path / "model.png")
    assert not (tmp_path / "model.png").exists()


@pytest.mark.skipif(
    __import__("shutil").which("dot") is None, reason="Graphviz's dot is not installed"
)
def test_plot_model_writes_the_graph(tmp_path: Path) -> None:
    pytest.importorskip("pydot")
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    plots.plot_model(model, tmp_path / "model.png")
    png_size(tmp_path / "model.png")


def test_plot_gradcam_of_an_ensemble_names_the_layer_once_and_fits(tmp_path: Path) -> None:
    from PIL import Image

    layers = ["member_0/cnn-small/stage3_block2_out"] + [
        f"member_{k}/stage3_block2_out" for k in range(1, 4)
    ]
    explanation = SimpleNamespace(
        prediction=SimpleNamespace(label="NORMAL", probability=0.01, threshold=0.3),
        overlay=Image.new("RGB", (40, 30), (10, 200, 30)),
        heatmap=np.zeros((30, 40), dtype=np.float32),
        layer=", ".join(layers),
        layers=tuple(layers),
    )
    figure = plots.plot_gradcam(explanation, tmp_path / "gradcam.png", title="x.jpeg")
    boxes = dict(_label_boxes(figure))
    caption = "Grad-CAM of layer stage3_block2_out, averaged over 4 members"
    assert caption in boxes
    assert boxes[caption].x0 >= 0
    assert boxes[caption].x1 <= figure.bbox.width
