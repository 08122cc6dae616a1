"""The one decode-and-resize path: every input kind, copies agree, bad input, resize."""

from __future__ import annotations

import io
import resource
import struct
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cxr_pneumonia.exceptions import InvalidImageError
from cxr_pneumonia.images import (
    DEFAULT_MAX_PIXELS,
    channels_for,
    check_color_mode,
    check_image_size,
    load_image,
    prepare_image,
    resize_image,
)

H, W = 32, 48  # non-square, so a (height, width) mix-up shows


@pytest.fixture
def gray(make_xray: Callable[..., np.ndarray]) -> np.ndarray:
    """An 8-bit grayscale X-ray-like (32, 48) image that does not span 0..255."""
    base = make_xray(1, size=W, seed=3)[:H]
    # Not spanning 0..255, so a min-max stretch would show.
    assert base.min() > 10
    assert base.max() < 250
    return base


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def as_gray(result: np.ndarray) -> np.ndarray:
    assert result.dtype == np.uint8
    assert result.ndim == 3
    assert result.shape[2] == 1
    return result[:, :, 0]


# --- every input kind --------------------------------------------------------------


@pytest.fixture
def png_file(tmp_path: Path, gray: np.ndarray) -> Path:
    path = tmp_path / "xray.png"
    Image.fromarray(gray).save(path)
    return path


INPUT_KINDS: dict[str, Callable[[Path], Any]] = {
    "str": str,
    "Path": lambda p: p,
    "bytes": lambda p: p.read_bytes(),
    "bytearray": lambda p: bytearray(p.read_bytes()),
    "memoryview": lambda p: memoryview(p.read_bytes()),
    "BytesIO": lambda p: io.BytesIO(p.read_bytes()),
    "PIL": lambda p: Image.open(io.BytesIO(p.read_bytes())),
    "PIL-loaded": lambda p: Image.open(io.BytesIO(p.read_bytes())).convert("L"),
}


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_every_input_kind_gives_the_same_pixels(
    kind: str, png_file: Path, gray: np.ndarray
) -> None:
    source = INPUT_KINDS[kind](png_file)
    result = load_image(source)
    assert result.shape == (H, W, 1)
    np.testing.assert_array_equal(as_gray(result), gray)


def test_binary_file_object(png_file: Path, gray: np.ndarray) -> None:
    with png_file.open("rb") as handle:
        np.testing.assert_array_equal(as_gray(load_image(handle)), gray)


def test_text_mode_file_is_a_clear_error(png_file: Path) -> None:
    with (
        png_file.open("r", encoding="latin-1") as handle,
        pytest.raises(InvalidImageError, match=r"xray\.png.*binary mode"),
    ):
        load_image(handle)


def test_text_stream_without_name_is_a_clear_error() -> None:
    with pytest.raises(InvalidImageError, match="binary mode"):
        load_image(io.StringIO("not bytes"))


def test_pil_image_input_is_not_modified(gray: np.ndarray) -> None:
    image = Image.fromarray(gray).convert("RGB")
    result = load_image(image, color_mode="grayscale")
    assert image.mode == "RGB"
    assert image.size == (W, H)
    assert max_diff(as_gray(result), gray) <= 1


def test_result_is_a_new_writable_array(gray: np.ndarray) -> None:
    result = load_image(gray)
    assert result.flags.writeable
    result[:] = 0
    assert gray.max() > 0  # the input was not aliased
    assert prepare_image(gray, size=(8, 8)).flags.writeable


@pytest.mark.parametrize(
    ("make", "tolerance"),
    [
        pytest.param(lambda g: g, 0, id="uint8-HW"),
        pytest.param(lambda g: g[:, :, None], 0, id="uint8-HW1"),
        pytest.param(lambda g: np.stack([g] * 3, axis=-1), 0, id="uint8-HW3"),
        pytest.param(
            lambda g: np.dstack([g, g, g, np.full_like(g, 255)]), 0, id="uint8-HW4-opaque"
        ),
        pytest.param(lambda g: np.dstack([g, g, g, np.zeros_like(g)]), 0, id="uint8-HW4-clear"),
        pytest.param(lambda g: g.astype(np.uint16) * 257, 0, id="uint16x257"),
        pytest.param(lambda g: (g.astype(np.uint16) * 257).astype(">u2"), 0, id="uint16-BE"),
        pytest.param(lambda g: np.stack([g.astype(np.uint16) * 257] * 3, -1), 0, id="uint16-HW3"),
        pytest.param(lambda g: g.astype(np.int32), 0, id="int32-8bit"),
        pytest.param(lambda g: g.astype(np.int64), 0, id="int64-8bit"),
        pytest.param(lambda g: g.astype(np.int16), 0, id="int16-8bit"),
        pytest.param(lambda g: g.astype(np.int32) * 257, 0, id="int32-16bit"),
        pytest.param(lambda g: g.astype(np.uint32) * 257, 0, id="uint32-16bit"),
        pytest.param(lambda g: g / 255.0, 0, id="float64-unit"),
        pytest.param(lambda g: (g / 255.0).astype(np.float32), 0, id="float32-unit"),
        pytest.param(lambda g: (g / 255.0).astype(np.float16), 1, id="float16-unit"),
        pytest.param(lambda g: g.astype(np.float64), 0, id="float64-255"),
        pytest.param(lambda g: g.astype(np.float32)[:, :, None], 0, id="float32-255-HW1"),
        pytest.param(lambda g: np.asfortranarray(g), 0, id="fortran-order"),
        pytest.param(lambda g: np.stack([g] * 3, -1)[:, ::-1][:, ::-1], 0, id="strided-view"),
    ],
)
def test_arrays_of_every_dtype_give_the_same_pixels(
    make: Callable[[np.ndarray], np.ndarray], tolerance: int, gray: np.ndarray
) -> None:
    result = load_image(make(gray))
    assert result.shape == (H, W, 1)
    assert max_diff(as_gray(result), gray) <= tolerance


def test_dark_sixteen_bit_array_stays_dark() -> None:
    # 16-bit data whose values all fit in 8 bits is still 16-bit data: very dark.
    dark = np.full((4, 4), 200, dtype=np.uint16)
    assert int(load_image(dark).max()) == 1


def test_bool_array_is_black_and_white() -> None:
    mask = np.zeros((H, W), dtype=bool)
    mask[:, : W // 2] = True
    result = as_gray(load_image(mask))
    assert set(np.unique(result).tolist()) == {0, 255}
    assert (result[:, : W // 2] == 255).all()


def test_color_mode_rgb_gives_three_equal_channels_for_gray(gray: np.ndarray) -> None:
    result = load_image(gray, color_mode="rgb")
    assert result.shape == (H, W, 3)
    for channel in range(3):
        np.testing.assert_array_equal(result[:, :, channel], gray)
    resized = prepare_image(gray, size=(16, 24), color_mode="rgb")
    assert resized.shape == (16, 24, 3)
    np.testing.assert_array_equal(resized[:, :, 0], resized[:, :, 1])
    np.testing.assert_array_equal(resized[:, :, 0], resized[:, :, 2])


def test_color_image_in_rgb_mode_keeps_its_colors() -> None:
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    rgb[..., 2] = 50
    np.testing.assert_array_equal(load_image(rgb, color_mode="rgb"), rgb)
    # ITU-R 601-2 luma: 0.299 R + 0.587 G + 0.114 B
    assert abs(int(load_image(rgb)[0, 0, 0]) - round(0.299 * 200 + 0.114 * 50)) <= 1


# --- copies of one picture agree ---------------------------------------------------


def _palette_with_transparency(g: np.ndarray) -> bytes:
    image = Image.fromarray(g).convert("P")
    return encode(image, "PNG", transparency=0)


COPIES: dict[str, Callable[[np.ndarray], bytes]] = {
    "png-8": lambda g: encode(Image.fromarray(g), "PNG"),
    "png-16": lambda g: encode(Image.fromarray(g.astype(np.uint16) * 257), "PNG"),
    "png-rgb": lambda g: encode(Image.fromarray(g).convert("RGB"), "PNG"),
    "png-rgba": lambda g: encode(Image.fromarray(g).convert("RGBA"), "PNG"),
    "png-la": lambda g: encode(Image.fromarray(g).convert("LA"), "PNG"),
    "png-palette": lambda g: encode(Image.fromarray(g).convert("P"), "PNG"),
    "png-palette-transparency": _palette_with_transparency,
    "tiff-8": lambda g: encode(Image.fromarray(g), "TIFF"),
    "tiff-16": lambda g: encode(Image.fromarray(g.astype(np.uint16) * 257), "TIFF"),
    "tiff-cmyk": lambda g: encode(Image.fromarray(g).convert("RGB").convert("CMYK"), "TIFF"),
    "tiff-rgb-lzw": lambda g: encode(
        Image.fromarray(g).convert("RGB"), "TIFF", compression="tiff_lzw"
    ),
    "bmp-8": lambda g: encode(Image.fromarray(g), "BMP"),
    "bmp-rgb": lambda g: encode(Image.fromarray(g).convert("RGB"), "BMP"),
    "webp-lossless": lambda g: encode(Image.fromarray(g), "WEBP", lossless=True),
    "webp-lossless-rgba": lambda g: encode(
        Image.fromarray(g).convert("RGBA"), "WEBP", lossless=True
    ),
    "gif": lambda g: encode(Image.fromarray(g), "GIF"),
    "pgm": lambda g: encode(Image.fromarray(g), "PPM"),
    "pgm-16": lambda g: encode(Image.fromarray(g.astype(np.uint16) * 257), "PPM"),
}


@pytest.mark.parametrize("copy", COPIES)
def test_copies_give_the_same_grayscale_pixels(copy: str, gray: np.ndarray) -> None:
    data = COPIES[copy](gray)
    result = load_image(data, name=copy)
    assert result.shape == (H, W, 1)
    assert max_diff(as_gray(result), gray) <= 1
    rgb = load_image(data, color_mode="rgb")
    assert rgb.shape == (H, W, 3)
    assert max_diff(rgb, np.stack([gray] * 3, -1)) <= 1


def test_lossy_copies_stay_close(gray: np.ndarray) -> None:
    reference = load_image(encode(Image.fromarray(gray), "JPEG", quality=95))
    for image in (Image.fromarray(gray).convert("RGB"), Image.fromarray(gray).convert("CMYK")):
        copy = load_image(encode(image, "JPEG", quality=95))
        assert max_diff(copy, reference) <= 3, image.mode


def test_sixteen_bit_png_copy_of_a_dark_image_stays_dark(gray: np.ndarray) -> None:
    dark = gray // 4  # all values <= 63: 16-bit values <= 16,191
    result = load_image(encode(Image.fromarray(dark.astype(np.uint16) * 257), "PNG"))
    np.testing.assert_array_equal(as_gray(result), dark)
    # A 16-bit file whose values all fit in 8 bits is nearly black, not an 8-bit image.
    nearly_black = encode(Image.fromarray(gray.astype(np.uint16)), "PNG")
    assert int(load_image(nearly_black).max()) <= 1


def test_sixteen_bit_full_range_maps_to_eight_bit() -> None:
    ramp = np.linspace(0, 65535, 256 * 8).astype(np.uint16).reshape(8, 256)
    result = as_gray(load_image(encode(Image.fromarray(ramp), "PNG")))
    assert result.min() == 0
    assert result.max() == 255
    assert (np.diff(result.astype(int), axis=1) >= 0).all()


@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        (1, lambda g: g),
        (2, lambda g: g[:, ::-1]),
        (3, lambda g: g[::-1, ::-1]),
        (6, lambda g: np.rot90(g, k=-1)),  # rotate 90 degrees clockwise to display
        (8, lambda g: np.rot90(g, k=1)),
    ],
)
def test_exif_orientation_is_applied(
    orientation: int, expected: Callable[[np.ndarray], np.ndarray], gray: np.ndarray
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(gray), "PNG", exif=exif)
    want = expected(gray)
    np.testing.assert_array_equal(as_gray(load_image(data)), want)
    # A PIL image opened by the caller gets the same treatment.
    np.testing.assert_array_equal(as_gray(load_image(Image.open(io.BytesIO(data)))), want)
    # Resizing happens after the rotation, so the requested (height, width) holds.
    assert prepare_image(data, size=(10, 20)).shape == (10, 20, 1)


def test_exif_orientation_in_jpeg_with_draft() -> None:
    tall = np.tile(np.linspace(0, 255, 400, dtype=np.uint8)[:, None], (1, 200))  # 400 x 200
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(tall), "JPEG", quality=95, exif=exif)
    result = as_gray(prepare_image(data, size=(20, 40)))
    assert result.shape == (20, 40)
    # Rotated clockwise: the dark top of the stored image is now on the right.
    assert result[:, -1].mean() < 30
    assert result[:, 0].mean() > 225


# --- DICOM ---------------------------------------------------------------------------


def make_dicom(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    window: tuple[float, float] | None = None,
    signed: bool = False,
    rescale: tuple[float, float] | None = None,
    file_format: bool = True,
    **extra: Any,
) -> bytes:
    """A DICOM file (pydicom 3) holding ``pixels`` as they are."""
    pydicom = pytest.importorskip("pydicom", minversion="3")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    allocated = pixels.dtype.itemsize * 8
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored or allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    buffer = io.BytesIO()
    if file_format:
        ds.save_as(buffer, enforce_file_format=True)
    else:
        del ds.file_meta  # a raw dataset: no preamble, no "DICM", no file meta
        pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True)
    return buffer.getvalue()


DICOMS: dict[str, Callable[[np.ndarray], bytes]] = {
    "16bit": lambda g: make_dicom(g.astype(np.uint16) * 257),
    "16bit-full-window": lambda g: make_dicom(g.astype(np.uint16) * 257, window=(32768, 65536)),
    "16bit-full-window-alt": lambda g: make_dicom(
        g.astype(np.uint16) * 257, window=(32767.5, 65535)
    ),
    "12bit": lambda g: make_dicom(np.rint(g * (4095 / 255)).astype(np.uint16), bits_stored=12),
    "12bit-full-window": lambda g: make_dicom(
        np.rint(g * (4095 / 255)).astype(np.uint16), bits_stored=12, window=(2048, 4096)
    ),
    "8bit": lambda g: make_dicom(g),
    "monochrome1": lambda g: make_dicom(
        (65535 - g.astype(np.uint16) * 257).astype(np.uint16), photometric="MONOCHROME1"
    ),
    "monochrome1-12bit-window": lambda g: make_dicom(
        np.rint(4095 - g * (4095 / 255)).astype(np.uint16),
        photometric="MONOCHROME1",
        bits_stored=12,
        window=(2048, 4096),
    ),
    "signed-16bit": lambda g: make_dicom(
        (g.astype(np.int32) * 257 - 32768).astype(np.int16), signed=True
    ),
    "rescaled": lambda g: make_dicom(
        (g.astype(np.int32) * 257 - 32768).astype(np.int16),
        signed=True,
        rescale=(1.0, 32768.0),
        window=(32768, 65536),
    ),
    "rgb": lambda g: make_dicom(np.stack([g] * 3, -1), photometric="RGB"),
}


@pytest.mark.parametrize("kind", DICOMS)
def test_dicom_of_an_eight_bit_image_gives_its_pixels(kind: str, gray: np.ndarray) -> None:
    data = DICOMS[kind](gray)
    assert data[128:132] == b"DICM"
    result = load_image(data)  # detected by the magic in bytes
    assert result.shape == (H, W, 1)
    assert max_diff(as_gray(result), gray) <= 1
    rgb = load_image(data, color_mode="rgb")
    assert rgb.shape == (H, W, 3)
    assert max_diff(rgb, np.stack([gray] * 3, -1)) <= 1


def test_dicom_detected_by_suffix_and_by_magic(tmp_path: Path, gray: np.ndarray) -> None:
    raw = make_dicom(gray.astype(np.uint16) * 257, file_format=False)  # no preamble, no DICM
    assert raw[128:132] != b"DICM"
    by_suffix = tmp_path / "scan.DCM"
    by_suffix.write_bytes(raw)
    assert max_diff(as_gray(load_image(by_suffix)), gray) <= 1
    with by_suffix.open("rb") as handle:  # a file object named *.dcm
        assert max_diff(as_gray(load_image(handle)), gray) <= 1
    by_magic = tmp_path / "scan.bin"
    by_magic.write_bytes(DICOMS["16bit"](gray))
    assert max_diff(as_gray(load_image(str(by_magic))), gray) <= 1
    with pytest.raises(InvalidImageError, match="not an image"):
        load_image(raw)  # raw bytes without the magic or a name: not recognisable


def test_dicom_window_clips_and_stretches() -> None:
    ramp = np.arange(256, dtype=np.uint16).reshape(16, 16) * 257
    # A window over 64..191 (8-bit terms): below is black, above white, linear between.
    result = as_gray(load_image(make_dicom(ramp, window=(128 * 257, 128 * 257))))
    values = ramp // 257
    assert (result[values <= 64] == 0).all()
    assert (result[values >= 192] == 255).all()
    middle = (values > 70) & (values < 185)
    expected = (values[middle] - 64) * 2
    assert np.abs(result[middle].astype(int) - expected).max() <= 2


@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_dicom_window_functions(function: str) -> None:
    ramp = np.linspace(0, 4095, 256).astype(np.uint16).reshape(16, 16)
    data = make_dicom(ramp, bits_stored=12, window=(2048, 2048), VOILUTFunction=function)
    result = as_gray(load_image(data))
    assert result[0, 0] < 40
    assert result[-1, -1] > 215
    assert abs(int(result.ravel()[128]) - 128) <= 3
    assert (np.diff(result.ravel().astype(int)) >= 0).all()


def test_dicom_multi_frame_uses_the_first_frame(gray: np.ndarray) -> None:
    frames = np.stack([gray, 255 - gray]).astype(np.uint16) * 257
    pixels = frames.reshape(2 * H, W)  # the PixelData bytes of 2 frames
    data = make_dicom(pixels, NumberOfFrames=2)
    # make_dicom set Rows from the stacked array; fix it to one frame's rows.
    pydicom = pytest.importorskip("pydicom")
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Rows = H
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert max_diff(as_gray(load_image(buffer.getvalue())), gray) <= 1


def test_dicom_larger_than_the_limit_is_refused(gray: np.ndarray) -> None:
    data = DICOMS["16bit"](gray)
    with pytest.raises(InvalidImageError, match="more than the limit"):
        load_image(data, max_pixels=100, name="scan.dcm")


def test_dicom_without_pixel_data_is_invalid(gray: np.ndarray) -> None:
    pydicom = pytest.importorskip("pydicom")
    ds = pydicom.dcmread(io.BytesIO(DICOMS["16bit"](gray)))
    del ds.PixelData
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(InvalidImageError, match=r"nopix\.dcm: DICOM pixel data can't be decoded"):
        load_image(buffer.getvalue(), name="nopix.dcm")


def test_corrupt_dicom_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "broken.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    with pytest.raises(InvalidImageError, match=r"broken\.dcm"):
        load_image(path)


# --- bad input -------------------------------------------------------------------------


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def test_empty_file_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpeg"
    path.write_bytes(b"")
    with pytest.raises(InvalidImageError, match=r"empty\.jpeg: is empty \(0 bytes\)"):
        load_image(path)
    with pytest.raises(InvalidImageError, match="empty"):
        load_image(b"", name="upload-3")
    with pytest.raises(InvalidImageError, match="upload-3"):
        load_image(io.BytesIO(), name="upload-3")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "GIF", "BMP"])
def test_truncated_files(fmt: str, tmp_path: Path) -> None:
    noisy = np.random.default_rng(0).integers(0, 256, size=(64, 64), dtype=np.uint8)
    data = truncated(encode(Image.fromarray(noisy), fmt))
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data)
    with pytest.raises(InvalidImageError, match=rf"cut\.{fmt.lower()}: .*(decoded|not an image)"):
        load_image(path)
    with pytest.raises(InvalidImageError):
        prepare_image(data, size=(16, 16))


def test_truncated_pil_image_opened_by_the_caller(tmp_path: Path) -> None:
    noisy = np.random.default_rng(0).integers(0, 256, size=(64, 64), dtype=np.uint8)
    image = Image.open(io.BytesIO(truncated(encode(Image.fromarray(noisy), "PNG"))))
    with pytest.raises(InvalidImageError, match="cannot be decoded"):
        prepare_image(image, size=(64, 64))


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is a text file\n" * 10,
        b"%PDF-1.4\n%binary",
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",  # Pillow knows EPS; we refuse it
        bytes(range(256)),
    ],
)
def test_not_an_image(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_bytes(data)
    with pytest.raises(InvalidImageError, match=r"notes\.png: is not an image"):
        load_image(path)


@pytest.mark.parametrize("source", [123, 4.5, None, ["a.png"], {"path": "a.png"}, object()])
def test_unsupported_input_types(source: object) -> None:
    with pytest.raises(InvalidImageError, match="unsupported input type"):
        load_image(source)  # type: ignore[arg-type]


def test_missing_file_and_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpeg"
    with pytest.raises(InvalidImageError, match=r"nope\.jpeg: no such file"):
        load_image(missing)
    with pytest.raises(InvalidImageError, match="no such file"):
        load_image(str(missing))
    with pytest.raises(InvalidImageError, match="is a folder"):
        load_image(tmp_path)


def test_closed_file_object(png_file: Path) -> None:
    handle = png_file.open("rb")
    handle.close()
    with pytest.raises(InvalidImageError, match=r"xray\.png: cannot be read"):
        load_image(handle)


def test_name_overrides_the_label(png_file: Path) -> None:
    with pytest.raises(InvalidImageError, match=r"^item 7: .*more than the limit"):
        load_image(png_file, max_pixels=10, name="item 7")


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.zeros((4, 4, 2), np.uint8), "not an image"),
        (np.zeros((4, 4, 5), np.uint8), "not an image"),
        (np.zeros(16, np.uint8), "not an image"),
        (np.zeros((2, 4, 4, 1), np.uint8), "not an image"),
        (np.zeros((0, 4), np.uint8), "no pixels"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.full((4, 4), np.inf, np.float32), "NaN or infinity"),
        (np.full((4, 4), -0.5), r"outside \[0, 1\] or \[0, 255\]"),
        (np.full((4, 4), 300.0), r"outside \[0, 1\] or \[0, 255\]"),
        (np.full((4, 4), -1, np.int16), "outside 0..65535"),
        (np.full((4, 4), 70000, np.int32), "outside 0..65535"),
        (np.zeros((4, 4), np.complex64), "dtype complex64 is not supported"),
        (np.full((4, 4), "a"), "is not supported"),
        (np.zeros((4, 4), object), "is not supported"),
    ],
)
def test_bad_arrays(array: np.ndarray, reason: str) -> None:
    with pytest.raises(InvalidImageError, match=reason) as info:
        load_image(array)
    assert "<array" in str(info.value)


def crafted_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width x height`` pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


@pytest.mark.parametrize(
    ("width", "height", "max_pixels", "reason"),
    [
        (100_000, 100_000, DEFAULT_MAX_PIXELS, "too many pixels"),  # Pillow's hard limit
        (100_000, 100_000, None, "too many pixels"),  # even with ours disabled
        (10_000, 6_000, DEFAULT_MAX_PIXELS, "60,000,000 pixels, more than the limit"),
        (8_000, 8_000, 1_000_000, "more than the limit of 1,000,000"),
    ],
)
def test_decompression_bomb_is_refused_before_decoding(
    width: int, height: int, max_pixels: int | None, reason: str
) -> None:
    data = crafted_png(width, height)
    assert len(data) < 200
    rss_before = _peak_rss_mib()
    start = time.perf_counter()
    for source in (data, Image.open(io.BytesIO(data)) if width < 50_000 else data):
        with pytest.raises(InvalidImageError, match=reason):
            prepare_image(source, size=(224, 224), max_pixels=max_pixels, name="bomb.png")
    assert time.perf_counter() - start < 0.5
    # Decoding would need width * height bytes (>= 48 MiB); nothing near that was touched.
    assert _peak_rss_mib() - rss_before < 20


def test_max_pixels_between_pillows_warning_and_error_does_not_warn() -> None:
    # 90 M pixels: above Pillow's DecompressionBombWarning threshold (89.5 M). With a
    # caller's limit above it, Pillow must not warn (filterwarnings=error would fail),
    # and the truncated data still gives InvalidImageError, quickly.
    start = time.perf_counter()
    with pytest.raises(InvalidImageError, match="cannot be decoded"):
        load_image(crafted_png(10_000, 9_000), max_pixels=10**9)
    assert time.perf_counter() - start < 0.5


def test_max_pixels_is_configurable(png_file: Path, gray: np.ndarray) -> None:
    assert load_image(png_file, max_pixels=H * W).shape == (H, W, 1)  # at the limit: fine
    with pytest.raises(InvalidImageError, match=f"{W} x {H} = {H * W:,} pixels"):
        load_image(png_file, max_pixels=H * W - 1)
    assert load_image(png_file, max_pixels=None).shape == (H, W, 1)
    for source in (gray, Image.fromarray(gray)):
        with pytest.raises(InvalidImageError, match="more than the limit"):
            load_image(source, max_pixels=100)
        assert load_image(source, max_pixels=None).shape == (H, W, 1)


@pytest.mark.parametrize("max_pixels", [0, -5, 1.5, "many", True])
def test_bad_max_pixels_is_a_value_error(max_pixels: Any, gray: np.ndarray) -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(gray, max_pixels=max_pixels)


def test_bad_options_are_value_errors(gray: np.ndarray) -> None:
    with pytest.raises(ValueError, match="color_mode='RGB'"):
        load_image(gray, color_mode="RGB")
    with pytest.raises(ValueError, match="image_size"):
        prepare_image(gray, size=(0, 10))


# --- resize ----------------------------------------------------------------------------


def checkerboard(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (((yy + xx) % 2) * 255).astype(np.uint8)


def test_resize_is_antialiased(tmp_path: Path) -> None:
    board = checkerboard(64)
    # Nearest-neighbour sampling of this pattern aliases to flat black or white.
    assert np.asarray(Image.fromarray(board).resize((8, 8), Image.Resampling.NEAREST)).std() == 0
    assert np.unique(np.asarray(Image.fromarray(board).resize((8, 8), 0))).size == 1
    for size in [(8, 8), (7, 13), (30, 30)]:
        out = resize_image(board, size)
        assert out.shape == (*size, 1)
        assert np.abs(out.astype(int) - 127.5).max() <= 12, size
    path = tmp_path / "board.png"
    Image.fromarray(board).save(path)
    out = prepare_image(path, size=(8, 8))
    assert np.abs(out.astype(int) - 127.5).max() <= 1


def test_resize_keeps_height_width_order() -> None:
    image = np.zeros((40, 80), dtype=np.uint8)
    image[:20] = 255  # bright top half
    for size in [(10, 30), (30, 10), (40, 80), (81, 41)]:
        out = resize_image(image, size)
        assert out.shape == (*size, 1)
        assert out[0].mean() > 250
        assert out[-1].mean() < 5
        assert prepare_image(image, size=size).shape == (*size, 1)
        assert prepare_image(image, size=size, color_mode="rgb").shape == (*size, 3)


def test_resize_shapes_and_channels(gray: np.ndarray) -> None:
    assert resize_image(gray, (16, 24)).shape == (16, 24, 1)
    assert resize_image(gray[:, :, None], (16, 24)).shape == (16, 24, 1)
    rgb = np.stack([gray] * 3, -1)
    assert resize_image(rgb, (16, 24)).shape == (16, 24, 3)
    np.testing.assert_array_equal(resize_image(gray, (H, W))[:, :, 0], gray)  # same size: same
    assert resize_image(gray, [16, 24]).dtype == np.uint8


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4,), np.uint8),
        np.zeros((0, 4), np.uint8),
        [[0, 1], [2, 3]],
    ],
)
def test_resize_rejects_non_images(bad: Any) -> None:
    with pytest.raises(ValueError, match="resize_image expects"):
        resize_image(bad, (2, 2))


@pytest.mark.parametrize("size", [(0, 4), (4,), (4, 4, 4), (2.5, 4), "ab", None, (-1, 3)])
def test_check_image_size_rejects(size: Any) -> None:
    with pytest.raises(ValueError, match="two positive integers"):
        check_image_size(size)


def test_small_helpers() -> None:
    assert check_image_size((224, 300)) == (224, 300)
    assert check_image_size(np.array([5, 6])) == (5, 6)
    assert check_color_mode("rgb") == "rgb"
    assert channels_for("grayscale") == 1
    assert channels_for("rgb") == 3
    with pytest.raises(ValueError, match="choose one of: grayscale, rgb"):
        channels_for("bgr")


def test_prepare_image_equals_load_then_resize(png_file: Path) -> None:
    # One path: the Predictor and the training pipeline get identical pixels.
    for mode in ("grayscale", "rgb"):
        direct = prepare_image(png_file, size=(20, 12), color_mode=mode)
        two_step = resize_image(load_image(png_file, color_mode=mode), (20, 12))
        np.testing.assert_array_equal(direct, two_step)


def test_jpeg_draft_stays_close_to_full_decode(make_xray: Callable[..., np.ndarray]) -> None:
    big = make_xray(1, size=512, seed=1)
    smooth = np.asarray(Image.fromarray(big).resize((256, 256)).resize((512, 512)))
    data = encode(Image.fromarray(smooth), "JPEG", quality=92)
    for size in [(64, 64), (50, 90), (200, 200)]:
        fast = prepare_image(data, size=size)
        full = resize_image(load_image(data), size)
        assert fast.shape == full.shape == (*size, 1)
        assert max_diff(fast, full) <= 2, size


# --- the real full-resolution files ----------------------------------------------------


def _fullres(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "fullres-sample").glob("*/*.jpeg"))
    if not files:
        pytest.skip("no full-resolution sample images")
    return files


def _mode_and_size(path: Path) -> tuple[str, tuple[int, int]]:
    with Image.open(path) as image:
        return image.mode, image.size


@pytest.mark.slow
def test_real_fullres_draft_matches_full_decode(shared_data: Path) -> None:
    worst = 0.0
    for path in _fullres(shared_data):
        for size, mode in [((224, 224), "grayscale"), ((160, 256), "rgb")]:
            fast = prepare_image(path, size=size, color_mode=mode)
            full = resize_image(load_image(path, color_mode=mode), size)
            assert fast.shape == (*size, channels_for(mode))
            diff = np.abs(fast.astype(int) - full.astype(int))
            assert diff.max() <= 2, path.name
            worst = max(worst, float(diff.mean()))
    assert worst < 0.5


@pytest.mark.slow
def test_real_fullres_every_input_kind_agrees(shared_data: Path) -> None:
    files = _fullres(shared_data)
    rgb_files = [p for p in files if _mode_and_size(p)[0] == "RGB"]
    for path in [files[0], *rgb_files[:1]]:
        reference = prepare_image(path, size=(224, 224))
        data = path.read_bytes()
        with path.open("rb") as handle:
            sources = [str(path), data, memoryview(data), handle]
            for source in sources:
                np.testing.assert_array_equal(prepare_image(source, size=(224, 224)), reference)
        full = load_image(path)
        assert full.shape[:2] == _mode_and_size(path)[1][::-1]
        # A 16-bit PNG copy of the decoded image gives the same resized pixels.
        sixteen = encode(Image.fromarray(full[:, :, 0].astype(np.uint16) * 257), "PNG")
        np.testing.assert_array_equal(
            prepare_image(sixteen, size=(224, 224)), resize_image(full, (224, 224))
        )


@pytest.mark.slow
def test_real_fullres_decode_is_fast(shared_data: Path) -> None:
    files = _fullres(shared_data)
    start = time.perf_counter()
    for path in files:
        prepare_image(path, size=(224, 224))
    per_image = (time.perf_counter() - start) / len(files)
    assert per_image < 0.25  # generous: a shared 2-core machine; ~10-20 ms expected


def test_decoding_in_threads_gives_the_same_pixels(gray: np.ndarray) -> None:
    from concurrent.futures import ThreadPoolExecutor

    inputs = [COPIES[name](gray) for name in COPIES] * 3
    inputs.append(crafted_png(10_000, 9_000))  # the rare warning-silencing path, too
    sequential = []
    for data in inputs:
        try:
            sequential.append(prepare_image(data, size=(16, 24), max_pixels=10**9))
        except InvalidImageError as exc:
            sequential.append(str(exc))

    def run(data: bytes) -> np.ndarray | str:
        try:
            return prepare_image(data, size=(16, 24), max_pixels=10**9)
        except InvalidImageError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(run, inputs))
    for one, other in zip(sequential, parallel, strict=True):
        if isinstance(one, str):
            assert one == other
        else:
            np.testing.assert_array_equal(one, other)
