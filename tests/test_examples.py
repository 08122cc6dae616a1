"""Run every script in ``examples/`` on tiny settings, so the examples never rot.

Each example runs in a subprocess (as a user would run it) on a tiny generated
data tree at 32 px, with the cache and ``KERAS_HOME`` in temporary folders (no
download is attempted). ``train_custom_cnn.py`` writes the bundle the
prediction examples then use.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_pneumonia.bundle import read_metadata
from cxr_pneumonia.predictions_csv import prediction_columns

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIMEOUT = 600
TINY = ("--image-size", "32", "--batch-size", "8")


def _xray(label: int, seed: int, size: tuple[int, int] = (40, 44)) -> np.ndarray:
    """A grey ``uint8`` image; PNEUMONIA (1) ones carry a bright blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    image = 70 + rng.normal(0, 10, size)
    if label:
        image += 120 * np.exp(-((yy - size[0] / 2) ** 2 + (xx - size[1] / 3) ** 2) / 40.0)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def data_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/{train,test}/{NORMAL,PNEUMONIA}`` with real-style file names."""
    root = tmp_path_factory.mktemp("examples-data")
    counts = {"train": 20, "test": 4}
    for split, n in counts.items():
        for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                patient = i + (1000 if split == "test" else 0)
                name = (
                    f"IM-{patient:04d}-0001.jpeg" if label == 0 else f"person{patient}_virus_1.jpeg"
                )
                Image.fromarray(_xray(label, seed=patient * 2 + label)).save(folder / name)
    return root


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of the example processes: private cache and Keras home, quiet TF."""
    home = tmp_path_factory.mktemp("examples-env")
    return {
        **os.environ,
        "CXR_PNEUMONIA_CACHE_DIR": str(home / "cache"),
        "KERAS_HOME": str(home / "keras"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
    }


def run_example(
    script: str, *args: str | os.PathLike[str], env: dict[str, str], expect: int = 0
) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<script>`` with ``args``; assert its exit code."""
    command = [sys.executable, str(EXAMPLES / script), *map(str, args)]
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=TIMEOUT, check=False
    )
    assert done.returncode == expect, (
        f"{script} exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}"
        f"\n--- stderr\n{done.stderr[-3000:]}"
    )
    return done


@pytest.fixture(scope="session")
def bundle(
    data_tree: Path, env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A bundle trained by ``train_custom_cnn.py`` (the ``cnn`` model, 1 epoch, 32 px)."""
    out = tmp_path_factory.mktemp("examples-bundle") / "cnn"
    done = run_example(
        "train_custom_cnn.py",
        "--data-dir",
        data_tree,
        *TINY,
        "--epochs",
        "1",
        "--out",
        out,
        env=env,
    )
    return out, done


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "xray.png"
    Image.fromarray(_xray(1, seed=7, size=(50, 60))).save(path)
    return path


def test_every_example_is_tested() -> None:
    tested = {
        "quickstart.py",
        "train_custom_cnn.py",
        "transfer_learning.py",
        "predict_folder_to_csv.py",
        "web_service.py",
        "gradcam.py",
        "kfold_study.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_quickstart(data_tree: Path, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "quickstart"
    done = run_example(
        "quickstart.py", "--data-dir", data_tree, *TINY, "--epochs", "1", "--out", out, env=env
    )
    assert "class_weight" in done.stdout  # the data summary
    assert "kept the weights of epoch" in done.stdout  # fit says which weights it kept
    assert "\r" not in done.stdout  # plain lines in a pipe: no redraws, no escape codes
    assert "\x1b" not in done.stdout
    assert "Prediction(label=" in done.stdout
    assert (out / "model.keras").is_file()
    assert (out / "metadata.json").is_file()


def test_train_custom_cnn(bundle: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, done = bundle
    metadata = read_metadata(out)
    assert metadata.model_name == "cnn"
    assert metadata.image_size == (32, 32)
    assert 0.0 <= metadata.threshold <= 1.0
    assert "recall" in metadata.metrics
    assert (Path(f"{out}.checkpoints") / "training_log.csv").is_file()
    assert "test:" in done.stdout  # the tree has a test split


def test_transfer_learning(data_tree: Path, env: dict[str, str]) -> None:
    done = run_example(
        "transfer_learning.py",
        "--data-dir",
        data_tree,
        *TINY,
        "--backbone",
        "vgg19",
        "--weights",
        "none",
        "--epochs",
        "1",
        "--fine-tune-epochs",
        "1",
        env=env,
    )
    assert "(train)" in done.stdout
    assert "(fine_tune)" in done.stdout


def test_kfold_study(data_tree: Path, env: dict[str, str]) -> None:
    done = run_example(
        "kfold_study.py",
        "--data-dir",
        data_tree,
        *TINY,
        "--folds",
        "2",
        "--epochs",
        "1",
        "--models",
        "dense-kfold",
        "own",
        env=env,
    )
    assert "dense-kfold: ROC AUC" in done.stdout
    assert "two_class_cnn: ROC AUC" in done.stdout  # a builder function, softmax output
    assert "over 2 folds" in done.stdout


def test_predict_folder_to_csv(
    bundle: tuple[Path, subprocess.CompletedProcess[str]], env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "inbox"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(_xray(0, seed=1)).save(folder / "a.jpeg")
    Image.fromarray(_xray(1, seed=2)).convert("RGB").save(folder / "sub" / "b.png")
    (folder / "broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / ".DS_Store").write_bytes(b"junk")
    out = tmp_path / "predictions.csv"
    done = run_example(
        "predict_folder_to_csv.py", folder, "--model", bundle[0], "--out", out, env=env, expect=1
    )
    assert "2 predicted, 1 failed" in done.stderr
    with out.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = {Path(row["source"]).name: row for row in reader}
    # One format with `cxr-pneumonia predict --format csv`: the library's writer.
    assert reader.fieldnames == prediction_columns()
    assert set(rows) == {"a.jpeg", "b.png", "broken.jpeg"}
    for name in ("a.jpeg", "b.png"):
        assert rows[name]["label"] in ("NORMAL", "PNEUMONIA")
        assert 0.0 <= float(rows[name]["probability"]) <= 1.0
        assert rows[name]["error"] == ""
    assert rows["broken.jpeg"]["label"] == ""
    assert "broken.jpeg" in rows["broken.jpeg"]["error"]


def test_gradcam(
    bundle: tuple[Path, subprocess.CompletedProcess[str]],
    env: dict[str, str],
    image_file: Path,
    tmp_path: Path,
) -> None:
    pytest.importorskip("matplotlib")
    overlay, maps = tmp_path / "cam.png", tmp_path / "maps.png"
    done = run_example(
        "gradcam.py",
        image_file,
        "--model",
        bundle[0],
        "--out",
        overlay,
        "--feature-maps",
        maps,
        env=env,
    )
    assert "Grad-CAM of layer" in done.stdout
    with Image.open(overlay) as picture:
        assert picture.size == (60, 50)  # the input image's own size (width, height)
    assert maps.stat().st_size > 0


def _read_line(stream, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


def _request(url: str, data: bytes | None = None) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, data=data, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_web_service(
    bundle: tuple[Path, subprocess.CompletedProcess[str]],
    env: dict[str, str],
    image_file: Path,
    tmp_path: Path,
) -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, EXAMPLES / "web_service.py", "--model", bundle[0], "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    try:
        line = _read_line(server.stdout, timeout=TIMEOUT)
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.split()[-1]

        status, health = _request(f"{url}/health")
        assert (status, health) == (200, {"status": "ok"})
        deadline = time.monotonic() + TIMEOUT
        while (ready := _request(f"{url}/ready"))[0] != 200:
            assert time.monotonic() < deadline, ready
            time.sleep(0.1)
        assert ready[1]["model"] == "cnn"

        status, answer = _request(f"{url}/predict", image_file.read_bytes())
        assert status == 200, answer
        assert answer["label"] in ("NORMAL", "PNEUMONIA")
        assert 0.0 <= answer["probability"] <= 1.0

        status, answer = _request(f"{url}/predict?threshold=0", image_file.read_bytes())
        assert (status, answer["label"], answer["threshold"]) == (200, "PNEUMONIA", 0.0)

        status, answer = _request(f"{url}/predict", b"this is not an image")
        assert status == 400
        assert "error" in answer
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
            server.stdout.close()
            log.close()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal (exit status -15).
    assert server.returncode in (0, -signal.SIGTERM)


def test_docs_figure_script(
    bundle: tuple[Path, subprocess.CompletedProcess[str]],
    data_tree: Path,
    env: dict[str, str],
    image_file: Path,
    tmp_path: Path,
) -> None:
    """``scripts/make_figures.py`` draws the model card's figures of a bundle."""
    pytest.importorskip("matplotlib")
    out, _ = bundle
    figures = tmp_path / "figures"
    command = [
        sys.executable,
        EXAMPLES.parent / "scripts" / "make_figures.py",
        "--model",
        out,
        "--data-dir",
        data_tree,
        "--log",
        Path(f"{out}.checkpoints") / "training_log.csv",
        "--images",
        image_file,
        "--out",
        figures,
    ]
    done = subprocess.run(
        list(map(str, command)), capture_output=True, text=True, env=env, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = {
        "roc.png",
        "precision-recall.png",
        "confusion-matrix.png",
        "calibration.png",
        "training-history.png",
        "gradcam-xray.png",
        "feature-maps-xray.png",
    }
    assert {p.name for p in figures.iterdir()} == expected
