"""Helpers for the Stripe flow tests: buying through the stand-in, posting captured
events in any order, waiting for the worker to settle them, reading top-ups."""
from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ledger.db import transaction
from ledger.models import EventStatus, LedgerTransaction, Reversal, StripeEvent, Topup
from pricing import load_packs
from tests.helpers import Api, wait_for

SETTLED = (EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.FAILED)


def uid(prefix: str = "s") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def open_session(api: Api, user: str, pack: str = "small") -> str:
    """``POST /v1/topups`` → the Checkout Session id (top-up stored ``open``)."""
    r = api.create_topup(user, pack)
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


def bought(api: Api, pack: str = "small") -> tuple[str, str]:
    """A new wallet that bought ``pack`` by card (webhooks delivered, credit awaited)."""
    user = uid()
    session_id = open_session(api, user, pack)
    api.stripe.pay(session_id)
    credits = load_packs()[pack].credits
    wait_for(lambda: api.wallet(user)["balance"] == credits, 20, f"{user} credited")
    return user, session_id


def post_all(api: Api, events: Iterable[dict[str, Any]]) -> list[str]:
    """POST each event (signed now) and require 200; returns their ids."""
    ids = []
    for ev in events:
        r = api.post_event(ev)
        assert r.status_code == 200, r.text
        ids.append(ev["id"])
    return ids


def statuses(sessions: sessionmaker[Session], ids: Iterable[str]) -> dict[str, str]:
    with transaction(sessions) as s:
        rows = s.execute(select(StripeEvent.id, StripeEvent.status).where(StripeEvent.id.in_(list(ids))))
        return dict(rows.all())


def settle(sessions: sessionmaker[Session], ids: Iterable[str], timeout_s: float = 40) -> dict[str, str]:
    """Wait until every event is out of ``received``; returns id → status."""
    ids = list(dict.fromkeys(ids))

    def done() -> dict[str, str] | None:
        found = statuses(sessions, ids)
        return found if len(found) == len(ids) and all(v in SETTLED for v in found.values()) else None

    return wait_for(done, timeout_s, f"{len(ids)} events settled")


def event_ids(result: dict[str, Any]) -> list[str]:
    return [e["id"] for e in result["events"]]


def topup_row(sessions: sessionmaker[Session], session_id: str) -> Topup:
    with transaction(sessions) as s:
        return s.scalars(select(Topup).where(Topup.checkout_session_id == session_id)).one()


def reversal(sessions: sessionmaker[Session], rid: str) -> Reversal | None:
    with transaction(sessions) as s:
        return s.get(Reversal, rid)


def transactions(sessions: sessionmaker[Session], user: str) -> list[tuple[str, str, int, str | None]]:
    """(kind, op_key, amount, ref) of ``user``'s transactions, oldest first."""
    with transaction(sessions) as s:
        return [tuple(r) for r in s.execute(
            select(LedgerTransaction.kind, LedgerTransaction.op_key, LedgerTransaction.amount,
                   LedgerTransaction.ref).where(LedgerTransaction.user_id == user)
            .order_by(LedgerTransaction.id))]


def count_topups(sessions: sessionmaker[Session]) -> int:
    with transaction(sessions) as s:
        return s.scalar(select(func.count()).select_from(Topup))
