"""Applying stored Stripe events to the ledger (docs/architecture.md "Stripe").

One handler per event type (checkout here; refunds, disputes and invoices in
``services.stripe_refunds``); unknown types are kept and marked ``ignored``. Each event is
applied at most once: the event row is locked and its status compared, and the money
behind it carries its own operation key (``topup:{session_id}``, ``refund:{re_id}`` …),
so the same payment arriving as another event object moves nothing twice.

Outcomes: ``processed`` / ``ignored`` / ``wrong_mode`` (livemode differs from the
deployment's); ``Rejected`` → ``failed`` with the reason;
``NotYet`` (a refund before its top-up is credited, an invoice before its customer is
linked) → stays ``received`` with the reason in ``last_error`` and is retried with
capped backoff (task retries, then the outbox sweeper) until it had
``stripe_pending_attempts`` attempts and waited ``stripe_pending_window_s`` (3 days, as
long as Stripe retries), then ``failed`` — which ``gpubill reconcile`` reports.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, update
from sqlalchemy.orm import Session, sessionmaker

from base import queues
from base.ids import USER_ID  # the one user-id type, a full match (issue 15)
from ledger import topups
from ledger.db import transaction
from ledger.models import EventStatus, StripeEvent, Topup, TopupStatus, utcnow
from ledger.topups import NotYet, Rejected
from pricing import load_packs
from services import stripe_refunds, stripe_subscriptions
from services.outbox import Outbox
from services.stripe_refunds import stripe_id as _id

log = logging.getLogger(__name__)
PENDING = "pending"  # process_event's answer for "retry later" (the row stays received)

Handler = Callable[[Session, dict[str, Any], StripeEvent], str]


def _session_topup(s: Session, session: dict[str, Any], *, create: bool) -> Topup | None:
    """The stored top-up of a Checkout Session, locked.

    Sessions made by ``POST /v1/topups`` have one. A session created elsewhere (the
    dashboard, a Payment Link, before this version) gets one from ``metadata.pack`` and
    ``client_reference_id`` when ``create``; the pack's price is then what is checked.
    """
    session_id = _id(session.get("id"))
    if session_id is None:
        raise Rejected("checkout session without id")
    topup = topups.by_session(s, session_id)
    if topup is not None or not create:
        return topup
    metadata = session.get("metadata") or {}
    user_id = session.get("client_reference_id") or metadata.get("user_id")
    if not isinstance(user_id, str) or not USER_ID.match(user_id):
        raise Rejected(f"session {session_id}: no valid client_reference_id / metadata.user_id")
    pack = load_packs().get(str(metadata.get("pack")))
    if pack is None:
        raise Rejected(f"session {session_id}: unknown pack {metadata.get('pack')!r}")
    return topups.open_topup(s, session_id=session_id, user_id=user_id, pack=pack)


def checkout_paid(s: Session, session: dict[str, Any], event: StripeEvent) -> str:
    """``checkout.session.completed`` / ``checkout.session.async_payment_succeeded``:
    credit the stored top-up once per session when ``payment_status == "paid"``.
    A ``mode=subscription`` session links its customer instead
    (``services.stripe_subscriptions.checkout_subscription``).

    An ``unpaid`` completion (a delayed payment method) only records the links and
    waits for the async result (``ignored``: nothing applied). Stripe's ``amount_total``
    (cents) and ``currency`` must equal the stored top-up, else it is flagged.
    """
    if session.get("mode") == "subscription":
        return stripe_subscriptions.checkout_subscription(s, session, event)
    topup = _session_topup(s, session, create=True)
    assert topup is not None
    topups.link(s, topup, payment_intent=_id(session.get("payment_intent")),
                customer=_id(session.get("customer")))
    if session.get("payment_status") != "paid":
        return EventStatus.IGNORED
    status = topups.credit(s, topup, amount_total=session.get("amount_total"),
                           currency=session.get("currency"), event_id=event.id)
    if status == TopupStatus.MISMATCH:  # flagged on the top-up, parked on the event
        event.last_error = topup.note
        return EventStatus.FAILED
    return EventStatus.PROCESSED


def _closer(status: str, why: str) -> Handler:
    def close(s: Session, session: dict[str, Any], event: StripeEvent) -> str:
        topup = _session_topup(s, session, create=False)
        if topup is None:
            return EventStatus.IGNORED
        topups.close(s, topup, status, f"{why} ({event.id})")
        return EventStatus.PROCESSED

    close.__doc__ = f"Close the session's open top-up without credit: {why}."
    return close


def charge_succeeded(s: Session, charge: dict[str, Any], event: StripeEvent) -> str:
    """``charge.succeeded``: remember the payment_intent ↔ charge link (no money).

    A charge of one of our top-ups (its metadata, copied from
    ``payment_intent_data.metadata``, names a pack) that arrives before the session's
    completion waits for it; other charges are ignored.
    """
    pi = _id(charge.get("payment_intent"))
    topup = topups.by_payment_intent(s, pi) if pi else None
    if topup is None:
        if pi and (charge.get("metadata") or {}).get("pack"):
            raise NotYet(f"charge {charge.get('id')}: no top-up linked to {pi} yet")
        return EventStatus.IGNORED
    topups.link(s, topup, charge=_id(charge.get("id")))
    return EventStatus.PROCESSED


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": checkout_paid,
    "checkout.session.async_payment_succeeded": checkout_paid,
    "checkout.session.async_payment_failed": _closer(TopupStatus.FAILED, "async payment failed"),
    "checkout.session.expired": _closer(TopupStatus.EXPIRED, "checkout session expired"),
    "charge.succeeded": charge_succeeded,
    **stripe_refunds.HANDLERS,
    **stripe_subscriptions.HANDLERS,
}


# Events whose application may be what a parked event waited for: they credit a top-up,
# grant an invoice, link a payment or a customer.
PREREQUISITES = frozenset({
    "checkout.session.completed", "checkout.session.async_payment_succeeded", "charge.succeeded",
    "invoice.paid", "invoice_payment.paid",
})
GAVE_UP = "gave up after"  # last_error prefix of an event parked for waiting too long


def _revive_waiting(s: Session) -> int:
    """Set events parked for waiting too long back to ``received`` (due at once), so the
    outbox sweeper delivers them again: a prerequisite has just been applied. Each gets one
    more attempt — past its bounds, one that still waits parks again at once. Returns
    how many were revived (parked events are rare: this touches few rows)."""
    revived = s.execute(update(StripeEvent).where(
        StripeEvent.status == EventStatus.FAILED, StripeEvent.last_error.startswith(GAVE_UP))
        .values(status=EventStatus.RECEIVED, republish_at=None))
    return int(getattr(revived, "rowcount", 0) or 0)


def process_event(factory: sessionmaker[Session], event_id: str, *, livemode: bool,
                  max_attempts: int = 8, window_s: float = 0.0,
                  fetch_refunds: stripe_refunds.RefundSource = stripe_refunds.no_refund_source) -> str | None:
    """Apply stored event ``event_id`` once; returns its status after (``PENDING`` when
    it waits for something not known yet), None if unknown.

    A parked (``failed``) event is left as it is until ``gpubill events replay`` sets it
    back to ``received`` — or, for one parked after waiting too long, until an event of a
    ``PREREQUISITES`` type applies (``_revive_waiting``). A ``livemode`` that differs from this deployment's is stored
    ``wrong_mode`` (test-mode events never touch a live ledger; ``gpubill reconcile``
    reports it). ``Rejected`` parks the event as ``failed``; ``NotYet`` keeps it
    ``received`` (applied by a later delivery once what it waits for arrives) until it
    had ``max_attempts`` attempts and waited ``window_s`` seconds since it was received
    (Stripe's own retry period, 3 days), then parks it. Other errors propagate (the
    transaction rolls back; the task retries or records them). ``fetch_refunds`` lists a
    charge's refunds from Stripe when an event's own list is incomplete (the only
    outbound call; the worker passes its gateway's ``refunds_of_charge``).
    """
    with transaction(factory) as s:
        event = s.get(StripeEvent, event_id, with_for_update=True, populate_existing=True)
        if event is None:
            return None
        # A parked (failed) event waits for an operator's replay, which sets it back to
        # received: a retry still scheduled from before it was parked, or a second retry
        # chain started by the outbox sweeper, must not apply it behind the operator's back.
        if event.status in (EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.FAILED,
                            EventStatus.WRONG_MODE):
            return event.status
        event.attempts += 1
        if _apply(s, event, livemode, fetch_refunds, max_attempts, window_s) == PENDING:
            return PENDING
        if event.status == EventStatus.PROCESSED and event.type in PREREQUISITES and _revive_waiting(s):
            log.info("stripe event %s applied: parked waiting events revived", event_id)
        event.processed_at = utcnow()
        return event.status


def _apply(s: Session, event: StripeEvent, livemode: bool, fetch_refunds: stripe_refunds.RefundSource,
           max_attempts: int, window_s: float) -> str | None:
    """Apply the locked ``event`` by its type's handler in a savepoint, setting its
    ``status`` and ``last_error``; ``PENDING`` when it waits (``_wait``), else None."""
    handler = HANDLERS.get(event.type)
    if event.livemode != livemode:
        # Stored as wrong_mode and reported by reconcile, never silently ignored: a
        # live event reaching a test-mode deployment (or the reverse) is a misconfiguration.
        event.status, event.last_error = EventStatus.WRONG_MODE, "livemode differs from deployment"
        return None
    if handler is None:
        event.status = EventStatus.IGNORED
        return None
    obj = json.loads(event.payload)["data"]["object"]
    try:
        with s.begin_nested():
            event.last_error = None
            event.status = (handler(s, obj, event) if handler is not stripe_refunds.charge_refunded
                            else stripe_refunds.charge_refunded(s, obj, event, fetch_refunds))
    except Rejected as rejected:
        log.warning("stripe event %s rejected: %s", event.id, rejected)
        event.status, event.last_error = EventStatus.FAILED, str(rejected)
    except NotYet as waiting:
        return _wait(event, waiting, max_attempts, window_s)
    return None


def _wait(event: StripeEvent, waiting: NotYet, max_attempts: int, window_s: float) -> str | None:
    """``event`` waits for something not known yet: kept ``received`` (``PENDING``)
    until it had ``max_attempts`` attempts and waited ``window_s`` seconds since it was
    received, then parked ``failed`` (None) with ``GAVE_UP`` in ``last_error``."""
    waited = (utcnow() - event.received_at).total_seconds()
    if event.attempts < max_attempts or waited < window_s:
        event.status, event.last_error = EventStatus.RECEIVED, f"waiting: {waiting}"
        return PENDING
    log.warning("stripe event %s parked after %d attempts (%.0f s): %s", event.id,
                event.attempts, waited, waiting)
    event.status = EventStatus.FAILED
    event.last_error = f"{GAVE_UP} {event.attempts} attempts ({waited:.0f} s): {waiting}"
    return None


def record_failure(factory: sessionmaker[Session], event_id: str, error: str) -> None:
    """Park an event whose processing raised unexpectedly, keeping the error for replay."""
    with transaction(factory) as s:
        event = s.get(StripeEvent, event_id, with_for_update=True)
        if event is not None and event.status == EventStatus.RECEIVED:
            event.status, event.last_error = EventStatus.FAILED, error[:2000]
            event.attempts += 1


# Outbox entry (``services.outbox``): an event stored (or revived, or set back by a
# replay) but not applied.
OUTBOX = (
    Outbox(queues.PROCESS_STRIPE_EVENT, StripeEvent, lambda cutoff: and_(
        StripeEvent.status == EventStatus.RECEIVED, StripeEvent.received_at < cutoff),
        (StripeEvent.id,), StripeEvent.republishes, StripeEvent.republish_at),
)
