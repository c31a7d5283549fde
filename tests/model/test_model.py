"""The reference model against hand computations, and the code under test against the
model (hypothesis over every job type, resolution, scale, duration and executionTime).

Hand figures use the 2026-11-01 card: price 0.5 credits/GPU-s everywhere, safety 1.5,
min_funded_gpu_seconds 6; gpu_seconds_per_clip_minute framing 20, overlay 30,
upscale 120 (scale 2 → ×0.25), track 40; resolution 720p ×0.5, 2160p ×4.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from tests.model import rates
from tests.model.wallets import Model

RC = rates.card("2026-11-01")


@pytest.mark.parametrize("job_type, duration, res, scale, hold, funded", [
    ("framing", 30, "1080p", None, 8, 16),     # est 10 GPU-s; ceil(10×1.5×0.5)=ceil(7.5)
    ("overlay", 30, "2160p", None, 45, 90),    # est 0.5×30×4 = 60; 60×0.75 = 45
    ("upscale", 30, "1080p", 4, 45, 90),       # est 0.5×120 = 60
    ("upscale", 30, "1080p", 2, 12, 24),       # est 15; ceil(11.25)
    ("track", 10, "720p", None, 3, 6),         # est 3.33; ceil(2.5)=3 = min funded 6 s × 0.5
    ("framing", 1, "720p", None, 3, 6),        # tiny: the min-funded floor (RunPod > 5 s)
    ("track", 7200, "1440p", None, 6408, 12816),  # 120×40×1.78 = 8544 GPU-s; ×0.75
])
def test_quote_by_hand(job_type, duration, res, scale, hold, funded):
    q = rates.quote(job_type, duration, res, scale, RC)
    assert (q.hold, q.max_gpu_seconds) == (hold, funded)


@pytest.mark.parametrize("job_type, ms, expected", [
    ("framing", 10_000, 5),    # 10 s × 0.5
    ("framing", 10_001, 6),    # ceil, never round-half
    ("framing", 200, 1),       # ceil(0.1) = 1 = min_charge
    ("framing", 0, 1),         # a completed job costs at least min_charge
    ("framing", 100_000, 8),   # capped by the hold
    ("upscale", 100, 2),       # upscale min_charge 2
])
def test_charge_by_hand(job_type, ms, expected):
    q = rates.quote(job_type, 30, "1080p", 4 if job_type == "upscale" else None, RC)
    assert rates.charge(q, ms) == expected


def test_cancel_charge_by_hand():
    q = rates.quote("track", 30, "1080p", None, RC)  # est 20, hold 15
    assert rates.cancel_charge(q, 0) == 0            # never ran: free
    assert rates.cancel_charge(q, 3_000) == 2        # ceil(1.5)
    assert rates.cancel_charge(q, 999_000) == 15     # capped by the hold


def test_share_by_hand():
    assert rates.share(2200, 2000, 1) == 2           # ceil(1.1)
    assert rates.share(2200, 2000, 1000) == 1100
    assert rates.share(2200, 2000, 2000) == 2200
    assert rates.share(2200, 2000, 5000) == 2200     # capped at the total


def test_wallet_by_hand():
    m = Model(RC)
    assert m.topup("t1", "u", "small") == 500
    assert m.topup("t2", "u", "medium") == 2200
    assert m.invoice("u", "price_gpubill_pro_monthly", 2) == 10_000
    assert m.job("j1", "u", "framing", 30, end="completed", execution_ms=10_000).charge == 5
    assert m.job("j2", "u", "upscale", 30, scale=4, end="cancelled").charge == 0
    j3 = m.job("j3", "u", "track", 10, "720p", end="cancelled", execution_ms=3_000)
    assert (j3.charge, j3.release) == (2, 1)
    assert m.job("j4", "u", "overlay", 30, end="failed", execution_ms=9_000).release == 12
    m.reversal("t2", "re_1", "refund", 1000, "succeeded")      # 1100 clawed back
    m.reversal("t2", "re_2", "refund", 500, "failed")          # failed: restored, 0
    m.reversal("t1", "dp_1", "dispute", 500, "won")            # won: reinstated, 0
    m.reversal("t1", "dp_2", "dispute", 100, "inquiry")        # no funds moved
    assert m.balance("u") == 500 + 2200 - 1100 + 10_000 - 5 - 0 - 2 - 0
    m.reversal("t1", "dp_1", "dispute", 500, "lost")
    assert m.balance("u") == 11_593 - 500
    assert m.balance("nobody") == 0


# ---- the code under test against the model ---------------------------------------

_types = st.sampled_from(sorted(RC["jobs"]))
_res = st.sampled_from(sorted(RC["resolution_factors"]))
_duration = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10_800), places=3)


def _params(job_type: str, draw_scale: int | None):
    job = RC["jobs"][job_type]
    return int(draw_scale) if "scale_factors" in job else None


@settings(max_examples=300, deadline=None)
@given(job_type=_types, res=_res, duration=_duration,
       scale=st.sampled_from([2, 4]), ms=st.integers(0, 50_000_000))
def test_pricing_matches_model(job_type, res, duration, scale, ms):
    # The code under test, compared with the model.
    from pricing.quote import JobParams, cancel_charge, charge, quote
    from pricing.ratecard import card_in_force

    scale = _params(job_type, scale)
    card = card_in_force()
    assert card.version == RC["version"]
    got = quote(job_type, JobParams(duration_s=duration, resolution=res, scale=scale),
                   card=card)
    want = rates.quote(job_type, duration, res, scale, RC)
    assert (got.hold_credits, got.max_gpu_seconds, got.min_charge) == \
        (want.hold, want.max_gpu_seconds, want.min_charge)
    assert got.execution_timeout_ms == want.max_gpu_seconds * 1000
    assert got.cancel_policy == want.cancel_policy
    assert charge(got, ms) == rates.charge(want, ms)
    assert cancel_charge(got, ms) == rates.cancel_charge(want, ms)


@settings(max_examples=300, deadline=None)
@given(pack=st.sampled_from(sorted(rates.packs())), cents=st.integers(0, 10_000))
def test_topup_share_matches_model(pack, cents):
    from ledger.topups import share

    p = rates.packs()[pack]
    assert share(p["credits"], p["price"], cents) == rates.share(p["credits"], p["price"], cents)
