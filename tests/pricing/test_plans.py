"""Subscription plans (``pricing.packs``): the file's plans by id and Price, and the
credits a paid invoice line grants (``Plan.period_share``). Expected values are the
plans TOML as the reference model reads it (``tests/model/rates.py``) and hand
arithmetic written beside each case."""
from __future__ import annotations

import pytest

from pricing import Plan, load_plans, plans_by_id
from tests.model import rates


def test_plans_by_id_and_by_price_match_the_file() -> None:
    model = rates.plans_by_price()  # Stripe Price id -> plan table
    assert {p.price: (p.amount, p.credits, p.currency) for p in load_plans().values()} == {
        price: (m["amount"], m["credits"], m["currency"]) for price, m in model.items()}
    assert {pid: p.price for pid, p in plans_by_id().items()} == {
        "starter": "price_gpubill_starter_monthly", "pro": "price_gpubill_pro_monthly"}


@pytest.mark.parametrize("price", sorted(rates.plans_by_price()))
def test_a_full_period_grants_the_plans_credits_per_unit(price: str) -> None:
    plan, m = load_plans()[price], rates.plans_by_price()[price]
    assert plan.period_share(m["amount"]) == m["credits"]
    assert plan.period_share(3 * m["amount"], quantity=3) == 3 * m["credits"]


# A plan whose credits are not its cents, so rounding shows: 1000 credits for 3000 cents.
ODD = Plan(id="odd", price="price_odd", currency="usd", amount=3000, credits=1000)


@pytest.mark.parametrize(("cents", "quantity", "credits"), [
    (1000, 1, 333),     # floor(1000 × 1000 / 3000) = floor(333.3): down when granting
    (2999, 1, 999),     # floor(999.67)
    (-1000, 1, -334),   # a credit line takes back ceil(333.3) = 334
    (3000, 1, 1000),
    (9000, 2, 2000),    # never more than credits × quantity (3000 capped at 2 units)
    (6000, 0, 1000),    # quantity 0 counts as one unit for the cap
    (0, 1, 0),
])
def test_a_proration_grants_its_share_rounded_against_the_customer(cents: int, quantity: int, credits: int) -> None:
    assert ODD.period_share(cents, quantity) == credits


def test_quantity_defaults_to_one_unit() -> None:
    assert ODD.period_share(6000) == 1000
    assert ODD.trial_credits == 0
