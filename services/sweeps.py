"""Periodic scans (run by beat): the outbox safety net, the poller for silent jobs and
the hold-expiry sweep.

Each only *finds* rows and hands their ids to the normal, idempotent tasks; running a
scan twice, or alongside a delivery of the same task, changes nothing extra.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from base import queues
from ledger.db import transaction
from ledger.jobs import db_utcnow
from ledger.models import (
    EventStatus,
    Hold,
    HoldStatus,
    Job,
    JobStatus,
    Notification,
    NotificationStatus,
    RunPodJob,
    StripeEvent,
    utcnow,
)

BATCH = 500


def republish_after_s(republishes: int, older_than_s: float, max_s: float = 600.0) -> float:
    """Seconds before a row re-published ``republishes`` times is re-published again:
    ``older_than_s × 2**republishes``, at most ``max_s``. Without this backoff a backlog
    older than ``older_than_s`` would be re-published whole on every sweep and grow."""
    return min(max_s, older_than_s * 2.0 ** min(republishes, 30))


def pending_outbox(factory: sessionmaker[Session], older_than_s: float) -> list[tuple[str, ...]]:
    """(task name, *args) for rows committed but not moved on within ``older_than_s``:
    requested jobs (hold), held jobs (dispatch), cancel requests not yet acted on,
    received Stripe events (process), open strays (``jobs.cancel_stray`` with job id,
    endpoint id, RunPod job id), notifications still to send.

    A job, event or stray handed out here is not handed out again before its backoff
    (``republish_after_s``) has passed, counted per row."""
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than_s)
    with transaction(factory) as s:
        jobs = s.execute(select(Job.id, Job.status, Job.stop_reason, Job.republishes).where(
            or_(Job.status.in_((JobStatus.REQUESTED, JobStatus.HELD)),
                and_(Job.status.in_(JobStatus.RUNNING), Job.stop_reason == "cancel")),
            Job.updated_at < cutoff,
            or_(Job.republish_at.is_(None), Job.republish_at <= now)).limit(BATCH)).all()
        events = s.execute(select(StripeEvent.id, StripeEvent.republishes).where(
            StripeEvent.status == EventStatus.RECEIVED, StripeEvent.received_at < cutoff,
            or_(StripeEvent.republish_at.is_(None), StripeEvent.republish_at <= now))
            .limit(BATCH)).all()
        # Open strays: a cancel lost with its worker (SIGKILL) is otherwise gone for the
        # broker's visibility timeout while the stray runs on RunPod unbilled.
        strays = s.execute(select(RunPodJob.id, RunPodJob.republishes, RunPodJob.job_id, RunPodJob.endpoint_id)
                           .where(RunPodJob.role == "stray", RunPodJob.state == "open",
                                  RunPodJob.recorded_at < cutoff,
                                  or_(RunPodJob.republish_at.is_(None), RunPodJob.republish_at <= now))
                           .limit(BATCH)).all()
        notes = s.execute(select(Notification.id, Notification.attempts).where(
            Notification.status == NotificationStatus.PENDING,
            Notification.next_attempt_at < cutoff).limit(BATCH)).all()
        for note_id, attempts in notes:  # due again only after a backoff (few rows: sent or retrying)
            s.execute(update(Notification).where(Notification.id == note_id).values(
                next_attempt_at=now + timedelta(seconds=republish_after_s(attempts + 1, older_than_s))))
        # One UPDATE per backoff step (a handful), not one per row.
        for model, rows in ((Job, [(r[0], r[3]) for r in jobs]), (StripeEvent, events),
                            (RunPodJob, [(r[0], r[1]) for r in strays])):
            steps: dict[int, list[str]] = {}
            for row_id, count in rows:
                steps.setdefault(count, []).append(row_id)
            for count, ids in steps.items():
                s.execute(update(model).where(model.id.in_(ids), model.republishes == count).values(
                    republishes=count + 1,
                    republish_at=now + timedelta(seconds=republish_after_s(count + 1, older_than_s))))
    work: list[tuple[str, ...]] = []
    for jid, status, stop_reason, _ in jobs:
        if stop_reason == "cancel":
            work.append((queues.CANCEL, jid))
        else:
            work.append((queues.PLACE_HOLD if status == JobStatus.REQUESTED else queues.DISPATCH, jid))
    work += [(queues.PROCESS_STRIPE_EVENT, eid) for eid, _ in events]
    work += [(queues.CANCEL_STRAY, job_id, endpoint_id, rid) for rid, _, job_id, endpoint_id in strays]
    return work + [(queues.SEND_NOTIFICATION, nid) for nid, _ in notes]


def silent_jobs(factory: sessionmaker[Session], silent_after_s: float,
                max_interval_s: float = 60.0) -> list[str]:
    """Running jobs RunPod has been silent about (not checked for ``silent_after_s``)
    whose next poll is due; each poll is counted and pushes the next one back
    exponentially (``silent_after_s × 2**polls``, at most ``max_interval_s``: the outbox's
    ``republish_after_s``), so a long job is not polled every few seconds."""
    now = utcnow()
    cutoff = now - timedelta(seconds=silent_after_s)
    with transaction(factory) as s:
        due = s.execute(select(Job.id, Job.status_polls).where(
            Job.status.in_(JobStatus.RUNNING),
            or_(Job.last_checked_at.is_(None), Job.last_checked_at < cutoff),
            or_(Job.next_poll_at.is_(None), Job.next_poll_at <= now)).limit(BATCH)).all()
        by_polls: dict[int, list[str]] = {}
        for job_id, polls in due:
            by_polls.setdefault(polls, []).append(job_id)
        # One UPDATE per backoff step (a handful), not one per job.
        for polls, ids in by_polls.items():
            wait = republish_after_s(polls + 1, silent_after_s, max_interval_s)
            s.execute(update(Job).where(Job.id.in_(ids), Job.status_polls == polls).values(
                status_polls=polls + 1, next_poll_at=now + timedelta(seconds=wait)))
    return [job_id for job_id, _ in due]


def expired_holds(factory: sessionmaker[Session]) -> list[str]:
    """Unfinished jobs whose hold is still open past ``expires_at``, by DB time."""
    with transaction(factory) as s:
        return list(s.scalars(select(Job.id).join(Hold, Hold.id == Job.hold_id).where(
            Hold.status == HoldStatus.OPEN, Hold.expires_at <= db_utcnow(),
            Job.status.not_in(JobStatus.TERMINAL)).limit(BATCH)))
