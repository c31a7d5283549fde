"""One task from request to /run (issue 17): ``lifecycle.dispatch_order`` holds a
``requested`` job's quote and records the dispatch intent in one transaction.

Expected money comes from the rate card's model (``tests.model.rates``: the hold of a
30 s 1080p framing job) and the top-up the test made, never from the code under test."""
from __future__ import annotations

from decimal import Decimal

from ledger.db import transaction
from ledger.jobs import request_cancel
from ledger.models import Hold, Job, JobStatus, Notification, Wallet
from pricing import JobParams, quote
from services import lifecycle
from tests.factories import FundedWalletFactory, JobFactory
from tests.model import rates

Q = quote("framing", JobParams(duration_s=Decimal(30), resolution="1080p"))  # the job's frozen quote
HOLD = rates.quote("framing", Decimal(30), "1080p").hold  # what it must hold, by the model


def _state(sessions, job_id: str, user: str) -> tuple[Job, Wallet, list[Hold], list[Notification]]:
    with transaction(sessions) as s:
        job, wallet = s.get_one(Job, job_id), s.get_one(Wallet, user)
        holds = s.query(Hold).filter(Hold.job_id == job_id).all()
        notes = s.query(Notification).filter(Notification.job_id == job_id).all()
        return job, wallet, holds, notes


def test_a_requested_job_is_held_and_ordered_in_one_call(sessions, invariants) -> None:
    credits = HOLD + 7
    user = FundedWalletFactory.create(sessions=sessions, prefix="dh", credits=credits).user_id
    job_id = JobFactory.create(sessions=sessions, user_id=user, quote=Q).id

    order = lifecycle.dispatch_order(sessions, job_id)

    job, wallet, holds, _ = _state(sessions, job_id, user)
    assert order is not None and order.job_id == job_id
    assert (job.status, job.dispatch_attempts) == (JobStatus.HELD, 1)
    assert [h.amount for h in holds] == [HOLD]
    assert (wallet.balance, wallet.held, wallet.available) == (credits, HOLD, 7)
    # A redelivery (the /run answer lost) orders again; the hold is not placed twice.
    assert lifecycle.dispatch_order(sessions, job_id) is not None
    job, wallet, holds, _ = _state(sessions, job_id, user)
    assert (job.dispatch_attempts, len(holds), wallet.held) == (2, 1, HOLD)
    # Never sent to RunPod: end it, so a stack sharing the database does not dispatch it.
    lifecycle.fail_before_run(sessions, job_id, "test over")
    assert _state(sessions, job_id, user)[1].held == 0
    invariants()


def test_a_wallet_that_cannot_cover_the_quote_rejects_and_orders_nothing(sessions, invariants) -> None:
    credits = HOLD - 1
    user = FundedWalletFactory.create(sessions=sessions, prefix="dh", credits=credits).user_id
    job_id = JobFactory.create(sessions=sessions, user_id=user, quote=Q).id

    assert lifecycle.dispatch_order(sessions, job_id) is None

    job, wallet, holds, notes = _state(sessions, job_id, user)
    assert (job.status, job.dispatch_attempts, holds) == (JobStatus.REJECTED, 0, [])
    assert (wallet.balance, wallet.held) == (credits, 0)
    assert [n.type for n in notes] == ["job.rejected"]
    assert lifecycle.dispatch_order(sessions, job_id) is None  # and stays so
    invariants()


def test_a_job_cancelled_before_its_hold_is_ended_without_money(sessions, invariants) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="dh", credits=HOLD).user_id
    job_id = JobFactory.create(sessions=sessions, user_id=user, quote=Q).id
    with transaction(sessions) as s:
        request_cancel(s.get_one(Job, job_id))

    assert lifecycle.dispatch_order(sessions, job_id) is None

    job, wallet, holds, _ = _state(sessions, job_id, user)
    assert (job.status, holds, wallet.held, wallet.balance) == (JobStatus.CANCELLED, [], 0, HOLD)
    invariants()
