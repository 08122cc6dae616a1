"""Rewrite Sphinx roles in docstrings as mkdocstrings cross-references.

The docs site renders docstrings as Markdown, where ``:func:`fit``` shows
literally (``tests/test_docs.py`` refuses it). This script resolves each role
against the identifiers of a built site (its ``objects.inv``), writes
``[`name`][cxr_pneumonia.module.name]``, or plain code when the target has no
API entry, and renames ``Example:`` sections to ``Examples:`` (rendered as
code). Only docstrings change. Re-wrap lines over 100 columns afterwards
(``ruff check --select E501`` lists them)::

    mkdocs build --site-dir /tmp/site
    python scripts/sphinx_roles_to_crossrefs.py /tmp/site src
"""

from __future__ import annotations

import ast
import re
import sys
import zlib
from pathlib import Path

ROLE = re.compile(r":(func|meth|class|attr|data|mod|exc|obj):`([^`\n]+)`")


def read_inventory(site: Path) -> dict[str, str]:
    """``{identifier: page#anchor}`` from a built site's ``objects.inv``."""
    raw = (site / "objects.inv").read_bytes().split(b"\n", 4)
    inventory: dict[str, str] = {}
    for line in zlib.decompress(raw[4]).decode().splitlines():
        parts = line.split(" ")
        inventory[parts[0]] = parts[3].replace("$", parts[0])
    return inventory


def resolve(target: str, module: str, classes: list[str], inventory: dict[str, str]) -> str | None:
    """The documented identifier a role's target means, seen from ``module.classes``."""
    candidates = []
    if target.startswith("cxr_pneumonia"):
        candidates.append(target)
    else:
        candidates += [".".join([module, *classes[:i], target]) for i in range(len(classes), 0, -1)]
        parts = module.split(".")
        candidates += [".".join([*parts[:i], target]) for i in range(len(parts), 0, -1)]
    found = next((c for c in candidates if c in inventory), None)
    if found is None:
        tail = target.rsplit(".", 1)[-1]
        matches = [n for n in inventory if n.endswith("." + tail)]
        if not matches or len({inventory[n] for n in matches}) != 1:
            return None
        found = min(matches, key=len)
    anchor = inventory[found].rsplit("#", 1)[-1]
    return anchor if anchor in inventory else found


def docstring_spans(tree: ast.Module) -> list[tuple[int, int, list[str]]]:
    """``(first line, last line, enclosing classes)`` of every string statement."""
    spans: list[tuple[int, int, list[str]]] = []

    def visit(node: ast.AST, classes: list[str]) -> None:
        for child in getattr(node, "body", []):
            value = getattr(child, "value", None)
            if (
                isinstance(child, ast.Expr)
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
            ):
                spans.append((child.lineno, child.end_lineno or child.lineno, classes))
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, [*classes, child.name])
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, classes)

    visit(tree, [])
    return spans


def convert(path: Path, src: Path, inventory: dict[str, str]) -> list[str]:
    """Rewrite one file; return the roles left as plain code."""
    text = path.read_text(encoding="utf-8")
    module = ".".join(p for p in path.relative_to(src).with_suffix("").parts if p != "__init__")
    lines = text.splitlines(keepends=True)
    unresolved: list[str] = []
    for start, end, classes in docstring_spans(ast.parse(text)):
        for index in range(start - 1, end):

            def replace(
                match: re.Match[str],
                where: str = f"{path}:{index + 1}",
                classes: list[str] = classes,
            ) -> str:
                role, content = match.group(1), match.group(2)
                explicit = re.fullmatch(r"(.+?)\s*<(.+)>", content)
                display, target = explicit.groups() if explicit else (None, content)
                short, target = target.startswith("~"), target.lstrip("~.")
                display = display or (target.rsplit(".", 1)[-1] if short else target)
                ident = resolve(target, module, classes, inventory)
                if ident is None:
                    unresolved.append(f"{where}: {match.group(0)}")
                    return f"`{target if role == 'mod' else display}`"
                return f"[`{display}`][{ident}]"

            line = ROLE.sub(replace, lines[index])
            if re.fullmatch(r"\s*Example:\s*\n?", line):
                line = line.replace("Example:", "Examples:")
            lines[index] = line
    new = "".join(lines)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return unresolved


def main() -> None:
    site, src = Path(sys.argv[1]), Path(sys.argv[2])
    inventory = read_inventory(site)
    unresolved = [u for path in sorted(src.rglob("*.py")) for u in convert(path, src, inventory)]
    print(f"{len(unresolved)} roles without a documented target (now plain code):")
    print("\n".join(unresolved))


if __name__ == "__main__":
    main()
