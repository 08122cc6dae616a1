"""The data set registry: built-in entries, lookups, registration rules."""

from __future__ import annotations

import dataclasses

import pytest

from cxr_pneumonia.data import sources
from cxr_pneumonia.data.sources import (
    DatasetSource,
    check_hash,
    get_source,
    infer_kind,
    list_datasets,
    register_dataset,
)
from cxr_pneumonia.exceptions import CXRPneumoniaError, UnknownDatasetError

SHA256 = "sha256:" + "ab" * 32
MEDMNIST_MD5 = {
    "pneumoniamnist": ("pneumoniamnist.npz", "md5:28209eda62fecd6e6a2d98b1501bb15f"),
    "pneumoniamnist-64": ("pneumoniamnist_64.npz", "md5:8f4eceb4ccffa70c672198ea285246c6"),
    "pneumoniamnist-128": ("pneumoniamnist_128.npz", "md5:05b46931834c231683c68f40c47b2971"),
    "pneumoniamnist-224": ("pneumoniamnist_224.npz", "md5:d6a3c71de1b945ea11211b03746c1fe1"),
}


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(sources, "_REGISTRY", dict(sources._REGISTRY))


def test_list_datasets_is_sorted_and_has_the_builtins() -> None:
    names = list_datasets()
    assert isinstance(names, tuple)
    assert names == tuple(sorted(names))
    assert set(names) == {"kermany2018", *MEDMNIST_MD5}


def test_kermany2018_is_a_named_archive_trusted_on_first_use() -> None:
    source = get_source("kermany2018")
    assert source.url.endswith("/file_downloaded")
    assert source.filename == "ChestXRay2017.zip"
    assert source.kind == "archive"
    assert source.known_hash is None
    assert source.size == 1_235_512_464
    assert "10.1016/j.cell.2018.02.010" in source.citation
    assert "10.17632/rscbjbr9sj.2" in source.citation
    assert source.license == "CC BY 4.0"


@pytest.mark.parametrize("name", sorted(MEDMNIST_MD5))
def test_pneumoniamnist_sources_carry_their_md5(name: str) -> None:
    source = get_source(name)
    filename, md5 = MEDMNIST_MD5[name]
    assert source.filename == filename
    assert source.known_hash == md5
    assert source.kind == "npz"
    assert source.url == f"https://zenodo.org/records/10519652/files/{filename}?download=1"
    assert "10.1038/s41597-022-01721-8" in source.citation
    assert source.license == "CC BY 4.0"


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(UnknownDatasetError) as caught:
        get_source("kermany")
    message = str(caught.value)
    assert message.startswith("unknown dataset 'kermany'; choose one of: ")
    assert ", ".join(list_datasets()) in message
    # Catchable as the built-ins a caller would expect.
    assert isinstance(caught.value, KeyError)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, CXRPneumoniaError)


def test_sources_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_source("kermany2018").url = "https://example.org/x.zip"  # type: ignore[misc]


def test_register_infers_filename_and_kind_from_the_url() -> None:
    source = register_dataset(
        "my-mirror",
        url="https://example.org/data/chest_xray.tar.gz?download=1",
        known_hash=SHA256,
        citation="me",
    )
    assert "my-mirror" in list_datasets()
    assert list_datasets() == tuple(sorted(list_datasets()))
    assert get_source("my-mirror") is source
    assert (source.filename, source.kind) == ("chest_xray.tar.gz", "archive")


def test_register_uses_given_filename_and_kind() -> None:
    source = register_dataset(
        "mirror-npz",
        url="https://example.org/files/12345/file_downloaded",
        known_hash="md5:" + "0" * 32,
        filename="pneumonia.npz",
        license="CC BY 4.0",
    )
    assert (source.filename, source.kind, source.license) == ("pneumonia.npz", "npz", "CC BY 4.0")


@pytest.mark.parametrize(
    ("filename", "kind"),
    [("a.zip", "archive"), ("a.tar", "archive"), ("a.TGZ", "archive"), ("a.npz", "npz")],
)
def test_infer_kind(filename: str, kind: str) -> None:
    assert infer_kind(filename) == kind


def test_register_without_a_recognisable_suffix_asks_for_filename_or_kind() -> None:
    with pytest.raises(ValueError, match="filename=") as caught:
        register_dataset("noext", url="https://example.org/file_downloaded", known_hash=SHA256)
    assert "kind=" in str(caught.value)
    assert "noext" not in list_datasets()


def test_register_refuses_to_overwrite_unless_asked() -> None:
    register_dataset("mine", url="https://example.org/a.zip", known_hash=SHA256)
    with pytest.raises(ValueError, match="overwrite=True"):
        register_dataset("mine", url="https://example.org/b.zip", known_hash=SHA256)
    assert get_source("mine").url == "https://example.org/a.zip"
    register_dataset("mine", url="https://example.org/b.zip", known_hash=SHA256, overwrite=True)
    assert get_source("mine").url == "https://example.org/b.zip"


def test_a_builtin_can_be_replaced_by_a_mirror_only_explicitly() -> None:
    mirror = "https://mirror.example.org/ChestXRay2017.zip"
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("kermany2018", url=mirror, known_hash=SHA256)
    register_dataset("kermany2018", url=mirror, known_hash=SHA256, overwrite=True)
    assert get_source("kermany2018").known_hash == SHA256


def test_known_hash_none_means_trust_on_first_use() -> None:
    source = register_dataset("tofu", url="https://example.org/t.zip", known_hash=None)
    assert source.known_hash is None


def test_hash_is_normalised_to_lower_case() -> None:
    assert check_hash("SHA256:" + "AB" * 32) == SHA256


@pytest.mark.parametrize(
    "bad_hash",
    [
        "ab" * 32,  # no algorithm prefix
        "sha256:" + "ab" * 31,  # too short
        "sha256:" + "zz" * 32,  # not hex
        "md5:" + "0" * 31,
        "md5:" + "0" * 64,  # a sha256-length digest labelled md5
        "crc32:deadbeef",  # unsupported algorithm
        "",
    ],
)
def test_bad_hash_strings_are_refused(bad_hash: str) -> None:
    with pytest.raises(ValueError, match="known_hash"):
        register_dataset("bad", url="https://example.org/a.zip", known_hash=bad_hash)
    assert "bad" not in list_datasets()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "a/b"),
        ("name", ""),
        ("name", "../up"),
        ("url", "ftp://example.org/a.zip"),
        ("url", "example.org/a.zip"),
        ("filename", "../a.zip"),
        ("filename", "sub/a.zip"),
        ("kind", "folder"),
        ("size", 0),
    ],
)
def test_invalid_fields_are_refused(field: str, value: object) -> None:
    fields: dict[str, object] = {
        "name": "ok",
        "url": "https://example.org/a.zip",
        "known_hash": SHA256,
        "filename": "a.zip",
        "kind": "archive",
    }
    fields[field] = value
    with pytest.raises(ValueError, match=field):
        DatasetSource(**fields)  # type: ignore[arg-type]
