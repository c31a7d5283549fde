"""Batched holds and captures have exactly the outcome of the one-by-one operations.

The same random requests (repeated wallets, too-large holds, replayed and conflicting
keys, closed and unknown holds) run batched for one set of wallets and one by one for
a twin set; every answer and every wallet must match, and the invariants hold.
"""
from __future__ import annotations

import random
import secrets
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from ledger import batch, operations as ops
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.errors import LedgerError
from ledger.models import Wallet, utcnow
from tests.conftest import BACKEND

pytestmark = pytest.mark.integration


def _shape(result: object) -> tuple:
    """What must agree between the two paths (ids differ, everything else must not)."""
    if isinstance(result, ops.HoldOutcome):
        return ("hold", result.amount, result.replayed)
    if isinstance(result, ops.Settlement):
        return ("settled", result.status, result.captured, result.released, result.replayed)
    assert isinstance(result, (LedgerError, ValueError)), result
    return (type(result).__name__,)


def _one_by_one(sessions, fn, requests):
    out = []
    for r in requests:
        try:
            with transaction(sessions) as s:
                out.append(fn(s, r))
        except (LedgerError, ValueError) as refused:
            out.append(refused)
    return out


def _wallets(sessions, users):
    with transaction(sessions) as s:
        rows = {w.user_id: (w.balance, w.held) for w in s.scalars(select(Wallet).where(Wallet.user_id.in_(users)))}
    return [rows.get(u, (0, 0)) for u in users]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batched_holds_and_captures_match_one_by_one(sessions, invariants, seed) -> None:
    tag = secrets.token_hex(3)
    n_users = 5
    users = {side: [f"b{side}-{tag}-{i}" for i in range(n_users)] for side in "ab"}
    with transaction(sessions) as s:
        for side in "ab":
            for i, u in enumerate(users[side]):
                ops.credit_topup(s, user_id=u, amount=100 + 50 * i, op_key=f"bt:{u}:topup")
    expires = utcnow() + timedelta(hours=1)

    def hold_requests(side: str) -> list[batch.HoldRequest]:
        r = random.Random(seed)
        reqs = []
        for _ in range(60):
            i = r.randrange(n_users)
            key = f"bt:{tag}:{side}:h{r.randrange(45)}"  # some keys repeat: replays / conflicts
            amount = r.choice([0, r.randint(1, 80), r.randint(1, 80)])
            reqs.append(batch.HoldRequest(users[side][i], amount, key, expires))
        return reqs

    def place(s, r):
        return ops.place_hold(s, user_id=r.user_id, amount=r.amount, op_key=r.op_key, expires_at=r.expires_at)

    with transaction(sessions) as s:
        batched = batch.place_holds(s, hold_requests("a"))
    single = _one_by_one(sessions, place, hold_requests("b"))
    assert [_shape(x) for x in batched] == [_shape(x) for x in single]
    assert _wallets(sessions, users["a"]) == _wallets(sessions, users["b"])
    invariants()

    def capture_requests(holds: list, side: str) -> list[batch.CaptureRequest]:
        r = random.Random(seed + 100)
        ids = [h.hold_id for h in holds if isinstance(h, ops.HoldOutcome)]
        reqs = []
        for _ in range(50):
            pick = r.randrange(len(ids) + 1)
            hold_id = ids[pick] if pick < len(ids) else 10**12  # an unknown hold now and then
            reqs.append(batch.CaptureRequest(hold_id, r.choice([0, r.randint(1, 90)]),
                                             f"bt:{tag}:{side}:c{r.randrange(40)}"))
        return reqs

    with transaction(sessions) as s:
        cap_batched = batch.capture_many(s, capture_requests(batched, "a"))
    cap_single = _one_by_one(sessions, lambda s, r: ops.capture(
        s, hold_id=r.hold_id, amount=r.amount, op_key=r.op_key), capture_requests(single, "b"))
    assert [_shape(x) for x in cap_batched] == [_shape(x) for x in cap_single]
    assert _wallets(sessions, users["a"]) == _wallets(sessions, users["b"])
    assert any(isinstance(x, ops.Settlement) and not x.replayed for x in cap_batched)
    invariants()


def test_concurrent_batches_never_overdraw_or_deadlock(sessions, invariants) -> None:
    """8 threads place and capture batches over the same few wallets at once: no
    deadlock, no overdraft, every accepted hold captured exactly once."""
    from tests.integration.test_concurrency import race

    tag = secrets.token_hex(3)
    users = [f"bc-{tag}-{i}" for i in range(3)]
    with transaction(sessions) as s:
        for u in users:
            ops.credit_topup(s, user_id=u, amount=1000, op_key=f"bc:{u}:topup")
    expires = utcnow() + timedelta(hours=1)

    def worker(t: int) -> list:
        r = random.Random(t)
        settled = []
        for b in range(3):
            reqs = [batch.HoldRequest(r.choice(users), r.randint(1, 40), f"bc:{tag}:{t}:{b}:{j}", expires)
                    for j in range(40)]
            with transaction(sessions) as s:
                placed = batch.place_holds(s, reqs)
            caps = [batch.CaptureRequest(h.hold_id, max(1, h.amount // 2), f"bc:{tag}:{t}:{b}:{j}:cap")
                    for j, h in enumerate(placed) if isinstance(h, ops.HoldOutcome)]
            with transaction(sessions) as s:
                settled += batch.capture_many(s, caps)
        return settled

    results = race(8, worker)
    assert all(isinstance(r, list) for r in results), [r for r in results if not isinstance(r, list)]
    settlements = [x for r in results for x in r]
    assert all(isinstance(x, ops.Settlement) and not x.replayed for x in settlements)
    charged = sum(x.captured for x in settlements)
    assert charged > 0
    balances = _wallets(sessions, users)
    assert all(b >= 0 and h == 0 for b, h in balances)
    assert sum(b for b, _ in balances) == 3000 - charged
    invariants()


# Sequential scans of ``holds`` by this backend in this transaction, not yet flushed.
_HOLD_SCANS = text("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'holds'")


@pytest.mark.skipif(BACKEND != "postgres", reason="PostgreSQL's plan cache")
def test_batches_keep_probing_the_index_as_holds_grow(new_database) -> None:
    """psycopg prepares a statement run 5 times on a connection, and PostgreSQL may then
    keep one generic plan for it. For ``op_key IN ($1, …, $500)`` that generic plan was a
    sequential scan comparing every row with every key, kept however large the table
    grew: growing a ledger to 1M postings slowed to ~600 postings/s. With one array
    parameter the batch lookups keep probing the index."""
    engine = make_engine(new_database(), pool_size=1, max_overflow=0)  # one connection throughout
    sessions = make_sessionmaker(engine)
    users = [f"grow-{i}" for i in range(50)]
    with transaction(sessions) as s:
        for u in users:
            ops.credit_topup(s, user_id=u, amount=10**9, op_key=f"grow:topup:{u}")
    expires = utcnow() + timedelta(days=1)

    def cycle(n: int) -> int:
        """500 holds and their captures in one transaction; its sequential scans of holds."""
        with transaction(sessions) as s:
            before = s.scalar(_HOLD_SCANS) or 0
            placed = batch.place_holds(s, [batch.HoldRequest(users[j % 50], 10, f"grow:{n}:{j}:hold", expires)
                                           for j in range(500)])
            batch.capture_many(s, [batch.CaptureRequest(h.hold_id, 7, f"grow:{n}:{j}:capture")
                                   for j, h in enumerate(placed)])
            return (s.scalar(_HOLD_SCANS) or 0) - before

    try:
        scans = [cycle(n) for n in range(40)]  # 20,000 holds
    finally:
        engine.dispose()
    assert scans[-10:] == [0] * 10, scans  # from 15,000 holds on, not one sequential scan
