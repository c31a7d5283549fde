"""Top-up packs and subscription plans: server-side data (``pricing/packs.toml``,
``pricing/plans.toml``); a client names a pack id only, never an amount."""
from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

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
    """A subscription plan: Stripe Price ``price`` costs ``amount`` cents of ``currency``
    per period and grants ``credits`` per period (per unit); a $0 trial period grants
    ``trial_credits`` (default 0)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    price: str = Field(min_length=1)
    currency: str = Field(pattern=r"^[a-z]{3}$")
    amount: PositiveInt
    credits: PositiveInt
    trial_credits: NonNegativeInt = 0

    def period_share(self, cents: int, quantity: int = 1) -> int:
        """Credits for a line of ``cents`` paid for ``quantity`` units of this plan.

        A full period (``cents == amount × quantity``) grants ``credits × quantity``; a
        proration grants ``floor(credits × cents / amount)`` — never more than paid for.
        A negative proration (credit for unused time of the old plan) takes back
        ``ceil`` of its share, so an upgrade grants at most what its net amount buys.
        """
        share = self.credits * cents // self.amount  # floor: down when granting, up when taking
        return min(share, self.credits * max(quantity, 1))


@lru_cache(maxsize=4)
def load_plans(path: Path = PLANS_FILE) -> dict[str, Plan]:
    """Stripe Price id → ``Plan``. Raises ``pydantic.ValidationError`` on a malformed file."""
    with path.open("rb") as f:
        raw = tomllib.load(f)["plans"]
    plans = [Plan(id=pid, **body) for pid, body in raw.items()]
    return {p.price: p for p in plans}


def plans_by_id(path: Path = PLANS_FILE) -> dict[str, Plan]:
    """Plan id → ``Plan`` (``GET /v1/plans``, ``POST /v1/subscriptions``)."""
    return {p.id: p for p in load_plans(path).values()}
