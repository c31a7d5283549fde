"""The job lifecycle (docs/architecture.md "Job lifecycle"): hold → dispatch → track → capture or
release. Service functions, one DB transaction each; the Celery tasks are thin adapters.

State changes are compare-and-set on ``jobs.status`` under a row lock (``FOR UPDATE``
on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), and money moves in the same transaction
through one ledger call with the job's operation key, so a redelivered task or a
webhook racing the poller finds the job already moved on and changes nothing. Every
terminal state stores its notification (outbound webhook) in that same transaction.
User cancels and hold expiry live in ``services.stops``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.orm import Session, sessionmaker

from base import queues
from base.after_commit import publish_after_commit
from gateways import runpod_metrics
from ledger import operations as ops, transitions as t
from ledger.db import transaction
from ledger.errors import InsufficientFunds, UnknownHold
from ledger.jobs import capture_key, expire_key, hold_key, job_quote, lifetimes_of, release_key
from ledger.models import Job, JobStatus, StopReason, utcnow
from pricing import cancel_charge, card_by_version, charge, runpod_billed_usd, runpod_cost_usd
from services import notifications, runpod_jobs
from services.outbox import Outbox

log = logging.getLogger(__name__)

# RunPod terminal statuses (RunPod /status `status`); the hold-releasing ones map to a
# step in ``ledger.transitions.RELEASE_ON``.
TERMINAL = frozenset({"COMPLETED", *t.RELEASE_ON})


def locked_job(s: Session, job_id: str) -> Job | None:
    return s.get(Job, job_id, with_for_update=True, populate_existing=True)


def finish(s: Session, job: Job, step: t.Transition, error: str | None = None) -> None:
    """End ``job`` by ``step`` (to a terminal status; ``t.IllegalTransition`` unless the job
    is in its sources) and store its notification (same transaction)."""
    t.move(job, step)
    job.finished_at = job.updated_at = utcnow()
    if error:
        job.error = error[:2000]
    notifications.record(s, job)


def release(s: Session, job: Job, step: t.Transition, error: str | None, *,
            expired: bool = False) -> None:
    """Release the job's whole hold (if any) and end it by ``step``. ``expired`` records
    the hold's end as an expiry (operation key ``job:{id}:expire``)."""
    t.check(job, step)  # before any money moves
    if job.hold_id is not None:
        key = expire_key(job.id) if expired else release_key(job.id)
        settled = ops.release(s, hold_id=job.hold_id, op_key=key, expired=expired)
        job.charge, job.released = 0, settled.released
    finish(s, job, step, error)


def place_hold(factory: sessionmaker[Session], job_id: str) -> bool:
    """Hold the job's quoted maximum on its own (the ``jobs.place_hold`` task of
    messages published before issue 17; ``dispatch_order`` holds a requested job itself).
    True when the job is held (now or before); its ``jobs.dispatch`` is then published
    at commit. A wallet that cannot cover it ends the job ``rejected``."""
    with transaction(factory) as s:
        job = locked_job(s, job_id)
        if job is None:
            log.warning("place_hold: no job %s", job_id)
            return False
        if job.status not in t.HOLD.sources:
            if job.status == t.HOLD.target:  # a redelivery: dispatch (again) is harmless
                publish_after_commit(s, queues.DISPATCH, job.id)
            return job.status == t.HOLD.target
        if not hold(s, job):
            return False
        publish_after_commit(s, queues.DISPATCH, job.id)
        return True


def hold(s: Session, job: Job) -> bool:
    """In the caller's transaction: ``requested`` → ``held`` with a hold of the job's
    quoted maximum (one ledger call, operation key ``job:{id}:hold``). False when the
    job ends instead: ``cancelled`` (its cancel came first) or ``rejected`` (the wallet
    cannot cover it)."""
    if job.stop_requested_at is not None:  # cancelled before its hold
        finish(s, job, t.CANCEL_BEFORE_RUN, "cancelled by the user")
        return False
    ttl = lifetimes_of(job).hold_s
    try:
        placed = ops.place_hold(s, user_id=job.user_id, amount=job.hold_credits,
                                op_key=hold_key(job.id), job_id=job.id,
                                expires_at=utcnow() + timedelta(seconds=ttl))
    except InsufficientFunds as refused:
        finish(s, job, t.REJECT, f"insufficient funds: {refused}")
        return False
    t.move(job, t.HOLD)
    job.hold_id, job.held_at, job.updated_at = placed.hold_id, utcnow(), utcnow()
    return True


@dataclass(frozen=True, slots=True)
class DispatchOrder:
    """What the gateway needs to start a held job on RunPod."""

    job_id: str
    endpoint_id: str
    job_input: dict[str, Any]
    webhook_token: str
    execution_timeout_ms: int
    ttl_ms: int


class AttemptsExhausted(Exception):
    """The job had its bound of /run attempts, re-publishes by the sweeper included."""


def dispatch_order(factory: sessionmaker[Session], job_id: str,
                   max_attempts: int = 1_000) -> DispatchOrder | None:
    """The order to start a job on RunPod, or None if it is not (or no longer) to run.
    A ``requested`` job is held first (``hold``; rejected or cancelled instead → None),
    in the same transaction: one task and one commit from request to /run (issue 17).
    Records the dispatch intent (``dispatching_at`` and the attempt, committed before
    /run). Raises ``AttemptsExhausted`` once ``max_attempts`` /run calls were made for
    the job in all (task retries and sweeper re-publishes alike)."""
    with transaction(factory) as s:
        job = locked_job(s, job_id)
        if job is not None and job.status in t.HOLD.sources and not hold(s, job):
            return None
        if job is None or job.status not in t.DISPATCH.sources or job.stop_requested_at is not None:
            return None  # a cancel is pending: ``services.stops`` releases it
        if job.dispatch_attempts >= max_attempts:
            raise AttemptsExhausted(f"{job.dispatch_attempts} /run attempts")
        job.dispatch_attempts += 1
        job.dispatching_at = job.updated_at = utcnow()  # the sweeper waits a full period again
        # The GPU worker gets the app's input plus the job's type and priced parameters.
        job_input = {**job.input, "job_type": job.type, **job.params}
        life = lifetimes_of(job)
        return DispatchOrder(job.id, job.endpoint_id, job_input, job.webhook_token,
                             life.execution_timeout_ms, life.ttl_ms)


def record_dispatch(factory: sessionmaker[Session], job_id: str, runpod_job_id: str) -> bool:
    """held → dispatched with RunPod's id (recorded in ``runpod_jobs`` as billed). True
    also when a callback already adopted that id; False if the job left ``held``
    otherwise — the id is then recorded as a stray, its cancel published at commit
    (``runpod_jobs.record_stray``)."""
    with transaction(factory) as s:
        job = locked_job(s, job_id)
        if job is None:
            return False
        if job.runpod_job_id == runpod_job_id:
            return True
        if job.status in t.DISPATCH.sources and job.stop_requested_at is None:
            runpod_jobs.record_billed(s, job, runpod_job_id)
            return True
        runpod_jobs.record_stray(s, job, runpod_job_id)
        return False


def fail_before_run(factory: sessionmaker[Session], job_id: str, reason: str) -> None:
    """A job RunPod never ran (dispatch refused or retries exhausted): release, ``failed``."""
    with transaction(factory) as s:
        job = locked_job(s, job_id)
        if job is not None and job.status in t.FAIL_BEFORE_RUN.sources:
            release(s, job, t.FAIL_BEFORE_RUN, reason)


def apply_status(factory: sessionmaker[Session], job_id: str,
                 status: dict[str, Any] | None) -> str | None:
    """Apply a RunPod ``/status`` body (None = 404, RunPod forgot the job) to a running
    job; returns the job's status after, or None if it was not running.

    COMPLETED captures ``charge(quote, executionTime)`` and releases the rest;
    FAILED / TIMED_OUT release the whole hold; CANCELLED settles by why it stopped
    (``services.stops``: the cancel policy, or expiry); 404 releases it all, ``lost`` and
    flagged for operators. ``executionTime`` and ``delayTime`` (RunPod, milliseconds)
    are recorded at the first terminal status.
    """
    with transaction(factory) as s:
        job = locked_job(s, job_id)
        if job is None or job.status not in JobStatus.RUNNING:
            return None
        job.last_checked_at = job.updated_at = utcnow()
        if status is None:
            lose(s, job)
            return job.status
        state = str(status.get("status", ""))
        job.runpod_status = state[:16]
        if isinstance(status.get("delayTime"), int):
            job.delay_ms = status["delayTime"]
        if state == "IN_PROGRESS":
            if job.status in t.START.sources:
                t.move(job, t.START)
            job.in_progress_at = job.in_progress_at or utcnow()
        elif state in TERMINAL:
            settle_terminal(s, job, state, status)
        return job.status


def lose(s: Session, job: Job) -> None:
    """RunPod forgot the job (404: results are kept 30 min, and nothing past its ttl):
    nothing to bill on, so release it all; ``flagged`` puts it on the operators' list
    (we may still owe RunPod for GPU time we cannot see)."""
    job.flagged = True
    log.warning("job %s (RunPod %s) lost: RunPod answers 404; released, flagged for operators",
                job.id, job.runpod_job_id)
    release(s, job, t.LOSE, "RunPod no longer knows this job (404)")


def record_timings(job: Job, status: dict[str, Any] | None) -> int:
    """Keep RunPod ``executionTime``/``delayTime`` (ms) and our cost; returns execution ms."""
    status = status or {}
    if isinstance(status.get("delayTime"), int):
        job.delay_ms = status["delayTime"]
    execution_ms = status.get("executionTime")
    if not isinstance(execution_ms, int) or execution_ms < 0:
        return 0
    job.execution_ms = execution_ms
    # We pay RunPod for the GPU time whatever the outcome; the margin shows it: what
    # the user paid for (executionTime) and what RunPod bills (cold start included).
    quote = job_quote(job)
    job.runpod_cost_usd = runpod_cost_usd(quote, execution_ms)
    job.runpod_billed_usd = runpod_billed_usd(
        quote, execution_ms, job.delay_ms or 0, card_by_version(job.ratecard_version).cold_start_ms)
    runpod_metrics.record_cost(job.gpu, job.runpod_cost_usd, job.runpod_billed_usd)
    return execution_ms


def settle_terminal(s: Session, job: Job, state: str, status: dict[str, Any]) -> None:
    """Settle a running ``job`` (row-locked) from RunPod's terminal ``state`` (one of
    ``TERMINAL``) and its ``/status`` body, in the caller's transaction."""
    if not isinstance(status.get("executionTime"), int):
        # RunPod always reports it on a terminal status; without it bill the minimum.
        log.warning("job %s: %s without executionTime", job.id, state)
    execution_ms = record_timings(job, status)
    job.execution_ms = execution_ms
    quote = job_quote(job)
    if state == "COMPLETED":
        if job.hold_id is None:  # a job runs only once held; a row without one is broken
            raise UnknownHold(f"job {job.id} ran without a hold")
        settled = ops.capture(s, hold_id=job.hold_id, amount=charge(quote, execution_ms),
                              op_key=capture_key(job.id), ref=job.id)
        job.charge, job.released, job.output = settled.captured, settled.released, status.get("output")
        finish(s, job, t.COMPLETE)
    elif state == "CANCELLED" and job.stop_reason == StopReason.EXPIRE:
        release(s, job, t.EXPIRE, "hold expired", expired=True)
    elif state == "CANCELLED" and job.stop_reason == StopReason.CANCEL:
        settle_cancelled(s, job, execution_ms)
    else:
        release(s, job, t.RELEASE_ON[state], str(status.get("error") or state))


def settle_cancelled(s: Session, job: Job, execution_ms: int) -> None:
    """A user-cancelled job that RunPod stopped after ``execution_ms`` of GPU time: the
    frozen cancel policy decides — capture that time's price, or release everything."""
    amount = cancel_charge(job_quote(job), execution_ms)
    if amount and job.hold_id is not None:
        settled = ops.capture(s, hold_id=job.hold_id, amount=amount,
                              op_key=capture_key(job.id), ref=job.id)
        job.charge, job.released = settled.captured, settled.released
        finish(s, job, t.CANCEL, "cancelled by the user")
    else:
        release(s, job, t.CANCEL, "cancelled by the user")


def _stuck(*statuses: str) -> Callable[[datetime], ColumnElement[bool]]:
    """Jobs in one of ``statuses``, no cancel pending (``stops.OUTBOX``), unchanged since a cutoff."""
    return lambda cutoff: and_(Job.status.in_(statuses), Job.updated_at < cutoff,
                               or_(Job.stop_reason.is_(None), Job.stop_reason != StopReason.CANCEL))


# Outbox entry (``services.outbox``): a job requested or held but not moved on — both go
# to ``jobs.dispatch``, which holds a requested job first (one scan for both).
OUTBOX = (Outbox(queues.DISPATCH, Job, _stuck(JobStatus.REQUESTED, JobStatus.HELD), (Job.id,),
                 Job.republishes, Job.republish_at),)
