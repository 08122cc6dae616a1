"""Write-aside-then-rename helpers shared by every module that writes files others depend on.

A file a user or a later run depends on (a bundle, a training backup, a run
state, a cache) is written under a temporary name in its own folder, flushed
and fsynced, then renamed over the target with ``os.replace``: a reader sees
the complete old file or the complete new one, never a half-written one, and
the old one stays until the new one is complete.

Temporary names start with ``.`` and contain ``.tmp-`` followed by 12 hex
digits (`TEMPORARY_PATTERN`), so that debris of a killed writer can be
recognised as ours and removed by a later writer (`remove_debris`), and
nothing else is ever touched.

This module imports nothing else of the package.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "TEMPORARY_PATTERN",
    "atomic_path",
    "fsync_dir",
    "fsync_file",
    "remove_debris",
    "sha256_file",
    "temporary_name",
]

TEMPORARY_PATTERN = re.compile(r"^\.(?P<name>.+)\.tmp-[0-9a-f]{12}(?P<suffix>\..*)?$")
"""Names of the temporaries written by `temporary_name` (and nothing else)."""


def temporary_name(name: str, suffix: str = "") -> str:
    """A hidden, unique temporary name for ``name`` (``.NAME.tmp-<12 hex><suffix>``).

    Args:
        name: The final name the temporary will be renamed to.
        suffix: Appended after the random part, for writers that need a
            given extension (Keras wants ``.weights.h5``).

    Returns:
        A name matching `TEMPORARY_PATTERN`.
    """
    return f".{name}.tmp-{uuid.uuid4().hex[:12]}{suffix}"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks.

    Args:
        path: The file.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a written file's data to disk.

    Args:
        path: The file.
    """
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders can't be opened.

    Args:
        folder: The folder.
    """
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success fsync it and rename it onto ``target``.

    The caller writes the temporary (a file) inside the ``with`` block. When
    the block raises (or the process is interrupted), the temporary is
    removed and ``target`` is left as it was.

    Args:
        target: The file to write.
        suffix: Extension the temporary must end with (see `temporary_name`).

    Yields:
        The temporary path (not yet created).

    Examples:
        >>> with atomic_path("state.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    final = Path(target)
    tmp = final.parent / temporary_name(final.name, suffix)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(final.parent)


def remove_debris(folder: str | os.PathLike[str], name: str) -> list[Path]:
    """Remove the temporaries of ``name`` left in ``folder`` by killed writers.

    Only entries whose name matches `TEMPORARY_PATTERN` for ``name``
    exactly (``.NAME.tmp-<12 hex>...``) are removed: files and folders of
    anyone else are never touched.

    Args:
        folder: Where the temporaries would be.
        name: The final name they were meant for.

    Returns:
        The removed paths.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = TEMPORARY_PATTERN.match(entry.name)
        if match is None or match["name"] != name:
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        removed.append(path)
    return removed
