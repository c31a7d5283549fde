"""Periodic scans (run by beat): the outbox safety net and the poller for silent jobs.

Both only *find* rows and hand their ids to the normal, idempotent tasks; running a
scan twice, or alongside a delivery of the same task, changes nothing extra.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from gpubill import queues
from ledger.db import transaction
from ledger.models import EventStatus, Job, JobStatus, StripeEvent, utcnow

BATCH = 500


def pending_outbox(factory: sessionmaker[Session], older_than_s: float) -> list[tuple[str, str]]:
    """(task name, id) for rows committed but not moved on within ``older_than_s``:
    requested jobs (hold), held jobs (dispatch), received Stripe events (process)."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with transaction(factory) as s:
        jobs = s.execute(select(Job.id, Job.status).where(
            Job.status.in_((JobStatus.REQUESTED, JobStatus.HELD)), Job.updated_at < cutoff)
            .limit(BATCH)).all()
        events = s.scalars(select(StripeEvent.id).where(
            StripeEvent.status == EventStatus.RECEIVED, StripeEvent.received_at < cutoff)
            .limit(BATCH)).all()
    work = [(queues.PLACE_HOLD if st == JobStatus.REQUESTED else queues.DISPATCH, jid)
            for jid, st in jobs]
    return work + [(queues.PROCESS_STRIPE_EVENT, eid) for eid in events]


def silent_jobs(factory: sessionmaker[Session], silent_after_s: float) -> list[str]:
    """Running jobs not checked against RunPod for ``silent_after_s`` seconds."""
    cutoff = utcnow() - timedelta(seconds=silent_after_s)
    with transaction(factory) as s:
        return list(s.scalars(select(Job.id).where(
            Job.status.in_(JobStatus.RUNNING),
            or_(Job.last_checked_at.is_(None), Job.last_checked_at < cutoff)).limit(BATCH)))
