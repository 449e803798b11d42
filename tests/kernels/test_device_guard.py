"""Every Triton launch runs inside ``torch.cuda.device(tensor.device)`` (``dispatch.device_guard``):
with tensors on ``cuda:1`` while device 0 is current, a launch must still go to cuda:1's stream.
Checked on CPU by mocking: the guard records that it is open, and every kernel's launch asserts
that it is inside a guard opened for its tensors' device."""
import contextlib
import types

import pytest
import torch

from gantrix.kernels import clip_, dispatch, grad_norm_penalty, relativistic_loss


def test_the_guard_is_cuda_device_for_cuda_tensors_and_nothing_for_cpu(monkeypatch):
    entered = []

    @contextlib.contextmanager
    def fake_cuda_device(device):
        entered.append(device)
        yield

    monkeypatch.setattr(torch.cuda, "device", fake_cuda_device)
    on_cuda1 = types.SimpleNamespace(device=torch.device("cuda", 1))
    with dispatch.device_guard(on_cuda1):
        pass
    assert entered == [torch.device("cuda", 1)]
    assert isinstance(dispatch.device_guard(torch.zeros(1)), contextlib.nullcontext)


@pytest.fixture
def guarded(monkeypatch, needs_triton):
    """Mocked guards in the three kernel modules, and kernels that check they run inside one."""
    monkeypatch.setenv("GANTRIX_KERNELS", "triton")
    from gantrix.kernels import clip, grad_penalty, relativistic

    open_for, launched = [], []

    @contextlib.contextmanager
    def guard(tensor):
        open_for.append(tensor.device)
        try:
            yield
        finally:
            open_for.pop()

    for module in (grad_penalty, relativistic, clip):
        monkeypatch.setattr(module, "device_guard", guard)
        for name, kernel in vars(module).items():
            if name.startswith("_") and hasattr(kernel, "run") and hasattr(kernel, "__getitem__"):
                def run(*args, _run=kernel.run, _name=name, **kwargs):
                    assert open_for, f"{_name} launched outside a device guard"
                    launched.append((_name, open_for[-1]))
                    return _run(*args, **kwargs)
                monkeypatch.setattr(kernel, "run", run)
    return launched


def test_every_launch_is_inside_the_guard(guarded):
    g = torch.randn(4, 3, 130, 130, requires_grad=True)  # rows longer than a chunk: two launches
    grad_norm_penalty(g).backward()
    small = torch.randn(8, 2, requires_grad=True)  # one launch
    grad_norm_penalty(small).backward()
    r, f = torch.randn(2, 20_000).requires_grad_(True)  # several programs: _sums, _loss, _grads
    relativistic_loss(r, f).backward()
    r1, f1 = torch.randn(2, 64).requires_grad_(True)
    relativistic_loss(r1, f1, average=False).backward()
    clip_([torch.randn(100), torch.randn(5000)], 0.1)
    names = {name for name, _ in guarded}
    assert names == {"_row_sumsq", "_penalty", "_scale_rows", "_sums", "_loss", "_grads", "_clamp"}
    assert {device for _, device in guarded} == {torch.device("cpu")}
