"""Options declared once: a click option made from a library function's own parameter.

``library_option`` reads a parameter's default from the function's
signature, its help from the ``Args:`` entry of its Google docstring, and its
range from the interval that entry states (``in ``[0, 1)```` -> a number in
``[0, 1)``), so an option can't drift from the function it feeds. The function
is named as ``"module:Qualified.name"`` and read from its source file (the
syntax tree, not an import), so declaring ``train``'s options does not start
TensorFlow for ``datasets`` or ``--help``. Options
that belong to the command line alone are declared here too (``option``),
with the same number types and ``show_default=True``.

The number types (``Number``) refuse bad values with messages in the
library's style: ``--threshold: must be between 0 and 1, got 2``.
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = [
    "FRACTION",
    "NON_NEGATIVE_FLOAT",
    "NON_NEGATIVE_INT",
    "POSITIVE_FLOAT",
    "POSITIVE_INT",
    "PROBABILITY",
    "Number",
    "docstring_args",
    "library_option",
    "option",
    "parameters_of",
]

F = TypeVar("F", bound=Callable[..., Any])


class Number(click.ParamType):
    """An ``int`` or ``float`` in an interval, refused with a message that says why.

    Args:
        kind: ``int`` or ``float``.
        low: Lower bound, or ``None`` for none.
        high: Upper bound, or ``None`` for none.
        low_open: Whether ``low`` itself is refused.
        high_open: Whether ``high`` itself is refused.
    """

    def __init__(
        self,
        kind: type,
        low: float | None = None,
        high: float | None = None,
        *,
        low_open: bool = False,
        high_open: bool = False,
    ) -> None:
        self.kind = kind
        self.low, self.high = low, high
        self.low_open, self.high_open = low_open, high_open
        self.name = "integer" if kind is int else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse ``value`` and check its range.

        Args:
            value: The text given (or an already converted default).
            param: The option.
            ctx: The click context.

        Returns:
            The number.
        """
        number: Any
        if isinstance(value, self.kind) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = self.kind(value)
            except (TypeError, ValueError):
                what = "an integer" if self.kind is int else "a number"
                self.fail(f"must be {what}, got {value!r}", param, ctx)
        if not self._inside(float(number)):
            self.fail(f"{self.requirement()}, got {value}", param, ctx)
        return number

    def _inside(self, value: float) -> bool:
        if math.isnan(value) or (self.kind is float and math.isinf(value)):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (
            self.high is not None and (value > self.high or (self.high_open and value == self.high))
        )

    def requirement(self) -> str:
        """What a value must be, in words (``"must be between 0 and 1"``).

        Returns:
            The phrase.
        """
        low, high = self.low, self.high
        if self.kind is int:
            if low is not None and high is None:
                bound = int(low) + (1 if self.low_open else 0)
                return "must be a positive integer" if bound == 1 else f"must be {bound} or more"
        elif high is None and low == 0:
            return (
                "must be a positive number" if self.low_open else "must be 0 or a positive number"
            )
        if low is not None and high is not None:
            if not self.low_open and not self.high_open:
                return f"must be between {low:g} and {high:g}"
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"must be in {left}{low:g}, {high:g}{right}"
        return f"must be a{'n integer' if self.kind is int else ' number'}"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        """The placeholder shown in the help (``INTEGER`` or ``NUMBER``).

        Args:
            param: The option.
            ctx: The click context.

        Returns:
            The placeholder.
        """
        return "INTEGER" if self.kind is int else "NUMBER"


POSITIVE_INT = Number(int, 1)
NON_NEGATIVE_INT = Number(int, 0)
POSITIVE_FLOAT = Number(float, 0, low_open=True)
NON_NEGATIVE_FLOAT = Number(float, 0)
PROBABILITY = Number(float, 0, 1)
FRACTION = Number(float, 0, 1, high_open=True)

_INTERVAL = re.compile(r"in\s+``\s*([\[(])\s*(-?[\d.]+|-?inf)\s*,\s*(-?[\d.]+|inf)\s*([\])])\s*``")
_ROLE = re.compile(r":[a-z]+:`~?([^`]*?)`")
_CROSS_REFERENCE = re.compile(r"\[`([^`]*)`\]\[[\w.]+\]")


def docstring_args(doc: str) -> dict[str, str]:
    """The ``Args:`` entries of a Google-style docstring, each joined into one line.

    Args:
        doc: The docstring (dedented, as `inspect.getdoc` returns it).

    Returns:
        ``{parameter: description}``.
    """
    entries: dict[str, list[str]] = {}
    current: str | None = None
    indent: int | None = None
    inside = False
    for line in doc.splitlines():
        stripped = line.strip()
        if not inside:
            inside = stripped == "Args:"
            continue
        if stripped and not line.startswith(" "):
            break  # the next section
        if not stripped:
            continue
        width = len(line) - len(line.lstrip())
        match = re.match(r"(\*{0,2}\w+)(?: \([^)]*\))?:\s*(.*)", stripped)
        if match and (indent is None or width <= indent):
            indent = width
            current = match[1].lstrip("*")
            entries[current] = [match[2]]
        elif current is not None:
            entries[current].append(stripped)
    return {name: " ".join(parts) for name, parts in entries.items()}


def _plain(text: str) -> str:
    """Docstring markup to terminal text: roles to their target's last name, no backquotes."""
    text = _ROLE.sub(lambda m: m[1].rsplit(".", 1)[-1], text)
    text = _CROSS_REFERENCE.sub(lambda m: m[1], text)
    return text.replace("``", "")


def _first_sentence(text: str) -> str:
    match = re.search(r"(?<=[a-z0-9)`'\"])\.(\s|$)", text)
    sentence = text[: match.start()] if match else text.rstrip(".")
    first = sentence.split(" ", 1)[0]
    if sentence and sentence[0].isupper() and not (len(first) > 1 and first.isupper()):
        sentence = sentence[0].lower() + sentence[1:]  # as click's own help reads; keep "ROC"
    return sentence


_BOUND = re.compile(r"``\s*(>=?)\s*(-?[\d.]+)\s*``")


def _interval_type(description: str, kind: type) -> Number | None:
    found = _INTERVAL.search(description)
    if found is None:
        bound = _BOUND.search(description)
        if bound is None:
            return None
        return Number(kind, float(bound[2]), low_open=bound[1] == ">")
    left, low, high, right = found.groups()
    return Number(
        kind,
        None if "inf" in low else float(low),
        None if "inf" in high else float(high),
        low_open=left == "(",
        high_open=right == ")",
    )


_EMPTY = inspect.Parameter.empty


@functools.cache
def _module_tree(module: str) -> tuple[ast.Module, dict[str, Any]]:
    """The syntax tree of a module's source, and its module-level literal constants."""
    # Found by path, not importlib.util.find_spec: that would import the parent
    # packages (cxr_pneumonia.training imports Keras).
    root = Path(__file__).resolve().parents[1]
    package, _, rest = module.partition(".")
    base = root.joinpath(*rest.split(".")) if rest else root
    candidates = [base.with_suffix(".py"), base / "__init__.py"]
    source = next((c for c in candidates if package == root.name and c.is_file()), None)
    if source is None:
        msg = f"no source file for module {module!r} in {root}"
        raise TypeError(msg)
    tree = ast.parse(source.read_text(encoding="utf-8"))
    constants: dict[str, Any] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and value is not None:
            try:
                constants[target.id] = ast.literal_eval(value)
            except ValueError:
                continue
    return tree, constants


def parameters_of(target: str | Callable[..., Any]) -> tuple[dict[str, Any], str]:
    """Defaults (``inspect.Parameter.empty`` when none) and docstring of a function.

    Args:
        target: A function, or ``"module:Qualified.name"`` read from its source
            without importing it.

    Returns:
        ``({parameter: default}, docstring)``.

    Raises:
        TypeError: If ``target`` names no function, or a default is not a
            literal (or a module-level literal constant).
    """
    if callable(target):
        signature = inspect.signature(target)
        found = {name: p.default for name, p in signature.parameters.items()}
        return found, inspect.getdoc(target) or ""
    module, _, qualname = target.partition(":")
    tree, constants = _module_tree(module)
    scope: list[ast.stmt] = tree.body
    node: ast.AST | None = None
    owner: ast.AST | None = None
    for part in qualname.split("."):
        owner = node
        # The last definition wins, as at run time (after any @overload stubs).
        node = next(
            (
                n
                for n in reversed(scope)
                if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == part
            ),
            None,
        )
        if node is None:
            msg = f"{target}: no {part!r} in {module}"
            raise TypeError(msg)
        scope = node.body
    if not isinstance(node, ast.FunctionDef):
        msg = f"{target} is not a function"
        raise TypeError(msg)
    arguments = node.args
    positional = [*arguments.posonlyargs, *arguments.args]
    values: list[Any] = [_EMPTY] * (len(positional) - len(arguments.defaults))
    values += list(arguments.defaults)
    pairs = list(zip(positional, values, strict=True))
    pairs += list(zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True))
    defaults: dict[str, Any] = {}
    for arg, default in pairs:
        if default is None or default is _EMPTY:
            defaults[arg.arg] = _EMPTY
        elif isinstance(default, ast.Name) and default.id in constants:
            defaults[arg.arg] = constants[default.id]
        else:
            try:
                defaults[arg.arg] = ast.literal_eval(default)
            except ValueError:
                defaults[arg.arg] = _EMPTY  # not a literal: the CLI must say its default
    doc = inspect.cleandoc(ast.get_docstring(node) or "")
    if node.name == "__init__" and not doc and isinstance(owner, ast.ClassDef):
        doc = inspect.cleandoc(ast.get_docstring(owner) or "")  # Args: in the class docstring
    return defaults, doc


def library_option(
    function: str | Callable[..., Any],
    parameter: str,
    *flags: str,
    **overrides: Any,
) -> Callable[[F], F]:
    """A click option whose default, help and range come from ``function``'s parameter.

    Args:
        function: The library function the option feeds, or its
            ``"module:Qualified.name"``.
        parameter: Its parameter name.
        *flags: Option flags; default ``--parameter-name``.
        **overrides: Anything `click.option` takes, where the command line
            must differ (e.g. ``default=`` for a CLI default, ``type=`` for a
            range the docstring does not state, ``help=`` for other words).

    Returns:
        The option decorator.

    Raises:
        TypeError: If ``function`` has no parameter ``parameter`` (a rename in
            the library breaks the command line at import, not at run time).
    """
    defaults, doc = parameters_of(function)
    if parameter not in defaults:
        msg = f"{function} has no parameter {parameter!r}; update the CLI option"
        raise TypeError(msg)
    default = defaults[parameter]
    description = docstring_args(doc).get(parameter, "")
    settings: dict[str, Any] = {}
    if default is not _EMPTY:
        settings["default"] = default
    settings.update(overrides)
    value = settings.get("default")
    if "type" not in settings and not settings.get("is_flag"):
        kind = (
            type(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        )
        if kind is not None:
            settings["type"] = _interval_type(description, kind) or (
                NON_NEGATIVE_INT if kind is int else NON_NEGATIVE_FLOAT
            )
    if "help" not in settings:
        settings["help"] = _plain(_first_sentence(description))
    declared = list(flags or (f"--{parameter.replace('_', '-')}",))
    if all(flag.startswith("-") for flag in declared):
        declared.append(parameter)  # the command's argument is the library's parameter name
    return option(*declared, **settings)


def option(*flags: str, **settings: Any) -> Callable[[F], F]:
    """`click.option` with the conventions of this command line: the default shown.

    Args:
        *flags: Option flags, and optionally the parameter name.
        **settings: What `click.option` takes.

    Returns:
        The option decorator.
    """
    settings.setdefault("show_default", True)
    decorator: Callable[[F], F] = click.option(*flags, **settings)
    return decorator
