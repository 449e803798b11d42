"""Real bounds: no float parameter or setting takes inf or nan, every built-in trick's
number has a finite range, a seed beyond 32 bits is refused, and a parameter given twice
in one trick is refused rather than silently taking the last value."""
import math

import pytest

from gantrix import registry
from gantrix.errors import ParamError
from gantrix.params import Param
from gantrix.settings import SEED_HIGH, SETTINGS

def numbers(cls):
    return [p for p in cls.params if p.type in (int, float) and p.choices is None]


def builtin_tricks():
    return sorted((name, cls) for name, cls in registry.catalogue().tricks.items()
                  if cls.plugin == registry.BUILTIN_DIST)


@pytest.mark.parametrize("raw", ["inf", "-inf", "Infinity", "nan", "NaN", "1e999"])
def test_non_finite_floats_are_refused_from_text(raw):
    with pytest.raises(ParamError, match=r"parameter 'x' got .*allowed: any finite float"):
        Param("x", float, 1.0).parse(raw, "t")


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_floats_are_refused_from_python(value):
    with pytest.raises(ParamError, match=r"allowed: finite float in \[0, inf\) or none"):
        Param("w", float, 1.0, low=0.0, optional=True).validate(value, "t")


def test_every_builtin_trick_number_has_a_finite_range():
    unbounded = [f"{name}:{p.name}" for name, cls in builtin_tricks() for p in numbers(cls)
                 if p.low is None or p.high is None or not math.isfinite(p.high)]
    assert unbounded == []
    assert len(builtin_tricks()) > 30  # the check saw the catalogue


@pytest.mark.parametrize("spec, message", [
    ("gradient-penalty:weight=inf", "'weight' got inf"),
    ("gradient-penalty:weight=nan", "'weight' got nan"),
    ("gradient-penalty:weight=1e5", "allowed: finite float in [0, 10000]"),
    ("weight-clip:c=1e300", "'c' got 1e+300; allowed: finite float in (0, 10]"),
    ("n-critic:100000000", "'n' got 100000000; allowed: int in [1, 100]"),
    ("adam:lr=5", "allowed: finite float in (0, 1]"),
])
def test_out_of_range_trick_parameters_are_refused(spec, message):
    name, _, args = spec.partition(":")
    with pytest.raises(ParamError) as exc:
        registry.catalogue().tricks[name].parse_params(args)
    assert message in str(exc.value)


@pytest.mark.parametrize("args", ["weight=1,weight=2", "weight=1,weight=1", "5,weight=6",
                                  "one_sided=true,one-sided=false"])
def test_a_parameter_given_twice_is_refused(args):
    cls = registry.catalogue().tricks["gradient-penalty"]
    key = "one_sided" if "one" in args else "weight"
    with pytest.raises(ParamError, match=f"gradient-penalty: parameter '{key}' is given twice"):
        cls.parse_params(args)


def test_a_parameter_given_twice_as_python_keywords_is_refused():
    cls = registry.catalogue().tricks["gradient-penalty"]
    with pytest.raises(ParamError, match="'one_sided' is given twice"):
        cls(**{"one_sided": True, "one-sided": False})


def test_seeds_are_32_bit_and_fit_torch():
    import torch

    seed = SETTINGS["seed"]
    assert seed.validate(SEED_HIGH, "train") == 2**32 - 1
    torch.Generator().manual_seed(SEED_HIGH + 0x6D6972726F72)  # the flips' stream fits too
    with pytest.raises(ParamError, match=r"'seed' got 99999999999999999999999; "
                                         r"allowed: int in \[0, 4294967295\]"):
        seed.parse("99999999999999999999999", "train")


def test_every_number_setting_has_a_finite_range():
    open_ = [name for name, p in SETTINGS.items() if p.type in (int, float) and p.choices is None
             and (p.low is None or p.high is None)]
    assert open_ == []


def test_cli_refuses_a_huge_seed_with_its_range(gantrix_cli, tmp_path):
    result = gantrix_cli("train", "-t", "minimax", "--data", "ring8", "--steps", "1",
                         "--seed", "99999999999999999999999", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr == ("error: train: parameter 'seed' got 99999999999999999999999; "
                             "allowed: int in [0, 4294967295]\n")
    assert not (tmp_path / "run").exists()


@pytest.fixture
def gantrix_cli():
    from typer.testing import CliRunner

    from gantrix.cli.app import create_app

    return lambda *args: CliRunner().invoke(create_app(), list(args))
