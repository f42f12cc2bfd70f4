"""The layer rules of docs/architecture.md, checked on the source: every ``import`` of every module (top level,
inside functions and under ``TYPE_CHECKING`` alike) read with ``ast``.

* domain packages import no store, service or interface package;
* ``store/`` imports no service or interface package;
* the modules of ``store/`` (and of each domain package) import one another without a circle at run time
  (imports under ``TYPE_CHECKING`` do not run, so they cannot make one).

A new upward arrow fails here. Arrows that exist today and are not yet removed are listed in ``EXCEPTIONS``
with the reason; an entry that is no longer needed fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "medtwin"

DOMAIN = {"record", "physiology", "solve", "pharmaco", "synthetic", "vocab", "model", "imaging"}
SERVICES_AND_INTERFACES = {"twin", "stream", "alerts", "worker", "api", "web", "cli"}
FORBIDDEN = {
    **dict.fromkeys(DOMAIN, SERVICES_AND_INTERFACES | {"store", "security", "config"}),
    "store": SERVICES_AND_INTERFACES,
}
#: (importing module, imported package) -> why it is still there.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = SRC.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _nodes(node: ast.AST, runtime_only: bool) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if runtime_only and _type_checking(child):
            assert isinstance(child, ast.If)
            for other in child.orelse:
                yield other
                yield from _nodes(other, runtime_only)
            continue
        yield child
        yield from _nodes(child, runtime_only)


def imports_of(path: Path, runtime_only: bool = False) -> Iterator[str]:
    """The medtwin modules ``path`` imports (``from a.b import c`` is ``a.b.c`` when that is a module);
    ``runtime_only``: without those under ``if TYPE_CHECKING:``."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8")), runtime_only):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names]
        else:
            continue
        yield from (t for t in targets if t == "medtwin" or t.startswith("medtwin."))


@cache
def graph(runtime_only: bool = False) -> dict[str, frozenset[str]]:
    return {module_name(p): frozenset(imports_of(p, runtime_only)) for p in PACKAGE.rglob("*.py")}


def top_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_walker_sees_imports_in_functions_and_under_type_checking() -> None:
    edges = graph()
    assert "medtwin.store.metadata" in edges["medtwin.store.schema"]  # top level, from-import of a name
    assert "medtwin.store.live_tables" in edges["medtwin.store.schema"]  # from-import of a module
    assert "medtwin.security.crypto" in edges["medtwin.cli.common"]  # inside a function
    snippet = ast.parse("if TYPE_CHECKING:\n    import a\nelse:\n    import b\ndef f():\n    import c\n")

    def names(runtime_only: bool) -> set[str]:
        return {n.names[0].name for n in _nodes(snippet, runtime_only) if isinstance(n, ast.Import)}

    assert names(False) == {"a", "b", "c"}
    assert names(True) == {"b", "c"}  # what runs


def test_no_upward_arrow() -> None:
    found: set[tuple[str, str]] = set()
    wrong = []
    for module, targets in sorted(graph().items()):
        forbidden = FORBIDDEN.get(top_package(module), set())
        for target in sorted(targets):
            package = top_package(target)
            if package in forbidden:
                if (module, package) in EXCEPTIONS:
                    found.add((module, package))
                else:
                    wrong.append(f"{module} -> {target}")
    assert wrong == [], "upward arrows (see docs/architecture.md, layers):\n" + "\n".join(wrong)
    assert set(EXCEPTIONS) == found, f"exceptions no longer needed, remove them: {set(EXCEPTIONS) - found}"


def _cycle(edges: dict[str, set[str]] | dict[str, frozenset[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("package", ["store", *sorted(DOMAIN)])
def test_no_import_circle_within(package: str) -> None:
    prefix = f"medtwin.{package}."
    edges = {m: {t for t in ts if t.startswith(prefix)} for m, ts in graph(runtime_only=True).items()
             if m.startswith(prefix)}
    assert _cycle(edges) is None, f"import circle in {package}/: {' -> '.join(_cycle(edges) or [])}"
