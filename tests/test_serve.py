"""The prediction service over real HTTP: uvicorn on 127.0.0.1, httpx as the client."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from cxr_pneumonia.bundle import save_model  # noqa: E402
from cxr_pneumonia.predictor import Predictor  # noqa: E402
from cxr_pneumonia.serve import ServiceConfig, create_app, uvicorn_server  # noqa: E402
from test_predictor import sensitive_model, xray  # noqa: E402

MAX_BODY = 200_000
SRC = Path(__file__).resolve().parents[1] / "src"


def _png(label: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(xray(label, seed)).save(buffer, format="PNG")
    return buffer.getvalue()


class _Service:
    def __init__(self, url: str, app, predictor: Predictor) -> None:
        self.url = url
        self.app = app
        self.predictor = predictor


@contextlib.contextmanager
def _running(app, *, ready: bool = True) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1; shut it down afterwards."""
    server = uvicorn_server(app, host="127.0.0.1", port=0, log_level="warning")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a free port, chosen by the system
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            answer = httpx.get(f"{url}/{'ready' if ready else 'health'}", timeout=5)
            if answer.status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the service did not start")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert not thread.is_alive()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Service]:
    bundle = save_model(sensitive_model(), tmp_path_factory.mktemp("serve") / "tiny")
    predictor = Predictor.load(bundle, batch_size=16, num_workers=2)
    config = ServiceConfig(max_body_bytes=MAX_BODY, batch_wait=0.02, read_timeout=2.0)
    app = create_app(predictor, config=config)
    with predictor, _running(app) as url:
        yield _Service(url, app, predictor)


def test_health_and_ready(service: _Service) -> None:
    assert httpx.get(f"{service.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{service.url}/ready").json()
    assert ready["status"] == "ready"
    assert ready["image_size"] == [32, 32]
    assert ready["threshold"] == service.predictor.threshold


def test_raw_body_prediction_matches_the_predictor(service: _Service) -> None:
    image = _png(1, seed=3)
    expected = service.predictor.predict(image)
    answer = httpx.post(
        f"{service.url}/predict", content=image, headers={"content-type": "image/png"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["label"] == expected.label
    assert body["probability"] == pytest.approx(expected.probability, abs=1e-6)


def test_chunked_upload(service: _Service) -> None:
    image = _png(0, seed=4)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(image), 1000):
            yield image[start : start + 1000]

    answer = httpx.post(f"{service.url}/predict", content=chunks())
    assert answer.status_code == 200, answer.text
    assert answer.json()["probability"] == pytest.approx(
        service.predictor.predict(image).probability, abs=1e-6
    )


def test_multipart_upload_of_several_files(service: _Service) -> None:
    files = [
        ("file", ("a.png", _png(0, seed=1), "image/png")),
        ("file", ("b.png", _png(1, seed=1), "image/png")),
        ("file", ("c.txt", b"not an image", "text/plain")),
    ]
    answer = httpx.post(f"{service.url}/predict", files=files, params={"threshold": "0.5"})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["filename"] for p in predictions] == ["a.png", "b.png", "c.txt"]
    assert {p["label"] for p in predictions[:2]} <= {"NORMAL", "PNEUMONIA"}
    assert all(p["threshold"] == 0.5 for p in predictions[:2])
    assert "not a usable image" in predictions[2]["error"]


def test_threshold_override(service: _Service) -> None:
    answer = httpx.post(f"{service.url}/predict?threshold=0", content=_png(0, seed=2))
    assert (answer.status_code, answer.json()["label"], answer.json()["threshold"]) == (
        200,
        "PNEUMONIA",
        0.0,
    )


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"content": b""}, 400, "empty body"),
        ({"content": b"this is not an image"}, 400, "not a usable image"),
        ({"content": b"x" * (MAX_BODY + 1)}, 413, "over the limit"),
        ({"content": b"\x89PNG", "params": {"threshold": "2"}}, 400, "threshold"),
        ({"content": b"\x89PNG", "params": {"threshold": "nan"}}, 400, "threshold"),
        (
            {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}},
            400,
            "multipart",
        ),
        (
            {"data": {"note": "no file"}, "files": {}},
            400,
            "",
        ),
    ],
    ids=["empty", "not-image", "too-large", "threshold-range", "threshold-nan", "bad-form", "form"],
)
def test_bad_requests_get_json_4xx(service: _Service, kwargs, status, message) -> None:
    answer = httpx.post(f"{service.url}/predict", **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert message in answer.json()["error"]


def test_too_large_chunked_body_is_refused_while_reading(service: _Service) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 10_000 + 5):
            yield b"y" * 10_000

    answer = httpx.post(f"{service.url}/predict", content=chunks())
    assert answer.status_code == 413
    assert "over the limit" in answer.json()["error"]


def test_unknown_path_and_method_get_json(service: _Service) -> None:
    missing = httpx.get(f"{service.url}/nope")
    assert missing.status_code == 404
    assert "POST /predict" in missing.json()["error"]
    wrong = httpx.get(f"{service.url}/predict")
    assert wrong.status_code == 405
    assert "error" in wrong.json()


def _raw_request(url: str, request: bytes, *, wait: float = 10.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as conn:
        conn.sendall(request)
        received = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return received
            received += chunk


def test_malformed_content_length_gets_json_400(service: _Service) -> None:
    answer = _raw_request(
        service.url,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nhello",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/json" in head.lower()
    assert b"malformed HTTP request" in body


def test_slow_body_times_out_with_408(service: _Service) -> None:
    # Declares 1000 bytes, sends 10, then waits: the read timeout (2 s) answers.
    answer = _raw_request(
        service.url,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within" in body


def test_concurrent_requests_are_batched(service: _Service) -> None:
    images = [_png(i % 2, seed=10 + i) for i in range(16)]
    expected = [p.probability for p in service.predictor.predict(images)]
    stats = service.app.state.stats
    batches_before = stats.batches

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(client.post(f"{service.url}/predict", content=image) for image in images)
            )

    answers = asyncio.run(send_all())
    assert [a.status_code for a in answers] == [200] * 16
    got = [a.json()["probability"] for a in answers]
    assert got == pytest.approx(expected, abs=1e-6)  # each answer is its own image's
    batches = stats.batches - batches_before
    assert batches < 16  # some requests shared a batch
    assert max(stats.batch_sizes[-batches:]) > 1


def test_ready_is_503_until_the_model_is_loaded(service: _Service) -> None:
    gate = threading.Event()

    def slow_loader() -> Predictor:
        gate.wait(30)
        return service.predictor

    with _running(create_app(slow_loader), ready=False) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        loading = httpx.get(f"{url}/ready")
        assert loading.status_code == 503
        assert loading.json()["status"] == "loading"
        early = httpx.post(f"{url}/predict", content=b"x")
        assert early.status_code == 503
        assert "/ready" in early.json()["error"]
        gate.set()
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_ready_says_why_loading_failed(tmp_path) -> None:
    with _running(create_app(tmp_path / "no-such-bundle"), ready=False) as url:
        deadline = time.monotonic() + 60
        while (answer := httpx.get(f"{url}/ready")).json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert answer.status_code == 503
        assert answer.json()["status"] == "failed"
        assert "no-such-bundle" in answer.json()["error"]


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="max_batch_size must be an int >= 1"):
        ServiceConfig(max_batch_size=0)
    with pytest.raises(ValueError, match="read_timeout"):
        ServiceConfig(read_timeout=float("inf"))


def test_sequential_and_concurrent_timing_is_reported(service: _Service) -> None:
    """Not a benchmark: 16 concurrent requests must not take longer than 16 in a row."""
    images = [_png(i % 2, seed=40 + i) for i in range(16)]
    with httpx.Client(timeout=60) as client:
        client.post(f"{service.url}/predict", content=images[0])  # warm
        started = time.perf_counter()
        for image in images:
            assert client.post(f"{service.url}/predict", content=image).status_code == 200
        sequential = time.perf_counter() - started

    async def send_all() -> float:
        async with httpx.AsyncClient(timeout=60) as client:
            started = time.perf_counter()
            answers = await asyncio.gather(
                *(client.post(f"{service.url}/predict", content=image) for image in images)
            )
            assert all(a.status_code == 200 for a in answers)
            return time.perf_counter() - started

    concurrent = asyncio.run(send_all())
    print(f"16 requests: sequential {sequential:.3f} s, concurrent {concurrent:.3f} s")
    assert concurrent < sequential * 1.5 + 0.5  # generous: shared CI machines are noisy


def test_serve_command_answers_over_http(tmp_path) -> None:
    """`cxr-pneumonia serve --port 0` says where it listens, then serves /ready and /predict."""
    import queue
    import subprocess
    import sys

    bundle = save_model(sensitive_model(), tmp_path / "bundle")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "cxr_pneumonia.cli", "serve", "--model", str(bundle)]
    server = subprocess.Popen(
        [*command, "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert server.stderr is not None
    reader = threading.Thread(
        target=lambda: [lines.put(line) for line in server.stderr], daemon=True
    )
    reader.start()
    try:
        deadline = time.monotonic() + 120
        url = None
        while url is None:
            line = lines.get(timeout=max(1.0, deadline - time.monotonic()))
            if line.startswith("listening on "):
                url = line.split()[-1]
        while httpx.get(f"{url}/ready", timeout=10).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        answer = httpx.post(f"{url}/predict", content=_png(1, seed=5), timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["label"] in ("NORMAL", "PNEUMONIA")
    finally:
        server.terminate()
        server.wait(timeout=30)
        reader.join(timeout=10)
        server.stderr.close()
