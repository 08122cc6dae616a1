"""A prediction web service: an ASGI app (Starlette) that batches concurrent requests.

Needs the ``serve`` extra: ``pip install 'cxr-pneumonia[serve]'`` (Starlette,
uvicorn, python-multipart). Run it with ``cxr-pneumonia serve`` or
[`serve`][cxr_pneumonia.serve.serve], or mount [`create_app`][cxr_pneumonia.serve.create_app]'s app
in any ASGI server.

Endpoints:

* ``GET /health``: liveness, ``200 {"status": "ok"}`` while the process runs.
* ``GET /ready``: readiness, ``200`` with the model's name, input size and
  threshold once the model is loaded and warmed up, ``503`` before.
* ``POST /predict``: one image as the raw body (any content type but
  ``multipart/form-data``: ``image/jpeg``, ``application/dicom``,
  ``application/octet-stream``, ...; chunked uploads too), or one or more files
  as ``multipart/form-data``. Answers ``{"label", "probability", "threshold",
  "in_distribution", "ood_score"}``
  for a raw body, ``{"predictions": [{"filename", "label", ...}, ...]}`` for a
  form. ``?threshold=0.3`` overrides the bundle's threshold.

Every refused request gets a JSON body ``{"error": "..."}`` and a 4xx status:
400 (empty body, not an image, malformed form or threshold, malformed HTTP
such as a bad ``Content-Length`` when served by [`serve`][cxr_pneumonia.serve.serve]), 404, 405, 408
(the body took longer than ``read_timeout``), 413 (over ``max_body_bytes``,
refused from ``Content-Length`` before reading when it is given). A prediction
that takes longer than ``predict_timeout`` gets 503.

Concurrent requests are micro-batched: requests wait in a queue, and one
worker takes up to ``max_batch_size`` of them at a time into a single
[`Predictor.predict`][cxr_pneumonia.predictor.Predictor.predict] call
(decoding in its thread pool, one inference batch), so sixteen concurrent
requests cost about one batch, not sixteen single predictions.

Examples:
    >>> from cxr_pneumonia.serve import create_app
    >>> app = create_app()  # the shipped model, loaded at start-up
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cxr_pneumonia.predictor import Prediction, Predictor

try:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException, MultiPartParser
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ImportError as error:  # pragma: no cover - exercised without the extra
    _msg = (
        "cxr_pneumonia.serve needs Starlette, uvicorn and python-multipart; install them "
        "with: pip install 'cxr-pneumonia[serve]'"
    )
    raise ImportError(_msg) from error

if TYPE_CHECKING:
    import uvicorn

__all__ = ["ServiceConfig", "ServiceStats", "create_app", "serve", "uvicorn_server"]

logger = logging.getLogger("cxr_pneumonia")


@dataclass(frozen=True)
class ServiceConfig:
    """Limits and batching of the service.

    Attributes:
        max_body_bytes: Largest request body accepted (413 beyond).
        max_files: Most files in one multipart request.
        max_batch_size: Most images predicted in one batch.
        batch_wait: Seconds the batcher waits for more requests after the
            first one of a batch arrived (while a batch runs, requests queue
            up anyway).
        read_timeout: Seconds allowed to receive a request body (408 beyond).
        predict_timeout: Seconds a request may wait for its prediction (503 beyond).
    """

    max_body_bytes: int = 32 * 1024 * 1024
    max_files: int = 16
    max_batch_size: int = 16
    batch_wait: float = 0.002
    read_timeout: float = 30.0
    predict_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_files", "max_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"ServiceConfig {name} must be an int >= 1; got {value!r}"
                raise ValueError(msg)
        for name in ("batch_wait", "read_timeout", "predict_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
                msg = f"ServiceConfig {name} must be a finite number of seconds >= 0; got {value!r}"
                raise ValueError(msg)


@dataclass
class ServiceStats:
    """Counters of a running app (``app.state.stats``), for monitoring and tests.

    Attributes:
        batches: Batches predicted.
        images: Images predicted (including unreadable ones).
        batch_sizes: Size of every batch, in order (the last 1000).
    """

    batches: int = 0
    images: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class _RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Job:
    body: bytes
    future: asyncio.Future[Prediction]


class _Batcher:
    """Collects queued images into batches for one worker task."""

    def __init__(self, predictor: Predictor, config: ServiceConfig, stats: ServiceStats) -> None:
        self.predictor = predictor
        self.config = config
        self.stats = stats
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def predict(self, body: bytes) -> Prediction:
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(body, future))
        return await future

    async def _run(self) -> None:
        while True:
            jobs = [await self.queue.get()]
            deadline = time.monotonic() + self.config.batch_wait
            while len(jobs) < self.config.max_batch_size:
                left = deadline - time.monotonic()
                try:
                    job = (
                        self.queue.get_nowait()
                        if left <= 0
                        else await asyncio.wait_for(self.queue.get(), left)
                    )
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                jobs.append(job)
            jobs = [job for job in jobs if not job.future.done()]  # timed out meanwhile
            if not jobs:
                continue
            try:
                predictions = await asyncio.to_thread(
                    self.predictor.predict, [job.body for job in jobs], errors="skip"
                )
            except Exception as exc:  # a failure of the model, not of one image
                logger.exception("prediction batch of %d failed", len(jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.stats.batches += 1
            self.stats.images += len(jobs)
            self.stats.batch_sizes = [*self.stats.batch_sizes[-999:], len(jobs)]
            for job, prediction in zip(jobs, predictions, strict=True):
                if not job.future.done():
                    job.future.set_result(prediction)


def _error(status: int, message: str) -> JSONResponse:
    # After 408 and 413 the rest of the body was not read: close the connection.
    headers = {"connection": "close"} if status in (408, 413) else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _threshold(request: Request) -> float | None:
    text = request.query_params.get("threshold")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        msg = f"threshold must be a number in [0, 1]; got {text!r}"
        raise _RequestError(400, msg)
    return value


async def _read_body(request: Request, config: ServiceConfig) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > config.max_body_bytes:
        msg = (
            f"body of {declared} bytes is over the limit of {config.max_body_bytes} bytes; "
            "send a smaller image"
        )
        raise _RequestError(413, msg)

    async def receive() -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_body_bytes:
                msg = (
                    f"body is over the limit of {config.max_body_bytes} bytes; send a smaller image"
                )
                raise _RequestError(413, msg)
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        body = await asyncio.wait_for(receive(), config.read_timeout)
    except asyncio.TimeoutError:
        msg = f"the request body did not arrive within {config.read_timeout:g} s"
        raise _RequestError(408, msg) from None
    if not body:
        msg = "empty body; send the image's bytes, or a multipart form with a file"
        raise _RequestError(400, msg)
    return body


async def _form_files(
    request: Request, body: bytes, config: ServiceConfig
) -> list[tuple[str, bytes]]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(
        request.headers, stream(), max_files=config.max_files, max_fields=config.max_files
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _RequestError(400, f"malformed multipart form: {exc.message}") from exc
    files: list[tuple[str, bytes]] = []
    for _, value in form.multi_items():
        if isinstance(value, str):
            continue
        files.append((value.filename or "", await value.read()))
        await value.close()
    if not files:
        msg = "the multipart form has no file; send the image as a file field (e.g. 'file')"
        raise _RequestError(400, msg)
    return files


def _answer(prediction: Prediction, threshold: float, class_names: tuple[str, ...]) -> dict:
    if prediction.error is not None or prediction.probability is None:
        error = str(prediction.error)
        # The Predictor names inputs by index ("input 0: ..."): the client sent one image.
        error = error.split(": ", 1)[1] if error.startswith("input ") else error
        raise _RequestError(400, f"not a usable image: {error}")
    label = class_names[1] if prediction.probability >= threshold else class_names[0]
    return {
        "label": label,
        "probability": prediction.probability,
        "threshold": threshold,
        "in_distribution": prediction.in_distribution,
        "ood_score": prediction.ood_score,
    }


def create_app(
    predictor: Predictor | Callable[[], Predictor] | str | os.PathLike[str] | None = None,
    *,
    config: ServiceConfig | None = None,
) -> Starlette:
    """The ASGI app of the prediction service.

    Args:
        predictor: A [`Predictor`][cxr_pneumonia.predictor.Predictor], a function
            returning one (called at start-up, in a thread), a bundle folder,
            or ``None`` for the model shipped with the package. Loading and a
            warm-up prediction happen at start-up; ``/ready`` answers 503 until
            they are done.
        config: Limits and batching; default `ServiceConfig()`.

    Returns:
        A Starlette app; ``app.state.stats`` holds its
        [`ServiceStats`][cxr_pneumonia.serve.ServiceStats].

    Raises:
        ValueError: If ``config`` is not a [`ServiceConfig`][cxr_pneumonia.serve.ServiceConfig].
    """
    config = config if config is not None else ServiceConfig()
    if not isinstance(config, ServiceConfig):
        msg = f"create_app config must be a ServiceConfig; got {config!r}"
        raise ValueError(msg)
    stats = ServiceStats()
    state: dict[str, Any] = {"predictor": None, "batcher": None}

    def load() -> Predictor:
        if isinstance(predictor, Predictor):
            loaded = predictor
        elif predictor is None:
            loaded = Predictor.default()
        elif callable(predictor):
            loaded = predictor()
        else:
            loaded = Predictor.load(predictor)
        side = loaded.image_size
        channels = 1 if loaded.color_mode == "grayscale" else 3
        import numpy as np

        loaded.predict_arrays(np.zeros((1, *side, channels), dtype=np.uint8))  # warm up
        return loaded

    async def start(app: Starlette) -> None:
        try:
            loaded = await asyncio.to_thread(load)
        except Exception as exc:
            state["error"] = f"{type(exc).__name__}: {exc}"
            logger.exception("the service could not load its model")
            return
        batcher = _Batcher(loaded, config, stats)
        batcher.start()
        state["predictor"], state["batcher"] = loaded, batcher
        logger.info("service ready: %r", loaded)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Load in the background: /health answers at once, /ready once the model is warm.
        loading = asyncio.get_running_loop().create_task(start(app))
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            loaded, batcher = state["predictor"], state["batcher"]
            state["predictor"] = state["batcher"] = None
            if batcher is not None:
                await batcher.stop()
            if loaded is not None and not isinstance(predictor, Predictor):
                loaded.close()

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> JSONResponse:
        loaded: Predictor | None = state["predictor"]
        if loaded is None:
            if state.get("error"):
                return JSONResponse({"status": "failed", "error": state["error"]}, status_code=503)
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse(
            {
                "status": "ready",
                "model": loaded.metadata.model_name,
                "image_size": list(loaded.image_size),
                "color_mode": loaded.color_mode,
                "threshold": loaded.threshold,
                "class_names": list(loaded.class_names),
            }
        )

    async def predict(request: Request) -> JSONResponse:
        loaded: Predictor | None = state["predictor"]
        batcher: _Batcher | None = state["batcher"]
        if loaded is None or batcher is None:
            return _error(503, "the model is still loading; retry when /ready answers 200")
        try:
            threshold = _threshold(request)
            cut = loaded.threshold if threshold is None else threshold
            body = await _read_body(request, config)
            content_type = request.headers.get("content-type", "")
            if content_type.startswith("multipart/form-data"):
                files = await _form_files(request, body, config)
            else:
                files = [("", body)]
            try:
                predictions = await asyncio.wait_for(
                    asyncio.gather(*(batcher.predict(data) for _, data in files)),
                    config.predict_timeout,
                )
            except asyncio.TimeoutError:
                msg = f"no prediction within {config.predict_timeout:g} s; the service is busy"
                return _error(503, msg)
            names = tuple(loaded.class_names)
            if not content_type.startswith("multipart/form-data"):
                return JSONResponse(_answer(predictions[0], cut, names))
            answers = []
            for (filename, _), prediction in zip(files, predictions, strict=True):
                try:
                    answers.append({"filename": filename, **_answer(prediction, cut, names)})
                except _RequestError as exc:
                    answers.append({"filename": filename, "error": str(exc)})
            if all("error" in answer for answer in answers):
                return JSONResponse(
                    {"error": "no file is a usable image", "predictions": answers}, status_code=400
                )
            return JSONResponse({"predictions": answers})
        except _RequestError as exc:
            return _error(exc.status, str(exc))
        except ClientDisconnect:
            return _error(400, "the client disconnected before sending the whole body")

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        hint = {404: "; use GET /health, GET /ready or POST /predict"}.get(status, "")
        return _error(status, f"{detail}{hint}")

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/predict", predict, methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.stats = stats
    app.state.config = config
    return app


def _json_400_protocol() -> type:
    """uvicorn's h11 protocol, answering malformed HTTP with a JSON 400 instead of plain text."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JSONErrorH11Protocol(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"error": f"malformed HTTP request: {msg}"}).encode("utf-8")
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return JSONErrorH11Protocol


def uvicorn_server(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    timeout_keep_alive: float = 5.0,
    log_level: str = "info",
) -> uvicorn.Server:
    """A uvicorn server for ``app`` with the service's HTTP settings.

    The h11 protocol (malformed requests get a JSON 400), keep-alive connections
    closed after ``timeout_keep_alive`` idle seconds, at most 64 KiB of headers.

    Args:
        app: From [`create_app`][cxr_pneumonia.serve.create_app].
        host: Interface to listen on.
        port: Port (``0``: a free one; read it from the socket once started).
        timeout_keep_alive: Idle seconds before a keep-alive connection is closed.
        log_level: uvicorn's log level.

    Returns:
        A ``uvicorn.Server``; ``server.run()`` blocks until it is stopped.
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_json_400_protocol(),
        lifespan="on",
        timeout_keep_alive=math.ceil(timeout_keep_alive),
        h11_max_incomplete_event_size=64 * 1024,
        log_level=log_level,
    )
    return uvicorn.Server(config)


def serve(
    predictor: Predictor | str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServiceConfig | None = None,
    log_level: str = "info",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the service until interrupted (Ctrl-C or SIGTERM).

    Args:
        predictor: As for [`create_app`][cxr_pneumonia.serve.create_app].
        host: Interface to listen on (``"0.0.0.0"`` for every one).
        port: Port; ``0`` picks a free one.
        config: Limits and batching.
        log_level: uvicorn's log level.
        on_ready: Called with the base URL (``http://host:port``) once the
            socket listens, e.g. to print it (``/ready`` says when the model
            is loaded).
    """
    app = create_app(predictor, config=config)
    server = uvicorn_server(app, host=host, port=port, log_level=log_level)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    bound_host, bound_port = sock.getsockname()[:2]
    if on_ready is not None:
        on_ready(f"http://{bound_host}:{bound_port}")
    server.run(sockets=[sock])
