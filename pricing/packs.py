"""Top-up packs and subscription plans: server-side data (``pricing/packs.toml``,
``pricing/plans.toml``); a client names a pack id only, never an amount."""
from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

PACKS_FILE = Path(__file__).with_name("packs.toml")
PLANS_FILE = Path(__file__).with_name("plans.toml")


class Pack(BaseModel):
    """A pack: ``price`` in the currency's smallest unit (cents), ``credits`` incl. bonus."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    price: PositiveInt
    currency: str = Field(pattern=r"^[a-z]{3}$")
    credits: PositiveInt


@lru_cache(maxsize=4)
def load_packs(path: Path = PACKS_FILE) -> dict[str, Pack]:
    """Pack id → ``Pack``. Raises ``pydantic.ValidationError`` on a malformed file."""
    with path.open("rb") as f:
        raw = tomllib.load(f)["packs"]
    return {pid: Pack(id=pid, **body) for pid, body in raw.items()}


class Plan(BaseModel):
    """A subscription plan: Stripe Price ``price`` grants ``credits`` per month (per unit)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    price: str = Field(min_length=1)
    credits: PositiveInt


@lru_cache(maxsize=4)
def load_plans(path: Path = PLANS_FILE) -> dict[str, Plan]:
    """Stripe Price id → ``Plan``. Raises ``pydantic.ValidationError`` on a malformed file."""
    with path.open("rb") as f:
        raw = tomllib.load(f)["plans"]
    plans = [Plan(id=pid, **body) for pid, body in raw.items()]
    return {p.price: p for p in plans}
