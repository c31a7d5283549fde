"""Quotes and settlement amounts (docs/architecture.md "Pricing"). Pure: Decimal in, int credits out.

- ``quote()``: hold = ceil(estimate × safety × price), at least ``min_charge`` and at
  least what funds the rate card's ``min_funded_gpu_seconds`` (RunPod refuses an
  ``executionTimeout`` of 5 s or less); ``max_gpu_seconds`` is what the hold funds.
- ``charge()``: clamp(ceil(execution_ms / 1000 × price), min_charge, hold). A user is
  never charged above the quote's hold.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from pricing.ratecard import JobType, LifetimeError, RateCard, card_in_force

DURATION_STRING = r"^[0-9]{1,5}(\.[0-9]{1,3})?$"  # a clip length sent as a JSON string


def _duration_pattern(schema: dict[str, Any]) -> None:
    """The documented string form of ``duration_s`` in its JSON schema (its string branch)."""
    schema["anyOf"][1]["pattern"] = DURATION_STRING


class JobParams(BaseModel):
    """Job parameters that drive the estimate.

    ``duration_s``: clip length, seconds (0 < d ≤ 3 h); ``resolution``: a key of the rate
    card's ``resolution_factors``; ``scale``: upscale factor, required for upscale only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A string is accepted only in the documented form (DURATION_STRING): pydantic's
    # Decimal also reads "1e3", " 5", "5." and documents its string form as any string
    # (issue 13, schemathesis finding).
    duration_s: Decimal = Field(gt=0, le=10_800, max_digits=12, decimal_places=3,
                                json_schema_extra=_duration_pattern)
    resolution: str = Field(default="1080p", max_length=16)
    scale: int | None = Field(default=None, ge=1, le=16)

    @field_validator("duration_s", mode="before")
    @classmethod
    def _plain_decimal_string(cls, v: object) -> object:
        if isinstance(v, str) and not re.fullmatch(DURATION_STRING, v):
            raise ValueError("duration_s as a string must be plain decimal digits, at most 3 places")
        return v

    @field_serializer("duration_s", when_used="json")
    def _duration_as_number(self, v: Decimal) -> float:
        # JSON consumers (RunPod workers, the app) expect a number; a clip length is
        # not money, and the quote itself is frozen from the Decimal.
        return float(v)


class QuoteError(ValueError):
    """The parameters cannot be priced (unknown resolution, bad scale, ...).

    ``field`` names the offending parameter for a 422 answer.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Quote:
    """A priced job. Money fields are int credits; prices are Decimal credits/GPU-second.

    ``max_gpu_seconds`` is the GPU time the hold funds (whole seconds); it becomes RunPod
    ``policy.executionTimeout`` (× 1000 ms) at dispatch.
    """

    job_type: str
    ratecard_version: str
    endpoint_id: str
    gpu: str
    estimated_gpu_seconds: Decimal
    hold_credits: int
    max_gpu_seconds: int
    credits_per_gpu_second: Decimal
    min_charge: int
    gpu_usd_per_second: Decimal
    cancel_policy: str = "charge_execution"

    @property
    def execution_timeout_ms(self) -> int:
        """RunPod ``policy.executionTimeout``, milliseconds: the funded GPU time."""
        return self.max_gpu_seconds * 1000


def _ceil(x: Decimal) -> int:
    return int(x.to_integral_value(rounding=ROUND_CEILING))


def _floor(x: Decimal) -> int:
    return int(x.to_integral_value(rounding=ROUND_FLOOR))


def estimate_gpu_seconds(card: RateCard, job_type: str, params: JobParams) -> Decimal:
    """Estimated GPU-seconds for ``params``. Raises ``KeyError`` (type), ``QuoteError``."""
    rate = card.job(job_type)
    try:
        res = card.resolution_factors[params.resolution]
    except KeyError:
        allowed = ", ".join(card.resolution_factors)
        raise QuoteError("resolution", f"resolution must be one of {allowed}") from None
    scale = Decimal(1)
    if rate.scale_factors is not None:
        if params.scale not in rate.scale_factors:
            allowed = ", ".join(str(s) for s in rate.scale_factors)
            raise QuoteError("scale", f"{job_type} needs scale, one of {allowed}")
        scale = rate.scale_factors[params.scale]
    elif params.scale is not None:
        raise QuoteError("scale", f"{job_type} takes no scale")
    return params.duration_s / 60 * rate.gpu_seconds_per_clip_minute * res * scale


def quote(job_type: JobType | str, params: JobParams, *, at: datetime | None = None,
          card: RateCard | None = None) -> Quote:
    """Price ``job_type`` with ``params`` by the card in force at ``at`` (or ``card``).

    Raises ``KeyError`` for an unknown job type and ``QuoteError`` for unpriceable params,
    including a funded time RunPod's lifetime bounds cannot run (``RateCard.lifetimes``).
    """
    card = card or card_in_force(at)
    rate = card.job(job_type)
    estimate = estimate_gpu_seconds(card, job_type, params)
    price = rate.credits_per_gpu_second
    hold = max(
        _ceil(estimate * rate.safety_factor * price),
        rate.min_charge,
        _ceil(card.min_funded_gpu_seconds * price),
    )
    max_gpu_seconds = _floor(hold / price)
    try:
        card.lifetimes(max_gpu_seconds)  # RunPod must be able to run what we fund
    except LifetimeError as err:
        raise QuoteError("duration_s", str(err)) from None
    return Quote(
        job_type=job_type,
        ratecard_version=card.version,
        endpoint_id=rate.endpoint_id,
        gpu=rate.gpu,
        estimated_gpu_seconds=estimate.quantize(Decimal("0.001"), rounding=ROUND_CEILING),
        hold_credits=hold,
        max_gpu_seconds=max_gpu_seconds,
        credits_per_gpu_second=price,
        min_charge=rate.min_charge,
        gpu_usd_per_second=card.gpus[rate.gpu].usd_per_second,
        cancel_policy=card.cancel_policy_of(job_type),
    )


def cancel_charge(q: Quote, execution_ms: int) -> int:
    """Credits for a user-cancelled job that ran ``execution_ms`` (RunPod
    ``executionTime``) on the GPU: ``charge()`` under ``charge_execution``, else 0.
    A job cancelled before it started (0 ms) costs nothing under either policy."""
    if q.cancel_policy != "charge_execution" or execution_ms <= 0:
        return 0
    return charge(q, execution_ms)


def quote_body(q: Quote) -> dict[str, object]:
    """The quote as the API shows it: credits as ints, GPU-seconds and prices as
    decimal strings (``POST /v1/quotes``, job answers and receipts)."""
    return {
        "estimated_gpu_seconds": str(q.estimated_gpu_seconds),
        "hold": q.hold_credits,
        "max_gpu_seconds": q.max_gpu_seconds,
        "price_per_gpu_second": str(q.credits_per_gpu_second),
        "min_charge": q.min_charge,
        "ratecard_version": q.ratecard_version,
    }


def charge(q: Quote, execution_ms: int) -> int:
    """Credits to capture for RunPod ``executionTime`` (milliseconds) of GPU work.

    ceil(execution_ms / 1000 × price), at least ``min_charge``, at most the hold.
    Raises ``ValueError`` for a negative time.
    """
    if execution_ms < 0:
        raise ValueError("execution_ms must be >= 0")
    raw = _ceil(Decimal(execution_ms) / 1000 * q.credits_per_gpu_second)
    return min(max(raw, q.min_charge), q.hold_credits)


def runpod_billed_usd(q: Quote, execution_ms: int, delay_ms: int, cold_start_ms: int) -> Decimal:
    """What RunPod bills us, USD (6 places): a flex worker is billed from wake-up until
    it stops, per second with partial seconds rounded up (RunPod serverless "Pricing",
    docs.runpod.io/serverless/pricing). Billed seconds =
    ceil((min(delay_ms, cold_start_ms) + execution_ms) / 1000): the cold-start share of
    RunPod ``delayTime`` plus ``executionTime`` (ms). Raises ``ValueError`` if negative."""
    if execution_ms < 0 or delay_ms < 0:
        raise ValueError("times must be >= 0")
    billed_s = _ceil(Decimal(min(delay_ms, cold_start_ms) + execution_ms) / 1000)
    return (billed_s * q.gpu_usd_per_second).quantize(Decimal("0.000001"))


def runpod_cost_usd(q: Quote, execution_ms: int) -> Decimal:
    """The GPU time the user paid for, at RunPod's price: ``execution_ms`` (RunPod
    ``executionTime``) on the quote's GPU, USD (6 places). RunPod's own bill is
    ``runpod_billed_usd``."""
    return (Decimal(execution_ms) / 1000 * q.gpu_usd_per_second).quantize(Decimal("0.000001"))
