"""Find the images of a chest X-ray data folder, whatever copy of the data it holds.

[`find_images`][cxr_pneumonia.data.layouts.find_images] recognises the folder layouts the data set
of Kermany et al. (2018) is distributed in, plus the plain ones people make themselves:

=================  ==========================================================
``kaggle``         ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}``: the Kaggle
                   copy. Its 16-image ``val/`` is merged into ``train``; its
                   nested duplicate ``chest_xray/chest_xray/`` tree and
                   ``__MACOSX/`` folder are ignored.
``mendeley-v2``    ``chest_xray/{train,test}/{NORMAL,PNEUMONIA}``: Mendeley Data
                   V2 (``ChestXRay2017.zip``).
``mendeley-v3``    ``CellData/chest_xray/{train,test}/{NORMAL,PNEUMONIA}``:
                   Mendeley Data V3, files named ``BACTERIA-<id>-<k>.jpeg`` etc.
``train-test``     ``<root>/{train,test}/{NORMAL,PNEUMONIA}``.
``train-only``     ``<root>/train/{NORMAL,PNEUMONIA}`` (e.g. ``../shared/data/kermany2018-224``).
``class-folders``  ``<root>/{NORMAL,PNEUMONIA}``: one split, ``train``.
=================  ==========================================================

The folder given may also *contain* one of these a few levels down (an
extracted archive folder holding ``chest_xray/``). Folder names are matched
case-insensitively; only files with an image suffix
(`IMAGE_EXTENSIONS`) count, and hidden entries
(``.DS_Store``, AppleDouble ``._*`` files) and ``__MACOSX/`` are skipped. A
``val/`` folder in any split layout is merged into ``train``: the library draws
its own patient-grouped validation split (`cxr_pneumonia.data.split`).

[`patient_id`][cxr_pneumonia.data.layouts.patient_id] reads the patient out of every file naming
scheme of the data, so that a validation split never puts one patient on both sides.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Union

import numpy as np

from cxr_pneumonia.data.splits import CLASS_NAMES
from cxr_pneumonia.exceptions import DatasetLayoutError
from cxr_pneumonia.images import IMAGE_EXTENSIONS, find_image_files

__all__ = [
    "LAYOUTS",
    "DatasetFiles",
    "UnparsedPatientWarning",
    "find_images",
    "patient_groups",
    "patient_id",
]

logger = logging.getLogger("cxr_pneumonia")

PathLike = Union[str, "os.PathLike[str]"]

LAYOUTS: Mapping[str, str] = MappingProxyType(
    {
        "kaggle": "chest_xray/{train,val,test}/{NORMAL,PNEUMONIA} (the Kaggle copy; val/ is "
        "merged into train, the nested chest_xray/chest_xray/ duplicate and __MACOSX/ are ignored)",
        "mendeley-v2": "chest_xray/{train,test}/{NORMAL,PNEUMONIA} (Mendeley Data V2)",
        "mendeley-v3": "CellData/chest_xray/{train,test}/{NORMAL,PNEUMONIA} (Mendeley Data V3)",
        "train-test": "<root>/{train,test}/{NORMAL,PNEUMONIA}",
        "train-only": "<root>/train/{NORMAL,PNEUMONIA}",
        "class-folders": "<root>/{NORMAL,PNEUMONIA} (one split: train)",
    }
)
"""Name -> description of every folder layout
[`find_images`][cxr_pneumonia.data.layouts.find_images] accepts."""

_SPLIT_FOLDERS = ("train", "val", "test")
"""Split folder names (lower case); ``val`` is merged into ``train``."""
_OUTPUT_SPLITS = ("train", "validation", "test")
_OUTPUT_OF = {"train": "train", "val": "train", "test": "test"}
_OUTPUT_OF_KEEPING_VAL = {"train": "train", "val": "validation", "test": "test"}
_CLASS_FOLDERS = tuple(name.lower() for name in CLASS_NAMES)
_MAX_DEPTH = 3
"""How many folder levels below ``root`` are searched for a layout."""
_MAX_LISTED = 20
"""How many entries an error message lists at most."""
_SHOWN_SKIPPED = 5
"""How many skipped file names the warning about them lists."""


class UnparsedPatientWarning(UserWarning):
    """Some file names encode no patient, so each such file became its own group."""


@dataclass(frozen=True, eq=False)
class DatasetFiles:
    """The image files of a data folder, per split, with their labels.

    Attributes:
        root: The folder that holds the layout (the one with ``train/`` or
            ``NORMAL/``), which may lie below the folder that was searched.
        layout: The name of the layout detected, a key of `LAYOUTS`.
        files: Per split (``"train"``, ``"test"`` when present, and
            ``"validation"`` for a ``val/`` folder kept with
            ``find_images(keep_val=True)``), the image paths, sorted by class,
            then by path.
        labels: Per split, the labels (``int32``, read-only) aligned with
            ``files``: 0 is NORMAL, 1 is PNEUMONIA.
    """

    root: Path
    layout: str
    files: Mapping[str, tuple[Path, ...]]
    labels: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        if set(self.files) != set(self.labels):
            msg = f"files has splits {sorted(self.files)} but labels has {sorted(self.labels)}"
            raise ValueError(msg)
        files: dict[str, tuple[Path, ...]] = {}
        labels: dict[str, np.ndarray] = {}
        for split in self.files:
            paths = tuple(Path(p) for p in self.files[split])
            values = np.array(self.labels[split], dtype=np.int32)
            if values.shape != (len(paths),):
                msg = f"split {split!r}: {len(paths)} files but labels of shape {values.shape}"
                raise ValueError(msg)
            values.flags.writeable = False
            files[split], labels[split] = paths, values
        object.__setattr__(self, "files", MappingProxyType(files))
        object.__setattr__(self, "labels", MappingProxyType(labels))

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits present, e.g. ``("train", "test")``."""
        return tuple(self.files)

    @property
    def class_counts(self) -> dict[str, dict[str, int]]:
        """Per split, the number of images per class, e.g. ``{"train": {"NORMAL": 1341, ...}}``."""
        return {
            split: {name: int(np.count_nonzero(labels == i)) for i, name in enumerate(CLASS_NAMES)}
            for split, labels in self.labels.items()
        }

    def __repr__(self) -> str:
        counts = ", ".join(f"{split}: {len(paths)} files" for split, paths in self.files.items())
        return f"DatasetFiles(root={str(self.root)!r}, layout={self.layout!r}, {counts})"


def find_images(root: PathLike, *, keep_val: bool = False) -> DatasetFiles:
    """Detect the layout of a data folder and list its images with their labels.

    Args:
        root: A folder in one of the `LAYOUTS`, or a folder containing
            one (up to three levels down, e.g. an extracted archive).
        keep_val: Keep a ``val/`` folder as its own split, ``"validation"``,
            instead of merging it into ``train``.

    Returns:
        The files and labels per split, sorted by class, then by path. The
        Kaggle ``val/`` folder (any ``val/``) is merged into ``train`` unless
        ``keep_val``.

    Raises:
        DatasetLayoutError: If ``root`` is not a folder, holds no accepted
            layout (the message lists what it holds and the layouts accepted),
            holds several data sets, or a class folder holds no image file.

    Examples:
        >>> files = find_images("~/data/chest_xray")  # doctest: +SKIP
        >>> files.layout, files.class_counts["train"]  # doctest: +SKIP
        ('kaggle', {'NORMAL': 1349, 'PNEUMONIA': 3883})
    """
    start = Path(root).expanduser().absolute()
    if not start.is_dir():
        reason = "does not exist" if not start.exists() else "is not a folder"
        msg = f"data folder {str(start)!r} {reason}; pass the folder that holds the images"
        raise DatasetLayoutError(msg)

    partial: list[str] = []
    level = [start]
    for depth in range(_MAX_DEPTH + 1):
        matches: list[tuple[Path, dict[str, Path]]] = []
        deeper: list[Path] = []
        for folder in level:
            found, problem = _match(folder)
            if found is not None:
                matches.append((folder, found))
                continue
            if problem is not None:
                partial.append(f"{_relative(folder, start)}: {problem}")
            if depth < _MAX_DEPTH:
                deeper.extend(
                    path
                    for name, path in _subfolders(folder).items()
                    if name not in _SPLIT_FOLDERS and name not in _CLASS_FOLDERS
                )
        if len(matches) > 1:
            listed = ", ".join(f"{_relative(f, start)} ({_layout_name(f, s)})" for f, s in matches)
            msg = (
                f"{str(start)!r} holds {len(matches)} data sets: {listed}; "
                "pass the one to use as the data folder"
            )
            raise DatasetLayoutError(msg)
        if matches:
            folder, found = matches[0]
            return _collect(folder, found, keep_val=keep_val)
        level = sorted(deeper)
    raise DatasetLayoutError(_unknown_layout_message(start, partial))


_PERSON = re.compile(r"person(\d+)_(bacteria|virus)_\d+(?:_\d+)*", re.IGNORECASE)
_NORMAL2 = re.compile(r"normal2-im-(\d+)(?:-\d+)+", re.IGNORECASE)
_IM = re.compile(r"im-(\d+)(?:-\d+)+", re.IGNORECASE)
_V3 = re.compile(r"(normal|bacteria|virus)-(\d+)(?:-\d+)+", re.IGNORECASE)


def patient_id(path: PathLike) -> str | None:
    """Read the patient a file comes from out of its name.

    The naming schemes of the data and the ids they give:

    - ``person<N>_<bacteria|virus>_<k>.jpeg`` -> ``"bacteria-<N>"`` /
      ``"virus-<N>"`` (the person counter runs separately per subtype, so
      ``person12_bacteria`` and ``person12_virus`` are different patients);
    - ``IM-<N>-<k>.jpeg`` -> ``"normal-IM-<N>"``;
    - ``NORMAL2-IM-<N>-<k>.jpeg`` -> ``"normal2-IM-<N>"`` (a separate series);
    - ``NORMAL-<id>-<k>.jpeg``, ``BACTERIA-<id>-<k>.jpeg``,
      ``VIRUS-<id>-<k>.jpeg`` (Mendeley V3) -> ``"NORMAL-<id>"`` etc.

    Numbers are read as integers, so zero padding does not matter
    (``IM-0115-0001`` -> ``"normal-IM-115"``). Only the file name is looked at.

    Args:
        path: A file path or name.

    Returns:
        The patient id, or ``None`` when the name follows none of the schemes.
    """
    stem = Path(os.fspath(path)).stem
    if match := _PERSON.fullmatch(stem):
        return f"{match[2].lower()}-{int(match[1])}"
    if match := _NORMAL2.fullmatch(stem):
        return f"normal2-IM-{int(match[1])}"
    if match := _IM.fullmatch(stem):
        return f"normal-IM-{int(match[1])}"
    if match := _V3.fullmatch(stem):
        return f"{match[1].upper()}-{int(match[2])}"
    return None


def patient_groups(paths: Iterable[PathLike]) -> tuple[str, ...]:
    """The patient of every file, for a patient-grouped split.

    Files whose names encode no patient (see [`patient_id`][cxr_pneumonia.data.layouts.patient_id])
    each get a group of their own (``"file:<path>"``), and one
    [`UnparsedPatientWarning`][cxr_pneumonia.data.layouts.UnparsedPatientWarning] says how many
    there were.

    Args:
        paths: File paths or names.

    Returns:
        One group id per path, in the same order.

    Warns:
        UnparsedPatientWarning: Once, when any name could not be parsed.
    """
    groups: list[str] = []
    unparsed: list[str] = []
    for path in paths:
        patient = patient_id(path)
        if patient is None:
            name = os.fspath(path)
            unparsed.append(name)
            patient = f"file:{name}"
        groups.append(patient)
    if unparsed:
        example = Path(unparsed[0]).name
        msg = (
            f"{len(unparsed)} of {len(groups)} file names encode no patient (e.g. {example!r}); "
            "each such file is treated as its own patient, so images of one patient may "
            "land on both sides of a split"
        )
        warnings.warn(msg, UnparsedPatientWarning, stacklevel=2)
    return tuple(groups)


# --- detection -----------------------------------------------------------------------


def _is_junk(name: str) -> bool:
    """Hidden entries (``.DS_Store``, ``._*`` AppleDouble files) and ``__MACOSX``."""
    return name.startswith(".") or name == "__MACOSX"


def _subfolders(folder: Path) -> dict[str, Path]:
    """Non-junk sub-folders of ``folder`` by lower-case name."""
    result: dict[str, Path] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        msg = f"can't list {str(folder)!r}: {exc}"
        raise DatasetLayoutError(msg) from exc
    for entry in entries:
        if _is_junk(entry.name) or not entry.is_dir():
            continue
        key = entry.name.lower()
        if key in result and key in (*_SPLIT_FOLDERS, *_CLASS_FOLDERS):
            msg = (
                f"{str(folder)!r} has two folders that differ only in case: "
                f"{result[key].name!r} and {entry.name!r}; merge them"
            )
            raise DatasetLayoutError(msg)
        result[key] = Path(entry.path)
    return result


def _match(folder: Path) -> tuple[dict[str, Path] | None, str | None]:
    """Whether ``folder`` holds a layout.

    Returns:
        ``(split folders, None)`` for a match (``{"": folder}`` for class
        folders), ``(None, problem)`` for a near miss, ``(None, None)`` otherwise.
    """
    sub = _subfolders(folder)
    splits = {name: sub[name] for name in _SPLIT_FOLDERS if name in sub}
    classes = [name for name in _CLASS_FOLDERS if name in sub]
    if splits and classes:
        return (
            None,
            "has both split folders (train/, test/) and class folders (NORMAL/, PNEUMONIA/)",
        )
    if classes:
        if len(classes) < len(_CLASS_FOLDERS):
            return None, _missing_classes(classes)
        return {"": folder}, None
    if not splits:
        return None, None
    if "train" not in splits:
        return None, f"has {', '.join(n + '/' for n in splits)} but no train/"
    for name, split_folder in splits.items():
        present = [c for c in _CLASS_FOLDERS if c in _subfolders(split_folder)]
        if len(present) < len(_CLASS_FOLDERS):
            return None, f"{name}/ {_missing_classes(present)}"
    return splits, None


def _missing_classes(present: list[str]) -> str:
    missing = [name for name in CLASS_NAMES if name.lower() not in present]
    return f"has no {' or '.join(m + '/' for m in missing)} class folder"


def _layout_name(folder: Path, splits: Mapping[str, Path]) -> str:
    if "" in splits:
        return "class-folders"
    if folder.name.lower() == "chest_xray":
        if folder.parent.name.lower() == "celldata":
            return "mendeley-v3"
        return "kaggle" if "val" in splits else "mendeley-v2"
    return "train-test" if "test" in splits else "train-only"


def _collect(folder: Path, splits: Mapping[str, Path], *, keep_val: bool) -> DatasetFiles:
    """List the images of a matched layout, ``val`` merged into ``train`` unless ``keep_val``."""
    layout = _layout_name(folder, splits)
    output_of = _OUTPUT_OF_KEEPING_VAL if keep_val else _OUTPUT_OF
    if "" in splits:
        sources = {"train": [folder]}
    else:
        sources = {
            output: [
                splits[name]
                for name in _SPLIT_FOLDERS
                if output_of.get(name) == output and name in splits
            ]
            for output in _OUTPUT_SPLITS
        }
    files: dict[str, tuple[Path, ...]] = {}
    labels: dict[str, np.ndarray] = {}
    skipped: list[tuple[Path, str]] = []
    for output, split_folders in sources.items():
        if not split_folders:
            continue
        pairs: list[tuple[Path, int]] = []
        for split_folder in split_folders:
            sub = _subfolders(split_folder)
            extra = sorted(set(sub) - set(_CLASS_FOLDERS))
            if extra and layout != "class-folders":
                logger.warning("ignoring folders %s in %s: not a class", extra, split_folder)
            for label, name in enumerate(CLASS_NAMES):
                class_folder = sub[name.lower()]
                images = _images_in(class_folder, skipped)
                if not images:
                    msg = (
                        f"class folder {str(class_folder)!r} holds no image files "
                        f"(suffixes: {', '.join(sorted(IMAGE_EXTENSIONS))})"
                    )
                    raise DatasetLayoutError(msg)
                pairs.extend((path, label) for path in images)
        pairs.sort(key=lambda pair: (pair[1], str(pair[0])))
        files[output] = tuple(path for path, _ in pairs)
        labels[output] = np.array([label for _, label in pairs], dtype=np.int32)
    _report_skipped(skipped, folder)
    result = DatasetFiles(root=folder, layout=layout, files=files, labels=labels)
    logger.debug("found %r", result)
    return result


def _images_in(folder: Path, skipped: list[tuple[Path, str]]) -> list[Path]:
    """Image files anywhere below ``folder``, junk ignored; other files added to ``skipped``."""
    images, passed_over = find_image_files(folder)
    skipped.extend(passed_over)
    return images


def _report_skipped(skipped: list[tuple[Path, str]], root: Path) -> None:
    if not skipped:
        return
    shown = "; ".join(f"{path} ({reason})" for path, reason in skipped[:_SHOWN_SKIPPED])
    more = f"; and {len(skipped) - _SHOWN_SKIPPED} more" if len(skipped) > _SHOWN_SKIPPED else ""
    logger.warning(
        "skipped %d file(s) in %s that are not image files (accepted suffixes: %s): %s%s",
        len(skipped),
        root,
        ", ".join(sorted(IMAGE_EXTENSIONS)),
        shown,
        more,
    )


def _relative(folder: Path, start: Path) -> str:
    return "./" if folder == start else f"{folder.relative_to(start).as_posix()}/"


def _unknown_layout_message(start: Path, partial: list[str]) -> str:
    try:
        entries = sorted(os.scandir(start), key=lambda entry: entry.name)
    except OSError:
        entries = []
    names = [entry.name + ("/" if entry.is_dir() else "") for entry in entries]
    shown = ", ".join(names[:_MAX_LISTED]) if names else "nothing (the folder is empty)"
    if len(names) > _MAX_LISTED:
        shown += f", ... ({len(names) - _MAX_LISTED} more)"
    lines = [f"no chest X-ray folder layout recognised in {str(start)!r}", f"  found: {shown}"]
    if partial:
        lines.append("  near misses: " + "; ".join(partial[:_MAX_LISTED]))
    lines.append("  accepted layouts (folder names are case-insensitive):")
    lines.extend(f"    {name}: {description}" for name, description in LAYOUTS.items())
    lines.append("  fix: point to the folder holding train/ (or NORMAL/ and PNEUMONIA/)")
    return "\n".join(lines)
