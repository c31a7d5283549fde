"""pricing: quotes, settlement amounts, rate-card lookup. Pure, no I/O but the data files."""
from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from pricing import (
    JOB_TYPES,
    JobParams,
    QuoteError,
    RateCard,
    cancel_charge,
    card_in_force,
    charge,
    load_packs,
    quote,
    quote_body,
    runpod_cost_usd,
)
from pricing.ratecard import RATECARD_DIR, card_by_version, load_ratecard


def p(duration_s: float = 30, resolution: str = "1080p", scale: int | None = None) -> JobParams:
    return JobParams(duration_s=Decimal(str(duration_s)), resolution=resolution, scale=scale)


def test_product_table_for_a_30_second_clip() -> None:
    # docs/architecture.md: framing ≈10 GPU-s → 5 credits, overlay ≈15 → 8, upscale 4× ≈60 → 30, track ≈20 → 10
    expected = {"framing": (10, 5), "overlay": (15, 8), "upscale": (60, 30), "track": (20, 10)}
    for job_type, (gpu_s, credits) in expected.items():
        q = quote(job_type, p(scale=4 if job_type == "upscale" else None))
        assert q.estimated_gpu_seconds == gpu_s
        assert charge(q, gpu_s * 1000) == credits


def test_hold_is_ceil_of_estimate_times_safety_times_price() -> None:
    q = quote("overlay", p())  # 15 GPU-s × 1.5 × 0.5 = 11.25 → 12
    assert q.hold_credits == 12 and isinstance(q.hold_credits, int)
    assert q.max_gpu_seconds == 24  # 12 credits / 0.5 per second
    assert q.execution_timeout_ms == 24_000


def test_hold_always_funds_more_than_runpods_minimum_execution_timeout() -> None:
    q = quote("framing", p(duration_s=1))  # estimate 0.333 GPU-s
    assert q.execution_timeout_ms > 5000  # RunPod refuses executionTimeout <= 5000 ms
    assert q.hold_credits >= q.min_charge


def test_max_gpu_seconds_is_what_the_hold_pays_for() -> None:
    for job_type in JOB_TYPES:
        q = quote(job_type, p(duration_s=47.3, scale=2 if job_type == "upscale" else None))
        assert q.max_gpu_seconds * q.credits_per_gpu_second <= q.hold_credits
        assert (q.max_gpu_seconds + 1) * q.credits_per_gpu_second > q.hold_credits


def test_charge_rounds_up_to_a_whole_credit() -> None:
    q = quote("upscale", p(scale=4))
    assert charge(q, 10_001) == 6  # 10.001 s × 0.5 = 5.0005 → 6
    assert charge(q, 10_000) == 5


def test_charge_has_a_minimum() -> None:
    q = quote("upscale", p(scale=4))
    assert q.min_charge == 2
    assert charge(q, 0) == 2
    assert charge(q, 1) == 2


def test_charge_never_exceeds_the_hold() -> None:
    q = quote("framing", p())
    assert charge(q, 10_000_000) == q.hold_credits
    assert charge(q, q.max_gpu_seconds * 1000) <= q.hold_credits


def test_negative_execution_time_is_refused() -> None:
    with pytest.raises(ValueError):
        charge(quote("track", p()), -1)


def test_resolution_and_scale_change_the_estimate() -> None:
    base = quote("framing", p()).estimated_gpu_seconds
    assert quote("framing", p(resolution="2160p")).estimated_gpu_seconds == base * 4
    assert quote("upscale", p(scale=2)).estimated_gpu_seconds * 4 == quote("upscale", p(scale=4)).estimated_gpu_seconds


@pytest.mark.parametrize("job_type,params,field", [
    ("framing", dict(resolution="8k"), "resolution"),
    ("upscale", dict(scale=None), "scale"),
    ("upscale", dict(scale=3), "scale"),
    ("track", dict(scale=2), "scale"),
])
def test_unpriceable_params_name_the_field(job_type: str, params: dict, field: str) -> None:
    with pytest.raises(QuoteError) as err:
        quote(job_type, p(**params))
    assert err.value.field == field


@pytest.mark.parametrize("duration", [0, -1, 10_801])
def test_duration_bounds(duration: float) -> None:
    with pytest.raises(ValidationError):
        JobParams(duration_s=duration)


def test_runpod_cost_uses_the_gpu_price_per_second() -> None:
    q = quote("framing", p())  # RTX_A4000 at $0.00016/s
    assert runpod_cost_usd(q, 10_000) == Decimal("0.001600")


def test_card_in_force_by_date() -> None:
    card = card_in_force(datetime(2027, 1, 1, tzinfo=UTC))
    assert card.version == "2026-11-01"
    assert card_by_version("2026-11-01") == card
    with pytest.raises(LookupError):
        card_in_force(datetime(2020, 1, 1, tzinfo=UTC))


def test_rate_card_is_validated(tmp_path) -> None:
    bad = (RATECARD_DIR / "2026-11-01.toml").read_text().replace('gpu = "L4"', 'gpu = "TPU"')
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    with pytest.raises(ValidationError, match="unknown gpu"):
        load_ratecard(path)


def test_packs_are_server_side_data() -> None:
    packs = load_packs()
    assert packs["small"].credits == 500 and packs["small"].price == 500
    assert packs["medium"].credits == 2200 and packs["medium"].price == 2000
    assert packs["large"].credits == 4000 and packs["large"].price == 3500


def test_cancel_policy_charge_execution_bills_measured_time_capped_by_the_hold() -> None:
    q = quote("framing", p())  # hold 8, 0.5 credits / GPU-s
    assert q.cancel_policy == "charge_execution"  # the card's default
    assert cancel_charge(q, 2300) == 2  # ceil(2.3 × 0.5)
    assert cancel_charge(q, 600_000) == q.hold_credits
    assert cancel_charge(q, 0) == 0  # cancelled before it ran: nothing, not the minimum


def test_cancel_policy_free_bills_nothing() -> None:
    q = dataclasses.replace(quote("framing", p()), cancel_policy="free")
    assert cancel_charge(q, 2300) == 0


def test_cancel_policy_per_job_type_overrides_the_card() -> None:
    card = card_in_force()
    jobs = {**card.jobs, "track": card.jobs["track"].model_copy(update={"cancel_policy": "free"})}
    custom = card.model_copy(update={"jobs": jobs})
    assert quote("track", p(), card=custom).cancel_policy == "free"
    assert quote("framing", p(), card=custom).cancel_policy == "charge_execution"
    with pytest.raises(ValidationError):
        RateCard.model_validate({**card.model_dump(), "cancel_policy": "half"})


def test_quote_body_is_what_the_api_shows() -> None:
    assert quote_body(quote("overlay", p())) == {
        "estimated_gpu_seconds": "15.000", "hold": 12, "max_gpu_seconds": 24,
        "price_per_gpu_second": "0.5", "min_charge": 1, "ratecard_version": "2026-11-01"}
