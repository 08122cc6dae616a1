"""``serve``: the prediction web service of ``cxr_pneumonia.serve`` (the ``serve`` extra)."""

from __future__ import annotations

import click

from cxr_pneumonia.cli.common import model_option
from cxr_pneumonia.cli.options import POSITIVE_FLOAT, POSITIVE_INT, Number, option
from cxr_pneumonia.cli.output import EXIT_OK

__all__ = ["serve"]

PORT = Number(int, 0, 65535)


@click.command(
    epilog="""\b
Endpoints: GET /health, GET /ready, POST /predict (raw body or multipart form,
?threshold=0.3); refused requests get a JSON error and a 4xx status.

\b
Examples:
  cxr-pneumonia serve --model bundles/cnn --port 8000
  curl --data-binary @xray.jpeg http://127.0.0.1:8000/predict""",
)
@model_option
@option("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every one)")
@option("--port", type=PORT, default=8000, help="port to listen on (0: a free one)")
@option(
    "--max-body-bytes",
    type=POSITIVE_INT,
    default=32 * 1024 * 1024,
    help="largest request body accepted (413 beyond)",
)
@option("--max-batch-size", type=POSITIVE_INT, default=16, help="most images in one model call")
@option(
    "--read-timeout",
    type=POSITIVE_FLOAT,
    default=30.0,
    help="seconds allowed to receive a request body (408 beyond)",
)
@option(
    "--predict-timeout",
    type=POSITIVE_FLOAT,
    default=60.0,
    help="seconds a request may wait for its prediction (503 beyond)",
)
def serve(
    bundle: str | None,
    host: str,
    port: int,
    max_body_bytes: int,
    max_batch_size: int,
    read_timeout: float,
    predict_timeout: float,
) -> int:
    """Serve predictions over HTTP, batching concurrent requests (needs the serve extra)."""
    try:
        from cxr_pneumonia.serve import ServiceConfig
        from cxr_pneumonia.serve import serve as run
    except ImportError as exc:
        raise click.UsageError(str(exc)) from exc

    config = ServiceConfig(
        max_body_bytes=max_body_bytes,
        max_batch_size=max_batch_size,
        read_timeout=read_timeout,
        predict_timeout=predict_timeout,
    )
    run(
        bundle,
        host=host,
        port=port,
        config=config,
        log_level="warning",
        on_ready=lambda url: click.echo(f"listening on {url}", err=True),
    )
    return EXIT_OK
