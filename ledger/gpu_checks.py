"""RunPod-side reconciliation checks: GPU time conserved per job (issue 11,
docs/runpod-boundary.md) and the poison-job report. Each is ``check(session, within) ->
list[Violation]`` (``ledger.invariants.keyed``), run by ``ledger.reconcile.run_checks``.
Times in integer milliseconds; credits int.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import ColumnElement, or_, select, true
from sqlalchemy.orm import Session

from ledger.invariants import Violation, keyed
from ledger.jobs import PARKED, POISON_CANCELLED, job_quote
from ledger.models import Job, JobStatus, RunPodJob, utcnow
from pricing import charge

STRAY_GRACE = timedelta(minutes=10)  # a stray's cancel (with retries) is done by then


@keyed(Job.id, "GPU time conserved (runpod)")
def _gpu_time_conserved(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """Per job (issue 11, docs/runpod-boundary.md): the RunPod job it records is in
    ``runpod_jobs`` as its one billed RunPod job; a completed job was charged the rate
    card's price of its measured ``executionTime`` (clamped to min charge and hold) and
    released the rest; every other RunPod id received for it is a stray that was
    cancelled and its measured time written off (settled) — one still open after
    ``STRAY_GRACE`` is GPU time nobody accounted for."""
    out: list[Violation] = []
    jobs = s.scalars(select(Job).where(within, Job.runpod_job_id.is_not(None))).all()
    billed: dict[str, list[str]] = {}
    for rid, jid in s.execute(select(RunPodJob.id, RunPodJob.job_id).join(Job, Job.id == RunPodJob.job_id)
                              .where(within, RunPodJob.role == "billed")):
        billed.setdefault(jid, []).append(rid)
    for job in jobs:
        if billed.get(job.id) != [job.runpod_job_id]:
            out.append(Violation(6, f"job {job.id}", f"RunPod job {job.runpod_job_id} recorded, "
                                 f"billed rows {billed.get(job.id, [])}"))
        if job.status == "completed" and job.execution_ms is not None and job.hold_id is not None:
            due = charge(job_quote(job), job.execution_ms)
            if (job.charge, job.released) != (due, job.hold_credits - due):
                out.append(Violation(6, f"job {job.id}", f"{job.execution_ms} ms executed → {due} "
                                     f"credits, charged {job.charge}, released {job.released}"))
    stale = utcnow() - STRAY_GRACE
    for rid, jid, state, ms, status, at in s.execute(
            select(RunPodJob.id, RunPodJob.job_id, RunPodJob.state, RunPodJob.execution_ms,
                   RunPodJob.runpod_status, RunPodJob.recorded_at)
            .join(Job, Job.id == RunPodJob.job_id).where(within, RunPodJob.role == "stray")):
        if state == "open" and at < stale:
            out.append(Violation(6, f"job {jid}", f"stray RunPod job {rid} not cancelled/written off"))
        elif state == "settled" and ms is None and status != "404":
            out.append(Violation(6, f"job {jid}", f"stray RunPod job {rid} {status} without executionTime"))
    return out


@keyed(Job.id, "poison jobs (runpod)")
def _poison_jobs(s: Session, within: ColumnElement[bool]) -> list[Violation]:
    """Jobs a task could not load or process (issue 11, ``services.poison``): each parked
    job (``failed``, flagged, error kept, hold released) is reported for operators, and
    so is one still failing and not yet parked."""
    out: list[Violation] = []
    for jid, status, failures, error in s.execute(
            select(Job.id, Job.status, Job.task_failures, Job.error)
            .where(within, Job.task_failures > 0, or_(
                Job.status.not_in(JobStatus.TERMINAL), Job.error.like(f"{PARKED}%"),
                Job.error.like(f"%{POISON_CANCELLED}%")))):
        state = "parked" if status in JobStatus.TERMINAL else f"{status}, not parked yet"
        out.append(Violation(6, f"job {jid}", f"poison job ({state}) after {failures} failed "
                             f"task attempts: {(error or '')[:200]}"))
    return out


def poison_checks() -> tuple[Callable[..., list[Violation]], ...]:
    """Operator reports on jobs no task could process (not money invariants)."""
    return (_poison_jobs,)


def gpu_checks() -> tuple[Callable[..., list[Violation]], ...]:
    """RunPod-side conservation checks (same shape as ``ledger.invariants.CHECKS``)."""
    return (_gpu_time_conserved,)


def gpu_violations(s: Session) -> list[Violation]:
    """Every RunPod conservation violation over the whole database."""
    return [v for c in gpu_checks() for v in c(s, true())]
