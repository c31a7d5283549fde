"""Stripe objects built from the fixture shapes (every fixture field kept), with the
fields a scenario sets: Checkout Sessions, PaymentIntents, Charges, Refunds, Disputes,
Invoices. Used by the stand-in (``emulators.stripe.state``) and by tests that post
events directly. Amounts are integer cents, as Stripe's.
"""
from __future__ import annotations

import time
from typing import Any

from emulators.stripe.events import fixture, new_id


def _now() -> int:
    return int(time.time())


def checkout_session(*, amount_total: int, currency: str, client_reference_id: str | None,
                     metadata: dict[str, str], success_url: str, cancel_url: str,
                     url_base: str, session_id: str | None = None) -> dict[str, Any]:
    """An ``open``, ``unpaid`` payment-mode session (no PaymentIntent until paid)."""
    sid = session_id or new_id("cs_test")
    s = fixture("checkout_session")
    s.update(id=sid, object="checkout.session", mode="payment", status="open",
             payment_status="unpaid", amount_subtotal=amount_total, amount_total=amount_total,
             currency=currency, client_reference_id=client_reference_id, metadata=metadata,
             payment_intent=None, customer=None, customer_creation="always", livemode=False,
             created=_now(), expires_at=_now() + 24 * 3600, success_url=success_url,
             cancel_url=cancel_url, url=f"{url_base.rstrip('/')}/pay/{sid}", invoice=None,
             currency_conversion=None, shipping_cost=None, shipping_address_collection=None)
    return s


def payment_intent(*, amount: int, currency: str, metadata: dict[str, str], customer: str | None,
                   status: str, latest_charge: str | None = None) -> dict[str, Any]:
    pi = fixture("payment_intent")
    pi.update(id=new_id("pi"), amount=amount, amount_received=amount if status == "succeeded" else 0,
              currency=currency, metadata=metadata, customer=customer, status=status,
              latest_charge=latest_charge, created=_now(), canceled_at=None,
              last_payment_error=None, next_action=None, livemode=False)
    return pi


def charge(*, amount: int, currency: str, payment_intent: str, customer: str | None,
           metadata: dict[str, str], charge_id: str | None = None) -> dict[str, Any]:
    """A succeeded, captured card charge with an empty refund list."""
    ch = fixture("charge")
    cid = charge_id or new_id("ch")
    ch.update(id=cid, amount=amount, amount_captured=amount, amount_refunded=0, captured=True,
              paid=True, refunded=False, disputed=False, status="succeeded", currency=currency,
              payment_intent=payment_intent, customer=customer, metadata=metadata, created=_now(),
              livemode=False, source=None,
              refunds={"object": "list", "data": [], "has_more": False, "total_count": 0,
                       "url": f"/v1/charges/{cid}/refunds"})
    return ch


def refund(*, amount: int, currency: str, charge_id: str, payment_intent: str | None,
           status: str = "succeeded", refund_id: str | None = None) -> dict[str, Any]:
    r = fixture("refund")
    r.update(id=refund_id or new_id("re"), amount=amount, currency=currency, charge=charge_id,
             payment_intent=payment_intent, status=status, created=_now(), reason="requested_by_customer")
    return r


def dispute(*, amount: int, currency: str, charge_id: str, payment_intent: str | None,
            status: str = "needs_response", dispute_id: str | None = None) -> dict[str, Any]:
    d = fixture("dispute")
    d.update(id=dispute_id or new_id("dp"), amount=amount, currency=currency, charge=charge_id,
             payment_intent=payment_intent, status=status, reason="fraudulent", created=_now(),
             is_charge_refundable=False)
    return d


def invoice(*, customer: str, price: str, amount: int, currency: str = "usd", quantity: int = 1,
            invoice_id: str | None = None) -> dict[str, Any]:
    """A paid subscription invoice with one line for Stripe Price ``price``."""
    inv = fixture("invoice")
    iid = invoice_id or new_id("in")
    line = inv["lines"]["data"][0]
    line.update(id=new_id("il"), invoice=iid, amount=amount, currency=currency, quantity=quantity,
                subtotal=amount, description=f"1 × {price}",
                pricing={"type": "price_details", "unit_amount_decimal": str(amount // max(quantity, 1)),
                         "price_details": {"price": price, "product": new_id("prod")}})
    inv.update(id=iid, customer=customer, status="paid", billing_reason="subscription_cycle",
               amount_due=amount, amount_paid=amount, amount_remaining=0, amount_overpaid=0,
               subtotal=amount, total=amount, currency=currency, attempted=True, attempt_count=1,
               created=_now(), last_finalization_error=None, livemode=False,
               lines={**inv["lines"], "data": [line], "url": f"/v1/invoices/{iid}/lines"})
    return inv
