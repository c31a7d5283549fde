"""The rate card: versioned TOML data, validated once, looked up by effective date.

Files live in ``pricing/ratecards/*.toml`` (or a directory passed in). A job is priced
by the card in force when it was requested: the newest card whose ``effective_from``
is not after that moment.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

JobType = Literal["framing", "overlay", "upscale", "track"]
# What a user-cancelled job that already ran on RunPod costs: its measured
# ``executionTime`` (we pay RunPod for it) or nothing.
CancelPolicy = Literal["charge_execution", "free"]
JOB_TYPES: tuple[str, ...] = ("framing", "overlay", "upscale", "track")
RATECARD_DIR = Path(__file__).with_name("ratecards")
# RunPod's bounds on a job's execution policy ("Send API requests" → execution
# policies, docs.runpod.io/serverless/endpoints/send-requests): executionTimeout must be
# > 5000 ms (at most 7 days, "Endpoint configurations"); ttl >= 10 s and <= 1 week.
RUNPOD_MIN_EXECUTION_TIMEOUT_MS = 5001
RUNPOD_MAX_EXECUTION_TIMEOUT_MS = 7 * 24 * 3600 * 1000
RUNPOD_MIN_TTL_MS = 10_000
RUNPOD_MAX_TTL_MS = 7 * 24 * 3600 * 1000


class LifetimeError(ValueError):
    """A job whose funded GPU time RunPod's execution-policy bounds cannot run."""


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long one job may live, derived from its funded ``max_gpu_seconds``.

    ``execution_timeout_ms``: RunPod ``policy.executionTimeout`` = the funded GPU time.
    ``ttl_ms``: RunPod ``policy.ttl``, the job's whole life from submission (queue, run
    and the reading of its result — RunPod deletes it at ttl whatever its state) =
    queue allowance + funded time + result allowance. ``hold_s``: our hold's life,
    seconds = ttl + settle allowance, so our own clock never ends a job RunPod may
    still run: by then RunPod has run, timed out or deleted it.
    """

    execution_timeout_ms: int
    ttl_ms: int
    hold_s: int


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GpuRate(_Frozen):
    """RunPod price of one GPU type, USD per second (RunPod flex pricing)."""

    usd_per_second: Decimal = Field(gt=0)


class JobRate(_Frozen):
    """How one job type is run and priced.

    ``credits_per_gpu_second`` is a Decimal price in credits; ``min_charge`` is whole
    credits; the estimate of GPU-seconds is
    ``duration_s / 60 * gpu_seconds_per_clip_minute * resolution factor * scale factor``.
    """

    endpoint_id: str = Field(min_length=1)
    gpu: str
    credits_per_gpu_second: Decimal = Field(gt=0)
    min_charge: PositiveInt
    gpu_seconds_per_clip_minute: Decimal = Field(gt=0)
    safety_factor: Decimal = Field(ge=1)
    scale_factors: dict[int, Decimal] | None = None
    cancel_policy: CancelPolicy | None = None  # None: the card's ``cancel_policy``


class RateCard(_Frozen):
    """One version of the rate card (see ``pricing/ratecards/``)."""

    version: str
    effective_from: datetime
    min_funded_gpu_seconds: PositiveInt
    # Seconds a job may wait in RunPod's queue (cold start included), seconds left
    # after its end to read the result before RunPod's ttl deletes it, and seconds our
    # hold outlives the ttl (see ``Lifetimes``).
    queue_allowance_s: PositiveInt
    result_allowance_s: PositiveInt
    settle_allowance_s: PositiveInt
    # The endpoints' worker start (cold start), ms: the share of a job's delayTime that
    # RunPod bills (billing starts when a worker is signalled to wake; RunPod "Pricing").
    cold_start_ms: PositiveInt
    cancel_policy: CancelPolicy = "charge_execution"
    resolution_factors: dict[str, Decimal]
    gpus: dict[str, GpuRate]
    jobs: dict[str, JobRate]

    @model_validator(mode="after")
    def _consistent(self) -> RateCard:
        missing = set(JOB_TYPES) - set(self.jobs)
        if missing:
            raise ValueError(f"rate card {self.version} lacks job types {sorted(missing)}")
        for name, job in self.jobs.items():
            if job.gpu not in self.gpus:
                raise ValueError(f"job type {name} uses unknown gpu {job.gpu!r}")
        if self.effective_from.tzinfo is None:
            raise ValueError("effective_from needs a timezone")
        return self

    def lifetimes(self, max_gpu_seconds: int) -> Lifetimes:
        """The ``Lifetimes`` of a job funding ``max_gpu_seconds`` GPU-seconds. Raises
        ``LifetimeError`` when RunPod's bounds (``RUNPOD_*``) cannot carry them."""
        timeout_ms = max_gpu_seconds * 1000
        ttl_ms = (self.queue_allowance_s + max_gpu_seconds + self.result_allowance_s) * 1000
        if not RUNPOD_MIN_EXECUTION_TIMEOUT_MS <= timeout_ms <= RUNPOD_MAX_EXECUTION_TIMEOUT_MS:
            raise LifetimeError(f"{max_gpu_seconds} GPU-seconds is outside RunPod's "
                                "executionTimeout bounds (> 5 s, <= 7 days)")
        if not RUNPOD_MIN_TTL_MS <= ttl_ms <= RUNPOD_MAX_TTL_MS:
            raise LifetimeError(f"{max_gpu_seconds} GPU-seconds plus queue and result allowances "
                                "exceed RunPod's longest job lifetime (ttl <= 1 week)")
        return Lifetimes(timeout_ms, ttl_ms, ttl_ms // 1000 + self.settle_allowance_s)

    def job(self, job_type: str) -> JobRate:
        """The rate of ``job_type``; raises ``KeyError`` for an unknown type."""
        return self.jobs[job_type]

    def cancel_policy_of(self, job_type: str) -> CancelPolicy:
        """The cancel policy of ``job_type`` (its own, else the card's)."""
        return self.job(job_type).cancel_policy or self.cancel_policy


def load_ratecard(path: Path) -> RateCard:
    """Parse and validate one TOML rate card; raises ``pydantic.ValidationError``."""
    with path.open("rb") as f:
        return RateCard.model_validate(tomllib.load(f))


@lru_cache(maxsize=8)
def load_ratecards(directory: Path = RATECARD_DIR) -> tuple[RateCard, ...]:
    """All rate cards in ``directory``, oldest first. Raises ``ValueError`` if none."""
    cards = sorted(
        (load_ratecard(p) for p in directory.glob("*.toml")), key=lambda c: c.effective_from
    )
    if not cards:
        raise ValueError(f"no rate card in {directory}")
    return tuple(cards)


def card_in_force(at: datetime | None = None, directory: Path = RATECARD_DIR) -> RateCard:
    """The card in force at ``at`` (default now, UTC). Raises ``LookupError`` before the first."""
    at = at or datetime.now(UTC)
    eligible = [c for c in load_ratecards(directory) if c.effective_from <= at]
    if not eligible:
        raise LookupError(f"no rate card in force at {at.isoformat()}")
    return eligible[-1]


def card_by_version(version: str, directory: Path = RATECARD_DIR) -> RateCard:
    """The card named ``version``; raises ``LookupError`` if there is none."""
    for card in load_ratecards(directory):
        if card.version == version:
            return card
    raise LookupError(f"no rate card version {version}")
