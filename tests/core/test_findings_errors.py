"""`Finding` and the relation records (`gantrix.findings`), and the errors meant for people
(`gantrix.errors`)."""
import pytest

from gantrix import Clash, CompositionError, Finding, GantrixError, Replaces, Requires, UnknownNameError
from gantrix.findings import as_relation


def test_finding_reads_as_one_line():
    f = Finding("warning", "momentum hurts", ("weight-clip", "adam"), "Arjovsky et al. 2017")
    assert str(f) == "warning: [weight-clip + adam] momentum hurts (Arjovsky et al. 2017)"
    assert str(Finding("note", "plain")) == "note: plain"


def test_finding_severity_is_checked():
    with pytest.raises(ValueError, match="severity must be one of"):
        Finding("fatal", "x")


def test_bare_tags_become_records_except_for_clashes():
    assert as_relation("optimizer", Requires) == Requires("optimizer")
    assert as_relation("weight-clip", Replaces) == Replaces("weight-clip")
    clash = Clash("optimizer", "one only")
    assert as_relation(clash, Clash) is clash and clash.severity == "error"


def test_unknown_name_suggests_close_matches_and_reads_plainly():
    exc = UnknownNameError("trick", "gradient-penalti", ["gradient-penalty", "r1", "wgan"])
    assert exc.suggestions == ["gradient-penalty"]
    assert str(exc) == "unknown trick 'gradient-penalti'; did you mean 'gradient-penalty'?"
    assert isinstance(exc, GantrixError) and isinstance(exc, KeyError)
    assert str(UnknownNameError("recipe", "zzz", ["wgan"])) == "unknown recipe 'zzz'"


def test_composition_error_lists_only_the_errors_but_keeps_every_finding():
    findings = [Finding("error", "two losses", ("a", "b")), Finding("warning", "w"), Finding("error", "no loss")]
    exc = CompositionError(findings)
    assert exc.findings == findings
    assert str(exc) == "the composition has 2 error(s):\n  error: [a + b] two losses\n  error: no loss"
