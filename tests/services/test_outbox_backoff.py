"""The outbox sweeper re-publishes a stuck row with backoff, not on every sweep: a
backlog older than the sweep delay must not be re-queued whole each time (the queue
would grow faster than workers drain it).

On a database of its own: the session stack's beat sweeps the shared one every few
seconds and could hand the row out before the test does."""
from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import update

from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.models import Job, JobStatus, RunPodJob, StripeEvent, utcnow
from services.sweeps import pending_outbox, republish_after_s

pytestmark = pytest.mark.integration


@pytest.fixture
def sessions(new_database):
    engine = make_engine(new_database())
    yield make_sessionmaker(engine)
    engine.dispose()


def test_a_stuck_event_is_republished_with_backoff(sessions) -> None:
    event_id = f"evt_backoff_{secrets.token_hex(6)}"
    with transaction(sessions) as s:
        s.add(StripeEvent(id=event_id, type="ping", livemode=False, payload="{}",
                          received_at=utcnow() - timedelta(seconds=60)))

    def swept() -> bool:
        return ("stripe.process_event", event_id) in pending_outbox(sessions, older_than_s=5)

    assert swept()          # stuck for 60 s: handed out once
    assert not swept()      # the very next sweep leaves it alone
    with transaction(sessions) as s:
        row = s.get(StripeEvent, event_id)
        assert row.republishes == 1
        assert row.republish_at - utcnow() > timedelta(seconds=republish_after_s(1, 5) - 2)
        s.execute(update(StripeEvent).where(StripeEvent.id == event_id)
                  .values(republish_at=utcnow() - timedelta(seconds=1)))
    assert swept()          # due again after its backoff, which doubles
    with transaction(sessions) as s:
        assert s.get(StripeEvent, event_id).republishes == 2
    assert republish_after_s(2, 5) == 2 * republish_after_s(1, 5)
    assert republish_after_s(40, 5) == 600


def test_an_open_strays_cancel_is_republished_with_backoff(sessions) -> None:
    """``jobs.cancel_stray`` lost with its worker (a SIGKILL) is handed out again: the
    stray would otherwise run on RunPod unbilled for the broker's visibility timeout.
    A settled stray and the billed RunPod job are never handed out."""
    job_id, stray, billed, done = (f"job_{secrets.token_hex(6)}", f"rp-stray-{secrets.token_hex(4)}",
                                   f"rp-billed-{secrets.token_hex(4)}", f"rp-done-{secrets.token_hex(4)}")
    old = utcnow() - timedelta(seconds=60)
    with transaction(sessions) as s:
        s.add(Job(id=job_id, user_id="u-stray", type="framing", status=JobStatus.DISPATCHED, params={},
                  input={}, ratecard_version="test", endpoint_id="ep-framing", gpu="T4",
                  estimated_gpu_seconds=1, hold_credits=1, max_gpu_seconds=1, credits_per_gpu_second=1,
                  min_charge=1, gpu_usd_per_second=0, webhook_token=secrets.token_hex(8),
                  created_at=old, updated_at=old))
        s.flush()
        for rid, role, state in ((stray, "stray", "open"), (billed, "billed", "open"), (done, "stray", "settled")):
            s.add(RunPodJob(id=rid, job_id=job_id, endpoint_id="ep-framing", role=role, state=state,
                            recorded_at=old))

    def swept() -> list[tuple[str, ...]]:
        return [w for w in pending_outbox(sessions, older_than_s=5) if w[0] == "jobs.cancel_stray"]

    assert swept() == [("jobs.cancel_stray", job_id, "ep-framing", stray)]
    assert swept() == []     # backoff: not on the very next sweep
    with transaction(sessions) as s:
        assert s.get(RunPodJob, stray).republishes == 1
