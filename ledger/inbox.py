"""Storing untrusted inbound events before processing (the webhook inbox).

The receiver stores each verified Stripe event in one statement on a connection of its
own (``intake_engine``): on PostgreSQL that connection is in autocommit, so storing is one
round trip (``INSERT … ON CONFLICT DO NOTHING RETURNING``) instead of BEGIN, INSERT and
COMMIT — the intake's largest cost under load (see docs/decisions.md "Webhook intake").
A single statement is atomic on its own, so nothing can be half-written.
"""
from __future__ import annotations

from sqlalchemy import Connection, Engine, bindparam, select

from ledger.db import make_engine
from ledger.models import EventStatus, StripeEvent, utcnow
from ledger.statements import insert_ignore_statement

_EVENTS = StripeEvent.__table__
_STATUS = select(_EVENTS.c.status).where(_EVENTS.c.id == bindparam("p_id"))


def intake_engine(url: str, *, ping_every_checkout: bool = False) -> Engine:
    """An engine for storing inbound events: autocommit on PostgreSQL; on SQLite the
    ordinary engine (its explicit ``BEGIN IMMEDIATE`` recipe needs the commit).
    ``ping_every_checkout``: see ``ledger.db.make_engine``."""
    if url.startswith("sqlite"):
        return make_engine(url)
    return make_engine(url, ping_every_checkout=ping_every_checkout, isolation_level="AUTOCOMMIT")


def store_stripe_event(conn: Connection, *, event_id: str, type: str, livemode: bool,
                       api_version: str | None, payload: str, commit: bool = True) -> str | None:
    """Store a verified Stripe event with its raw body, keyed by ``evt_`` id, and commit
    (``commit=False``: the caller's transaction — e.g. a session's — commits it).

    Returns None when it is new (stored ``received``), or the status of the copy already
    stored (a duplicate delivery changes nothing). Raises SQLAlchemy's
    ``OperationalError`` when the database is unreachable (nothing stored).
    """
    new = conn.execute(insert_ignore_statement(conn.dialect.name, _EVENTS), {
        "id": event_id, "type": type, "livemode": livemode, "api_version": api_version,
        "payload": payload, "status": EventStatus.RECEIVED, "attempts": 0, "republishes": 0,
        "received_at": utcnow()}).scalar_one_or_none()
    status = None if new is not None else conn.execute(_STATUS, {"p_id": event_id}).scalar_one()
    if commit:
        conn.commit()  # SQLite's transaction; a no-op without a round trip in autocommit
    return status
