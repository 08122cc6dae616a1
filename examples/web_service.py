"""A small prediction web service on the standard library's ``http.server``.

One :class:`~cxr_pneumonia.predictor.Predictor` is loaded at start-up and shared
by all request threads (it is thread-safe; its compiled inference function is
traced once). Endpoints:

* ``POST /predict``: the body is the image file's bytes (JPEG, PNG, DICOM, ...);
  the answer is JSON ``{"label", "probability", "threshold"}``. A bad image gives
  HTTP 400 with ``{"error": "..."}``; ``?threshold=0.3`` overrides the bundle's.
* ``GET /health``: ``{"status": "ok", "model", "image_size", "threshold"}``.

Run it and try it::

    python examples/web_service.py --model bundles/cnn --port 8000
    curl --data-binary @xray.jpeg http://127.0.0.1:8000/predict

``--port 0`` picks a free port; the first line printed says where it listens.
This is a sketch for a trusted network: put a real server (TLS, authentication,
request limits) in front of it for anything else.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cxr_pneumonia import InvalidImageError, Predictor

DEFAULT_MAX_BYTES = 32 * 1024 * 1024


class PredictionServer(ThreadingHTTPServer):
    """A threading HTTP server that holds the shared Predictor."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], predictor: Predictor, max_bytes: int) -> None:
        super().__init__(address, PredictionHandler)
        self.predictor = predictor
        self.max_bytes = max_bytes


class PredictionHandler(BaseHTTPRequestHandler):
    """Answers ``POST /predict`` and ``GET /health``."""

    server: PredictionServer

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/health":
            self._send(HTTPStatus.NOT_FOUND, {"error": "unknown path; use /health or /predict"})
            return
        predictor = self.server.predictor
        self._send(
            HTTPStatus.OK,
            {
                "status": "ok",
                "model": predictor.metadata.model_name,
                "image_size": list(predictor.image_size),
                "threshold": predictor.threshold,
            },
        )

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/predict":
            self._send(HTTPStatus.NOT_FOUND, {"error": "unknown path; POST images to /predict"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            self._send(HTTPStatus.BAD_REQUEST, {"error": "empty body; send the image's bytes"})
            return
        if length > self.server.max_bytes:
            self._send(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {"error": f"body of {length} bytes is over the limit of {self.server.max_bytes}"},
            )
            return
        body = self.rfile.read(length)
        try:
            threshold = _threshold(parse_qs(url.query))
            prediction = self.server.predictor.predict(body, threshold=threshold)
        except (InvalidImageError, ValueError) as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        self._send(
            HTTPStatus.OK,
            {
                "label": prediction.label,
                "probability": prediction.probability,
                "threshold": prediction.threshold,
            },
        )

    def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def _threshold(query: dict[str, list[str]]) -> float | None:
    if "threshold" not in query:
        return None
    value = float(query["threshold"][0])
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        msg = f"threshold must be in [0, 1], got {value}"
        raise ValueError(msg)
    return value


def make_server(
    predictor: Predictor,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> PredictionServer:
    """Create (bind) the server; call ``serve_forever()`` on it to answer requests."""
    return PredictionServer((host, port), predictor, max_bytes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle folder (default: the shipped model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    args = parser.parse_args(argv)

    predictor = Predictor.load(args.model) if args.model else Predictor.default()
    server = make_server(predictor, args.host, args.port, args.max_bytes)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        predictor.close()


if __name__ == "__main__":
    main()
