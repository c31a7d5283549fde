"""Reference rate-card arithmetic, written from the rate card's own comments and
docs/architecture.md "Pricing" — deliberately NOT importing ``pricing``, ``ledger`` or ``worker``.

It reads ``pricing/ratecards/*.toml``, ``pricing/packs.toml`` and ``pricing/plans.toml``
with ``tomllib`` and recomputes, with exact ``Fraction`` arithmetic (not Decimal, so a
rounding slip in the code under test cannot be copied here):

- estimate GPU-seconds = duration_s / 60 × gpu_seconds_per_clip_minute
  × resolution factor × scale factor (upscale only);
- hold (credits) = max(ceil(estimate × safety × price), min_charge,
  ceil(min_funded_gpu_seconds × price)); funded GPU-seconds = floor(hold / price);
- charge (credits) for RunPod ``executionTime`` ms = clamp(ceil(ms / 1000 × price),
  min_charge, hold); release = hold − charge;
- a user cancel: 0 if the job never ran (0 ms) or the policy is ``free``, else the charge.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

PRICING = Path(__file__).resolve().parents[2] / "pricing"


def _frac(x: object) -> Fraction:
    return Fraction(str(x))


def _load(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


def card(version: str | None = None) -> dict:
    """The rate card TOML as a dict: ``version`` or the newest file."""
    cards = sorted((_load(p) for p in (PRICING / "ratecards").glob("*.toml")),
                   key=lambda c: c["effective_from"])
    if version is None:
        return cards[-1]
    return next(c for c in cards if c["version"] == version)


def packs() -> dict[str, dict]:
    """Pack id → {price (cents), currency, credits}."""
    return _load(PRICING / "packs.toml")["packs"]


def plans() -> dict[str, dict]:
    """Plan id → {price (Stripe Price id), currency, amount (cents per period), credits}."""
    return _load(PRICING / "plans.toml")["plans"]


def plans_by_price() -> dict[str, dict]:
    """Stripe Price id → {price, credits (per unit)}."""
    return {p["price"]: p for p in _load(PRICING / "plans.toml")["plans"].values()}


@dataclass(frozen=True)
class ModelQuote:
    """What the model expects a job to be priced at (credits; price as a Fraction)."""

    hold: int
    max_gpu_seconds: int
    price: Fraction
    min_charge: int
    cancel_policy: str
    estimate: Fraction


def quote(job_type: str, duration_s: object, resolution: str = "1080p",
          scale: int | None = None, rc: dict | None = None) -> ModelQuote:
    """The model's quote for one job (raises ``KeyError`` for an unpriceable input)."""
    rc = rc or card()
    job = rc["jobs"][job_type]
    est = (_frac(duration_s) / 60 * _frac(job["gpu_seconds_per_clip_minute"])
           * _frac(rc["resolution_factors"][resolution]))
    if "scale_factors" in job:
        est *= _frac(job["scale_factors"][str(scale)])
    price = _frac(job["credits_per_gpu_second"])
    hold = max(math.ceil(est * _frac(job["safety_factor"]) * price), int(job["min_charge"]),
               math.ceil(int(rc["min_funded_gpu_seconds"]) * price))
    return ModelQuote(hold=hold, max_gpu_seconds=math.floor(hold / price), price=price,
                      min_charge=int(job["min_charge"]),
                      cancel_policy=job.get("cancel_policy", rc.get("cancel_policy",
                                                                    "charge_execution")),
                      estimate=est)


def charge(q: ModelQuote, execution_ms: int) -> int:
    """Credits captured for a completed job that RunPod says ran ``execution_ms``."""
    raw = math.ceil(Fraction(execution_ms, 1000) * q.price)
    return min(max(raw, q.min_charge), q.hold)


def cancel_charge(q: ModelQuote, execution_ms: int) -> int:
    """Credits captured for a user-cancelled job that had run ``execution_ms``."""
    if q.cancel_policy != "charge_execution" or execution_ms <= 0:
        return 0
    return charge(q, execution_ms)


def share(credits: int, amount_total: int, cents: int) -> int:
    """Credits a reversal of ``cents`` of a ``amount_total``-cent top-up takes back:
    ceil(credits × min(cents, total) / total) (docs/decisions.md claw-back rule)."""
    return math.ceil(Fraction(credits * min(cents, amount_total), amount_total))


def invoice_grant(lines: list[tuple[str, int, int, bool]], amount_paid: int) -> int:
    """Credits a paid invoice grants (docs/stripe-money.md), from ``lines`` of (Stripe
    Price id, amount in cents, quantity, is a proration) and what Stripe collected:
    per known plan line, a $0 non-proration line its ``trial_credits`` × quantity, any
    other line credits × amount / plan amount rounded toward −∞ (down when granting, a
    negative proration takes back the ceiling), at most credits × quantity; the sum
    scaled down to ``amount_paid`` when Stripe collected less than the lines' net; never
    below 0."""
    plans = plans_by_price()
    total, net = Fraction(0), 0
    for price, cents, quantity, proration in lines:
        plan = plans.get(price)
        if plan is None:
            continue
        net += cents
        if cents == 0 and not proration:
            total += int(plan.get("trial_credits", 0)) * quantity
        else:
            total += min(math.floor(Fraction(int(plan["credits"]) * cents, int(plan["amount"]))),
                         int(plan["credits"]) * max(quantity, 1))
    if net > 0 and amount_paid < net:
        total = math.floor(total * amount_paid / net)
    return max(int(total), 0)

