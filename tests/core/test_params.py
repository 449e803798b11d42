"""`gantrix.Param`: parsing from text, validating Python values, the allowed-range text."""
import math

import pytest

from gantrix import GantrixError, Param, ParamError
from gantrix.params import normalize_key


def test_allowed_text_covers_every_shape():
    assert Param("w", float, 1.0, low=0).allowed == "finite float in [0, inf)"
    assert Param("lr", float, 1.0, low=0, low_open=True).allowed == "finite float in (0, inf)"
    assert Param("b", float, 0.5, low=0, high=1, high_open=True).allowed == "finite float in [0, 1)"
    assert Param("t", float, 0.9, low=0.5, high=1).allowed == "finite float in [0.5, 1]"
    assert Param("n", int, 5, high=10).allowed == "int in (-inf, 10]"
    assert Param("x", float, 0.0).allowed == "any finite float"
    assert Param("flag", bool, False).allowed == "true or false"
    assert Param("kind", str, "a", choices=("a", "b")).allowed == "one of 'a', 'b'"
    assert Param("lr_g", float, None, low=0, optional=True).allowed == "finite float in [0, inf) or none"


@pytest.mark.parametrize("raw, value", [("3", 3), (" 7 ", 7), ("-2", -2)])
def test_parse_int(raw, value):
    assert Param("n", int, 1).parse(raw, "t") == value


@pytest.mark.parametrize("raw, value", [("0.5", 0.5), ("1e-4", 1e-4), ("2", 2.0), ("1e300", 1e300)])
def test_parse_float(raw, value):
    parsed = Param("x", float, 1.0).parse(raw, "t")
    assert parsed == value and isinstance(parsed, float)


@pytest.mark.parametrize("raw", ["true", "True", "yes", "on", "1"])
def test_parse_bool_true(raw):
    assert Param("b", bool, False).parse(raw, "t") is True


@pytest.mark.parametrize("raw", ["false", "FALSE", "no", "off", "0"])
def test_parse_bool_false(raw):
    assert Param("b", bool, True).parse(raw, "t") is False


def test_parse_str_and_choices():
    p = Param("kind", str, "sgan", choices=("sgan", "lsgan"))
    assert p.parse("lsgan", "t") == "lsgan"
    with pytest.raises(ParamError, match=r"'kind' got 'wgan'; allowed: one of 'sgan', 'lsgan'"):
        p.parse("wgan", "t")


@pytest.mark.parametrize("raw", ["none", "None", "null", ""])
def test_optional_reads_none(raw):
    assert Param("lr_g", float, None, low=0, optional=True).parse(raw, "t") is None


def test_none_is_refused_unless_optional():
    with pytest.raises(ParamError, match="'w' got None"):
        Param("w", float, 1.0).validate(None, "t")
    with pytest.raises(ParamError, match="'w' got 'none'"):
        Param("w", float, 1.0).parse("none", "t")


def test_range_bounds_inclusive_and_open():
    closed = Param("b", float, 0.5, low=0, high=1)
    assert closed.validate(0.0, "t") == 0.0 and closed.validate(1.0, "t") == 1.0
    half_open = Param("b", float, 0.5, low=0, high=1, low_open=True, high_open=True)
    for edge in (0.0, 1.0):
        with pytest.raises(ParamError):
            half_open.validate(edge, "t")
    assert half_open.validate(0.999, "t") == 0.999


def test_error_names_trick_param_value_and_range():
    p = Param("weight", float, 10.0, low=0)
    with pytest.raises(ParamError) as exc:
        p.parse("-1", "gradient-penalty")
    assert str(exc.value) == "gradient-penalty: parameter 'weight' got -1.0; allowed: finite float in [0, inf)"
    with pytest.raises(ParamError, match=r"parameter 'weight' got 'ten'; allowed: finite float in \[0, inf\)"):
        p.parse("ten", "gradient-penalty")


def test_param_error_is_a_gantrix_error_and_value_error():
    with pytest.raises(GantrixError):
        Param("n", int, 1).parse("x", "t")
    with pytest.raises(ValueError):
        Param("n", int, 1).parse("x", "t")


@pytest.mark.parametrize("raw", ["maybe", "2", ""])
def test_bad_bool_text(raw):
    with pytest.raises(ParamError, match="allowed: true or false"):
        Param("b", bool, False).parse(raw, "t")


def test_validate_coerces_gently_and_only_gently():
    f = Param("x", float, 1.0)
    assert f.validate(3, "t") == 3.0 and isinstance(f.validate(3, "t"), float)
    i = Param("n", int, 1)
    assert i.validate(4.0, "t") == 4 and isinstance(i.validate(4.0, "t"), int)
    with pytest.raises(ParamError):
        i.validate(4.5, "t")
    with pytest.raises(ParamError):
        i.validate(True, "t")  # a bool is not a count
    with pytest.raises(ParamError):
        Param("b", bool, False).validate(1, "t")
    with pytest.raises(ParamError):
        f.validate("1.0", "t")
    with pytest.raises(ParamError):
        Param("s", str, "a").validate(1, "t")


def test_nan_is_never_allowed():
    with pytest.raises(ParamError, match="got nan"):
        Param("x", float, 1.0).parse("nan", "t")


def test_int_text_must_be_an_integer():
    with pytest.raises(ParamError, match="'n' got '2.5'; allowed: int in \\[1, inf\\)"):
        Param("n", int, 5, low=1).parse("2.5", "n-critic")


def test_unsupported_type_is_refused_at_declaration():
    with pytest.raises(TypeError, match="'shape'"):
        Param("shape", tuple, ())


def test_normalize_key_accepts_kebab_case():
    assert normalize_key(" one-sided ") == "one_sided"
    assert normalize_key("lr_g") == "lr_g"
