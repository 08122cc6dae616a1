"""The files of a training backup, written and read by ``AtomicBackupAndRestore``.

A backup folder holds ``epoch-NNNNN.weights.h5`` (the model and optimizer
state after ``NNNNN`` completed epochs, matched by `BACKUP_WEIGHTS`) and a
state file naming the last complete one with its SHA-256. `write_backup`
writes both aside and renames them into place, then drops the older
weights and a killed writer's temporaries; `read_backup_state` parses the
state file; `restore_backup` checks the weights a state names against their
hash and loads them; `delete_backup` removes the folder's files of ours when
training ends. Every function takes the folder and the state file's path,
so the file names stay defined in ``callbacks``.

This module does not import ``callbacks`` (callbacks -> _backup).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from cxr_pneumonia._files import TEMPORARY_PATTERN, atomic_path, sha256_file
from cxr_pneumonia.exceptions import TrainingError

__all__ = [
    "BACKUP_WEIGHTS",
    "delete_backup",
    "read_backup_state",
    "restore_backup",
    "write_backup",
]

logger = logging.getLogger("cxr_pneumonia")

BACKUP_WEIGHTS = re.compile(r"^epoch-(\d+)\.weights\.h5$")
"""The name of a backup's weights file; group 1 is the count of completed epochs."""


def read_backup_state(folder: Path, state_path: Path) -> dict[str, Any] | None:
    """The parsed state file ``state_path`` of the backup in ``folder``, or ``None``.

    Returns:
        ``{"epoch": int, "weights": str, "sha256": str}``, or ``None`` when
        there is no state file.

    Raises:
        TrainingError: If the state file exists but is not a valid record.
    """
    try:
        text = state_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        msg = f"can't read the training backup state {state_path} ({exc})"
        raise TrainingError(msg) from exc
    try:
        state = json.loads(text)
        epoch, weights, digest = state["epoch"], state["weights"], state["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        state, epoch, weights, digest = None, None, None, None
        problem = str(exc)
    else:
        problem = ""
    valid = (
        isinstance(epoch, int)
        and epoch >= 0
        and isinstance(weights, str)
        and BACKUP_WEIGHTS.match(weights) is not None
        and isinstance(digest, str)
    )
    if not valid:
        msg = (
            f"the training backup state {state_path} is not a valid record "
            f"({problem or repr(state)}); delete {folder} (or pass resume=False to "
            "fit) to start over"
        )
        raise TrainingError(msg)
    return {"epoch": epoch, "weights": weights, "sha256": digest}


def restore_backup(
    model: keras.Model, folder: Path, state_path: Path, state: Mapping[str, Any]
) -> None:
    """Load the backup that ``state`` (read from ``state_path``) names into the built ``model``.

    Sets ``model._initial_epoch`` to the backup's epoch, where Keras' ``fit``
    resumes.

    Raises:
        TrainingError: If the named backup is missing, does not match its
            hash, or does not fit the model.
    """
    weights = folder / state["weights"]
    fix = f"delete {folder} (or pass resume=False to fit) to start over"
    try:
        digest = sha256_file(weights)
    except OSError as exc:
        msg = f"the training backup {weights} named by {state_path} can't be read ({exc}); {fix}"
        raise TrainingError(msg) from exc
    if digest != state["sha256"]:
        msg = (
            f"the training backup {weights} does not match the SHA-256 in "
            f"{state_path} (the file is corrupt); {fix}"
        )
        raise TrainingError(msg)
    optimizer = model.optimizer
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)  # its slots must exist to load them
    try:
        model.load_weights(weights)
    except Exception as exc:
        msg = (
            f"the training backup {weights} does not fit model {model.name!r} "
            f"({type(exc).__name__}: {exc}); {fix}"
        )
        raise TrainingError(msg) from exc
    model._initial_epoch = state["epoch"]
    logger.info("restored the training backup of epoch %d from %s", state["epoch"], weights)


def write_backup(model: keras.Model, folder: Path, state_path: Path, epoch: int) -> None:
    """Back ``model`` up as the state after ``epoch`` completed epochs, then drop older backups.

    The weights are written aside and renamed into place, then the state file
    the same way; only then are the older weights and the temporaries of a
    writer killed earlier (only ours, by their naming pattern) removed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch:05d}.weights.h5"
    weights = folder / name
    # Keras wants the file name to end in .weights.h5.
    with atomic_path(weights, suffix=".weights.h5") as tmp:
        model.save_weights(tmp, overwrite=True)
    state = {"epoch": epoch, "weights": name, "sha256": sha256_file(weights)}
    with atomic_path(state_path) as tmp:
        tmp.write_text(json.dumps(state) + "\n", encoding="utf-8")
    # Only now is the new backup the one the state names: drop the older ones.
    for entry in folder.iterdir():
        if BACKUP_WEIGHTS.match(entry.name) and entry.name != name:
            entry.unlink(missing_ok=True)
    # Temporaries of a writer killed earlier (only ours, by their naming pattern).
    for entry in folder.iterdir():
        match = TEMPORARY_PATTERN.match(entry.name)
        if match and (BACKUP_WEIGHTS.match(match["name"]) or match["name"] == state_path.name):
            entry.unlink(missing_ok=True)


def delete_backup(folder: Path, state_path: Path) -> None:
    """Delete the backup's files (and temporaries), then ``folder`` once it is empty."""
    state_path.unlink(missing_ok=True)
    for entry in folder.iterdir():
        match = TEMPORARY_PATTERN.match(entry.name)
        name = match["name"] if match else entry.name
        if BACKUP_WEIGHTS.match(name) or name == state_path.name:
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # fails, as it should, if someone else's files are there
