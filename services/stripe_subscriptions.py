"""Subscription handlers: the subscription Checkout, subscription snapshots, paid
invoices and the payments that paid them (dispatch and outcomes: ``services.stripe_events``).

Shapes are those of Stripe API version ``2026-10-28.endive`` (the "basil" changes of
2025-03-31 still apply — https://docs.stripe.com/changelog/basil):

- ``invoice.subscription`` and ``invoice.charge`` / ``payment_intent`` are gone. The
  subscription is ``invoice.parent.subscription_details.subscription`` (its
  ``metadata`` is the subscription's, which carries our ``user_id``); the payment is an
  Invoice Payment (``inpay_…``, ``payment.type`` = ``payment_intent`` | ``charge``),
  sent as ``invoice_payment.paid`` or listed in ``invoice.payments`` only when expanded
  (https://docs.stripe.com/api/invoice-payment/object).
- A line's plan is ``pricing.price_details.price``; whether it is a proration is
  ``parent.subscription_item_details.proration`` (or ``parent.invoice_item_details``).
- ``current_period_end`` moved from the Subscription to its items
  (``items.data[].current_period_end``).
- ``invoice.paid`` "occurs whenever an invoice payment attempt succeeds or an invoice is
  marked as paid out-of-band" (https://docs.stripe.com/api/events/types): the grant is
  capped by ``amount_paid``, so an out-of-band or discounted invoice grants only what
  Stripe collected.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from base.ids import USER_ID
from base.settings import get_settings
from ledger import subscriptions, topups
from ledger.models import EventStatus, StripeEvent
from ledger.topups import Rejected
from pricing import Plan, load_plans
from pricing.packs import PLANS_FILE
from services.stripe_refunds import stripe_id


def _plans() -> dict[str, Plan]:
    return load_plans(get_settings().plans_file or PLANS_FILE)


def _valid_user(value: Any) -> str | None:

    return value if isinstance(value, str) and USER_ID.match(value) else None


def checkout_subscription(s: Session, session: dict[str, Any], event: StripeEvent) -> str:
    """``checkout.session.completed`` with ``mode=subscription``: link the customer to
    the wallet in ``client_reference_id`` (or ``metadata.user_id``) and store the
    subscription. No money: each period's credits come with ``invoice.paid``. A trial
    completes with ``payment_status = no_payment_required`` and is linked the same way."""
    sid = stripe_id(session.get("id"))
    customer = stripe_id(session.get("customer"))
    user_id = _valid_user(session.get("client_reference_id")) or _valid_user(
        (session.get("metadata") or {}).get("user_id"))
    if customer is None or user_id is None:
        raise Rejected(f"subscription session {sid}: no customer or no valid client_reference_id")
    if session.get("payment_status") not in ("paid", "no_payment_required"):
        return EventStatus.IGNORED  # unpaid: async_payment_succeeded follows
    owner = topups.link_customer(s, customer, user_id)
    subscription = stripe_id(session.get("subscription"))
    if subscription:
        status = "active" if session.get("payment_status") == "paid" else "trialing"
        subscriptions.store(s, subscription_id=subscription, user_id=owner, customer=customer,
                            plan=(session.get("metadata") or {}).get("plan"), status=status,
                            current_period_end=None, snapshot_at=0)
    return EventStatus.PROCESSED


def _sub_plan(sub: dict[str, Any]) -> tuple[str | None, int | None]:
    """(plan id, current_period_end) from the subscription's first known item."""
    plans = _plans()
    for item in ((sub.get("items") or {}).get("data")) or []:
        plan = plans.get(stripe_id(item.get("price")) or "")
        if plan is not None:
            end = item.get("current_period_end")
            return plan.id, end if isinstance(end, int) else None
    return None, None


def _owner(s: Session, customer: str | None, metadata: Any) -> str:
    """The wallet of ``customer``, linking it from ``metadata.user_id`` (the
    subscription's metadata, set at Checkout) when it is not linked yet."""
    if customer is None:
        raise Rejected("no customer")
    user_id = _valid_user((metadata or {}).get("user_id")) if isinstance(metadata, dict) else None
    if user_id is not None:
        return topups.link_customer(s, customer, user_id)
    return topups.wallet_of_customer(s, customer)


def _created(event: StripeEvent) -> int:
    created = json.loads(event.payload).get("created")
    return created if isinstance(created, int) else 0


def subscription_event(s: Session, sub: dict[str, Any], event: StripeEvent) -> str:
    """``customer.subscription.created`` / ``updated`` / ``deleted``: store the
    snapshot (plan, status, current period end); a late, older one changes nothing."""
    sub_id = stripe_id(sub.get("id"))
    if sub_id is None:
        raise Rejected("subscription without id")
    customer = stripe_id(sub.get("customer"))
    user_id = _owner(s, customer, sub.get("metadata"))
    plan, period_end = _sub_plan(sub)
    status = "canceled" if event.type == "customer.subscription.deleted" else str(sub.get("status"))
    subscriptions.store(s, subscription_id=sub_id, user_id=user_id, customer=customer, plan=plan,
                        status=status, current_period_end=period_end,
                        snapshot_at=_created(event))
    return EventStatus.PROCESSED


def _line_price(line: dict[str, Any]) -> str | None:
    """A line's Stripe Price id: ``pricing.price_details.price`` (API 2025-03-31 and
    later), else ``price.id`` / ``plan.id`` (earlier versions)."""
    details = (line.get("pricing") or {}).get("price_details") or {}
    return stripe_id(details.get("price")) or stripe_id(line.get("price")) or stripe_id(line.get("plan"))


def _is_proration(line: dict[str, Any]) -> bool:
    parent = line.get("parent") or {}
    for key in ("subscription_item_details", "invoice_item_details"):
        if isinstance(parent.get(key), dict) and parent[key].get("proration"):
            return True
    return bool(line.get("proration"))  # API versions before 2025-03-31


def invoice_credits(invoice: dict[str, Any], plans: dict[str, Plan]) -> tuple[int, list[str]]:
    """(credits, plan ids) a paid invoice grants: per plan line, a full period the
    plan's credits (× quantity), a proration its pro-rated share rounded down (a
    negative one, credit for the old plan's unused time, takes its share back), a $0
    line ``trial_credits``; the sum is scaled down to ``amount_paid`` if Stripe
    collected less than the plan lines' net (discounts, out-of-band) and never < 0.
    Raises ``Rejected`` if no line names a known plan price."""
    lines = ((invoice.get("lines") or {}).get("data")) or []
    credits, net, named = 0, 0, []
    for line in lines:
        plan = plans.get(_line_price(line) or "")
        if plan is None:
            continue
        amount, quantity = line.get("amount"), int(line.get("quantity") or 1)
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise Rejected(f"invoice {invoice.get('id')}: line amount {amount!r} is not cents")
        named.append(plan.id)
        net += amount
        if amount == 0 and not _is_proration(line):
            credits += plan.trial_credits * quantity
        else:
            credits += plan.period_share(amount, quantity)
    if not named:
        raise Rejected(f"invoice {invoice.get('id')}: no line names a known plan price "
                       f"({sorted(filter(None, map(_line_price, lines)))})")
    paid = invoice.get("amount_paid")
    paid = paid if isinstance(paid, int) and not isinstance(paid, bool) else 0
    if net > 0 and paid < net:
        credits = credits * paid // net
    return max(credits, 0), list(dict.fromkeys(named))


def invoice_paid(s: Session, invoice: dict[str, Any], event: StripeEvent) -> str:
    """``invoice.paid``: grant ``invoice_credits`` once per invoice (``invoice:{id}``)
    to the wallet linked to ``invoice.customer`` (or named by the subscription's
    metadata in ``parent.subscription_details``); ``NotYet`` until one is known."""
    invoice_id = stripe_id(invoice.get("id"))
    if invoice_id is None:
        raise Rejected("invoice without id")
    credits, named = invoice_credits(invoice, _plans())
    details = ((invoice.get("parent") or {}).get("subscription_details")) or {}
    user_id = _owner(s, stripe_id(invoice.get("customer")), details.get("metadata"))
    amount_paid = invoice.get("amount_paid")
    paid = amount_paid if isinstance(amount_paid, int) else 0
    topups.grant_invoice(s, invoice_id=invoice_id, user_id=user_id, credits=credits,
                         amount_paid=max(paid, 0), currency=str(invoice.get("currency") or "usd"),
                         plan="+".join(named), event_id=event.id)
    for payment in (((invoice.get("payments") or {}).get("data")) or []):  # only when expanded
        if isinstance(payment, dict) and payment.get("status") == "paid":
            _link_payment(s, invoice_id, payment)
    return EventStatus.PROCESSED


def _link_payment(s: Session, invoice_id: str, payment: dict[str, Any]) -> None:
    details = payment.get("payment") or {}
    pi, charge = stripe_id(details.get("payment_intent")), stripe_id(details.get("charge"))
    if pi or charge:
        topups.link_invoice_payment(s, invoice_id=invoice_id, payment_intent=pi, charge=charge)


def invoice_payment_paid(s: Session, payment: dict[str, Any], event: StripeEvent) -> str:
    """``invoice_payment.paid``: link the invoice's top-up row to the PaymentIntent (or
    charge) that paid it, so a refund or dispute of that charge claws back its share.
    Waits (``NotYet``) for the invoice's ``invoice.paid``; a $0 invoice has no row."""
    invoice_id = stripe_id(payment.get("invoice"))
    if invoice_id is None:
        raise Rejected("invoice payment without invoice")
    if not payment.get("amount_paid"):
        return EventStatus.IGNORED
    _link_payment(s, invoice_id, payment)
    return EventStatus.PROCESSED


HANDLERS = {
    "customer.subscription.created": subscription_event,
    "customer.subscription.updated": subscription_event,
    "customer.subscription.deleted": subscription_event,
    "invoice.paid": invoice_paid,
    "invoice_payment.paid": invoice_payment_paid,
}
