"""relativistic_loss on both backends, against float64 formulas written out here case by case."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from gantrix.kernels import relativistic_loss


def bce(logits, target):
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(target)))


def relu_mean(x):
    return torch.relu(x).mean()


def loss64(r, f, kind, average, for_generator):
    """The published formulas, term by term, in float64."""
    if not average:
        d = f - r if for_generator else r - f
        return {"sgan": lambda: bce(d, 1),
                "lsgan": lambda: ((d - 1) ** 2).mean(),
                "hinge": lambda: relu_mean(1 - d)}[kind]()
    rf, fr = r - f.mean(), f - r.mean()
    if kind == "sgan":
        return 0.5 * (bce(rf, 0) + bce(fr, 1)) if for_generator else 0.5 * (bce(rf, 1) + bce(fr, 0))
    if kind == "lsgan":
        if for_generator:
            return 0.5 * (((fr - 1) ** 2).mean() + ((rf + 1) ** 2).mean())
        return 0.5 * (((rf - 1) ** 2).mean() + ((fr + 1) ** 2).mean())
    if for_generator:
        return 0.5 * (relu_mean(1 - fr) + relu_mean(1 + rf))
    return 0.5 * (relu_mean(1 - rf) + relu_mean(1 + fr))


def check(real, fake, kind="sgan", average=True, for_generator=False, scale=3.7, rtol=1e-5, ran_on=None):
    r = real.detach().clone().requires_grad_(True)
    f = fake.detach().clone().requires_grad_(True)
    loss = relativistic_loss(r, f, kind=kind, average=average, for_generator=for_generator)
    if ran_on is not None:
        ran_on(loss, "relativistic")
    (loss * scale).backward()
    r64 = real.detach().double().requires_grad_(True)
    f64 = fake.detach().double().requires_grad_(True)
    ref = loss64(r64, f64, kind, average, for_generator)
    (ref * scale).backward()
    assert loss.shape == () and loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), ref, rtol=rtol, atol=1e-6)
    for got, want, x in ((r.grad, r64.grad, real), (f.grad, f64.grad, fake)):
        assert got.shape == x.shape and got.dtype == x.dtype
        torch.testing.assert_close(got.double(), want, rtol=100 * rtol, atol=1e-7)


@pytest.mark.parametrize("kind,average,for_generator",
                         list(itertools.product(["sgan", "lsgan", "hinge"], [True, False], [False, True])))
# PatchGAN logits: the PyTorch path runs 3·30·30 as plain autograd ops, 3·60·60 through its Function
@pytest.mark.parametrize("side", [30, 60])
def test_every_loss_matches_float64(backend, device, ran_on, kind, average, for_generator, side):
    real, fake = torch.randn(2, 3, 1, side, side, device=device) * 2
    check(real, fake, kind, average, for_generator, ran_on=ran_on)


@pytest.mark.parametrize("shape", [(7,), (5, 1), (4, 1, 70, 70)])  # the last: many blocks per program
@pytest.mark.parametrize("kind", ["sgan", "hinge"])
def test_shapes(backend, device, shape, kind):
    real, fake = torch.randn(2, *shape, device=device)
    check(real, fake + 0.5, kind=kind)
    check(real, fake, kind=kind, average=False, for_generator=True)


def test_extreme_logits_stay_finite(backend, device):
    real = torch.tensor([90.0, -90.0, 30.0, 0.0], device=device)
    fake = torch.tensor([-90.0, 90.0, 0.0, -30.0], device=device)
    for average in (True, False):
        check(real, fake, average=average)


def test_non_contiguous_logits(backend, device):
    real = torch.randn(9, 4, device=device).t()  # dense, transposed
    fake = torch.randn(4, 18, device=device)[:, ::2]  # strided: copied
    for average in (True, False):
        check(real, fake, kind="lsgan", average=average)
        check(fake, real, kind="hinge", average=average, for_generator=True)


def test_float16_logits(backend, device):
    real, fake = (torch.randn(2, 6, 1, 8, 8, device=device) * 2).half()
    r, f = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    loss = relativistic_loss(r, f)
    loss.backward()
    r64, f64 = real.double().requires_grad_(True), fake.double().requires_grad_(True)
    ref = loss64(r64, f64, "sgan", True, False)
    ref.backward()
    assert loss.dtype == torch.float32 and r.grad.dtype == torch.float16
    torch.testing.assert_close(loss.double(), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(r.grad.double(), r64.grad, rtol=2e-3, atol=1e-6)
    torch.testing.assert_close(f.grad.double(), f64.grad, rtol=2e-3, atol=1e-6)


def test_gradient_to_one_input_only(backend, device):
    real = torch.randn(16, device=device)
    fake = torch.randn(16, device=device, requires_grad=True)
    relativistic_loss(real, fake, for_generator=True).backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all()


def test_loss_without_grad(backend, device):
    real, fake = torch.randn(2, 10, device=device)
    with torch.no_grad():
        loss = relativistic_loss(real, fake, kind="lsgan")
    torch.testing.assert_close(loss.double(), loss64(real.double(), fake.double(), "lsgan", True, False))
