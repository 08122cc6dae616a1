"""Download data sets through pooch, check them, and extract archives safely.

Where files go:
    ``<cache_dir>/downloads/<source name>/<source filename>``, and an archive is
    extracted beside it into ``<cache_dir>/downloads/<source name>/<archive stem>/``.
    ``cache_dir`` defaults to [`default_cache_dir`][cxr_pneumonia.data.download.default_cache_dir]
    (the ``CXR_PNEUMONIA_CACHE_DIR`` environment variable, else pooch's per-user cache folder for
    ``cxr-pneumonia``).

What is trusted:
    * A source with a ``known_hash`` is checked against it after every download
      and on every later use. A download that does not match raises
      [`DownloadError`][cxr_pneumonia.exceptions.DownloadError] naming both hashes and keeps
      nothing; a cached copy that no longer matches is downloaded again.
    * A source without a published hash (``kermany2018``) is *trusted on first
      use*: the SHA-256 of the first complete download is recorded beside the
      file in ``<filename>.sha256`` (``sha256sum`` format) and checked on every
      later use. A cached file that no longer matches raises ``DownloadError``:
      delete the file to download it again (checked against the record), and
      the record as well to accept a new version from the server. A cached
      file without a record is not trusted and is downloaded again.
    * pooch streams every download into a temporary file in the same folder and
      moves it into place only once it is complete and checked, so an
      interrupted download never leaves a file that a later call would use.
      Network errors are retried (``retries`` times, by pooch); a hash mismatch
      is not, since downloading the same bytes again would not help.
    * [`extract_archive`][cxr_pneumonia.data.download.extract_archive] refuses archives with members
      that would land outside the target folder (absolute paths, ``..``, links pointing out),
      extracts into a temporary folder beside the target and renames it into place with a completion
      marker, so a half-done extraction is never used.

Logs go to the ``"cxr_pneumonia"`` logger.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pooch

from cxr_pneumonia.data.sources import ARCHIVE_SUFFIXES, DatasetSource, get_source
from cxr_pneumonia.exceptions import CacheError, DownloadError

__all__ = [
    "CACHE_ENV_VAR",
    "default_cache_dir",
    "ensure_local",
    "extract_archive",
    "fetch",
]

CACHE_ENV_VAR = "CXR_PNEUMONIA_CACHE_DIR"
"""Environment variable that overrides the default cache folder."""

_logger = logging.getLogger("cxr_pneumonia")

_DOWNLOADS = "downloads"
_MARKER = ".cxr-pneumonia-extracted.json"
_CHUNK = 1 << 20  # 1 MiB: pooch's default of 1 KiB is slow for a 1.2 GB archive.
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def default_cache_dir() -> Path:
    """The folder downloads and decoded-image caches go to by default.

    Returns:
        ``$CXR_PNEUMONIA_CACHE_DIR`` (``~`` expanded) when that variable is set
        and not empty, else pooch's per-user cache folder for ``cxr-pneumonia``
        (e.g. ``~/.cache/cxr-pneumonia`` on Linux). The folder is not created.
    """
    override = os.environ.get(CACHE_ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    return Path(pooch.os_cache("cxr-pneumonia"))


def fetch(
    source: DatasetSource | str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    retries: int = 3,
) -> Path:
    """Download a data set file into the cache (or reuse the checked cached copy).

    Args:
        source: A [`DatasetSource`][cxr_pneumonia.data.sources.DatasetSource] or a
            registered name such as ``"kermany2018"``.
        cache_dir: Cache folder; defaults to
            [`default_cache_dir`][cxr_pneumonia.data.download.default_cache_dir].
        progress: Show a tqdm progress bar on stderr while downloading.
        retries: How many times to retry a download that failed for a network
            or server error (pooch waits 1, 2, 3... seconds between attempts).

    Returns:
        The path of the checked file,
        ``<cache_dir>/downloads/<source.name>/<source.filename>``.

    Raises:
        UnknownDatasetError: If ``source`` is a name that is not registered.
        DownloadError: If the server answers with an error, the connection
            fails (after the retries), the download does not match the known
            hash, or a cached file trusted on first use was modified.
        CacheError: If the cache folder can't be created or written.
    """
    if isinstance(source, str):
        source = get_source(source)
    if not isinstance(retries, int) or retries < 0:
        msg = f"retries must be a non-negative integer, got {retries!r}"
        raise ValueError(msg)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    folder = root / _DOWNLOADS / source.name
    path = folder / source.filename
    record = path.with_name(path.name + ".sha256")
    expected = source.known_hash if source.known_hash is not None else _read_record(record)
    if path.is_file() and _cached_copy_is_good(source, path, expected, record):
        return path  # a read-only cache holding checked files is fine

    _ensure_writable(folder)
    downloader = _CheckingDownloader(source, expected, record, progress=progress)
    _download(source, folder, downloader, retries=retries)
    if source.known_hash is None and expected is None and downloader.digest is not None:
        _write_record(record, downloader.digest, path.name)
        _logger.info(
            "%s has no published hash; recorded the SHA-256 of this first download in %s "
            "and will check it on every later use",
            source.name,
            record,
        )
    return path


def ensure_local(
    source: DatasetSource | str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    retries: int = 3,
) -> Path:
    """Make a data set usable locally: download (see [`fetch`][cxr_pneumonia.data.download.fetch])
    and extract archives.

    Args:
        source: A [`DatasetSource`][cxr_pneumonia.data.sources.DatasetSource] or a
            registered name.
        cache_dir: Cache folder; defaults to
            [`default_cache_dir`][cxr_pneumonia.data.download.default_cache_dir].
        progress: Show a progress bar while downloading.
        retries: Retries of a download that failed for a network or server error.

    Returns:
        For an ``"archive"`` source, the folder it was extracted into (an
        earlier complete extraction of the same archive file is reused); for
        an ``"npz"`` source, the path of the ``.npz`` file.

    Raises:
        UnknownDatasetError: If ``source`` is a name that is not registered.
        DownloadError: As [`fetch`][cxr_pneumonia.data.download.fetch], or if the archive is corrupt
            or unsafe (the cached archive and its trust-on-first-use hash record are then removed,
            so that a retry against a fixed server starts afresh).
        CacheError: If the cache folder can't be created or written.
    """
    if isinstance(source, str):
        source = get_source(source)
    path = fetch(source, cache_dir=cache_dir, progress=progress, retries=retries)
    if source.kind == "npz":
        return path
    try:
        return extract_archive(path, path.with_name(_archive_stem(path.name)))
    except DownloadError as exc:
        # The downloaded archive itself is refused (an unsafe member, corrupt, not an
        # archive): keeping it, with the hash record trusting it, would fail the same way
        # on every retry. Both are ours (in the download cache), so remove both.
        record = path.with_name(path.name + ".sha256")
        _remove(path)
        removed = [str(path)]
        if source.known_hash is None:
            _remove(record)
            removed.append(str(record))
        msg = (
            f"{exc} Removed the cached download ({', '.join(removed)}), so that the next "
            "call downloads it again."
        )
        raise DownloadError(msg) from exc


def extract_archive(path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract a zip or tar (optionally gzip/bz2/xz compressed) archive safely.

    Every member is checked before anything is written: absolute paths, ``..``
    components, links pointing outside ``dest`` (or any link in a zip) and
    special files (devices, fifos) are refused. The archive is extracted into
    a temporary folder beside ``dest`` which is renamed to ``dest`` only once
    complete, with a marker file recording which archive it came from; a
    later call with the same, unchanged archive returns ``dest`` at once, and
    a changed archive (other size or modification time) is extracted again.

    Args:
        path: The archive file.
        dest: The folder to extract into. It must not exist, or be an earlier
            extraction made by this function.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DownloadError: If the archive is not a zip or tar file, is corrupt, or
            has a member that would escape ``dest``.
        CacheError: If ``dest`` exists but is not an extraction made by this
            function, or its parent folder can't be written.
    """
    archive = Path(path)
    dest = Path(dest)
    identity = _archive_identity(archive)
    if _marker_matches(dest, identity):
        _logger.debug("reusing the extraction of %s in %s", archive, dest)
        return dest
    if dest.exists() and not (dest / _MARKER).is_file():
        msg = (
            f"can't extract {archive.name} into {dest}: that path exists but is not an "
            "extraction made by cxr-pneumonia; remove it or choose another folder"
        )
        raise CacheError(msg)
    _ensure_writable(dest.parent)
    leftovers = sorted(p.name for p in dest.parent.glob(f".{dest.name}.partial-*"))
    if leftovers:
        _logger.warning(
            "ignoring unfinished extractions in %s (%s); they are never used and can be deleted",
            dest.parent,
            ", ".join(leftovers),
        )
    _logger.info("extracting %s into %s", archive, dest)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    except OSError as err:
        raise _cache_error(dest.parent, err) from err
    try:
        _extract_checked(archive, staging)
        try:
            (staging / _MARKER).write_text(json.dumps(identity), encoding="utf-8")
        except OSError as err:
            raise _cache_error(dest.parent, err) from err
        _move_into_place(staging, dest, identity)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest


# --- downloading -------------------------------------------------------------------------


class _CheckingDownloader:
    """A pooch downloader that checks the temporary download before pooch moves it in place.

    Raising [`DownloadError`][cxr_pneumonia.exceptions.DownloadError] (not ``ValueError``) on a
    mismatch makes pooch skip its retries while still deleting the temporary file.
    """

    def __init__(
        self, source: DatasetSource, expected: str | None, record: Path, *, progress: bool
    ) -> None:
        self.source = source
        self.expected = expected
        self.record = record
        self.progress = progress
        self.algorithm = expected.partition(":")[0] if expected else "sha256"
        self.digest: str | None = None
        self._http = pooch.HTTPDownloader(progressbar=progress, chunk_size=_CHUNK)

    def __call__(
        self, url: str, output_file: Any, pooch_instance: Any, check_only: bool = False
    ) -> Any:
        import requests  # pooch's dependency; imported lazily, as pooch does

        try:
            result = self._http(url, output_file, pooch_instance, check_only=check_only)
        except requests.RequestException as err:
            if err.response is not None:  # pooch leaves an error response's socket open
                err.response.close()
            raise
        if check_only:
            return result
        got = f"{self.algorithm}:{pooch.file_hash(str(output_file), alg=self.algorithm)}"
        if self.expected is not None and got != self.expected:
            raise DownloadError(self._mismatch_message(got))
        self.digest = got
        return result

    def _mismatch_message(self, got: str) -> str:
        name, url = self.source.name, self.source.url
        if self.source.known_hash is not None:
            return (
                f"the download of {name!r} from {url} does not match its known hash: "
                f"expected {self.expected}, got {got}. Nothing was kept. The file may have "
                "been corrupted on the way or changed on the server; try again, and if it "
                "persists check the source's known_hash."
            )
        return (
            f"the download of {name!r} from {url} does not match the hash recorded when it "
            f"was first downloaded: expected {self.expected} (from {self.record}), got {got}. "
            "Nothing was kept. The file on the server changed or the download was tampered "
            f"with; if you trust the new file, delete {self.record} and call again."
        )


def _cached_copy_is_good(
    source: DatasetSource, path: Path, expected: str | None, record: Path
) -> bool:
    """Check the cached ``path``: ``True`` to use it, ``False`` (after removing it) to download.

    Raises:
        DownloadError: If a file trusted on first use no longer matches its record.
    """
    if expected is None:
        _logger.warning(
            "%s has no recorded SHA-256 (%s missing), so it is not trusted; downloading it again",
            path,
            record.name,
        )
        _remove(path)
        return False
    algorithm = expected.partition(":")[0]
    try:
        got = f"{algorithm}:{pooch.file_hash(str(path), alg=algorithm)}"
    except OSError as err:
        raise _cache_error(path.parent, err) from err
    if got == expected:
        _logger.info("using cached %s (%s checked)", path, algorithm)
        return True
    if source.known_hash is None:
        msg = (
            f"the cached file {path} of {source.name!r} has changed since it was first "
            f"downloaded: its hash is {got}, but {expected} was recorded in {record}. It was "
            f"modified or corrupted; delete {path} to download it again (and also {record} "
            "if you trust that the file on the server changed)."
        )
        raise DownloadError(msg)
    _logger.warning(
        "cached %s does not match its known hash (expected %s, got %s); downloading it again",
        path,
        expected,
        got,
    )
    _remove(path)
    return False


def _download(
    source: DatasetSource, folder: Path, downloader: _CheckingDownloader, *, retries: int
) -> None:
    """Let pooch stream ``source`` into ``folder`` and turn its errors into ours."""
    import requests  # pooch's dependency; imported lazily, as pooch does

    fetcher = pooch.Pooch(
        path=folder,
        base_url="",
        registry={source.filename: None},  # the downloader checks the hash
        urls={source.filename: source.url},
        retry_if_failed=retries,
    )
    attempts = f"{retries + 1} attempt{'s' if retries else ''}"
    try:
        fetcher.fetch(source.filename, downloader=downloader, progressbar=downloader.progress)
    except requests.HTTPError as err:
        response = err.response
        status = (
            f"HTTP {response.status_code} {response.reason}" if response is not None else str(err)
        )
        msg = (
            f"downloading {source.name!r} from {source.url} failed with {status} "
            f"({attempts}); check the URL, or try again later if the server is unavailable"
        )
        raise DownloadError(msg) from err
    except requests.RequestException as err:
        msg = (
            f"downloading {source.name!r} from {source.url} failed ({attempts}): {err}. "
            "Nothing partial was kept; check your connection and call again"
        )
        raise DownloadError(msg) from err
    except DownloadError:
        raise
    except OSError as err:
        raise _cache_error(folder, err) from err


def _read_record(record: Path) -> str | None:
    """The ``"sha256:<hex>"`` stored in a trust-on-first-use record, or ``None`` if absent."""
    try:
        text = record.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise _cache_error(record.parent, err) from err
    digest = text.split()[0].lower() if text.split() else ""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        msg = (
            f"the hash record {record} is not a SHA-256 digest; delete it and the file it "
            "describes to download the file again"
        )
        raise DownloadError(msg)
    return f"sha256:{digest}"


def _write_record(record: Path, digest: str, filename: str) -> None:
    """Write ``<hex>  <filename>`` (``sha256sum -c`` format) atomically."""
    hex_digest = digest.partition(":")[2]
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{record.name}.", dir=record.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{hex_digest}  {filename}\n")
        os.replace(tmp, record)
    except OSError as err:
        raise _cache_error(record.parent, err) from err


# --- cache folders ----------------------------------------------------------------------


def _ensure_writable(folder: Path) -> None:
    """Create ``folder`` if needed and check a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise _cache_error(folder, err) from err


def _cache_error(folder: Path, err: OSError) -> CacheError:
    reason = err.strerror or str(err)
    msg = (
        f"can't use the cache folder {folder}: {reason}. Pass cache_dir= a writable "
        f"folder, or set the {CACHE_ENV_VAR} environment variable to one"
    )
    return CacheError(msg)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as err:
        raise _cache_error(path.parent, err) from err


# --- extraction ---------------------------------------------------------------------------


def _archive_stem(filename: str) -> str:
    """``"ChestXRay2017.zip"`` -> ``"ChestXRay2017"``; other names get ``"-extracted"``."""
    lowered = filename.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lowered.endswith(suffix) and len(filename) > len(suffix):
            return filename[: -len(suffix)]
    return f"{filename}-extracted"


def _archive_identity(archive: Path) -> dict[str, Any]:
    try:
        info = archive.stat()
    except OSError as err:
        msg = f"can't read the archive {archive}: {err.strerror or err}"
        raise DownloadError(msg) from err
    return {"archive": archive.name, "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def _marker_matches(dest: Path, identity: dict[str, Any]) -> bool:
    try:
        recorded = json.loads((dest / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(recorded == identity)


def _move_into_place(staging: Path, dest: Path, identity: dict[str, Any]) -> None:
    """Rename the finished ``staging`` folder to ``dest``, replacing an outdated extraction."""
    old: Path | None = None
    try:
        if dest.exists():  # an earlier extraction of another version of the archive
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / dest.name)
        os.replace(staging, dest)
    except OSError as err:
        if _marker_matches(dest, identity):  # another process finished the same work first
            return
        raise _cache_error(dest.parent, err) from err
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _unsafe(archive: Path, member: str, why: str) -> DownloadError:
    msg = (
        f"refusing to extract {archive}: member {member!r} {why}. The archive may be "
        "malicious or corrupt; delete it and download it again from a trusted source"
    )
    return DownloadError(msg)


def _check_member_path(archive: Path, name: str) -> None:
    """Refuse member names that are absolute or climb out with ``..``."""
    if not name or name.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(name):
        raise _unsafe(archive, name, "has an absolute path")
    if ".." in re.split(r"[/\\]", name):
        raise _unsafe(archive, name, "contains '..'")


def _escapes(target: str) -> bool:
    """Whether a normalised POSIX path relative to the extraction root leaves it."""
    return target == ".." or target.startswith(("/", "../"))


def _check_tar(archive: Path, members: list[tarfile.TarInfo]) -> None:
    for member in members:
        _check_member_path(archive, member.name)
        if member.issym():
            if member.linkname.startswith("/"):
                raise _unsafe(
                    archive, member.name, f"is a link to the absolute path {member.linkname!r}"
                )
            target = posixpath.normpath(
                posixpath.join(posixpath.dirname(member.name), member.linkname)
            )
            if _escapes(target):
                raise _unsafe(
                    archive, member.name, f"is a link pointing outside ({member.linkname!r})"
                )
        elif member.islnk():
            if _escapes(posixpath.normpath(member.linkname)):
                raise _unsafe(
                    archive, member.name, f"is a hard link pointing outside ({member.linkname!r})"
                )
        elif not (member.isfile() or member.isdir()):
            raise _unsafe(archive, member.name, "is a device, fifo or other special file")


def _check_zip(archive: Path, members: list[zipfile.ZipInfo]) -> None:
    for member in members:
        _check_member_path(archive, member.filename)
        if stat.S_ISLNK(member.external_attr >> 16):
            raise _unsafe(archive, member.filename, "is a symbolic link (not allowed in zip files)")


def _extract_checked(archive: Path, staging: Path) -> None:
    """Check every member of ``archive``, then extract it into ``staging``."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                _check_zip(archive, zipped.infolist())
                zipped.extractall(staging)
            return
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tarred:
                _check_tar(archive, tarred.getmembers())
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                    tarred.extractall(staging, filter="data")
                else:  # pragma: no cover - old patch releases; our checks still apply
                    tarred.extractall(staging)
            return
    except DownloadError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, ValueError) as err:
        msg = f"the archive {archive} is corrupt or unsafe ({err}); delete it to download it again"
        raise DownloadError(msg) from err
    except OSError as err:
        if isinstance(err, (FileNotFoundError, IsADirectoryError)) and not archive.is_file():
            msg = f"can't read the archive {archive}: {err.strerror or err}"
            raise DownloadError(msg) from err
        raise _cache_error(staging.parent, err) from err
    msg = f"{archive} is neither a zip nor a tar archive; delete it to download it again"
    raise DownloadError(msg)
