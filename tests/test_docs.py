"""The documentation covers the public API, and the public API is documented.

* Every name in ``cxr_pneumonia.__all__`` has a ``::: identifier`` block in the
  API reference sources (``docs/**/*.md``), either as ``cxr_pneumonia.<name>``
  or under the module that defines it (for a module, a block of one of its
  members counts).
* Every public function and class the package exports (and every public
  function or class of an exported module, and every public method of an
  exported class) has a Google-style docstring with the sections that apply:

  - functions and methods with parameters: ``Args:`` naming every parameter;
  - a return annotation other than ``None``: ``Returns:`` (or ``Yields:``);
  - a ``raise`` statement in the body: ``Raises:``;
  - dataclasses: ``Attributes:``; other classes whose ``__init__`` takes
    parameters: ``Args:`` (in the class or the ``__init__`` docstring), with
    ``Raises:`` when ``__init__`` / ``__post_init__`` raise; exception classes
    and properties: a docstring.

  Methods that override a base-class hook (Keras ``on_epoch_end`` and the like)
  are documented by the base class and are not checked.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cxr_pneumonia

DOCS = Path(__file__).resolve().parents[1] / "docs"
SECTION = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")
SECTIONS = {
    "Args",
    "Arguments",
    "Parameters",
    "Returns",
    "Yields",
    "Raises",
    "Attributes",
    "Example",
    "Examples",
    "Warns",
    "Note",
    "Notes",
    "See Also",
}
PUBLIC_NAMES = sorted(cxr_pneumonia.__all__)


# --------------------------------------------------------------------------- the reference


def reference_identifiers() -> set[str]:
    """The identifiers of every ``::: identifier`` block under ``docs/``."""
    found: set[str] = set()
    for page in DOCS.rglob("*.md"):
        for line in page.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^:::\s+([\w.]+)\s*$", line)
            if match:
                found.add(match[1])
    return found


def test_reference_has_blocks() -> None:
    assert len(reference_identifiers()) > 30


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_name_in_api_reference(name: str) -> None:
    identifiers = reference_identifiers()
    if name == "__version__":
        text = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "api").glob("*.md"))
        assert "cxr_pneumonia.__version__" in text
        return
    obj = getattr(cxr_pneumonia, name)
    if isinstance(obj, types.ModuleType):
        prefixes = (f"cxr_pneumonia.{name}", obj.__name__)
        documented = any(i == p or i.startswith(f"{p}.") for i in identifiers for p in prefixes)
    else:
        paths = {f"cxr_pneumonia.{name}", f"{obj.__module__}.{obj.__qualname__}"}
        documented = bool(paths & identifiers)
    assert documented, (
        f"cxr_pneumonia.{name} has no '::: ' block in docs/; add '::: "
        f"{getattr(obj, '__module__', 'cxr_pneumonia')}.{name}' to the API page of its module"
    )


def test_reference_identifiers_resolve() -> None:
    """Every ``:::`` block names something that exists (mkdocs would fail later)."""
    missing = []
    for identifier in sorted(reference_identifiers()):
        parts = identifier.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj: Any = __import__(".".join(parts[:cut]), fromlist=["_"])
            except ImportError:
                continue
            try:
                for attribute in parts[cut:]:
                    obj = getattr(obj, attribute)
            except AttributeError:
                missing.append(identifier)
            break
        else:
            missing.append(identifier)
    assert not missing


# --------------------------------------------------------------------------- docstrings


def sections(doc: str | None) -> dict[str, str]:
    """Google-style sections of a docstring: ``{name: body}``."""
    result: dict[str, str] = {}
    current: str | None = None
    for line in (doc or "").splitlines():
        match = SECTION.match(line)
        if match and match[1] in SECTIONS:
            current = match[1]
            result[current] = ""
        elif current is not None:
            result[current] += line + "\n"
    return result


def documents(args: str, name: str) -> bool:
    """Whether an Args section has an entry ``name:`` (or ``*name:`` / ``**name:``)."""
    return re.search(rf"^\s*\**{re.escape(name)}\b[^:\n]*:", args, re.MULTILINE) is not None


def raises_in(func: Callable[..., Any]) -> bool:
    """Whether ``func``'s own source has a ``raise <something>`` statement."""
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return False
    tree = ast.parse(source)
    return any(isinstance(node, ast.Raise) and node.exc is not None for node in ast.walk(tree))


def parameters(func: Callable[..., Any]) -> list[inspect.Parameter]:
    signature = inspect.signature(func)
    return [p for p in signature.parameters.values() if p.name not in ("self", "cls")]


def returns_something(func: Callable[..., Any]) -> bool:
    annotation = inspect.signature(func).return_annotation
    return annotation not in (inspect.Signature.empty, None, "None")


def problems_of_function(func: Callable[..., Any]) -> list[str]:
    doc = inspect.getdoc(func)
    if not doc:
        return ["no docstring"]
    found = sections(doc)
    args = found.get("Args", found.get("Arguments", found.get("Parameters")))
    issues = []
    params = parameters(func)
    if params and args is None:
        issues.append("no Args section")
    elif params:
        undocumented = [p.name for p in params if not documents(args or "", p.name)]
        if undocumented:
            issues.append(f"Args lacks {', '.join(undocumented)}")
    if returns_something(func) and not ({"Returns", "Yields"} & set(found)):
        issues.append("no Returns section")
    if raises_in(func) and "Raises" not in found:
        issues.append("raises but has no Raises section")
    return issues


def overrides_base(cls: type, name: str) -> bool:
    return any(name in vars(base) for base in cls.__mro__[1:] if base is not object)


def problems_of_class(cls: type) -> dict[str, list[str]]:
    doc = inspect.getdoc(cls)
    result: dict[str, list[str]] = {}
    if not doc or cls.__doc__ is None:
        return {cls.__qualname__: ["no docstring"]}
    if issubclass(cls, BaseException):
        return {}
    found = sections(doc)
    init = vars(cls).get("__init__")
    init_found = sections(inspect.getdoc(init)) if init is not None else {}
    issues = []
    if dataclasses.is_dataclass(cls):
        if "Attributes" not in found:
            issues.append("dataclass without an Attributes section")
    elif init is not None and parameters(init):
        args = found.get("Args", "") + init_found.get("Args", "")
        if not args:
            issues.append("__init__ takes parameters but there is no Args section")
        else:
            undocumented = [p.name for p in parameters(init) if not documents(args, p.name)]
            if undocumented:
                issues.append(f"Args lacks {', '.join(undocumented)}")
    raising = [vars(cls)[m] for m in ("__init__", "__post_init__") if m in vars(cls)]
    if any(raises_in(m) for m in raising) and "Raises" not in set(found) | set(init_found):
        issues.append("__init__/__post_init__ raises but there is no Raises section")
    if issues:
        result[cls.__qualname__] = issues
    for name, member in vars(cls).items():
        if name.startswith("_") or overrides_base(cls, name):
            continue
        if isinstance(member, property):
            if not (member.fget and member.fget.__doc__):
                result[f"{cls.__qualname__}.{name}"] = ["property without a docstring"]
            continue
        if isinstance(member, (classmethod, staticmethod)):
            member = member.__func__
        if inspect.isfunction(member):
            issues = problems_of_function(member)
            if issues:
                result[f"{cls.__qualname__}.{name}"] = issues
    return result


def exported_objects() -> Iterator[tuple[str, Any]]:
    """Public functions and classes: exported ones, and those of exported modules."""
    for name in PUBLIC_NAMES:
        if name == "__version__":
            continue
        obj = getattr(cxr_pneumonia, name)
        if isinstance(obj, types.ModuleType):
            for member in getattr(obj, "__all__", ()):
                value = getattr(obj, member)
                if inspect.isfunction(value) or inspect.isclass(value):
                    yield f"{name}.{member}", value
        elif inspect.isfunction(obj) or inspect.isclass(obj):
            yield name, obj


def test_public_docstrings_have_their_sections() -> None:
    report: dict[str, list[str]] = {}
    for _name, obj in exported_objects():
        if inspect.isclass(obj):
            for where, issues in problems_of_class(obj).items():
                report[f"{obj.__module__}.{where}"] = issues
        else:
            issues = problems_of_function(obj)
            if issues:
                report[f"{obj.__module__}.{obj.__qualname__}"] = issues
    lines = [f"{where}: {'; '.join(issues)}" for where, issues in sorted(report.items())]
    assert not lines, "docstrings to complete:\n" + "\n".join(lines)


def test_the_checker_catches_gaps() -> None:
    """The checker itself: a function that raises without saying so is caught."""

    def undocumented(x: int) -> int:
        """Double ``x``."""
        if x < 0:
            msg = "negative"
            raise ValueError(msg)
        return 2 * x

    def documented(x: int) -> int:
        """Double ``x``.

        Args:
            x: A number.

        Returns:
            Twice ``x``.

        Raises:
            ValueError: If ``x`` is negative.
        """
        if x < 0:
            msg = "negative"
            raise ValueError(msg)
        return 2 * x

    assert problems_of_function(undocumented) == [
        "no Args section",
        "no Returns section",
        "raises but has no Raises section",
    ]
    assert problems_of_function(documented) == []


SPHINX_ROLE = re.compile(r":(func|meth|class|attr|data|mod|exc|obj):`")


def _docstrings() -> Iterator[tuple[str, int, str]]:
    root = DOCS.parent
    for path in sorted((root / "src" / "cxr_pneumonia").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                yield str(path.relative_to(root)), node.lineno, node.value.value


def test_docstrings_use_mkdocstrings_cross_references_and_examples_sections() -> None:
    """The site renders Markdown: Sphinx roles show literally, ``Example:`` as a blockquote."""
    found = [
        f"{path}:{line}: {problem}"
        for path, line, text in _docstrings()
        for problem in (
            *(
                f"Sphinx role {m.group(0)}...` (write [`name`][cxr_pneumonia.module.name])"
                for m in SPHINX_ROLE.finditer(text)
            ),
            *(
                ["'Example:' section (write 'Examples:', which renders >>> lines as code)"]
                if re.search(r"^\s*Example:\s*$", text, re.MULTILINE)
                else []
            ),
        )
    ]
    hint = (
        "fix with: mkdocs build -d /tmp/site && "
        "python scripts/sphinx_roles_to_crossrefs.py /tmp/site src"
    )
    assert not found, "\n".join([*found, hint])


def _synopsis_flags(section: str) -> set[str]:
    """The ``--flags`` of the first code block under ``## <section>`` of the CLI guide."""
    text = (Path(__file__).parents[1] / "docs" / "guides" / "cli.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1]
    block = body.split("```bash\n", 1)[1].split("```", 1)[0]
    return set(re.findall(r"--[a-z][a-z-]*", block))


@pytest.mark.parametrize(
    "command",
    [
        "predict",
        "explain",
        "ood-fit",
        "train",
        "evaluate",
        "shift-report",
        "ensemble",
        "export",
        "serve",
        "download",
        "summary",
    ],
)
def test_the_cli_guide_synopsis_lists_every_option(command: str) -> None:
    """Each option by at least one of its spellings (``--ema|--no-ema``), and no other flag."""
    from cxr_pneumonia.cli import cli

    listed = _synopsis_flags(command)
    spellings = [
        {flag for flag in (*param.opts, *param.secondary_opts) if flag.startswith("--")}
        for param in cli.commands[command].params
        if param.param_type_name == "option" and param.name != "help"
    ]
    assert [sorted(names) for names in spellings if not names & listed] == []
    assert listed - set().union(*spellings) == set()
