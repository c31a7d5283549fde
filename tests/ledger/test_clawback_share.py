"""The claw-back rule (docs/decisions.md): each refund/dispute step posts the difference
to ``share(taken) = ceil(credits × taken / amount_total)``, so any split of a full refund
claws back exactly every credit, and no prefix ever claws back more than its share."""
from __future__ import annotations

import random

from ledger.topups import share
from pricing import load_packs


def test_share_edges() -> None:
    assert share(2200, 2000, 0) == 0 and share(2200, 2000, 2000) == 2200
    assert share(2200, 2000, 1) == 2 and share(2200, 2000, 333) == 367
    assert share(500, 500, 5000) == 500  # capped at the top-up


def test_any_split_of_a_full_refund_sums_exactly() -> None:
    rng = random.Random(3)
    for pack in load_packs().values():
        for _ in range(300):
            cuts = sorted(rng.sample(range(1, pack.price), rng.randint(0, 6)))
            parts = [b - a for a, b in zip([0, *cuts], [*cuts, pack.price], strict=True)]
            taken, clawed = 0, 0
            for cents in parts:
                taken += cents
                step = share(pack.credits, pack.price, taken) - clawed
                assert step >= 0
                clawed += step
                # never more than the exact proportion, rounded up once
                assert clawed * pack.price < pack.credits * taken + pack.price
            assert clawed == pack.credits
