"""What the checker says about the built-in tricks' relations, before any training."""
from __future__ import annotations

import pytest

import gantrix


def _by(findings, severity):
    return [f for f in findings if f.severity == severity]


def test_weight_clip_and_gradient_penalty_from_the_user_is_an_error():
    errors = _by(gantrix.Recipe("wgan", "weight-clip", "gradient-penalty", "rmsprop").check(), "error")
    assert len(errors) == 1
    assert set(errors[0].tricks) == {"gradient-penalty", "weight-clip"}
    assert "Gulrajani" in errors[0].paper


def test_gradient_penalty_drops_the_recipes_weight_clip_with_a_note():
    recipe = gantrix.Recipe(recipe="wgan").extend(["gradient-penalty"])
    findings = recipe.check()
    assert not _by(findings, "error")
    notes = [f for f in _by(findings, "note") if "weight-clip" in f.tricks]
    assert len(notes) == 1 and "replaces the recipe's weight-clip" in notes[0].message
    names = [t.name for t in recipe.compose().tricks]
    assert "weight-clip" not in names and "gradient-penalty" in names


def test_dragan_also_replaces_weight_clip():
    names = [t.name for t in gantrix.Recipe(recipe="wgan").extend(["dragan"]).compose().tricks]
    assert "dragan" in names and "weight-clip" not in names


@pytest.mark.parametrize("optimizer,warned", [
    ("adam", True), ("adam:beta1=0", False), ("rmsprop", False), ("ttur", False), (None, True),
])
def test_weight_clip_under_momentum_warns(optimizer, warned):
    tricks = ["wgan", "weight-clip"] + ([optimizer] if optimizer else [])
    warnings = [f for f in _by(gantrix.Recipe(*tricks).check(), "warning") if "weight-clip" in f.tricks]
    assert bool(warnings) == warned
    if warned:
        assert "RMSProp" in warnings[0].message and "Wasserstein GAN" in warnings[0].paper


@pytest.mark.parametrize("penalty", ["r1", "r2"])
def test_zero_centred_penalties_with_weight_clip_warn(penalty):
    findings = gantrix.Recipe("wgan", "weight-clip", "rmsprop", penalty).check()
    assert not _by(findings, "error")
    assert [f for f in _by(findings, "warning") if set(f.tricks) == {penalty, "weight-clip"}]


def test_label_smoothing_with_wgan_is_an_error():
    errors = _by(gantrix.Recipe("wgan", "label-smoothing").check(), "error")
    assert len(errors) == 1 and errors[0].tricks == ("label-smoothing",)
    assert "bce-real-term" in errors[0].message


class _BatchNormCritic(gantrix.Architecture):
    """A stand-in architecture trick that declares a BatchNorm critic."""

    name = "test-bn-critic"
    summary = "test only"
    provides = ("critic-batchnorm",)


@pytest.fixture
def bn_trick(monkeypatch):
    monkeypatch.setitem(gantrix.catalogue().tricks, _BatchNormCritic.name, _BatchNormCritic)
    return _BatchNormCritic.name


def test_gradient_penalty_with_a_declared_batchnorm_critic(bn_trick):
    errors = _by(gantrix.Recipe("wgan", "gradient-penalty", bn_trick).check(), "error")
    assert len(errors) == 1 and "per-sample" in errors[0].message
    for penalty in ("r1", "r2", "dragan"):
        findings = gantrix.Recipe("nonsaturating", penalty, bn_trick).check()
        assert not _by(findings, "error") and _by(findings, "warning")


def test_every_trick_here_has_its_metadata():
    mine = ["rsgan", "rasgan", "ralsgan", "rahinge", "gradient-penalty", "r1", "r2", "dragan",
            "adam", "rmsprop", "ttur", "n-critic", "lazy-regularization", "weight-clip", "ema",
            "label-smoothing", "instance-noise", "diffaugment"]
    tricks = gantrix.tricks()
    for name in mine:
        cls = tricks[name]
        assert cls.summary and cls.paper and cls.__doc__, name
        cls()  # the defaults are valid
