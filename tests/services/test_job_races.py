"""A capture never races a release: RunPod's COMPLETED (capture) and the hold-expiry
sweep (release as expired) applied to the same job at the same moment — whichever
commits first wins, the other is a no-op. Runs the real lifecycle functions from two
threads against the real database (no stack needed)."""
from __future__ import annotations

import threading
from collections import Counter
from functools import partial

import pytest
from sqlalchemy import func, select

from ledger import operations as ops
from ledger.db import transaction
from ledger.errors import HoldClosed
from ledger.models import Hold, HoldStatus, Job, JobStatus, LedgerTransaction, RunPodJob, Wallet
from services import lifecycle, runpod_jobs, stops
from tests.factories import FundedWalletFactory, HoldFactory, JobFactory
from tests.model import rates

pytestmark = pytest.mark.integration
ROUNDS = 8


HOLD = rates.quote("framing", 30).hold  # the model's hold of JobFactory's job (framing, 30 s)
# In progress on RunPod with an open hold; its poll lies in the future so a stack running
# in the same session leaves it alone.
running = partial(JobFactory.create, status=JobStatus.IN_PROGRESS, quiet=True)


COMPLETED = {"status": "COMPLETED", "executionTime": 3000, "delayTime": 10, "output": {}}


def settled(sessions, job_id: str) -> tuple[Job, Hold, int]:
    """The job, its hold and how many capture transactions it has."""
    with transaction(sessions) as s:
        job = s.get(Job, job_id)
        return job, s.get(Hold, job.hold_id), s.scalar(
            select(func.count()).select_from(LedgerTransaction).where(
                LedgerTransaction.ref == job_id, LedgerTransaction.kind == "capture"))


def race(*calls) -> list[object]:
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(i: int, call) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - recorded, asserted by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_completion_and_expiry_racing_settle_exactly_once(sessions, invariants) -> None:
    user = FundedWalletFactory.create(sessions=sessions, prefix="race", credits=1000).user_id
    outcomes: Counter[str] = Counter()
    charged = 0
    for _ in range(ROUNDS):
        job_id, hold = running(sessions=sessions, user_id=user).id, HOLD
        race(partial(lifecycle.apply_status, sessions, job_id, COMPLETED),
             partial(stops.settle_expired, sessions, job_id, None))
        job, h, captures = settled(sessions, job_id)
        outcomes[job.status] += 1
        if job.status == JobStatus.COMPLETED:
            assert (h.status, h.captured, captures, job.charge) == (HoldStatus.CAPTURED, 2, 1, 2)
            charged += 2
        else:
            assert job.status == JobStatus.EXPIRED
            assert (h.status, h.captured, captures, job.charge, job.released) == (
                HoldStatus.EXPIRED, 0, 0, 0, hold)
    assert sum(outcomes.values()) == ROUNDS
    with transaction(sessions) as s:
        wallet = s.get(Wallet, user)
        assert (wallet.balance, wallet.held) == (1000 - charged, 0)
    invariants()


def test_capture_and_expiry_of_one_hold_apply_once(sessions, invariants) -> None:
    """The ledger primitive underneath: of a concurrent capture and release(expired=True)
    of the same hold exactly one applies, the other raises ``HoldClosed``."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="race", credits=1000).user_id
    for n in range(ROUNDS):
        hold_id = HoldFactory.create(sessions=sessions, user_id=user, amount=10, op_key=f"race:{user}:{n}:hold").id

        def capture(hold_id: int = hold_id, n: int = n) -> object:
            with transaction(sessions) as s:
                return ops.capture(s, hold_id=hold_id, amount=4, op_key=f"race:{user}:{n}:capture")

        def expire(hold_id: int = hold_id, n: int = n) -> object:
            with transaction(sessions) as s:
                return ops.release(s, hold_id=hold_id, op_key=f"race:{user}:{n}:expire", expired=True)

        results = race(capture, expire)
        assert sum(isinstance(r, HoldClosed) for r in results) == 1, results
        assert sum(isinstance(r, ops.Settlement) for r in results) == 1, results
    with transaction(sessions) as s:
        wallet = s.get(Wallet, user)
        captured = s.scalar(select(func.coalesce(func.sum(Hold.captured), 0)).where(Hold.user_id == user))
        assert (wallet.balance, wallet.held) == (1000 - captured, 0)
    invariants()


@pytest.mark.parametrize("state, outcome", [
    ("COMPLETED", JobStatus.COMPLETED), ("FAILED", JobStatus.FAILED),
    ("TIMED_OUT", JobStatus.TIMED_OUT), ("CANCELLED", JobStatus.EXPIRED)])
def test_expiry_settles_from_runpods_terminal_status(sessions, invariants, state, outcome) -> None:
    """Issue 11 case 1: RunPod finished just before our /cancel reached it. The expiry
    settles exactly as a webhook for that status would: COMPLETED is charged its
    measured executionTime (rate-card formula ceil(3000 ms / 1000 × 0.5) = 2 credits)
    and keeps its output; FAILED / TIMED_OUT release as such; only RunPod's CANCELLED
    (our own stop) ends ``expired``."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="race", credits=1000).user_id
    job_id, hold = running(sessions=sessions, user_id=user).id, HOLD
    with transaction(sessions) as s:
        s.get(Job, job_id).stop_reason = "expire"
    status = {"status": state, "executionTime": 3000, "delayTime": 10,
              "output": {"url": "s3://x"} if state == "COMPLETED" else None, "error": "boom"}
    assert stops.settle_expired(sessions, job_id, status) == outcome
    expected = 2 if state == "COMPLETED" else 0  # 30 s framing: price 0.5 credit/GPU-s
    with transaction(sessions) as s:
        job = s.get(Job, job_id)
        assert (job.charge, job.released, job.execution_ms) == (expected, hold - expected, 3000)
        assert s.get(Wallet, user).balance == 1000 - expected
        if state == "COMPLETED":
            assert job.output == {"url": "s3://x"}
            assert s.get(Hold, job.hold_id).status == HoldStatus.CAPTURED
    invariants()


@pytest.mark.parametrize("forgotten, outcome, hold_status", [
    (True, JobStatus.LOST, HoldStatus.RELEASED), (False, JobStatus.EXPIRED, HoldStatus.EXPIRED)])
def test_expiry_without_a_status_is_lost_only_when_runpod_forgot_the_job(
        sessions, invariants, forgotten: bool, outcome: str, hold_status: str) -> None:
    """Expiry with no /status body: RunPod's 404 (it forgot the job, before or after our
    cancel) ends the job ``lost`` and flagged, as the poller's 404 does; no answer at all
    (``RunPodRejected``) releases it as ``expired``. Either way the whole hold (the
    model's) is released and nothing is charged."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="race", credits=1000).user_id
    job_id = running(sessions=sessions, user_id=user).id
    with transaction(sessions) as s:
        s.get(Job, job_id).stop_reason = "expire"
    assert stops.settle_expired(sessions, job_id, None, forgotten=forgotten) == outcome
    job, hold, captures = settled(sessions, job_id)
    assert (job.charge or 0, job.released, captures, job.flagged) == (0, HOLD, 0, forgotten)
    assert hold.status == hold_status
    with transaction(sessions) as s:
        assert s.get(Wallet, user).balance == 1000
    invariants()


def test_completion_and_expiry_seeing_completed_charge_once(sessions, invariants) -> None:
    """The webhook's capture and an expiry that also saw COMPLETED race: one capture."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="race", credits=1000).user_id
    for _ in range(ROUNDS):
        job_id = running(sessions=sessions, user_id=user).id
        race(partial(lifecycle.apply_status, sessions, job_id, COMPLETED),
             partial(stops.settle_expired, sessions, job_id, COMPLETED))
        job, _h, captures = settled(sessions, job_id)
        assert (job.status, job.charge, captures) == (JobStatus.COMPLETED, 2, 1)
    with transaction(sessions) as s:
        assert s.get(Wallet, user).balance == 1000 - 2 * ROUNDS
    invariants()



@pytest.mark.parametrize("cancel_first", [False, True], ids=["cancel-after", "cancel-before"])
def test_a_run_answer_recorded_after_its_id_became_a_404_stray_is_billed(sessions, invariants,
                                                                         cancel_first: bool) -> None:
    """A held job's /run answer (id X) is recorded only after a callback named X while
    RunPod had already forgotten it: the claim recorded X as a stray (never adopted on a
    404). ``record_dispatch`` then makes X the job's billed RunPod job, as /run said it
    is — one billed row, none left a stray — whether the stray's cancel (RunPod: 404)
    settled it before or comes after (then it leaves the billed row alone); the GPU
    conservation check holds."""
    user = FundedWalletFactory.create(sessions=sessions, prefix="race", credits=1000).user_id
    job_id = JobFactory.create(sessions=sessions, user_id=user, status=JobStatus.HELD).id
    lifecycle.dispatch_order(sessions, job_id)
    rid = f"rp-{job_id}"
    assert runpod_jobs.claim(sessions, job_id, rid, checked=True, adoptable=False) == runpod_jobs.STRAY
    if cancel_first:
        runpod_jobs.settle_stray(sessions, rid, None)  # the stray's cancel: RunPod answers 404
    assert lifecycle.record_dispatch(sessions, job_id, rid) is True
    runpod_jobs.settle_stray(sessions, rid, None)
    with transaction(sessions) as s:
        job, row = s.get(Job, job_id), s.get(RunPodJob, rid)
        assert (job.status, job.runpod_job_id) == (JobStatus.DISPATCHED, rid)
        assert (row.role, row.state, row.settled_at) == ("billed", "open", None)
    invariants()
