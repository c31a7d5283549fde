"""Storing untrusted inbound events before processing (the webhook inbox).

The receiver stores each verified Stripe event in one statement on a connection of its
own (``intake_engine``): on PostgreSQL that connection is in autocommit, so storing is one
round trip (``INSERT … ON CONFLICT DO NOTHING RETURNING``) instead of BEGIN, INSERT and
COMMIT — the intake's largest cost under load (see docs/decisions.md "Webhook intake").
A single statement is atomic on its own, so nothing can be half-written.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from ledger.db import make_engine
from ledger.models import EventStatus, StripeEvent, utcnow

_EVENTS = StripeEvent.__table__


def _insert(dialect_insert: Any) -> Any:
    # Built once: building and cache-keying a statement per call costs more than running it.
    return (dialect_insert(_EVENTS)
            .values(id=bindparam("p_id"), type=bindparam("p_type"), livemode=bindparam("p_livemode"),
                    api_version=bindparam("p_api_version"), payload=bindparam("p_payload"),
                    status=EventStatus.RECEIVED, attempts=0, republishes=0,
                    received_at=bindparam("p_received_at"))
            .on_conflict_do_nothing()
            .returning(_EVENTS.c.id))


_INSERT = {"postgresql": _insert(postgresql.insert), "sqlite": _insert(sqlite.insert)}
_STATUS = select(_EVENTS.c.status).where(_EVENTS.c.id == bindparam("p_id"))


def intake_engine(url: str) -> Engine:
    """An engine for storing inbound events: autocommit on PostgreSQL; on SQLite the
    ordinary engine (its explicit ``BEGIN IMMEDIATE`` recipe needs the commit)."""
    if url.startswith("sqlite"):
        return make_engine(url)
    return make_engine(url, isolation_level="AUTOCOMMIT")


def store_stripe_event(conn: Connection, *, event_id: str, type: str, livemode: bool,
                       api_version: str | None, payload: str) -> str | None:
    """Store a verified Stripe event with its raw body, keyed by ``evt_`` id, and commit.

    Returns None when it is new (stored ``received``), or the status of the copy already
    stored (a duplicate delivery changes nothing). Raises SQLAlchemy's
    ``OperationalError`` when the database is unreachable (nothing stored).
    """
    new = conn.execute(_INSERT[conn.dialect.name], {
        "p_id": event_id, "p_type": type, "p_livemode": livemode, "p_api_version": api_version,
        "p_payload": payload, "p_received_at": utcnow()}).scalar_one_or_none()
    status = None if new is not None else conn.execute(_STATUS, {"p_id": event_id}).scalar_one()
    conn.commit()  # SQLite's transaction; a no-op without a round trip in autocommit
    return status
