"""The Predictor overlaps decoding with inference, and ``apredict`` leaves the event loop free."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from cxr_pneumonia.predictor import Predictor
from test_predictor import sensitive_model, xray

IMAGES = [xray(i % 2, seed=i) for i in range(16)]


@pytest.fixture
def predictor() -> Predictor:
    with Predictor(sensitive_model(), batch_size=4, num_workers=4) as shared:
        shared.predict(IMAGES[:4])  # warm up: the first call initialises kernels
        yield shared


def _slow_inference(predictor: Predictor, seconds: float, log: list | None = None) -> None:
    """Make every inference call take ``seconds`` longer (recording when it ran)."""
    real = predictor._infer

    def slow(batch):
        start = time.perf_counter()
        time.sleep(seconds)
        out = real(batch)
        if log is not None:
            log.append(("infer", start, time.perf_counter()))
        return out

    predictor._infer = slow


def test_next_batch_decodes_while_the_current_one_is_inferred(predictor, monkeypatch):
    log: list[tuple[str, float, float]] = []
    lock = threading.Lock()
    real_prepare = Predictor._prepare

    def slow_prepare(self, item, name=None):
        start = time.perf_counter()
        time.sleep(0.1)
        out = real_prepare(self, item, name)
        with lock:
            log.append(("decode", start, time.perf_counter()))
        return out

    monkeypatch.setattr(Predictor, "_prepare", slow_prepare)
    _slow_inference(predictor, 0.1, log)
    started = time.perf_counter()
    results = predictor.predict(IMAGES)
    elapsed = time.perf_counter() - started
    assert len(results) == 16
    decodes = [(a, b) for kind, a, b in log if kind == "decode"]
    infers = [(a, b) for kind, a, b in log if kind == "infer"]
    assert len(decodes) == 16
    assert len(infers) == 4

    # Decoding runs two batches ahead: the first two inferences overlap later decoding.
    def overlaps(first, second):
        return first[0] < second[1] and second[0] < first[1]

    assert all(any(overlaps(i, d) for d in decodes) for i in infers[:2])
    # Serially: 4 batches x (one decoding round of 0.1 s + 0.1 s of inference) = 0.8 s;
    # overlapped: one round, then 4 inferences (0.5 s) plus overheads.
    assert elapsed < 0.7


def test_apredict_does_not_block_the_event_loop(predictor):
    want = predictor.predict(IMAGES)
    _slow_inference(predictor, 0.1)  # 4 batches: at least 0.4 s in the worker thread

    async def main():
        ticks = 0
        task = asyncio.create_task(predictor.apredict(IMAGES))
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        return await task, ticks

    got, ticks = asyncio.run(main())
    assert ticks >= 20  # the loop ran other work all along
    assert [p.probability for p in got] == [p.probability for p in want]
    assert [p.label for p in got] == [p.label for p in want]


def test_concurrent_apredicts_match_predict(predictor):
    want = [predictor.predict(image).probability for image in IMAGES[:6]]

    async def main():
        return await asyncio.gather(*(predictor.apredict(image) for image in IMAGES[:6]))

    got = asyncio.run(main())
    np.testing.assert_allclose([p.probability for p in got], want, rtol=1e-6)


def test_apredict_raises_like_predict(predictor):
    with pytest.raises(ValueError, match="errors="):
        asyncio.run(predictor.apredict(IMAGES[0], errors="ignore"))  # type: ignore[arg-type]
    skipped = asyncio.run(predictor.apredict([IMAGES[0], b"not an image"], errors="skip"))
    assert skipped[0].ok
    assert not skipped[1].ok
