"""The Predictor: any input, one preprocessing path, one compiled function, threads."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from cxr_pneumonia.bundle import load_bundle, save_model
from cxr_pneumonia.exceptions import BundleError, InvalidImageError
from cxr_pneumonia.images import prepare_image
from cxr_pneumonia.predictor import Prediction, Predictor


def sensitive_model(channels: int = 1) -> keras.Model:
    """A tiny classifier whose output is a steep function of mean brightness."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((32, 32, channels), name="image")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = keras.layers.Conv2D(2, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="out")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    conv = model.get_layer("conv")
    kernel, bias = conv.get_weights()
    kernel[..., 0] = 1.0 / (9 * channels)  # filter 0: local mean brightness
    conv.set_weights([kernel, bias * 0])
    model.get_layer("out").set_weights([np.array([[40.0], [1.0]], "float32"), np.array([-14.0])])
    return model


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundles") / "tiny"
    return save_model(sensitive_model(), path, threshold=0.5)


@pytest.fixture(scope="module")
def predictor(bundle_path: Path) -> Predictor:
    return Predictor.load(bundle_path, batch_size=4, num_workers=2)


def xray(label: int, seed: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Grayscale uint8 (h, w) radiograph-like image spanning 0..255."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    image = 60 + 40 * np.exp(-(((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.08))
    if label:
        image += 120 * np.exp(-(((xx / w - 0.3) ** 2 + (yy / h - 0.55) ** 2) / 0.02))
    image += rng.normal(0, 20, size=(h, w))
    image = np.clip(image, 0, 255)
    image[0, 0], image[-1, -1] = 0, 255
    return image.astype(np.uint8)


def png_bytes(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def gray_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "gray.png"
    Image.fromarray(xray(1, seed=0)).save(path)
    return path


def test_model_is_sensitive(predictor: Predictor) -> None:
    probs = [
        predictor.predict(xray(label, seed)).probability for label in (0, 1) for seed in (0, 1)
    ]
    assert max(probs) - min(probs) > 0.05  # otherwise "same probability" tests prove nothing


def test_single_input_gives_one_prediction(predictor: Predictor, gray_png: Path) -> None:
    result = predictor.predict(gray_png)
    assert isinstance(result, Prediction)
    assert result.source == str(gray_png)
    assert result.error is None
    assert result.ok
    assert 0.0 <= result.probability <= 1.0
    expected = "PNEUMONIA" if result.probability >= 0.5 else "NORMAL"
    assert result.label == expected
    assert result.threshold == 0.5


def test_batch_of_mixed_inputs(predictor: Predictor, gray_png: Path) -> None:
    image = xray(1, seed=0)
    data = gray_png.read_bytes()
    inputs = [
        str(gray_png),
        data,
        io.BytesIO(data),
        Image.fromarray(image),
        image,
        image[..., None],
    ]
    results = predictor.predict(inputs)
    assert isinstance(results, list)
    assert [r.source for r in results] == [str(gray_png), 1, 2, 3, 4, 5]
    np.testing.assert_allclose([r.probability for r in results], results[0].probability, atol=1e-6)


def test_array_dimensions_decide_single_or_batch(predictor: Predictor) -> None:
    images = np.stack([xray(0, 0), xray(1, 1), xray(1, 2)])[..., None]  # (3, h, w, 1)
    batch = predictor.predict(images)
    assert isinstance(batch, list)
    assert len(batch) == 3
    assert isinstance(predictor.predict(images[0]), Prediction)  # (h, w, 1): one image
    assert isinstance(predictor.predict(images[0, ..., 0]), Prediction)  # (h, w)
    as_list = predictor.predict(list(images))
    assert [r.probability for r in as_list] == [r.probability for r in batch]
    generator = predictor.predict(image for image in images)
    assert [r.probability for r in generator] == [r.probability for r in batch]
    assert predictor.predict([]) == []


def test_threshold_override(predictor: Predictor) -> None:
    image = xray(1, seed=0)
    p = predictor.predict(image).probability
    assert predictor.predict(image, threshold=0.0).label == "PNEUMONIA"
    assert predictor.predict(image, threshold=1.0).label == ("PNEUMONIA" if p >= 1.0 else "NORMAL")
    assert predictor.predict(image, threshold=0.25).threshold == 0.25
    with pytest.raises(ValueError, match="threshold"):
        predictor.predict(image, threshold=1.5)
    with pytest.raises(ValueError, match="errors="):
        predictor.predict(image, errors="ignore")  # type: ignore[call-overload]


def test_one_compiled_function_no_retracing(bundle_path: Path) -> None:
    predictor = Predictor.load(bundle_path, batch_size=4)
    assert predictor._infer.experimental_get_tracing_count() == 1
    for n in (1, 3, 4, 7, 10):
        predictor.predict([xray(1, seed) for seed in range(n)])
    predictor.predict_arrays(np.zeros((9, 32, 32, 1), dtype=np.uint8))
    assert predictor._infer.experimental_get_tracing_count() == 1


def test_predict_arrays(predictor: Predictor) -> None:
    images = np.stack([prepare_image(xray(1, s), size=(32, 32)) for s in range(6)])
    probs = predictor.predict_arrays(images)
    assert probs.shape == (6,)
    assert probs.dtype == np.float64
    expected = [r.probability for r in predictor.predict(list(images))]
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict_arrays(images.astype(np.float32))
    with pytest.raises(ValueError, match="32, 32, 1"):
        predictor.predict_arrays(np.zeros((2, 64, 64, 1), dtype=np.uint8))


def test_same_score_as_training_path(
    predictor: Predictor, bundle_path: Path, gray_png: Path
) -> None:
    model, metadata = load_bundle(bundle_path)
    pixels = prepare_image(gray_png, size=metadata.image_size, color_mode=metadata.color_mode)
    expected = float(np.asarray(model(pixels[np.newaxis]))[0, 0])
    assert predictor.predict(gray_png).probability == pytest.approx(expected, abs=1e-6)


def test_same_score_as_data_pipeline(predictor: Predictor, tmp_path: Path) -> None:
    pipeline = pytest.importorskip("cxr_pneumonia.data.pipeline")
    files = []
    for seed in range(5):
        path = tmp_path / f"img{seed}.png"
        Image.fromarray(xray(seed % 2, seed)).save(path)
        files.append(path)
    images, kept = pipeline.decode_cached(
        files,
        image_size=predictor.image_size,
        color_mode=predictor.color_mode,
        cache_dir=tmp_path / "cache",
        key="predictor-test",
        progress=False,
    )
    assert kept.all()
    dataset = pipeline.make_dataset(
        images, [0, 1, 0, 1, 0], batch_size=5, shuffle=False, augment=False, seed=0
    )
    batch, _ = next(iter(dataset))
    expected = np.asarray(predictor.model(batch))[:, 0]
    got = [r.probability for r in predictor.predict(files)]
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize(
    "kind", ["png16", "rgb", "rgba", "cmyk", "tiff", "bmp", "webp", "jpeg-q100", "array16", "float"]
)
def test_copies_in_other_formats_agree(predictor: Predictor, kind: str) -> None:
    image = xray(1, seed=0)
    gray = Image.fromarray(image)
    copies = {
        "png16": lambda: png_bytes(Image.fromarray(image.astype(np.uint16) * 257), format="PNG"),
        "rgb": lambda: png_bytes(gray.convert("RGB"), format="PNG"),
        "rgba": lambda: png_bytes(gray.convert("RGBA"), format="PNG"),
        "cmyk": lambda: png_bytes(gray.convert("CMYK"), format="TIFF"),
        "tiff": lambda: png_bytes(gray, format="TIFF"),
        "bmp": lambda: png_bytes(gray, format="BMP"),
        "webp": lambda: png_bytes(gray, format="WEBP", lossless=True),
        "jpeg-q100": lambda: png_bytes(gray, format="JPEG", quality=100),
        "array16": lambda: image.astype(np.uint16) * 257,
        "float": lambda: image.astype(np.float32) / 255.0,
    }
    original = predictor.predict(png_bytes(gray, format="PNG")).probability
    copy = predictor.predict(copies[kind]()).probability
    assert copy == pytest.approx(original, abs=0.01)


def dicom_bytes(image: np.ndarray, *, monochrome1: bool = False) -> bytes:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    values = image.astype(np.uint16) * 16  # 12-bit data
    if monochrome1:
        values = 4095 - values
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel = 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = values.tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("monochrome1", [False, True])
def test_dicom_agrees_with_the_image(
    predictor: Predictor, tmp_path: Path, monochrome1: bool
) -> None:
    image = xray(1, seed=0)
    path = tmp_path / "x.dcm"
    path.write_bytes(dicom_bytes(image, monochrome1=monochrome1))
    original = predictor.predict(image).probability
    assert predictor.predict(path).probability == pytest.approx(original, abs=0.01)


def test_bad_input_raises_naming_it(predictor: Predictor, tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    with pytest.raises(InvalidImageError, match=r"missing\.png.*no such file"):
        predictor.predict(missing)
    with pytest.raises(InvalidImageError, match=r"input 1 .*not an image"):
        predictor.predict([xray(0, 0), b"not an image at all"])
    empty = tmp_path / "empty.jpeg"
    empty.write_bytes(b"")
    with pytest.raises(InvalidImageError, match=r"empty\.jpeg.*empty"):
        predictor.predict([xray(0, 0), empty])
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(png_bytes(Image.fromarray(xray(0, 0)), format="PNG")[:200])
    with pytest.raises(InvalidImageError, match=r"truncated\.png"):
        predictor.predict(truncated)
    with pytest.raises(InvalidImageError, match="unsupported input type"):
        predictor.predict(3.5)  # type: ignore[call-overload]


def test_errors_skip_marks_bad_items(predictor: Predictor, tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    good = xray(1, 0)
    results = predictor.predict([good, missing, b"junk", good], errors="skip")
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[1].source == str(missing)
    assert "no such file" in results[1].error
    assert results[2].source == 2
    assert "not an image" in results[2].error
    assert results[1].label is None
    assert results[1].probability is None
    assert results[3].probability == results[0].probability


def test_pixel_limit(bundle_path: Path) -> None:
    small = Predictor.load(bundle_path, max_pixels=1000)
    with pytest.raises(InvalidImageError, match="more than the limit of 1,000"):
        small.predict(png_bytes(Image.fromarray(xray(0, 0)), format="PNG"))
    assert small.predict(xray(0, 0, size=(20, 20))).ok


def test_thread_safe(bundle_path: Path) -> None:
    predictor = Predictor.load(bundle_path, batch_size=3, num_workers=2)
    jobs = [[xray(seed % 2, seed + k) for k in range(1 + seed % 5)] for seed in range(16)]
    expected = [[r.probability for r in predictor.predict(job)] for job in jobs]
    results: dict[int, list[float | None]] = {}
    failures: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(start: int) -> None:
        try:
            barrier.wait()
            for index in range(start, len(jobs), 8):
                results[index] = [r.probability for r in predictor.predict(jobs[index])]
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert [results[i] for i in range(len(jobs))] == expected
    assert predictor._infer.experimental_get_tracing_count() == 1
    predictor.close()


def test_predictor_from_model_and_attributes() -> None:
    predictor = Predictor(sensitive_model(channels=3))
    assert predictor.image_size == (32, 32)
    assert predictor.color_mode == "rgb"
    assert predictor.class_names == ("NORMAL", "PNEUMONIA")
    assert predictor.threshold == 0.5
    assert "tiny" in repr(predictor)
    assert predictor.predict(xray(1, 0)).ok  # grayscale input, converted to RGB
    with pytest.raises(ValueError, match="batch_size"):
        Predictor(predictor.model, batch_size=0)


def test_default_model_absent_is_a_clear_error() -> None:
    import importlib.resources

    if (importlib.resources.files("cxr_pneumonia") / "assets" / "default_model").is_dir():
        assert isinstance(Predictor.default(), Predictor)
    else:
        with pytest.raises(BundleError, match="ships no default model"):
            Predictor.default()


@pytest.mark.parametrize("name", ["cnn-small", "cnn"])
def test_registry_models(name: str, tmp_path: Path) -> None:
    models = pytest.importorskip("cxr_pneumonia.models")
    model = models.build_model(name, input_shape=(32, 32, 1), weights=None)
    predictor = Predictor.load(save_model(model, tmp_path / name, model_name=name))
    images = [xray(1, s) for s in range(3)]
    pixels = np.stack([prepare_image(i, size=(32, 32)) for i in images])
    expected = np.asarray(model(pixels))[:, 0]
    np.testing.assert_allclose(
        [r.probability for r in predictor.predict(images)], expected, atol=1e-5
    )
    assert predictor.metadata.model_name == name
