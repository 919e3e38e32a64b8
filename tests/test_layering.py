"""The product package's architecture, checked from its source: no import cycles between okbx
modules, imports only go down the floors, the wings stay apart, and every module and function of
the product package keeps to the size limits.

Import edges are read with `ast`, including imports inside functions (a lazy import still ties two
modules together) but not those under `if TYPE_CHECKING:` (annotations only, never run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("okbx_sync", "okbx_emulator")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
SIZED = ("okbx_sync",)  # the whole product package

# The floors of the house, bottom to top; a module imports only from its own floor or below.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("basics", ("errors", "clock", "timeutil", "secrets", "markup", "model", "keys", "filenames", "bounded")),
    ("configuration", ("config", "envfile", "logsetup")),
    ("clients", ("clients",)),
    ("state", ("state",)),
    ("core", ("core",)),
    ("wings", ("sync", "billing")),
    ("operations", ("cycle", "doctor", "setup_wizard", "demo")),
    ("command line", ("cli", "__main__")),
]
WINGS = ("sync", "billing")


def floor_of(module: str) -> int:
    first = module.split(".")[1] if module.count(".") else ""
    if module == "okbx_sync":
        return 0
    for number, (_, names) in enumerate(FLOORS):
        if first in names:
            return number
    raise AssertionError(f"{module} is on no floor: add it to FLOORS")


def modules(package: str) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden |= {id(inner) for inner in ast.walk(node)}
    return hidden


def import_edges(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (`from . import x` names module x)."""
    known = modules(package)
    edges: dict[str, set[str]] = {}
    for name, (path, is_package) in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        hidden = _type_checking_nodes(tree)
        here = name.split(".") if is_package else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                target = ".".join([*base, *([node.module] if node.module else [])])
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    targets.add(sub if sub in known else target)
        edges[name] = {t for t in targets if t in known and t != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_and_nothing_else():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_imports_itself_round_a_cycle(package):
    assert cycles(import_edges(package)) == []


def test_the_edges_see_relative_lazy_and_submodule_imports():
    edges = import_edges("okbx_sync")
    assert "okbx_sync.cli.base" in edges["okbx_sync.cli"]  # from .base import app
    assert "okbx_sync.clients.bundle" in edges["okbx_sync.cli.base"]  # imported inside a method
    assert "okbx_sync.cli.sync_cmd" in edges["okbx_sync.cli"]  # from . import sync_cmd


def test_the_wings_stay_apart():
    edges = import_edges("okbx_sync")
    billing = {m for m in edges if m.startswith("okbx_sync.billing")}
    assert not any(t.startswith("okbx_sync.doctor") for m in billing for t in edges[m]), "billing imports doctor"
    assert not any(t.startswith("okbx_sync.doctor") for t in edges["okbx_sync.setup_wizard"])
    assert not any(t.startswith("okbx_sync.clients") for t in edges["okbx_sync.state.binding"])

    def in_cli(name: str) -> bool:
        return name == "okbx_sync.cli" or name.startswith("okbx_sync.cli.")

    outside_cli = [m for m in edges if not in_cli(m) and m != "okbx_sync.__main__"]
    assert [m for m in outside_cli if any(in_cli(t) for t in edges[m])] == []  # only the CLI prints


def _sized_files() -> list[Path]:
    return sorted(path for folder in SIZED for path in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _sized_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_every_module_is_on_a_floor_and_imports_only_downward():
    edges = import_edges("okbx_sync")
    upward = [
        f"{module} ({FLOORS[floor_of(module)][0]}) imports {target} ({FLOORS[floor_of(target)][0]})"
        for module, targets in edges.items()
        for target in targets
        if floor_of(target) > floor_of(module)
    ]
    assert upward == []


def test_no_wing_imports_another():
    edges = import_edges("okbx_sync")

    def wing(name: str) -> str | None:
        first = name.split(".")[1] if name.count(".") else ""
        return first if first in WINGS else None

    crossing = [f"{m} imports {t}" for m, ts in edges.items() for t in ts if wing(m) and wing(t) and wing(t) != wing(m)]
    assert crossing == []
