"""`gantrix.Trick`: configuring with parameters, parsing them from text, ``spec()``, the
kinds' hook implementations."""
from types import SimpleNamespace

import pytest
import torch

from gantrix import Loss, Param, ParamError, Policy, Regularizer, UnknownNameError


class Steps(Policy):
    """Run several critic steps.

    Second paragraph of the long description.
    """

    name = "t-steps"
    summary = "several critic steps"
    params = (
        Param("n", int, 5, "critic steps", low=1),
        Param("warmup", bool, False),
        Param("lr_d", float, None, low=0, low_open=True, optional=True),
        Param("mode", str, "fixed", choices=("fixed", "ramp")),
    )
    provides = ("t-schedule",)

    def validate(self):
        if self.mode == "ramp" and not self.warmup:
            raise ParamError(f"{self.name}: mode='ramp' needs warmup=true")


class Bare(Policy):
    name = "t-bare"
    summary = "no parameters"


def test_defaults_fill_config_and_attributes():
    t = Steps()
    assert t.config == {"n": 5, "warmup": False, "lr_d": None, "mode": "fixed"}
    assert (t.n, t.warmup, t.lr_d, t.mode) == (5, False, None, "fixed")


def test_keywords_are_validated_and_kebab_case_is_accepted():
    t = Steps(**{"n": 3, "lr-d": 1e-3})
    assert t.n == 3 and t.lr_d == 1e-3
    with pytest.raises(ParamError, match="t-steps: parameter 'n' got 0; allowed: int in \\[1, inf\\)"):
        Steps(n=0)


def test_unknown_keyword_suggests_the_parameter():
    with pytest.raises(UnknownNameError) as exc:
        Steps(warmpu=True)
    assert exc.value.suggestions == ["warmup"]
    assert str(exc.value) == "unknown parameter of t-steps 'warmpu'; did you mean 'warmup'?"


def test_validate_checks_relations_between_parameters():
    with pytest.raises(ParamError, match="mode='ramp' needs warmup=true"):
        Steps(mode="ramp")
    assert Steps(mode="ramp", warmup=True).mode == "ramp"


def test_parse_params_key_values():
    assert Steps.parse_params("n=3,warmup=yes,lr-d=none") == {"n": 3, "warmup": True, "lr_d": None}
    assert Steps.parse_params("") == {}
    assert Steps.parse_params("n=2,,") == {"n": 2}


def test_parse_params_first_parameter_positionally():
    assert Steps.parse_params("7") == {"n": 7}
    assert Steps.parse_params("7,warmup=true") == {"n": 7, "warmup": True}


def test_parse_params_positional_only_first():
    with pytest.raises(ParamError, match="cannot read 'true'; write key=value \\(parameters: n, warmup, lr_d, mode\\)"):
        Steps.parse_params("7,true")


def test_parse_params_positional_without_parameters():
    with pytest.raises(ParamError, match="parameters: none"):
        Bare.parse_params("3")


def test_parse_params_unknown_key_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'mode'"):
        Steps.parse_params("mdoe=ramp")


def test_parse_params_bad_value_names_param_value_and_range():
    with pytest.raises(ParamError, match=r"t-steps: parameter 'n' got -1; allowed: int in \[1, inf\)"):
        Steps.parse_params("n=-1")  # text that parses but is out of range reports the number
    with pytest.raises(ParamError, match="parameter 'n' got 'five'; allowed: int in \\[1, inf\\)"):
        Steps.parse_params("five")


def test_spec_lists_only_changed_values_and_round_trips():
    assert Steps().spec() == "t-steps"
    t = Steps(n=3, warmup=True, mode="ramp")
    assert t.spec() == "t-steps:n=3,warmup=true,mode=ramp"
    name, _, args = t.spec().partition(":")
    assert Steps(**Steps.parse_params(args)).config == t.config


def test_spec_writes_none_for_an_optional_changed_to_none():
    class WithLr(Policy):
        name = "t-lr"
        params = (Param("lr", float, 1e-3, optional=True),)

    assert WithLr(lr=None).spec() == "t-lr:lr=none"
    assert WithLr(**WithLr.parse_params("lr=none")).lr is None


def test_features_are_name_kind_and_provides():
    assert Steps().features() == {"t-steps", "policy", "t-schedule"}


def test_describe_is_the_dedented_docstring_or_the_summary():
    assert Steps.describe() == "Run several critic steps.\n\nSecond paragraph of the long description."
    assert Bare.describe() == "no parameters"


def test_repr_shows_the_configuration():
    assert repr(Steps(n=2)) == "<Steps t-steps(n=2, warmup=False, lr_d=None, mode='fixed')>"


class Gap(Loss):
    name = "t-gap"
    generator_uses_real = False

    def d_loss(self, real_logits, fake_logits):
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, real_logits, fake_logits):
        assert real_logits is None
        return -fake_logits.mean()


def test_loss_hooks_read_the_batch_logits():
    batch = SimpleNamespace(real_logits=torch.tensor([1.0, 3.0]), fake_logits=torch.tensor([0.0, -2.0]))
    loss = Gap()
    assert loss.gantrix_discriminator_loss(batch).item() == pytest.approx(-1.0 - 2.0)
    assert loss.gantrix_generator_loss(batch).item() == pytest.approx(1.0)


def test_loss_without_methods_says_what_is_missing():
    class Half(Loss):
        name = "t-half"

    with pytest.raises(NotImplementedError, match="Half must define d_loss"):
        Half().d_loss(None, None)


class Square(Regularizer):
    name = "t-square"

    def d_term(self, batch):
        return batch.real_logits.square().mean()


def _batch(step, interval):
    return SimpleNamespace(step=step, real_logits=torch.tensor([2.0]),
                           regularization_interval=lambda trick: interval)


def test_regularizer_term_is_named_and_applied_every_step_by_default():
    assert Square().gantrix_discriminator_terms(_batch(3, 1))["t-square"].item() == 4.0
    assert Square().gantrix_generator_terms(_batch(3, 1)) is None


def test_lazy_regularizer_runs_every_kth_step_scaled_by_k():
    reg = Square()
    assert reg.gantrix_discriminator_terms(_batch(5, 4)) is None
    assert reg.gantrix_discriminator_terms(_batch(8, 4))["t-square"].item() == 16.0
