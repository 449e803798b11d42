"""A generator's architecture as plain data, rebuilt without the code that built it.

`describe` traces a module with ``torch.fx`` into a graph of torch.nn layers (Linear,
ConvTranspose2d, BatchNorm, activations, ...) and the torch functions and tensor methods
between them (``cat``, ``flatten``, indexing), and writes both as JSON: each layer by its
torch.nn class and constructor arguments, each graph node by its op, target and arguments.
`rebuild` makes the module again from that JSON and the weights: it imports torch.nn layers
and calls tensor operators of ``torch`` (those of its ATen library), ``torch.nn.functional``,
``operator`` and ``math``, and public tensor methods that stay with the values, so a file can
name nothing else (no pickle, no file or memory access, no code of the trick plugins that
built the model). That is how a
safetensors export is loaded where the tricks are not installed (`gantrix.export`).

A module fx cannot trace (control flow on tensor values, a non-torch.nn leaf layer) is a
`NotDescribable` with the reason; TorchScript and ONNX trace it with example inputs instead.
"""
from __future__ import annotations

import inspect
import math
from importlib import import_module
from typing import Any

import torch
import torch.fx as fx
from torch import nn

#: the modules whose functions a described graph may call
FUNCTION_MODULES = ("torch", "torch.nn.functional", "operator", "math", "builtins")
#: the builtins a graph may call (fx records ``getattr`` for ``x.shape``)
BUILTINS = ("getattr", "len", "int", "float")
#: tensor methods a described graph may not call (they leave the tensor's values: memory,
#: numpy, hooks, callables)
LEAVING_METHODS = {"numpy", "tolist", "storage", "untyped_storage", "data_ptr", "set_",
                   "share_memory_", "pin_memory", "record_stream", "register_hook",
                   "register_post_accumulate_grad_hook", "backward", "apply_", "map_", "map2_",
                   "tofile", "item"}
#: constructor arguments never recorded (where a layer lives, not what it is)
SKIPPED = {"self", "device", "dtype", "inplace"}


class NotDescribable(Exception):
    """The module cannot be described as a graph of torch.nn layers (the reason)."""


class _Call(nn.Module):
    """``module(z)``: how gantrix calls an unconditional generator."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, z):
        return self.module(z)


class _CallWithLabels(_Call):
    """``module(z, labels=labels)``: how gantrix calls a conditional generator."""

    def forward(self, z, labels):
        return self.module(z, labels=labels)


def describe(module: nn.Module, labels: bool) -> tuple[dict, dict[str, torch.Tensor]]:
    """The architecture of ``module`` called as ``module(z[, labels=labels])`` as JSON-able
    data, and the tensors it needs by name; `NotDescribable` with the reason otherwise."""
    try:
        traced = fx.symbolic_trace((_CallWithLabels if labels else _Call)(module))
    except Exception as exc:  # fx raises many kinds for untraceable code
        raise NotDescribable(f"torch.fx cannot trace it ({type(exc).__name__}: {exc})") from None
    layers = {}
    for name, layer in traced.named_modules():
        if name and not any(True for _ in layer.children()):
            layers[name] = _layer(name, layer)
    nodes = [[n.name, n.op, _target(n), _encode(n.args), _encode(n.kwargs)]
             for n in traced.graph.nodes]
    tensors = dict(traced.state_dict())
    for n in traced.graph.nodes:
        if n.op == "get_attr":
            tensors.setdefault(n.target, _fetch(traced, n.target).detach())
    return {"layers": layers, "nodes": nodes}, tensors


def rebuild(architecture: dict, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """The module `describe` described, with ``tensors`` loaded (strictly)."""
    root = nn.Module()
    for path, (cls_name, kwargs) in architecture["layers"].items():
        cls = getattr(nn, cls_name, None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise NotDescribable(f"layer {path} is of an unknown class {cls_name!r}")
        _place(root, path, cls(**{k: _tuples(v) for k, v in kwargs.items()}))
    graph = fx.Graph()
    made: dict[str, fx.Node] = {}
    for name, op, target, args, kwargs in architecture["nodes"]:
        _check_node(name, op, target, architecture["layers"], tensors)
        if op == "call_function":
            target = _function(target)
        elif op == "get_attr" and _missing(root, target):
            owner, _, leaf = target.rpartition(".")
            holder = _owner(root, owner)
            holder.register_buffer(leaf, tensors[target].clone())
        args, kwargs = _decode(args, made), _decode(kwargs, made)
        if target is getattr and not (len(args) == 2 and isinstance(args[1], str)
                                      and args[1].isidentifier() and not args[1].startswith("_")):
            raise NotDescribable(f"node {name} reads an attribute gantrix does not read")
        made[name] = graph.create_node(op, target, args, kwargs, name)
    module = fx.GraphModule(root, graph)
    module.load_state_dict({k: v for k, v in tensors.items()}, strict=True)
    return module.eval()


# --------------------------------------------------------------------------- layers


def _layer(path: str, layer: nn.Module) -> list:
    cls = type(layer)
    if getattr(nn, cls.__name__, None) is not cls:
        raise NotDescribable(f"its layer {path} ({cls.__module__}.{cls.__qualname__}) is not "
                             f"a torch.nn layer fx can see through")
    kwargs = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name in SKIPPED or name.startswith("_") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not hasattr(layer, name):
            if p.default is inspect.Parameter.empty:
                raise NotDescribable(f"its layer {path} ({cls.__name__}) does not keep its "
                                     f"argument {name!r}")
            continue
        value = getattr(layer, name)
        if name == "bias" and (value is None or isinstance(value, torch.Tensor)):
            value = value is not None
        if isinstance(value, torch.Tensor):
            continue
        kwargs[name] = _plain(value, path)
    return [cls.__name__, kwargs]


def _plain(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v, path) for v in value]
    raise NotDescribable(f"its layer {path} has an argument of kind {type(value).__name__}")


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _place(root: nn.Module, path: str, layer: nn.Module) -> None:
    owner, _, leaf = path.rpartition(".")
    _owner(root, owner).add_module(leaf, layer)


def _owner(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split(".") if path else []:
        if not hasattr(module, part):
            module.add_module(part, nn.Module())
        module = getattr(module, part)
    return module


def _fetch(module: nn.Module, target: str) -> Any:
    for part in target.split("."):
        module = getattr(module, part)
    return module


def _missing(root: nn.Module, target: str) -> bool:
    try:
        _fetch(root, target)
    except AttributeError:
        return True
    return False


# --------------------------------------------------------------------------- graph nodes


def _target(node: fx.Node) -> Any:
    if node.op != "call_function":
        return node.target
    fn = node.target
    module = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", getattr(fn, "__name__", ""))
    if module == "torch._C._nn" or module.startswith("torch._C._VariableFunctions"):
        module = "torch"
    for home in FUNCTION_MODULES:  # the public module the function is reached from
        owner = import_module(home)
        if getattr(owner, getattr(fn, "__name__", ""), None) is fn:
            return [home, fn.__name__]
    raise NotDescribable(f"its forward calls {module}.{name}, which is not a function of "
                         f"{', '.join(FUNCTION_MODULES[:-1])}")


def _check_node(name: str, op: str, target: Any, layers: dict, tensors: dict) -> None:
    """A described node is one `describe` can write: a plain name, a known op, a layer or
    tensor of the file, a public tensor method (not one that leaves the tensor: memory,
    numpy, hooks). The graph becomes Python code when rebuilt, so nothing else passes."""
    ok = isinstance(name, str) and name.isidentifier()
    if op == "placeholder":
        ok = ok and isinstance(target, str) and target.isidentifier()
    elif op == "call_module":
        ok = ok and target in layers
    elif op == "get_attr":
        ok = ok and target in tensors
    elif op == "call_method":
        ok = ok and (isinstance(target, str) and target.isidentifier()
                     and not target.startswith("_") and target not in LEAVING_METHODS
                     and callable(getattr(torch.Tensor, target, None)))
    elif op == "call_function":
        ok = ok and isinstance(target, list) and len(target) == 2
    elif op != "output":
        ok = False
    if not ok:
        raise NotDescribable(f"node {name!r} ({op} {target!r}) is not one gantrix describes")


def _function(target: list) -> Any:
    home, name = target
    if (home not in FUNCTION_MODULES or not isinstance(name, str) or name.startswith("_")
            or (home == "builtins" and name not in BUILTINS)
            or (home == "operator" and name in ("attrgetter", "methodcaller"))
            or (home == "torch" and not hasattr(torch.ops.aten, name))):
        raise NotDescribable(f"the graph calls {home}.{name}, which gantrix does not call")
    fn = getattr(import_module(home), name, None)
    if not callable(fn):
        raise NotDescribable(f"the graph calls {home}.{name}, which does not exist here")
    return fn


def _encode(value: Any) -> Any:
    if isinstance(value, fx.Node):
        return {"node": value.name}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {"dict": {k: _encode(v) for k, v in value.items()}}
    if isinstance(value, slice):
        return {"slice": [_encode(value.start), _encode(value.stop), _encode(value.step)]}
    if value is Ellipsis:
        return {"ellipsis": True}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise NotDescribable(f"its forward passes a {type(value).__name__} fx cannot record")


def _decode(value: Any, made: dict[str, fx.Node]) -> Any:
    if isinstance(value, list):
        return [_decode(v, made) for v in value]
    if not isinstance(value, dict):
        return value
    (kind, inner), = value.items()
    if kind == "node":
        return made[inner]
    if kind == "tuple":
        return tuple(_decode(v, made) for v in inner)
    if kind == "dict":
        return {k: _decode(v, made) for k, v in inner.items()}
    if kind == "slice":
        return slice(*(_decode(v, made) for v in inner))
    if kind == "ellipsis":
        return Ellipsis
    if kind == "dtype":
        dtype = getattr(torch, inner, None)
        if not isinstance(dtype, torch.dtype):
            raise NotDescribable(f"unknown dtype {inner!r}")
        return dtype
    if kind == "device":
        return torch.device(inner)
    if kind == "float":
        return float(inner)
    raise NotDescribable(f"unknown graph value {kind!r}")


__all__ = ["NotDescribable", "describe", "rebuild"]
