"""Settling a running job from RunPod's own account of it: which RunPod job a job is
(``tracked``), coalescing refreshes (``lead_refresh``), and ``settle_from_runpod`` — the
refresh task's body and the operator's ``gpubill jobs retry-settlement``, one function for both.

The webhook body is never used for money; this re-fetch of ``GET /v2/{endpoint}/status/{id}``
is (RunPod serverless docs, "Job operations" → ``/status``). The job's operation keys make
the settlement at most once: a settled job is left as it is.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import or_, update
from sqlalchemy.orm import Session, sessionmaker

from ledger.db import rows_matched, transaction
from ledger.models import Job, JobStatus, utcnow
from services import lifecycle


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
