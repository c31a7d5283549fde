"""Wallet operations: ``credit_topup``, ``place_hold``, ``capture``, ``release``.

Each runs inside the caller's DB transaction (``with session.begin():`` — see
``ledger.db.transaction``) so a job's state change commits atomically with its money.
Each is idempotent by operation key, kept forever: replaying a key returns the first
outcome with ``replayed=True``; the same key with a different amount raises
``IdempotencyConflict``. Amounts are int credits.

Concurrency: no read-then-write of balances in Python. ``place_hold`` is one conditional
``UPDATE … WHERE balance - held >= amount``; hold endings are compare-and-set
(``UPDATE … WHERE status = 'open' RETURNING``), so of two racing captures/releases
exactly one applies. Unique operation keys decide replays: a key already taken —
by an earlier call or a concurrent twin that committed first — is answered from the
row that holds it. The common path is 2 statements for a hold and 4 for a capture.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.errors import HoldClosed, IdempotencyConflict, InsufficientFunds, UnknownHold
from ledger.models import (
    REVENUE_GPU, STRIPE_CLEARING, Account, Hold, HoldStatus, LedgerTransaction, Posting,
    Wallet, utcnow, wallet_account,
)


@dataclass(frozen=True, slots=True)
class Posted:
    """Outcome of a balance-changing operation: its transaction and amount (credits)."""

    transaction_id: int
    amount: int
    replayed: bool


@dataclass(frozen=True, slots=True)
class HoldOutcome:
    """A placed hold: ``amount`` credits reserved until ``expires_at`` (UTC)."""

    hold_id: int
    amount: int
    expires_at: datetime
    replayed: bool


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a hold ended: ``captured`` credits charged, ``released`` credits freed."""

    hold_id: int
    status: str
    captured: int
    released: int
    replayed: bool


def insert_ignore(session: Session, model: type, **values: object) -> Any | None:
    """``INSERT … ON CONFLICT DO NOTHING`` on PostgreSQL and SQLite; returns the new
    row's primary key, or None when a conflicting row already exists."""
    dialect = session.get_bind().dialect.name
    ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # RETURNING, not rowcount: psycopg reports -1 for INSERT … ON CONFLICT DO NOTHING.
    stmt = ins(model).values(**values).on_conflict_do_nothing().returning(
        *model.__table__.primary_key.columns)
    return session.execute(stmt).scalar_one_or_none()


def ensure_wallet(session: Session, user_id: str) -> None:
    """Create the wallet and its account if missing (race-safe, no-op when present)."""
    account = wallet_account(user_id)
    insert_ignore(session, Account, id=account, kind="wallet", created_at=utcnow())
    now = utcnow()
    insert_ignore(session, Wallet, user_id=user_id, account_id=account, balance=0, held=0,
                   status="active", created_at=now, updated_at=now)


def _prior(session: Session, op_key: str) -> LedgerTransaction | None:
    return session.scalars(
        select(LedgerTransaction).where(LedgerTransaction.op_key == op_key)
    ).one_or_none()


def _replay(prior: LedgerTransaction, amount: int, user_id: str | None) -> Posted:
    if prior.amount != amount or (user_id is not None and prior.user_id != user_id):
        raise IdempotencyConflict(
            f"operation {prior.op_key} was {prior.amount} credits for {prior.user_id}; "
            f"replayed as {amount} for {user_id}"
        )
    return Posted(prior.id, prior.amount, replayed=True)


def _post(session: Session, *, op_key: str, kind: str, amount: int, user_id: str,
          ref: str | None, legs: list[tuple[str, int]]) -> int:
    tx_id = session.execute(
        insert(LedgerTransaction).values(op_key=op_key, kind=kind, amount=amount,
                                         user_id=user_id, ref=ref, created_at=utcnow())
        .returning(LedgerTransaction.id)
    ).scalar_one()
    session.execute(insert(Posting), [
        {"transaction_id": tx_id, "account_id": acct, "amount": amt} for acct, amt in legs
    ])
    return tx_id


def credit_topup(session: Session, *, user_id: str, amount: int, op_key: str,
                 ref: str | None = None) -> Posted:
    """Credit ``amount`` (> 0) credits bought through Stripe to ``user_id``'s wallet.

    Postings: wallet +amount, ``stripe:clearing`` −amount. ``op_key`` is e.g.
    ``topup:{checkout_session_id}``. Raises ``IdempotencyConflict``, ``ValueError``.
    """
    if amount <= 0:
        raise ValueError("top-up amount must be positive")
    if (prior := _prior(session, op_key)) is not None:
        return _replay(prior, amount, user_id)
    ensure_wallet(session, user_id)
    try:
        with session.begin_nested():
            tx_id = _post(session, op_key=op_key, kind="topup", amount=amount, user_id=user_id,
                          ref=ref, legs=[(wallet_account(user_id), amount),
                                         (STRIPE_CLEARING, -amount)])
            session.execute(update(Wallet).where(Wallet.user_id == user_id).values(
                balance=Wallet.balance + amount, updated_at=utcnow()))
    except IntegrityError:
        # A concurrent transaction committed the same key first.
        prior = _prior(session, op_key)
        if prior is None:
            raise
        return _replay(prior, amount, user_id)
    return Posted(tx_id, amount, replayed=False)


def _hold_by_key(session: Session, op_key: str) -> Hold | None:
    return session.scalars(select(Hold).where(Hold.op_key == op_key)).one_or_none()


def _hold_replay(hold: Hold, user_id: str, amount: int) -> HoldOutcome:
    if hold.amount != amount or hold.user_id != user_id:
        raise IdempotencyConflict(
            f"hold {hold.op_key} was {hold.amount} credits for {hold.user_id}; "
            f"replayed as {amount} for {user_id}"
        )
    return HoldOutcome(hold.id, hold.amount, hold.expires_at, replayed=True)


def place_hold(session: Session, *, user_id: str, amount: int, op_key: str,
               expires_at: datetime, job_id: str | None = None) -> HoldOutcome:
    """Reserve ``amount`` (> 0) credits of ``user_id``'s wallet until ``expires_at``.

    Succeeds only if ``available = balance − held ≥ amount`` at placement and the wallet
    is active, checked and applied by one conditional UPDATE. ``op_key`` is e.g.
    ``job:{id}:hold``. Raises ``InsufficientFunds`` (nothing written),
    ``IdempotencyConflict``, ``ValueError``.
    """
    if amount <= 0:
        raise ValueError("hold amount must be positive")
    reserved = session.execute(
        update(Wallet)
        .where(Wallet.user_id == user_id, Wallet.status == "active",
               Wallet.balance - Wallet.held >= amount)
        .values(held=Wallet.held + amount, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if reserved == 1:
        hold_id = insert_ignore(session, Hold, op_key=op_key, user_id=user_id, amount=amount,
                                status=HoldStatus.OPEN, captured=0, job_id=job_id,
                                expires_at=expires_at, created_at=utcnow())
        if hold_id is not None:
            return HoldOutcome(hold_id, amount, expires_at, replayed=False)
        # The key is taken (a replay, or a twin that committed first): undo our
        # reservation inside this same transaction, then answer as a replay.
        session.execute(update(Wallet).where(Wallet.user_id == user_id)
                        .values(held=Wallet.held - amount)
                        .execution_options(synchronize_session=False))
    if (hold := _hold_by_key(session, op_key)) is not None:
        return _hold_replay(hold, user_id, amount)
    raise InsufficientFunds(f"wallet {user_id} cannot hold {amount} credits")


def _load_hold(session: Session, hold_id: int) -> Hold:
    hold = session.get(Hold, hold_id, populate_existing=True)
    if hold is None:
        raise UnknownHold(f"no hold {hold_id}")
    return hold


def _end(session: Session, hold_id: int, op_key: str, *conditions: Any,
         **values: object) -> tuple[str, int] | None:
    """Compare-and-set the hold from open to its end: (user_id, amount) of the hold, or
    None if it was not open (or ``conditions`` failed)."""
    return session.execute(
        update(Hold).where(Hold.id == hold_id, Hold.status == HoldStatus.OPEN, *conditions)
        .values(close_key=op_key, closed_at=utcnow(), **values)
        .returning(Hold.user_id, Hold.amount)
        .execution_options(synchronize_session=False)
    ).one_or_none()


def _settlement(hold: Hold, replayed: bool) -> Settlement:
    return Settlement(hold.id, hold.status, hold.captured, hold.amount - hold.captured, replayed)


def capture(session: Session, *, hold_id: int, amount: int, op_key: str,
            ref: str | None = None) -> Settlement:
    """Charge ``amount`` credits (0 < amount ≤ hold) and release the rest of the hold.

    Postings: wallet −amount, ``revenue:gpu`` +amount; the wallet's ``held`` drops by the
    whole hold. ``op_key`` is e.g. ``job:{id}:capture``. Raises ``HoldClosed`` (already
    released/expired/captured under another key), ``IdempotencyConflict``,
    ``UnknownHold``, ``ValueError``.
    """
    if amount <= 0:
        raise ValueError(f"capture of {amount} must be positive")
    ended = _end(session, hold_id, op_key, Hold.amount >= amount,
                 status=HoldStatus.CAPTURED, captured=amount)
    if ended is None:
        hold = _load_hold(session, hold_id)
        if hold.status == HoldStatus.OPEN:
            raise ValueError(f"capture of {amount} exceeds hold {hold_id} of {hold.amount}")
        if hold.close_key == op_key and hold.status == HoldStatus.CAPTURED:
            if hold.captured != amount:
                raise IdempotencyConflict(f"hold {hold_id} captured {hold.captured}, replayed {amount}")
            return _settlement(hold, replayed=True)
        raise HoldClosed(hold_id, hold.status, hold.close_key)
    user_id, held = ended
    session.execute(update(Wallet).where(Wallet.user_id == user_id).values(
        balance=Wallet.balance - amount, held=Wallet.held - held, updated_at=utcnow())
        .execution_options(synchronize_session=False))
    try:
        _post(session, op_key=op_key, kind="capture", amount=amount, user_id=user_id, ref=ref,
              legs=[(wallet_account(user_id), -amount), (REVENUE_GPU, amount)])
    except IntegrityError as taken:  # the key already names another transaction
        raise IdempotencyConflict(f"operation key {op_key} is already used") from taken
    return Settlement(hold_id, HoldStatus.CAPTURED, amount, held - amount, replayed=False)


def release(session: Session, *, hold_id: int, op_key: str, expired: bool = False) -> Settlement:
    """End the hold without charge: its whole amount becomes available again.

    ``expired=True`` records the end as an expiry (the sweep) rather than a release.
    ``op_key`` is e.g. ``job:{id}:release``. Raises ``HoldClosed``, ``UnknownHold``.
    """
    status = HoldStatus.EXPIRED if expired else HoldStatus.RELEASED
    ended = _end(session, hold_id, op_key, status=status)
    if ended is None:
        hold = _load_hold(session, hold_id)
        if hold.close_key == op_key:
            return _settlement(hold, replayed=True)
        raise HoldClosed(hold_id, hold.status, hold.close_key)
    user_id, held = ended
    session.execute(update(Wallet).where(Wallet.user_id == user_id).values(
        held=Wallet.held - held, updated_at=utcnow())
        .execution_options(synchronize_session=False))
    return Settlement(hold_id, status, 0, held, replayed=False)
