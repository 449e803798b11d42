"""Optimizer policies: the optimizer class, learning rate and betas each role gets, through
the composition's hook as the training step uses it."""
from __future__ import annotations

import pytest
import torch

import gantrix
from gantrix.step import configure_optimizers


def _optimizers(*tricks):
    composition = gantrix.Recipe("wgan", *tricks).compose()
    models = gantrix.build_models(composition, gantrix.ModelSpec(shape=(2,), latent_dim=4))
    return configure_optimizers(composition, models)


def _settings(opt):
    (group,) = opt.param_groups
    return type(opt), group["lr"], group.get("betas")


@pytest.mark.parametrize("tricks,generator,discriminator", [
    (("adam",), (torch.optim.Adam, 2e-4, (0.5, 0.999)), (torch.optim.Adam, 2e-4, (0.5, 0.999))),
    (("adam:lr=1e-4,beta1=0,beta2=0.9",),
     (torch.optim.Adam, 1e-4, (0.0, 0.9)), (torch.optim.Adam, 1e-4, (0.0, 0.9))),
    (("adam:lr_g=1e-3,lr_d=2e-4",),
     (torch.optim.Adam, 1e-3, (0.5, 0.999)), (torch.optim.Adam, 2e-4, (0.5, 0.999))),
    (("ttur",), (torch.optim.Adam, 1e-4, (0.0, 0.9)), (torch.optim.Adam, 4e-4, (0.0, 0.9))),
    (("rmsprop",), (torch.optim.RMSprop, 5e-5, None), (torch.optim.RMSprop, 5e-5, None)),
    (("rmsprop:lr_d=1e-4",), (torch.optim.RMSprop, 5e-5, None), (torch.optim.RMSprop, 1e-4, None)),
])
def test_optimizer_per_role(tricks, generator, discriminator):
    opts = _optimizers(*tricks)
    assert _settings(opts["generator"]) == generator
    assert _settings(opts["discriminator"]) == discriminator


def test_rmsprop_has_no_momentum():
    group = _optimizers("rmsprop")["discriminator"].param_groups[0]
    assert group["momentum"] == 0 and group["alpha"] == 0.99


def test_each_optimizer_covers_its_role_parameters():
    composition = gantrix.Recipe("wgan", "ttur").compose()
    models = gantrix.build_models(composition, gantrix.ModelSpec(shape=(2,), latent_dim=4))
    opts = configure_optimizers(composition, models)
    for role in ("generator", "discriminator"):
        held = {id(p) for p in opts[role].param_groups[0]["params"]}
        assert held == {id(p) for p in models.by_role(role).parameters()}


@pytest.mark.parametrize("spec,momentum", [
    ("adam", True), ("adam:beta1=0", False), ("ttur", False), ("ttur:beta1=0.5", True),
    ("rmsprop", False),
])
def test_momentum_tag_follows_beta1(spec, momentum):
    trick = gantrix.Recipe(spec).specs[0]
    cls = gantrix.catalogue().trick(trick.name)
    tags = cls(**trick.resolve(cls)).features()
    assert "optimizer" in tags
    assert ("momentum-optimizer" in tags) == momentum


def test_two_optimizer_tricks_are_an_error():
    findings = gantrix.Recipe("wgan", "adam", "rmsprop").check()
    errors = [f for f in findings if f.severity == "error"]
    assert len(errors) == 1 and set(errors[0].tricks) == {"adam", "rmsprop"}


def test_bad_optimizer_parameters_are_rejected():
    with pytest.raises(gantrix.ParamError, match="beta1"):
        gantrix.make("adam", beta1=1.0)
    with pytest.raises(gantrix.ParamError, match="lr"):
        gantrix.make("rmsprop", lr=0.0)


def test_adam_is_fused_where_torch_allows_and_steps_as_plain_adam_does():
    from gantrix.step import adam

    torch.manual_seed(0)
    start = torch.randn(5, 3, dtype=torch.float64)
    fused, plain = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt = adam([fused], 1e-2, (0.5, 0.9))
    ref = torch.optim.Adam([plain], lr=1e-2, betas=(0.5, 0.9))
    assert opt.defaults["fused"] is True
    for _ in range(5):
        g = torch.randn(5, 3, dtype=torch.float64)
        fused.grad, plain.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    torch.testing.assert_close(fused.detach(), plain.detach(), rtol=1e-12, atol=1e-12)


def test_adam_falls_back_to_the_plain_one_where_fused_is_refused(monkeypatch):
    from gantrix.step import adam

    real = torch.optim.Adam

    def older_torch(params, fused=None, **kw):  # as torch < 2.4 does on a CPU
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be CUDA tensors")
        return real(params, **kw)

    monkeypatch.setattr(torch.optim, "Adam", older_torch)
    opt = adam([torch.nn.Parameter(torch.zeros(2))], 1e-3, (0.5, 0.999))
    assert isinstance(opt, real) and not opt.defaults.get("fused")
