"""Benchmark the Predictor on full-resolution JPEGs; prints one JSON line.

Measures, on the same files in the same run:

* ``predictor_images_per_s``: ``Predictor.predict(list_of_paths)`` end to end
  (parallel decode + resize + batched compiled inference);
* ``latency_ms_p50`` / ``latency_ms_p95``: one ``predict(path)`` call at a time;
* ``cold_start_s``: import + ``Predictor.load`` + first prediction, in a fresh
  subprocess;
* ``decode_only_images_per_s``: ``prepare_image`` alone on the same thread pool;
* ``model_only_images_per_s``: ``Predictor.predict_arrays`` on the decoded
  pixels (inference alone, same batches);
* ``ratio_predictor_vs_sum_bound``: the Predictor against doing the two stages
  one after the other (``1 / (1/decode + 1/model)``); above 1 means decoding
  overlaps inference. ``ratio_predictor_vs_slower_stage``: against the slower
  stage alone, the bound with perfect overlap (reached only where the stages
  don't share cores);
* ``notebook_loop_images_per_s``: the notebooks' loop (PIL open, convert,
  resize, ``model.predict`` on one image at a time);
* ``peak_rss_mb`` of this process, and the ratios.

The load average is printed before and after; a busy machine is refused
unless ``--allow-busy`` (then the figures are flagged). Usage::

    python benchmarks/bench_predict.py                 # cnn-small, random weights
    python benchmarks/bench_predict.py --model bundles/cnn-v1 --n 400
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _machine
import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fullres-sample"

COLD_START = """
import sys, time
start = time.perf_counter()
from cxr_pneumonia.predictor import Predictor
predictor = Predictor.load(sys.argv[1])
predictor.predict(sys.argv[2])
print(time.perf_counter() - start)
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="bundle folder (default: random cnn-small)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of JPEGs")
    parser.add_argument("--n", type=int, default=200, help="inputs (files cycled)")
    parser.add_argument("--size", type=int, default=224, help="input size of the cnn-small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decoding threads")
    parser.add_argument("--latency-n", type=int, default=30, help="single-image calls timed")
    parser.add_argument("--loop-n", type=int, default=50, help="images in the notebook loop")
    parser.add_argument("--repeats", type=int, default=3, help="timed end-to-end runs (median)")
    _machine.add_arguments(parser)
    return parser.parse_args()


def make_bundle(folder: Path, size: int) -> Path:
    from cxr_pneumonia.bundle import save_model
    from cxr_pneumonia.models import build_model

    model = build_model("cnn-small", input_shape=(size, size, 1), weights=None)
    return save_model(model, folder / "cnn-small", model_name="cnn-small")


def cold_start(bundle: Path, file: Path) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", COLD_START, str(bundle), str(file)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args()
    record = _machine.start("bench_predict", allow_busy=args.allow_busy)
    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in {".jpeg", ".jpg"})
    if not files:
        raise SystemExit(f"no JPEG files under {args.data}")
    inputs = [files[i % len(files)] for i in range(args.n)]

    from PIL import Image

    from cxr_pneumonia.images import prepare_image
    from cxr_pneumonia.predictor import Predictor

    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.model or make_bundle(Path(tmp), args.size)
        cold = cold_start(bundle, files[0])
        predictor = Predictor.load(bundle, batch_size=args.batch_size, num_workers=args.workers)
        size, mode = predictor.image_size, predictor.color_mode

        predictor.predict(inputs[: min(len(inputs), args.batch_size)])  # warm up
        end_to_end = _machine.timed_windows(
            lambda: len(predictor.predict(inputs)), warmup=0, windows=args.repeats
        )

        latencies = []
        for file in inputs[: args.latency_n]:
            start = time.perf_counter()
            predictor.predict(file)
            latencies.append(time.perf_counter() - start)

        with ThreadPoolExecutor(max_workers=predictor.num_workers) as pool:
            start = time.perf_counter()
            decoded = list(pool.map(lambda f: prepare_image(f, size=size, color_mode=mode), inputs))
            decode_s = time.perf_counter() - start
        pixels = np.stack(decoded)
        model_only = _machine.timed_windows(
            lambda: len(predictor.predict_arrays(pixels)), warmup=1, windows=args.repeats
        )

        model = predictor.model
        pil_mode = "L" if mode == "grayscale" else "RGB"
        loop_inputs = inputs[: args.loop_n]
        start = time.perf_counter()
        for file in loop_inputs:
            with Image.open(file) as img:
                pixels = np.asarray(img.convert(pil_mode).resize((size[1], size[0])))
            batch = pixels.reshape(1, size[0], size[1], -1).astype("float32")
            model.predict(batch, verbose=0)
        loop_s = time.perf_counter() - start

    predictor_ips = float(end_to_end["median"])
    decode_ips = len(inputs) / decode_s
    model_ips = float(model_only["median"])
    loop_ips = len(loop_inputs) / loop_s
    sum_bound = 1 / (1 / decode_ips + 1 / model_ips)
    report = {
        **record,
        "model": predictor.metadata.model_name,
        "image_size": list(size),
        "n": len(inputs),
        "files": len(files),
        "batch_size": args.batch_size,
        "workers": predictor.num_workers,
        "cpu_count": os.cpu_count(),
        "predictor_images_per_s": round(predictor_ips, 2),
        "latency_ms_p50": round(1000 * float(np.percentile(latencies, 50)), 1),
        "latency_ms_p95": round(1000 * float(np.percentile(latencies, 95)), 1),
        "cold_start_s": round(cold, 2),
        "decode_only_images_per_s": round(decode_ips, 2),
        "model_only_images_per_s": round(model_ips, 2),
        "ratio_predictor_vs_sum_bound": round(predictor_ips / sum_bound, 3),
        "ratio_predictor_vs_slower_stage": round(predictor_ips / min(decode_ips, model_ips), 3),
        "predictor_spread": end_to_end["spread"],
        "notebook_loop_images_per_s": round(loop_ips, 2),
        "notebook_loop_n": len(loop_inputs),
        "ratio_predictor_vs_notebook_loop": round(predictor_ips / loop_ips, 2),
        "ratio_predictor_vs_decode_bound": round(predictor_ips / decode_ips, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "retraces": int(predictor._infer.experimental_get_tracing_count()),
    }
    _machine.finish(report)


if __name__ == "__main__":
    main()
