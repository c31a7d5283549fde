"""``base.after_commit`` on a real database of the test's own: a message queued with
``publish_after_commit`` goes out only after the outermost commit — its row is visible
to another connection by then — and never on rollback; a savepoint neither publishes
nor drops what the outer transaction queued; a failing publish does not fail the
commit. Also the services that publish follow-up work in their own transaction (a
hold's dispatch, a stray's cancel) and the outbox registry's job routing.

The publish callable is a fake that records what it is given (the broker is not our
database); the database is real."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from base import after_commit, queues
from base.after_commit import publish_after_commit
from ledger import operations as ops
from ledger.db import make_engine, make_sessionmaker, transaction
from ledger.models import Job, JobStatus, StripeEvent, utcnow
from pricing.ratecard import load_ratecards
from services import lifecycle, runpod_jobs
from services.sweeps import REGISTRY, pending_outbox

pytestmark = pytest.mark.integration


class Recorder:
    """A publish function: records ``(task, args, countdown)`` and whether the event
    ``watch`` names was committed (read on a connection of its own) when it ran."""

    def __init__(self, factory: sessionmaker[Session], fail_on: str | None = None) -> None:
        self.factory, self.fail_on = factory, fail_on
        self.sent: list[tuple[str, tuple[str, ...], float | None]] = []
        self.committed: list[bool] = []

    def __call__(self, task_name: str, *args: str, countdown: float | None = None) -> bool:
        if task_name == self.fail_on:
            raise ConnectionError("broker down")
        with transaction(self.factory) as s:
            self.committed.append(s.get(StripeEvent, args[0]) is not None)
        self.sent.append((task_name, args, countdown))
        return True


@pytest.fixture
def engine(new_database) -> Iterator[Any]:
    engine = make_engine(new_database())
    yield engine
    engine.dispose()


@pytest.fixture
def recorder(engine) -> Recorder:
    return Recorder(make_sessionmaker(engine))


@pytest.fixture
def sessions(engine, recorder: Recorder) -> sessionmaker[Session]:
    factory = make_sessionmaker(engine)
    after_commit.install(factory, recorder)
    return factory


def _event(s: Session) -> str:
    event_id = f"evt_ac_{secrets.token_hex(6)}"
    s.add(StripeEvent(id=event_id, type="ping", livemode=False, payload="{}", received_at=utcnow()))
    return event_id


def test_published_after_the_commit_with_its_countdown(sessions, recorder: Recorder) -> None:
    with transaction(sessions) as s:
        event_id = _event(s)
        publish_after_commit(s, queues.PROCESS_STRIPE_EVENT, event_id, countdown=2.5)
        s.flush()
        assert recorder.sent == []  # not inside the transaction
    assert recorder.sent == [(queues.PROCESS_STRIPE_EVENT, (event_id,), 2.5)]
    assert recorder.committed == [True]  # the row was committed before the publish ran


def test_nothing_is_published_on_rollback(sessions, recorder: Recorder) -> None:
    with pytest.raises(RuntimeError), transaction(sessions) as s:
        event_id = _event(s)
        publish_after_commit(s, queues.PROCESS_STRIPE_EVENT, event_id)
        raise RuntimeError("the view failed")
    with transaction(sessions) as s:  # a later commit on a fresh session publishes nothing stale
        assert s.get(StripeEvent, event_id) is None
    assert recorder.sent == []


def test_a_savepoint_neither_publishes_nor_drops_the_outer_messages(sessions, recorder: Recorder) -> None:
    with transaction(sessions) as s:
        outer = _event(s)
        publish_after_commit(s, queues.PROCESS_STRIPE_EVENT, outer)
        with s.begin_nested():  # released: its message waits for the real commit
            kept = _event(s)
            publish_after_commit(s, queues.PROCESS_STRIPE_EVENT, kept)
        assert recorder.sent == []
        with pytest.raises(RuntimeError), s.begin_nested():  # rolled back: only its message goes
            dropped = _event(s)
            publish_after_commit(s, queues.PROCESS_STRIPE_EVENT, dropped)
            raise RuntimeError("handler failed")
    assert [args for _, args, _ in recorder.sent] == [(outer,), (kept,)]
    assert recorder.committed == [True, True]


def test_a_failing_publish_does_not_fail_the_commit(engine, sessions, recorder: Recorder, caplog) -> None:
    failing = make_sessionmaker(engine)
    after_commit.install(failing, Recorder(make_sessionmaker(engine), fail_on=queues.PLACE_HOLD))
    with transaction(failing) as s:
        event_id = _event(s)
        publish_after_commit(s, queues.PLACE_HOLD, event_id)
    with transaction(sessions) as s:
        assert s.get(StripeEvent, event_id) is not None  # committed: the sweeper has the row
    assert "publishing jobs.place_hold" in caplog.text


def _job(s: Session, status: str, **extra: Any) -> str:
    job_id, old = f"job_{secrets.token_hex(6)}", utcnow() - timedelta(seconds=60)
    columns = {"user_id": "u-ac", "ratecard_version": load_ratecards()[0].version, "hold_credits": 1,
               "max_gpu_seconds": 60, **extra}
    s.add(Job(id=job_id, type="framing", status=status, params={}, input={}, endpoint_id="ep-framing",
              gpu="T4", estimated_gpu_seconds=1, credits_per_gpu_second=1,
              min_charge=1, gpu_usd_per_second=0, webhook_token=secrets.token_hex(8), created_at=old,
              updated_at=old, **columns))
    s.flush()
    return job_id


def test_a_stray_recorded_by_a_callback_has_its_cancel_published_at_that_commit(
        sessions, recorder: Recorder) -> None:
    with transaction(sessions) as s:
        job_id = _job(s, JobStatus.DISPATCHED, runpod_job_id="rp-billed")
    assert runpod_jobs.claim(sessions, job_id, "rp-other", checked=True) == runpod_jobs.STRAY
    assert [(t, a) for t, a, _ in recorder.sent] == [(queues.CANCEL_STRAY, (job_id, "ep-framing", "rp-other"))]
    assert runpod_jobs.claim(sessions, job_id, "rp-other", checked=True) == runpod_jobs.KNOWN
    assert len(recorder.sent) == 1  # known already: recorded (and its cancel published) once


def test_place_hold_publishes_the_dispatch_of_a_held_job_only(sessions, recorder: Recorder) -> None:
    """Held now (funded) or before (a redelivery): ``jobs.dispatch`` at commit; a job
    the wallet cannot cover is rejected and has no dispatch."""
    user = f"u-ac-{secrets.token_hex(4)}"
    with transaction(sessions) as s:
        ops.credit_topup(s, user_id=user, amount=10, op_key=f"test:topup:{user}")
        funded = _job(s, JobStatus.REQUESTED, user_id=user, hold_credits=10)
        poor = _job(s, JobStatus.REQUESTED, user_id=f"{user}-poor", hold_credits=10)
        held = _job(s, JobStatus.HELD)
    assert [lifecycle.place_hold(sessions, j) for j in (funded, poor, held)] == [True, False, True]
    assert [a for t, a, _ in recorder.sent if t == queues.DISPATCH] == [(funded,), (held,)]


def test_the_outbox_registry_routes_each_stuck_job_to_its_task(sessions) -> None:
    """Requested or held → dispatch (which holds a requested job first), a pending cancel (requested, held or running)
    → cancel; a running job without a cancel, or an ended one, is nobody's."""
    with transaction(sessions) as s:
        cancel = {"stop_reason": "cancel", "stop_requested_at": utcnow()}
        expect = {(queues.DISPATCH, _job(s, JobStatus.REQUESTED)),
                  (queues.DISPATCH, _job(s, JobStatus.HELD)),
                  *((queues.CANCEL, _job(s, status, **cancel)) for status in
                    (JobStatus.REQUESTED, JobStatus.HELD, JobStatus.DISPATCHED, JobStatus.IN_PROGRESS))}
        _job(s, JobStatus.DISPATCHED)
        _job(s, JobStatus.COMPLETED, **cancel)
    assert set(pending_outbox(sessions, older_than_s=5)) == expect
    assert pending_outbox(sessions, older_than_s=5) == []  # backed off, every entry
    assert {entry.task for entry in REGISTRY} >= {queues.DISPATCH, queues.CANCEL,
                                                  queues.CANCEL_STRAY, queues.PROCESS_STRIPE_EVENT,
                                                  queues.SEND_NOTIFICATION}
