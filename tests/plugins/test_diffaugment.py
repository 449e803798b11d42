"""diffaugment's translation and cutout against DiffAugment's reference (Zhao et al. 2020):
sizes rounded half up (int(x + 0.5)), and a cutout whose centre is uniform over every
position the reference allows, so opposite borders are cut equally often."""
from __future__ import annotations

import pytest
import torch

import gantrix


def augment(policy: str, x: torch.Tensor) -> torch.Tensor:
    return gantrix.make("diffaugment", policy=policy).augment(x)


def shifts(side: int, n: int = 2000) -> set[int]:
    """The vertical shifts translation applied to ``n`` side×side images, read off the pixel
    values (every pixel holds 1 + its own index, so a moved pixel tells where it came from)."""
    x = (1 + torch.arange(side * side, dtype=torch.float64)).view(1, 1, side, side).repeat(n, 1, 1, 1)
    out = augment("translation", x).flatten(1)
    where = (out > 0).to(torch.int8).argmax(1)           # some pixel that still holds a value
    source = out.gather(1, where[:, None]).squeeze(1).long() - 1
    return set((where // side - source // side).tolist())


@pytest.mark.parametrize("side,largest", [(4, 1), (8, 1), (20, 3), (12, 2), (32, 4)])
def test_translation_shifts_up_to_an_eighth_rounded_half_up(side, largest):
    # 4/8 = 0.5 and 20/8 = 2.5 round up to 1 and 3 (Python's round gives 0 and 2)
    assert shifts(side) == set(range(-largest, largest + 1))


@pytest.mark.parametrize("side,cut", [(5, 3), (4, 2), (7, 4), (8, 4)])
def test_cutout_is_half_the_side_rounded_half_up(side, cut):
    out = augment("cutout", torch.ones(4000, 1, side, side, dtype=torch.float64))
    zero = out[:, 0] == 0
    rows, cols = zero.any(2).sum(1), zero.any(1).sum(1)
    assert rows.max() == cut and cols.max() == cut      # 5/2 = 2.5 -> 3 (round gives 2)
    assert zero.flatten(1).sum(1).max() == cut * cut


def reference_row_odds(h: int, s: int) -> torch.Tensor:
    """How often each row is cut when the cut's centre is uniform over 0 … h − (s mod 2) and
    it covers rows centre − ⌊s/2⌋ … centre − ⌊s/2⌋ + s − 1 (DiffAugment's rand_cutout)."""
    centres = range(h + 1 - s % 2)
    hits = torch.zeros(h, dtype=torch.float64)
    for c in centres:
        first = c - s // 2
        hits[max(0, first):min(h, first + s)] += 1
    return hits / len(centres)


@pytest.mark.parametrize("side", [8, 6, 16])
def test_cutout_cuts_opposite_borders_equally_often_as_the_reference(side):
    n = 40000
    torch.manual_seed(1)
    out = augment("cutout", torch.ones(n, 1, side, side, dtype=torch.float64))
    zero = out[:, 0] == 0
    odds = reference_row_odds(side, int(side * 0.5 + 0.5))
    tolerance = 4 * (0.25 / n) ** 0.5                     # four standard errors at worst
    for seen in (zero.any(2).double().mean(0), zero.any(1).double().mean(0)):  # rows, columns
        torch.testing.assert_close(seen, odds, rtol=0, atol=tolerance)
        torch.testing.assert_close(seen, seen.flip(0), rtol=0, atol=2 * tolerance)


def test_flip_mirrors_about_half_of_the_images_and_keeps_the_rest():
    from gantrix.plugin import flip

    torch.manual_seed(0)
    x = torch.randn(400, 2, 5, 7)
    y = flip(x)
    mirrored = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(y, x)])
    kept = torch.tensor([torch.equal(a, b) for a, b in zip(y, x)])
    assert bool((mirrored ^ kept).all())  # each image is exactly one of the two
    assert 160 <= int(mirrored.sum()) <= 240  # Binomial(400, 1/2): mean 200, sd 10
    assert gantrix.make("diffaugment", policy="flip+translation").policy == "flip+translation"
