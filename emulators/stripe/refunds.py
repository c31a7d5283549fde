"""Money going back in the Stripe stand-in: refunds (and their failure) and disputes
(won, lost, appealed, prevented) of a paid charge. Amounts in cents."""
from __future__ import annotations

import copy

from emulators.stripe import objects
from emulators.stripe.store import InvalidRequest, Obj, Objs, Store

LEGACY_REFUND_EVENTS_BEFORE = "2024-10-28"  # docs.stripe.com/changelog/acacia/2024-10-28/refund-webhook-update


def legacy_refund_events(api_version: str | None) -> bool:
    """An endpoint on an API version before 2024-10-28: card refunds send no
    ``refund.*`` events (``charge.refunded``, ``charge.refund.updated`` instead)."""
    return bool(api_version) and str(api_version)[:10] < LEGACY_REFUND_EVENTS_BEFORE


class RefundOps(Store):
    """The refund and dispute operations of ``StripeState``; each returns the events sent."""

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
