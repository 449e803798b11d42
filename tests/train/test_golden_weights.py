"""Behaviour kept bit for bit: every built-in recipe trains, on ring8 and on digits, exactly
the weights it trained when `golden_weights.json` was recorded (see `golden_weights.py`)."""
import json

import pytest

from golden_weights import CASES, GOLDEN, train_one

RECORDED = json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_trains_the_recorded_weights(case):
    recipe, data = case.split("@")
    assert train_one(recipe, data, CASES[data]) == RECORDED[case]
