"""A local HTTP server for download tests: serves a tmp folder on 127.0.0.1.

Use the ``http_server`` fixture (load this module with
``pytest_plugins = ["http_server"]`` in a test module or the root conftest)::

    def test_download(http_server):
        (http_server.root / "data.npz").write_bytes(payload)
        url = http_server.url("data.npz")
        http_server.fail_next("data.npz", status=500)       # next request: HTTP 500
        http_server.drop_next("data.npz", after_bytes=100)  # next one: cut after 100 bytes
        ...
        assert http_server.hits["data.npz"] == 2

Failures are queued per file and used up one request at a time; once the queue
is empty the file is served normally. Nothing ever leaves 127.0.0.1.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

__all__ = ["LocalHTTPServer", "http_server"]


@dataclass(frozen=True)
class _Failure:
    status: int | None = None  # answer with this HTTP status
    after_bytes: int | None = None  # or send this many bytes of the body, then hang up


@dataclass
class LocalHTTPServer:
    """A running server; files are served from ``root`` (flat names)."""

    root: Path
    base_url: str
    hits: collections.Counter[str] = field(default_factory=collections.Counter)
    _failures: dict[str, collections.deque[_Failure]] = field(
        default_factory=lambda: collections.defaultdict(collections.deque)
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, name: str, query: str = "") -> str:
        """The URL of ``root / name`` (with ``?query`` appended when given)."""
        return f"{self.base_url}/{name}" + (f"?{query}" if query else "")

    def fail_next(self, name: str, *, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests for ``name`` with HTTP ``status``."""
        with self._lock:
            self._failures[name].extend([_Failure(status=status)] * times)

    def drop_next(self, name: str, *, after_bytes: int, times: int = 1) -> None:
        """Announce the full length but close the connection after ``after_bytes`` bytes."""
        with self._lock:
            self._failures[name].extend([_Failure(after_bytes=after_bytes)] * times)

    def _next_failure(self, name: str) -> _Failure | None:
        with self._lock:
            self.hits[name] += 1
            queue = self._failures.get(name)
            return queue.popleft() if queue else None


def _handler_for(server: LocalHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            name = unquote(urlsplit(self.path).path).lstrip("/")
            failure = server._next_failure(name)
            path = server.root / name
            if failure is not None and failure.status is not None:
                self._send_status(failure.status)
                return
            if "/" in name or not name or not path.is_file():
                self._send_status(404)
                return
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if failure is not None and failure.after_bytes is not None:
                self.wfile.write(body[: failure.after_bytes])
                self.wfile.flush()
                self.close_connection = True  # hang up mid-file
                return
            self.wfile.write(body)

        def _send_status(self, status: int) -> None:
            body = f"status {status}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

    return Handler


@pytest.fixture
def http_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHTTPServer]:
    """A threaded HTTP server on 127.0.0.1 (ephemeral port) serving ``tmp_path / "www"``.

    Proxy settings of the environment are bypassed for 127.0.0.1, so requests
    reach this server and nothing else.
    """
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(variable, "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    state = LocalHTTPServer(root=root, base_url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    state.base_url = f"http://{host}:{port}"
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="test-http-server",
        daemon=True,
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
