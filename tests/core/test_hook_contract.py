"""pluggy's calling contract: a hook implementation may name only the arguments it needs.

A test plugin implements EVERY hook of `gantrix.hookspecs` (read from the module, so a new
hook is covered, and must be reached, without editing this file) with fewer arguments than
its spec: none, only the first, only the last, all but the first. Its discovery hooks load
through the catalogue, its commands hook through the CLI app, its run hooks through a
composition (``Recipe.compose``, ``build_models``, ``ComposedStep.step`` on 2-D data) and a
short `Trainer` run (settings, log values, checkpoint and reload). Each implementation
records what it was given; every value must fit the spec's annotation for that name.
"""
from __future__ import annotations

import ast
import collections.abc
import inspect
import sys
import types
import typing

import pluggy
import pytest
import torch
from typer.testing import CliRunner

import gantrix
from gantrix import evaluation, hookspecs, registry

pytestmark = pytest.mark.usefixtures("fresh_registry")

MODULE = "t_contract_plugin"

VARIANTS = {
    "none": lambda names: (),
    "first": lambda names: names[:1],
    "last": lambda names: names[-1:],
    "all-but-first": lambda names: names[1:],
}


def _specs() -> dict[str, tuple[str, ...]]:
    """Every hook spec, as pluggy reads it: name -> argument names."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return {name: caller.spec.argnames for name, caller in vars(pm.hook).items()
            if isinstance(caller, pluggy.HookCaller) and caller.spec is not None}


SPECS = _specs()
DISCOVERY = sorted(name for name in SPECS if name.startswith("gantrix_register_"))
RUN = sorted(set(SPECS) - set(DISCOVERY))


def _fewer(variant: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The arguments the ``variant`` implementation names: always fewer than the spec's
    (none when the variant would name them all; a spec without arguments gets none)."""
    chosen = tuple(VARIANTS[variant](names))
    return chosen if len(chosen) < len(names) else ()


def _annotations() -> dict[str, dict[str, typing.Any]]:
    """Each spec's parameter annotations, evaluated: hookspecs imports its annotation
    types only under TYPE_CHECKING, so that block is run here, in a copy of its namespace."""
    namespace = dict(vars(hookspecs))
    tree = ast.parse(inspect.getsource(hookspecs))
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            exec(compile(ast.Module(body=node.body, type_ignores=[]), hookspecs.__file__, "exec"),
                 namespace)
    return {name: typing.get_type_hints(getattr(hookspecs, name), globalns=namespace)
            for name in SPECS}


def _fits(value, hint) -> bool:
    """Whether ``value`` fits the annotation ``hint`` (unions, None, callables, generics by
    their origin; enough to catch an argument passed under the wrong name)."""
    if hint is typing.Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if origin is collections.abc.Callable or hint is collections.abc.Callable:
        return callable(value)
    return isinstance(value, origin or hint)


def _function(hook: str, args: tuple[str, ...], record, method: bool):
    """A function named ``hook`` whose parameters are exactly ``args`` (after ``self`` for a
    method): pluggy reads the names from the code object, so it is compiled, not wrapped."""
    params = ", ".join((("self",) if method else ()) + args)
    values = "".join(f"{a}, " for a in args)
    namespace = {"record": record}
    exec(f"def {hook}({params}):\n    return record({hook!r}, {args!r}, ({values}))", namespace)
    return namespace[hook]


@pytest.fixture(params=list(VARIANTS))
def contract(request, install, monkeypatch, add_tricks):
    """The test plugin, installed as distribution ``gx-contract``: ``calls[hook]`` lists the
    ``{argument: value}`` each call gave."""
    variant = request.param
    calls: dict[str, list[dict]] = {}

    def record(hook, names, values):
        calls.setdefault(hook, []).append(dict(zip(names, values, strict=True)))

    module = types.ModuleType(MODULE)
    for hook in DISCOVERY:
        setattr(module, hook, hookspecs.hookimpl(
            _function(hook, _fewer(variant, SPECS[hook]), record, method=False)))
    methods = {hook: hookspecs.hookimpl(_function(hook, _fewer(variant, SPECS[hook]), record,
                                                  method=True))
               for hook in RUN}
    trick = type("Contract", (gantrix.Policy,), {"name": "t-contract", "__module__": MODULE,
                                                 **methods})
    monkeypatch.setitem(sys.modules, MODULE, module)
    install("gx-contract", {}, {"contract": MODULE})
    add_tricks(trick)
    return variant, calls


def test_every_hook_is_called_with_only_the_arguments_it_names(contract, tmp_path):
    variant, calls = contract
    cat = registry.catalogue()
    info = next(p for p in cat.plugins if p.name == "contract")
    assert (info.errors, info.hooks) == ([], DISCOVERY)

    # the commands hook: through the CLI app (a failure would withdraw the plugin)
    from gantrix.cli.app import create_app

    result = CliRunner().invoke(create_app(), ["plugins"])
    assert result.exit_code == 0, result.output
    assert info.errors == [] and "contract" in result.stdout

    # the run hooks: through a composition, as README's "Compose tricks in Python" (the test
    # trick listed first, so that firstresult hooks reach it: it answers None to all)
    recipe = gantrix.Recipe("t-contract", "wgan", "gradient-penalty")
    composition = recipe.compose()
    spec = gantrix.ModelSpec(shape=(2,), latent_dim=4)
    models = gantrix.build_models(composition, spec)
    step = gantrix.ComposedStep(composition, models, spec, total_steps=2)
    for _ in range(2):
        losses = step.step(lambda: (torch.randn(32, 2), None))
    assert torch.isfinite(losses["d_loss"]) and "d/gradient-penalty" in losses

    # and the hooks only a training run calls: settings, log values, checkpoint, reload
    run = tmp_path / "run"
    gantrix.Trainer(recipe, "ring8", out=run, steps=2, batch_size=16, latent_dim=2, width=16,
                    log_every=1, sample_every=0, progress=False).fit()
    loaded = gantrix.Trainer.load(run)
    # and the one only an evaluation of classified data asks (the generator's code)
    assert evaluation.code_inputs(loaded, 4, 0) is None

    assert sorted(calls) == sorted(SPECS), f"never called: {sorted(set(SPECS) - set(calls))}"
    hints = _annotations()
    for hook, made in calls.items():
        for call in made:
            assert tuple(call) == _fewer(variant, SPECS[hook])
            for name, value in call.items():
                assert _fits(value, hints[hook][name]), (
                    f"{hook} got {name}={value!r}, not {hints[hook][name]}")


def test_every_hook_spec_parameter_is_annotated():
    for name in SPECS:
        signature = inspect.signature(getattr(hookspecs, name))
        assert all(p.annotation is not p.empty for p in signature.parameters.values()), name
        assert signature.return_annotation is not signature.empty, name
    assert set(_annotations()) == set(SPECS)


def test_the_hook_specs_import_nothing_of_gantrix_at_run_time():
    """hookspecs is imported by every trick: it must not pull in the registry, compose,
    step (an import cycle) or torch."""
    tree = ast.parse(inspect.getsource(hookspecs))
    imported = {alias.name for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    assert imported == {"annotations", "TYPE_CHECKING", "Any", "Callable", "Iterable",
                        "Mapping", "pluggy"}
