"""The Stripe stand-in's account: objects in memory and the operations that change them.

Each operation returns the events Stripe would emit for it, in Stripe's order, as
``event`` envelopes (fixture shape) holding a snapshot of the object; the app stores
and delivers them. Thread-safe (one lock). Amounts in cents. Storage: ``store.py``;
Billing: ``subscriptions.py``; refunds and disputes: ``refunds.py``; Checkout: here.
"""
from __future__ import annotations

import copy

from emulators.stripe import objects
from emulators.stripe.events import new_id
from emulators.stripe.refunds import LEGACY_REFUND_EVENTS_BEFORE, RefundOps, legacy_refund_events
from emulators.stripe.store import InvalidRequest, NotFound, Obj, Objs
from emulators.stripe.subscriptions import SubscriptionOps

__all__ = ["LEGACY_REFUND_EVENTS_BEFORE", "InvalidRequest", "NotFound", "StripeState",
           "legacy_refund_events"]


class StripeState(SubscriptionOps, RefundOps):
    """Checkout Sessions, PaymentIntents, Charges, Refunds, Disputes, Invoices, Events."""

    def create_session(self, params: Obj, idempotency_key: str | None) -> Obj:
        """``POST /v1/checkout/sessions`` (payment mode, ``price_data`` line items)."""
        with self.lock:
            if idempotency_key and len(idempotency_key) > 255:  # docs.stripe.com/api/idempotent_requests
                raise InvalidRequest("Idempotency-Key must be at most 255 characters")
            if idempotency_key and idempotency_key in self.idempotency:
                prior_params, sid = self.idempotency[idempotency_key][0], self.idempotency[idempotency_key][1]["id"]
                if prior_params != repr(params):
                    raise InvalidRequest("idempotency_error: Keys for idempotent requests can only be "
                                         "used with the same parameters they were first used with.")
                return self.get("checkout.session", sid)
            if params.get("mode") == "subscription":
                return self._create_subscription_session(params, idempotency_key)
            if params.get("mode") != "payment":
                raise InvalidRequest("mode must be payment or subscription")
            items = params.get("line_items")
            if not isinstance(items, list) or not items:
                raise InvalidRequest("line_items is required")
            total, currency = 0, None
            for item in items:
                price = item.get("price_data") or {}
                try:
                    total += int(price["unit_amount"]) * int(item.get("quantity", 1))
                except (KeyError, TypeError, ValueError):
                    raise InvalidRequest("line_items[].price_data.unit_amount is required") from None
                currency = price.get("currency")
            if not params.get("success_url"):
                raise InvalidRequest("success_url is required")
            session = objects.checkout_session(
                amount_total=total, currency=str(currency), url_base=self.url_base,
                client_reference_id=params.get("client_reference_id"),
                metadata=dict(params.get("metadata") or {}), success_url=params["success_url"],
                cancel_url=params.get("cancel_url") or "")
            self._put("checkout.session", session)
            self.pi_metadata[session["id"]] = dict((params.get("payment_intent_data") or {}).get("metadata") or {})
            if idempotency_key:
                self.idempotency[idempotency_key] = (repr(params), session)
            return copy.deepcopy(session)

    def _open_session(self, sid: str) -> Obj:
        session = self._obj("checkout.session", sid)
        if session["status"] != "open":
            raise InvalidRequest(f"session {sid} is {session['status']}")
        return session

    def _charge_for(self, session: Obj, pi: Obj) -> Obj:
        ch = objects.charge(amount=session["amount_total"], currency=session["currency"],
                            payment_intent=pi["id"], customer=session["customer"],
                            metadata=pi["metadata"])
        pi.update(status="succeeded", latest_charge=ch["id"], amount_received=pi["amount"])
        return self._put("charge", ch)

    def pay(self, sid: str, method: str = "card", outcome: str = "succeeded") -> Objs:
        """The customer pays session ``sid``: by ``card`` (paid at once) or a ``delayed``
        method (completed ``unpaid``, then ``outcome`` succeeded / failed / pending)."""
        with self.lock:
            session = self._open_session(sid)
            if session["mode"] == "subscription":
                return self._pay_subscription(session)
            customer = new_id("cus")
            pi = self._put("payment_intent", objects.payment_intent(
                amount=session["amount_total"], currency=session["currency"], customer=customer,
                metadata=self.pi_metadata.get(sid, {}), status="processing"))
            session.update(status="complete", payment_intent=pi["id"], customer=customer)
            if method == "card":
                ch = self._charge_for(session, pi)
                session["payment_status"] = "paid"
                return self._events(("charge.succeeded", ch), ("payment_intent.succeeded", pi),
                                    ("checkout.session.completed", session))
            if method != "delayed":
                raise InvalidRequest(f"unknown payment method {method!r}")
            events = self._events(("payment_intent.processing", pi), ("checkout.session.completed", session))
            return events + (self.settle_delayed(sid, outcome) if outcome != "pending" else [])

    def settle_delayed(self, sid: str, outcome: str) -> Objs:
        """The delayed payment of session ``sid`` ends: ``succeeded`` or ``failed``."""
        with self.lock:
            session = self._obj("checkout.session", sid)
            if session["status"] != "complete" or session["payment_status"] != "unpaid":
                raise InvalidRequest(f"session {sid} has no pending delayed payment")
            pi = self._obj("payment_intent", session["payment_intent"])
            if outcome == "succeeded":
                ch = self._charge_for(session, pi)
                session["payment_status"] = "paid"
                return self._events(("charge.succeeded", ch), ("payment_intent.succeeded", pi),
                                    ("checkout.session.async_payment_succeeded", session))
            if outcome == "failed":
                pi["status"] = "requires_payment_method"
                return self._events(("payment_intent.payment_failed", pi),
                                    ("checkout.session.async_payment_failed", session))
            raise InvalidRequest(f"unknown outcome {outcome!r}")

    def expire(self, sid: str) -> Objs:
        with self.lock:
            session = self._open_session(sid)
            session["status"] = "expired"
            return self._events(("checkout.session.expired", session))
