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

from sqlalchemy import ColumnElement, and_, or_, update
from sqlalchemy.orm import Session, sessionmaker

from base import queues
from base.after_commit import publish_after_commit
from gateways import runpod_metrics
from ledger import operations as ops
from ledger.db import rows_matched, transaction
from ledger.errors import InsufficientFunds, UnknownHold
from ledger.jobs import STOP_CANCEL, STOP_EXPIRE, job_quote
from ledger.models import Job, JobStatus, utcnow
from pricing import cancel_charge, card_by_version, charge, runpod_billed_usd, runpod_cost_usd
from pricing.ratecard import Lifetimes
from services import notifications, runpod_jobs
from services.outbox import Outbox

log = logging.getLogger(__name__)

# RunPod terminal statuses (RunPod /status `status`) → our job status on release.
RELEASE_ON = {"FAILED": JobStatus.FAILED, "TIMED_OUT": JobStatus.TIMED_OUT,
              "CANCELLED": JobStatus.CANCELLED}
TERMINAL = frozenset({"COMPLETED", *RELEASE_ON})


def hold_key(job_id: str) -> str:
    return f"job:{job_id}:hold"


def capture_key(job_id: str) -> str:
    return f"job:{job_id}:capture"


def release_key(job_id: str) -> str:
    return f"job:{job_id}:release"


def expire_key(job_id: str) -> str:
    return f"job:{job_id}:expire"


def locked_job(s: Session, job_id: str) -> Job | None:
    return s.get(Job, job_id, with_for_update=True, populate_existing=True)


def finish(s: Session, job: Job, status: str, error: str | None = None) -> None:
    """Move ``job`` to terminal ``status`` and store its notification (same transaction)."""
    job.status, job.finished_at, job.updated_at = status, utcnow(), utcnow()
    if error:
        job.error = error[:2000]
    notifications.record(s, job)


def release(s: Session, job: Job, status: str, error: str | None, *,
            expired: bool = False) -> None:
    """Release the job's whole hold (if any) and end it ``status``. ``expired`` records
    the hold's end as an expiry (operation key ``job:{id}:expire``)."""
    if job.hold_id is not None:
        key = expire_key(job.id) if expired else release_key(job.id)
        settled = ops.release(s, hold_id=job.hold_id, op_key=key, expired=expired)
        job.charge, job.released = 0, settled.released
    finish(s, job, status, error)


def lifetimes_of(job: Job) -> Lifetimes:
    """Hold life and RunPod policy of ``job``, from its frozen quote and rate card."""
    return card_by_version(job.ratecard_version).lifetimes(job.max_gpu_seconds)


def place_hold(factory: sessionmaker[Session], job_id: str) -> bool:
    """Hold the job's quoted maximum. True when the job is held (now or before); its
    ``jobs.dispatch`` is then published at commit. A wallet that cannot cover it ends
    the job ``rejected``."""
    with transaction(factory) as s:
        job = locked_job(s, job_id)
        if job is None:
            log.warning("place_hold: no job %s", job_id)
            return False
        if job.status != JobStatus.REQUESTED:
            if job.status == JobStatus.HELD:  # a redelivery: dispatch (again) is harmless
                publish_after_commit(s, queues.DISPATCH, job.id)
            return job.status == JobStatus.HELD
        if job.stop_requested_at is not None:  # cancelled before its hold
            finish(s, job, JobStatus.CANCELLED, "cancelled by the user")
            return False
        ttl = lifetimes_of(job).hold_s
        try:
            hold = ops.place_hold(s, user_id=job.user_id, amount=job.hold_credits,
                                  op_key=hold_key(job.id), job_id=job.id,
                                  expires_at=utcnow() + timedelta(seconds=ttl))
        except InsufficientFunds as refused:
            finish(s, job, JobStatus.REJECTED, f"insufficient funds: {refused}")
            return False
        job.status, job.hold_id, job.held_at, job.updated_at = (
            JobStatus.HELD, hold.hold_id, utcnow(), utcnow())
        publish_after_commit(s, queues.DISPATCH, job.id)
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
    """The order for a ``held`` job, or None if not held. Records the dispatch intent
    first (``dispatching_at`` and the attempt, committed before /run). Raises
    ``AttemptsExhausted`` once ``max_attempts`` /run calls were made for the job in
    all (task retries and sweeper re-publishes alike)."""
    with transaction(factory) as s:
        job = locked_job(s, job_id)
        if job is None or job.status != JobStatus.HELD or job.stop_requested_at is not None:
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
        if job.status == JobStatus.HELD and job.stop_requested_at is None:
            runpod_jobs.record_billed(s, job, runpod_job_id)
            return True
        runpod_jobs.record_stray(s, job, runpod_job_id)
        return False


def fail_before_run(factory: sessionmaker[Session], job_id: str, reason: str) -> None:
    """A job RunPod never ran (dispatch refused or retries exhausted): release, ``failed``."""
    with transaction(factory) as s:
        job = locked_job(s, job_id)
        if job is not None and job.status in (JobStatus.REQUESTED, JobStatus.HELD):
            release(s, job, JobStatus.FAILED, reason)


def endpoint_of(factory: sessionmaker[Session], job_id: str) -> str:
    """The RunPod endpoint id of ``job_id`` (which exists; else ``LookupError``)."""
    with transaction(factory) as s:
        job = s.get(Job, job_id)
        if job is None:
            raise LookupError(f"no job {job_id}")
        return job.endpoint_id


def lead_refresh(factory: sessionmaker[Session], job_id: str, window_s: float) -> bool:
    """Coalesce /status refreshes (issue 11): True if this caller schedules the job's
    refresh ``window_s`` from now (none is due yet); False if one is already due within
    the window — it will read RunPod's status after this callback, so skip."""
    now = utcnow()
    with transaction(factory) as s:
        led = s.execute(update(Job).where(
            Job.id == job_id, or_(Job.refresh_due_at.is_(None), Job.refresh_due_at <= now))
            .values(refresh_due_at=now + timedelta(seconds=window_s)))
        return bool(rows_matched(led))


class NotDispatchedYet(Exception):
    """RunPod called back before the dispatch recorded its job id (a very fast job)."""


def tracked(factory: sessionmaker[Session], job_id: str) -> tuple[str, str] | None:
    """(endpoint_id, runpod_job_id) of a job RunPod is running, else None.

    Raises ``NotDispatchedYet`` for a job still ``held``: its callback may have beaten
    ``record_dispatch`` to the database, so the caller retries shortly.
    """
    with transaction(factory) as s:
        job = s.get(Job, job_id)
        if job is not None and job.status == JobStatus.HELD:
            raise NotDispatchedYet(job_id)
        if job is None or job.status not in JobStatus.RUNNING or not job.runpod_job_id:
            return None
        return job.endpoint_id, job.runpod_job_id


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
            job.status = JobStatus.IN_PROGRESS
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
    release(s, job, JobStatus.LOST, "RunPod no longer knows this job (404)")


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
        finish(s, job, JobStatus.COMPLETED)
    elif state == "CANCELLED" and job.stop_reason == STOP_EXPIRE:
        release(s, job, JobStatus.EXPIRED, "hold expired", expired=True)
    elif state == "CANCELLED" and job.stop_reason == STOP_CANCEL:
        settle_cancelled(s, job, execution_ms)
    else:
        release(s, job, RELEASE_ON[state], str(status.get("error") or state))


def settle_cancelled(s: Session, job: Job, execution_ms: int) -> None:
    """A user-cancelled job that RunPod stopped after ``execution_ms`` of GPU time: the
    frozen cancel policy decides — capture that time's price, or release everything."""
    amount = cancel_charge(job_quote(job), execution_ms)
    if amount and job.hold_id is not None:
        settled = ops.capture(s, hold_id=job.hold_id, amount=amount,
                              op_key=capture_key(job.id), ref=job.id)
        job.charge, job.released = settled.captured, settled.released
        finish(s, job, JobStatus.CANCELLED, "cancelled by the user")
    else:
        release(s, job, JobStatus.CANCELLED, "cancelled by the user")


def _stuck(status: str) -> Callable[[datetime], ColumnElement[bool]]:
    """Jobs in ``status``, no cancel pending (``stops.OUTBOX``), unchanged since a cutoff."""
    return lambda cutoff: and_(Job.status == status, Job.updated_at < cutoff,
                               or_(Job.stop_reason.is_(None), Job.stop_reason != STOP_CANCEL))


# Outbox entries (``services.outbox``): a job requested or held but not moved on.
OUTBOX = (Outbox(queues.PLACE_HOLD, Job, _stuck(JobStatus.REQUESTED), (Job.id,), Job.republishes, Job.republish_at),
          Outbox(queues.DISPATCH, Job, _stuck(JobStatus.HELD), (Job.id,), Job.republishes, Job.republish_at))
