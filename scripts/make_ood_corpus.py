"""Build an offline corpus of images that are NOT chest X-rays, for the OOD check.

Everything comes from this machine: images rendered here with Pillow and
numpy, and sample images that Python packages from PyPI carry inside their
wheels (nothing is downloaded at run time)::

    python scripts/make_ood_corpus.py --out runs/ood-corpus

writes ``<out>/<category>/<name>.png`` (or ``.dcm`` for DICOM files copied as
they are) and ``<out>/manifest.csv`` (``file,category,origin``). The
categories:

==============  ==========================================================
document        rendered text pages, tables, invoices, forms, receipts,
                code listings (clean and "scanned": tilted, grey, noisy),
                plus scikit-image's scanned ``page`` and ``text``
photo           photographs bundled by scikit-image (astronaut, camera,
                coffee, chelsea, rocket, coins, moon, ...), scikit-learn
                (china, flower) and matplotlib (grace_hopper): each whole,
                in grey, and as random crops
noise           uniform, Gaussian, salt-and-pepper, smooth (blurred) and
                colour noise at several levels and scales
blank           constant images (black, white, greys, colours)
gradient        linear and radial gradients, grey and colour
synthetic       checkerboards, stripes, random shapes, rendered charts
medical-other   other modalities and body parts: pydicom's CT, MR,
                nuclear-medicine and ultrasound test files, matplotlib's
                MRI brain slice, scikit-image's retina fundus, histology
                (ihc), cells, microaneurysms and Shepp-Logan phantom
==============  ==========================================================

scikit-image (``pip install scikit-image``, the ``corpus`` extra),
scikit-learn, matplotlib and pydicom are optional: a missing package only
drops its images (the script says which). With all of them the corpus
holds about 400 images.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

_VOCABULARY = """
the of and to in is was for on that with as by at from this which be are an or patient
report invoice total amount date account payment order number customer service delivery
address quarter revenue growth analysis method result figure table section model data value
system process review meeting agenda summary project budget contract terms conditions
signature reference description quantity price tax due
"""
WORDS = tuple(_VOCABULARY.split())


# --- fonts and text ----------------------------------------------------------------------


def _font_files() -> list[Path]:
    try:
        import matplotlib
    except ImportError:
        return []
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return sorted(p for p in folder.glob("DejaVu*.ttf") if "Display" not in p.name)


def _font(rng: np.random.Generator, size: int, *, mono: bool = False) -> ImageFont.FreeTypeFont:
    files = [f for f in _font_files() if ("Mono" in f.name) == mono] or _font_files()
    if files:
        return ImageFont.truetype(str(files[int(rng.integers(len(files)))]), size)
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


def _sentence(rng: np.random.Generator, words: int) -> str:
    chosen = [WORDS[int(i)] for i in rng.integers(len(WORDS), size=words)]
    return " ".join(chosen).capitalize() + "."


def _page(rng: np.random.Generator, size: tuple[int, int]) -> tuple[Image.Image, ImageDraw.Draw]:
    shade = int(rng.integers(235, 256))
    image = Image.new("RGB", size, (shade, shade, int(rng.integers(225, shade + 1))))
    return image, ImageDraw.Draw(image)


def text_page(rng: np.random.Generator) -> Image.Image:
    width = int(rng.integers(500, 900))
    image, draw = _page(rng, (width, int(width * 1.41)))
    font = _font(rng, int(rng.integers(11, 20)))
    title = _font(rng, int(rng.integers(22, 34)))
    y = int(rng.integers(30, 80))
    draw.text((40, y), _sentence(rng, 4).upper(), fill=(0, 0, 0), font=title)
    y += 60
    while y < image.height - 60:
        line = _sentence(rng, int(rng.integers(6, 14)))
        draw.text((40, y), line, fill=(20, 20, 20), font=font)
        y += int(font.size * rng.uniform(1.3, 1.8))
        if rng.random() < 0.1:
            y += font.size * 2  # paragraph break
    return image


def table_page(rng: np.random.Generator) -> Image.Image:
    width = int(rng.integers(600, 1000))
    image, draw = _page(rng, (width, int(width * rng.uniform(0.7, 1.4))))
    font = _font(rng, int(rng.integers(11, 16)))
    rows, cols = int(rng.integers(8, 30)), int(rng.integers(3, 8))
    left, top = 30, 60
    cell_w, cell_h = (image.width - 2 * left) // cols, int(font.size * 1.9)
    draw.text((left, 20), _sentence(rng, 5), fill=(0, 0, 0), font=font)
    for r in range(rows):
        y = top + r * cell_h
        if y + cell_h > image.height - 20:
            break
        if r == 0:
            draw.rectangle((left, y, left + cols * cell_w, y + cell_h), fill=(200, 200, 200))
        for c in range(cols):
            x = left + c * cell_w
            draw.rectangle((x, y, x + cell_w, y + cell_h), outline=(0, 0, 0))
            text = (
                WORDS[int(rng.integers(len(WORDS)))]
                if r == 0 or c == 0
                else (f"{rng.uniform(0, 10_000):,.2f}")
            )
            draw.text((x + 4, y + 3), text, fill=(0, 0, 0), font=font)
    return image


def invoice_page(rng: np.random.Generator) -> Image.Image:
    image, draw = _page(rng, (700, 990))
    big, font = _font(rng, 30), _font(rng, 14)
    draw.text((40, 40), "INVOICE", fill=(0, 0, 60), font=big)
    draw.text((450, 45), f"No. {int(rng.integers(1000, 99999))}", fill=(0, 0, 0), font=font)
    for i, label in enumerate(("Bill to:", "Address:", "Date:", "Due:")):
        draw.text((40, 110 + 22 * i), f"{label} {_sentence(rng, 3)}", fill=(0, 0, 0), font=font)
    y = 230
    draw.rectangle((40, y, 660, y + 24), fill=(60, 60, 120))
    for x, head in zip((45, 380, 470, 570), ("Description", "Qty", "Price", "Amount"), strict=True):
        draw.text((x, y + 4), head, fill=(255, 255, 255), font=font)
    total = 0.0
    for _ in range(int(rng.integers(4, 18))):
        y += 26
        qty, price = int(rng.integers(1, 20)), float(rng.uniform(1, 500))
        total += qty * price
        draw.text((45, y), _sentence(rng, 3)[:40], fill=(0, 0, 0), font=font)
        for x, value in zip(
            (380, 470, 570), (str(qty), f"{price:.2f}", f"{qty * price:.2f}"), strict=True
        ):
            draw.text((x, y), value, fill=(0, 0, 0), font=font)
        draw.line((40, y + 22, 660, y + 22), fill=(180, 180, 180))
    draw.text((470, y + 50), f"TOTAL  {total:,.2f}", fill=(0, 0, 0), font=_font(rng, 18))
    return image


def form_page(rng: np.random.Generator) -> Image.Image:
    image, draw = _page(rng, (700, 900))
    font = _font(rng, int(rng.integers(12, 17)))
    draw.text((40, 30), _sentence(rng, 4).upper(), fill=(0, 0, 0), font=_font(rng, 24))
    y = 90
    while y < 840:
        draw.text(
            (40, y), WORDS[int(rng.integers(len(WORDS)))].title() + ":", fill=(0, 0, 0), font=font
        )
        if rng.random() < 0.3:
            for k in range(int(rng.integers(2, 5))):
                x = 220 + 110 * k
                draw.rectangle((x, y, x + 14, y + 14), outline=(0, 0, 0), width=2)
                draw.text(
                    (x + 20, y), WORDS[int(rng.integers(len(WORDS)))], fill=(0, 0, 0), font=font
                )
        else:
            draw.rectangle((220, y - 4, 660, y + 22), outline=(0, 0, 0))
        y += int(rng.integers(36, 60))
    return image


def receipt_page(rng: np.random.Generator) -> Image.Image:
    image, draw = _page(rng, (int(rng.integers(280, 360)), int(rng.integers(600, 1000))))
    font = _font(rng, 13, mono=True)
    y = 20
    while y < image.height - 40:
        left = WORDS[int(rng.integers(len(WORDS)))].upper()
        draw.text((15, y), f"{left:<18}{rng.uniform(0.5, 90):>8.2f}", fill=(30, 30, 30), font=font)
        y += 18
    return image


def code_page(rng: np.random.Generator) -> Image.Image:
    dark = rng.random() < 0.5
    image = Image.new("RGB", (800, 600), (30, 30, 30) if dark else (250, 250, 250))
    draw = ImageDraw.Draw(image)
    font = _font(rng, 14, mono=True)
    y, indent = 10, 0
    while y < 585:
        words = " ".join(WORDS[int(i)] for i in rng.integers(len(WORDS), size=rng.integers(2, 7)))
        line = "    " * indent + (
            f"def {words.split()[0]}(x):"
            if rng.random() < 0.2
            else words.replace(" ", "_", 1) + " = " + str(rng.integers(100))
        )
        color = tuple(int(v) for v in rng.integers(120, 255, size=3)) if dark else (0, 0, 0)
        draw.text((10, y), line, fill=color, font=font)
        indent = int(np.clip(indent + rng.integers(-1, 2), 0, 4))
        y += 18
    return image


def scanned(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Make a clean page look photocopied: grey, tilted, blurred, noisy."""
    grey = image.convert("L").rotate(float(rng.uniform(-4, 4)), expand=True, fillcolor=200)
    grey = grey.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    pixels = np.asarray(grey, dtype=np.float32) * rng.uniform(0.75, 0.95)
    pixels += rng.normal(0, rng.uniform(3, 12), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


# --- noise, blank, gradients, synthetic --------------------------------------------------


def noise_images(rng: np.random.Generator) -> Iterator[tuple[str, Image.Image]]:
    size = (256, 256)
    for i in range(10):
        low = int(rng.integers(0, 128))
        yield f"uniform-{i}", _u8(rng.integers(low, 256, size=size))
    for i in range(10):
        yield f"gaussian-{i}", _u8(rng.normal(rng.uniform(40, 215), rng.uniform(10, 80), size))
    for i in range(8):
        base = np.full(size, rng.uniform(0, 255))
        mask = rng.random(size)
        share = rng.uniform(0.02, 0.3)
        base[mask < share / 2], base[mask > 1 - share / 2] = 0, 255
        yield f"salt-pepper-{i}", _u8(base)
    for i in range(12):
        blurred = _u8(rng.integers(0, 256, size=size)).filter(
            ImageFilter.GaussianBlur(float(rng.choice([1, 2, 4, 8, 16])))
        )
        array = np.asarray(blurred, dtype=np.float32)
        array = (array - array.min()) / max(np.ptp(array), 1.0) * 255
        yield f"smooth-{i}", _u8(array)
    for i in range(10):
        yield f"color-{i}", _u8(rng.integers(0, 256, size=(*size, 3)))
    for i in range(6):
        yield f"binary-{i}", _u8((rng.random(size) < rng.uniform(0.1, 0.9)) * 255)
    for i in range(4):
        small = rng.integers(0, 256, size=(int(rng.integers(4, 16)),) * 2)
        yield f"blocks-{i}", _u8(small).resize(size, Image.Resampling.NEAREST)


def blank_images(rng: np.random.Generator) -> Iterator[tuple[str, Image.Image]]:
    for level in (0, 1, 16, 32, 64, 96, 128, 160, 192, 224, 254, 255):
        yield f"grey-{level:03d}", Image.new("L", (224, 224), level)
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]
    for color in colors + [tuple(int(v) for v in rng.integers(0, 256, size=3)) for _ in range(6)]:
        yield "rgb-{:02x}{:02x}{:02x}".format(*color), Image.new("RGB", (300, 200), color)


def gradient_images(rng: np.random.Generator) -> Iterator[tuple[str, Image.Image]]:
    y, x = np.mgrid[0:256, 0:256] / 255.0
    for i, angle in enumerate(np.linspace(0, 2 * np.pi, 12, endpoint=False)):
        ramp = (np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)) / 0.71 + 0.5
        yield f"linear-{i}", _u8(np.clip(ramp, 0, 1) * 255)
    for i in range(8):
        cy, cx = rng.uniform(0.2, 0.8, size=2)
        radius = np.hypot(y - cy, x - cx) / rng.uniform(0.4, 1.0)
        ramp = np.clip(radius, 0, 1)
        yield f"radial-{i}", _u8((1 - ramp if i % 2 else ramp) * 255)
    for i in range(8):
        a, b = rng.integers(0, 256, size=3), rng.integers(0, 256, size=3)
        t = (x if i % 2 else y)[..., None]
        yield f"color-{i}", _u8(a * (1 - t) + b * t)


def synthetic_images(rng: np.random.Generator) -> Iterator[tuple[str, Image.Image]]:
    y, x = np.mgrid[0:256, 0:256]
    for cell in (4, 8, 16, 32, 64):
        yield f"checker-{cell}", _u8(((x // cell + y // cell) % 2) * 255)
    for i in range(6):
        period = float(rng.uniform(4, 40))
        angle = float(rng.uniform(0, np.pi))
        wave = np.sin((np.cos(angle) * x + np.sin(angle) * y) * 2 * np.pi / period)
        yield f"stripes-{i}", _u8((wave + 1) * 127.5)
    for i in range(14):
        image = Image.new("RGB", (320, 240), tuple(int(v) for v in rng.integers(0, 256, size=3)))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 25))):
            x0, y0 = int(rng.integers(0, 300)), int(rng.integers(0, 220))
            box = (x0, y0, x0 + int(rng.integers(10, 120)), y0 + int(rng.integers(10, 120)))
            color = tuple(int(v) for v in rng.integers(0, 256, size=3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=color)
        yield f"shapes-{i}", image
    yield from _charts(rng)


def _charts(rng: np.random.Generator) -> Iterator[tuple[str, Image.Image]]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no charts", file=sys.stderr)
        return
    import io

    kinds = ("line", "bar", "scatter", "pie", "hist")
    for i in range(15):
        fig, ax = plt.subplots(figsize=(4, 3), dpi=80)
        kind = kinds[i % len(kinds)]
        values = rng.random(12)
        if kind == "line":
            ax.plot(np.cumsum(rng.normal(size=50)))
        elif kind == "bar":
            ax.bar(range(12), values)
        elif kind == "scatter":
            ax.scatter(rng.normal(size=80), rng.normal(size=80))
        elif kind == "pie":
            ax.pie(values[:5])
        else:
            ax.hist(rng.normal(size=500), bins=20)
        ax.set_title(_sentence(rng, 3))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        yield f"chart-{kind}-{i}", Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _u8(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8))


# --- images shipped by packages ----------------------------------------------------------

SKIMAGE_PHOTOS = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "horse", "brick",
    "grass", "gravel", "color", "hubble_deep_field", "logo", "clock", "motorcycle_left",
    "motorcycle_right", "chessboard",
)  # fmt: skip
SKIMAGE_DOCUMENTS = ("page", "text")
SKIMAGE_MEDICAL = (
    "retina",
    "immunohistochemistry",
    "cell",
    "microaneurysms",
    "shepp_logan_phantom",
)


def _skimage_data() -> Path | None:
    try:
        skimage = importlib.import_module("skimage")
    except ImportError:
        print(
            "scikit-image is not installed: no skimage photos (pip install scikit-image)",
            file=sys.stderr,
        )
        return None
    return Path(skimage.__file__).parent / "data"


_SKIMAGE_FILES = {
    "clock": "clock_motion.png",
    "chessboard": "chessboard_GRAY.png",
    "immunohistochemistry": "ihc.png",
    "shepp_logan_phantom": "phantom.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "retina": "retina.jpg",
    "rocket": "rocket.jpg",
}


def skimage_image(name: str) -> Image.Image | None:
    folder = _skimage_data()
    if folder is None:
        return None
    file = folder / _SKIMAGE_FILES.get(name, f"{name}.png")
    if not file.is_file():  # newer releases fetch some images on demand: skip those
        print(f"scikit-image does not bundle {file.name}: skipped", file=sys.stderr)
        return None
    return Image.open(file).convert("RGB")


def package_photos() -> Iterator[tuple[str, str, Image.Image]]:
    for name in SKIMAGE_PHOTOS:
        image = skimage_image(name)
        if image is not None:
            yield f"skimage-{name}", "scikit-image skimage/data", image
    try:
        from sklearn.datasets import load_sample_images

        for name, array in zip(("china", "flower"), load_sample_images().images, strict=True):
            yield f"sklearn-{name}", "scikit-learn load_sample_images", Image.fromarray(array)
    except ImportError:
        print("scikit-learn is not installed: no china/flower", file=sys.stderr)
    try:
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
            photo = Image.open(handle).convert("RGB")
        yield "matplotlib-grace_hopper", "matplotlib sample_data", photo
    except (ImportError, OSError):
        print("matplotlib sample data is not available: no grace_hopper", file=sys.stderr)


def photo_variants(
    name: str, image: Image.Image, rng: np.random.Generator
) -> Iterator[tuple[str, Image.Image]]:
    yield name, image
    yield f"{name}-grey", image.convert("L")
    for k in range(3):
        w, h = image.size
        side = int(min(w, h) * rng.uniform(0.4, 0.8))
        left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = image.crop((left, top, left + side, top + side))
        yield f"{name}-crop{k}", crop.convert("L") if k == 2 else crop


def medical_images(rng: np.random.Generator) -> Iterator[tuple[str, str, Image.Image | Path]]:
    for name in SKIMAGE_MEDICAL:
        image = skimage_image(name)
        if image is not None:
            yield f"skimage-{name}", "scikit-image skimage/data", image
            w, h = image.size
            side = int(min(w, h) * 0.6)
            left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            crop = image.crop((left, top, left + side, top + side)).convert("L")
            yield f"skimage-{name}-crop", "scikit-image skimage/data", crop
    try:
        import gzip

        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("s1045.ima.gz") as handle:
            raw = (
                gzip.decompress(handle.read())
                if not isinstance(handle, gzip.GzipFile)
                else (handle.read())
            )
        brain = np.frombuffer(raw, dtype=np.uint16).reshape(256, 256).astype(np.float32)
        yield (
            "matplotlib-mri-brain",
            "matplotlib sample_data s1045.ima",
            _u8(brain / max(float(brain.max()), 1.0) * 255),
        )
    except (ImportError, OSError, ValueError) as exc:
        print(f"matplotlib MRI sample not available ({exc})", file=sys.stderr)
    yield from _dicom_images()


# single-frame DICOMs copied as .dcm (read through cxr_pneumonia's DICOM path), and
# multi-frame ones whose frames become PNGs. Chosen for modality: CT, MR, NM, US.
DICOM_FILES = (
    "693_J2KI.dcm", "CT_small.dcm", "J2K_pixelrep_mismatch.dcm", "MR_small.dcm",
    "JPEG2000.dcm", "examples_overlay.dcm", "examples_palette.dcm",
    "examples_rgb_color.dcm", "examples_jpeg2k.dcm", "ExplVR_BigEnd.dcm",
)  # fmt: skip
DICOM_MULTIFRAME = ("examples_ybr_color.dcm",)


def _dicom_images() -> Iterator[tuple[str, str, Image.Image | Path]]:
    try:
        import pydicom
    except ImportError:
        print("pydicom is not installed: no CT/MR/NM/US files", file=sys.stderr)
        return
    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    for name in DICOM_FILES:
        if (folder / name).is_file():
            yield f"pydicom-{Path(name).stem}", "pydicom data/test_files", folder / name
    for name in DICOM_MULTIFRAME:
        try:
            frames = pydicom.dcmread(folder / name).pixel_array
        except Exception as exc:  # an optional decoder may be missing
            print(f"{name}: frames can't be decoded ({exc}): skipped", file=sys.stderr)
            continue
        from pydicom.pixels import convert_color_space

        for i in range(0, len(frames), 3):
            rgb = convert_color_space(frames[i], "YBR_FULL_422", "RGB")
            yield (
                f"pydicom-{Path(name).stem}-f{i:02d}",
                "pydicom data/test_files",
                Image.fromarray(rgb),
            )


# --- main --------------------------------------------------------------------------------


def build(out: Path, *, seed: int = 0) -> list[tuple[str, str, str]]:
    """Write the corpus under ``out``; return its manifest rows."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, str]] = []

    def save(category: str, name: str, origin: str, item: Image.Image | Path) -> None:
        folder = out / category
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(item, Path):
            file = folder / f"{name}{item.suffix}"
            shutil.copyfile(item, file)
        else:
            file = folder / f"{name}.png"
            item.save(file)
        rows.append((file.relative_to(out).as_posix(), category, origin))

    makers: list[tuple[str, Callable[[np.random.Generator], Image.Image], int]] = [
        ("text", text_page, 24),
        ("table", table_page, 14),
        ("invoice", invoice_page, 14),
        ("form", form_page, 10),
        ("receipt", receipt_page, 8),
        ("code", code_page, 8),
    ]
    for kind, maker, count in makers:
        for i in range(count):
            page = maker(rng)
            save("document", f"{kind}-{i:02d}", "rendered (Pillow)", page)
            if i % 2 == 0:
                save("document", f"{kind}-{i:02d}-scanned", "rendered (Pillow)", scanned(page, rng))
    for name in SKIMAGE_DOCUMENTS:
        image = skimage_image(name)
        if image is not None:
            save("document", f"skimage-{name}", "scikit-image skimage/data", image)
    for name, origin, image in package_photos():
        for variant, picture in photo_variants(name, image, rng):
            save("photo", variant, origin, picture)
    for category, generator in (
        ("noise", noise_images),
        ("blank", blank_images),
        ("gradient", gradient_images),
        ("synthetic", synthetic_images),
    ):
        for name, image in generator(rng):
            save(category, name, "generated (numpy)", image)
    for name, origin, item in medical_images(rng):
        save("medical-other", name, origin, item)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/ood-corpus", help="folder to (re)create")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists():
        if not (out / "manifest.csv").is_file():
            sys.exit(f"{out} exists and is not a corpus made by this script; choose another --out")
        shutil.rmtree(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rows = build(tmp, seed=args.seed)
    with (tmp / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("file", "category", "origin"))
        writer.writerows(rows)
    os.replace(tmp, out)
    counts: dict[str, int] = {}
    for _, category, _ in rows:
        counts[category] = counts.get(category, 0) + 1
    print(f"{len(rows)} images in {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
