"""Every allowed change of a job's status, in one table (docs/architecture.md "Job lifecycle").

Each ``Transition`` names one step the code takes: the statuses it may start from and
the status it ends in. The services guard on ``step.sources`` under the job's row lock
and then call ``move(job, step)`` — a compare-and-set: the status changes only if the
job is still in one of the sources, else ``IllegalTransition`` is raised (the
transaction rolls back; nothing was written). ``ALLOWED`` is the (from, to) table; no
step leaves a terminal status.

    requested ──hold──▶ held ──dispatch──▶ dispatched ──start──▶ in_progress
        │                │                      └──────── settle ────────┘
        │ reject         │ cancel/expire/fail before run     │ completed, failed, timed_out,
        ▼                ▼                                    ▼ cancelled, expired, lost
    rejected      cancelled, expired, failed            (terminal)
"""
from __future__ import annotations

from dataclasses import dataclass

from ledger.models import Job, JobStatus

S = JobStatus


class IllegalTransition(Exception):
    """A status change the table does not allow (a bug, or a lost compare-and-set)."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One step: from any of ``sources`` to ``target``; ``name`` for logs and errors."""

    name: str
    sources: frozenset[JobStatus]
    target: JobStatus


def _t(name: str, sources: frozenset[JobStatus] | set[JobStatus], target: JobStatus) -> Transition:
    return Transition(name, frozenset(sources), target)


NOT_STARTED, RUNNING = JobStatus.NOT_STARTED, JobStatus.RUNNING
HOLD = _t("hold", {S.REQUESTED}, S.HELD)
REJECT = _t("reject", {S.REQUESTED}, S.REJECTED)                  # wallet cannot cover it
DISPATCH = _t("dispatch", {S.HELD}, S.DISPATCHED)                 # RunPod accepted /run
START = _t("start", {S.DISPATCHED}, S.IN_PROGRESS)                # RunPod says IN_PROGRESS
CANCEL_BEFORE_RUN = _t("cancel before run", NOT_STARTED, S.CANCELLED)
EXPIRE_BEFORE_RUN = _t("expire before run", NOT_STARTED, S.EXPIRED)
FAIL_BEFORE_RUN = _t("fail before run", NOT_STARTED, S.FAILED)    # /run refused, poison parked
COMPLETE = _t("complete", RUNNING, S.COMPLETED)
FAIL = _t("fail", RUNNING, S.FAILED)
TIME_OUT = _t("time out", RUNNING, S.TIMED_OUT)
CANCEL = _t("cancel", RUNNING, S.CANCELLED)
EXPIRE = _t("expire", NOT_STARTED | RUNNING, S.EXPIRED)           # settle after the stop
LOSE = _t("lose", RUNNING, S.LOST)                                # RunPod answers 404

STEPS: tuple[Transition, ...] = (
    HOLD, REJECT, DISPATCH, START, CANCEL_BEFORE_RUN, EXPIRE_BEFORE_RUN, FAIL_BEFORE_RUN,
    COMPLETE, FAIL, TIME_OUT, CANCEL, EXPIRE, LOSE)
ALLOWED: frozenset[tuple[JobStatus, JobStatus]] = frozenset(
    (source, step.target) for step in STEPS for source in step.sources)

# RunPod terminal statuses (``/status`` ``status``) that release the hold → the step.
RELEASE_ON = {"FAILED": FAIL, "TIMED_OUT": TIME_OUT, "CANCELLED": CANCEL}


def check(job: Job, step: Transition) -> None:
    """Raise ``IllegalTransition`` unless ``job`` is in one of ``step.sources``."""
    if job.status not in step.sources:
        raise IllegalTransition(f"job {job.id}: {step.name} ({job.status} → {step.target}) "
                                f"is allowed only from {sorted(step.sources)}")


def move(job: Job, step: Transition) -> None:
    """Compare-and-set ``job.status`` (row-locked by the caller) to ``step.target``.
    Raises ``IllegalTransition`` (status unchanged) unless the job is in ``step.sources``."""
    check(job, step)
    job.status = step.target
