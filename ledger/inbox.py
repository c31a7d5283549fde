"""Storing untrusted inbound events before processing (the webhook inbox)."""
from __future__ import annotations

from sqlalchemy.orm import Session

from ledger.operations import insert_ignore

from ledger.models import EventStatus, StripeEvent, utcnow


def store_stripe_event(session: Session, *, event_id: str, type: str, livemode: bool,
                       api_version: str | None, payload: str) -> bool:
    """Insert a verified Stripe event with its raw body, keyed by ``evt_`` id.

    Returns False when the id is already stored (a duplicate delivery changes nothing).
    """
    return insert_ignore(session, StripeEvent, id=event_id, type=type, livemode=livemode,
                         api_version=api_version, payload=payload, status=EventStatus.RECEIVED,
                         attempts=0, received_at=utcnow()) is not None
