"""The import graph of gantrix's own modules (the core, the CLI, the kernels, the built-in
plugins) runs one way: no module reaches itself again through its imports, function-local
imports included (a back-edge hidden inside a function is still a circle).

Read from the source with `ast`, so the test sees every import whether or not it runs;
imports under ``if TYPE_CHECKING:`` are for type checkers only and are left out.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
#: source folder -> the package it installs as (pyproject's package-dir)
PACKAGES = {"gantrix": "gantrix", "plugins": "gantrix.plugins", "kernels": "gantrix.kernels",
            "cli": "gantrix.cli"}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported(module: str, path: Path) -> set[str]:
    """The gantrix modules ``module`` imports (a name imported from a package counts as its
    submodule when there is one, else as the package)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()

    def visit(node):
        if _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                     for alias in node.names]
        else:
            names = []
        found.update(n for n in names if n in MODULES and n != module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


GRAPH = {module: _imported(module, path) for module, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports in ``graph`` (as a path back to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_the_graph_is_read():
    assert GRAPH["gantrix.trainer"] >= {"gantrix.plan", "gantrix.step"}
    assert "gantrix.recipe" in GRAPH["gantrix.plan"]


def test_no_module_imports_itself_through_others():
    circle = _cycle(GRAPH)
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("low, high", [
    ("gantrix.registry", "gantrix.recipe"), ("gantrix.registry", "gantrix.compose"),
    ("gantrix.compose", "gantrix.recipe"), ("gantrix.recipe", "gantrix.plan"),
    ("gantrix.step", "gantrix.plan"), ("gantrix.settings", "gantrix.plan"),
    ("gantrix.plan", "gantrix.trainer"), ("gantrix.plan", "gantrix.check"),
    ("gantrix.prefetch", "gantrix.trainer"), ("gantrix.prefetch", "gantrix.recovery"),
])
def test_the_layers_run_one_way(low, high):
    """The layers of DESIGN.md §1 (with the checker below the recipe: `Recipe.check` and
    `Recipe.compose` call it): a lower module never imports a higher one, directly or not."""
    reach, todo = set(), [low]
    while todo:
        for nxt in GRAPH[todo.pop()] - reach:
            reach.add(nxt)
            todo.append(nxt)
    assert high not in reach


def test_the_kernels_import_nothing_else_of_gantrix():
    for module, imported in GRAPH.items():
        if module.startswith("gantrix.kernels"):
            assert all(m.startswith("gantrix.kernels") for m in imported), (module, imported)


def test_the_core_imports_no_plugin():
    for module, imported in GRAPH.items():
        if not module.startswith("gantrix.plugins"):
            assert not any(m.startswith("gantrix.plugins.") for m in imported), (module, imported)
