"""The reference ablation, run once per session (`ablation_cases.SMALL`)."""
from __future__ import annotations

import pytest

from ablation_cases import SMALL


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """The small ablation over 2 seeds, run in this process with one job: what every other
    way of running it (resumed, planned and collected, in workers) must reproduce."""
    from gantrix.ablation_run import ablate

    out = tmp_path_factory.mktemp("reference") / "ab"
    lines: list[str] = []
    table = ablate(**SMALL, seeds=2, jobs=1, out=out, report=lines.append)
    return table, out, lines
