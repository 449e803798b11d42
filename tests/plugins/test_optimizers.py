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
    (("sgd",), (torch.optim.SGD, 5e-5, None), (torch.optim.SGD, 5e-5, None)),
    (("sgd:lr=1e-3,lr_g=2e-3",), (torch.optim.SGD, 2e-3, None), (torch.optim.SGD, 1e-3, None)),
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
    ("rmsprop", False), ("sgd", False), ("sgd:momentum=0.9", True),
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


@pytest.mark.parametrize("params", [
    dict(), dict(momentum=0.9), dict(momentum=0.5, nesterov=True), dict(weight_decay=0.1),
], ids=["plain", "momentum", "nesterov", "weight-decay"])
def test_sgd_steps_as_the_formula(params):
    """gantrix's sgd, through the hook, against SGD written out: v ← μv + g + λθ;
    θ ← θ − lr·v (Nesterov: θ ← θ − lr·(g + λθ + μv))."""
    lr, mu, wd = 0.05, params.get("momentum", 0.0), params.get("weight_decay", 0.0)
    torch.manual_seed(0)
    theta = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    ref = theta.detach().clone()
    opt = gantrix.make("sgd", lr=lr, **params).gantrix_configure_optimizer(
        params=[theta], role="discriminator")
    v = torch.zeros_like(ref)
    for step in range(6):
        g = torch.randn(4, 3, dtype=torch.float64)
        theta.grad = g.clone()
        opt.step()
        d = g + wd * ref
        v = d if step == 0 else mu * v + d
        ref = ref - lr * (d + mu * v if params.get("nesterov") else v)
    torch.testing.assert_close(theta.detach(), ref, rtol=1e-12, atol=1e-12)
    # and step by step as torch.optim.SGD with the same settings
    torch.manual_seed(1)
    ours, theirs = (torch.nn.Parameter(torch.ones(3, dtype=torch.float64)) for _ in range(2))
    opt = gantrix.make("sgd", lr=lr, **params).gantrix_configure_optimizer(
        params=[ours], role="generator")
    ref_opt = torch.optim.SGD([theirs], lr=lr, momentum=mu, weight_decay=wd,
                              nesterov=params.get("nesterov", False))
    for _ in range(4):
        g = torch.randn(3, dtype=torch.float64)
        ours.grad, theirs.grad = g.clone(), g.clone()
        opt.step()
        ref_opt.step()
        assert torch.equal(ours.detach(), theirs.detach())


def test_sgd_replaces_the_recipes_optimizer_with_a_note():
    recipe = gantrix.Recipe(recipe="wgan").extend(["sgd"])
    findings = recipe.check()
    assert not [f for f in findings if f.severity != "note"]
    (note,) = [f for f in findings if "replaces" in f.message]
    assert set(note.tricks) == {"sgd", "rmsprop"} and "rmsprop" in note.message
    assert [t.name for t in recipe.compose().tricks if "optimizer" in t.features()] == ["sgd"]


def test_the_recipes_optimizer_never_replaces_the_users():
    recipe = gantrix.Recipe(recipe="wgan-gp").extend(["rmsprop"])
    names = [t.name for t in recipe.compose().tricks]
    assert "rmsprop" in names and "adam" not in names


def test_sgd_with_momentum_under_weight_clipping_is_warned_about():
    findings = gantrix.Recipe(recipe="wgan").extend(["sgd:momentum=0.9"]).check()
    (warning,) = [f for f in findings if f.severity == "warning"]
    assert set(warning.tricks) == {"weight-clip", "sgd"} and "SGD with momentum" in warning.message
    assert "Wasserstein GAN" in warning.paper


def test_nesterov_without_momentum_is_refused():
    with pytest.raises(gantrix.ParamError, match="nesterov=true needs momentum > 0"):
        gantrix.make("sgd", nesterov=True)
    with pytest.raises(gantrix.ParamError, match="momentum"):
        gantrix.make("sgd", momentum=1.0)


def test_two_optimizers_the_user_names_are_one_error():
    findings = gantrix.Recipe(recipe="wgan").extend(["sgd", "adam"]).check()
    errors = [f for f in findings if f.severity == "error"]
    assert len(errors) == 1 and set(errors[0].tricks) == {"sgd", "adam"}


def test_wgan_trains_with_sgd():
    trainer = gantrix.Trainer(gantrix.Recipe(recipe="wgan").extend(["sgd:lr=1e-3"]), "ring8",
                              steps=3, batch_size=32)
    before = [p.detach().clone() for p in trainer.models.generator.parameters()]
    trainer.fit()
    assert all(type(o) is torch.optim.SGD for o in trainer.stepper.optimizers.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.models.generator.parameters()))
    assert all(torch.isfinite(p).all() for p in trainer.models.discriminator.parameters())
