"""Lifetimes from the quote and RunPod's bounds (issue 11 case 2). RunPod, "Send API
requests" → execution policies: executionTimeout > 5000 ms; ttl >= 10 s, <= 1 week."""
from __future__ import annotations

from decimal import Decimal

import pytest

from pricing import JobParams, QuoteError, card_in_force, quote
from pricing.ratecard import LifetimeError

WEEK_S = 7 * 24 * 3600


def test_lifetimes_follow_the_funded_time() -> None:
    card = card_in_force()  # queue 900 s, result 600 s, settle 300 s (rate card data)
    life = card.lifetimes(10_800)
    assert (life.execution_timeout_ms, life.ttl_ms, life.hold_s) == (10_800_000, 12_300_000, 12_600)


@pytest.mark.parametrize("funded", [5, 0])
def test_execution_timeout_of_5_s_or_less_is_refused(funded: int) -> None:
    with pytest.raises(LifetimeError):
        card_in_force().lifetimes(funded)


def test_ttl_past_a_week_is_refused_and_the_longest_that_fits_is_not() -> None:
    card = card_in_force()
    fits = WEEK_S - 900 - 600
    assert card.lifetimes(fits).ttl_ms == WEEK_S * 1000
    with pytest.raises(LifetimeError, match="1 week"):
        card.lifetimes(fits + 1)


def test_quote_refuses_what_runpod_cannot_run() -> None:
    """A card whose queue allowance alone is a week: every quote is a 422 (QuoteError on
    params.duration_s, mapped by the receiver as for any unpriceable parameter)."""
    stretched = card_in_force().model_copy(update={"queue_allowance_s": WEEK_S})
    with pytest.raises(QuoteError, match="1 week") as err:
        quote("framing", JobParams(duration_s=Decimal(30)), card=stretched)
    assert err.value.field == "duration_s"


def test_longest_clip_of_the_current_card_is_runnable() -> None:
    q = quote("upscale", JobParams(duration_s=Decimal(10_800), resolution="2160p", scale=4))
    assert q.max_gpu_seconds == 129_600  # 180 min × 120 × 4 × 1.5: 36 h, within a week
