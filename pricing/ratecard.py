"""The rate card: versioned TOML data, validated once, looked up by effective date.

Files live in ``pricing/ratecards/*.toml`` (or a directory passed in). A job is priced
by the card in force when it was requested: the newest card whose ``effective_from``
is not after that moment.
"""
from __future__ import annotations

import tomllib
from datetime import datetime, timezone
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
    hold_ttl_s: PositiveInt
    min_funded_gpu_seconds: PositiveInt
    dispatch_ttl_ms: int = Field(ge=10_000)
    cancel_policy: CancelPolicy = "charge_execution"
    resolution_factors: dict[str, Decimal]
    gpus: dict[str, GpuRate]
    jobs: dict[str, JobRate]

    @model_validator(mode="after")
    def _consistent(self) -> "RateCard":
        missing = set(JOB_TYPES) - set(self.jobs)
        if missing:
            raise ValueError(f"rate card {self.version} lacks job types {sorted(missing)}")
        for name, job in self.jobs.items():
            if job.gpu not in self.gpus:
                raise ValueError(f"job type {name} uses unknown gpu {job.gpu!r}")
        if self.effective_from.tzinfo is None:
            raise ValueError("effective_from needs a timezone")
        return self

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
    at = at or datetime.now(timezone.utc)
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
