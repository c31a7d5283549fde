"""Stripe objects and event envelopes as plain dicts, each starting from Stripe's own
example object (``emulators/stripe/fixtures/*.json``, from stripe/openapi
``fixtures3.json``; every unknown field kept, as real payloads carry them) with the
fields a scenario sets. Shapes of API version ``2026-10-28.endive``: an invoice names its
subscription in ``parent.subscription_details`` (no ``invoice.subscription`` /
``invoice.charge`` since 2025-03-31 basil, https://docs.stripe.com/changelog/basil),
a subscription's period is on its items. Amounts are integer cents, as Stripe's.

``EventFactory(type="refund.created", obj=RefundFactory(charge=ch))`` → the envelope
(``data.object`` a copy of ``obj``); default: a ``checkout.session.completed`` of a paid
``CheckoutSessionFactory`` (pack ``small``, its price from ``pricing/packs.toml`` via
``tests/model/rates.py``). ``build`` and ``create`` are the same: nothing is stored.
"""
from __future__ import annotations

import copy
import time
from typing import Any, ClassVar

import factory

from emulators.stripe.events import fixture, new_id
from tests.factories.ledger import user_id
from tests.model import rates

API_VERSION = "2026-10-28.endive"


class StripeObjectFactory(factory.DictFactory):
    """The fixture ``_fixture`` updated with the declared fields."""

    class Meta:
        abstract = True

    _fixture: ClassVar[str] = ""

    @classmethod
    def _build(cls, model_class: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        base = fixture(cls._fixture) if cls._fixture else {}
        return {**base, **kwargs}

    _create = _build


def _now() -> int:
    return int(time.time())


class CheckoutSessionFactory(StripeObjectFactory):
    """A completed, paid one-off (``mode=payment``) Checkout Session of ``user`` buying ``pack``."""

    _fixture = "checkout_session"

    class Params:
        pack = "small"
        user = factory.LazyFunction(lambda: user_id("s"))

    id = factory.LazyFunction(lambda: new_id("cs_test"))
    object = "checkout.session"
    mode = "payment"
    status = "complete"
    payment_status = "paid"
    amount_total = factory.LazyAttribute(lambda o: rates.packs()[o.pack]["price"])
    amount_subtotal = factory.SelfAttribute("amount_total")
    currency = factory.LazyAttribute(lambda o: rates.packs()[o.pack]["currency"])
    client_reference_id = factory.SelfAttribute("user")
    metadata = factory.LazyAttribute(lambda o: {"user_id": o.user, "pack": o.pack})
    payment_intent = factory.LazyFunction(lambda: new_id("pi"))
    livemode = False
    created = factory.LazyFunction(_now)


class ChargeFactory(StripeObjectFactory):
    """A succeeded, captured card charge with an empty refund list."""

    _fixture = "charge"

    id = factory.LazyFunction(lambda: new_id("ch"))
    amount = 500
    amount_captured = factory.SelfAttribute("amount")
    amount_refunded = 0
    captured = True
    paid = True
    refunded = False
    disputed = False
    status = "succeeded"
    currency = "usd"
    payment_intent = factory.LazyFunction(lambda: new_id("pi"))
    customer: str | None = None
    metadata = factory.LazyFunction(dict)
    created = factory.LazyFunction(_now)
    livemode = False
    source = None
    refunds = factory.LazyAttribute(lambda o: {"object": "list", "data": [], "has_more": False,
                                               "total_count": 0, "url": f"/v1/charges/{o.id}/refunds"})


class RefundFactory(StripeObjectFactory):
    _fixture = "refund"

    id = factory.LazyFunction(lambda: new_id("re"))
    amount = 100
    currency = "usd"
    charge = factory.LazyFunction(lambda: new_id("ch"))
    payment_intent: str | None = None
    status = "succeeded"
    reason = "requested_by_customer"
    created = factory.LazyFunction(_now)


class DisputeFactory(StripeObjectFactory):
    _fixture = "dispute"

    id = factory.LazyFunction(lambda: new_id("dp"))
    amount = 500
    currency = "usd"
    charge = factory.LazyFunction(lambda: new_id("ch"))
    payment_intent: str | None = None
    status = "needs_response"
    reason = "fraudulent"
    is_charge_refundable = False
    created = factory.LazyFunction(_now)


class SubscriptionFactory(StripeObjectFactory):
    """An active subscription of ``customer`` to ``quantity`` × Price of ``plan``
    (``pricing/plans.toml``). No fixture file: the shape of
    https://docs.stripe.com/api/subscriptions/object (the stand-in's ``emulators.stripe.billing``)."""

    class Params:
        plan = factory.LazyFunction(lambda: next(iter(rates.plans())))
        price = factory.LazyAttribute(lambda o: rates.plans()[o.plan]["price"])
        period_s = 30 * 24 * 3600

    id = factory.LazyFunction(lambda: new_id("sub"))
    object = "subscription"
    customer = factory.LazyFunction(lambda: new_id("cus"))
    status = "active"
    metadata = factory.LazyFunction(dict)
    livemode = False
    created = factory.LazyFunction(_now)
    cancel_at_period_end = False
    canceled_at = None
    latest_invoice = None
    quantity = 1
    items = factory.LazyAttribute(lambda o: {"object": "list", "has_more": False, "data": [{
        "id": new_id("si"), "object": "subscription_item", "subscription": o.id, "quantity": o.quantity,
        "price": {"id": o.price, "object": "price", "type": "recurring",
                  "recurring": {"interval": "month", "interval_count": 1}},
        "current_period_start": o.created, "current_period_end": o.created + o.period_s}]})

    @classmethod
    def _build(cls, model_class: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        kwargs.pop("quantity")  # on the item, not the subscription
        return super()._build(model_class, *args, **kwargs)

    _create = _build


def _invoice_line(o: Any) -> dict[str, Any]:
    sub = o.subscription
    item = sub["items"]["data"][0]
    amount = o.amount
    return {"id": new_id("il"), "object": "line_item", "invoice": o.id, "amount": amount,
            "currency": o.currency, "quantity": item["quantity"], "description": f"{item['quantity']} × {o.price}",
            "livemode": False, "metadata": {}, "subtotal": amount,
            "pricing": {"type": "price_details", "unit_amount_decimal": str(amount // max(item["quantity"], 1)),
                        "price_details": {"price": o.price, "product": new_id("prod")}},
            "parent": {"type": "subscription_item_details", "invoice_item_details": None,
                       "subscription_item_details": {"subscription": sub["id"], "subscription_item": item["id"],
                                                     "invoice_item": None, "proration": False,
                                                     "proration_details": {"credited_items": None}}}}


class InvoiceFactory(StripeObjectFactory):
    """A paid subscription invoice with one line for ``subscription``'s Price (endive: the
    subscription in ``parent.subscription_details``, no ``subscription``/``charge``/
    ``payment_intent`` fields). ``amount``: cents (default the plan's amount)."""

    _fixture = "invoice"

    class Params:
        subscription = factory.SubFactory(SubscriptionFactory)
        price = factory.LazyAttribute(lambda o: o.subscription["items"]["data"][0]["price"]["id"])
        amount = factory.LazyAttribute(lambda o: rates.plans_by_price()[o.price]["amount"]
                                       * o.subscription["items"]["data"][0]["quantity"])

    id = factory.LazyFunction(lambda: new_id("in"))
    customer = factory.LazyAttribute(lambda o: o.subscription["customer"])
    status = "paid"
    billing_reason = "subscription_cycle"
    currency = "usd"
    amount_due = factory.SelfAttribute("amount")
    amount_paid = factory.SelfAttribute("amount")
    amount_remaining = 0
    amount_overpaid = 0
    subtotal = factory.SelfAttribute("amount")
    total = factory.SelfAttribute("amount")
    attempted = True
    attempt_count = 1
    created = factory.LazyFunction(_now)
    livemode = False
    last_finalization_error = None
    parent = factory.LazyAttribute(lambda o: {
        "type": "subscription_details", "quote_details": None,
        "subscription_details": {"subscription": o.subscription["id"], "metadata": o.subscription["metadata"]}})
    lines = factory.LazyAttribute(lambda o: {"object": "list", "data": [_invoice_line(o)], "has_more": False,
                                             "total_count": 1, "url": f"/v1/invoices/{o.id}/lines"})

    @classmethod
    def _build(cls, model_class: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        inv = super()._build(model_class, *args, **kwargs)
        for removed in ("subscription", "charge", "payment_intent"):  # gone since 2025-03-31 (basil)
            inv.pop(removed, None)
        return inv

    _create = _build


class EventFactory(StripeObjectFactory):
    """An ``event`` envelope of ``type`` carrying a copy of ``obj`` in ``data.object``."""

    _fixture = "event"

    class Params:
        obj = factory.SubFactory(CheckoutSessionFactory)

    id = factory.LazyFunction(lambda: new_id("evt"))
    type = "checkout.session.completed"
    created = factory.LazyFunction(_now)
    livemode = False
    api_version = API_VERSION
    pending_webhooks = 1
    data = factory.LazyAttribute(lambda o: {"object": copy.deepcopy(o.obj)})
