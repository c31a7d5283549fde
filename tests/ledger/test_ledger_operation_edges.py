"""Edges of the ledger's money operations (``ledger.operations``) that the main tests
(``test_ledger_operations.py``) leave open: boundaries of 0 and 1 credit, keyword
defaults, what a refusal says, every field of an outcome and of the rows written, and
the race where a concurrent twin commits the same operation key first.

Expected values are hand arithmetic on the amounts each test chooses; found by
``make mutation`` (docs/proof.md).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session, sessionmaker

from ledger import operations as ops
from ledger.db import transaction
from ledger.errors import HoldClosed, IdempotencyConflict, InsufficientFunds, UnknownHold
from ledger.models import (
    REVENUE_GPU,
    STRIPE_CLEARING,
    Account,
    Hold,
    LedgerTransaction,
    Posting,
    Wallet,
    utcnow,
    wallet_account,
)
from tests.factories import FundedWalletFactory, HoldFactory, op_key, user_id

pytestmark = pytest.mark.integration


def later(hours: int = 1):  # type: ignore[no-untyped-def]
    return (utcnow() + timedelta(hours=hours)).replace(microsecond=0)


def wallet(sessions: sessionmaker[Session], user: str) -> tuple[int, int]:
    with transaction(sessions) as s:
        w = s.get(Wallet, user)
        return (w.balance, w.held) if w else (0, 0)


def hold(sessions: sessionmaker[Session], user: str, amount: int, key: str | None = None,
         **kw: object) -> ops.HoldOutcome:
    """The operation under test: ``ops.place_hold`` in a transaction of its own."""
    with transaction(sessions) as s:
        return ops.place_hold(s, user_id=user, amount=amount, op_key=key or op_key("hold"),
                              expires_at=kw.pop("expires_at", later()), **kw)  # type: ignore[arg-type]


def tx_row(sessions: sessionmaker[Session], op_key: str) -> tuple:
    """(kind, amount, user_id, ref, postings sorted) of the transaction named ``op_key``."""
    with transaction(sessions) as s:
        tx = s.scalars(select(LedgerTransaction).where(LedgerTransaction.op_key == op_key)).one()
        legs = sorted(s.execute(select(Posting.account_id, Posting.amount)
                                .where(Posting.transaction_id == tx.id)).all())
        return tx.kind, tx.amount, tx.user_id, tx.ref, legs


# --- transfer / credit_topup ------------------------------------------------------------

def test_transfer_of_one_credit_and_of_nothing(sessions, invariants) -> None:
    u, k, ref = user_id(), op_key("grant"), op_key("in")
    with transaction(sessions) as s:
        posted = ops.transfer(s, user_id=u, amount=1, counter=STRIPE_CLEARING, kind=ops.TxKind.GRANT,
                              op_key=k, ref=ref)
    assert (posted.amount, posted.replayed) == (1, False)
    assert tx_row(sessions, k) == ("grant", 1, u, ref,
                                   sorted([(STRIPE_CLEARING, -1), (wallet_account(u), 1)]))
    with pytest.raises(ValueError, match=r"^a transfer of 0 credits moves nothing$"), \
            transaction(sessions) as s:
        ops.transfer(s, user_id=u, amount=0, counter=STRIPE_CLEARING, kind=ops.TxKind.GRANT, op_key=op_key("g"))
    with transaction(sessions) as s:
        assert s.get(Account, wallet_account(u)).kind == "wallet"
    assert wallet(sessions, u) == (1, 0)
    invariants()


def test_a_debit_needs_available_credits_unless_debt_is_allowed_explicitly(sessions, invariants) -> None:
    u = FundedWalletFactory.create(sessions=sessions, credits=10).user_id
    with pytest.raises(InsufficientFunds, match=rf"^wallet {u} cannot give 11 credits$"), \
            transaction(sessions) as s:  # allow_debt left at its default
        ops.transfer(s, user_id=u, amount=-11, counter=STRIPE_CLEARING, kind=ops.TxKind.ADJUST,
                     op_key=op_key("adjust"))
    assert wallet(sessions, u) == (10, 0)
    invariants()


def test_a_wallet_in_debt_can_still_receive_one_credit(sessions, invariants) -> None:
    u = FundedWalletFactory.create(sessions=sessions, credits=5).user_id
    with transaction(sessions) as s:  # a claw-back of 8: available 5 − 8 = −3
        ops.transfer(s, user_id=u, amount=-8, counter=STRIPE_CLEARING, kind=ops.TxKind.CLAWBACK,
                     op_key=op_key("refund"), allow_debt=True)
    with transaction(sessions) as s:
        before = s.get(Wallet, u).updated_at
    k = op_key("restore")
    with transaction(sessions) as s:
        ops.transfer(s, user_id=u, amount=1, counter=STRIPE_CLEARING, kind=ops.TxKind.RESTORE, op_key=k)
    with transaction(sessions) as s:
        assert s.get(Wallet, u).updated_at > before
    assert wallet(sessions, u) == (5 - 8 + 1, 0)
    invariants()


def test_a_debit_replayed_after_the_credits_are_gone_is_still_a_replay(sessions, invariants) -> None:
    u, k = FundedWalletFactory.create(sessions=sessions, credits=40).user_id, op_key("adjust")

    def debit() -> ops.Posted:
        with transaction(sessions) as s:
            return ops.transfer(s, user_id=u, amount=-40, counter=STRIPE_CLEARING,
                                kind=ops.TxKind.ADJUST, op_key=k)

    first = debit()
    again = debit()  # available is 0 now: answered from the first outcome, not refused
    assert (again.transaction_id, again.amount, again.replayed) == (first.transaction_id, -40, True)
    refused = rf"^operation {k} was -40 credits for {u}; replayed as 41 for {u}$"
    with pytest.raises(IdempotencyConflict, match=refused), transaction(sessions) as s:
        ops.transfer(s, user_id=u, amount=41, counter=STRIPE_CLEARING, kind=ops.TxKind.ADJUST, op_key=k)
    assert wallet(sessions, u) == (0, 0)
    invariants()


@pytest.mark.parametrize("amount", [0, -1])
def test_credit_topup_refuses_nothing_and_takes_one(sessions, invariants, amount: int) -> None:
    u = user_id()
    with pytest.raises(ValueError, match=r"^top-up amount must be positive$"), transaction(sessions) as s:
        ops.credit_topup(s, user_id=u, amount=amount, op_key=op_key("topup"))
    k, ref = op_key("topup"), op_key("cs")
    with transaction(sessions) as s:
        ops.credit_topup(s, user_id=u, amount=1, op_key=k, ref=ref)
    assert tx_row(sessions, k)[:4] == ("topup", 1, u, ref)
    assert wallet(sessions, u) == (1, 0)
    invariants()


@contextmanager
def twin_commits_first(sessions: sessionmaker[Session], op_key: str, user_id: str, amount: int) -> Iterator[None]:
    """Right after an operation looks ``op_key`` up and finds nothing, a twin's
    transaction takes that key (the race a concurrent transaction wins): written on the
    same connection, so it stands as committed-first for the operation's own INSERT."""
    engine = sessions.kw["bind"]
    fired = []

    def after(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if fired or "FROM transactions" not in statement or op_key not in str(parameters):
            return
        fired.append(True)
        conn.execute(insert(LedgerTransaction.__table__).values(
            op_key=op_key, kind="grant", amount=amount, user_id=user_id, ref="twin", created_at=utcnow()))

    event.listen(engine, "after_cursor_execute", after)
    try:
        yield
    finally:
        event.remove(engine, "after_cursor_execute", after)
    assert fired, "the operation never looked its key up"


@pytest.mark.parametrize("twin_user", ["same", "other"])
def test_a_twin_that_takes_the_key_first_turns_the_transfer_into_its_replay(sessions, twin_user) -> None:
    u, k = user_id(), op_key("grant")
    with sessions() as s:  # rolled back: the twin has no postings of its own
        s.begin()
        with twin_commits_first(sessions, k, u if twin_user == "same" else "someone-else", 7):
            if twin_user == "same":
                got = ops.transfer(s, user_id=u, amount=7, counter=STRIPE_CLEARING,
                                   kind=ops.TxKind.GRANT, op_key=k)
                twin = s.scalar(select(LedgerTransaction.id).where(LedgerTransaction.op_key == k))
                assert (got.transaction_id, got.amount, got.replayed) == (twin, 7, True)
            else:
                with pytest.raises(IdempotencyConflict, match="someone-else"):
                    ops.transfer(s, user_id=u, amount=7, counter=STRIPE_CLEARING,
                                 kind=ops.TxKind.GRANT, op_key=k)
        # the operation's own balance change was undone with its savepoint
        assert s.get(Wallet, u, populate_existing=True).balance == 0
        s.rollback()


# --- place_hold ---------------------------------------------------------------------------

@pytest.mark.parametrize("amount", [0, -1])
def test_a_hold_of_nothing_is_refused(sessions, invariants, amount: int) -> None:
    u = FundedWalletFactory.create(sessions=sessions, credits=10).user_id
    with pytest.raises(ValueError, match=r"^hold amount must be positive$"):
        hold(sessions, u, amount)
    assert wallet(sessions, u) == (10, 0)
    invariants()


def test_a_hold_records_its_job_and_expiry_and_replays_them(sessions, invariants) -> None:
    u, k, expires = FundedWalletFactory.create(sessions=sessions, credits=10).user_id, op_key("hold"), later(3)
    first = hold(sessions, u, 1, k, expires_at=expires, job_id="job_abc")
    assert (first.amount, first.expires_at, first.replayed) == (1, expires, False)
    again = hold(sessions, u, 1, k, expires_at=later(9))  # a replay answers the first expiry
    assert (again.hold_id, again.amount, again.expires_at, again.replayed) == (first.hold_id, 1, expires, True)
    with transaction(sessions) as s:
        h = s.get(Hold, first.hold_id)
        assert (h.user_id, h.amount, h.status, h.captured, h.job_id, h.expires_at, h.close_key) == (
            u, 1, "open", 0, "job_abc", expires, None)
    with pytest.raises(IdempotencyConflict, match=rf"^hold {k} was 1 credits for {u}; replayed as 2 for {u}$"):
        hold(sessions, u, 2, k)
    with pytest.raises(InsufficientFunds, match=rf"^wallet {u} cannot hold 10 credits$"):
        hold(sessions, u, 10)  # 9 available
    assert wallet(sessions, u) == (10, 1)
    invariants()


# --- capture / release --------------------------------------------------------------------

def test_capture_of_one_credit_and_of_the_whole_hold(sessions, invariants) -> None:
    u = FundedWalletFactory.create(sessions=sessions, credits=10).user_id
    a, b = (HoldFactory.create(sessions=sessions, user_id=u, amount=n) for n in (4, 5))
    k, job = op_key("capture"), op_key("job")
    with transaction(sessions) as s:
        one = ops.capture(s, hold_id=a.id, amount=1, op_key=k, ref=job)
    assert one == ops.Settlement(a.id, "captured", 1, 3, replayed=False)
    assert tx_row(sessions, k) == ("capture", 1, u, job,
                                   sorted([(REVENUE_GPU, 1), (wallet_account(u), -1)]))
    with transaction(sessions) as s:
        whole = ops.capture(s, hold_id=b.id, amount=5, op_key=op_key("capture"))
    assert whole == ops.Settlement(b.id, "captured", 5, 0, replayed=False)
    with transaction(sessions) as s:  # replay: the stored outcome, field by field
        assert ops.capture(s, hold_id=a.id, amount=1, op_key=k) == ops.Settlement(
            a.id, "captured", 1, 3, replayed=True)
    assert wallet(sessions, u) == (10 - 1 - 5, 0)
    invariants()


def test_capture_refusals_say_why(sessions, invariants) -> None:
    u = FundedWalletFactory.create(sessions=sessions, credits=10).user_id
    h = HoldFactory.create(sessions=sessions, user_id=u, amount=4)
    with pytest.raises(ValueError, match=r"^capture of 0 must be positive$"), transaction(sessions) as s:
        ops.capture(s, hold_id=h.id, amount=0, op_key=op_key("capture"))
    with pytest.raises(ValueError, match=rf"^capture of 5 exceeds hold {h.id} of 4$"), transaction(sessions) as s:
        ops.capture(s, hold_id=h.id, amount=5, op_key=op_key("capture"))
    with pytest.raises(UnknownHold, match=r"^no hold -1$"), transaction(sessions) as s:
        ops.capture(s, hold_id=-1, amount=1, op_key=op_key("capture"))
    k = op_key("capture")
    with transaction(sessions) as s:
        ops.capture(s, hold_id=h.id, amount=2, op_key=k)
    with pytest.raises(IdempotencyConflict, match=rf"^hold {h.id} captured 2, replayed 3$"), \
            transaction(sessions) as s:
        ops.capture(s, hold_id=h.id, amount=3, op_key=k)
    for amount in (2, 3):  # the same amount under another key is not a replay either
        with pytest.raises(HoldClosed) as closed, transaction(sessions) as s:
            ops.capture(s, hold_id=h.id, amount=amount, op_key=op_key("other"))
        assert (closed.value.hold_id, closed.value.status, closed.value.close_key) == (h.id, "captured", k)
        assert str(closed.value) == f"hold {h.id} already captured by {k}"
    assert wallet(sessions, u) == (8, 0)
    invariants()


def test_capture_under_a_key_another_transaction_holds(sessions, invariants) -> None:
    used_key = op_key("topup")
    u = FundedWalletFactory.create(sessions=sessions, credits=10, op_key=used_key).user_id
    h = HoldFactory.create(sessions=sessions, user_id=u, amount=4)
    with pytest.raises(IdempotencyConflict, match=rf"^operation key {used_key} is already used$"), \
            transaction(sessions) as s:
        ops.capture(s, hold_id=h.id, amount=2, op_key=used_key)
    assert wallet(sessions, u) == (10, 4)
    invariants()


def test_release_defaults_to_released_and_answers_replays_field_by_field(sessions, invariants) -> None:
    u, k = FundedWalletFactory.create(sessions=sessions, credits=10).user_id, op_key("release")
    h = HoldFactory.create(sessions=sessions, user_id=u, amount=6)
    with transaction(sessions) as s:
        first = ops.release(s, hold_id=h.id, op_key=k)
    assert first == ops.Settlement(h.id, "released", 0, 6, replayed=False)
    with transaction(sessions) as s:
        assert s.get(Hold, h.id).status == "released"
        assert ops.release(s, hold_id=h.id, op_key=k) == ops.Settlement(
            h.id, "released", 0, 6, replayed=True)
    with pytest.raises(HoldClosed) as closed, transaction(sessions) as s:
        ops.release(s, hold_id=h.id, op_key=op_key("expire"), expired=True)
    assert (closed.value.hold_id, closed.value.status, closed.value.close_key) == (h.id, "released", k)
    with pytest.raises(UnknownHold, match=r"^no hold -2$"), transaction(sessions) as s:
        ops.release(s, hold_id=-2, op_key=op_key("release"))
    assert wallet(sessions, u) == (10, 0)
    invariants()


def test_a_key_that_ended_one_hold_cannot_end_another(sessions, invariants) -> None:
    u, k = FundedWalletFactory.create(sessions=sessions, credits=10).user_id, op_key("release")
    a, b = (HoldFactory.create(sessions=sessions, user_id=u, amount=n) for n in (3, 4))
    with transaction(sessions) as s:
        ops.release(s, hold_id=a.id, op_key=k)
    with pytest.raises(IdempotencyConflict, match=rf"^operation key {k} already ended another hold$"), \
            transaction(sessions) as s:
        ops.release(s, hold_id=b.id, op_key=k)
    with pytest.raises(IdempotencyConflict, match=rf"^operation key {k} already ended another hold$"), \
            transaction(sessions) as s:
        ops.capture(s, hold_id=b.id, amount=1, op_key=k)
    assert wallet(sessions, u) == (10, 4)
    invariants()
