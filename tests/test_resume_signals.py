"""A training process killed by a real signal resumes from its last complete backup.

The child process trains a tiny model with a ``checkpoint_dir``. At the
chosen point it writes a marker file and waits; this process then sends it
SIGKILL or SIGINT. The point "mid-backup" stops the child *inside* the
backup write of the third epoch, after truncating the half-written file (what
a kill during the write leaves); "mid-epoch" stops it in the middle of the
third epoch. The rerun (here, in this process, with a fresh model) must
continue after the last complete epoch and end with a bundle that loads.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cxr_pneumonia.bundle import load_bundle, save_model
from cxr_pneumonia.training import fit
from cxr_pneumonia.training.callbacks import BACKUP_DIRNAME, LOG_FILENAME
from helpers_training import make_splits, tiny_model

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import keras
    from cxr_pneumonia.training import fit
    from helpers_training import make_splits, tiny_model

    folder, point, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

    def stop_here():
        marker.write_text("ready")
        while True:
            time.sleep(0.05)

    if point == "mid-backup":
        original = keras.Model.save_weights
        calls = []

        def save_weights(self, filepath, *args, **kwargs):
            original(self, filepath, *args, **kwargs)
            calls.append(filepath)
            if len(calls) == 3:  # the backup after the third epoch, cut short
                size = os.path.getsize(filepath)
                with open(filepath, "r+b") as handle:
                    handle.truncate(size // 2)
                stop_here()

        keras.Model.save_weights = save_weights
        callbacks = "default"
    else:
        class Stop(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if self._epoch == 2 and batch == 1:
                    stop_here()

            def on_epoch_begin(self, epoch, logs=None):
                self._epoch = epoch

        from cxr_pneumonia.training.callbacks import default_callbacks
        callbacks = [*default_callbacks(folder), Stop()]

    fit(tiny_model(), make_splits(), epochs=5, checkpoint_dir=folder, callbacks=callbacks,
        verbose=0)
    """
)


def _logged_epochs(folder: Path) -> list[int]:
    with (folder / LOG_FILENAME).open(newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def _run_until(point: str, folder: Path, sig: signal.Signals, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder), point, str(marker)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            if child.poll() is not None:
                _, err = child.communicate()
                pytest.fail(f"the child ended before the kill point: {err.decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the child never reached the kill point")
            time.sleep(0.1)
        child.send_signal(sig)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # Seen once in CI (2026-11-30, SIGINT, not reproduced in 5 local runs, idle or
            # loaded): the interrupted child did not exit within 60 s. What this test is about
            # is what the interruption left on disk, so end the child and check that; the
            # interpreter's shutdown after KeyboardInterrupt is TensorFlow's.
            child.kill()
            child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stderr is not None:
            child.stderr.close()
    assert child.returncode != 0


@pytest.mark.parametrize(
    ("point", "sig", "resumed_epochs"),
    [
        ("mid-backup", signal.SIGKILL, (2, 3, 4)),
        ("mid-backup", signal.SIGINT, (2, 3, 4)),
        ("mid-epoch", signal.SIGKILL, (2, 3, 4)),
    ],
    ids=["sigkill-mid-backup", "sigint-mid-backup", "sigkill-mid-epoch"],
)
def test_killed_training_resumes_and_ends_with_a_bundle(
    point: str, sig: signal.Signals, resumed_epochs: tuple[int, ...], tmp_path: Path
) -> None:
    folder = tmp_path / "run"
    _run_until(point, folder, sig, tmp_path)
    # What the kill left: two completed epochs backed up, nothing newer trusted.
    assert (folder / BACKUP_DIRNAME).is_dir()

    model = tiny_model(seed=9)  # a new process would build a fresh model
    result = fit(model, make_splits(), epochs=5, checkpoint_dir=folder, verbose=0)
    assert result.resumed
    assert result.epochs == (1, 2, 3, 4, 5)
    assert result.epochs_run == len(resumed_epochs)
    assert _logged_epochs(folder) == [1, 2, 3, 4, 5]  # each epoch logged once
    assert not (folder / BACKUP_DIRNAME).exists()  # finished: the backup is gone
    assert not [p.name for p in folder.iterdir() if ".tmp-" in p.name]

    bundle = save_model(model, tmp_path / "bundle")
    loaded, _ = load_bundle(bundle)
    assert [w.shape for w in loaded.get_weights()] == [w.shape for w in model.get_weights()]


def test_a_rerun_removes_the_temporaries_a_killed_run_left(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    ours = [
        ".run_state.json.tmp-0123456789ab",
        ".best_val_loss.keras.tmp-0123456789ab.keras",
        ".after_train.weights.npz.tmp-0123456789ab",
    ]
    foreign = [".notes.txt.tmp-0123456789ab", ".run_state.json.tmp-mine"]
    for name in ours + foreign:
        (folder / name).write_bytes(b"half")
    fit(tiny_model(), make_splits(), epochs=1, checkpoint_dir=folder, verbose=0)
    hidden = sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
    assert hidden == sorted(foreign)
