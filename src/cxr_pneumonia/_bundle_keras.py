"""The bundle's ``model.keras``: refuse code before loading, load in safe mode, save lean.

[`check_model_config`][cxr_pneumonia.bundle.check_model_config] reads the
``config.json`` inside a ``.keras`` archive (no deserialization) and refuses
any object that carries code or brings code from outside Keras and this
package, whatever Keras' process-wide safe-mode switch says;
`load_keras_model` runs that check, registers the package's serialisable
layers and loads with ``safe_mode=True``; `without_optimizer` drops the
optimizer state Keras 3 would write into an inference bundle.

Part of the bundle format: [`cxr_pneumonia.bundle`][cxr_pneumonia.bundle] is
the public entry point and re-exports ``check_model_config``. Imports Keras
only when called.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_pneumonia.exceptions import BundleError

if TYPE_CHECKING:
    import keras

__all__ = ["check_model_config", "load_keras_model", "without_optimizer"]

_CUSTOM_LAYERS_MODULE = "cxr_pneumonia.models.layers"
_MAX_CONFIG_BYTES = 64 << 20
_CODE_CLASSES = frozenset({"Lambda", "__lambda__", "TFSMLayer"})
_ALLOWED_MODULE = re.compile(r"^(keras|builtins|cxr_pneumonia)(\..+)?$")


def _import_custom_layers() -> None:
    """Register the package's serialisable layers so safe mode can rebuild them."""
    try:
        importlib.import_module(_CUSTOM_LAYERS_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name not in (_CUSTOM_LAYERS_MODULE, "cxr_pneumonia.models"):
            raise


def check_model_config(file: str | os.PathLike[str]) -> None:
    """Refuse a ``.keras`` file whose model would run code from the file, before loading it.

    Reads ``config.json`` inside the ``.keras`` archive (no deserialization)
    and refuses any object that carries code or brings code from outside
    Keras and this package: ``Lambda`` layers and serialized functions
    (``__lambda__``), ``TFSMLayer`` (a SavedModel's graph), and any class or
    function whose ``module`` is not Keras (``keras``, ``keras.*``),
    ``builtins`` or this package (``cxr_pneumonia.*``). It
    holds whatever ``keras.config.enable_unsafe_deserialization()`` was
    called with: Keras' own safe mode is a process-wide switch that any
    imported code can turn off.

    Args:
        file: A ``.keras`` model file.

    Raises:
        BundleError: If the file is not a ``.keras`` archive with a readable
            ``config.json``, or the model carries code (the message names the
            object and where it is in the config).
    """
    path = Path(file)
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > _MAX_CONFIG_BYTES:
                msg = f"{path}: config.json is {info.file_size} bytes, over {_MAX_CONFIG_BYTES}"
                raise BundleError(msg)
            config = json.loads(archive.read(info).decode("utf-8"))
    except BundleError:
        raise
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, ValueError) as exc:
        msg = f"{path} is not a .keras model archive with a readable config.json ({exc})"
        raise BundleError(msg) from exc
    problem = _code_in(config, "config")
    if problem:
        msg = (
            f"refusing to load {path}: the model would run code from the file ({problem}). "
            "Bundles may hold only Keras layers and this package's layers; rebuild the model "
            "without Lambda or custom code layers"
        )
        raise BundleError(msg)


def _code_in(value: Any, where: str) -> str:
    """The first code-carrying object in a Keras config, described, or ``""``."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, place = stack.pop()
        if isinstance(item, list):
            stack.extend((v, f"{place}[{i}]") for i, v in enumerate(item))
            continue
        if not isinstance(item, dict):
            continue
        name = item.get("class_name")
        module = item.get("module")
        label = f"{name!r} at {place}"
        if isinstance(name, str) and name in _CODE_CLASSES:
            return f"a {name} object, {label}"
        if module is not None and not (
            isinstance(module, str) and _ALLOWED_MODULE.match(module) is not None
        ):
            return f"{label} comes from module {module!r}"
        stack.extend((v, f"{place}.{k}") for k, v in item.items())
    return ""


def load_keras_model(file: Path) -> keras.Model:
    """Load a ``.keras`` file for inference: config check, custom layers, Keras safe mode.

    Args:
        file: The ``.keras`` model file (its hash already checked by the caller).

    Returns:
        The model, not compiled.

    Raises:
        BundleError: If the model carries code
            ([`check_model_config`][cxr_pneumonia.bundle.check_model_config]), Keras can't
            load the file, or it holds something other than a Keras model.
    """
    check_model_config(file)
    _import_custom_layers()
    import keras

    try:
        model = keras.saving.load_model(file, compile=False, safe_mode=True)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "safe_mode" in str(exc) or "unsafe" in str(exc).lower():
            hint = " (the model runs code from the file, e.g. a Lambda layer; refused in safe mode)"
        msg = f"Keras can't load {file}{hint}: {type(exc).__name__}: {text}"
        raise BundleError(msg) from exc
    if not isinstance(model, keras.Model):
        msg = f"{file} holds a {type(model).__name__}, not a Keras model"
        raise BundleError(msg)
    return model


def without_optimizer(model: keras.Model) -> keras.Model:
    """``model``, or an uncompiled copy with its weights when it has an optimizer.

    Keras 3 writes the optimizer's state into a ``.keras`` file whenever the
    model is compiled (``include_optimizer`` is gone); for an inference bundle
    that state is dead weight (about three times the model's own with Adam
    and EMA). A trained model nested in a wrapper (e.g. test-time
    augmentation) carries its optimizer too.
    """
    if all(getattr(m, "optimizer", None) is None for m in _models_in(model)):
        return model
    import keras

    # Rebuild from the configuration with every compile_config removed: Keras
    # 3's clone_model and from_config compile the copy (or its nested models)
    # again, which brings an optimizer back.
    config = _strip_compile_config(keras.saving.serialize_keras_object(model))
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def _strip_compile_config(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_compile_config(v) for k, v in value.items() if k != "compile_config"}
    if isinstance(value, list):
        return [_strip_compile_config(v) for v in value]
    return value


def _models_in(model: keras.Model) -> Iterator[keras.Model]:
    """``model`` and every model nested in it, at any depth."""
    import keras

    yield model
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _models_in(layer)
