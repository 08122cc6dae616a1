"""``models`` and ``info``: the model registry, and this installation."""

from __future__ import annotations

import importlib
import importlib.resources
import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from cxr_pneumonia._version import __version__
from cxr_pneumonia.cli.output import EXIT_OK, PROG, format_option, write_json, write_table

__all__ = ["info", "models"]


@click.command(
    epilog="""\b
Examples:
  cxr-pneumonia models
  cxr-pneumonia models --format json""",
)
@format_option()
def models(output_format: str) -> int:
    """List the model registry: names for `train --model`."""
    from cxr_pneumonia.models import get_model_spec, list_models

    specs = [get_model_spec(name) for name in list_models()]
    if output_format == "json":
        write_json(
            [
                {
                    "name": spec.name,
                    "kind": spec.kind,
                    "input_shape": list(spec.default_input_shape),
                    "description": spec.description,
                }
                for spec in specs
            ]
        )
        return EXIT_OK
    rows = [
        [spec.name, spec.kind, "x".join(map(str, spec.default_input_shape)), spec.description]
        for spec in specs
    ]
    write_table(["name", "kind", "input", "description"], rows)
    return EXIT_OK


@click.command(
    epilog="""\b
Examples:
  cxr-pneumonia info
  cxr-pneumonia info --format json""",
)
@format_option()
def info(output_format: str) -> int:
    """Versions, devices, the cache folder and the shipped model."""
    from cxr_pneumonia.data.download import default_cache_dir
    from cxr_pneumonia.devices import device_info

    record: dict[str, Any] = {PROG: __version__, "python": sys.version.split()[0]}
    record.update(_versions("tensorflow", "keras", "numpy", "PIL", "pooch", "pydicom"))
    record["cache_dir"] = str(default_cache_dir())
    model = importlib.resources.files("cxr_pneumonia") / "assets" / "default_model"
    record["default_model"] = str(model) if model.is_dir() else None
    record["devices"] = device_info()
    if output_format == "json":
        write_json(record)
        return EXIT_OK
    rows = []
    for key, value in record.items():
        if isinstance(value, dict):
            rows += [[f"{key}.{k}", _text(v)] for k, v in value.items()]
        else:
            rows.append([key, _text(value)])
    write_table(["item", "value"], rows)
    return EXIT_OK


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _versions(*modules: str) -> Iterator[tuple[str, str | None]]:
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            yield name, None
        else:
            yield name, str(getattr(module, "__version__", "unknown"))
