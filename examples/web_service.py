"""A prediction web service: ``cxr_pneumonia.serve`` behind uvicorn.

The service lives in the library (``cxr_pneumonia.serve``, the ``serve``
extra: ``pip install 'cxr-pneumonia[serve]'``) so a service team can import,
test and deploy it; this script only parses options and starts it. Endpoints:

* ``GET /health``: liveness; ``GET /ready``: 200 once the model is loaded and warm.
* ``POST /predict``: an image as the raw body (or chunked), or files as a
  multipart form; ``?threshold=0.3`` overrides the bundle's threshold.
  Concurrent requests are batched into one model call. Every refused request
  gets a JSON ``{"error": ...}`` with a 4xx status.

Run it and try it::

    python examples/web_service.py --model bundles/cnn --port 8000
    curl --data-binary @xray.jpeg http://127.0.0.1:8000/predict
    curl -F file=@a.jpeg -F file=@b.jpeg http://127.0.0.1:8000/predict

``--port 0`` picks a free port; the first line printed says where it listens.
To run the app under another ASGI server (gunicorn with uvicorn workers, ...),
point it at a module calling ``cxr_pneumonia.serve.create_app(...)``. Put TLS
and authentication in front of it (a reverse proxy) outside a trusted network.
"""

from __future__ import annotations

import argparse

from cxr_pneumonia.serve import ServiceConfig, serve


def main(argv: list[str] | None = None) -> None:
    defaults = ServiceConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle folder (default: the shipped model)")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=defaults.max_body_bytes,
        help=f"largest request body (default: {defaults.max_body_bytes})",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=defaults.max_batch_size,
        help=f"most images per model call (default: {defaults.max_batch_size})",
    )
    args = parser.parse_args(argv)
    config = ServiceConfig(max_body_bytes=args.max_bytes, max_batch_size=args.max_batch_size)
    serve(
        args.model,
        host=args.host,
        port=args.port,
        config=config,
        log_level="warning",
        on_ready=lambda url: print(f"listening on {url}", flush=True),
    )


if __name__ == "__main__":
    main()
