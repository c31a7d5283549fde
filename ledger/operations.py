"""Wallet operations: ``transfer`` (top-up, grant, claw-back, restore, adjust),
``credit_topup``, ``place_hold``, ``capture``, ``release``.

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
row that holds it. On PostgreSQL the common path is one statement (one round trip) per
hold, capture or release (``ledger.onestep``); on SQLite 2 statements for a hold and 4
for a capture.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, Row, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger import onestep, statements as sql
from ledger.errors import HoldClosed, IdempotencyConflict, InsufficientFunds, UnknownHold
from ledger.models import (
    REVENUE_GPU,
    STRIPE_CLEARING,
    Account,
    Hold,
    HoldStatus,
    Wallet,
    utcnow,
    wallet_account,
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


def _run(session: Session, stmt: Any, params: Any = None) -> CursorResult[Any]:
    """Execute a Core statement on the session's connection (inside its transaction)."""
    return session.connection().execute(stmt, params)


def ensure_wallet(session: Session, user_id: str) -> None:
    """Create the wallet and its account if missing (race-safe, no-op when present)."""
    account = wallet_account(user_id)
    sql.insert_ignore(session, Account, id=account, kind="wallet", created_at=utcnow())
    now = utcnow()
    sql.insert_ignore(session, Wallet, user_id=user_id, account_id=account, balance=0, held=0,
                   status="active", created_at=now, updated_at=now)


def _prior(session: Session, op_key: str) -> Row[Any] | None:
    return _run(session, sql.TX_BY_KEY, {"p_key": op_key}).one_or_none()


def _replay(prior: Row[Any], amount: int, user_id: str | None) -> Posted:
    if prior.amount != amount or (user_id is not None and prior.user_id != user_id):
        raise IdempotencyConflict(
            f"operation {prior.op_key} was {prior.amount} credits for {prior.user_id}; "
            f"replayed as {amount} for {user_id}"
        )
    return Posted(prior.id, prior.amount, replayed=True)


def _post(session: Session, *, op_key: str, kind: str, amount: int, user_id: str,
          ref: str | None, legs: list[tuple[str, int]]) -> int:
    tx_id: int = _run(session, sql.INSERT_TX, {"p_key": op_key, "p_kind": kind, "p_amount": amount,
                                       "p_user": user_id, "p_ref": ref, "p_now": utcnow()}).scalar_one()
    _run(session, sql.INSERT_POSTINGS, [
        {"transaction_id": tx_id, "account_id": acct, "amount": amt} for acct, amt in legs
    ])
    return tx_id


class TxKind:
    """``transactions.kind``: what a money movement was (entries and reports group by it)."""

    TOPUP = "topup"          # Stripe checkout paid: wallet +, stripe:clearing −
    GRANT = "grant"          # subscription invoice paid: wallet +, stripe:clearing −
    CLAWBACK = "clawback"    # refund / dispute: wallet −, stripe:clearing + (may cause debt)
    RESTORE = "restore"      # failed refund / dispute won: reverses a claw-back
    ADJUST = "adjust"        # operator correction against the adjustments account
    CAPTURE = "capture"      # GPU job charged: wallet −, revenue:gpu +


def transfer(session: Session, *, user_id: str, amount: int, counter: str, kind: str,
             op_key: str, ref: str | None = None, allow_debt: bool = False) -> Posted:
    """Move ``amount`` credits between ``user_id``'s wallet and system account ``counter``.

    ``amount`` > 0 credits the wallet, < 0 debits it. A debit needs ``available ≥ −amount``
    (one conditional UPDATE) unless ``allow_debt`` — claw-backs may take a wallet into
    debt (docs/architecture.md "Debt"), never breaking its open holds. Postings: wallet +amount,
    ``counter`` −amount. ``kind`` is a ``TxKind``; ``op_key`` is unique forever (e.g.
    ``refund:{re_id}``). Replays return the first outcome. Raises ``InsufficientFunds``
    (nothing written), ``IdempotencyConflict``, ``ValueError`` (amount 0).
    """
    if amount == 0:
        raise ValueError("a transfer of 0 credits moves nothing")
    if (prior := _prior(session, op_key)) is not None:
        return _replay(prior, amount, user_id)
    ensure_wallet(session, user_id)
    try:
        with session.begin_nested():
            guard = [] if amount > 0 or allow_debt else [sql.W.c.balance - sql.W.c.held >= -amount]
            moved = _run(session, update(sql.W).where(sql.W.c.user_id == user_id, *guard)
                         .values(balance=sql.W.c.balance + amount, updated_at=utcnow())).rowcount
            if moved != 1:
                raise InsufficientFunds(f"wallet {user_id} cannot give {-amount} credits")
            tx_id = _post(session, op_key=op_key, kind=kind, amount=amount, user_id=user_id,
                          ref=ref, legs=[(wallet_account(user_id), amount), (counter, -amount)])
    except IntegrityError:
        # A concurrent transaction committed the same key first.
        prior = _prior(session, op_key)
        if prior is None:
            raise
        return _replay(prior, amount, user_id)
    return Posted(tx_id, amount, replayed=False)


def credit_topup(session: Session, *, user_id: str, amount: int, op_key: str,
                 ref: str | None = None) -> Posted:
    """Credit ``amount`` (> 0) credits bought through Stripe to ``user_id``'s wallet.

    Postings: wallet +amount, ``stripe:clearing`` −amount. ``op_key`` is e.g.
    ``topup:{checkout_session_id}``. Raises ``IdempotencyConflict``, ``ValueError``.
    """
    if amount <= 0:
        raise ValueError("top-up amount must be positive")
    return transfer(session, user_id=user_id, amount=amount, counter=STRIPE_CLEARING,
                    kind=TxKind.TOPUP, op_key=op_key, ref=ref)


def _hold_by_key(session: Session, op_key: str) -> Row[Any] | None:
    return _run(session, sql.HOLD_BY_KEY, {"p_key": op_key}).one_or_none()


def _hold_replay(hold: Row[Any], user_id: str, amount: int) -> HoldOutcome:
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
    now, conn = utcnow(), session.connection()
    if conn.dialect.name == "postgresql":  # one statement, one round trip
        reserved, hold_id = onestep.hold(conn, user_id=user_id, amount=amount, op_key=op_key,
                                         expires_at=expires_at, job_id=job_id, now=now)
    else:
        reserved = conn.execute(sql.RESERVE, {"p_user": user_id, "p_amount": amount, "p_now": now}).rowcount == 1
        hold_id = None if not reserved else sql.insert_ignore(
            session, Hold, op_key=op_key, user_id=user_id, amount=amount, status=HoldStatus.OPEN,
            captured=0, job_id=job_id, expires_at=expires_at, created_at=now)
    if hold_id is not None:
        return HoldOutcome(hold_id, amount, expires_at, replayed=False)
    if reserved:
        # The key is taken (a replay, or a twin that committed first): undo our
        # reservation inside this same transaction, then answer as a replay.
        _run(session, sql.UNRESERVE, {"p_user": user_id, "p_amount": amount})
    if (hold := _hold_by_key(session, op_key)) is not None:
        return _hold_replay(hold, user_id, amount)
    raise InsufficientFunds(f"wallet {user_id} cannot hold {amount} credits")


def _load_hold(session: Session, hold_id: int) -> Row[Any]:
    hold = _run(session, sql.HOLD_BY_ID, {"p_id": hold_id}).one_or_none()
    if hold is None:
        raise UnknownHold(f"no hold {hold_id}")
    return hold


def _end(session: Session, stmt: Any, **params: object) -> tuple[str, int] | None:
    """Compare-and-set the hold from open to its end (``sql.END_CAPTURE`` / ``sql.END_RELEASE``):
    (user_id, amount) of the hold, or None if it was not open (or too small). Raises
    ``IdempotencyConflict`` when the operation key already ended another hold."""
    try:
        row = _run(session, stmt, {"p_now": utcnow(), **params}).one_or_none()
    except IntegrityError as taken:  # holds.close_key is unique
        raise IdempotencyConflict(f"operation key {params['p_key']} already ended another hold") from taken
    return None if row is None else (row.user_id, row.amount)


def _settlement(hold: Row[Any], replayed: bool) -> Settlement:
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
    conn = session.connection()
    one_step = conn.dialect.name == "postgresql"
    if one_step:  # end the hold, charge, post: one statement, one round trip
        ended = onestep.capture(conn, hold_id=hold_id, amount=amount, op_key=op_key, ref=ref, now=utcnow())
    else:
        ended = _end(session, sql.END_CAPTURE, p_id=hold_id, p_key=op_key, p_amount=amount,
                     p_status=HoldStatus.CAPTURED)
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
    if one_step:
        return Settlement(hold_id, HoldStatus.CAPTURED, amount, held - amount, replayed=False)
    _run(session, sql.CHARGE, {"p_user": user_id, "p_amount": amount, "p_held": held, "p_now": utcnow()})
    try:
        _post(session, op_key=op_key, kind=TxKind.CAPTURE, amount=amount, user_id=user_id, ref=ref,
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
    conn = session.connection()
    one_step = conn.dialect.name == "postgresql"
    if one_step:  # end the hold and free the wallet: one statement
        ended = onestep.release(conn, hold_id=hold_id, op_key=op_key, status=status, now=utcnow())
    else:
        ended = _end(session, sql.END_RELEASE, p_id=hold_id, p_key=op_key, p_status=status)
    if ended is None:
        hold = _load_hold(session, hold_id)
        if hold.close_key == op_key:
            return _settlement(hold, replayed=True)
        raise HoldClosed(hold_id, hold.status, hold.close_key)
    user_id, held = ended
    if not one_step:
        _run(session, sql.FREE, {"p_user": user_id, "p_held": held, "p_now": utcnow()})
    return Settlement(hold_id, status, 0, held, replayed=False)
