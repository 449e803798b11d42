"""The small ablation the tests run: a composition that trains in seconds."""
from __future__ import annotations

#: nonsaturating (the only loss: its variant is refused), n-critic:2 and lr-decay on ring8
SMALL = dict(tricks=("nonsaturating", "n-critic:2", "lr-decay"), data="ring8", steps=30)


def values(table) -> dict:
    """Each variant's metrics per seed, and its verdict: what must not depend on how the
    cells were run."""
    return {r.name: (r.values, {k: (i.mean, i.half) for k, i in r.others.items()}, r.verdict,
                     r.refused) for r in table.rows}
