"""What only a GPU can check: bfloat16/float16 kernels, GPU-sized shapes, CUDA-graph capture.

Skipped without CUDA; the interpreter tests in the sibling files cover the same kernel code on
CPU for float32 and float16.
"""
import pytest
import torch
import torch.nn as nn

from gantrix.kernels import clip_, grad_norm_penalty, gradient_penalty, relativistic_loss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(autouse=True)
def triton_backend(monkeypatch):
    monkeypatch.setenv("GANTRIX_KERNELS", "triton")


def penalty64(g):
    return 10.0 * ((g.flatten(1).pow(2).sum(1).sqrt() - 1) ** 2).mean()


def ra_sgan64(r, f):
    bce = nn.functional.binary_cross_entropy_with_logits
    return 0.5 * (bce(r - f.mean(), torch.ones_like(r)) + bce(f - r.mean(), torch.zeros_like(f)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape", [(64, 3, 64, 64), (5, 3, 257, 255)])
def test_penalty_low_precision(dtype, shape):
    g = (torch.randn(shape, device="cuda") / shape[-1]).to(dtype)
    x = g.clone().requires_grad_(True)
    loss = grad_norm_penalty(x)
    (loss * 3.7).backward()
    x64 = g.double().requires_grad_(True)
    ref = penalty64(x64)
    (ref * 3.7).backward()
    assert loss.dtype == torch.float32 and x.grad.dtype == dtype
    torch.testing.assert_close(loss.double(), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-2, atol=1e-2 * x64.grad.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("n", [64, 64 * 30 * 30, 1_100_003])
def test_relativistic_low_precision(dtype, n):
    real, fake = torch.randn(2, n, device="cuda").to(dtype)
    r, f = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    loss = relativistic_loss(r, f)
    loss.backward()
    r64, f64 = real.double().requires_grad_(True), fake.double().requires_grad_(True)
    ref = ra_sgan64(r64, f64)
    ref.backward()
    assert loss.dtype == torch.float32 and r.grad.dtype == dtype
    torch.testing.assert_close(loss.double(), ref, rtol=1e-4, atol=1e-5)
    for got, want in ((r.grad, r64.grad), (f.grad, f64.grad)):
        torch.testing.assert_close(got.double(), want, rtol=1e-2, atol=1e-2 * want.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_clip_low_precision(dtype):
    torch.manual_seed(1)
    tensors = [torch.randn(int(n), device="cuda").to(dtype) for n in torch.randint(1, 400_000, (120,))]
    want = [t.clamp(-0.01, 0.01) for t in tensors]
    clip_(tensors, 0.01)
    for t, w in zip(tensors, want):
        torch.testing.assert_close(t, w, rtol=0, atol=0)


def test_cuda_graph_capture():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 4, 2, 1)).cuda()
    real, fake = torch.randn(2, 16, 3, 16, 16, device="cuda")
    eps = torch.rand(16, device="cuda")
    weights = [torch.randn(n, device="cuda") for n in (100, 5000, 77)]

    def step():  # the critic is a PatchGAN (a 4×4 map a sample): one score per sample for the penalty
        penalty = gradient_penalty(lambda x: critic(x).mean(dim=(1, 2, 3)), real, fake, eps=eps)
        loss = penalty + relativistic_loss(critic(real), critic(fake))
        grads = torch.autograd.grad(loss, list(critic.parameters()))
        clip_(weights, 0.5)
        return loss, grads

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compiles the kernels before capture
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss, static_grads = step()

    real.copy_(torch.randn_like(real))
    fake.copy_(torch.randn_like(fake))
    eps.copy_(torch.rand_like(eps))
    for w in weights:
        w.copy_(torch.randn_like(w) * 3)
    graph.replay()
    torch.cuda.synchronize()
    assert all(w.abs().max() <= 0.5 for w in weights)
    loss, grads = step()
    torch.testing.assert_close(static_loss, loss)
    for got, want in zip(static_grads, grads):
        torch.testing.assert_close(got, want)
