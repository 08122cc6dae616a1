"""Where an augmented batch's CPU time goes: the compiled warp against its parts, as one JSON line.

Times repeated calls on one fixed batch of real radiographs (the first
``--batch`` training images, 224 x 224 grayscale; smooth random images when the
data is absent) with the default augmentation's draws for one seed:

* ``augment``: ``augment_batch`` (draws, matrices, warp and intensity), as the
  ``tf.data`` pipeline runs it;
* ``warp``: the XLA-compiled bilinear warp alone (``warp_bilinear``, rounded to
  ``uint8``);
* ``intensity``: the compiled intensity steps alone (contrast, brightness), on
  the unwarped batch;
* ``coordinates``: the warp's per-pixel arithmetic without reading a pixel
  (source coordinates and weights, combined and rounded); ``warp`` minus this
  is the cost of its four gathers per pixel;
* ``one_gather``: the same warp reading one pixel (nearest neighbour) instead
  of four;
* ``opencv_warp``: OpenCV's ``cv2.warpAffine`` (bilinear, fixed point, the same
  matrices), one call per image, only when ``cv2`` is installed (it is not a
  dependency of the library), with its mean absolute difference from ``warp``
  in grey levels (``opencv_mean_abs_difference``).

``cpu_ms_per_image`` gives the median CPU time per image of each (all threads
of this process), comparable between the variants of one run even on a busy
machine. The augmented pass of ``bench_data.py`` costs about ``augment`` plus
its ``cached_pass``; for ``speedup_augmented_vs_notebook >= 5`` on ``C`` cores
the pass may cost at most ``C * 1000 / (5 * notebook_images_per_s)`` ms per
image, and less when the cores are not all busy.

Usage::

    python benchmarks/bench_augment_ops.py [--data ../shared/data/kermany2018-224] [--batch 32]
                                           [--calls 10] [--windows 5] [--allow-busy]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _machine

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kermany2018-224"
SIZE = 224


def _batch(data: Path, count: int):
    """``count`` grayscale ``uint8`` images ``(count, 224, 224, 1)`` and where they came from."""
    import numpy as np
    import tensorflow as tf

    files = sorted((data / "train").glob("*/*.jpeg")) if data.is_dir() else []
    if not files:
        rng = np.random.default_rng(0)
        small = rng.integers(0, 256, (count, 28, 28, 1)).astype(np.float32)
        smooth = tf.image.resize(small, (SIZE, SIZE), method="bicubic")
        return tf.cast(tf.clip_by_value(tf.round(smooth), 0, 255), tf.uint8), "synthetic"
    step = max(1, len(files) // count)
    images = []
    for path in files[::step][:count]:
        decoded = tf.io.decode_jpeg(tf.io.read_file(os.fspath(path)), channels=1)
        resized = tf.image.resize(decoded, (SIZE, SIZE), antialias=True)
        images.append(tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8))
    return tf.stack(images), os.fspath(data / "train")


def _sampling(images, transforms, *, gathers: int):
    """The warp's arithmetic with ``gathers`` (0 or 1) pixel reads per output pixel."""
    import tensorflow as tf

    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    t = tf.cast(transforms, tf.float32)[:, :, None, None]
    xs = tf.range(w)[None, None, :]
    ys = tf.range(h)[None, :, None]
    source_x = tf.clip_by_value(t[:, 0] * xs + t[:, 1] * ys + t[:, 2], 0.0, w - 1.0)
    source_y = tf.clip_by_value(t[:, 3] * xs + t[:, 4] * ys + t[:, 5], 0.0, h - 1.0)
    x0, y0 = tf.floor(source_x), tf.floor(source_y)
    fx, fy = source_x - x0, source_y - y0
    base = (tf.range(batch) * height * width)[:, None, None]
    index = base + tf.cast(y0, tf.int32) * width + tf.cast(x0, tf.int32)
    if gathers:
        pixel = tf.cast(tf.gather(tf.reshape(images, [-1]), index), tf.float32)
    else:
        pixel = tf.cast(tf.bitwise.bitwise_and(index, 255), tf.float32)
    value = pixel * (1.0 - fx) + fy  # keeps the weights alive
    return tf.cast(tf.clip_by_value(tf.round(value), 0.0, 255.0), tf.uint8)[..., None]


def main() -> None:
    """Run the benchmark and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="a folder with train/<class>/*.jpeg"
    )
    parser.add_argument("--batch", type=int, default=32, help="images per call")
    parser.add_argument("--calls", type=int, default=10, help="calls per timed window")
    parser.add_argument("--windows", type=int, default=5, help="timed windows per measure")
    _machine.add_arguments(parser)
    args = parser.parse_args()
    result = _machine.start("bench_augment_ops", allow_busy=args.allow_busy)

    import platform

    import numpy as np
    import tensorflow as tf

    from cxr_pneumonia.data import Augmentation
    from cxr_pneumonia.data import augment as augment_module

    images, source = _batch(args.data, args.batch)
    count = int(images.shape[0])
    aug = Augmentation()
    seed = tf.constant([0, 1], tf.int64)
    u, v = augment_module.draw_uniforms(count, seed)
    noise_seed = tf.random.experimental.stateless_fold_in(seed, 2)
    transforms = augment_module.transform_matrices(u, v, aug, SIZE, SIZE)

    def compiled(function):
        return tf.function(function, jit_compile=True)

    augment = tf.function(lambda batch, key: augment_module.augment_batch(batch, key, aug))
    warp = compiled(
        lambda batch, matrices: tf.cast(
            tf.round(augment_module.warp_bilinear(batch, matrices)), tf.uint8
        )
    )
    intensity = compiled(
        lambda batch: augment_module._intensity(tf.cast(batch, tf.float32), u, v, noise_seed, aug)
    )
    coordinates = compiled(lambda batch, matrices: _sampling(batch, matrices, gathers=0))
    one_gather = compiled(lambda batch, matrices: _sampling(batch, matrices, gathers=1))
    calls = {
        "augment": lambda: augment(images, seed),
        "warp": lambda: warp(images, transforms),
        "intensity": lambda: intensity(images),
        "coordinates": lambda: coordinates(images, transforms),
        "one_gather": lambda: one_gather(images, transforms),
    }
    reference = warp(images, transforms).numpy()
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        pixels, matrices = images.numpy(), transforms.numpy()[:, :6].reshape(-1, 2, 3)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP

        def opencv_warp() -> np.ndarray:
            out = np.empty_like(pixels)
            for index in range(count):
                cv2.warpAffine(
                    pixels[index, :, :, 0],
                    matrices[index],
                    (SIZE, SIZE),
                    dst=out[index, :, :, 0],
                    flags=flags,
                    borderMode=cv2.BORDER_REPLICATE,
                )
            return out

        difference = np.abs(opencv_warp().astype(np.float32) - reference.astype(np.float32))
        result["opencv_mean_abs_difference"] = round(float(difference.mean()), 4)
        result["opencv"] = cv2.__version__
        calls["opencv_warp"] = opencv_warp

    def window(call):
        def run() -> int:
            for _ in range(args.calls):
                out = call()
                if hasattr(out, "numpy"):
                    out.numpy()
            return args.calls * count

        return run

    details = {
        name: _machine.timed_windows(window(call), warmup=1, windows=args.windows)
        for name, call in calls.items()
    }
    result.update(
        {
            "images": source,
            "batch_size": count,
            "calls_per_window": args.calls,
            "tensorflow": tf.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_ms_per_image": {name: value["cpu_ms_per_item"] for name, value in details.items()},
            "details": details,
        }
    )
    _machine.finish(result)


if __name__ == "__main__":
    main()
