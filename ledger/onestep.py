"""PostgreSQL: each money operation of ``ledger.operations`` as ONE statement — one round
trip — instead of one statement per table (docs/performance.md "Ledger money path").

A hold is ``UPDATE wallets … RETURNING`` feeding ``INSERT INTO holds … ON CONFLICT DO
NOTHING RETURNING`` in one data-modifying CTE; a capture ends the hold, charges the wallet
and writes the transaction and its two postings in one CTE; a release ends the hold and
frees the wallet's ``held``. The checks are exactly those of the statements they replace
(the conditional ``UPDATE … WHERE balance - held >= amount``, the compare-and-set
``WHERE status = 'open'``, the unique operation keys), so ``ledger.operations`` keeps its
replay and conflict handling unchanged; the row locks are taken in the same order (hold,
then wallet) and are now held for one round trip instead of two to four.

PostgreSQL runs every data-modifying sub-statement of a ``WITH`` exactly once and to
completion, whether or not the main query reads it
(https://www.postgresql.org/docs/current/queries-with.html#QUERIES-WITH-MODIFYING);
a sub-statement reading another's ``RETURNING`` sees exactly the rows it changed.
psycopg prepares a statement server-side once it has run ``prepare_threshold`` (default
5) times on a connection (https://www.psycopg.org/psycopg3/docs/advanced/prepare.html),
so these fixed texts are parsed and planned once per connection.

SQLite (≥ 3.35 has ``RETURNING`` but no data-modifying CTEs) keeps the per-table
statements; it has no network round trip to save.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from ledger.errors import IdempotencyConflict
from ledger.models import REVENUE_GPU

# Amounts are cast to bigint: psycopg sends a Python int as the smallest integer type
# that holds it, and the same parameter appears in several places.
_HOLD = text("""
WITH w AS (
    UPDATE wallets SET held = held + CAST(:p_amount AS bigint), updated_at = :p_now
    WHERE user_id = :p_user AND status = 'active' AND balance - held >= CAST(:p_amount AS bigint)
    RETURNING user_id),
h AS (
    INSERT INTO holds (op_key, user_id, amount, status, captured, job_id, expires_at, created_at)
    SELECT :p_key, w.user_id, CAST(:p_amount AS bigint), 'open', 0, :p_job, :p_expires, :p_now FROM w
    ON CONFLICT DO NOTHING RETURNING id)
SELECT (SELECT count(*) FROM w) AS reserved, (SELECT id FROM h) AS hold_id""")

_CAPTURE = text("""
WITH h AS (
    UPDATE holds SET status = 'captured', captured = CAST(:p_amount AS bigint), close_key = :p_key,
                     closed_at = :p_now
    WHERE id = :p_id AND status = 'open' AND amount >= CAST(:p_amount AS bigint)
    RETURNING user_id, amount),
w AS (
    UPDATE wallets SET balance = wallets.balance - CAST(:p_amount AS bigint),
                       held = wallets.held - h.amount, updated_at = :p_now
    FROM h WHERE wallets.user_id = h.user_id),
tx AS (
    INSERT INTO transactions (op_key, kind, amount, user_id, ref, created_at)
    SELECT :p_key, 'capture', CAST(:p_amount AS bigint), h.user_id, :p_ref, :p_now FROM h
    RETURNING id, user_id),
p AS (
    INSERT INTO postings (transaction_id, account_id, amount)
    SELECT id, 'wallet:' || user_id, -CAST(:p_amount AS bigint) FROM tx  -- models.wallet_account()
    UNION ALL SELECT id, :p_revenue, CAST(:p_amount AS bigint) FROM tx)
SELECT user_id, amount FROM h""")

_RELEASE = text("""
WITH h AS (
    UPDATE holds SET status = :p_status, close_key = :p_key, closed_at = :p_now
    WHERE id = :p_id AND status = 'open'
    RETURNING user_id, amount),
w AS (
    UPDATE wallets SET held = wallets.held - h.amount, updated_at = :p_now
    FROM h WHERE wallets.user_id = h.user_id)
SELECT user_id, amount FROM h""")


def hold(conn: Connection, *, user_id: str, amount: int, op_key: str, expires_at: datetime,
         job_id: str | None, now: datetime) -> tuple[bool, int | None]:
    """Reserve and record the hold in one statement: (reserved, hold id). ``(True, None)``:
    the key was taken (a replay or a twin that committed first) and the caller must undo
    the reservation; ``(False, None)``: the wallet could not cover ``amount`` (or is not
    active) — or the key is a replay, which the caller tells apart by the key."""
    row = conn.execute(_HOLD, {"p_user": user_id, "p_amount": amount, "p_key": op_key, "p_job": job_id,
                               "p_expires": expires_at, "p_now": now}).one()
    return row.reserved == 1, row.hold_id


def capture(conn: Connection, *, hold_id: int, amount: int, op_key: str, ref: str | None,
            now: datetime) -> tuple[str, int] | None:
    """End open hold ``hold_id`` (≥ ``amount``) captured, charge its wallet, post the
    transaction: (user_id, hold amount), or None when the hold is not open or too small
    (nothing written). Raises ``IdempotencyConflict`` when ``op_key`` already ended
    another hold or names another transaction (the statement failed: the caller's
    transaction is aborted, as it was with the per-table statements)."""
    params = {"p_id": hold_id, "p_amount": amount, "p_key": op_key, "p_ref": ref, "p_now": now,
              "p_revenue": REVENUE_GPU}
    try:
        row = conn.execute(_CAPTURE, params).one_or_none()
    except IntegrityError as taken:
        _raise_key_taken(op_key, taken)
    return None if row is None else (row.user_id, row.amount)


def release(conn: Connection, *, hold_id: int, op_key: str, status: str,
            now: datetime) -> tuple[str, int] | None:
    """End open hold ``hold_id`` with ``status`` (released / expired) and free its amount
    from the wallet's ``held``: (user_id, hold amount), or None when it was not open.
    Raises ``IdempotencyConflict`` when ``op_key`` already ended another hold."""
    try:
        row = conn.execute(_RELEASE, {"p_id": hold_id, "p_key": op_key, "p_status": status,
                                      "p_now": now}).one_or_none()
    except IntegrityError as taken:
        _raise_key_taken(op_key, taken)
    return None if row is None else (row.user_id, row.amount)


def _raise_key_taken(op_key: str, taken: IntegrityError) -> NoReturn:
    """Raise the conflict ``ledger.operations`` raises for the unique operation key that
    refused; any other integrity error (a broken invariant) propagates as it is."""
    diag: Any = getattr(taken.orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    if constraint == "uq_holds_close_key":
        raise IdempotencyConflict(f"operation key {op_key} already ended another hold") from taken
    if constraint == "uq_transactions_op_key":
        raise IdempotencyConflict(f"operation key {op_key} is already used") from taken
    raise taken
