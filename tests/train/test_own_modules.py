"""A user's own modules (`Trainer(generator=..., discriminator=...)`) and runs loaded
without their training-only tricks: probed before any work, reloadable, clear when not."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gantrix.cli.app import create_app
from gantrix.errors import GantrixError
from gantrix.registry import catalogue
from gantrix.trainer import Trainer

SMALL = dict(steps=4, batch_size=16, latent_dim=3)


class Critic(nn.Module):
    """A 2-D critic returning ``shape`` per batch: (B,) by default."""

    def __init__(self, out: int = 1, squeeze: bool = True, as_dict: bool = False):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, out))
        self.squeeze, self.as_dict = squeeze, as_dict

    def forward(self, x):
        y = self.net(x)
        y = y.squeeze(1) if self.squeeze and y.shape[1] == 1 else y
        return {"logits": y} if self.as_dict else y


def generator(latent: int = 3, out: int = 2) -> nn.Module:
    return nn.Sequential(nn.Linear(latent, 16), nn.ReLU(), nn.Linear(16, out))


def message(excinfo) -> str:
    return str(excinfo.value)


# --------------------------------------------------------------------------- probing


def test_a_generator_of_another_latent_size_is_named_before_any_file(tmp_path):
    with pytest.raises(GantrixError) as excinfo:
        Trainer("nonsaturating", "ring8", generator=generator(latent=5),
                out=tmp_path / "run", **SMALL)
    text = message(excinfo)
    assert "generator (Sequential)" in text and "latent_dim 3" in text and "(16, 3)" in text
    assert "mat1 and mat2" in text  # torch's own words are kept, whole
    assert not (tmp_path / "run").exists()


def test_a_generator_of_the_wrong_output_shape_names_both_shapes():
    with pytest.raises(GantrixError) as excinfo:
        Trainer("nonsaturating", "ring8", generator=generator(out=3), **SMALL)
    text = message(excinfo)
    assert "returned (16, 3)" in text and "needs (16, 2)" in text
    assert "real and fake" not in text  # not blamed on a kernel


@pytest.mark.parametrize("critic, got", [
    (Critic(out=3), "(16, 3)"),
    (nn.Sequential(nn.Linear(2, 1), nn.Flatten(0)), "(16,)"),  # fine: one per sample
])
def test_a_critic_must_return_one_logit_per_sample(critic, got):
    if got == "(16,)":
        Trainer("nonsaturating", "ring8", generator=generator(), discriminator=critic, **SMALL)
        return
    with pytest.raises(GantrixError) as excinfo:
        Trainer("nonsaturating", "ring8", generator=generator(), discriminator=critic, **SMALL)
    assert f"returned {got}" in message(excinfo) and "shape (16,) or (16, 1)" in message(excinfo)


def test_a_scalar_critic_output_is_refused():
    class Mean(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, x):
            return self.lin(x).mean()

    with pytest.raises(GantrixError, match=r"returned \(\) for a real batch"):
        Trainer("wgan-gp", "ring8", discriminator=Mean(), **SMALL)


@pytest.mark.parametrize("critic", [Critic(squeeze=False), Critic(as_dict=True)],
                         ids=["B-by-1", "dict-with-logits"])
@pytest.mark.parametrize("recipe", ["nonsaturating", "wgan-gp", "rasgan"])
def test_the_contracts_other_critic_outputs_train(critic, recipe):
    t = Trainer(recipe, "ring8", generator=generator(), discriminator=critic, **SMALL).fit()
    assert t.step == 4 and torch.isfinite(t.sample(5)).all()


def test_probing_changes_no_state():
    """The probe runs in eval mode: BatchNorm statistics stay as built, and the models are
    back in training mode after it."""
    t = Trainer("dcgan", "digits", steps=1, batch_size=8, width=8, latent_dim=8)
    bns = [m for m in t.models.generator.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(int(m.num_batches_tracked) == 0 for m in bns)
    assert all(torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in bns)
    assert t.models.generator.training and t.models.discriminator.training


def test_probing_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Trainer("nonsaturating", "ring8", **SMALL)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------- reloading


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("own") / "run"
    torch.manual_seed(0)
    t = Trainer("nonsaturating", "ring8", generator=generator(), discriminator=Critic(),
                out=out, **SMALL).fit()
    return out, t


def test_loading_a_run_of_own_modules_without_them_says_how(own_run):
    out, _ = own_run
    with pytest.raises(GantrixError) as excinfo:
        Trainer.load(out)
    text = message(excinfo)
    assert "your own modules" in text and "torch.nn.modules.container.Sequential" in text
    assert "test_own_modules.Critic" in text
    assert f"Trainer.load({str(out)!r}, generator=..., discriminator=...)" in text


def test_loading_with_only_one_of_the_modules_names_the_other(own_run):
    out, _ = own_run
    with pytest.raises(GantrixError, match="the discriminator must be passed again"):
        Trainer.load(out, generator=generator())


def test_loading_with_the_modules_samples_as_trained(own_run):
    out, trained = own_run
    again = Trainer.load(out, generator=generator(), discriminator=Critic())
    assert torch.equal(again.sample(9), trained.sample(9))


def test_a_mismatch_is_reported_whole(own_run):
    out, _ = own_run
    with pytest.raises(GantrixError) as excinfo:
        Trainer.load(out, generator=nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 2)),
                     discriminator=Critic())
    text = message(excinfo)
    assert "size mismatch for 0.weight" in text and "size mismatch for 2.weight" in text


def test_gantrix_sample_of_an_own_modules_run_explains(own_run, tmp_path):
    out, _ = own_run
    result = CliRunner().invoke(create_app(), ["sample", str(out), "--out", str(tmp_path / "x.npy")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "your own modules" in result.stderr and "Trainer.load(" in result.stderr


# --------------------------------------------------------------------------- missing tricks


@pytest.fixture(scope="module")
def penalised_run(tmp_path_factory):
    """wgan-gp: its gradient penalty only trains."""
    out = tmp_path_factory.mktemp("gp") / "run"
    t = Trainer("wgan-gp", "ring8", out=out, **SMALL).fit()
    tricks = Trainer.load(out).composition.specs()
    assert any(s.startswith("gradient-penalty") for s in tricks)
    return out, t


def test_a_missing_training_only_trick_does_not_stop_sampling(penalised_run, monkeypatch,
                                                               tmp_path):
    out, trained = penalised_run
    monkeypatch.delitem(catalogue().tricks, "gradient-penalty")
    loaded = Trainer.load(out)
    assert loaded.without == ["gradient-penalty"]
    assert torch.equal(loaded.sample(11), trained.sample(11))
    with pytest.raises(GantrixError, match="without its training-only trick.*gradient-penalty"):
        loaded.fit()
    result = CliRunner().invoke(create_app(), ["sample", str(out), "-n", "5",
                                               "--out", str(tmp_path / "s.npy")])
    assert result.exit_code == 0, result.output
    assert "gradient-penalty (trained with, not installed) only trains" in result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), trained.sample(5).numpy())


def test_a_missing_trick_that_sampling_needs_is_named(tmp_path, monkeypatch):
    out = tmp_path / "run"
    Trainer(["nonsaturating", "ema"], "ring8", out=out, **SMALL).fit()
    monkeypatch.delitem(catalogue().tricks, "ema")
    with pytest.raises(GantrixError, match="unknown trick 'ema'"):
        Trainer.load(out)


def test_declared_and_derived_sampling_needs():
    tricks = catalogue().tricks
    assert tricks["ema"].samples() and tricks["cgan"].samples() and tricks["dcgan"].samples()
    for name in ("gradient-penalty", "r1", "wgan", "adam", "n-critic", "weight-clip",
                 "diffaugment", "instance-noise", "pac", "minibatch-stddev"):
        assert not tricks[name].samples(), name


# --------------------------------------------------------------------------- the contract


class Scored(nn.Module):
    """A user's critic without a ``.net`` stack, ending in ``last``."""

    def __init__(self, last: nn.Module):
        super().__init__()
        self.body = nn.Linear(2, 8)
        self.score = nn.Linear(8, 1)
        self.last = last

    def forward(self, x):
        return self.last(self.score(self.body(x))).squeeze(1)


class WithHead(nn.Module):
    """A wrapper that adds a head beside the model it wraps, as InfoGAN's Q head."""

    def __init__(self, wrapped: nn.Module):
        super().__init__()
        self.wrapped = wrapped
        self.q = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 3))

    def forward(self, x):
        return self.wrapped(x)


def test_the_output_module_is_found_through_wrappers_not_in_heads():
    from gantrix.models import ConvCritic, ModelSpec, output_module

    sigmoid = nn.Sigmoid()
    assert output_module(Scored(sigmoid)) is sigmoid
    assert output_module(WithHead(Scored(sigmoid))) is sigmoid  # not the head's Linear
    core = ConvCritic(ModelSpec((1, 8, 8), width=4))
    assert output_module(WithHead(core)) is core.net[-1]
    alone = nn.Linear(2, 1)
    assert output_module(alone) is alone


@pytest.mark.parametrize("loss", ["nonsaturating", "rasgan"])
def test_a_sigmoid_under_a_head_is_still_found(loss):
    with pytest.raises(GantrixError, match="Sigmoid"):
        Trainer(loss, "ring8", discriminator=WithHead(Scored(nn.Sigmoid())), **SMALL)


def test_a_run_of_the_earlier_small_image_layout_still_loads(tmp_path, monkeypatch):
    """Checkpoints written before the layout was recorded were trained with one layer per
    doubling on 8×8 images: they load into that layout, sample as trained and resume."""
    from gantrix.checkpoint import load_checkpoint, save_checkpoint
    from gantrix.models import ModelSpec

    with monkeypatch.context() as m:
        m.setattr(ModelSpec, "layout", 1)
        old = Trainer("dcgan", "digits", out=tmp_path / "old", steps=2, batch_size=8,
                      width=8, latent_dim=8).fit()
    assert len(old.models.generator.net) == 5  # ConvT, BN, ReLU, ConvT, Tanh
    path = tmp_path / "old" / "checkpoint.pt"
    state = load_checkpoint(path)
    del state["layout"], state["format"], state["version"]
    save_checkpoint(path, state)
    loaded = Trainer.load(tmp_path / "old")
    assert loaded.spec.layout == 1 and torch.equal(loaded.sample(6), old.sample(6))
    resumed = Trainer.resume(tmp_path / "old", steps=3).fit()
    assert resumed.step == 3 and load_checkpoint(path)["layout"] == 1
    new = Trainer("dcgan", "digits", steps=1, batch_size=8, width=8, latent_dim=8)
    assert new.spec.layout == 2 and len(new.models.generator.net) == 11
