"""Applying stored Stripe events to the ledger (design.md "Stripe").

One handler per event type; unknown types are kept and marked ``ignored``. Each event
is applied at most once: the event row is locked and its status compared, and the
money behind it carries its own operation key (``topup:{checkout_session_id}``), so the
same payment arriving as another event object credits nothing twice.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from ledger import operations as ops
from ledger.db import transaction
from ledger.models import EventStatus, StripeEvent, Topup, utcnow
from pricing import load_packs

log = logging.getLogger(__name__)
USER_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")


class EventRejected(Exception):
    """The event cannot be applied as sent (unknown pack, amount mismatch, no wallet).

    It is parked as ``failed`` with this reason for an operator, never dropped."""


Handler = Callable[[Session, dict[str, Any], StripeEvent], str]


def checkout_completed(s: Session, session: dict[str, Any], event: StripeEvent) -> str:
    """``checkout.session.completed``: credit the pack's credits once per session.

    Only ``payment_status == "paid"`` credits; an ``unpaid`` completion (delayed payment
    methods) waits for ``async_payment_succeeded``. The wallet is
    ``client_reference_id`` (or ``metadata.user_id``); the pack is ``metadata.pack``, and
    Stripe's ``amount_total`` (cents) and ``currency`` must match the pack's price.
    """
    if session.get("payment_status") != "paid":
        return EventStatus.IGNORED
    session_id = session.get("id")
    metadata = session.get("metadata") or {}
    user_id = session.get("client_reference_id") or metadata.get("user_id")
    if not isinstance(session_id, str) or not session_id:
        raise EventRejected("checkout session without id")
    if not isinstance(user_id, str) or not USER_ID.match(user_id):
        raise EventRejected(f"session {session_id}: no valid client_reference_id / metadata.user_id")
    pack = load_packs().get(str(metadata.get("pack")))
    if pack is None:
        raise EventRejected(f"session {session_id}: unknown pack {metadata.get('pack')!r}")
    if session.get("amount_total") != pack.price or session.get("currency") != pack.currency:
        raise EventRejected(
            f"session {session_id}: paid {session.get('amount_total')} {session.get('currency')}, "
            f"pack {pack.id} costs {pack.price} {pack.currency}")
    posted = ops.credit_topup(s, user_id=user_id, amount=pack.credits,
                              op_key=f"topup:{session_id}", ref=session_id)
    if not posted.replayed:
        s.add(Topup(checkout_session_id=session_id, user_id=user_id, pack=pack.id,
                    credits=pack.credits, amount_total=pack.price, currency=pack.currency,
                    payment_intent_id=session.get("payment_intent"), status="credited",
                    event_id=event.id, credited_at=utcnow()))
    return EventStatus.PROCESSED


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": checkout_completed,
}


def process_event(factory: sessionmaker[Session], event_id: str, *, livemode: bool) -> str | None:
    """Apply stored event ``event_id`` once; returns its status after, None if unknown.

    A ``livemode`` that differs from this deployment's is ignored (test-mode events never
    touch a live ledger). ``EventRejected`` parks the event as ``failed``; other errors
    propagate (the transaction rolls back, the task retries or records them).
    """
    with transaction(factory) as s:
        event = s.get(StripeEvent, event_id, with_for_update=True, populate_existing=True)
        if event is None:
            return None
        if event.status in (EventStatus.PROCESSED, EventStatus.IGNORED):
            return event.status
        event.attempts += 1
        handler = HANDLERS.get(event.type)
        if event.livemode != livemode:
            event.status, event.last_error = EventStatus.IGNORED, "livemode differs from deployment"
        elif handler is None:
            event.status = EventStatus.IGNORED
        else:
            obj = json.loads(event.payload)["data"]["object"]
            try:
                with s.begin_nested():
                    event.status = handler(s, obj, event)
                    event.last_error = None
            except EventRejected as rejected:
                log.warning("stripe event %s rejected: %s", event_id, rejected)
                event.status, event.last_error = EventStatus.FAILED, str(rejected)
        event.processed_at = utcnow()
        return event.status


def record_failure(factory: sessionmaker[Session], event_id: str, error: str) -> None:
    """Park an event whose processing raised unexpectedly, keeping the error for replay."""
    with transaction(factory) as s:
        event = s.get(StripeEvent, event_id, with_for_update=True)
        if event is not None and event.status == EventStatus.RECEIVED:
            event.status, event.last_error = EventStatus.FAILED, error[:2000]
            event.attempts += 1
