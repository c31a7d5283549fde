"""Batched hold placement and capture: many operations in one DB transaction and a
handful of set-based statements, the way high-throughput ledgers amortise round trips
(TigerBeetle batches up to 8,190 transfers per request).

``place_holds(session, requests)`` and ``capture_many(session, requests)`` have exactly
the outcome of calling ``operations.place_hold`` / ``operations.capture`` once per
request, in order, inside the caller's transaction — same checks, same operation keys,
same replays — except that a refused request yields its ``LedgerError`` (or
``ValueError``) in its place instead of raising, so one refusal never fails the batch.

PostgreSQL runs each batch as set-based statements (``UPDATE … FROM unnest(arrays)``,
multi-row ``INSERT … RETURNING``): requests touching distinct wallets (holds) or
distinct holds (captures) go in one round; a second request for the same wallet or
hold waits for the next round, so per-wallet order is kept exactly. SQLite, which has
a single writer and no network round trip, applies the requests one by one, each in
its own savepoint. Both paths are checked against each other by the tests.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import BigInteger, String, any_, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from ledger import operations as ops
from ledger.errors import HoldClosed, IdempotencyConflict, InsufficientFunds, LedgerError, UnknownHold
from ledger.models import REVENUE_GPU, HoldStatus, utcnow

_H = ops._H
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """Reserve ``amount`` credits of ``user_id`` until ``expires_at`` (see ``place_hold``)."""

    user_id: str
    amount: int
    op_key: str
    expires_at: datetime
    job_id: str | None = None


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    """Charge ``amount`` credits of hold ``hold_id`` and release the rest (see ``capture``)."""

    hold_id: int
    amount: int
    op_key: str
    ref: str | None = None


# PostgreSQL statements over arrays (``unnest``): one cached statement whatever the
# batch size, where a VALUES list would be compiled anew for every batch.
_LOCK_AVAILABLE = text("""
    SELECT user_id, balance - held FROM wallets
    WHERE user_id = ANY(CAST(:users AS varchar[])) AND status = 'active'
    ORDER BY user_id FOR UPDATE""")
_LOCK_WALLETS = text("""
    SELECT user_id FROM wallets WHERE user_id = ANY(CAST(:users AS varchar[]))
    ORDER BY user_id FOR UPDATE""")
_RESERVE_MANY = text("""
    UPDATE wallets AS w SET held = w.held + v.amount, updated_at = :now
    FROM unnest(CAST(:users AS varchar[]), CAST(:amounts AS bigint[])) AS v(user_id, amount)
    WHERE w.user_id = v.user_id""")
_INSERT_HOLDS = text("""
    INSERT INTO holds (op_key, user_id, amount, status, captured, job_id, expires_at, created_at)
    SELECT v.op_key, v.user_id, v.amount, 'open', 0, v.job_id, v.expires_at, :now
    FROM unnest(CAST(:keys AS varchar[]), CAST(:users AS varchar[]), CAST(:amounts AS bigint[]),
                CAST(:jobs AS varchar[]), CAST(:expires AS timestamp[]))
         AS v(op_key, user_id, amount, job_id, expires_at)
    ON CONFLICT DO NOTHING RETURNING op_key, id""")
_END_CAPTURES = text("""
    UPDATE holds AS h SET status = 'captured', captured = v.amount, close_key = v.op_key, closed_at = :now
    FROM unnest(CAST(:ids AS bigint[]), CAST(:amounts AS bigint[]), CAST(:keys AS varchar[]))
         AS v(id, amount, op_key)
    WHERE h.id = v.id AND h.status = 'open' AND h.amount >= v.amount
    RETURNING h.id, h.user_id, h.amount""")
_CHARGE_MANY = text("""
    UPDATE wallets AS w SET balance = w.balance - v.charge, held = w.held - v.held, updated_at = :now
    FROM unnest(CAST(:users AS varchar[]), CAST(:charges AS bigint[]), CAST(:helds AS bigint[]))
         AS v(user_id, charge, held)
    WHERE w.user_id = v.user_id""")

# One array parameter, not ``IN`` with a parameter per key: one statement text for any
# batch size, and cheap to plan with its real values (see ledger.db's plan_cache_mode).
_HOLDS_BY_KEY = select(_H).where(_H.c.op_key == any_(bindparam("keys", type_=ARRAY(String))))
_HOLDS_BY_ID = select(_H).where(_H.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
_USED_KEYS = text("""
    SELECT op_key FROM transactions WHERE op_key = ANY(CAST(:keys AS varchar[]))
    UNION SELECT close_key FROM holds WHERE close_key = ANY(CAST(:keys AS varchar[]))""")
# Each capture's transaction and its two postings (wallet −amount, revenue:gpu +amount).
_POST_CAPTURES = text("""
    WITH tx AS (
        INSERT INTO transactions (op_key, kind, amount, user_id, ref, created_at)
        SELECT v.op_key, :kind, v.amount, v.user_id, v.ref, :now
        FROM unnest(CAST(:keys AS varchar[]), CAST(:amounts AS bigint[]), CAST(:users AS varchar[]),
                    CAST(:refs AS varchar[])) AS v(op_key, amount, user_id, ref)
        RETURNING id, user_id, amount)
    INSERT INTO postings (transaction_id, account_id, amount)
    SELECT id, 'wallet:' || user_id, -amount FROM tx  -- models.wallet_account()
    UNION ALL SELECT id, :revenue, amount FROM tx""")


HoldResult = ops.HoldOutcome | LedgerError | ValueError
CaptureResult = ops.Settlement | LedgerError | ValueError


def _rounds(keys: Sequence[tuple[Any, ...]]) -> list[list[int]]:
    """Request indexes grouped into rounds so that requests sharing any key (a wallet, a
    hold, an operation key) land in different rounds, in request order: round ``r`` of
    a request is one past the last round of every key it shares."""
    last: dict[Any, int] = {}
    rounds: list[list[int]] = []
    for i, ks in enumerate(keys):
        r = max((last[k] + 1 for k in ks if k in last), default=0)
        for k in ks:
            last[k] = r
        if r == len(rounds):
            rounds.append([])
        rounds[r].append(i)
    return rounds


def _one_by_one(session: Session, fn: Any, requests: Sequence[T]) -> list[Any]:
    out: list[Any] = []
    for req in requests:
        try:
            with session.begin_nested():
                out.append(fn(req))
        except (LedgerError, ValueError) as refused:
            out.append(refused)
    return out


# -- holds ---------------------------------------------------------------------------
def place_holds(session: Session, requests: Sequence[HoldRequest]) -> list[HoldResult]:
    """Place every hold of ``requests`` in order; one result per request (a
    ``HoldOutcome``, or the ``InsufficientFunds`` / ``IdempotencyConflict`` /
    ``ValueError`` that ``place_hold`` would have raised)."""
    if session.get_bind().dialect.name != "postgresql":
        return _one_by_one(session, lambda r: ops.place_hold(
            session, user_id=r.user_id, amount=r.amount, op_key=r.op_key,
            expires_at=r.expires_at, job_id=r.job_id), requests)
    results: list[HoldResult | None] = [None] * len(requests)
    for i, r in enumerate(requests):
        if r.amount <= 0:
            results[i] = ValueError("hold amount must be positive")
    valid = [i for i in range(len(requests)) if results[i] is None]
    conn = session.connection()
    for rnd in _rounds([(requests[i].op_key,) for i in valid]):
        batch = [valid[j] for j in rnd]
        _hold_round(conn, requests, batch, results)
    return cast(list[HoldResult], results)  # every slot is set: refused above, or by its round


def _hold_round(conn: Any, reqs: Sequence[HoldRequest], batch: list[int],
                results: list[HoldResult | None]) -> None:
    """One round (no operation key twice): replays answered from their holds, the rest
    decided in request order against the wallets' available credits, read under row
    locks taken in user-id order (so concurrent batches never deadlock)."""
    now = utcnow()
    prior = {row.op_key: row for row in conn.execute(
        _HOLDS_BY_KEY, {"keys": [reqs[i].op_key for i in batch]})}
    fresh = []
    for i in batch:
        if (hold := prior.get(reqs[i].op_key)) is not None:
            results[i] = _replayed(hold, reqs[i])
        else:
            fresh.append(i)
    if not fresh:
        return
    available = dict(conn.execute(_LOCK_AVAILABLE, {"users": sorted({reqs[i].user_id for i in fresh})}).all())
    accepted = []
    for i in fresh:  # exactly the one-by-one checks, under the locks
        r = reqs[i]
        if available.get(r.user_id, -1) >= r.amount:
            available[r.user_id] -= r.amount
            accepted.append(i)
        else:
            results[i] = InsufficientFunds(f"wallet {r.user_id} cannot hold {r.amount} credits")
    if not accepted:
        return
    inserted = {key: hold_id for key, hold_id in conn.execute(_INSERT_HOLDS, {
        "now": now, "keys": [reqs[i].op_key for i in accepted],
        "users": [reqs[i].user_id for i in accepted], "amounts": [reqs[i].amount for i in accepted],
        "jobs": [reqs[i].job_id for i in accepted], "expires": [reqs[i].expires_at for i in accepted]})}
    totals: dict[str, int] = defaultdict(int)
    for i in accepted:
        r = reqs[i]
        if (hold_id := inserted.get(r.op_key)) is not None:
            results[i] = ops.HoldOutcome(hold_id, r.amount, r.expires_at, replayed=False)
            totals[r.user_id] += r.amount
    if totals:
        conn.execute(_RESERVE_MANY, {"now": now, "users": list(totals), "amounts": list(totals.values())})
    twins = [i for i in accepted if results[i] is None]
    if twins:  # a concurrent transaction committed the same key first: answer as a replay
        prior = {row.op_key: row for row in conn.execute(
            _HOLDS_BY_KEY, {"keys": [reqs[i].op_key for i in twins]})}
        for i in twins:
            results[i] = _replayed(prior[reqs[i].op_key], reqs[i])


def _replayed(hold: Any, r: HoldRequest) -> HoldResult:
    try:
        return ops._hold_replay(hold, r.user_id, r.amount)
    except IdempotencyConflict as conflict:
        return conflict


# -- captures ------------------------------------------------------------------------
def capture_many(session: Session, requests: Sequence[CaptureRequest]) -> list[CaptureResult]:
    """Capture every request in order; one result per request (a ``Settlement``, or the
    ``HoldClosed`` / ``IdempotencyConflict`` / ``UnknownHold`` / ``ValueError`` that
    ``capture`` would have raised).

    An operation key taken by a concurrent transaction between this batch's check and
    its insert raises ``IntegrityError`` for the whole batch (the caller's transaction
    rolls back; retrying the batch answers it as a replay)."""
    if session.get_bind().dialect.name != "postgresql":
        return _one_by_one(session, lambda r: ops.capture(
            session, hold_id=r.hold_id, amount=r.amount, op_key=r.op_key, ref=r.ref), requests)
    results: list[CaptureResult | None] = [None] * len(requests)
    for i, r in enumerate(requests):
        if r.amount <= 0:
            results[i] = ValueError(f"capture of {r.amount} must be positive")
    valid = [i for i in range(len(requests)) if results[i] is None]
    conn = session.connection()
    for rnd in _rounds([(requests[i].hold_id, requests[i].op_key) for i in valid]):
        _capture_round(conn, requests, [valid[j] for j in rnd], results)
    return cast(list[CaptureResult], results)  # every slot is set: refused above, or by its round


def _capture_round(conn: Any, reqs: Sequence[CaptureRequest], batch: list[int],
                   results: list[CaptureResult | None]) -> None:
    now = utcnow()
    # A key that already names a transaction or ended a hold is a replay or a conflict.
    used = set(conn.execute(_USED_KEYS, {"keys": [reqs[i].op_key for i in batch]}).scalars())
    fresh = [i for i in batch if reqs[i].op_key not in used]
    ended: dict[int, tuple[str, int]] = {}
    if fresh:
        ended = {hid: (user, amount) for hid, user, amount in conn.execute(_END_CAPTURES, {
            "now": now, "ids": [reqs[i].hold_id for i in fresh],
            "amounts": [reqs[i].amount for i in fresh], "keys": [reqs[i].op_key for i in fresh]})}
    done = [i for i in fresh if reqs[i].hold_id in ended]
    if done:
        per_wallet: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for i in done:
            user, held = ended[reqs[i].hold_id]
            per_wallet[user][0] += reqs[i].amount
            per_wallet[user][1] += held
        conn.execute(_LOCK_WALLETS, {"users": sorted(per_wallet)})  # same order as holds take them
        conn.execute(_CHARGE_MANY, {"now": now, "users": list(per_wallet),
                                    "charges": [c for c, _ in per_wallet.values()],
                                    "helds": [h for _, h in per_wallet.values()]})
        conn.execute(_POST_CAPTURES, {
            "now": now, "kind": ops.TxKind.CAPTURE, "revenue": REVENUE_GPU,
            "keys": [reqs[i].op_key for i in done], "amounts": [reqs[i].amount for i in done],
            "users": [ended[reqs[i].hold_id][0] for i in done], "refs": [reqs[i].ref for i in done]})
        for i in done:
            held = ended[reqs[i].hold_id][1]
            results[i] = ops.Settlement(reqs[i].hold_id, HoldStatus.CAPTURED, reqs[i].amount,
                                        held - reqs[i].amount, replayed=False)
    rest = [i for i in batch if results[i] is None]
    if rest:
        holds = {row.id: row for row in conn.execute(
            _HOLDS_BY_ID, {"ids": [reqs[i].hold_id for i in rest]})}
        for i in rest:
            results[i] = _explain(holds.get(reqs[i].hold_id), reqs[i])


def _explain(hold: Any, r: CaptureRequest) -> CaptureResult:
    """Why a capture did not apply, exactly as ``operations.capture`` answers it."""
    if hold is None:
        return UnknownHold(f"no hold {r.hold_id}")
    if hold.status == HoldStatus.OPEN:
        if hold.amount < r.amount:
            return ValueError(f"capture of {r.amount} exceeds hold {r.hold_id} of {hold.amount}")
        return IdempotencyConflict(f"operation key {r.op_key} is already used")
    if hold.close_key == r.op_key and hold.status == HoldStatus.CAPTURED:
        if hold.captured != r.amount:
            return IdempotencyConflict(f"hold {r.hold_id} captured {hold.captured}, replayed {r.amount}")
        return ops._settlement(hold, replayed=True)
    return HoldClosed(r.hold_id, hold.status, hold.close_key)
