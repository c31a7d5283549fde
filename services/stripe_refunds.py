"""Money going back to Stripe: handlers for refund and dispute events (see
``services.stripe_events`` for the dispatch and outcomes).

- ``charge.refunded`` (a Charge; ``amount_refunded`` is cumulative, cents) applies every
  refund of the charge — listed in ``charge.refunds`` or, when that list is missing or
  short (API versions since 2022-11-15 omit it), re-fetched from Stripe.
- ``refund.created`` / ``refund.updated`` / ``refund.failed`` (a Refund) apply that refund;
  ``failed``/``canceled`` restore what it clawed back. ``charge.refund.updated`` (a
  Refund) is the same: webhook endpoints on API versions before 2024-10-28 get card
  refunds' updates only as that event (https://docs.stripe.com/changelog/acacia/2024-10-28/refund-webhook-update),
  so a failed card refund restores its credits whichever event carries it; keyed on the
  refund id (``refund:{re_id}``, ``refund:{re_id}:restore``), so both arriving applies once.
- ``charge.dispute.*`` (a Dispute) follow the money: ``funds_withdrawn`` (and
  ``created`` of a dispute that is not an inquiry or prevented) claw back;
  ``funds_reinstated`` restores — also after ``closed`` ``lost``, when the dispute is won
  on appeal (``appeal_needs_response`` / ``appeal_under_review``, API 2026-10-28; these
  statuses alone move nothing); ``closed`` ``won`` restores, ``lost`` keeps the claw-back.
  ``warning_*`` statuses are inquiries and ``prevented`` (API 2025-08-27.basil: "Stripe can
  block or resolve disputes before they're raised to formal chargebacks",
  https://docs.stripe.com/changelog/basil/2025-08-27/add-preventions-to-dispute) withdrew
  no funds: created so, nothing is clawed back; closed so, whatever the dispute took is
  restored.

Invoices and subscriptions: ``services.stripe_subscriptions``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from ledger import topups
from ledger.models import EventStatus, StripeEvent
from ledger.topups import NotYet, Rejected

log = logging.getLogger(__name__)


def stripe_id(value: Any) -> str | None:
    """A Stripe reference that may be an id or an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _cents(obj: dict[str, Any], field: str) -> int:
    value = obj.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Rejected(f"{obj.get('object')} {obj.get('id')}: {field} {value!r} is not cents")
    return value


def _refunds_listed(charge: dict[str, Any]) -> list[dict[str, Any]]:
    refunds = charge.get("refunds")
    data = refunds.get("data") if isinstance(refunds, dict) else None
    return [r for r in data or [] if isinstance(r, dict) and stripe_id(r.get("id"))]


def _listed_sum(refunds: list[dict[str, Any]]) -> int:
    """Cents the listed refunds cover. Failed ones count too: ``amount_refunded`` in an
    older charge snapshot included them, and a fresh list shows them failed."""
    return sum(r.get("amount") or 0 for r in refunds)


RefundSource = Callable[[str], list[dict[str, Any]]]
"""Lists a charge's refunds from Stripe (``gateways.stripe.StripeGateway.refunds_of_charge``)."""


def no_refund_source(charge_id: str) -> list[dict[str, Any]]:
    """The ``RefundSource`` of a caller that has no Stripe gateway: refuses to guess."""
    raise RuntimeError(f"charge {charge_id}: refunds must be listed from Stripe, and no gateway was given")


def charge_refunded(s: Session, charge: dict[str, Any], event: StripeEvent,
                    fetch_refunds: RefundSource = no_refund_source) -> str:
    """Claw back the share of every refund of the charge, once per refund id. A charge
    whose embedded refund list is short of ``amount_refunded`` is completed from
    ``fetch_refunds`` (the worker passes its Stripe gateway's)."""
    charge_id = stripe_id(charge.get("id"))
    topup = topups.for_charge(s, charge=charge_id, payment_intent=stripe_id(charge.get("payment_intent")))
    refunded = _cents(charge, "amount_refunded")
    refunds = _refunds_listed(charge)
    if _listed_sum(refunds) < refunded and charge_id:
        refunds = fetch_refunds(charge_id)
        if _listed_sum(refunds) < refunded:
            raise NotYet(f"charge {charge_id}: Stripe lists {_listed_sum(refunds)} of "
                         f"{refunded} cents refunded")
    for r in refunds:
        topups.apply_refund(s, topup, refund_id=stripe_id(r.get("id")) or "", amount=_cents(r, "amount"),
                            status=str(r.get("status")), charge=charge_id)
    return EventStatus.PROCESSED


def refund_event(s: Session, refund: dict[str, Any], event: StripeEvent) -> str:
    """``refund.created/updated/failed``: apply this refund (claw back or restore)."""
    refund_id = stripe_id(refund.get("id"))
    if refund_id is None:
        raise Rejected("refund without id")
    charge_id = stripe_id(refund.get("charge"))
    topup = topups.for_charge(s, charge=charge_id, payment_intent=stripe_id(refund.get("payment_intent")))
    status = "failed" if event.type == "refund.failed" else str(refund.get("status"))
    topups.apply_refund(s, topup, refund_id=refund_id, amount=_cents(refund, "amount"),
                        status=status, charge=charge_id)
    return EventStatus.PROCESSED


NO_FUNDS_MOVED = ("prevented",)  # besides the warning_* inquiry statuses


def _dispute_step(event_type: str, status: str) -> str | None:
    if event_type == "charge.dispute.created":
        return "inquiry" if status.startswith("warning_") or status in NO_FUNDS_MOVED else "withdrawn"
    if event_type == "charge.dispute.funds_withdrawn":
        return "withdrawn"
    if event_type == "charge.dispute.funds_reinstated":
        return "won"
    if event_type == "charge.dispute.closed":
        # warning_closed: an inquiry closed without a dispute; nothing was withdrawn.
        # warning_closed: an inquiry closed without a dispute; prevented: stopped before
        # it became a chargeback. Neither keeps funds: restore whatever was taken (if any).
        return {"won": "won", "lost": "lost", "warning_closed": "won", "prevented": "won"}.get(status)
    return None


def dispute_event(s: Session, dispute: dict[str, Any], event: StripeEvent) -> str:
    """``charge.dispute.*``: one dispute step, once (see module doc)."""
    dispute_id = stripe_id(dispute.get("id"))
    if dispute_id is None:
        raise Rejected("dispute without id")
    step = _dispute_step(event.type, str(dispute.get("status")))
    if step is None:
        return EventStatus.IGNORED
    charge_id = stripe_id(dispute.get("charge"))
    topup = topups.for_charge(s, charge=charge_id, payment_intent=stripe_id(dispute.get("payment_intent")))
    topups.apply_dispute(s, topup, dispute_id=dispute_id, amount=_cents(dispute, "amount"),
                         step=step, charge=charge_id)
    return EventStatus.PROCESSED


HANDLERS: dict[str, Callable[[Session, dict[str, Any], StripeEvent], str]] = {
    "charge.refunded": charge_refunded,
    "refund.created": refund_event,
    "refund.updated": refund_event,
    "refund.failed": refund_event,
    "charge.refund.updated": refund_event,  # API versions before 2024-10-28 (card refunds)
    "charge.dispute.created": dispute_event,
    "charge.dispute.funds_withdrawn": dispute_event,
    "charge.dispute.funds_reinstated": dispute_event,
    "charge.dispute.closed": dispute_event,
}
