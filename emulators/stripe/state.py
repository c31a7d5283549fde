"""The Stripe stand-in's account: objects in memory and the operations that change them.

Each operation returns the events Stripe would emit for it, in Stripe's order, as
``event`` envelopes (fixture shape) holding a snapshot of the object; the app stores
and delivers them. Thread-safe (one lock). Amounts in cents.
"""
from __future__ import annotations

import copy
import threading
import time
from typing import Any

from emulators.stripe import billing, objects
from emulators.stripe.events import event as envelope, new_id

Obj = dict[str, Any]
# StripeState has a method named ``list``: in its body, ``list[...]`` would name that method.
Objs = list[Obj]
Sent = list[tuple[str, Obj]]



LEGACY_REFUND_EVENTS_BEFORE = "2024-10-28"  # docs.stripe.com/changelog/acacia/2024-10-28/refund-webhook-update


def legacy_refund_events(api_version: str | None) -> bool:
    """An endpoint on an API version before 2024-10-28: card refunds send no
    ``refund.*`` events (``charge.refunded``, ``charge.refund.updated`` instead)."""
    return bool(api_version) and str(api_version)[:10] < LEGACY_REFUND_EVENTS_BEFORE


class NotFound(KeyError):
    """No such object (the API answers 404 ``resource_missing``)."""


class InvalidRequest(ValueError):
    """The operation does not apply to the object's state (400)."""


class StripeState:
    """Checkout Sessions, PaymentIntents, Charges, Refunds, Disputes, Invoices, Events."""

    KINDS = ("checkout.session", "payment_intent", "charge", "refund", "dispute", "invoice", "event",
             "subscription", "invoice_payment")

    def __init__(self, url_base: str = "http://127.0.0.1:8011") -> None:
        self.lock = threading.RLock()
        self.url_base = url_base
        self.objects: dict[str, dict[str, Obj]] = {k: {} for k in self.KINDS}
        self.order: dict[str, list[str]] = {k: [] for k in self.KINDS}  # creation order
        self.pi_metadata: dict[str, dict[str, str]] = {}  # session id → payment_intent_data.metadata
        self.idempotency: dict[str, tuple[str, Obj]] = {}
        self.prices = billing.price_catalogue()
        self.session_subs: dict[str, Obj] = {}  # subscription session id → its params
        self.invoice_charge: dict[str, str] = {}  # invoice id → charge id

    # -- storage -----------------------------------------------------------------------
    def _put(self, kind: str, obj: Obj) -> Obj:
        if obj["id"] not in self.objects[kind]:
            self.order[kind].append(obj["id"])
        self.objects[kind][obj["id"]] = obj
        return obj

    def get(self, kind: str, oid: str) -> Obj:
        with self.lock:
            try:
                return copy.deepcopy(self.objects[kind][oid])
            except KeyError:
                raise NotFound(f"No such {kind}: '{oid}'") from None

    def _obj(self, kind: str, oid: str) -> Obj:
        try:
            return self.objects[kind][oid]
        except KeyError:
            raise NotFound(f"No such {kind}: '{oid}'") from None

    def list(self, kind: str, *, limit: int = 10, starting_after: str | None = None,
             **filters: str) -> tuple[Objs, bool]:
        """Newest first, like Stripe's list endpoints; ``filters`` match top-level fields."""
        with self.lock:
            ids = list(reversed(self.order[kind]))
            if starting_after is not None:
                ids = ids[ids.index(starting_after) + 1:] if starting_after in ids else []
            found = [o for o in (self.objects[kind][i] for i in ids)
                     if all(o.get(k) == v for k, v in filters.items())]
            return copy.deepcopy(found[:limit]), len(found) > limit

    def _events(self, *items: tuple[str, Obj], api_version: str | None = None) -> Objs:
        out = []
        for type_, obj in items:
            ev = envelope(type_, obj)
            if api_version:
                ev["api_version"] = api_version
            self._put("event", ev)
            out.append(copy.deepcopy(ev))
        return out

    # -- Checkout ----------------------------------------------------------------------
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

    # -- money going back --------------------------------------------------------------
    def charge_of(self, sid_or_charge: str) -> Obj:
        """The charge of a paid session, or the charge itself."""
        if sid_or_charge.startswith("ch_"):
            return self._obj("charge", sid_or_charge)
        if sid_or_charge.startswith("in_"):
            if sid_or_charge not in self.invoice_charge:
                raise InvalidRequest(f"invoice {sid_or_charge} was not charged")
            return self._obj("charge", self.invoice_charge[sid_or_charge])
        session = self._obj("checkout.session", sid_or_charge)
        pi = self.objects["payment_intent"].get(session.get("payment_intent") or "")
        if not pi or not pi.get("latest_charge"):
            raise InvalidRequest(f"session {sid_or_charge} is not paid")
        return self._obj("charge", pi["latest_charge"])

    def refund(self, target: str, amount: int | None = None, list_refunds: bool = False,
               api_version: str | None = None) -> Objs:
        """Refund ``amount`` cents (default: what is left) of a paid session's charge.
        ``charge.refunded`` lists the refunds only with ``list_refunds`` (API versions
        since 2022-11-15 leave them out, so consumers re-fetch them). For an endpoint on
        an ``api_version`` before 2024-10-28 (``legacy_refund_events``) a card refund
        sends no ``refund.created``, only ``charge.refunded``."""
        with self.lock:
            ch = self.charge_of(target)
            left = ch["amount"] - ch["amount_refunded"]
            amount = left if amount is None else amount
            if not 0 < amount <= left:
                raise InvalidRequest(f"refund of {amount} exceeds the {left} left on {ch['id']}")
            re = self._put("refund", objects.refund(amount=amount, currency=ch["currency"],
                                                     charge_id=ch["id"], payment_intent=ch["payment_intent"]))
            ch["amount_refunded"] += amount
            ch["refunded"] = ch["amount_refunded"] == ch["amount"]
            ch["refunds"]["data"].insert(0, copy.deepcopy(re))
            ch["refunds"]["total_count"] = len(ch["refunds"]["data"])
            snapshot = copy.deepcopy(ch)
            if not list_refunds:
                snapshot.pop("refunds")
            if legacy_refund_events(api_version):
                return self._events(("charge.refunded", snapshot), api_version=api_version)
            return self._events(("refund.created", re), ("charge.refunded", snapshot),
                                api_version=api_version)

    def fail_refund(self, refund_id: str, api_version: str | None = None) -> Objs:
        """A refund fails after it was made (the money comes back to the merchant). An
        endpoint on an ``api_version`` before 2024-10-28 gets it as
        ``charge.refund.updated`` (the Refund) instead of ``refund.updated`` /
        ``refund.failed``."""
        with self.lock:
            re = self._obj("refund", refund_id)
            if re["status"] in ("failed", "canceled"):
                raise InvalidRequest(f"refund {refund_id} already {re['status']}")
            re.update(status="failed", failure_reason="expired_or_canceled_card")
            ch = self._obj("charge", re["charge"])
            ch["amount_refunded"] -= re["amount"]
            ch["refunded"] = False
            for listed in ch["refunds"]["data"]:
                if listed["id"] == refund_id:
                    listed.update(status="failed", failure_reason="expired_or_canceled_card")
            if legacy_refund_events(api_version):
                return self._events(("charge.refund.updated", re), api_version=api_version)
            return self._events(("refund.updated", re), ("refund.failed", re), api_version=api_version)

    def dispute(self, target: str, amount: int | None = None, prevented: bool = False) -> Objs:
        """The cardholder disputes a paid session's charge; funds are withdrawn. With
        ``prevented`` the dispute is stopped before it becomes a chargeback (status
        ``prevented``, API 2025-08-27.basil): created and closed so, no funds withdrawn."""
        with self.lock:
            ch = self.charge_of(target)
            amount = ch["amount"] - ch["amount_refunded"] if amount is None else amount
            dp = self._put("dispute", objects.dispute(amount=amount, currency=ch["currency"],
                                                       charge_id=ch["id"], payment_intent=ch["payment_intent"],
                                                       status="prevented" if prevented else "needs_response"))
            ch["disputed"] = True
            if prevented:
                return self._events(("charge.dispute.created", dp), ("charge.dispute.closed", dp))
            return self._events(("charge.dispute.created", dp), ("charge.dispute.funds_withdrawn", dp))

    def close_dispute(self, dispute_id: str, outcome: str) -> Objs:
        """The dispute ends ``won`` (funds reinstated) or ``lost``; a ``lost`` one may then
        be won on ``appeal`` (API 2026-10-28: ``appeal_needs_response``,
        ``appeal_under_review`` as ``charge.dispute.updated``, then funds reinstated and
        closed ``won``)."""
        with self.lock:
            dp = self._obj("dispute", dispute_id)
            if outcome == "appeal":
                if dp["status"] != "lost":
                    raise InvalidRequest(f"dispute {dispute_id} is {dp['status']}, not lost")
                events = []
                for status in ("appeal_needs_response", "appeal_under_review"):
                    dp["status"] = status
                    events += self._events(("charge.dispute.updated", dp))
                dp["status"] = "won"
                return events + self._events(("charge.dispute.funds_reinstated", dp),
                                             ("charge.dispute.closed", dp))
            if dp["status"] in ("won", "lost"):
                raise InvalidRequest(f"dispute {dispute_id} already {dp['status']}")
            if outcome == "won":
                dp["status"] = "won"
                return self._events(("charge.dispute.funds_reinstated", dp), ("charge.dispute.closed", dp))
            if outcome == "lost":
                dp["status"] = "lost"
                return self._events(("charge.dispute.closed", dp))
            raise InvalidRequest(f"unknown outcome {outcome!r}")

    # -- subscriptions -----------------------------------------------------------------
    def pay_invoice(self, customer: str, price: str, amount: int | None = None, quantity: int = 1) -> Objs:
        """A subscription invoice for ``customer`` and Stripe Price ``price`` is paid
        (``amount`` cents; default the catalogue price × quantity, else 2500)."""
        with self.lock:
            if amount is None:
                amount = self.prices[price]["unit_amount"] * quantity if price in self.prices else 2500
            inv = self._put("invoice", objects.invoice(customer=customer, price=price, amount=amount,
                                                        quantity=quantity))
            return self._events(("invoice.paid", inv), ("invoice.payment_succeeded", inv))
