"""Stripe events in the webhook inbox, stored as the receiver stores a verified delivery
(``ledger.inbox.store_stripe_event``: status ``received``, no attempts yet).

``StripeEventFactory.create(sessions=s, event=EventFactory(...))`` → the stored
``StripeEvent`` row (detached). ``received_at`` (naive UTC) back-dates the arrival, as
if it had been received then (e.g. past Stripe's retry window); the default is now.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import factory
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from ledger.db import transaction
from ledger.inbox import store_stripe_event
from ledger.models import StripeEvent
from tests.factories.ledger import LedgerFactory
from tests.factories.stripe import EventFactory


class StripeEventFactory(LedgerFactory):
    class Meta:
        model = StripeEvent

    event = factory.SubFactory(EventFactory)
    received_at: datetime | None = None

    @classmethod
    def _build(cls, model_class: type, *args: Any, **kw: Any) -> StripeEvent:
        ev = kw["event"]
        return StripeEvent(id=ev["id"], type=ev["type"], livemode=ev["livemode"], api_version=ev["api_version"],
                           payload=json.dumps(ev), status="received", attempts=0, republishes=0)

    @classmethod
    def _write(cls, sessions: sessionmaker[Session], **kw: Any) -> StripeEvent:
        ev = kw["event"]
        with sessions.kw["bind"].connect() as conn:
            store_stripe_event(conn, event_id=ev["id"], type=ev["type"], livemode=ev["livemode"],
                               api_version=ev["api_version"], payload=json.dumps(ev))
        with transaction(sessions) as s:
            if kw["received_at"] is not None:
                s.execute(update(StripeEvent).where(StripeEvent.id == ev["id"])
                          .values(received_at=kw["received_at"]))
            return s.get_one(StripeEvent, ev["id"])
