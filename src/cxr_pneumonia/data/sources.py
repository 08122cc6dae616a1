"""The data set registry: where each named data set comes from, and how to check it.

The registry is a plain table of [`DatasetSource`][cxr_pneumonia.data.sources.DatasetSource]
entries, keyed by name. [`list_datasets`][cxr_pneumonia.data.sources.list_datasets] and
[`get_source`][cxr_pneumonia.data.sources.get_source] read it,
[`register_dataset`][cxr_pneumonia.data.sources.register_dataset] adds to it (for example a mirror
of your own), and the downloader (`cxr_pneumonia.data.download`) only ever works from a
``DatasetSource``.

Built-in sources:

``kermany2018``
    Mendeley Data V2 ``ChestXRay2017.zip`` (about 1.2 GB): the pediatric chest
    X-rays of Kermany et al. (2018), laid out as
    ``chest_xray/{train,test}/{NORMAL,PNEUMONIA}``. No hash has been published
    for it, so it is *trusted on first use*: the SHA-256 of the first complete
    download is recorded beside the file and checked on every later use.
``pneumoniamnist``, ``pneumoniamnist-64``, ``pneumoniamnist-128``, ``pneumoniamnist-224``
    MedMNIST v2 PneumoniaMNIST at 28, 64, 128 and 224 pixels: ``.npz`` files
    with the keys ``{train,val,test}_{images,labels}`` (4,708 / 524 / 624
    images), checked against their published MD5.

Hashes are written in pooch's ``"<algorithm>:<hex digest>"`` form, for example
``"sha256:9f86d0..."`` or ``"md5:28209e..."``; ``None`` means "no published hash,
trust on first use".

This module imports nothing else of the package but `cxr_pneumonia.exceptions`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from cxr_pneumonia.exceptions import UnknownDatasetError

__all__ = [
    "ARCHIVE_SUFFIXES",
    "HASH_ALGORITHMS",
    "DatasetSource",
    "SourceKind",
    "check_hash",
    "get_source",
    "infer_kind",
    "list_datasets",
    "register_dataset",
]

SourceKind = Literal["archive", "npz"]
"""What a downloaded file is: a zip/tar ``"archive"`` of images, or an ``"npz"`` of arrays."""

ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz", ".tar", ".zip")
"""File name endings recognised as archives (longest first)."""

HASH_ALGORITHMS: dict[str, int] = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
"""Accepted hash algorithms and the length of their hexadecimal digest."""

_KINDS: tuple[str, ...] = ("archive", "npz")
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HEX_PATTERN = re.compile(r"[0-9a-fA-F]+")

_KERMANY_CITATION = (
    "Kermany DS, Goldbaum M, Cai W, et al. Identifying Medical Diagnoses and Treatable "
    "Diseases by Image-Based Deep Learning. Cell 172(5):1122-1131 (2018), "
    "doi:10.1016/j.cell.2018.02.010. Data: Kermany D, Zhang K, Goldbaum M. Labeled "
    "Optical Coherence Tomography (OCT) and Chest X-Ray Images for Classification, "
    "Mendeley Data V2 (2018), doi:10.17632/rscbjbr9sj.2."
)
_MEDMNIST_CITATION = (
    "Yang J, Shi R, Wei D, et al. MedMNIST v2 - A large-scale lightweight benchmark for "
    "2D and 3D biomedical image classification. Scientific Data 10, 41 (2023), "
    "doi:10.1038/s41597-022-01721-8. PneumoniaMNIST is derived from Kermany et al., "
    "Cell 172(5):1122-1131 (2018), doi:10.1016/j.cell.2018.02.010."
)
_CC_BY_4 = "CC BY 4.0"


def check_hash(known_hash: str | None) -> str | None:
    """Validate a hash in pooch's ``"<algorithm>:<hex digest>"`` form.

    Args:
        known_hash: A hash such as ``"sha256:<64 hex digits>"`` or
            ``"md5:<32 hex digits>"`` (algorithms: md5, sha1, sha256, sha512),
            or ``None`` for a source without a published hash.

    Returns:
        The hash with its algorithm and digest in lower case, or ``None``.

    Raises:
        ValueError: If the string is not of that form.
    """
    if known_hash is None:
        return None
    allowed = ", ".join(f'"{alg}:<{n} hex digits>"' for alg, n in HASH_ALGORITHMS.items())
    if not isinstance(known_hash, str):
        msg = f"known_hash must be a string or None, got {type(known_hash).__name__}; use {allowed}"
        raise ValueError(msg)
    algorithm, sep, digest = known_hash.strip().partition(":")
    algorithm = algorithm.lower()
    if not sep:
        msg = (
            f"known_hash {known_hash!r} has no algorithm prefix; write it as {allowed}, "
            f'e.g. "sha256:{known_hash}" if it is a SHA-256 digest'
        )
        raise ValueError(msg)
    if algorithm not in HASH_ALGORITHMS:
        msg = f"known_hash {known_hash!r} uses unsupported algorithm {algorithm!r}; use {allowed}"
        raise ValueError(msg)
    length = HASH_ALGORITHMS[algorithm]
    if len(digest) != length or not _HEX_PATTERN.fullmatch(digest):
        msg = (
            f"known_hash {known_hash!r} is not a valid {algorithm} digest: expected "
            f"{length} hexadecimal digits after '{algorithm}:', got {len(digest)} characters"
        )
        raise ValueError(msg)
    return f"{algorithm}:{digest.lower()}"


def infer_kind(filename: str) -> SourceKind | None:
    """Guess a file's kind from its name.

    Args:
        filename: A file name such as ``"ChestXRay2017.zip"``.

    Returns:
        ``"archive"`` for ``.zip``, ``.tar``, ``.tar.gz`` and ``.tgz``,
        ``"npz"`` for ``.npz``, else ``None``.
    """
    lowered = filename.lower()
    if lowered.endswith(ARCHIVE_SUFFIXES):
        return "archive"
    if lowered.endswith(".npz"):
        return "npz"
    return None


def _filename_from_url(url: str) -> str:
    """The last path segment of ``url`` (query and fragment removed), or ``""``."""
    return unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])


@dataclass(frozen=True)
class DatasetSource:
    """Where a data set comes from and how to check what was downloaded.

    Instances are validated when created, so a ``DatasetSource`` that exists is
    usable by the downloader.

    Attributes:
        name: Registry name, e.g. ``"kermany2018"`` (letters, digits, ``.``,
            ``_``, ``-``; also the name of its cache sub-folder).
        url: ``http(s)`` address of the file.
        known_hash: ``"<algorithm>:<hex>"`` (see `HASH_ALGORITHMS`), or
            ``None`` to trust the first download and record its SHA-256.
        filename: Name of the file in the cache (a single path component;
            needed because some URLs, like Mendeley's, end in ``file_downloaded``).
        kind: ``"archive"`` (zip or tar of image folders, extracted after
            download) or ``"npz"`` (arrays read by their keys).
        citation: The reference to cite when using the data.
        license: Licence of the data, e.g. ``"CC BY 4.0"``.
        description: One line about the data set.
        size: Approximate size of the download in bytes, if known.

    Raises:
        ValueError: If a field is invalid (bad name, URL, hash, file name or kind).
    """

    name: str
    url: str
    known_hash: str | None
    filename: str
    kind: SourceKind
    citation: str = ""
    license: str = ""
    description: str = ""
    size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_PATTERN.fullmatch(self.name):
            msg = (
                f"invalid dataset name {self.name!r}: use letters, digits, '.', '_' and '-', "
                "starting with a letter or digit"
            )
            raise ValueError(msg)
        parts = urlsplit(self.url) if isinstance(self.url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            msg = (
                f"invalid url {self.url!r} for dataset {self.name!r}: "
                "expected an http:// or https:// address"
            )
            raise ValueError(msg)
        object.__setattr__(self, "known_hash", check_hash(self.known_hash))
        if (
            not isinstance(self.filename, str)
            or not _NAME_PATTERN.fullmatch(self.filename)
            or ".." in self.filename
        ):
            msg = (
                f"invalid filename {self.filename!r} for dataset {self.name!r}: it must be a "
                "single file name (letters, digits, '.', '_', '-'), e.g. 'mydata.zip'"
            )
            raise ValueError(msg)
        if self.kind not in _KINDS:
            msg = (
                f"invalid kind {self.kind!r} for dataset {self.name!r}; "
                f"choose one of: {', '.join(_KINDS)}"
            )
            raise ValueError(msg)
        if self.size is not None and (not isinstance(self.size, int) or self.size <= 0):
            msg = (
                f"invalid size {self.size!r} for dataset {self.name!r}: "
                "expected a positive number of bytes or None"
            )
            raise ValueError(msg)


_BUILTIN_SOURCES: tuple[DatasetSource, ...] = (
    DatasetSource(
        name="kermany2018",
        url=(
            "https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
            "f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded"
        ),
        known_hash=None,
        filename="ChestXRay2017.zip",
        kind="archive",
        citation=_KERMANY_CITATION,
        license=_CC_BY_4,
        description=(
            "Pediatric chest X-rays (Guangzhou Women and Children's Medical Center), "
            "Mendeley Data V2: chest_xray/{train,test}/{NORMAL,PNEUMONIA}, 5,856 JPEGs. "
            "No published hash: trusted on first use."
        ),
        size=1_235_512_464,
    ),
    *(
        DatasetSource(
            name=f"pneumoniamnist{'' if size == 28 else f'-{size}'}",
            url=(
                "https://zenodo.org/records/10519652/files/"
                f"pneumoniamnist{'' if size == 28 else f'_{size}'}.npz?download=1"
            ),
            known_hash=f"md5:{md5}",
            filename=f"pneumoniamnist{'' if size == 28 else f'_{size}'}.npz",
            kind="npz",
            citation=_MEDMNIST_CITATION,
            license=_CC_BY_4,
            description=(
                f"MedMNIST v2 PneumoniaMNIST, {size}x{size} grayscale, "
                "train/val/test 4,708 / 524 / 624 images."
            ),
        )
        for size, md5 in (
            (28, "28209eda62fecd6e6a2d98b1501bb15f"),
            (64, "8f4eceb4ccffa70c672198ea285246c6"),
            (128, "05b46931834c231683c68f40c47b2971"),
            (224, "d6a3c71de1b945ea11211b03746c1fe1"),
        )
    ),
)

_REGISTRY: dict[str, DatasetSource] = {source.name: source for source in _BUILTIN_SOURCES}


def list_datasets() -> tuple[str, ...]:
    """Names of the registered data sets, sorted.

    Returns:
        The names [`get_source`][cxr_pneumonia.data.sources.get_source] (and ``load_dataset``)
        accept.

    Examples:
        >>> "kermany2018" in list_datasets()
        True
    """
    return tuple(sorted(_REGISTRY))


def get_source(name: str) -> DatasetSource:
    """Look up a registered data set.

    Args:
        name: A name from [`list_datasets`][cxr_pneumonia.data.sources.list_datasets], e.g.
            ``"kermany2018"``.

    Returns:
        Its [`DatasetSource`][cxr_pneumonia.data.sources.DatasetSource].

    Raises:
        UnknownDatasetError: If ``name`` is not registered; the message lists
            the registered names.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        msg = f"unknown dataset {name!r}; choose one of: {', '.join(list_datasets())}"
        raise UnknownDatasetError(msg) from None


def register_dataset(
    name: str,
    *,
    url: str,
    known_hash: str | None,
    citation: str = "",
    overwrite: bool = False,
    license: str = "",
    filename: str | None = None,
    kind: SourceKind | None = None,
    description: str = "",
) -> DatasetSource:
    """Add a data set (for example your own mirror) to the registry.

    Args:
        name: Registry name (letters, digits, ``.``, ``_``, ``-``).
        url: ``http(s)`` address of a zip/tar archive of image folders or of
            an ``.npz`` file with the keys ``{train,val,test}_{images,labels}``.
        known_hash: The file's hash as ``"sha256:<64 hex>"`` or
            ``"md5:<32 hex>"`` (also ``sha1``, ``sha512``). Pass ``None``
            only when no hash is known: the first download is then trusted and
            its SHA-256 recorded and checked on every later use.
        citation: The reference to cite when using the data.
        overwrite: Replace an existing entry of that name (built-ins included).
        license: Licence of the data.
        filename: Name of the file in the cache; defaults to the last segment
            of the URL's path (needed when that has no usable suffix).
        kind: ``"archive"`` or ``"npz"``; inferred from ``filename`` when
            omitted (``.zip``, ``.tar``, ``.tar.gz``, ``.tgz``, ``.npz``).
        description: One line about the data set.

    Returns:
        The registered [`DatasetSource`][cxr_pneumonia.data.sources.DatasetSource].

    Raises:
        ValueError: If ``name`` is already registered and ``overwrite`` is
            false, if a field is invalid (see
            [`DatasetSource`][cxr_pneumonia.data.sources.DatasetSource]), or if the kind can't be
            inferred.

    Examples:
        >>> register_dataset(  # doctest: +SKIP
        ...     "kermany2018-mirror",
        ...     url="https://example.org/data/ChestXRay2017.zip",
        ...     known_hash="sha256:" + "0" * 64,
        ... )
    """
    if name in _REGISTRY and not overwrite:
        msg = (
            f"dataset {name!r} is already registered (url {_REGISTRY[name].url}); "
            "pass overwrite=True to replace it, or choose another name"
        )
        raise ValueError(msg)
    if filename is None:
        filename = _filename_from_url(url) if isinstance(url, str) else ""
        if not filename:
            msg = f"can't name the file of dataset {name!r} from url {url!r}; pass filename="
            raise ValueError(msg)
    if kind is None:
        kind = infer_kind(filename)
        if kind is None:
            msg = (
                f"can't tell what {filename!r} (dataset {name!r}) is from its name; pass "
                "filename= ending in .zip, .tar, .tar.gz, .tgz or .npz, or kind='archive' / 'npz'"
            )
            raise ValueError(msg)
    source = DatasetSource(
        name=name,
        url=url,
        known_hash=known_hash,
        filename=filename,
        kind=kind,
        citation=citation,
        license=license,
        description=description,
    )
    _REGISTRY[name] = source
    return source
