"""Periodic scans (run by beat): the outbox safety net, the poller for silent jobs and
the hold-expiry sweep.

Each only *finds* rows and hands their ids to the normal, idempotent tasks; running a
scan twice, or alongside a delivery of the same task, changes nothing extra. The outbox
scan is driven by ``REGISTRY``: the ``services.outbox.Outbox`` entries each service
declares next to the state it owns (which rows wait for which task).
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from ledger.db import transaction
from ledger.jobs import db_utcnow
from ledger.models import Hold, HoldStatus, Job, JobStatus, utcnow
from services import lifecycle, notifications, runpod_jobs, stops, stripe_events
from services.outbox import Outbox

BATCH = 500  # rows per scan (per outbox entry)
# Every kind of row the outbox sweeper re-publishes, in hand-out order.
REGISTRY: tuple[Outbox, ...] = (*lifecycle.OUTBOX, *stops.OUTBOX, *stripe_events.OUTBOX,
                                *runpod_jobs.OUTBOX, *notifications.OUTBOX)


def republish_after_s(republishes: int, older_than_s: float, max_s: float = 600.0) -> float:
    """Seconds before a row re-published ``republishes`` times is re-published again:
    ``older_than_s × 2**republishes``, at most ``max_s``. Without this backoff a backlog
    older than ``older_than_s`` would be re-published whole on every sweep and grow."""
    return min(max_s, older_than_s * 2.0 ** min(republishes, 30))


def pending_outbox(factory: sessionmaker[Session], older_than_s: float,
                   registry: Sequence[Outbox] = ()) -> list[tuple[str, ...]]:
    """(task name, *args) for rows committed but not moved on within ``older_than_s``,
    one ``Outbox`` entry at a time (``registry``, default ``REGISTRY``): requested or held
    jobs (dispatch), cancel requests not yet acted on, received Stripe
    events (process), open strays (``jobs.cancel_stray`` with job id, endpoint id,
    RunPod job id), notifications still to send; at most ``BATCH`` rows per entry.

    A row handed out here is not handed out again before its backoff
    (``republish_after_s``) has passed, counted per row (``_back_off``). Every entry is
    read before any row is updated, so the row locks are held only for the UPDATEs at
    the end of the transaction (two sweepers on one database wait on each other briefly)."""
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than_s)
    with transaction(factory) as s:
        found = [(entry, s.execute(select(entry.model.id, entry.tries, *entry.args).where(
            entry.pending(cutoff), or_(entry.due_at.is_(None), entry.due_at <= now)).limit(BATCH)).all())
            for entry in registry or REGISTRY]
        for entry, rows in found:
            _back_off(s, entry, [(row[0], row[1]) for row in rows], now, older_than_s)
    return [(entry.task, *(str(arg) for arg in row[2:])) for entry, rows in found for row in rows]


def _back_off(s: Session, entry: Outbox, rows: list[tuple[str, int]], now: datetime,
              older_than_s: float) -> None:
    """Push each handed-out row's ``due_at`` back ``republish_after_s(tries + 1)`` and,
    for a ``counted`` entry, count the hand-out in ``tries`` (compare-and-set on the
    count read). One UPDATE per backoff step (a handful), not one per row."""
    steps: dict[int, list[str]] = {}
    for row_id, tries in rows:
        steps.setdefault(tries, []).append(row_id)
    for tries, ids in steps.items():
        due = now + timedelta(seconds=republish_after_s(tries + 1, older_than_s))
        if entry.counted:
            s.execute(update(entry.model).where(entry.model.id.in_(ids), entry.tries == tries)
                      .values({entry.tries: tries + 1, entry.due_at: due}))
        else:
            s.execute(update(entry.model).where(entry.model.id.in_(ids)).values({entry.due_at: due}))


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
