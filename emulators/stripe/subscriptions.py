"""Stripe Billing in the stand-in: subscription Checkout Sessions, invoices paid per
period (``renew``), prorated plan changes, cancellation and one-off invoice payments.
Amounts in cents; periods ``billing.PERIOD_S`` seconds."""
from __future__ import annotations

import copy
import time

from emulators.stripe import billing, objects
from emulators.stripe.events import new_id
from emulators.stripe.store import InvalidRequest, Obj, Objs, Sent, Store


class SubscriptionOps(Store):
    """The subscription operations of ``StripeState``; each returns the events sent."""

    def _create_subscription_session(self, params: Obj, idempotency_key: str | None) -> Obj:
        items = params.get("line_items")
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
            raise InvalidRequest("line_items: one recurring price is required")
        price = self.prices.get(str(items[0].get("price")))
        if price is None:
            raise InvalidRequest(f"No such price: '{items[0].get('price')}'")
        if not params.get("success_url"):
            raise InvalidRequest("success_url is required")
        quantity = int(items[0].get("quantity", 1))
        sub_data = params.get("subscription_data") or {}
        trial = int(sub_data.get("trial_period_days") or 0)
        session = objects.checkout_session(
            amount_total=0 if trial else price["unit_amount"] * quantity, currency=price["currency"],
            url_base=self.url_base, client_reference_id=params.get("client_reference_id"),
            metadata=dict(params.get("metadata") or {}), success_url=params["success_url"],
            cancel_url=params.get("cancel_url") or "")
        session.update(mode="subscription", subscription=None, customer_creation=None)
        self._put("checkout.session", session)
        self.session_subs[session["id"]] = {"price": price, "quantity": quantity, "trial": trial,
                                            "metadata": dict(sub_data.get("metadata") or {})}
        if idempotency_key:
            self.idempotency[idempotency_key] = (repr(params), session)
        return copy.deepcopy(session)

    def _bill(self, sub: Obj, lines: Objs, invoice_id: str, reason: str) -> Sent:
        """Issue a paid invoice of ``lines`` for ``sub``; charge its total if > 0.
        Returns the (event type, object) pairs Stripe sends, in its order."""
        currency = sub["items"]["data"][0]["price"]["currency"]
        inv = self._put("invoice", billing.invoice(sub=sub, lines=lines, invoice_id=invoice_id,
                                                   billing_reason=reason, currency=currency))
        sub["latest_invoice"] = inv["id"]
        if inv["amount_paid"] <= 0:
            return [("invoice.paid", inv)]
        pi = self._put("payment_intent", objects.payment_intent(
            amount=inv["amount_paid"], currency=currency, customer=sub["customer"], metadata={},
            status="processing"))
        ch = objects.charge(amount=inv["amount_paid"], currency=currency, payment_intent=pi["id"],
                            customer=sub["customer"], metadata={})
        pi.update(status="succeeded", latest_charge=ch["id"], amount_received=pi["amount"])
        self._put("charge", ch)
        self.invoice_charge[inv["id"]] = ch["id"]
        pay = self._put("invoice_payment", billing.invoice_payment(
            invoice_id=inv["id"], amount=inv["amount_paid"], currency=currency, payment_intent=pi["id"]))
        return [("charge.succeeded", ch), ("payment_intent.succeeded", pi), ("invoice.paid", inv),
                ("invoice_payment.paid", pay)]

    def _pay_subscription(self, session: Obj) -> Objs:
        spec = self.session_subs[session["id"]]
        customer = new_id("cus")
        sub = self._put("subscription", billing.subscription(
            customer=customer, price=spec["price"], quantity=spec["quantity"], metadata=spec["metadata"],
            status="trialing" if spec["trial"] else "active"))
        iid = new_id("in")
        amount = 0 if spec["trial"] else spec["price"]["unit_amount"] * spec["quantity"]
        billed = self._bill(sub, [billing.line(invoice_id=iid, sub=sub, price=spec["price"]["id"], amount=amount,
                                               quantity=spec["quantity"], proration=False,
                                               currency=spec["price"]["currency"])], iid, "subscription_create")
        session.update(status="complete", customer=customer, subscription=sub["id"], invoice=iid,
                       payment_status="no_payment_required" if amount == 0 else "paid")
        return self._events(("customer.subscription.created", sub), *billed,
                            ("checkout.session.completed", session))

    def renew(self, sub_id: str) -> Objs:
        """The next period of subscription ``sub_id`` is invoiced and paid (a trial ends)."""
        with self.lock:
            sub = self._obj("subscription", sub_id)
            if sub["status"] == "canceled":
                raise InvalidRequest(f"subscription {sub_id} is canceled")
            item = sub["items"]["data"][0]
            item["current_period_start"] = item["current_period_end"]
            item["current_period_end"] += billing.PERIOD_S
            sub["status"] = "active"
            iid = new_id("in")
            price = item["price"]
            billed = self._bill(sub, [billing.line(
                invoice_id=iid, sub=sub, price=price["id"], amount=price["unit_amount"] * item["quantity"],
                quantity=item["quantity"], proration=False, currency=price["currency"])], iid,
                "subscription_cycle")
            return self._events(("customer.subscription.updated", sub), *billed)

    def change_plan(self, sub_id: str, price_id: str, remaining: float = 0.5) -> Objs:
        """Switch ``sub_id`` to ``price_id`` mid-period with ``remaining`` (0–1) of the
        period left, invoicing the proration at once (``proration_behavior=always_invoice``):
        a negative line for the old price's unused time, a positive one for the new price."""
        with self.lock:
            sub = self._obj("subscription", sub_id)
            new = self.prices.get(price_id)
            if new is None:
                raise InvalidRequest(f"No such price: '{price_id}'")
            if not 0 < remaining <= 1:
                raise InvalidRequest("remaining must be in (0, 1]")
            item = sub["items"]["data"][0]
            old, qty = item["price"], item["quantity"]
            iid = new_id("in")
            lines = [billing.line(invoice_id=iid, sub=sub, price=old["id"], quantity=qty, proration=True,
                                  amount=-round(old["unit_amount"] * qty * remaining), currency=old["currency"]),
                     billing.line(invoice_id=iid, sub=sub, price=new["id"], quantity=qty, proration=True,
                                  amount=round(new["unit_amount"] * qty * remaining), currency=new["currency"])]
            item["price"] = dict(new)
            billed = self._bill(sub, lines, iid, "subscription_update")
            return self._events(("customer.subscription.updated", sub), *billed)

    def cancel(self, sub_id: str) -> Objs:
        with self.lock:
            sub = self._obj("subscription", sub_id)
            sub.update(status="canceled", canceled_at=int(time.time()))
            return self._events(("customer.subscription.deleted", sub))

    def pay_invoice(self, customer: str, price: str, amount: int | None = None, quantity: int = 1) -> Objs:
        """A subscription invoice for ``customer`` and Stripe Price ``price`` is paid
        (``amount`` cents; default the catalogue price × quantity, else 2500)."""
        with self.lock:
            if amount is None:
                amount = self.prices[price]["unit_amount"] * quantity if price in self.prices else 2500
            inv = self._put("invoice", objects.invoice(customer=customer, price=price, amount=amount,
                                                        quantity=quantity))
            return self._events(("invoice.paid", inv), ("invoice.payment_succeeded", inv))
