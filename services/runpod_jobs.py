"""Every RunPod job id we receive is recorded (``runpod_jobs``): the one billed through
the job's hold, or a stray — a second RunPod job for the same job of ours, started
because RunPod's answer to ``/run`` was lost or a worker died before recording it (or an
id a callback named that RunPod no longer knows). A stray is cancelled and its measured
``executionTime`` written off as our loss — unknown, with ``runpod_status`` "404", when
RunPod has forgotten it (docs/runpod-boundary.md). One DB transaction per function.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import and_, update
from sqlalchemy.orm import Session, sessionmaker

from base import queues
from base.after_commit import publish_after_commit
from gateways import runpod_metrics
from ledger import transitions as t
from ledger.db import transaction
from ledger.models import Job, RunPodJob, RunPodRole, RunPodState, utcnow
from ledger.statements import insert_ignore
from services.outbox import Outbox

log = logging.getLogger(__name__)
BILLED, STRAY = RunPodRole.BILLED, RunPodRole.STRAY
OPEN, SETTLED = RunPodState.OPEN, RunPodState.SETTLED
ADOPTED, KNOWN = "adopted", "known"
UNCHECKED = "unchecked"  # a new id, not recorded: the caller asks RunPod about it first


def record_billed(s: Session, job: Job, runpod_job_id: str) -> None:
    """In the caller's transaction: ``job`` is dispatched as ``runpod_job_id``."""
    now = utcnow()
    t.move(job, t.DISPATCH)
    job.runpod_job_id, job.runpod_status = runpod_job_id, "IN_QUEUE"
    job.dispatched_at = job.last_checked_at = job.updated_at = now
    # One statement, no read first (issue 17).
    if insert_ignore(s, RunPodJob, id=runpod_job_id, job_id=job.id, endpoint_id=job.endpoint_id,
                     role=BILLED, state=OPEN, recorded_at=now) is None:
        # Recorded before as this job's stray: a callback named it while RunPod had
        # already forgotten it (404, ``claim(adoptable=False)``), before /run's answer
        # was recorded. /run says it is the job's work: billed, not written off.
        s.execute(update(RunPodJob).where(RunPodJob.id == runpod_job_id, RunPodJob.job_id == job.id,
                                          RunPodJob.role == STRAY)
                  .values(role=BILLED, state=OPEN, runpod_status=None, settled_at=None))


def record_stray(s: Session, job: Job, runpod_job_id: str) -> bool:
    """In the caller's transaction: record ``runpod_job_id`` as a stray of ``job`` and
    publish its ``jobs.cancel_stray`` (job id, endpoint id, RunPod id) at commit.
    False when that id is already recorded (billed or stray): whoever recorded it
    published its cancel, and the outbox sweeper re-publishes an open stray's."""
    if insert_ignore(s, RunPodJob, id=runpod_job_id, job_id=job.id, endpoint_id=job.endpoint_id,
                     role=STRAY, state=OPEN, recorded_at=utcnow()) is None:
        return False
    log.warning("job %s: RunPod job %s is a stray (not the billed %s); cancelling it",
                job.id, runpod_job_id, job.runpod_job_id)
    publish_after_commit(s, queues.CANCEL_STRAY, job.id, job.endpoint_id, runpod_job_id)
    return True


def claim(factory: sessionmaker[Session], job_id: str, runpod_job_id: str, *, checked: bool,
          adoptable: bool = True) -> str | None:
    """A RunPod callback for ``job_id`` names ``runpod_job_id``. An id already recorded
    is ``known``. A new one is ``unchecked`` (nothing written) until the caller has
    asked RunPod about it outside this row lock and calls again with ``checked``; then
    a ``held`` job whose /run answer never came adopts it (``adopted``: it is our job's
    work, and money still follows the /status re-fetch) if ``adoptable`` (RunPod knows
    the id), and any other is recorded as a stray (``stray``: its cancel is published
    at commit). None: no such job."""
    with transaction(factory) as s:
        job = s.get(Job, job_id, with_for_update=True, populate_existing=True)
        if job is None:
            return None
        if runpod_job_id == job.runpod_job_id or s.get(RunPodJob, runpod_job_id) is not None:
            return KNOWN
        if not checked:
            return UNCHECKED
        if adoptable and job.status in t.DISPATCH.sources and job.runpod_job_id is None \
                and job.stop_requested_at is None:
            record_billed(s, job, runpod_job_id)
            return ADOPTED
        return STRAY if record_stray(s, job, runpod_job_id) else KNOWN


def settle_stray(factory: sessionmaker[Session], runpod_job_id: str,
                 status: dict[str, Any] | None) -> None:
    """A cancelled stray's final ``/status`` (None: RunPod forgot it): keep its measured
    ``executionTime`` / ``delayTime`` (ms) as our loss and mark it settled."""
    status = status or {}
    with transaction(factory) as s:
        row = s.get(RunPodJob, runpod_job_id, with_for_update=True)
        if row is None or row.role != STRAY or row.state == SETTLED:
            return  # a stray made billed since (``record_billed``) is the job's to settle
        row.runpod_status = str(status.get("status", "404"))[:16]
        for key, column in (("executionTime", "execution_ms"), ("delayTime", "delay_ms")):
            if isinstance(status.get(key), int):
                setattr(row, column, status[key])
        row.state, row.settled_at = SETTLED, utcnow()
        # Counted before the commit, so the metric is never behind the row.
        runpod_metrics.record_stray(row.execution_ms is not None)


# Outbox entry (``services.outbox``): an open stray whose cancel may have been lost with
# its worker (a SIGKILL) — it would run on RunPod unbilled for the visibility timeout.
OUTBOX = (
    Outbox(queues.CANCEL_STRAY, RunPodJob, lambda cutoff: and_(
        RunPodJob.role == STRAY, RunPodJob.state == OPEN, RunPodJob.recorded_at < cutoff),
        (RunPodJob.job_id, RunPodJob.endpoint_id, RunPodJob.id),
        RunPodJob.republishes, RunPodJob.republish_at),
)
