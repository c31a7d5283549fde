"""Poison jobs (issue 11, docs/runpod-boundary.md "Poison jobs"): a job whose task fails
with an exception that is not a classified transient error (``OperationalError``,
``RunPodTransient``) — e.g. an input the worker cannot load (``RecursionError``), an
answer it cannot parse — fails the same way every time. Each such failure is counted
on the job (``jobs.task_failures``: task deliveries and sweeper re-publishes alike);
at the bound the job is **parked**: its hold released through the ledger (operation
key ``job:{id}:release``), status ``failed``, ``flagged``, its error kept. A job whose
user asked to cancel is ended ``cancelled`` at its first such failure.

The row is read with ``input`` and ``output`` deferred: those columns are what a
poison job may be unable to load.
"""
from __future__ import annotations

import logging

from sqlalchemy.orm import Session, defer, sessionmaker

from ledger import transitions as t
from ledger.db import transaction
from ledger.jobs import PARKED, POISON_CANCELLED
from ledger.models import Job, JobStatus
from services import lifecycle

log = logging.getLogger(__name__)

def note_failure(factory: sessionmaker[Session], job_id: str, error: BaseException,
                 max_failures: int) -> bool:
    """Count one unclassified failure of ``job_id``'s task; park the job at
    ``max_failures`` (or at once if a cancel is pending). True when the job is now
    terminal (parked or ended before), so the caller stops; False: let it fail again."""
    reason = f"{type(error).__name__}: {str(error)[:500]}"
    with transaction(factory) as s:
        job = s.get(Job, job_id, with_for_update=True, populate_existing=True,
                    options=[defer(Job.input), defer(Job.output)])
        if job is None or job.status in JobStatus.TERMINAL:
            return True
        job.task_failures += 1
        if job.stop_requested_at is not None and job.status in t.CANCEL_BEFORE_RUN.sources:
            lifecycle.release(s, job, t.CANCEL_BEFORE_RUN, f"{POISON_CANCELLED}: {reason}")
            return True
        if job.task_failures < max_failures or job.status not in t.FAIL_BEFORE_RUN.sources:
            job.error = reason
            log.warning("job %s: task failure %d/%d: %s", job_id, job.task_failures, max_failures, reason)
            return False
        job.flagged = True
        lifecycle.release(s, job, t.FAIL_BEFORE_RUN,
                          f"{PARKED} {job.task_failures} failed attempts: {reason}")
        log.error("job %s parked after %d failed attempts: %s", job_id, job.task_failures, reason)
        return True
