"""pricing at its edges, with every expected figure computed here from the rate-card
TOML itself (not from ``pricing``): the quote's frozen fields, rounding directions,
the funded-time floor, RunPod's lifetime bounds, and RunPod's bill. Written to kill the
mutants ``make mutation`` found surviving (docs/proof.md)."""
from __future__ import annotations

import math
import tomllib
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pricing import JobParams, QuoteError, cancel_charge, charge, quote, runpod_billed_usd
from pricing.ratecard import RATECARD_DIR, LifetimeError, RateCard, card_by_version, card_in_force

TOML = tomllib.loads((RATECARD_DIR / "2026-11-01.toml").read_text())


def p(duration_s: str = "30", resolution: str = "1080p", scale: int | None = None) -> JobParams:
    return JobParams(duration_s=Decimal(duration_s), resolution=resolution, scale=scale)


def card_with(**job_overrides: object) -> RateCard:
    """The real card with framing's rate changed (a price whose hold/price is fractional)."""
    data = tomllib.loads((RATECARD_DIR / "2026-11-01.toml").read_text())
    data["jobs"]["framing"].update(job_overrides)
    return RateCard.model_validate(data)


@pytest.mark.parametrize("job_type", ["framing", "overlay", "upscale", "track"])
def test_quote_freezes_the_cards_figures(job_type: str) -> None:
    row = TOML["jobs"][job_type]
    q = quote(job_type, p(scale=4 if job_type == "upscale" else None))
    assert (q.job_type, q.ratecard_version, q.endpoint_id, q.gpu) == (
        job_type, TOML["version"], row["endpoint_id"], row["gpu"])
    assert q.credits_per_gpu_second == Decimal(row["credits_per_gpu_second"])
    assert q.min_charge == row["min_charge"]
    assert q.gpu_usd_per_second == Decimal(TOML["gpus"][row["gpu"]]["usd_per_second"])


def test_estimate_is_rounded_up_to_a_millisecond_of_gpu() -> None:
    # 7 s of framing: 7 / 60 × 20 = 2.3333… GPU-s → 2.334 (never down to 2.333)
    q = quote("framing", p("7"))
    assert q.estimated_gpu_seconds == Decimal("2.334")
    assert str(q.estimated_gpu_seconds) == "2.334"


def test_a_tiny_job_still_funds_runpods_minimum_time() -> None:
    # 1 s of framing: estimate 0.333 GPU-s × 1.5 × 0.5 → 1 credit; min_charge 1; but the
    # card's min_funded_gpu_seconds (6) × 0.5 credits/s = 3 credits is the hold.
    row = TOML["jobs"]["framing"]
    expected = math.ceil(TOML["min_funded_gpu_seconds"] * Decimal(row["credits_per_gpu_second"]))
    q = quote("framing", p("1"))
    assert q.hold_credits == expected == 3
    assert q.max_gpu_seconds == TOML["min_funded_gpu_seconds"]


def test_min_charge_can_set_the_hold() -> None:
    card = card_with(min_charge=50)
    assert quote("framing", p("1"), card=card).hold_credits == 50


def test_funded_seconds_are_rounded_down() -> None:
    # price 0.7: 30 s framing → 10 GPU-s × 1.5 × 0.7 = 10.5 → hold 11; 11 / 0.7 = 15.71 → 15
    q = quote("framing", p("30"), card=card_with(credits_per_gpu_second="0.7"))
    assert (q.hold_credits, q.max_gpu_seconds) == (11, 15)


def test_refusals_name_the_field_and_the_allowed_values() -> None:
    with pytest.raises(QuoteError, match=r"^resolution must be one of 720p, 1080p, 1440p, 2160p$") as err:
        quote("framing", p(resolution="480p"))
    assert err.value.field == "resolution"
    with pytest.raises(QuoteError, match=r"^upscale needs scale, one of 2, 4$") as err:
        quote("upscale", p(scale=3))
    assert err.value.field == "scale"
    with pytest.raises(QuoteError, match=r"^framing takes no scale$") as err:
        quote("framing", p(scale=2))
    assert err.value.field == "scale"


def test_quote_uses_the_card_in_force_at_the_given_moment() -> None:
    with pytest.raises(LookupError, match="no rate card in force at 2026-01-01T00:00:00"):
        quote("framing", p(), at=datetime(2026, 1, 1, tzinfo=UTC))
    effective = datetime.fromisoformat(str(TOML["effective_from"]).replace("Z", "+00:00"))
    assert card_in_force(effective).version == TOML["version"]  # in force from its first instant


def test_charge_refuses_negative_time_by_name() -> None:
    with pytest.raises(ValueError, match=r"^execution_ms must be >= 0$"):
        charge(quote("framing", p()), -1)


def test_a_cancelled_job_that_ran_a_millisecond_pays_the_minimum() -> None:
    q = quote("framing", p())
    assert cancel_charge(q, 1) == TOML["jobs"]["framing"]["min_charge"]
    assert cancel_charge(q, 0) == 0


@pytest.mark.parametrize(("execution_ms", "delay_ms", "billed_s"), [
    (3000, 2500, 6),      # ceil(5.5)
    (3000, 20000, 13),    # cold start capped at cold_start_ms (10 s)
    (0, 0, 0),
    (1, 0, 1),            # a partial second is a whole second
    (0, 999, 1),
    (2000, 0, 2),
    (1001, 0, 2),         # ceil(1.001): ms → s divides by exactly 1000
])
def test_runpods_bill_is_whole_seconds_from_wake_up(execution_ms: int, delay_ms: int, billed_s: int) -> None:
    q = quote("framing", p())
    usd = Decimal(TOML["gpus"][TOML["jobs"]["framing"]["gpu"]]["usd_per_second"])
    got = runpod_billed_usd(q, execution_ms, delay_ms, TOML["cold_start_ms"])
    assert got == billed_s * usd
    assert got.as_tuple().exponent == -6  # USD to 6 places


@pytest.mark.parametrize(("execution_ms", "delay_ms"), [(-1, 0), (0, -1)])
def test_runpods_bill_refuses_negative_times(execution_ms: int, delay_ms: int) -> None:
    with pytest.raises(ValueError, match=r"^times must be >= 0$"):
        runpod_billed_usd(quote("framing", p()), execution_ms, delay_ms, 10_000)


def test_lifetimes_from_the_cards_allowances() -> None:
    card = card_in_force()
    life = card.lifetimes(7200)
    ttl_s = TOML["queue_allowance_s"] + 7200 + TOML["result_allowance_s"]
    assert (life.execution_timeout_ms, life.ttl_ms, life.hold_s) == (
        7_200_000, ttl_s * 1000, ttl_s + TOML["settle_allowance_s"])
    assert isinstance(life.hold_s, int)


def test_lifetimes_at_runpods_bounds() -> None:
    card = card_in_force()
    with pytest.raises(LifetimeError, match=r"^5 GPU-seconds is outside RunPod's executionTimeout bounds"):
        card.lifetimes(5)  # executionTimeout must be > 5000 ms
    assert card.lifetimes(6).execution_timeout_ms == 6000
    week_s = 7 * 24 * 3600
    longest = week_s - TOML["queue_allowance_s"] - TOML["result_allowance_s"]
    assert card.lifetimes(longest).ttl_ms == week_s * 1000  # ttl may be exactly one week
    with pytest.raises(LifetimeError, match=r"exceed RunPod's longest job lifetime \(ttl <= 1 week\)$"):
        card.lifetimes(longest + 1)


def short_allowances(queue_s: int, result_s: int) -> RateCard:
    data = tomllib.loads((RATECARD_DIR / "2026-11-01.toml").read_text())
    data.update(queue_allowance_s=queue_s, result_allowance_s=result_s)
    return RateCard.model_validate(data)


def test_ttl_of_exactly_ten_seconds_is_allowed_and_less_is_not() -> None:
    assert short_allowances(2, 2).lifetimes(6).ttl_ms == 10_000
    with pytest.raises(LifetimeError, match="ttl"):
        short_allowances(1, 2).lifetimes(6)


def test_seven_days_of_execution_is_within_runpods_timeout_bound() -> None:
    # exactly 7 days passes the executionTimeout bound; the ttl (1 week + allowances) is
    # then what refuses it, by its own message
    with pytest.raises(LifetimeError, match="ttl <= 1 week"):
        short_allowances(1, 1).lifetimes(7 * 24 * 3600)
    with pytest.raises(LifetimeError, match="executionTimeout"):
        short_allowances(1, 1).lifetimes(7 * 24 * 3600 + 1)


def test_an_unknown_rate_card_version_is_named() -> None:
    with pytest.raises(LookupError, match=r"^no rate card version 1999-01-01$"):
        card_by_version("1999-01-01")
