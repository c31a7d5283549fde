"""Settling a running job from RunPod's own account of it: which RunPod job a job is
(``tracked``), a callback's refresh with its coalescing (``plan_refresh``), and ``settle_from_runpod`` — the
refresh task's body and the operator's ``gpubill jobs retry-settlement``, one function for both.

The webhook body is never used for money; this re-fetch of ``GET /v2/{endpoint}/status/{id}``
is (RunPod serverless docs, "Job operations" → ``/status``). The job's operation keys make
the settlement at most once: a settled job is left as it is.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from ledger.db import transaction
from ledger.models import Job, JobStatus, utcnow
from services import lifecycle


def endpoint_of(factory: sessionmaker[Session], job_id: str) -> str:
    """The RunPod endpoint id of ``job_id`` (which exists; else ``LookupError``)."""
    with transaction(factory) as s:
        job = s.get(Job, job_id)
        if job is None:
            raise LookupError(f"no job {job_id}")
        return job.endpoint_id


def _throttle(job: Job, window_s: float) -> float | None:
    """Throttle /status reads of one job to one per ``window_s`` seconds, leading edge
    first (issue 11; issue 17: a callback is settled at once, not at a window's end).

    ``jobs.refresh_due_at`` is the end of the job's quiet window: a read happens (or
    happened) at ``refresh_due_at − window_s``. Returns 0.0 when the caller reads now
    (no window is open: it opens one); the delay in seconds when a read was made in the
    open window and none follows it yet (the caller reads at the window's end, and the
    window is extended by one more); None when a read is already scheduled after now,
    so it sees what this callback announced and the caller skips. The caller holds the
    row lock, so two callbacks never both lead or both trail."""
    now, window = utcnow(), timedelta(seconds=window_s)
    due = job.refresh_due_at
    if due is None or due <= now:
        job.refresh_due_at = now + window
        return 0.0
    if due <= now + window:
        job.refresh_due_at = due + window
        return (due - now).total_seconds()
    return None


class NotDispatchedYet(Exception):
    """RunPod called back before the dispatch recorded its job id (a very fast job)."""


def tracked(factory: sessionmaker[Session], job_id: str) -> tuple[str, str] | None:
    """(endpoint_id, runpod_job_id) of a job RunPod is running, else None.

    Raises ``NotDispatchedYet`` for a job still ``held``: its callback may have beaten
    ``record_dispatch`` to the database, so the caller retries shortly.
    """
    with transaction(factory) as s:
        return _where(s.get(Job, job_id))


def plan_refresh(factory: sessionmaker[Session], job_id: str,
                 window_s: float) -> tuple[tuple[str, str], float] | None:
    """A callback's refresh, in one transaction: ``tracked`` and, with ``window_s`` > 0,
    the coalescing throttle (``_throttle``). Returns ((endpoint_id, runpod_job_id),
    seconds to wait before reading /status: 0.0 = now), or None when there is nothing
    to read (not running, or a read already scheduled covers this callback). Raises
    ``NotDispatchedYet`` for a job still ``held`` (nothing written)."""
    with transaction(factory) as s:
        job = s.get(Job, job_id, with_for_update=bool(window_s), populate_existing=True)
        where = _where(job)
        if where is None or job is None:
            return None
        delay = _throttle(job, window_s) if window_s else 0.0
        return None if delay is None else (where, delay)


def _where(job: Job | None) -> tuple[str, str] | None:
    if job is not None and job.status == JobStatus.HELD:
        raise NotDispatchedYet(job.id)
    if job is None or job.status not in JobStatus.RUNNING or not job.runpod_job_id:
        return None
    return job.endpoint_id, job.runpod_job_id


class StatusSource(Protocol):
    """What settling needs of RunPod: ``gateways.runpod.RunPodGateway.status``."""

    def status(self, endpoint_id: str, runpod_job_id: str) -> dict[str, Any] | None: ...


def settle_from_runpod(factory: sessionmaker[Session], job_id: str, runpod: StatusSource,
                       where: tuple[str, str] | None = None) -> str | None:
    """Fetch RunPod ``/status`` of a running job and apply it (``lifecycle.apply_status``:
    capture ``charge(quote, executionTime)`` on COMPLETED, release on FAILED / TIMED_OUT /
    CANCELLED / 404). ``where``: (endpoint_id, runpod_job_id) when the caller has just read
    it with ``tracked``. Returns the job's status after, None if it is no longer
    running. Raises ``NotDispatchedYet`` for a job still ``held``, and the
    gateway's ``RunPodTransient`` / ``RunPodRejected`` (nothing changed)."""
    where = where or tracked(factory, job_id)
    if where is None:
        return None
    return lifecycle.apply_status(factory, job_id, runpod.status(*where))
