"""The factories make what the code makes: jobs in each state through the real services
with every ledger invariant holding, funded wallets credited exactly by a top-up, and
Stripe objects that keep every field of Stripe's example object."""
from __future__ import annotations

import pytest

from emulators.stripe.events import fixture
from ledger.db import transaction
from ledger.models import Hold, HoldStatus, Job, JobStatus, LedgerTransaction, Wallet
from tests.factories import (
    ChargeFactory,
    CheckoutSessionFactory,
    DisputeFactory,
    EventFactory,
    FundedWalletFactory,
    HoldFactory,
    InvoiceFactory,
    JobFactory,
    RefundFactory,
)
from tests.model import rates

pytestmark = pytest.mark.integration

STATES = [JobStatus.REQUESTED, JobStatus.HELD, JobStatus.REJECTED, JobStatus.CANCELLED,
          JobStatus.DISPATCHED, JobStatus.IN_PROGRESS, JobStatus.COMPLETED, JobStatus.FAILED,
          JobStatus.TIMED_OUT, JobStatus.LOST]
OPEN = {JobStatus.HELD, JobStatus.DISPATCHED, JobStatus.IN_PROGRESS}


def test_funded_wallet_is_one_topup_transaction(sessions, invariants) -> None:
    w = FundedWalletFactory.create(sessions=sessions, credits=700)
    with transaction(sessions) as s:
        assert (s.get_one(Wallet, w.user_id).balance, s.get_one(Wallet, w.user_id).held) == (700, 0)
        kinds = s.query(LedgerTransaction.kind).filter_by(user_id=w.user_id).all()
    assert [k for (k,) in kinds] == ["topup"]
    hold = HoldFactory.create(sessions=sessions, user_id=w.user_id, amount=30)
    assert (hold.amount, hold.status) == (30, HoldStatus.OPEN)
    invariants()


@pytest.mark.parametrize("status", STATES)
def test_job_in_each_state_as_the_services_leave_it(sessions, invariants, status) -> None:
    wallet = FundedWalletFactory.create(sessions=sessions, credits=5 if status == JobStatus.REJECTED else 1000)
    job = JobFactory.create(sessions=sessions, user_id=wallet.user_id, status=status, quiet=True)
    with transaction(sessions) as s:
        row = s.get_one(Job, job.id)
        hold = s.get(Hold, row.hold_id) if row.hold_id else None
        w = s.get_one(Wallet, wallet.user_id)
    assert row.status == status
    assert (hold is not None and hold.status == HoldStatus.OPEN) == (status in OPEN)
    assert w.held == (hold.amount if status in OPEN and hold else 0)
    if status == JobStatus.COMPLETED:
        # framing, 3 s of executionTime, by the reference arithmetic of the rate card
        q = rates.quote("framing", 30)
        assert w.balance == 1000 - rates.charge(q, 3000)
    invariants()


def test_stripe_objects_keep_every_fixture_field() -> None:
    for factory_, name in [(CheckoutSessionFactory, "checkout_session"), (ChargeFactory, "charge"),
                           (RefundFactory, "refund"), (DisputeFactory, "dispute"), (EventFactory, "event")]:
        assert set(fixture(name)) <= set(factory_())
    removed_by_basil = {"subscription", "charge", "payment_intent"}
    assert set(fixture("invoice")) - set(InvoiceFactory()) == removed_by_basil & set(fixture("invoice"))
    session = EventFactory(obj=CheckoutSessionFactory(pack="medium"))["data"]["object"]
    assert (session["amount_total"], session["metadata"]["pack"]) == (rates.packs()["medium"]["price"], "medium")
