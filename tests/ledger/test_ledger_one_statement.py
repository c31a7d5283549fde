"""The money path at one statement per operation (``ledger.onestep`` on PostgreSQL, the
per-table statements on SQLite) and the pool without a pre-ping on every checkout.

Same-key racers on a hold's end: every racer gets the one outcome, exactly one applies
it, the wallet moves once. Expected money comes from the amounts the test chose.
Runs on both backends; the statement count and the dropped-connection test are about
PostgreSQL (SQLite has no server to round-trip to or to drop a connection).
"""
from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, text

from ledger import db as ledger_db, operations as ops
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.models import REVENUE_GPU, LedgerTransaction, Posting, Wallet, utcnow
from tests.ledger.test_concurrency import race

pytestmark = pytest.mark.integration
RACERS = 16


@pytest.fixture(scope="module")
def racing(db_url: str):
    """Sessions on a pool of their own, so the racers really are inside the database at once."""
    engine = make_engine(db_url, pool_size=RACERS, max_overflow=0, pool_timeout=120)
    yield make_sessionmaker(engine)
    engine.dispose()


def _funded_hold(sessions, credits: int, held: int) -> tuple[str, int]:
    u = f"one-{secrets.token_hex(4)}"
    with transaction(sessions) as s:
        ops.credit_topup(s, user_id=u, amount=credits, op_key=f"test:topup:{u}")
        h = ops.place_hold(s, user_id=u, amount=held, op_key=f"test:hold:{u}",
                           expires_at=utcnow() + timedelta(hours=1))
    return u, h.hold_id


def test_same_key_captures_race_to_one_capture(racing, invariants) -> None:
    u, hold_id = _funded_hold(racing, 100, 40)

    def capture(_: int) -> ops.Settlement:
        with transaction(racing) as s:
            return ops.capture(s, hold_id=hold_id, amount=25, op_key=f"test:capture:{u}", ref="r")

    results = race(RACERS, capture)
    assert all(isinstance(r, ops.Settlement) for r in results), [repr(r) for r in results]
    assert sum(not r.replayed for r in results) == 1
    assert {(r.status, r.captured, r.released) for r in results} == {("captured", 25, 15)}
    with transaction(racing) as s:
        w = s.get(Wallet, u)
        assert (w.balance, w.held) == (75, 0)
        tx = s.scalars(select(LedgerTransaction).where(LedgerTransaction.op_key == f"test:capture:{u}")).all()
        assert [(t.kind, t.amount, t.user_id) for t in tx] == [("capture", 25, u)]
        legs = s.execute(select(Posting.account_id, Posting.amount).where(Posting.transaction_id == tx[0].id)).all()
        assert sorted(legs) == sorted([(f"wallet:{u}", -25), (REVENUE_GPU, 25)])
    invariants()


@pytest.mark.parametrize("expired", [False, True])
def test_same_key_releases_race_to_one_release(racing, invariants, expired: bool) -> None:
    u, hold_id = _funded_hold(racing, 100, 40)

    def release(_: int) -> ops.Settlement:
        with transaction(racing) as s:
            return ops.release(s, hold_id=hold_id, op_key=f"test:release:{u}", expired=expired)

    results = race(RACERS, release)
    assert all(isinstance(r, ops.Settlement) for r in results), [repr(r) for r in results]
    assert sum(not r.replayed for r in results) == 1
    status = "expired" if expired else "released"
    assert {(r.status, r.captured, r.released) for r in results} == {(status, 0, 40)}
    with transaction(racing) as s:
        w = s.get(Wallet, u)
        assert (w.balance, w.held) == (100, 0)
    invariants()


def test_same_key_holds_on_a_wallet_that_covers_one_hold_once(racing, invariants) -> None:
    # Every racer's reservation fits on its own (10 of 15 credits) but not twice: the
    # winner keeps its reservation, each twin undoes its own (or never makes it) and is
    # answered with the winner's hold.
    u = f"one-{secrets.token_hex(4)}"
    with transaction(racing) as s:
        ops.credit_topup(s, user_id=u, amount=15, op_key=f"test:topup:{u}")

    def place(_: int) -> ops.HoldOutcome:
        with transaction(racing) as s:
            return ops.place_hold(s, user_id=u, amount=10, op_key=f"test:hold:{u}",
                                  expires_at=utcnow() + timedelta(hours=1))

    results = race(RACERS, place)
    assert all(isinstance(r, ops.HoldOutcome) for r in results), [repr(r) for r in results]
    assert len({r.hold_id for r in results}) == 1 and sum(not r.replayed for r in results) == 1
    with transaction(racing) as s:
        w = s.get(Wallet, u)
        assert (w.balance, w.held) == (15, 10)
    invariants()


def _statements(sessions, fn) -> list[str]:
    """The SQL statements ``fn(session)`` sends inside one transaction."""
    seen: list[str] = []
    engine = sessions.kw["bind"]

    def note(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)
    event.listen(engine, "before_cursor_execute", note)
    try:
        with transaction(sessions) as s:
            fn(s)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return seen


def test_on_postgresql_each_money_operation_is_one_statement(backend, sessions, invariants) -> None:
    if backend.name != "postgres":
        pytest.skip("SQLite keeps the per-table statements (no data-modifying CTEs)")
    u = f"one-{secrets.token_hex(4)}"
    with transaction(sessions) as s:
        ops.credit_topup(s, user_id=u, amount=100, op_key=f"test:topup:{u}")
    held: list[ops.HoldOutcome] = []
    assert len(_statements(sessions, lambda s: held.append(ops.place_hold(
        s, user_id=u, amount=30, op_key=f"test:hold:{u}", expires_at=utcnow() + timedelta(hours=1))))) == 1
    assert len(_statements(sessions, lambda s: ops.capture(
        s, hold_id=held[0].hold_id, amount=20, op_key=f"test:capture:{u}"))) == 1
    with transaction(sessions) as s:
        h2 = ops.place_hold(s, user_id=u, amount=5, op_key=f"test:hold2:{u}", expires_at=utcnow() + timedelta(hours=1))
    assert len(_statements(sessions, lambda s: ops.release(s, hold_id=h2.hold_id, op_key=f"test:rel:{u}"))) == 1
    with transaction(sessions) as s:
        w = s.get(Wallet, u)
        assert (w.balance, w.held) == (80, 0)
    invariants()


def test_a_pooled_connection_the_server_dropped_while_idle_is_replaced(backend, db_url, monkeypatch) -> None:
    if backend.name != "postgres":
        pytest.skip("SQLite has no server connection to drop")
    engine = make_engine(db_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as c:
            pid = c.execute(text("select pg_backend_pid()")).scalar_one()
        admin = make_engine(db_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:  # the server ends the idle connection; wait until it is gone
            assert c.execute(text("select pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
            gone = text("select not exists (select 1 from pg_stat_activity where pid = :p)")
            assert any(c.execute(gone, {"p": pid}).scalar_one() for _ in range(10_000))
        admin.dispose()
        monkeypatch.setattr(ledger_db, "PING_AFTER_IDLE_S", 0.0)  # it has now been idle long enough
        with engine.connect() as c:  # pinged on checkout, replaced, and the work goes through
            assert c.execute(text("select pg_backend_pid()")).scalar_one() != pid
            assert c.execute(select(func.count()).select_from(Wallet)).scalar_one() >= 0
    finally:
        engine.dispose()
