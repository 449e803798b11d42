"""The declared plugin API: built-in plugins import `gantrix.plugin` and nothing else of
gantrix (never each other), and everything `gantrix.plugin` declares exists."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import gantrix.plugin as api

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
MODULES = sorted(p for p in PLUGINS.glob("*.py") if p.name != "__init__.py")


def gantrix_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a gantrix module in ``path`` — at any depth
    (function-local imports too), relative imports resolved against ``gantrix.plugins``,
    and ``from gantrix import x`` counted as the module ``gantrix.x``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from .noise import y
                base = ".".join(["gantrix", "plugins"][:max(0, 3 - node.level)])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module == "gantrix":
                found += [(node.lineno, f"gantrix.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return sorted((line, m) for line, m in found if m == "gantrix" or m.startswith("gantrix."))


def test_there_are_plugins_to_check():
    assert len(MODULES) > 20 and PLUGINS.joinpath("noise.py") in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_a_plugin_imports_only_the_plugin_api(path):
    wrong = [f"{path.name}:{line}: imports {module}" for line, module in gantrix_imports(path)
             if module != "gantrix.plugin"]
    assert not wrong, ("a plugin imports gantrix.plugin (plus torch and the standard library), "
                       "never another plugin or another gantrix module:\n" + "\n".join(wrong))


@pytest.mark.parametrize("source, bad", [
    ("from gantrix.plugins.noise import flip", "gantrix.plugins.noise"),
    ("from .noise import flip", "gantrix.plugins.noise"),
    ("from . import noise", "gantrix.plugins"),
    ("from gantrix import distributed", "gantrix.distributed"),
    ("import gantrix.models", "gantrix.models"),
    ("def f():\n    from gantrix.step import adam", "gantrix.step"),
])
def test_the_walker_sees_every_kind_of_import(tmp_path, source, bad):
    path = tmp_path / "p.py"
    path.write_text(source + "\nfrom gantrix.plugin import Loss\n")
    assert sorted(m for _, m in gantrix_imports(path)) == sorted([bad, "gantrix.plugin"])


def test_every_declared_name_exists():
    assert len(api.__all__) == len(set(api.__all__))
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert not missing
    assert set(api.__all__) <= set(dir(api))


def test_the_declared_names_are_the_cores():
    import gantrix
    from gantrix import distributed, kernels, models
    from gantrix.step import adam

    assert api.adam is adam and api.kernels is kernels
    for name in ("Loss", "Param", "Finding", "hookimpl", "ModelTransformError", "Batch"):
        assert getattr(api, name) is getattr(gantrix, name)
    assert api.find_layers is models.find_layers and api.ROLES is models.ROLES
    for name in api.distributed.NAMES:
        assert getattr(api.distributed, name) is getattr(distributed, name)
    assert sorted(dir(api.distributed)) == sorted(api.distributed.NAMES)
    with pytest.raises(AttributeError, match="plugin API's data-parallel helpers"):
        api.distributed.init_from_environment  # noqa: B018 - internal, not declared


def test_the_distributed_helpers_follow_the_core_at_each_use(monkeypatch):
    from gantrix import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 7)
    assert api.distributed.world_size() == 7


def test_importing_the_api_is_cheap():
    """No plugin, no composition or training machinery: a plugin module is imported while
    the registry loads plugins, so the API must not import the registry's users."""
    code = ("import sys, gantrix.plugin\n"
            "heavy = [m for m in sys.modules if m.startswith('gantrix.plugins') or m in "
            "('gantrix.step', 'gantrix.compose', 'gantrix.registry', 'gantrix.trainer', "
            "'gantrix.recipe', 'gantrix.cli', 'triton')]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
