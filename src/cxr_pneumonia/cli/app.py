"""The ``cxr-pneumonia`` group: global options, errors, logs, and ``main``.

Results go to standard output, progress, logs and errors to standard error.
Exit codes: 0 on success; 1 when some inputs failed or an operation failed
(each failure is named on standard error); 2 for usage errors (bad options).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import click

from cxr_pneumonia._version import __version__
from cxr_pneumonia.cli import data, evaluate, info, ood, predict, robust, serve, train
from cxr_pneumonia.cli.output import EXIT_FAILED, EXIT_USAGE, PROG, error
from cxr_pneumonia.exceptions import CXRPneumoniaError

__all__ = ["cli", "main"]

_logger = logging.getLogger("cxr_pneumonia")

NO_TENSORFLOW = frozenset({"datasets", "download"})
"""Commands that never start TensorFlow."""


@click.group(
    name=PROG,
    context_settings={
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
        "terminal_width": 100,
    },
    epilog="""\b
Exit codes: 0 success, 1 some inputs or the operation failed, 2 usage error.

\b
Examples:
  cxr-pneumonia predict xray.jpeg
  cxr-pneumonia train --data-dir chest_xray --out bundles/cnn-small""",
)
@click.version_option(__version__, "--version", prog_name=PROG, message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="show debug logs and TensorFlow's own")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Classify pediatric chest X-rays as NORMAL or PNEUMONIA; train, evaluate, export."""
    if not verbose:
        # Read by TensorFlow's C++ logging when it is first imported (lazily).
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if ctx.invoked_subcommand not in NO_TENSORFLOW:
            _start_tensorflow_quietly()
    ctx.with_resource(_log_to_stderr(logging.DEBUG if verbose else logging.INFO))


for _command in (
    predict.predict,
    predict.explain,
    train.train,
    evaluate.evaluate,
    robust.ensemble,
    robust.shift_report,
    evaluate.export,
    serve.serve,
    ood.ood_fit,
    data.download,
    data.summary,
    data.datasets,
    info.models,
    info.info,
):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    This is the ``cxr-pneumonia`` console script; its return value is the exit
    code.

    Args:
        argv: The arguments (without the program name); ``None`` reads
            ``sys.argv[1:]``.

    Returns:
        The exit code: 0 success, 1 some inputs or the operation failed, 2 usage error.

    Examples:
        >>> main(["predict", "xray.jpeg", "--model", "bundles/cnn"])  # doctest: +SKIP
        0
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments:
        click.echo(cli.get_help(click.Context(cli, info_name=PROG)), err=True)
        error("choose a command")
        return EXIT_USAGE
    try:
        result: Any = cli.main(
            args=arguments, prog_name=PROG, standalone_mode=False, obj={"argv": arguments}
        )
    except click.UsageError as exc:
        _usage_error(exc)
        return EXIT_USAGE
    except click.Abort:
        error("interrupted")
        return 130
    except (CXRPneumoniaError, OSError, ValueError) as exc:
        error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    return int(result) if isinstance(result, int) else 0


def _usage_error(exc: click.UsageError) -> None:
    """``cxr-pneumonia COMMAND: error: --option: what is wrong`` and where to look."""
    command = exc.ctx.command.name if exc.ctx is not None and exc.ctx.parent else None
    message = exc.format_message()
    if (
        isinstance(exc, click.BadParameter)
        and not isinstance(exc, click.MissingParameter)
        and exc.param is not None
    ):
        names = [n for n in getattr(exc.param, "opts", []) if n.startswith("--")]
        hint = names[0] if names else (exc.param_hint or exc.param.name)
        message = f"{hint}: {exc.message}"
    error(message, command)
    where = f"{PROG} {command}" if command else PROG
    click.echo(f"Try '{where} --help' for help.", err=True)


def _start_tensorflow_quietly() -> None:
    """Import TensorFlow and find its devices with the process's stderr muted.

    TensorFlow's C++ start-up (oneDNN and CUDA probes) writes INFO and ERROR
    lines straight to file descriptor 2, ignoring ``TF_CPP_MIN_LOG_LEVEL`` in
    recent releases; on a machine without a GPU they are noise that buries the
    command's own output. ``--verbose`` shows them.
    """
    if "tensorflow" in sys.modules:
        return
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr: nothing to protect
        return
    try:
        sys.stderr.flush()
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import tensorflow as tf

                tf.config.list_physical_devices()
            finally:
                os.dup2(saved, 2)
    except ImportError:
        pass  # reported, unmuted, by the command that needs it
    finally:
        os.close(saved)


@contextlib.contextmanager
def _log_to_stderr(level: int) -> Iterator[None]:
    """Show the package's log records on stderr while a command runs (no global config)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    old_level, old_propagate = _logger.level, _logger.propagate
    _logger.addHandler(handler)
    _logger.setLevel(level)
    _logger.propagate = False
    try:
        yield
    finally:
        _logger.removeHandler(handler)
        _logger.setLevel(old_level)
        _logger.propagate = old_propagate
