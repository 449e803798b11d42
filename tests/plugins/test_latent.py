"""uniform-latent: the generator's prior, used in training, the probe and sampling alike."""
from __future__ import annotations

import pytest
import torch

import gantrix
from gantrix.step import draw_latent


def _hook(*tricks):
    return gantrix.Recipe("nonsaturating", *tricks).compose().hook


@pytest.mark.parametrize("bound", [1.0, 0.5])
def test_uniform_latent_fills_the_cube_evenly(bound):
    g = torch.Generator().manual_seed(3)
    z = draw_latent(_hook(f"uniform-latent:bound={bound}"), 20000, 7, device="cpu", generator=g)
    assert z.shape == (20000, 7)
    assert z.min() >= -bound and z.max() <= bound
    # U(-b, b): mean 0, variance b²/3, and a flat histogram (each quarter of the range ~25 %)
    assert z.mean().abs() < 0.01 * bound
    assert z.var().item() == pytest.approx(bound ** 2 / 3, rel=0.02)
    quarters = torch.histc(z, bins=4, min=-bound, max=bound) / z.numel()
    assert torch.allclose(quarters, torch.full((4,), 0.25), atol=0.01)


def test_uniform_latent_is_reproducible_from_the_generator():
    hook = _hook("uniform-latent")
    a = draw_latent(hook, 5, 3, device="cpu", generator=torch.Generator().manual_seed(1))
    b = draw_latent(hook, 5, 3, device="cpu", generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_without_a_prior_trick_the_latent_is_standard_normal():
    g = torch.Generator().manual_seed(2)
    z = draw_latent(_hook(), 4, 3, device="cpu", generator=g)
    torch.testing.assert_close(z, torch.randn(4, 3, generator=torch.Generator().manual_seed(2)))


def test_a_prior_of_the_wrong_shape_is_a_clear_error(add_tricks):
    class Bad(gantrix.Policy):
        name, summary = "bad-prior", "returns one vector too few"

        @gantrix.hookimpl
        def gantrix_latent(self, n, dim, device, generator):
            return torch.zeros(n - 1, dim)

    add_tricks(Bad)
    with pytest.raises(gantrix.GantrixError, match=r"returned \(3, 2\) for 4 latent vectors"):
        draw_latent(_hook("bad-prior"), 4, 2, device="cpu")


def test_training_batches_draw_from_the_prior(composed, add_tricks):
    seen = []

    class Spy(gantrix.Policy):
        name, summary = "spy-z", "record the latent vectors of every batch"

        @gantrix.hookimpl
        def gantrix_prepare_batch(self, batch):
            seen.append(batch.z)

    add_tricks(Spy)
    step, data = composed("nonsaturating", "uniform-latent:bound=0.5", "spy-z")
    step.step(data)
    assert len(seen) == 2 and all(z.abs().max() <= 0.5 for z in seen)


def test_uniform_latent_rejects_a_zero_bound():
    with pytest.raises(gantrix.ParamError, match="'bound' got 0"):
        gantrix.Recipe("nonsaturating", "uniform-latent:bound=0").check()


def test_uniform_latent_is_needed_to_sample():
    assert gantrix.registry.tricks()["uniform-latent"].samples()
