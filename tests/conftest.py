"""Test-wide set-up and shared fixtures.

Triton's interpreter must be switched on before anything imports triton, so it is set here,
first, whenever no CUDA device is present: the kernel tests then run the real Triton code on
CPU tensors. ``import torch`` does not import triton, so asking torch about CUDA is safe.
"""
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


# Imported only after TRITON_INTERPRET is settled (gantrix itself never imports triton).
from gantrix import registry  # noqa: E402
from gantrix.registry import RecipeEntry  # noqa: E402

# Fixtures for tests that change the catalogue: a clean registry, test-local tricks and
# recipes, and third-party distributions installed for real (a ``*.dist-info`` folder with
# ``entry_points.txt`` on ``sys.path``, which is what ``pip install`` leaves behind).


@pytest.fixture
def fresh_registry(monkeypatch):
    """Forget the loaded plugins before and after the test; no plugin env vars set."""
    monkeypatch.delenv("GANTRIX_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("GANTRIX_DISABLE_PLUGINS", raising=False)
    registry.reset()
    yield
    registry.reset()


@pytest.fixture
def add_tricks(monkeypatch):
    """Put test-local trick classes into the catalogue for this test only."""

    def add(*classes):
        tricks = registry.catalogue().tricks
        for cls in classes:
            monkeypatch.setattr(cls, "plugin", "tests")
            monkeypatch.setitem(tricks, cls.name, cls)

    return add


@pytest.fixture
def add_recipe(monkeypatch):
    """Put a test-local named recipe (a mapping shaped like a recipe TOML) into the catalogue."""

    def add(name, data):
        monkeypatch.setitem(registry.catalogue().recipes, name, RecipeEntry(name, data, "tests"))

    return add


@pytest.fixture
def install(tmp_path, monkeypatch, fresh_registry):
    """``install(dist, {module: source}, {entry point: module})`` installs a distribution."""
    modules: list[str] = []

    def install(dist: str, sources: dict[str, str], entry_points: dict[str, str],
                version: str = "1.0") -> Path:
        root = tmp_path / f"site-{dist}"
        root.mkdir()
        for module, source in sources.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source))
            modules.append(module)
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[gantrix]\n{lines}")
        monkeypatch.syspath_prepend(str(root))
        registry.reset()
        return root

    yield install
    for module in modules:
        sys.modules.pop(module, None)
