"""Settling a running job from RunPod's own account of it: the refresh task's body and the
operator's ``gpubill jobs retry-settlement``, one function for both.

The webhook body is never used for money; this re-fetch of ``GET /v2/{endpoint}/status/{id}``
is (RunPod serverless docs, "Job operations" → ``/status``). The job's operation keys make
the settlement at most once: a settled job is left as it is.
"""
from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from services import lifecycle


class StatusSource(Protocol):
    """What settling needs of RunPod: ``gateways.runpod.RunPodGateway.status``."""

    def status(self, endpoint_id: str, runpod_job_id: str) -> dict[str, Any] | None: ...


def settle_from_runpod(factory: sessionmaker[Session], job_id: str, runpod: StatusSource,
                       where: tuple[str, str] | None = None) -> str | None:
    """Fetch RunPod ``/status`` of a running job and apply it (``lifecycle.apply_status``:
    capture ``charge(quote, executionTime)`` on COMPLETED, release on FAILED / TIMED_OUT /
    CANCELLED / 404). ``where``: (endpoint_id, runpod_job_id) when the caller has just read
    it with ``lifecycle.tracked``. Returns the job's status after, None if it is no longer
    running. Raises ``lifecycle.NotDispatchedYet`` for a job still ``held``, and the
    gateway's ``RunPodTransient`` / ``RunPodRejected`` (nothing changed)."""
    where = where or lifecycle.tracked(factory, job_id)
    if where is None:
        return None
    return lifecycle.apply_status(factory, job_id, runpod.status(*where))
