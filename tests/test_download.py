"""Downloads (through pooch, from a 127.0.0.1 server), hash checks and safe extraction."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pooch
import pytest
from PIL import Image

from cxr_pneumonia.data import sources
from cxr_pneumonia.data.download import (
    CACHE_ENV_VAR,
    default_cache_dir,
    ensure_local,
    extract_archive,
    fetch,
)
from cxr_pneumonia.data.sources import DatasetSource, register_dataset
from cxr_pneumonia.exceptions import CacheError, DownloadError, UnknownDatasetError

if TYPE_CHECKING:  # imported by pytest as a plugin below; importing it first would
    from http_server import LocalHTTPServer  # defeat pytest's assertion rewriting

pytest_plugins = ["http_server"]  # provides the `http_server` fixture

LAYOUT = [(split, label) for split in ("train", "test") for label in ("NORMAL", "PNEUMONIA")]


# --- generated data -------------------------------------------------------------------


def kermany_zip(make_xray: Callable[..., np.ndarray], per_folder: int = 2) -> bytes:
    """A tiny zip with the real layout: chest_xray/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for split, label in LAYOUT:
            for k in range(per_folder):
                image = io.BytesIO()
                Image.fromarray(make_xray(int(label == "PNEUMONIA"), seed=k)).save(image, "JPEG")
                archive.writestr(f"chest_xray/{split}/{label}/person{k}_{k}.jpeg", image.getvalue())
    return buffer.getvalue()


def medmnist_npz(seed: int = 0) -> bytes:
    """A tiny npz with MedMNIST's keys {train,val,test}_{images,labels}."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, size=(n, 1), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def serve(
    server: LocalHTTPServer,
    filename: str,
    data: bytes,
    *,
    known_hash: str | None,
    name: str = "local",
) -> DatasetSource:
    """Put ``data`` on the server under a Mendeley-like URL and describe it."""
    (server.root / "file_downloaded").write_bytes(data)
    kind = "npz" if filename.endswith(".npz") else "archive"
    return DatasetSource(
        name=name,
        url=server.url("file_downloaded"),
        known_hash=known_hash,
        filename=filename,
        kind=kind,
    )


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# --- cache folder -------------------------------------------------------------------------


def test_cache_env_variable_is_honoured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, http_server: LocalHTTPServer
) -> None:
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "from-env"))
    assert default_cache_dir() == tmp_path / "from-env"
    data = medmnist_npz()
    path = fetch(serve(http_server, "m.npz", data, known_hash=md5(data)), progress=False)
    assert path == tmp_path / "from-env" / "downloads" / "local" / "m.npz"


def test_default_cache_dir_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV_VAR, raising=False)
    assert default_cache_dir() == Path(pooch.os_cache("cxr-pneumonia"))


def test_cache_under_a_regular_file_is_a_cache_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    source = DatasetSource(
        name="local", url="http://127.0.0.1:9/x.npz", known_hash=None, filename="x.npz", kind="npz"
    )
    with pytest.raises(CacheError, match="can't use the cache folder") as caught:
        fetch(source, cache_dir=blocker / "cache", progress=False)
    assert str(blocker) in str(caught.value)
    assert CACHE_ENV_VAR in str(caught.value)
    assert isinstance(caught.value, OSError)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_cache_is_a_cache_error(tmp_path: Path) -> None:
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        with pytest.raises(CacheError):
            fetch(
                DatasetSource(
                    name="local",
                    url="http://127.0.0.1:9/x.npz",
                    known_hash=None,
                    filename="x.npz",
                    kind="npz",
                ),
                cache_dir=read_only,
                progress=False,
            )
    finally:
        read_only.chmod(0o700)


# --- successful downloads -------------------------------------------------------------------


def test_npz_download_is_checked_cached_and_reused(
    http_server: LocalHTTPServer, cache: Path
) -> None:
    data = medmnist_npz()
    source = serve(http_server, "pneumoniamnist.npz", data, known_hash=md5(data))
    path = fetch(source, cache_dir=cache, progress=True)
    assert path == cache / "downloads" / "local" / "pneumoniamnist.npz"
    with np.load(path) as arrays:
        assert sorted(arrays.files) == sorted(
            f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")
        )
    # Later calls check the cached copy and don't download again.
    assert ensure_local(source, cache_dir=cache, progress=False) == path
    assert http_server.hits["file_downloaded"] == 1
    assert files_in(path.parent) == ["pneumoniamnist.npz"]


def test_fetch_accepts_a_registered_name(
    http_server: LocalHTTPServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "_REGISTRY", dict(sources._REGISTRY))
    data = medmnist_npz()
    (http_server.root / "mirror.npz").write_bytes(data)
    register_dataset("my-mirror", url=http_server.url("mirror.npz"), known_hash=md5(data))
    path = fetch("my-mirror", cache_dir=cache, progress=False)
    assert path.read_bytes() == data
    with pytest.raises(UnknownDatasetError):
        fetch("my-mirrror", cache_dir=cache, progress=False)


def test_archive_is_trusted_on_first_use_and_extracted(
    http_server: LocalHTTPServer, cache: Path, make_xray: Callable[..., np.ndarray]
) -> None:
    data = kermany_zip(make_xray)
    source = serve(http_server, "ChestXRay2017.zip", data, known_hash=None, name="kermany2018")
    root = ensure_local(source, cache_dir=cache, progress=False)
    assert root == cache / "downloads" / "kermany2018" / "ChestXRay2017"
    for split, label in LAYOUT:
        assert len(list((root / "chest_xray" / split / label).glob("*.jpeg"))) == 2
    record = cache / "downloads" / "kermany2018" / "ChestXRay2017.zip.sha256"
    assert record.read_text().split() == [hashlib.sha256(data).hexdigest(), "ChestXRay2017.zip"]
    # A second call verifies the zip against the record and reuses the extraction.
    (root / "sentinel").write_text("kept")
    assert ensure_local(source, cache_dir=cache, progress=False) == root
    assert (root / "sentinel").exists()
    assert http_server.hits["file_downloaded"] == 1


# --- failures -----------------------------------------------------------------------------


def test_wrong_hash_names_both_and_keeps_nothing(http_server: LocalHTTPServer, cache: Path) -> None:
    data = medmnist_npz()
    expected = md5(b"something else")
    source = serve(http_server, "m.npz", data, known_hash=expected)
    with pytest.raises(DownloadError) as caught:
        fetch(source, cache_dir=cache, progress=False, retries=2)
    message = str(caught.value)
    assert expected in message
    assert md5(data) in message
    assert files_in(cache / "downloads" / "local") == []
    assert http_server.hits["file_downloaded"] == 1  # same bytes again would not help


def test_server_error_names_url_and_status(http_server: LocalHTTPServer, cache: Path) -> None:
    data = medmnist_npz()
    source = serve(http_server, "m.npz", data, known_hash=md5(data))
    http_server.fail_next("file_downloaded", status=500)
    with pytest.raises(DownloadError) as caught:
        fetch(source, cache_dir=cache, progress=False, retries=0)
    assert "500" in str(caught.value)
    assert source.url in str(caught.value)
    assert files_in(cache / "downloads" / "local") == []


def test_missing_file_is_a_download_error(http_server: LocalHTTPServer, cache: Path) -> None:
    source = DatasetSource(
        name="local",
        url=http_server.url("absent.npz"),
        known_hash=None,
        filename="absent.npz",
        kind="npz",
    )
    with pytest.raises(DownloadError, match="404"):
        fetch(source, cache_dir=cache, progress=False, retries=0)


def test_dropped_connection_leaves_nothing_and_a_later_call_succeeds(
    http_server: LocalHTTPServer, cache: Path
) -> None:
    data = medmnist_npz() * 4  # a few kB, so the cut is really mid-file
    source = serve(http_server, "m.npz", data, known_hash=None)
    http_server.drop_next("file_downloaded", after_bytes=len(data) // 2)
    with pytest.raises(DownloadError, match="Nothing partial was kept"):
        fetch(source, cache_dir=cache, progress=False, retries=0)
    # No partial file, no temporary file, no hash recorded from the partial data.
    assert files_in(cache / "downloads" / "local") == []
    path = fetch(source, cache_dir=cache, progress=False, retries=0)
    assert path.read_bytes() == data
    assert http_server.hits["file_downloaded"] == 2
    record = path.with_name("m.npz.sha256").read_text().split()[0]
    assert record == hashlib.sha256(data).hexdigest()


def test_dropped_connection_is_retried_within_one_call(
    http_server: LocalHTTPServer, cache: Path
) -> None:
    data = medmnist_npz()
    source = serve(http_server, "m.npz", data, known_hash=md5(data))
    http_server.drop_next("file_downloaded", after_bytes=100)
    path = fetch(source, cache_dir=cache, progress=False, retries=1)  # pooch waits 1 s
    assert path.read_bytes() == data
    assert http_server.hits["file_downloaded"] == 2
    assert files_in(path.parent) == ["m.npz"]


# --- trust on first use and cached copies ---------------------------------------------------


def test_modified_cached_file_trusted_on_first_use_is_refused(
    http_server: LocalHTTPServer, cache: Path
) -> None:
    data = medmnist_npz()
    source = serve(http_server, "m.npz", data, known_hash=None)
    path = fetch(source, cache_dir=cache, progress=False)
    path.write_bytes(data[:-10] + b"tampered!!")
    with pytest.raises(DownloadError, match="delete") as caught:
        fetch(source, cache_dir=cache, progress=False)
    assert str(path) in str(caught.value)
    assert sha256(data) in str(caught.value)
    assert http_server.hits["file_downloaded"] == 1  # refused, not silently replaced


def test_redownload_is_checked_against_the_first_use_record(
    http_server: LocalHTTPServer, cache: Path
) -> None:
    data = medmnist_npz()
    source = serve(http_server, "m.npz", data, known_hash=None)
    path = fetch(source, cache_dir=cache, progress=False)
    path.unlink()
    # Same bytes on the server: accepted again.
    assert fetch(source, cache_dir=cache, progress=False).read_bytes() == data
    path.unlink()
    # Different bytes on the server: refused, nothing kept, the record stays.
    other = medmnist_npz(seed=1)
    (http_server.root / "file_downloaded").write_bytes(other)
    with pytest.raises(DownloadError, match="recorded") as caught:
        fetch(source, cache_dir=cache, progress=False, retries=3)
    assert sha256(other) in str(caught.value)
    assert files_in(path.parent) == ["m.npz.sha256"]


def test_cached_file_without_a_record_is_downloaded_again(
    http_server: LocalHTTPServer, cache: Path
) -> None:
    data = medmnist_npz()
    source = serve(http_server, "m.npz", data, known_hash=None)
    folder = cache / "downloads" / "local"
    folder.mkdir(parents=True)
    (folder / "m.npz").write_bytes(b"not the real thing")
    path = fetch(source, cache_dir=cache, progress=False)
    assert path.read_bytes() == data
    assert http_server.hits["file_downloaded"] == 1
    assert (folder / "m.npz.sha256").exists()


def test_corrupt_cached_file_with_known_hash_is_replaced(
    http_server: LocalHTTPServer, cache: Path
) -> None:
    data = medmnist_npz()
    source = serve(http_server, "m.npz", data, known_hash=md5(data))
    path = fetch(source, cache_dir=cache, progress=False)
    path.write_bytes(b"corrupted")
    assert fetch(source, cache_dir=cache, progress=False).read_bytes() == data
    assert http_server.hits["file_downloaded"] == 2


# --- extraction ---------------------------------------------------------------------------


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(zipfile.ZipInfo(name), payload)
    return path


def write_tar(path: Path, members: list[tarfile.TarInfo], payload: bytes = b"data") -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for info in members:
            if info.isfile():
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
            else:
                archive.addfile(info)
    return path


def tar_member(name: str, *, type_: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    return info


def assert_nothing_extracted(tmp_path: Path, dest: Path) -> None:
    assert not dest.exists()
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.")]
    assert not list(tmp_path.rglob("evil*"))


@pytest.mark.parametrize(
    "name", ["../evil.txt", "chest_xray/../../evil.txt", "/tmp/evil-abs.txt", "C:/evil.txt"]
)
def test_zip_slip_is_refused(tmp_path: Path, name: str) -> None:
    archive = write_zip(tmp_path / "a.zip", {"chest_xray/ok.txt": b"ok", name: b"evil"})
    dest = tmp_path / "out" / "a"
    with pytest.raises(DownloadError, match="refusing to extract"):
        extract_archive(archive, dest)
    assert_nothing_extracted(tmp_path, dest)


@pytest.mark.parametrize(
    "member",
    [
        tar_member("../evil.txt"),
        tar_member("/evil-abs.txt"),
        tar_member("link", type_=tarfile.SYMTYPE, linkname="/etc"),
        tar_member("sub/link", type_=tarfile.SYMTYPE, linkname="../../evil"),
        tar_member("hard", type_=tarfile.LNKTYPE, linkname="../evil.txt"),
        tar_member("fifo", type_=tarfile.FIFOTYPE),
    ],
    ids=["dotdot", "absolute", "symlink-absolute", "symlink-up", "hardlink-up", "fifo"],
)
def test_tar_path_traversal_is_refused(tmp_path: Path, member: tarfile.TarInfo) -> None:
    archive = write_tar(tmp_path / "a.tar.gz", [tar_member("chest_xray/ok.txt"), member])
    dest = tmp_path / "out" / "a"
    with pytest.raises(DownloadError, match="refusing to extract"):
        extract_archive(archive, dest)
    assert_nothing_extracted(tmp_path, dest)


def test_tar_with_links_inside_is_extracted(tmp_path: Path) -> None:
    archive = write_tar(
        tmp_path / "a.tgz",
        [
            tar_member("chest_xray/train/NORMAL/a.jpeg"),
            tar_member("chest_xray/latest", type_=tarfile.SYMTYPE, linkname="train"),
        ],
    )
    dest = extract_archive(archive, tmp_path / "out" / "a")
    assert (dest / "chest_xray" / "train" / "NORMAL" / "a.jpeg").read_bytes() == b"data"
    assert (dest / "chest_xray" / "latest" / "NORMAL" / "a.jpeg").exists()


def test_interrupted_extraction_is_never_trusted(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:
        zipped.writestr("chest_xray/one.txt", b"first member")
        zipped.writestr("chest_xray/two.txt", b"SECOND-MEMBER-PAYLOAD")
    raw = archive.read_bytes()
    archive.write_bytes(raw.replace(b"SECOND-MEMBER-PAYLOAD", b"SECOND-MEMBER-CORRUPT"))
    dest = tmp_path / "out" / "a"
    with pytest.raises(DownloadError, match="corrupt"):
        extract_archive(archive, dest)
    assert_nothing_extracted(tmp_path, dest)


def test_extraction_is_reused_until_the_archive_changes(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "a.zip", {"chest_xray/one.txt": b"v1"})
    dest = tmp_path / "out" / "a"
    assert extract_archive(archive, dest) == dest
    (dest / "sentinel").write_text("kept")
    extract_archive(archive, dest)
    assert (dest / "sentinel").exists()
    write_zip(archive, {"chest_xray/one.txt": b"version 2"})
    os.utime(archive, ns=(1, 1))  # another size and mtime: a new archive
    extract_archive(archive, dest)
    assert not (dest / "sentinel").exists()
    assert (dest / "chest_xray" / "one.txt").read_bytes() == b"version 2"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["a"]


def test_extraction_refuses_a_foreign_folder(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "a.zip", {"chest_xray/one.txt": b"v1"})
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "precious.txt").write_text("user data")
    with pytest.raises(CacheError, match="remove it or choose another folder"):
        extract_archive(archive, dest)
    assert (dest / "precious.txt").exists()


def test_not_an_archive_is_a_download_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"<html>login required</html>")
    with pytest.raises(DownloadError, match="neither a zip nor a tar"):
        extract_archive(fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("filename", "members"),
    [
        ("ChestXRay2017.zip", {"chest_xray/ok.txt": b"ok", "../evil.txt": b"evil"}),
        ("ChestXRay2017.zip", {"/tmp/evil-abs.txt": b"evil"}),
        ("ChestXRay2017.tar.gz", [tar_member("link", type_=tarfile.SYMTYPE, linkname="/etc")]),
        ("ChestXRay2017.tar.gz", [tar_member("hard", type_=tarfile.LNKTYPE, linkname="../e")]),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink"],
)
def test_a_refused_archive_leaves_the_cache_so_a_retry_works(
    http_server: LocalHTTPServer,
    cache: Path,
    tmp_path: Path,
    make_xray: Callable[..., np.ndarray],
    filename: str,
    members: dict[str, bytes] | list[tarfile.TarInfo],
) -> None:
    bad = tmp_path / filename
    if isinstance(members, dict):
        write_zip(bad, members)
    else:
        write_tar(bad, [tar_member("chest_xray/ok.txt"), *members])
    source = serve(http_server, filename, bad.read_bytes(), known_hash=None, name="kermany2018")
    with pytest.raises(DownloadError, match=r"refusing to extract.*Removed the cached download"):
        ensure_local(source, cache_dir=cache, progress=False)
    folder = cache / "downloads" / "kermany2018"
    assert [name for name in files_in(folder) if not name.startswith(".")] == []

    # The server is fixed: the retry downloads, records and extracts the good archive.
    good = kermany_zip(make_xray)
    fixed = serve(http_server, "ChestXRay2017.zip", good, known_hash=None, name="kermany2018")
    root = ensure_local(fixed, cache_dir=cache, progress=False)
    assert (root / "chest_xray" / "train" / "NORMAL").is_dir()
    record = folder / "ChestXRay2017.zip.sha256"
    assert record.read_text().split()[0] == hashlib.sha256(good).hexdigest()
    assert http_server.hits["file_downloaded"] == 2
