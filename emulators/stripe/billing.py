"""Subscription objects of the Stripe stand-in in the shapes of API ``2026-10-28.endive``
(basil changes: no ``invoice.subscription`` / ``invoice.charge``; the subscription is in
``invoice.parent.subscription_details``, the payment an Invoice Payment ``inpay_…``;
``current_period_end`` on subscription items; proration in ``line.parent``). Built from
the fixture shapes; amounts in cents."""
from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

from emulators.stripe.events import fixture, new_id

PERIOD_S = 30 * 24 * 3600
# The account's Price catalogue: the operator creates these Prices in Stripe; the stand-in
# reads the same file gpubill's plans come from.
PLANS_FILE = Path(__file__).resolve().parents[2] / "pricing" / "plans.toml"


def price_catalogue(path: Path = PLANS_FILE) -> dict[str, dict[str, Any]]:
    """Price id → ``{id, unit_amount, currency}``."""
    with path.open("rb") as f:
        plans = tomllib.load(f)["plans"]
    return {p["price"]: {"id": p["price"], "object": "price", "unit_amount": p["amount"],
                         "currency": p["currency"], "type": "recurring",
                         "recurring": {"interval": "month", "interval_count": 1}} for p in plans.values()}


def subscription(*, customer: str, price: dict[str, Any], quantity: int, metadata: dict[str, str],
                 status: str) -> dict[str, Any]:
    now = int(time.time())
    sid = new_id("sub")
    return {"id": sid, "object": "subscription", "customer": customer, "status": status,
            "metadata": metadata, "livemode": False, "created": now, "cancel_at_period_end": False,
            "canceled_at": None, "latest_invoice": None,
            "items": {"object": "list", "has_more": False, "data": [{
                "id": new_id("si"), "object": "subscription_item", "subscription": sid,
                "price": dict(price), "quantity": quantity,
                "current_period_start": now, "current_period_end": now + PERIOD_S}]}}


def line(*, invoice_id: str, sub: dict[str, Any], price: str, amount: int, quantity: int,
         proration: bool, currency: str) -> dict[str, Any]:
    return {"id": new_id("il"), "object": "line_item", "invoice": invoice_id, "amount": amount,
            "currency": currency, "quantity": quantity, "description": f"{quantity} × {price}",
            "livemode": False, "metadata": {}, "discount_amounts": [], "discounts": [],
            "discountable": True, "subtotal": amount, "taxes": [], "pretax_credit_amounts": [],
            "period": {"start": int(time.time()), "end": int(time.time()) + PERIOD_S},
            "pricing": {"type": "price_details", "unit_amount_decimal": str(amount // max(quantity, 1)),
                        "price_details": {"price": price, "product": new_id("prod")}},
            "parent": {"type": "subscription_item_details", "invoice_item_details": None,
                       "subscription_item_details": {
                           "subscription": sub["id"], "subscription_item": sub["items"]["data"][0]["id"],
                           "invoice_item": None, "proration": proration,
                           "proration_details": {"credited_items": None}}}}


def invoice(*, sub: dict[str, Any], lines: list[dict[str, Any]], invoice_id: str,
            billing_reason: str, currency: str) -> dict[str, Any]:
    inv = fixture("invoice")
    for removed in ("subscription", "charge", "payment_intent"):  # gone since 2025-03-31
        inv.pop(removed, None)
    total = sum(ln["amount"] for ln in lines)
    paid = max(total, 0)
    inv.update(id=invoice_id, customer=sub["customer"], status="paid", billing_reason=billing_reason,
               amount_due=paid, amount_paid=paid, amount_remaining=0, amount_overpaid=0,
               subtotal=total, total=total, currency=currency, attempted=True, attempt_count=1,
               created=int(time.time()), livemode=False, last_finalization_error=None,
               parent={"type": "subscription_details", "quote_details": None,
                       "subscription_details": {"subscription": sub["id"], "metadata": sub["metadata"]}},
               lines={"object": "list", "data": lines, "has_more": False, "total_count": len(lines),
                      "url": f"/v1/invoices/{invoice_id}/lines"})
    return inv


def invoice_payment(*, invoice_id: str, amount: int, currency: str, payment_intent: str) -> dict[str, Any]:
    """An Invoice Payment (https://docs.stripe.com/api/invoice-payment/object)."""
    now = int(time.time())
    return {"id": new_id("inpay"), "object": "invoice_payment", "amount_paid": amount,
            "amount_requested": amount, "created": now, "currency": currency, "invoice": invoice_id,
            "is_default": True, "livemode": False,
            "payment": {"type": "payment_intent", "payment_intent": payment_intent},
            "status": "paid", "status_transitions": {"canceled_at": None, "paid_at": now}}
