"""Backend choice (GANTRIX_KERNELS), lazy triton import, and the errors bad input gets."""
import subprocess
import sys

import pytest
import torch

from gantrix.kernels import clip_, dispatch, grad_norm_penalty, gradient_penalty, relativistic_loss


@pytest.fixture
def triton_calls(monkeypatch):
    """The op modules the calls under test fetched from dispatch.triton_op."""
    calls = []
    real = dispatch.triton_op

    def spy(name):
        calls.append(name)
        return real(name)

    monkeypatch.setattr(dispatch, "triton_op", spy)
    return calls


def run_all_ops(device):
    g = torch.randn(3, 4, device=device, requires_grad=True)
    grad_norm_penalty(g).backward()
    relativistic_loss(torch.randn(5, device=device), torch.randn(5, device=device))
    clip_([torch.randn(6, device=device)], 0.1)


def test_import_does_not_import_triton():
    code = "import sys, gantrix, gantrix.kernels; assert 'triton' not in sys.modules, 'triton imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("value", ["torch", "TORCH", " torch "])
def test_torch_forced(monkeypatch, triton_calls, device, value):
    monkeypatch.setenv("GANTRIX_KERNELS", value)
    run_all_ops(device)
    assert triton_calls == []


def test_auto_on_cpu_uses_torch(monkeypatch, triton_calls):
    monkeypatch.delenv("GANTRIX_KERNELS", raising=False)
    run_all_ops("cpu")
    assert triton_calls == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_on_cuda_uses_triton(monkeypatch, triton_calls):
    monkeypatch.setenv("GANTRIX_KERNELS", "auto")
    run_all_ops("cuda")
    assert triton_calls == ["grad_penalty", "relativistic", "clip"]


def test_triton_forced(monkeypatch, triton_calls, device, needs_triton):
    monkeypatch.setenv("GANTRIX_KERNELS", "triton")
    run_all_ops(device)
    assert triton_calls == ["grad_penalty", "relativistic", "clip"]


def test_unknown_mode_is_an_error(monkeypatch):
    monkeypatch.setenv("GANTRIX_KERNELS", "cuda")
    with pytest.raises(ValueError, match="GANTRIX_KERNELS"):
        grad_norm_penalty(torch.randn(2, 3))


def test_forced_triton_without_triton_is_an_error(monkeypatch):
    monkeypatch.setenv("GANTRIX_KERNELS", "triton")
    monkeypatch.setattr(dispatch, "triton_installed", lambda: False)
    with pytest.raises(RuntimeError, match="not installed"):
        relativistic_loss(torch.randn(4), torch.randn(4))
    monkeypatch.setenv("GANTRIX_KERNELS", "auto")
    relativistic_loss(torch.randn(4), torch.randn(4))  # auto falls back to torch quietly


def test_forced_triton_on_cpu_without_interpreter_is_an_error(monkeypatch):
    monkeypatch.setenv("GANTRIX_KERNELS", "triton")
    monkeypatch.setattr(dispatch, "interpreting", lambda: False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        grad_norm_penalty(torch.randn(2, 3))
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        clip_([torch.randn(3)], 1.0)


def test_forced_triton_with_unsupported_dtype_is_an_error(monkeypatch, device, needs_triton):
    monkeypatch.setenv("GANTRIX_KERNELS", "triton")
    with pytest.raises(RuntimeError, match="float64"):
        grad_norm_penalty(torch.randn(2, 3, dtype=torch.float64, device=device))
    if device.type == "cpu":
        with pytest.raises(RuntimeError, match="bfloat16"):
            grad_norm_penalty(torch.randn(2, 3, dtype=torch.bfloat16))


def test_float64_and_bfloat16_run_on_torch_path(monkeypatch):
    monkeypatch.setenv("GANTRIX_KERNELS", "auto")
    g = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    loss = grad_norm_penalty(g)
    assert loss.dtype == torch.float64
    loss.backward()
    r, f = torch.randn(2, 8, dtype=torch.bfloat16)
    assert relativistic_loss(r, f).dtype == torch.float32


# ---------------------------------------------------------------- errors that name the argument
@pytest.mark.parametrize("call,error,match", [
    (lambda: grad_norm_penalty(torch.arange(6).view(2, 3)), TypeError, "grad must be a floating"),
    (lambda: grad_norm_penalty([1.0, 2.0]), TypeError, "grad must be a torch.Tensor"),
    (lambda: grad_norm_penalty(torch.tensor(1.0)), ValueError, "grad must have a batch"),
    (lambda: grad_norm_penalty(torch.randn(0, 3)), ValueError, "grad is empty"),
    (lambda: grad_norm_penalty(torch.randn(2, 0)), ValueError, "grad is empty"),
    (lambda: grad_norm_penalty(torch.randn(2, 3), weight=torch.tensor(1.0)), TypeError, "weight"),
    (lambda: grad_norm_penalty(torch.randn(2, 3), center="1"), TypeError, "center"),
    (lambda: relativistic_loss(torch.randn(4), torch.randn(5)), ValueError, "same shape"),
    (lambda: relativistic_loss(torch.randn(4), torch.randn(4).double()), TypeError, "same dtype"),
    (lambda: relativistic_loss(torch.tensor(1.0), torch.tensor(2.0)), ValueError, "real_logits must have a batch"),
    (lambda: relativistic_loss(torch.randn(0), torch.randn(0)), ValueError, "real_logits is empty"),
    (lambda: relativistic_loss(torch.ones(4, dtype=torch.long), torch.ones(4)), TypeError, "real_logits"),
    (lambda: relativistic_loss(torch.randn(4), torch.randn(4), kind="wgan"), ValueError, "kind must be one of"),
    (lambda: clip_([torch.randn(3), torch.arange(3)], 0.1), TypeError, r"params\[1\]"),
    (lambda: clip_([torch.randn(3)], 0.0), ValueError, "c must be a finite number > 0"),
    (lambda: clip_([torch.randn(3)], None), TypeError, "c must be a real number"),
    (lambda: gradient_penalty("D", torch.randn(2, 3), torch.randn(2, 3)), TypeError, "critic must be callable"),
    (lambda: gradient_penalty(torch.nn.Linear(3, 1), torch.randn(2, 3), torch.randn(3, 3)), ValueError, "same shape"),
    (lambda: gradient_penalty(torch.nn.Linear(3, 1), torch.randn(2, 3), torch.randn(2, 3), eps=torch.rand(2, 1)),
     ValueError, r"eps must have shape \(2,\)"),
    (lambda: gradient_penalty(torch.nn.Linear(3, 1), torch.randn(2, 3), torch.randn(2, 3), eps=torch.rand(3)),
     ValueError, "eps must have shape"),
    (lambda: gradient_penalty(torch.nn.Linear(3, 1), torch.randn(0, 3), torch.randn(0, 3)), ValueError, "real is empty"),
    (lambda: gradient_penalty(lambda x: 1.0, torch.randn(2, 3), torch.randn(2, 3)), TypeError, "critic must return"),
])
def test_bad_input_gets_a_clear_error(backend, call, error, match):
    with pytest.raises(error, match=match):
        call()
