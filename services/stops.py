"""Stopping a job before it ends by itself: the user's cancel and hold expiry.

Both go in three steps. (1) One transaction: a job RunPod has not started is released
at once (``cancelled`` / ``expired``); a running one is marked (``stop_requested_at``,
``stop_reason``). (2) The task asks RunPod ``/cancel`` — outside any transaction. (3) It
re-fetches ``/status`` and settles: a cancel by the job's frozen cancel policy
(``lifecycle.apply_status`` → ``settle_cancelled``). An expiry asks ``/status`` first:
a job RunPod already ended (COMPLETED just before our clock ran out, FAILED, ...) is
settled from that status exactly as its webhook would settle it — charged its measured
``executionTime``, output kept; only a job still running is cancelled, and then
settled from what ``/status`` reports after the cancel (COMPLETED if RunPod finished
first, else CANCELLED → released as expired); a job RunPod has forgotten (404) ends
``lost`` and flagged, as it would from the poller. A webhook or the poller seeing
RunPod's CANCELLED settles the same way, by ``stop_reason``; whichever commits first
wins and the other is a no-op (job row lock and status compare-and-set, hold
compare-and-set).
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, sessionmaker

from base import queues
from ledger import transitions as t
from ledger.db import transaction
from ledger.jobs import STOP_CANCEL, db_utcnow
from ledger.models import Hold, HoldStatus, Job, JobStatus, StopReason, utcnow
from services.lifecycle import TERMINAL, locked_job, lose, record_timings, release, settle_terminal
from services.outbox import Outbox


def begin_cancel(factory: sessionmaker[Session], job_id: str) -> tuple[str, str] | None:
    """Cancel step 1. A job not yet on RunPod is released and ``cancelled`` now; for a
    running job returns (endpoint_id, runpod_job_id) to stop. None when nothing is left
    to do (ended already, or not asked to cancel)."""
    with transaction(factory) as s:
        job = locked_job(s, job_id)
        if job is None or job.status in JobStatus.TERMINAL or job.stop_reason != StopReason.CANCEL:
            return None
        if job.status in t.CANCEL_BEFORE_RUN.sources:
            release(s, job, t.CANCEL_BEFORE_RUN, "cancelled by the user")
            return None
        return job.endpoint_id, str(job.runpod_job_id)


def begin_expire(factory: sessionmaker[Session], job_id: str) -> tuple[str, str] | None:
    """Expiry step 1, only for a job whose hold is open past ``expires_at`` by DB time.
    Not yet on RunPod → released as expired now; running → marked, and returns
    (endpoint_id, runpod_job_id) to stop first (no GPU time runs unfunded)."""
    with transaction(factory) as s:
        job = locked_job(s, job_id)
        if job is None or job.status in JobStatus.TERMINAL or job.hold_id is None:
            return None
        due = s.scalar(select(Hold.id).where(Hold.id == job.hold_id, Hold.status == HoldStatus.OPEN,
                                             Hold.expires_at <= db_utcnow()))
        if due is None:
            return None
        if job.status in t.EXPIRE_BEFORE_RUN.sources:
            release(s, job, t.EXPIRE_BEFORE_RUN, "hold expired before dispatch", expired=True)
            return None
        job.stop_requested_at, job.stop_reason, job.updated_at = utcnow(), StopReason.EXPIRE, utcnow()
        return job.endpoint_id, str(job.runpod_job_id)


def settle_expired(factory: sessionmaker[Session], job_id: str,
                   status: dict[str, Any] | None, *, forgotten: bool = False) -> str | None:
    """Expiry step 3, from RunPod's ``/status`` body (None: no answer, or RunPod's 404
    when ``forgotten``).

    A terminal RunPod status settles as ``lifecycle.settle_terminal`` does for any job
    (COMPLETED captures ``charge(quote, executionTime)`` and keeps the output). A job
    RunPod has forgotten (404: its results are kept 30 min after it ends, nothing past
    its ttl — RunPod serverless docs, "Send API requests") may have run GPU time we
    cannot see: it ends ``lost``, released and flagged (``lifecycle.lose``), as the
    poller's 404 ends it. RunPod's CANCELLED — our stop — and no answer release the
    whole hold as expired (operation key ``job:{id}:expire``). A job that ended
    meanwhile (e.g. a capture committed first) is left as it is. Returns the job's
    status after."""
    with transaction(factory) as s:
        job = locked_job(s, job_id)
        if job is None:
            return None
        if job.status in JobStatus.TERMINAL:
            return job.status
        state = str((status or {}).get("status", ""))
        if forgotten and job.status in JobStatus.RUNNING:
            lose(s, job)
        elif state in TERMINAL and job.status in JobStatus.RUNNING:
            job.runpod_status = state[:16]
            job.stop_reason = job.stop_reason or StopReason.EXPIRE
            settle_terminal(s, job, state, status or {})
        else:
            record_timings(job, status)
            release(s, job, t.EXPIRE, "hold expired", expired=True)
        return job.status


# Outbox entry (``services.outbox``): a user's cancel not acted on yet.
OUTBOX = (
    Outbox(queues.CANCEL, Job, lambda cutoff: and_(
        Job.stop_reason == STOP_CANCEL, Job.status.in_((*JobStatus.NOT_STARTED, *JobStatus.RUNNING)),
        Job.updated_at < cutoff),
        (Job.id,), Job.republishes, Job.republish_at),
)
