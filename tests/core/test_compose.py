"""The composition checker (`gantrix.compose`): one loss, replaces, requires, conflicts,
defaults; and `Composition` itself. Test-local tricks keep these tests independent of the
built-in catalogue; the last tests use the built-in losses."""
from types import SimpleNamespace

import pytest
import torch

from gantrix import (Architecture, Clash, Composition, CompositionError, Loss, Param, Policy,
                     Recipe, Regularizer, Replaces, Requires, hookimpl)
from gantrix.compose import DEFAULT_OPTIMIZER, resolve


class LossA(Loss):
    name = "t-loss-a"
    provides = ("t-bce",)

    def d_loss(self, real_logits, fake_logits):
        return fake_logits.mean() - real_logits.mean()


class LossB(Loss):
    name = "t-loss-b"


class Penalty(Regularizer):
    name = "t-penalty"
    provides = ("t-lipschitz",)
    replaces = (Replaces("t-clip", "the penalty supersedes clipping", "Paper P"),)
    conflicts = (Clash("t-bn", "BatchNorm breaks per-sample gradients", "Paper Q"),)


class Clip(Policy):
    name = "t-clip"
    params = (Param("c", float, 0.01, low=0, low_open=True),)
    conflicts = (Clash("momentum-optimizer", "momentum hurts under clipping", "Paper R",
                       severity="warning"),)


class _Optimizer(Policy):
    params = (Param("beta1", float, 0.5, low=0, high=1, high_open=True),)
    provides = ("optimizer",)
    conflicts = (Clash("optimizer", "one optimizer per composition"),)

    def features(self):
        return super().features() | ({"momentum-optimizer"} if self.beta1 > 0 else set())


class OptA(_Optimizer):
    name = "t-opt-a"


class OptB(_Optimizer):
    name = "t-opt-b"


class Arch(Architecture):
    name = "t-arch"
    params = (Param("norm", str, "batch", choices=("batch", "layer")),)

    def features(self):
        return super().features() | ({"t-bn"} if self.norm == "batch" else set())


class Smooth(Regularizer):
    name = "t-smooth"
    requires = (Requires("t-bce", "it rewrites the BCE real term", "Paper S"),)


class Steps(Policy):
    name = "t-steps"
    params = (Param("n", int, 5, low=1),)

    @hookimpl
    def gantrix_critic_steps(self, step):
        return self.n


class OtherSteps(Steps):
    name = "t-steps-other"


@pytest.fixture(autouse=True)
def tricks(add_tricks):
    add_tricks(LossA, LossB, Penalty, Clip, OptA, OptB, Arch, Smooth, Steps, OtherSteps)


def check(*tricks, recipe=None):
    composed, findings = resolve(Recipe(*tricks, recipe=recipe))
    return [t.name for t in composed], findings


def only(findings, severity):
    return [f for f in findings if f.severity == severity]


def test_one_loss_composes_with_the_default_optimizer_note():
    names, findings = check("t-loss-a")
    assert names == ["t-loss-a"]
    assert [str(f) for f in findings] == [f"note: no optimizer trick: the core uses the {DEFAULT_OPTIMIZER}"]


def test_missing_loss_is_an_error_listing_the_losses():
    names, findings = check("t-clip", "t-opt-a")
    [error] = only(findings, "error")
    assert error.message.startswith("no loss: add exactly one of ")
    assert {"t-loss-a", "t-loss-b"} <= set(error.message.removeprefix("no loss: add exactly one of ").split(", "))


def test_two_losses_are_an_error_naming_both():
    _, findings = check("t-loss-a", "t-loss-b", "t-opt-a")
    [error] = only(findings, "error")
    assert error.tricks == ("t-loss-a", "t-loss-b")
    assert "more than one loss" in error.message


def test_two_recipe_losses_are_an_error_too(add_recipe):
    add_recipe("t-two", {"tricks": ["t-loss-a", "t-loss-b"]})
    assert only(check(recipe="t-two")[1], "error")[0].tricks == ("t-loss-a", "t-loss-b")


def test_a_user_loss_replaces_the_recipe_loss(add_recipe):
    add_recipe("t-r", {"tricks": ["t-loss-a", "t-opt-a"]})
    names, findings = check("t-loss-b", recipe="t-r")
    assert names == ["t-opt-a", "t-loss-b"]
    assert [str(f) for f in findings] == ["note: [t-loss-b + t-loss-a] t-loss-b replaces the recipe's loss t-loss-a"]


def test_replaces_drops_the_recipe_trick_with_a_note(add_recipe):
    add_recipe("t-clipped", {"tricks": ["t-loss-a", "t-clip", "t-opt-a:beta1=0"]})
    names, findings = check("t-penalty", recipe="t-clipped")
    assert names == ["t-loss-a", "t-opt-a", "t-penalty"]
    assert [str(f) for f in findings] == [
        "note: [t-penalty + t-clip] t-penalty replaces the recipe's t-clip: "
        "the penalty supersedes clipping (Paper P)"]


def config_file(tmp_path, tricks):
    path = tmp_path / "mine.toml"
    path.write_text("tricks = [" + ", ".join(f'"{t}"' for t in tricks) + "]\n")
    return path


def test_a_command_line_loss_replaces_a_config_files_loss(tmp_path):
    path = config_file(tmp_path, ["t-loss-a", "t-opt-a"])
    composed, findings = resolve(Recipe("t-loss-b", config=path))
    assert [t.name for t in composed] == ["t-opt-a", "t-loss-b"]
    assert [str(f) for f in findings] == [
        "note: [t-loss-b + t-loss-a] t-loss-b replaces the config file's loss t-loss-a"]


def test_a_config_files_loss_replaces_its_recipes(tmp_path, add_recipe):
    add_recipe("t-r", {"tricks": ["t-loss-a", "t-opt-a"]})
    path = tmp_path / "mine.toml"
    path.write_text('recipe = "t-r"\ntricks = ["t-loss-b"]\n')
    composed, findings = resolve(Recipe(config=path))
    assert [t.name for t in composed] == ["t-opt-a", "t-loss-b"]
    assert "t-loss-b replaces the recipe's loss t-loss-a" in [f.message for f in findings]


def test_two_losses_in_one_config_file_are_an_error(tmp_path):
    path = config_file(tmp_path, ["t-loss-a", "t-loss-b", "t-opt-a"])
    assert only(resolve(Recipe(config=path))[1], "error")[0].tricks == ("t-loss-a", "t-loss-b")


def test_a_command_line_trick_replaces_a_config_files_trick(tmp_path):
    path = config_file(tmp_path, ["t-loss-a", "t-clip", "t-opt-a:beta1=0"])
    composed, findings = resolve(Recipe("t-penalty", config=path))
    assert [t.name for t in composed] == ["t-loss-a", "t-opt-a", "t-penalty"]
    assert [str(f) for f in findings] == [
        "note: [t-penalty + t-clip] t-penalty replaces the config file's t-clip: "
        "the penalty supersedes clipping (Paper P)"]


def test_replaces_inside_one_config_file_is_an_error(tmp_path):
    path = config_file(tmp_path, ["t-loss-a", "t-clip", "t-penalty", "t-opt-a:beta1=0"])
    [error] = only(resolve(Recipe(config=path))[1], "error")
    assert error.tricks == ("t-penalty", "t-clip")


def test_replaces_between_two_user_tricks_is_an_error():
    names, findings = check("t-loss-a", "t-clip", "t-penalty", "t-opt-a:beta1=0")
    assert "t-clip" in names
    [error] = only(findings, "error")
    assert str(error) == ("error: [t-penalty + t-clip] t-penalty replaces t-clip: the penalty "
                          "supersedes clipping; use one of them (Paper P)")


def test_requires_missing_names_the_providers():
    _, findings = check("t-loss-b", "t-smooth", "t-opt-a")
    [error] = only(findings, "error")
    assert str(error) == ("error: [t-smooth] t-smooth requires t-bce: it rewrites the BCE real "
                          "term (add one of: t-loss-a) (Paper S)")


def test_a_requirement_may_be_a_warning(add_tricks):
    class Wants(Loss):
        name = "t-wants"
        requires = (Requires("t-lipschitz", "unbounded without it", "Paper W", severity="warning"),)

    add_tricks(Wants)
    _, findings = check("t-wants", "t-opt-a")
    assert [str(f) for f in findings] == [
        "warning: [t-wants] t-wants requires t-lipschitz: unbounded without it (add one of: "
        "t-penalty) (Paper W)"]
    assert check("t-wants", "t-penalty", "t-opt-a")[1] == []
    assert Recipe("t-wants", "t-opt-a").compose().warnings == findings


def test_requires_met_by_a_provided_tag():
    assert not only(check("t-loss-a", "t-smooth", "t-opt-a")[1], "error")


def test_conflict_through_a_parameter_dependent_tag():
    _, findings = check("t-loss-a", "t-penalty", "t-arch:norm=batch", "t-opt-a")
    [error] = only(findings, "error")
    assert error.tricks == ("t-penalty", "t-arch") and error.paper == "Paper Q"
    assert not only(check("t-loss-a", "t-penalty", "t-arch:norm=layer", "t-opt-a")[1], "error")


def test_warning_against_the_default_optimizer():
    _, findings = check("t-loss-a", "t-clip")
    [warning] = only(findings, "warning")
    assert warning.tricks == ("t-clip", DEFAULT_OPTIMIZER)
    assert warning.message == "momentum hurts under clipping"
    assert only(findings, "note")  # the default optimizer is announced


def test_an_optimizer_trick_removes_the_default_and_its_tags():
    _, findings = check("t-loss-a", "t-clip", "t-opt-a:beta1=0")
    assert findings == []
    _, findings = check("t-loss-a", "t-clip", "t-opt-a:beta1=0.9")
    assert [f.tricks for f in findings] == [("t-clip", "t-opt-a")]


def test_two_optimizers_give_one_error_not_two():
    _, findings = check("t-loss-a", "t-opt-a", "t-opt-b")
    assert [(f.severity, f.tricks) for f in findings] == [("error", ("t-opt-a", "t-opt-b"))]


def test_findings_are_sorted_errors_first():
    _, findings = check("t-loss-a", "t-loss-b", "t-clip")
    assert [f.severity for f in findings] == ["error", "warning", "note"]


def test_repeated_trick_merges_parameters_later_wins(add_recipe):
    names, _ = check("t-loss-a", "t-steps:n=2", "t-steps:3")
    assert names == ["t-loss-a", "t-steps"]
    add_recipe("t-steps5", {"tricks": ["t-loss-a", "t-steps:n=5"]})
    composition = Composition(Recipe("t-steps:n=1", recipe="t-steps5"))
    assert composition.get("t-steps").n == 1


def test_composition_wires_the_tricks():
    composition = Recipe("t-loss-a", "t-steps:3", "t-opt-a").compose()
    assert composition.specs() == ["t-loss-a", "t-steps:n=3", "t-opt-a"]
    assert composition.loss.name == "t-loss-a"
    assert composition.get("t-steps").n == 3 and composition.get("t-clip") is None
    assert composition.warnings == []
    assert composition.hook.gantrix_critic_steps(step=0) == 3
    batch = SimpleNamespace(real_logits=torch.tensor([2.0]), fake_logits=torch.tensor([-1.0]))
    assert composition.hook.gantrix_discriminator_loss(batch=batch).item() == -3.0


def test_first_listed_trick_wins_a_firstresult_hook():
    both = Composition(Recipe("t-loss-a", "t-steps-other:7", "t-steps:2", "t-opt-a"))
    assert both.hook.gantrix_critic_steps(step=0) == 7
    swapped = Composition(Recipe("t-loss-a", "t-steps:2", "t-steps-other:7", "t-opt-a"))
    assert swapped.hook.gantrix_critic_steps(step=0) == 2


def test_composition_with_errors_raises_with_all_findings():
    with pytest.raises(CompositionError) as exc:
        Recipe("t-loss-a", "t-loss-b", "t-clip").compose()
    assert [f.severity for f in exc.value.findings] == ["error", "warning", "note"]
    assert str(exc.value).startswith("the composition has 1 error(s):\n  error: [t-loss-a + t-loss-b]")


# --------------------------------------------------------------------------- built-in losses


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "wgan", "hinge", "lsgan"])
def test_each_builtin_loss_composes_alone(loss):
    composition = Recipe().extend([loss]).compose()  # the bare trick
    assert composition.specs() == [loss]
    # the default-optimizer note (and, for wgan, the warning that it wants a Lipschitz
    # constraint)
    expected = ["warning", "note"] if loss == "wgan" else ["note"]
    assert [f.severity for f in composition.findings] == expected


def test_builtin_losses_two_at_once_are_an_error():
    _, findings = resolve(Recipe("wgan", "hinge"))
    assert [(f.severity, f.tricks) for f in findings if f.severity == "error"] == [("error", ("wgan", "hinge"))]


def test_builtin_user_loss_replaces_a_recipe_loss(add_recipe):
    add_recipe("t-ns", {"tricks": ["nonsaturating"]})
    composition = Composition(Recipe("lsgan", recipe="t-ns"))
    assert composition.specs() == ["lsgan"]
    assert "lsgan replaces the recipe's loss nonsaturating" in [f.message for f in composition.findings]


LIPSCHITZ = "wgan requires lipschitz-constraint"


def test_wgan_without_a_lipschitz_constraint_is_a_warning_with_the_papers():
    _, findings = resolve(Recipe("wgan", "n-critic:5", "adam:beta1=0"))
    [warning] = findings
    assert warning.severity == "warning" and warning.tricks == ("wgan",)
    assert warning.message.startswith(LIPSCHITZ + ": the critic must be K-Lipschitz")
    assert warning.message.endswith("(add one of: dragan, gradient-penalty, spectral-norm, weight-clip)")
    assert "Arjovsky" in warning.paper and "Gulrajani" in warning.paper


@pytest.mark.parametrize("constraint, lipschitz", [
    ("weight-clip", True), ("gradient-penalty", True), ("gradient-penalty:one_sided=true", True),
    ("dragan", True), ("spectral-norm", True), ("spectral-norm:role=both", True),
    ("spectral-norm:role=generator", False), ("r1", False), ("ema", False)])
def test_which_tricks_constrain_the_wasserstein_critic(constraint, lipschitz):
    _, findings = resolve(Recipe("wgan", constraint, "rmsprop"))
    assert any(f.message.startswith(LIPSCHITZ) for f in findings) is not lipschitz
