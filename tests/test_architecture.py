"""The package's shape: no import cycles, no reach-ins, public names that mean one thing.

The import graph is read from the source (the AST of every module under
``src/cxr_pneumonia``, imports inside functions and ``TYPE_CHECKING`` blocks
included), so a cycle is caught even where lazy imports would hide it at run
time.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import cxr_pneumonia

SRC = Path(cxr_pneumonia.__file__).resolve().parent
PACKAGE = "cxr_pneumonia"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imports(name: str) -> list[tuple[str, str | None, int]]:
    """``(module imported, name imported from it or None, line)`` for each import of ours."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    base = name if is_package(name) else name.rpartition(".")[0]
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.startswith(PACKAGE)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")[: len(base.split(".")) - node.level + 1]
                target = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                target = node.module or ""
            if target.startswith(PACKAGE):
                found += [(target, a.name, node.lineno) for a in node.names]
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the modules it imports (``from pkg import submodule`` -> the submodule)."""
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for target, imported, _ in imports(name):
            full = f"{target}.{imported}" if imported else target
            module = full if full in MODULES else target
            if module in MODULES and module != name:
                edges[name].add(module)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# --------------------------------------------------------------------------- the checker itself


def test_find_cycle_finds_a_cycle_and_only_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_lazy_imports() -> None:
    # predictor imports gradcam at module level, cli imports the library inside functions
    edges = graph()
    assert "cxr_pneumonia.gradcam" in edges["cxr_pneumonia.predictor"]
    assert "cxr_pneumonia.data.download" in edges["cxr_pneumonia.data.loading"]


# --------------------------------------------------------------------------- the rules


def test_no_import_cycle_between_modules() -> None:
    edges = graph()
    # A package's __init__ re-exports its modules; a module importing its own
    # package's __init__ would close a loop, and is reported like any other.
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


def test_no_module_imports_another_modules_private_name() -> None:
    offenders = [
        f"{name}:{line} imports {imported} from {target}"
        for name in MODULES
        for target, imported, line in imports(name)
        if imported is not None and is_private(imported) and target != name
    ]
    assert offenders == []


def test_private_modules_are_imported_only_inside_their_package() -> None:
    offenders = []
    for name in MODULES:
        for target, imported, line in imports(name):
            full = f"{target}.{imported}" if imported else target
            module = full if full in MODULES else target
            parent, _, leaf = module.rpartition(".")
            if is_private(leaf) and leaf != "_version" and not name.startswith(parent + "."):
                offenders.append(f"{name}:{line} imports {module}")
    assert offenders == []


def private_definitions(name: str) -> set[str]:
    """Private names a module defines: functions, classes, attributes and variables."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for root in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for target in ast.walk(root):
                    if isinstance(target, ast.Attribute):
                        found.add(target.attr)
                    elif isinstance(target, ast.Name):
                        found.add(target.id)
    return {n for n in found if is_private(n)}


def test_no_module_reaches_into_private_attributes_defined_elsewhere() -> None:
    """``obj._name`` where ``_name`` belongs to another of our modules (``self._x`` is fine)."""
    defined = {name: private_definitions(name) for name in MODULES}
    offenders = []
    for name, path in MODULES.items():
        elsewhere = set().union(*(v for k, v in defined.items() if k != name)) - defined[name]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in elsewhere
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                offenders.append(f"{name}:{node.lineno} uses .{node.attr}")
    assert offenders == []


def test_init_files_only_re_export() -> None:
    for name, path in MODULES.items():
        if not is_package(name) or name == PACKAGE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            allowed = (ast.Import, ast.ImportFrom, ast.Expr)  # docstring, imports
            is_all = isinstance(node, ast.Assign) and [
                getattr(t, "id", None) for t in node.targets
            ] == ["__all__"]
            assert isinstance(node, allowed) or is_all, (
                f"{name} defines more than re-exports (line {node.lineno})"
            )


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("cxr_pneumonia.gradcam", "cxr_pneumonia.predictor"),
        ("cxr_pneumonia.images", "cxr_pneumonia.data"),
        # images.py and the private module mapping a DICOM's pixels onto 8 bits
        ("cxr_pneumonia._images_dicom", "cxr_pneumonia.images"),
        ("cxr_pneumonia.models", "cxr_pneumonia.data"),
        ("cxr_pneumonia.models", "cxr_pneumonia.training"),
        ("cxr_pneumonia.data", "cxr_pneumonia.models"),
        # predictor.py and the private modules holding its inputs and results
        *(
            (predictor, high)
            for predictor in (
                "cxr_pneumonia.predictor",
                "cxr_pneumonia._predictor_inputs",
                "cxr_pneumonia._predictor_results",
            )
            for high in ("cxr_pneumonia.training", "cxr_pneumonia.data.pipeline")
        ),
        ("cxr_pneumonia._predictor_inputs", "cxr_pneumonia.predictor"),
        ("cxr_pneumonia._predictor_results", "cxr_pneumonia.predictor"),
        # plots.py and the private module checking its figures' inputs
        ("cxr_pneumonia._plots_inputs", "cxr_pneumonia.plots"),
        # fitting.py and the private module holding its run state
        ("cxr_pneumonia.training._fit_state", "cxr_pneumonia.training.fitting"),
        # the result fit returns is read without fit
        ("cxr_pneumonia.training.result", "cxr_pneumonia.training.fitting"),
        # callbacks.py and the private module holding its backup's files
        ("cxr_pneumonia.training._backup", "cxr_pneumonia.training.callbacks"),
        # bundle.py and the private modules holding its parts
        *(
            (bundle, high)
            for bundle in (
                "cxr_pneumonia.bundle",
                "cxr_pneumonia._bundle_keras",
                "cxr_pneumonia._bundle_metadata",
                "cxr_pneumonia._bundle_ood",
            )
            for high in (
                "cxr_pneumonia.training",
                "cxr_pneumonia.data.pipeline",
                "cxr_pneumonia.data.download",
            )
        ),
    ],
)
def test_dependency_rules(low: str, high: str) -> None:
    """Modules under ``low`` never import ``high`` (ARCHITECTURE.md's rules)."""
    for name in (low, high):  # a renamed module must not turn its rule into a no-op
        assert any(m == name or m.startswith(name + ".") for m in MODULES), f"no module {name}"
    edges = graph()
    offenders = [
        f"{name} -> {target}"
        for name, targets in edges.items()
        if name == low or name.startswith(low + ".")
        for target in targets
        if target == high or target.startswith(high + ".")
    ]
    assert offenders == []


def test_nothing_imports_the_cli() -> None:
    edges = graph()
    offenders = [
        f"{name} -> {target}"
        for name, targets in edges.items()
        if not name.startswith("cxr_pneumonia.cli")
        for target in targets
        if target == "cxr_pneumonia.cli" or target.startswith("cxr_pneumonia.cli.")
    ]
    assert offenders == []


def test_only_plots_imports_matplotlib() -> None:
    """matplotlib is the optional ``plot`` extra: the core works without it."""
    offenders = []
    for name, path in MODULES.items():
        if name == "cxr_pneumonia.plots":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{name}:{node.lineno}" for m in modules if m.startswith("matplotlib")]
    assert offenders == []


# --------------------------------------------------------------------------- public names


def packages() -> list[str]:
    return sorted(name for name in MODULES if is_package(name))


def test_no_public_name_is_also_a_submodule() -> None:
    """``pkg.name`` must not mean a module after one import and a function after another."""
    clashes = []
    for package in packages():
        exported = set(importlib.import_module(package).__all__)
        for child in MODULES:
            parent, _, leaf = child.rpartition(".")
            if parent == package and leaf in exported:
                value = getattr(importlib.import_module(package), leaf)
                if not isinstance(value, types.ModuleType):
                    clashes.append(f"{package}.{leaf} is a module and a {type(value).__name__}")
    assert clashes == []


CHECK_NAMES = """
import importlib, sys, types
order = sys.argv[1]
names = sorted(m for m in sys.argv[2:])
if order == "reversed":
    names.reverse()
for name in names:
    importlib.import_module(name)
import cxr_pneumonia
bad = []
for package in sorted({n for n in sys.argv[2:] if hasattr(sys.modules[n], "__path__")}):
    module = sys.modules[package]
    lazy = getattr(module, "_LAZY", {})
    for name in module.__all__:
        value = getattr(module, name)
        defining = lazy.get(name)
        if defining is not None:
            expected = getattr(importlib.import_module(defining), name)
            if value is not expected:
                bad.append(f"{package}.{name} is {value!r}, not {defining}.{name}")
        if isinstance(value, types.ModuleType) and name not in ("callbacks",):
            bad.append(f"{package}.{name} is a module")
print("\\n".join(bad))
"""


@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_every_public_name_resolves_to_what_it_documents(order: str) -> None:
    """After importing every module (in two orders), each ``__all__`` name is its object."""
    names = [
        m.name
        for m in pkgutil.walk_packages(cxr_pneumonia.__path__, prefix="cxr_pneumonia.")
        if not m.name.startswith("cxr_pneumonia.cli")
    ]
    names.append(PACKAGE)
    out = subprocess.run(
        [sys.executable, "-c", CHECK_NAMES, order, *names],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == ""


def test_explain_is_the_function_even_after_importing_every_module() -> None:
    code = (
        "import cxr_pneumonia.gradcam, cxr_pneumonia.predictor; "
        "from cxr_pneumonia import feature_maps, explain; import cxr_pneumonia; "
        "print(callable(cxr_pneumonia.explain), type(cxr_pneumonia.explain).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True function"
