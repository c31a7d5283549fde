"""The invariant checker finds each kind of corruption it names (and is clean otherwise).

Each test corrupts a *copy* of a consistent scenario inside a transaction that is rolled
back, so the shared database stays consistent for every other test.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from ledger import operations as ops
from ledger.invariants import check
from ledger.models import Hold, Job, JobStatus, LedgerTransaction, Posting, Wallet, utcnow

pytestmark = pytest.mark.integration


def scenario(s: Session) -> dict:
    """A user with a top-up, a captured job hold and an open hold; returns the ids."""
    u = f"inv-{secrets.token_hex(5)}"
    top = ops.credit_topup(s, user_id=u, amount=100, op_key=f"test:topup:{u}", ref=f"cs_{u}")
    h1 = ops.place_hold(s, user_id=u, amount=30, op_key=f"test:hold1:{u}", expires_at=utcnow() + timedelta(hours=1))
    job_id = f"job_{secrets.token_hex(8)}"
    s.execute(insert(Job).values(
        id=job_id, user_id=u, type="framing", status=JobStatus.COMPLETED, params={}, input={},
        ratecard_version="2026-11-01", endpoint_id="e", gpu="RTX_A4000", estimated_gpu_seconds=10,
        hold_credits=30, max_gpu_seconds=60, credits_per_gpu_second=0.5, min_charge=1,
        gpu_usd_per_second=0.00016, hold_id=h1.hold_id, webhook_token=secrets.token_hex(32), charge=20))
    s.execute(update(Hold).where(Hold.id == h1.hold_id).values(job_id=job_id))
    ops.capture(s, hold_id=h1.hold_id, amount=20, op_key=f"test:cap:{u}", ref=job_id)
    h2 = ops.place_hold(s, user_id=u, amount=10, op_key=f"test:hold2:{u}", expires_at=utcnow() + timedelta(hours=1))
    s.flush()
    return {"user": u, "topup_tx": top.transaction_id, "captured": h1.hold_id, "open": h2.hold_id, "job": job_id}


def found_after(sessions: sessionmaker[Session], corrupt: Callable[[Session, dict], None]) -> set[int]:
    with sessions() as s:
        s.begin()
        ids = scenario(s)
        assert check(s) == []
        corrupt(s, ids)
        found = {v.invariant for v in check(s)}
        s.rollback()
    return found


def test_clean_scenario_has_no_violation(sessions) -> None:
    assert found_after(sessions, lambda s, ids: None) == set()


def test_unbalanced_transaction(sessions) -> None:
    def corrupt(s, ids):  # a posting deleted by hand
        leg = s.scalars(select(Posting.id).where(Posting.transaction_id == ids["topup_tx"])).first()
        s.execute(delete(Posting).where(Posting.id == leg))
    assert {1, 2} <= found_after(sessions, corrupt)


def test_balance_cache_drift(sessions) -> None:
    assert 2 in found_after(sessions, lambda s, ids: s.execute(
        update(Wallet).where(Wallet.user_id == ids["user"]).values(balance=Wallet.balance + 1)))


def test_held_cache_drift(sessions) -> None:
    assert 2 in found_after(sessions, lambda s, ids: s.execute(
        update(Hold).where(Hold.id == ids["open"]).values(amount=11)))


def test_negative_available_without_clawback(sessions) -> None:
    def corrupt(s, ids):
        s.execute(update(Wallet).where(Wallet.user_id == ids["user"]).values(held=Wallet.held + 500))
    assert 3 in found_after(sessions, corrupt)


def test_hold_captured_beyond_its_amount_or_ended_twice(sessions) -> None:
    def corrupt(s, ids):  # a captured hold's record no longer matches its capture
        s.execute(update(Hold).where(Hold.id == ids["captured"]).values(captured=25))
    assert 4 in found_after(sessions, corrupt)

    def reopen(s, ids):  # an open hold that claims to be closed
        s.execute(update(Hold).where(Hold.id == ids["open"]).values(close_key="x"))
    assert 4 in found_after(sessions, reopen)


def test_duplicate_credit_and_double_charge(sessions) -> None:
    def corrupt(s, ids):
        for kind, ref in (("topup", f"cs_{ids['user']}"), ("capture", ids["job"])):
            tx = s.execute(insert(LedgerTransaction).values(
                op_key=f"dup:{kind}:{ids['user']}", kind=kind, amount=1, user_id=ids["user"], ref=ref,
                created_at=utcnow()).returning(LedgerTransaction.id)).scalar_one()
            s.execute(insert(Posting), [{"transaction_id": tx, "account_id": f"wallet:{ids['user']}", "amount": 1},
                                        {"transaction_id": tx, "account_id": "adjustments", "amount": -1}])
    assert 5 in found_after(sessions, corrupt)


def test_terminal_job_with_open_hold(sessions) -> None:
    def corrupt(s, ids):
        s.execute(update(Hold).where(Hold.id == ids["open"]).values(job_id=ids["job"]))
    assert 6 in found_after(sessions, corrupt)
