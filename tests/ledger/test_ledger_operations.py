"""Ledger operations on the real database: money moves once, replays change nothing,
and every invariant of docs/architecture.md holds after every step."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ledger import operations as ops
from ledger.db import transaction
from ledger.errors import HoldClosed, IdempotencyConflict, InsufficientFunds
from ledger.models import REVENUE_GPU, STRIPE_CLEARING, Hold, HoldStatus, LedgerTransaction, Posting, Wallet, utcnow
from tests.factories import FundedWalletFactory, HoldFactory, op_key, user_id

pytestmark = pytest.mark.integration


def wallet(sessions: sessionmaker[Session], user: str) -> tuple[int, int]:
    with transaction(sessions) as s:
        w = s.get(Wallet, user)
        return (w.balance, w.held) if w else (0, 0)


def account_total(sessions: sessionmaker[Session], account: str) -> int:
    with transaction(sessions) as s:
        return s.scalar(select(func.coalesce(func.sum(Posting.amount), 0)).where(Posting.account_id == account))


def topup(sessions: sessionmaker[Session], user: str, amount: int, key: str | None = None) -> ops.Posted:
    """The operation under test: ``ops.credit_topup`` in a transaction of its own."""
    with transaction(sessions) as s:
        return ops.credit_topup(s, user_id=user, amount=amount, op_key=key or op_key("topup"), ref=op_key("cs"))


def hold(sessions: sessionmaker[Session], user: str, amount: int, key: str | None = None) -> ops.HoldOutcome:
    """The operation under test: ``ops.place_hold`` (expires in an hour) in a transaction of its own."""
    with transaction(sessions) as s:
        return ops.place_hold(s, user_id=user, amount=amount, op_key=key or op_key("hold"),
                              expires_at=utcnow() + timedelta(hours=1))


def test_topup_posts_balanced_double_entry(sessions, invariants) -> None:
    u = user_id()
    clearing_before = account_total(sessions, STRIPE_CLEARING)
    posted = topup(sessions, u, 500)
    assert not posted.replayed
    assert wallet(sessions, u) == (500, 0)
    assert account_total(sessions, STRIPE_CLEARING) == clearing_before - 500
    with transaction(sessions) as s:
        legs = s.scalars(select(Posting.amount).where(Posting.transaction_id == posted.transaction_id)).all()
    assert sorted(legs) == [-500, 500]
    invariants()


def test_topup_replay_returns_first_outcome_and_credits_once(sessions, invariants) -> None:
    u, k = user_id(), op_key("topup")
    first = topup(sessions, u, 700, k)
    again = topup(sessions, u, 700, k)
    assert again.replayed and again.transaction_id == first.transaction_id
    assert wallet(sessions, u) == (700, 0)
    invariants()


def test_topup_replay_with_another_amount_is_an_error(sessions, invariants) -> None:
    u, k = user_id(), op_key("topup")
    topup(sessions, u, 700, k)
    with pytest.raises(IdempotencyConflict):
        topup(sessions, u, 701, k)
    with pytest.raises(IdempotencyConflict):
        topup(sessions, user_id(), 700, k)  # same key, another wallet
    assert wallet(sessions, u) == (700, 0)
    invariants()


def test_hold_reserves_and_refuses_beyond_available(sessions, invariants) -> None:
    u = FundedWalletFactory.create(sessions=sessions, credits=100).user_id
    hold(sessions, u, 60)
    assert wallet(sessions, u) == (100, 60)
    with pytest.raises(InsufficientFunds):
        hold(sessions, u, 41)
    hold(sessions, u, 40)  # exactly the rest
    assert wallet(sessions, u) == (100, 100)
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(Hold).where(Hold.user_id == u)) == 2
    invariants()


def test_hold_on_unknown_wallet_is_insufficient_funds(sessions, invariants) -> None:
    with pytest.raises(InsufficientFunds):
        hold(sessions, user_id(), 1)
    invariants()


def test_hold_replay_and_conflict(sessions, invariants) -> None:
    u, k = FundedWalletFactory.create(sessions=sessions, credits=100).user_id, op_key("hold")
    first = hold(sessions, u, 30, k)
    again = hold(sessions, u, 30, k)
    assert again.replayed and again.hold_id == first.hold_id
    assert wallet(sessions, u) == (100, 30)
    with pytest.raises(IdempotencyConflict):
        hold(sessions, u, 31, k)
    invariants()


def test_capture_charges_and_releases_the_rest(sessions, invariants) -> None:
    u = FundedWalletFactory.create(sessions=sessions, credits=100).user_id
    h = HoldFactory.create(sessions=sessions, user_id=u, amount=40)
    revenue_before = account_total(sessions, REVENUE_GPU)
    with transaction(sessions) as s:
        settled = ops.capture(s, hold_id=h.id, amount=25, op_key=op_key("capture"), ref="job-x")
    assert (settled.status, settled.captured, settled.released) == (HoldStatus.CAPTURED, 25, 15)
    assert wallet(sessions, u) == (75, 0)
    assert account_total(sessions, REVENUE_GPU) == revenue_before + 25
    invariants()


def test_capture_replay_and_conflict(sessions, invariants) -> None:
    u, k = FundedWalletFactory.create(sessions=sessions, credits=100).user_id, op_key("capture")
    h = HoldFactory.create(sessions=sessions, user_id=u, amount=40)
    with transaction(sessions) as s:
        ops.capture(s, hold_id=h.id, amount=10, op_key=k)
    with transaction(sessions) as s:
        again = ops.capture(s, hold_id=h.id, amount=10, op_key=k)
    assert again.replayed and again.captured == 10
    with pytest.raises(IdempotencyConflict), transaction(sessions) as s:
        ops.capture(s, hold_id=h.id, amount=11, op_key=k)
    assert wallet(sessions, u) == (90, 0)
    invariants()


@pytest.mark.parametrize("amount", [0, -1, 41])
def test_capture_outside_the_hold_is_refused(sessions, invariants, amount: int) -> None:
    u = FundedWalletFactory.create(sessions=sessions, credits=100).user_id
    h = HoldFactory.create(sessions=sessions, user_id=u, amount=40)
    with pytest.raises(ValueError), transaction(sessions) as s:
        ops.capture(s, hold_id=h.id, amount=amount, op_key=op_key("capture"))
    assert wallet(sessions, u) == (100, 40)
    invariants()


def test_release_frees_the_whole_hold_once(sessions, invariants) -> None:
    u, k = FundedWalletFactory.create(sessions=sessions, credits=100).user_id, op_key("release")
    h = HoldFactory.create(sessions=sessions, user_id=u, amount=40)
    with transaction(sessions) as s:
        first = ops.release(s, hold_id=h.id, op_key=k)
    with transaction(sessions) as s:
        again = ops.release(s, hold_id=h.id, op_key=k)
    assert (first.released, first.replayed, again.replayed) == (40, False, True)
    assert wallet(sessions, u) == (100, 0)
    invariants()


def test_a_hold_ends_exactly_once(sessions, invariants) -> None:
    u = FundedWalletFactory.create(sessions=sessions, credits=100).user_id
    h = HoldFactory.create(sessions=sessions, user_id=u, amount=40)
    with transaction(sessions) as s:
        ops.release(s, hold_id=h.id, op_key=op_key("release"))
    with pytest.raises(HoldClosed), transaction(sessions) as s:
        ops.capture(s, hold_id=h.id, amount=10, op_key=op_key("capture"))
    with pytest.raises(HoldClosed), transaction(sessions) as s:
        ops.release(s, hold_id=h.id, op_key=op_key("release"), expired=True)
    assert wallet(sessions, u) == (100, 0)
    invariants()


def test_expire_is_recorded_as_expired(sessions, invariants) -> None:
    u = FundedWalletFactory.create(sessions=sessions, credits=50).user_id
    h = HoldFactory.create(sessions=sessions, user_id=u, amount=50)
    with transaction(sessions) as s:
        settled = ops.release(s, hold_id=h.id, op_key=op_key("expire"), expired=True)
    assert settled.status == HoldStatus.EXPIRED
    assert wallet(sessions, u) == (50, 0)
    invariants()


def test_caller_rollback_undoes_the_operation(sessions, invariants) -> None:
    """Each operation lives in the caller's transaction: a rollback leaves no trace."""
    u, k = user_id(), op_key("topup")
    with pytest.raises(RuntimeError), transaction(sessions) as s:
        ops.credit_topup(s, user_id=u, amount=10, op_key=k)
        raise RuntimeError("crash before commit")
    assert wallet(sessions, u) == (0, 0)
    with transaction(sessions) as s:
        assert s.scalar(select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.op_key == k)) == 0
    invariants()


def move(sessions: sessionmaker[Session], user: str, amount: int, kind: str, key: str,
         allow_debt: bool = False) -> ops.Posted:
    with transaction(sessions) as s:
        return ops.transfer(s, user_id=user, amount=amount, counter=STRIPE_CLEARING, kind=kind,
                            op_key=key, allow_debt=allow_debt)


def test_debit_beyond_available_is_refused_and_writes_nothing(sessions, invariants) -> None:
    u = FundedWalletFactory.create(sessions=sessions, credits=100).user_id
    HoldFactory.create(sessions=sessions, user_id=u, amount=60)
    with pytest.raises(InsufficientFunds):
        move(sessions, u, -41, ops.TxKind.ADJUST, op_key("adjust"))
    assert wallet(sessions, u) == (100, 60)
    move(sessions, u, -40, ops.TxKind.ADJUST, op_key("adjust"))
    assert wallet(sessions, u) == (60, 60)
    invariants()


def test_clawback_may_take_a_wallet_into_debt_without_breaking_its_holds(sessions, invariants) -> None:
    u = FundedWalletFactory.create(sessions=sessions, credits=100).user_id
    held = HoldFactory.create(sessions=sessions, user_id=u, amount=70)
    k = op_key("refund")
    move(sessions, u, -100, ops.TxKind.CLAWBACK, k, allow_debt=True)
    again = move(sessions, u, -100, ops.TxKind.CLAWBACK, k, allow_debt=True)
    assert again.replayed
    assert wallet(sessions, u) == (0, 70)  # available −70: in debt, hold intact
    with pytest.raises(InsufficientFunds):
        HoldFactory.create(sessions=sessions, user_id=u, amount=1)
    with transaction(sessions) as s:
        assert s.get(Hold, held.id).status == HoldStatus.OPEN
    with pytest.raises(IdempotencyConflict):
        move(sessions, u, -99, ops.TxKind.CLAWBACK, k, allow_debt=True)
    invariants()
