"""Concurrent workers never overdraw a wallet and never end a hold twice.

Threads start at a barrier and up to 40 at a time hold their own DB connection, so the
conditional UPDATEs really race on the database (PostgreSQL row locks / SQLite's write
lock). Runs on both backends like the rest of the suite.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from ledger import operations as ops
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.errors import HoldClosed, InsufficientFunds
from ledger.models import Wallet, utcnow
from tests.factories import FundedWalletFactory, HoldFactory

pytestmark = pytest.mark.integration
HOLDERS = 200  # concurrent holds on one wallet
ENDERS = 100   # concurrent captures/releases of one hold


@pytest.fixture(scope="module")
def wide(db_url: str):
    """Sessions on a pool of 40 connections, so up to 40 racers are inside the
    database at once (PostgreSQL allows 100 connections in all)."""
    engine = make_engine(db_url, pool_size=40, max_overflow=0, pool_timeout=120)
    yield make_sessionmaker(engine)
    engine.dispose()


def race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run fn(0..n-1) at once; each result or the exception it raised."""
    barrier = threading.Barrier(n)

    def one(i: int) -> Any:
        barrier.wait()
        try:
            return fn(i)
        except Exception as exc:  # noqa: BLE001 - collected and asserted by the caller
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_200_concurrent_holds_never_overdraw(wide, invariants) -> None:
    u = FundedWalletFactory.create(sessions=wide, prefix="hot", credits=1000).user_id

    def place(i: int) -> ops.HoldOutcome:
        with transaction(wide) as s:
            return ops.place_hold(s, user_id=u, amount=7, op_key=f"test:hold:{u}:{i}",
                                  expires_at=utcnow() + timedelta(hours=1))

    results = race(HOLDERS, place)
    held = [r for r in results if isinstance(r, ops.HoldOutcome)]
    refused = [r for r in results if isinstance(r, InsufficientFunds)]
    assert len(held) + len(refused) == HOLDERS, [r for r in results if isinstance(r, Exception) and r not in refused]
    assert len(held) == 1000 // 7  # every credit that could be held was, none more
    with transaction(wide) as s:
        w = s.get(Wallet, u)
        assert (w.balance, w.held) == (1000, 7 * len(held))
        assert w.available >= 0
    invariants()


def test_same_key_holds_race_to_one_hold(db_url: str, invariants) -> None:
    # A pool of its own, 10 at a time: the 20 racers still collide on the key, without
    # asking PostgreSQL for 15 more connections while the suite's stacks hold theirs
    # (CI once hit "sorry, too many clients already" here).
    engine = make_engine(db_url, pool_size=10, max_overflow=0, pool_timeout=120)
    try:
        _same_key_race(make_sessionmaker(engine))
    finally:
        engine.dispose()
    invariants()


def _same_key_race(sessions) -> None:
    u = FundedWalletFactory.create(sessions=sessions, prefix="dup", credits=100).user_id

    def place(_: int) -> ops.HoldOutcome:
        with transaction(sessions) as s:
            return ops.place_hold(s, user_id=u, amount=10, op_key=f"test:hold:{u}",
                                  expires_at=utcnow() + timedelta(hours=1))

    results = race(20, place)
    assert all(isinstance(r, ops.HoldOutcome) for r in results), [repr(r) for r in results
                                                                   if not isinstance(r, ops.HoldOutcome)]
    assert len({r.hold_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    with transaction(sessions) as s:
        assert s.get(Wallet, u).held == 10


def test_100_racing_captures_and_releases_end_the_hold_once(wide, invariants) -> None:
    u = FundedWalletFactory.create(sessions=wide, prefix="end", credits=100).user_id
    h = HoldFactory.create(sessions=wide, user_id=u, amount=40)

    def end(i: int) -> ops.Settlement:
        with transaction(wide) as s:
            if i % 2:
                return ops.release(s, hold_id=h.id, op_key=f"test:release:{u}:{i}")
            return ops.capture(s, hold_id=h.id, amount=30, op_key=f"test:capture:{u}:{i}")

    results = race(ENDERS, end)
    winners = [r for r in results if isinstance(r, ops.Settlement)]
    assert len(winners) == 1, results
    assert all(isinstance(r, HoldClosed) for r in results if r is not winners[0])
    with transaction(wide) as s:
        w = s.get(Wallet, u)
        assert w.held == 0
        assert w.balance == (70 if winners[0].captured else 100)
    invariants()
